/* libFuzzer harness: a training configuration file (rm_train_config_parse, core/model/config_json.c), then the
 * network it describes (tests/fuzz/fuzz_network.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_network.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rm_ctx *ctx;
    if (!ctx && !(ctx = rm_ctx_create(1)))
        abort();
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    rm_train_config c;
    if (rm_train_config_parse(ctx, text, &c) == RM_OK) {
        rm_normalization back;
        char *json = rm_normalization_json(&c.normalization);
        const rm_normalization *n = &c.normalization;
        if (!json || rm_normalization_parse(ctx, json, &back) != RM_OK || back.method != n->method ||
            (n->method == RM_NORM_PERCENTILE && (back.low != n->low || back.high != n->high)))
            abort(); /* the normalization reads back as itself */
        rm_free(json);
        fuzz_network(ctx, &c.cfg);
        rm_train_config_free(&c);
    }
    free(text);
    return 0;
}
