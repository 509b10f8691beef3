/* Convolution benchmark: the engine's 5³ convolution forward and backward against OpenBLAS SGEMM 1024³, measured
 * in the same run (these machines are shared: compare the ratio, not one absolute time).
 *
 * usage: repmode-bench-conv [threads (default 2)] [repetitions (default 5)]
 */
#define _POSIX_C_SOURCE 199309L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repmode/repmode.h"

#include "bench_timing.h"

typedef enum { FORWARD, BACKWARD_DATA, BACKWARD_WEIGHT } pass;

/* Median seconds of one convolution pass, after one warm-up call that sizes the working memory. */
static double time_conv(rm_ctx *ctx, pass which, int64_t c, int64_t d, int64_t h, int64_t w, int reps)
{
    const size_t nx = (size_t)(c * d * h * w), nw = (size_t)(c * c * 125);
    float *xd = bench_random_floats(nx, 1), *wd = bench_random_floats(nw, 2);
    float *yd = bench_random_floats(nx, 3), *gd = bench_random_floats(nw, 4);
    if (!xd || !wd || !yd || !gd) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    rm_tensor x = rm_tensor_5d(xd, 1, c, d, h, w), y = rm_tensor_5d(yd, 1, c, d, h, w);
    rm_tensor wt = rm_tensor_5d(wd, c, c, 5, 5, 5), g = rm_tensor_5d(gd, c, c, 5, 5, 5);
    const rm_conv3d_params p = rm_conv3d_same(5);
    double t[64];
    for (int r = -1; r < reps; r++) {
        const double t0 = bench_now();
        rm_status s = which == FORWARD         ? rm_conv3d_forward(ctx, &p, &x, &wt, NULL, &y)
                      : which == BACKWARD_DATA ? rm_conv3d_backward(ctx, &p, &x, &wt, &y, &x, NULL, NULL)
                                               : rm_conv3d_backward(ctx, &p, &x, &wt, &y, NULL, &g, NULL);
        if (s != RM_OK) {
            fprintf(stderr, "bench: %s\n", rm_ctx_error(ctx));
            exit(1);
        }
        if (r >= 0)
            t[r] = bench_now() - t0;
    }
    free(xd), free(wd), free(yd), free(gd);
    return bench_median(t, reps);
}

static double time_sgemm(int threads, int reps)
{
    const int n = 1024;
    float *a = bench_random_floats((size_t)n * n, 5), *b = bench_random_floats((size_t)n * n, 6);
    float *c = bench_random_floats((size_t)n * n, 7);
    if (!a || !b || !c) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    openblas_set_num_threads(threads);
    double t[64];
    for (int r = -1; r < reps; r++) {
        const double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        if (r >= 0)
            t[r] = bench_now() - t0;
    }
    free(a), free(b), free(c);
    return bench_median(t, reps);
}

int main(int argc, char **argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (threads < 1 || reps < 1) {
        fprintf(stderr, "usage: %s [threads >= 1] [repetitions >= 1]\n", argv[0]);
        return 1;
    }
    reps = reps > 64 ? 64 : reps;
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("repmode convolution benchmark: %d threads, median of %d runs, OpenBLAS %s core type %s\n", threads, reps,
           openblas_get_config(), coretype ? coretype : "(auto)");

    const double gemm_s = time_sgemm(threads, reps * 4);
    const double gemm_gflops = 2.0 * 1024.0 * 1024.0 * 1024.0 / gemm_s / 1e9;
    printf("%-44s %9.4f s %8.1f GFLOP/s\n", "reference: OpenBLAS SGEMM 1024^3", gemm_s, gemm_gflops);

    rm_ctx *ctx = rm_ctx_create(threads);
    if (!ctx) {
        fprintf(stderr, "bench: out of memory\n");
        return 1;
    }
    const struct { int64_t c, d, h, w; } shapes[] = {{32, 32, 64, 64}, {64, 16, 32, 32}};
    const char *names[] = {"forward", "backward data", "backward weight"};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const double flop = 2.0 * (double)(shapes[i].c * shapes[i].c * 125 * shapes[i].d * shapes[i].h * shapes[i].w);
        for (int which = FORWARD; which <= BACKWARD_WEIGHT; which++) {
            const double s = time_conv(ctx, (pass)which, shapes[i].c, shapes[i].d, shapes[i].h, shapes[i].w, reps);
            char label[96];
            snprintf(label, sizeof label, "conv 5^3 %lld->%lld on %lldx%lldx%lld %s", (long long)shapes[i].c,
                     (long long)shapes[i].c, (long long)shapes[i].d, (long long)shapes[i].h, (long long)shapes[i].w,
                     names[which]);
            printf("%-44s %9.4f s %8.1f GFLOP/s  %5.1f%% of SGEMM\n", label, s, flop / s / 1e9,
                   100.0 * flop / s / 1e9 / gemm_gflops);
        }
    }
    rm_ctx_free(ctx);
    return 0;
}
