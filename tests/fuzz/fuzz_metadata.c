/* libFuzzer harness: a model file's metadata (docs/model-file.md §2) as the reader takes it, repmode.config,
 * repmode.tasks, repmode.normalization and repmode.provenance, given as four texts separated by NUL bytes
 * (rm_config_from_json of core/model/config_json.c, rm_normalization_parse, core/model/metadata.c); then the network
 * of a valid configuration (tests/fuzz/fuzz_network.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_network.h"
#include "model/config_json.h"
#include "repmode/normalize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rm_ctx *ctx;
    static rm_model *model; /* holds the provenance */
    if (!ctx) {
        rm_task task = rm_task_make("a", RM_TASK_REGRESSION);
        rm_config tiny = rm_config_lite(&task, 1);
        tiny.base_channels = 1;
        tiny.levels = 1;
        if (!(ctx = rm_ctx_create(1)) || rm_model_create(ctx, &tiny, 0, &model) != RM_OK)
            abort();
    }
    char *text = malloc(size + 4); /* four texts, however many NULs the input holds */
    if (!text)
        abort();
    memcpy(text, data, size);
    memset(text + size, 0, 4);
    const char *part[4] = {text};
    for (int k = 1; k < 4; k++)
        part[k] = part[k - 1] + strlen(part[k - 1]) + 1;

    rm_task official[12];
    rm_config cfg = rm_config_official(official);
    rm_task *tasks = NULL;
    if (rm_config_from_json(ctx, "fuzz", part[0], part[1], &cfg, &tasks) == RM_OK &&
        rm_config_validate(ctx, &cfg) == RM_OK)
        fuzz_network(ctx, &cfg);
    free(tasks);
    rm_normalization norm;
    if (rm_normalization_parse(ctx, part[2], &norm) == RM_OK && rm_normalization_validate(ctx, &norm) != RM_OK)
        abort(); /* what parses is valid */
    rm_model_set_provenance(ctx, model, part[3]);
    free(text);
    return 0;
}
