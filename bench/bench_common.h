/* What the benchmarks share beyond timing: fatal errors naming the benchmark (BENCH_NAME, defined before this
 * header), the convolutions' multiply-add count, the process's memory from /proc, and raw float files. */
#ifndef REPMODE_BENCH_COMMON_H
#define REPMODE_BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repmode/repmode.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME (the benchmark's name for its messages) before including bench_common.h"
#endif

static void die(const char *what)
{
    fprintf(stderr, BENCH_NAME ": %s\n", what);
    exit(1);
}

static void die_errno(const char *what, const char *path)
{
    fprintf(stderr, BENCH_NAME ": %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void die_rm(rm_ctx *ctx, const char *what)
{
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, rm_ctx_error(ctx));
    exit(1);
}

/* Multiply-adds of one forward over d×h×w voxels, convolutions only: a 5³ convolution costs ci·co·125 per output
 * voxel, the 2³ stride-2 down-sampling ci·co·8 per output voxel, the transposed up-sampling ci·co·8 per input
 * voxel. Level k (1..L) has voxels v >> 3(k-1), the bottleneck (L+1) the coarsest. */
static double forward_macs(const rm_config *cfg, int64_t d, int64_t h, int64_t w)
{
    const int L = cfg->levels;
    const double v = (double)(d * h * w);
    double macs = 0;
    for (int k = 1; k <= L; k++) {
        const double vk = v / pow(8.0, k - 1), vnext = vk / 8.0;
        const double c = (double)rm_config_channels(cfg, k), cnext = (double)rm_config_channels(cfg, k + 1);
        const double cin = k == 1 ? (double)cfg->in_channels : (double)rm_config_channels(cfg, k - 1);
        macs += (cin * c + c * c) * 125 * vk;   /* encoder: Sub2(cin → c) */
        macs += c * c * 8 * vnext;              /* down: c → c, per output voxel at level k+1 */
        macs += cnext * c * 8 * vnext;          /* up: cnext → c, per input voxel at level k+1 */
        macs += (2 * c * c + c * c) * 125 * vk; /* decoder: Sub2(2c → c) on [skip, up] */
    }
    const double cb = (double)rm_config_channels(cfg, L + 1), cl = (double)rm_config_channels(cfg, L);
    /* the bottleneck, Sub2(cl → cb), then conv_out */
    macs += (cl * cb + cb * cb) * 125 * (v / pow(8.0, L));
    macs += (double)rm_config_channels(cfg, 1) * (double)cfg->out_channels * 125 * v;
    return macs;
}

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    const size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Resets VmHWM to the current VmRSS (Linux 4.0 and later); 0 where that is not allowed. */
static int reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return 0;
    const int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static void write_floats(const char *path, const float *v, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        die_errno("cannot write", path);
    if (fwrite(v, sizeof *v, n, f) != n || fclose(f) != 0)
        die_errno("cannot write", path);
}

static double mib(long kib)
{
    return (double)kib / 1024.0;
}

#endif /* REPMODE_BENCH_COMMON_H */
