/* Average pooling: a k×k×k mean filter, stride 1, zero padding (k-1)/2, divisor k³ (count_include_pad).
 *
 * The box filter is separable, so each (n, c) slice is filtered along W, then H, then D. Every output of a pass is
 * the sum of its (at most k) in-range inputs, added in a fixed order: no running sum, so no rounding drift along an
 * axis, and for k <= 5 it costs about what a running add/subtract would. The inputs are scaled by 1/k³ on the way
 * in, which saves a final pass over the slice.
 *
 * The H and D passes work in place in y, saving the last r + 1 original lines in a small ring per thread. The
 * backward is the same filter applied to dy: the kernel is symmetric and the divisor constant, so the operator is
 * self-adjoint.
 */
#include "base/internal.h"
#include "repmode/ops.h"

#include <omp.h>
#include <string.h>

/* Plane elements the D pass handles at a time: long enough for vectors, short enough to keep the ring small. */
#define POOL_D_CHUNK 1024
/* The largest kernel accepted, which bounds the lines one output sums. */
#define POOL_MAX_KERNEL 5

/* out = the sum of cnt lines of n floats, in order. None of the lines overlaps out. */
static void sum_lines(float *restrict out, const float *const *src, int cnt, int64_t n)
{
    const float *restrict a = src[0];
    switch (cnt) {
    case 1:
        memcpy(out, a, (size_t)n * sizeof(float));
        return;
    case 2: {
        const float *restrict b = src[1];
        for (int64_t t = 0; t < n; t++)
            out[t] = a[t] + b[t];
        return;
    }
    case 3: {
        const float *restrict b = src[1], *restrict c = src[2];
        for (int64_t t = 0; t < n; t++)
            out[t] = a[t] + b[t] + c[t];
        return;
    }
    case 4: {
        const float *restrict b = src[1], *restrict c = src[2], *restrict d = src[3];
        for (int64_t t = 0; t < n; t++)
            out[t] = a[t] + b[t] + c[t] + d[t];
        return;
    }
    case 5: {
        const float *restrict b = src[1], *restrict c = src[2], *restrict d = src[3], *restrict e = src[4];
        for (int64_t t = 0; t < n; t++)
            out[t] = a[t] + b[t] + c[t] + d[t] + e[t];
        return;
    }
    default:
        /* Not reached while POOL_MAX_KERNEL is 5; kept so raising it stays correct. */
        memcpy(out, a, (size_t)n * sizeof(float));
        for (int j = 1; j < cnt; j++) {
            const float *restrict s = src[j];
            for (int64_t t = 0; t < n; t++)
                out[t] += s[t];
        }
        return;
    }
}

/* Box sums of radius r along one axis, in place. Line i is base[i·stride + t], t < n, for i < len; afterwards
 * line i holds the sum of the original lines max(0, i-r) … min(len-1, i+r). ring holds (r+1)·n floats: when line
 * i is overwritten, the originals of lines i-r … i that later outputs still need are in slot (line mod r+1). */
static void box_pass_inplace(float *base, int64_t len, int64_t stride, int64_t n, int r, float *ring)
{
    const float *src[POOL_MAX_KERNEL];
    for (int64_t i = 0; i < len; i++) {
        float *line = base + i * stride;
        memcpy(ring + (i % (r + 1)) * n, line, (size_t)n * sizeof(float));
        const int64_t lo = i - r > 0 ? i - r : 0;
        const int64_t hi = i + r < len - 1 ? i + r : len - 1;
        int cnt = 0;
        for (int64_t j = lo; j <= hi; j++)
            src[cnt++] = j <= i ? ring + (j % (r + 1)) * n : base + j * stride;
        sum_lines(line, src, cnt, n);
    }
}

/* Floats of working memory one thread needs, rounded up to whole cache lines so threads do not share one. */
static size_t pool_scratch_floats(int r, const int64_t ne[RM_MAX_DIMS])
{
    const int64_t w = ne[4], hw = ne[3] * ne[4];
    const int64_t chunk = hw < POOL_D_CHUNK ? hw : POOL_D_CHUNK;
    const int64_t ring_line = w > chunk ? w : chunk;
    const size_t floats = (size_t)(w + 2 * r) + (size_t)(r + 1) * (size_t)ring_line;
    return rm_work_floats((int64_t)floats);
}

/* One (n, c) slice: y = box(x) / k³. scratch is pool_scratch_floats() floats. y may be x. */
static void pool_slice(int kernel, const float *x, float *y, int64_t d, int64_t h, int64_t w, float *scratch)
{
    const int r = (kernel - 1) / 2;
    const float inv = 1.0f / (float)(kernel * kernel * kernel);
    float *row = scratch;            /* one x row with r zeros either side */
    float *ring = scratch + w + 2 * r;
    const float *taps[POOL_MAX_KERNEL];
    for (int j = 0; j < kernel; j++)
        taps[j] = row + j;

    for (int j = 0; j < r; j++) {
        row[j] = 0.0f;
        row[r + w + j] = 0.0f;
    }
    for (int64_t z = 0; z < d; z++) {
        /* W then H within one plane while it is in cache. */
        for (int64_t yy = 0; yy < h; yy++) {
            const float *xr = x + (z * h + yy) * w;
            for (int64_t t = 0; t < w; t++)
                row[r + t] = xr[t] * inv;
            sum_lines(y + (z * h + yy) * w, taps, kernel, w);
        }
        box_pass_inplace(y + z * h * w, h, w, w, r, ring);
    }
    const int64_t hw = h * w;
    for (int64_t c0 = 0; c0 < hw; c0 += POOL_D_CHUNK) {
        const int64_t n = hw - c0 < POOL_D_CHUNK ? hw - c0 : POOL_D_CHUNK;
        box_pass_inplace(y + c0, d, hw, n, r, ring);
    }
}

/* The shared forward/backward: validates, then filters every (n, c) slice of in into out. */
static rm_status pool_run(rm_ctx *ctx, int kernel, const rm_tensor *in, rm_tensor *out, const char *in_name,
                          const char *out_name)
{
    if (kernel != 3 && kernel != 5)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "avgpool3d: kernel %d is not 3 or 5", kernel);
    RM_TRY(rm_check_tensor(ctx, in, in_name));
    RM_TRY(rm_check_shape(ctx, out, out_name, in->ne));

    const int r = (kernel - 1) / 2;
    const int64_t slices = in->ne[0] * in->ne[1];
    const int64_t d = in->ne[2], h = in->ne[3], w = in->ne[4];
    const int64_t vol = d * h * w;
    const int nth = (int64_t)ctx->n_threads < slices ? ctx->n_threads : (int)slices;
    const size_t per_thread = pool_scratch_floats(r, in->ne);
    float *work = rm_ctx_workspace(ctx, (size_t)nth * per_thread * sizeof(float));
    if (!work)
        return rm_fail(ctx, RM_ERR_NOMEM, "avgpool3d: cannot allocate %zu bytes of working memory",
                       (size_t)nth * per_thread * sizeof(float));

    const float *src = in->data;
    float *dst = out->data;
#pragma omp parallel num_threads(nth)
    {
        /* A team may be smaller than asked for, never larger: every thread id has its scratch. */
        float *scratch = work + (size_t)omp_get_thread_num() * per_thread;
#pragma omp for schedule(static)
        for (int64_t s = 0; s < slices; s++)
            pool_slice(kernel, src + s * vol, dst + s * vol, d, h, w, scratch);
    }
    return RM_OK;
}

rm_status rm_avgpool3d_forward(rm_ctx *ctx, int kernel, const rm_tensor *x, rm_tensor *y)
{
    return pool_run(ctx, kernel, x, y, "avgpool3d: x", "avgpool3d: y");
}

rm_status rm_avgpool3d_backward(rm_ctx *ctx, int kernel, const rm_tensor *dy, rm_tensor *dx)
{
    /* Self-adjoint: dx[i] = Σ over outputs o whose window holds i of dy[o]/k³ = the same box filter of dy. */
    return pool_run(ctx, kernel, dy, dx, "avgpool3d: dy", "avgpool3d: dx");
}

/* ---- mean over depth ----------------------------------------------------------------------------------------- */

/* Columns of the output that one thread takes at a time, at least: small maps are not worth a team. */
#define DEPTH_MEAN_GRAIN 4096

rm_status rm_depth_mean_forward(rm_ctx *ctx, const rm_tensor *x, rm_tensor *y)
{
    RM_TRY(rm_check_tensor(ctx, x, "depth mean: x"));
    const int64_t ne[RM_MAX_DIMS] = {x->ne[0], x->ne[1], 1, x->ne[3], x->ne[4]};
    RM_TRY(rm_check_shape(ctx, y, "depth mean: y", ne));
    const int64_t d = x->ne[2], plane = x->ne[3] * x->ne[4], n = x->ne[0] * x->ne[1] * plane;
    const float *src = x->data;
    float *dst = y->data;
    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n * d > DEPTH_MEAN_GRAIN)
    for (int64_t i = 0; i < n; i++) {
        const float *col = src + (i / plane) * d * plane + i % plane;
        double sum = 0.0;
        for (int64_t z = 0; z < d; z++)
            sum += col[z * plane];
        dst[i] = (float)(sum / (double)d);
    }
    return RM_OK;
}

rm_status rm_depth_mean_backward(rm_ctx *ctx, const rm_tensor *dy, rm_tensor *dx)
{
    RM_TRY(rm_check_tensor(ctx, dx, "depth mean: dx"));
    const int64_t ne[RM_MAX_DIMS] = {dx->ne[0], dx->ne[1], 1, dx->ne[3], dx->ne[4]};
    RM_TRY(rm_check_shape(ctx, dy, "depth mean: dy", ne));
    const int64_t d = dx->ne[2], plane = dx->ne[3] * dx->ne[4], slices = dx->ne[0] * dx->ne[1];
    const float depth = (float)d;
    const float *src = dy->data;
    float *dst = dx->data;
    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (slices * d * plane > DEPTH_MEAN_GRAIN)
    for (int64_t r = 0; r < slices * d; r++) {
        const float *g = src + (r / d) * plane;
        float *out = dst + r * plane;
        for (int64_t i = 0; i < plane; i++)
            out[i] = g[i] / depth;
    }
    return RM_OK;
}
