/* Monte Carlo dropout benchmark (issue 15, docs/network.md §6.3): what N stochastic passes cost beside N plain
 * passes of the same sliding-window prediction, for `lite` and `official` on a volume of two windows per axis.
 *
 * Plain: the deploy form merged once, then N calls of rm_predict_region. Monte Carlo: rm_predict_region_mc with N
 * passes, each merging and folding its own noisy kernels (rm_deploy_set_mc) and applying dropout to the input of
 * every MoDE block. The two are timed in alternating rounds (which goes first alternating too), each side's median
 * printed with their ratio, and one merge (rm_deploy_set_mc alone) beside one plain pass: the part of the overhead
 * that merging per pass takes. The merge should cost little next to the convolutions.
 *
 * usage: repmode-bench-mc [--threads N (2)] [--reps N (3)] [--samples N (4)]
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_timing.h"
#include "repmode/repmode.h"

typedef struct network {
    const char *name;
    int official;
} network;

typedef struct volume {
    int64_t size[3];
    float *data;
} volume;

static int read_volume(void *user, const int64_t start[3], const int64_t size[3], float *buf)
{
    const volume *v = user;
    for (int64_t z = 0; z < size[0]; z++)
        for (int64_t y = 0; y < size[1]; y++)
            memcpy(buf + (z * size[1] + y) * size[2],
                   v->data + ((start[0] + z) * v->size[1] + start[1] + y) * v->size[2] + start[2],
                   (size_t)size[2] * sizeof(float));
    return 0;
}

static void check(rm_ctx *ctx, rm_status s, const char *what)
{
    if (s != RM_OK) {
        fprintf(stderr, "repmode-bench-mc: %s: %s\n", what, rm_ctx_error(ctx));
        exit(1);
    }
}

static void run(const network *net, int threads, int reps, int samples)
{
    rm_task task = rm_task_make("structure", RM_TASK_REGRESSION);
    rm_config cfg = rm_config_lite(&task, 1);
    if (net->official) { /* official's network and patch with one task: the same convolutions */
        cfg.base_channels = 32;
        cfg.patch[0] = 32;
        cfg.patch[1] = cfg.patch[2] = 128;
    }
    rm_ctx *ctx = rm_ctx_create(threads);
    rm_model *model = NULL;
    rm_deploy *deploy = NULL;
    check(ctx, rm_model_create(ctx, &cfg, 1, &model), "model");
    check(ctx, rm_deploy_create(ctx, model, 0, &deploy), "deploy form");
    /* Two windows per axis at 50% overlap: 1.5 patches, 8 windows. */
    volume v;
    for (int a = 0; a < 3; a++)
        v.size[a] = cfg.patch[a] * 3 / 2;
    const int64_t n = v.size[0] * v.size[1] * v.size[2], start[3] = {0, 0, 0};
    v.data = bench_random_floats((size_t)n, 7);
    float *out = malloc((size_t)n * sizeof *out), *sd = malloc((size_t)n * sizeof *sd);
    if (!v.data || !out || !sd) {
        fprintf(stderr, "repmode-bench-mc: out of memory\n");
        exit(1);
    }
    const rm_window_params p = rm_window_params_make(cfg.patch);
    const rm_mc_params mc = {samples, 3, 0.1f, 0.1f, 0, 0};
    const rm_mc_pass pass = {0.1f, 0.1f, 3, 0};
    double plain[64], noisy[64], merge[64], one[64];
    /* Warm-up: the context's working memory. */
    check(ctx, rm_predict_region(ctx, deploy, &p, v.size, read_volume, &v, start, v.size, out, NULL, NULL), "plain");
    for (int r = 0; r < reps; r++)
        for (int side = 0; side < 2; side++) {
            const int mc_side = (side + r) % 2;
            const double t0 = bench_now();
            if (mc_side) {
                check(ctx,
                      rm_predict_region_mc(ctx, deploy, model, 0, &p, &mc, v.size, read_volume, &v, start, v.size, out,
                                           sd, NULL, NULL),
                      "Monte Carlo");
                noisy[r] = bench_now() - t0;
            } else {
                for (int k = 0; k < samples; k++)
                    check(ctx,
                          rm_predict_region(ctx, deploy, &p, v.size, read_volume, &v, start, v.size, out, NULL, NULL),
                          "plain");
                plain[r] = bench_now() - t0;
                one[r] = plain[r] / samples;
            }
        }
    for (int r = 0; r < reps; r++) {
        const double t0 = bench_now();
        check(ctx, rm_deploy_set_mc(ctx, deploy, model, 0, &pass), "merge");
        merge[r] = bench_now() - t0;
    }
    check(ctx, rm_deploy_set_task(ctx, deploy, model, 0), "merge");
    const double tp = bench_median(plain, reps), tn = bench_median(noisy, reps), tm = bench_median(merge, reps);
    const double t1 = bench_median(one, reps);
    printf("%-9s %3lldx%3lldx%3lld %8d %10.3f %10.3f %8.2fx %10.3f %10.3f %7.1f%%\n", net->name, (long long)v.size[0],
           (long long)v.size[1], (long long)v.size[2], samples, tp, tn, tn / tp, tm, t1, 100.0 * tm / t1);
    free(v.data);
    free(out);
    free(sd);
    rm_deploy_free(deploy);
    rm_model_free(model);
    rm_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 3, samples = 4;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--samples") == 0)
            samples = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--threads N (2)] [--reps N (3)] [--samples N (4)]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || reps > 64 || samples < 1) {
        fprintf(stderr, "repmode-bench-mc: --threads and --samples at least 1, --reps 1 to 64\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* a line per network as it is measured, also through a pipe */
    printf("Monte Carlo dropout: N passes (dropout 0.1, gate noise 0.1, each merging its kernels) against N plain "
           "passes of one merged deploy form, %d threads, median of %d alternating rounds\n\n",
           threads, reps);
    printf("%-9s %-11s %8s %10s %10s %9s %10s %10s %8s\n", "network", "volume", "passes", "plain s", "MC s", "MC/plain",
           "merge s", "1 pass s", "merge/pass");
    const network nets[] = {{"lite", 0}, {"official", 1}};
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++)
        run(&nets[i], threads, reps, samples);
    printf("\nmerge: one rm_deploy_set_mc (every MoDE layer's noisy gate, merge, BatchNorm fold, packing); "
           "1 pass: one plain sliding-window prediction of the volume\n");
    return 0;
}
