/* BatchNorm3d: per-channel normalization over (N, D, H, W), training and inference mode, with PyTorch's semantics.
 *
 * Statistics and gradient sums are accumulated in double, one channel per loop iteration, so a reduction is never
 * split by thread count and results are identical for any number of threads. The element-wise passes run in float
 * as y = (x - mean)·scale + shift with per-channel constants computed in double; subtracting the mean first keeps
 * the error small when |mean| is large compared to the spread. Inputs are not validated beyond their shapes:
 * NaN or infinite values propagate as they would in PyTorch.
 */
#include "base/internal.h"
#include "repmode/ops.h"

#include <math.h>

rm_batchnorm3d rm_batchnorm3d_make(float *weight, float *bias, float *running_mean, float *running_var)
{
    rm_batchnorm3d bn = {weight, bias, running_mean, running_var, 0.1f, 1e-5f};
    return bn;
}

/* Checks shared by every entry point: bn, x, and optionally the running statistics and eps. */
static rm_status bn_check(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x, int need_running)
{
    if (!bn)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: bn is NULL");
    if (need_running) {
        if (!bn->running_mean)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: running_mean is NULL");
        if (!bn->running_var)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: running_var is NULL");
        /* Written as a negated comparison so NaN is rejected too. */
        if (!(bn->eps >= 0.0f) || isinf(bn->eps))
            return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: eps %g is not a finite value >= 0", (double)bn->eps);
    }
    return rm_check_tensor(ctx, x, "batchnorm3d: x");
}

/* Checks an optional gradient output: NULL is fine, otherwise it must have x's shape. */
static rm_status bn_check_optional(rm_ctx *ctx, const rm_tensor *t, const char *name, const rm_tensor *x)
{
    return t ? rm_check_shape(ctx, t, name, x->ne) : RM_OK;
}

/* The reductions keep BN_LANES partial sums in a fixed lane order, combined in a fixed tree: the compiler can
 * vectorize them without licence to reassociate, and the bits depend on neither the data's alignment nor the vector
 * width, let alone the thread count. */
#define BN_LANES 8

static double bn_lanes_total(const double a[BN_LANES])
{
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* Σ (x - k) and Σ (x - k)² over one channel (x points at the channel in sample 0), in double. k, an element of the
 * channel, keeps the one-pass variance (Σ(x-k)² - (Σ(x-k))²/M) / M from cancelling badly when |mean| >> std. */
static void bn_sums_shifted(const float *x, int64_t n, int64_t c, int64_t vol, double k, double *s1, double *s2)
{
    double a[BN_LANES] = {0}, b[BN_LANES] = {0};
    for (int64_t i = 0; i < n; i++) {
        const float *p = x + (i * c) * vol;
        const int64_t blocks = vol / BN_LANES;
        for (int64_t j = 0; j < blocks; j++) {
            const float *q = p + j * BN_LANES;
#pragma omp simd
            for (int l = 0; l < BN_LANES; l++) {
                const double v = (double)q[l] - k;
                a[l] += v;
                b[l] += v * v;
            }
        }
        for (int64_t t = blocks * BN_LANES; t < vol; t++) {
            const double v = (double)p[t] - k;
            a[0] += v;
            b[0] += v * v;
        }
    }
    *s1 = bn_lanes_total(a);
    *s2 = bn_lanes_total(b);
}

/* Σ dy and Σ dy·(x - mean) over one channel, in double. */
static void bn_sums_grad(const float *x, const float *dy, int64_t n, int64_t c, int64_t vol, double mean,
                         double *sdy, double *sdyx)
{
    double a[BN_LANES] = {0}, b[BN_LANES] = {0};
    for (int64_t i = 0; i < n; i++) {
        const float *p = x + (i * c) * vol, *g = dy + (i * c) * vol;
        const int64_t blocks = vol / BN_LANES;
        for (int64_t j = 0; j < blocks; j++) {
            const float *q = p + j * BN_LANES, *h = g + j * BN_LANES;
#pragma omp simd
            for (int l = 0; l < BN_LANES; l++) {
                a[l] += (double)h[l];
                b[l] += (double)h[l] * ((double)q[l] - mean);
            }
        }
        for (int64_t t = blocks * BN_LANES; t < vol; t++) {
            a[0] += (double)g[t];
            b[0] += (double)g[t] * ((double)p[t] - mean);
        }
    }
    *sdy = bn_lanes_total(a);
    *sdyx = bn_lanes_total(b);
}

/* y = (x - mean)·scale + shift over one channel of every sample, with the mean given as mean_hi + mean_lo: x -
 * mean_hi is exact near the mean, so the float mean's rounding does not swamp x̂ when |mean| >> std. y may be x. */
static void bn_apply(const float *x, float *y, int64_t n, int64_t c, int64_t vol, float mean_hi, float mean_lo,
                     float scale, float shift)
{
    for (int64_t i = 0; i < n; i++) {
        const float *p = x + (i * c) * vol;
        float *q = y + (i * c) * vol;
#pragma omp simd
        for (int64_t t = 0; t < vol; t++)
            q[t] = ((p[t] - mean_hi) - mean_lo) * scale + shift;
    }
}

rm_status rm_batchnorm3d_forward_train(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x, rm_tensor *y,
                                       float *save_mean, float *save_invstd)
{
    RM_TRY(bn_check(ctx, bn, x, 1));
    if (!(bn->momentum >= 0.0f && bn->momentum <= 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: momentum %g is not in [0, 1]", (double)bn->momentum);
    RM_TRY(rm_check_shape(ctx, y, "batchnorm3d: y", x->ne));
    if (!save_mean)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: save_mean is NULL");
    if (!save_invstd)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: save_invstd is NULL");
    const int64_t n = x->ne[0], c = x->ne[1], vol = rm_tensor_spatial_numel(x);
    const int64_t m = n * vol;
    if (m == 1) {
        char s[96];
        return rm_fail(ctx, RM_ERR_SHAPE,
                       "batchnorm3d: training needs more than one value per channel, x has shape %s",
                       rm_shape_str(x->ne, s, sizeof s));
    }

    const float *xd = x->data;
    float *yd = y->data;
    const double mom = bn->momentum, eps = bn->eps;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        const float *xc = xd + ch * vol;
        double s1, s2;
        bn_sums_shifted(xc, n, c, vol, xc[0], &s1, &s2);
        const double mean = (double)xc[0] + s1 / (double)m;
        double var = (s2 - s1 * s1 / (double)m) / (double)m;
        if (var < 0.0) /* rounding can take a constant channel just below zero */
            var = 0.0;
        const double invstd = 1.0 / sqrt(var + eps);
        const double gamma = bn->weight ? bn->weight[ch] : 1.0;
        const double beta = bn->bias ? bn->bias[ch] : 0.0;
        save_mean[ch] = (float)mean;
        save_invstd[ch] = (float)invstd;
        bn->running_mean[ch] = (float)((1.0 - mom) * bn->running_mean[ch] + mom * mean);
        bn->running_var[ch] = (float)((1.0 - mom) * bn->running_var[ch] + mom * var * (double)m / (double)(m - 1));
        const float mean_hi = (float)mean;
        bn_apply(xc, yd + ch * vol, n, c, vol, mean_hi, (float)(mean - mean_hi), (float)(gamma * invstd),
                 (float)beta);
    }
    return RM_OK;
}

rm_status rm_batchnorm3d_backward_train(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x,
                                        const float *save_mean, const float *save_invstd, const rm_tensor *dy,
                                        rm_tensor *dx, float *dweight, float *dbias)
{
    RM_TRY(bn_check(ctx, bn, x, 0));
    if (!save_mean)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: save_mean is NULL");
    if (!save_invstd)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "batchnorm3d: save_invstd is NULL");
    RM_TRY(rm_check_shape(ctx, dy, "batchnorm3d: dy", x->ne));
    RM_TRY(bn_check_optional(ctx, dx, "batchnorm3d: dx", x));

    const int64_t n = x->ne[0], c = x->ne[1], vol = rm_tensor_spatial_numel(x);
    const double m = (double)(n * vol);
    const float *xd = x->data, *dyd = dy->data;
    float *dxd = dx ? dx->data : NULL;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        const float mean_f = save_mean[ch];
        /* Σ dy·x̂ is invstd·Σ dy·(x - mean). */
        double sdy, sdyx;
        bn_sums_grad(xd + ch * vol, dyd + ch * vol, n, c, vol, mean_f, &sdy, &sdyx);
        const double invstd = save_invstd[ch];
        const double sdxhat = sdyx * invstd;
        if (dweight)
            dweight[ch] = (float)sdxhat;
        if (dbias)
            dbias[ch] = (float)sdy;
        if (!dxd)
            continue;
        /* dx = γ·invstd/M·(M·dy - Σdy - x̂·Σdy·x̂) = a·dy + b·(x - mean) + e. */
        const double gamma = bn->weight ? bn->weight[ch] : 1.0;
        const float a = (float)(gamma * invstd);
        const float b = (float)(-gamma * invstd * invstd * sdxhat / m);
        const float e = (float)(-gamma * invstd * sdy / m);
        for (int64_t i = 0; i < n; i++) {
            const float *p = xd + (i * c + ch) * vol, *g = dyd + (i * c + ch) * vol;
            float *q = dxd + (i * c + ch) * vol;
#pragma omp simd
            for (int64_t t = 0; t < vol; t++)
                q[t] = a * g[t] + b * (p[t] - mean_f) + e;
        }
    }
    return RM_OK;
}

rm_status rm_batchnorm3d_forward_infer(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x, rm_tensor *y)
{
    RM_TRY(bn_check(ctx, bn, x, 1));
    RM_TRY(rm_check_shape(ctx, y, "batchnorm3d: y", x->ne));

    const int64_t n = x->ne[0], c = x->ne[1], vol = rm_tensor_spatial_numel(x);
    const float *xd = x->data;
    float *yd = y->data;
    const double eps = bn->eps;
    /* Nothing to reduce, so the (n, c) slices are spread over the threads rather than the channels alone. */
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t s = 0; s < n * c; s++) {
        const int64_t ch = s % c;
        const double gamma = bn->weight ? bn->weight[ch] : 1.0;
        const double beta = bn->bias ? bn->bias[ch] : 0.0;
        const double scale = gamma / sqrt((double)bn->running_var[ch] + eps);
        bn_apply(xd + s * vol, yd + s * vol, 1, 1, vol, bn->running_mean[ch], 0.0f, (float)scale, (float)beta);
    }
    return RM_OK;
}

rm_status rm_batchnorm3d_backward_infer(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x,
                                        const rm_tensor *dy, rm_tensor *dx, float *dweight, float *dbias)
{
    RM_TRY(bn_check(ctx, bn, x, 1));
    RM_TRY(rm_check_shape(ctx, dy, "batchnorm3d: dy", x->ne));
    RM_TRY(bn_check_optional(ctx, dx, "batchnorm3d: dx", x));

    const int64_t n = x->ne[0], c = x->ne[1], vol = rm_tensor_spatial_numel(x);
    const float *xd = x->data, *dyd = dy->data;
    float *dxd = dx ? dx->data : NULL;
    const double eps = bn->eps;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        const double invstd = 1.0 / sqrt((double)bn->running_var[ch] + eps);
        const double gamma = bn->weight ? bn->weight[ch] : 1.0;
        const float mean_f = bn->running_mean[ch];
        const float a = (float)(gamma * invstd);
        double sdy = 0.0, sdyx = 0.0;
        if (dweight || dbias)
            bn_sums_grad(xd + ch * vol, dyd + ch * vol, n, c, vol, mean_f, &sdy, &sdyx);
        /* After the sums: dx may be dy. */
        if (dxd) {
            for (int64_t i = 0; i < n; i++) {
                const float *g = dyd + (i * c + ch) * vol;
                float *q = dxd + (i * c + ch) * vol;
#pragma omp simd
                for (int64_t t = 0; t < vol; t++)
                    q[t] = a * g[t];
            }
        }
        if (dweight)
            dweight[ch] = (float)(sdyx * invstd);
        if (dbias)
            dbias[ch] = (float)sdy;
    }
    return RM_OK;
}
