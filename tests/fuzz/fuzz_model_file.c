/* libFuzzer harness: a model file (core/io/safetensors.c, core/io/model_file.c), given to the readers as the file
 * /proc/self/fd/N of a memfd. A file rm_model_info_read accepts must load: the training form whole and as the
 * deploy form of its tasks, the deploy form task by task; a small network then runs once on a smallest patch. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_network.h"

/* The deploy form of task t, loaded and run on a smallest patch of zeros. */
static void run_task(rm_ctx *ctx, const char *path, const rm_config *c, int t)
{
    rm_deploy *d = NULL;
    if (rm_deploy_load(ctx, path, c->tasks[t].name, &d) != RM_OK)
        abort(); /* rm_model_info_read accepted the file */
    if (fuzz_small(c))
        fuzz_forward(ctx, d, c);
    rm_deploy_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rm_ctx *ctx;
    static int fd = -1;
    static char path[64];
    if (!ctx) {
        if (!(ctx = rm_ctx_create(1)) || (fd = memfd_create("model", 0)) < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    rm_model_info info;
    if (rm_model_info_read(ctx, path, &info) != RM_OK)
        return 0;
    const rm_config *c = &info.cfg;
    if (!info.deploy) {
        rm_model *m = NULL;
        if (rm_model_load(ctx, path, &m) != RM_OK)
            abort();
        rm_model_free(m);
    }
    run_task(ctx, path, c, 0);
    if (c->n_tasks > 1)
        run_task(ctx, path, c, c->n_tasks - 1);
    rm_model_info_free(&info);
    return 0;
}
