/* Softmax over C at every (n, d, h, w), and its backward from the output.
 *
 * The channels of one voxel are D·H·W floats apart, so each item of work is a tile of RM_SOFTMAX_TILE consecutive
 * voxels of one sample: the loops over C run outside, the loops over the tile inside, contiguous and vectorizable.
 */
#include "base/chunks.h"
#include "repmode/ops.h"

#include <math.h>

#define RM_SOFTMAX_TILE 256

/* The tiles of a tensor: each sample's D·H·W voxels cut into tiles. */
static chunk_grid softmax_tiles_of(const rm_tensor *x)
{
    return chunk_grid_of(x->ne[0], rm_tensor_spatial_numel(x), RM_SOFTMAX_TILE);
}

/* Tile k: the offset of its first voxel in channel 0 of its sample, and in *len its voxel count. */
static int64_t softmax_tile(const chunk_grid *t, int64_t channels, int64_t k, int64_t *len)
{
    int64_t n, s0, s1;
    chunk_grid_at(t, k, &n, &s0, &s1);
    *len = s1 - s0;
    return n * channels * t->len + s0;
}

rm_status rm_softmax_forward(rm_ctx *ctx, const rm_tensor *x, rm_tensor *y)
{
    RM_TRY(rm_check_tensor(ctx, x, "softmax: x"));
    RM_TRY(rm_check_shape(ctx, y, "softmax: y", x->ne));

    const chunk_grid t = softmax_tiles_of(x);
    const int64_t channels = x->ne[1];

    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (t.count > 1)
    for (int64_t k = 0; k < t.count; k++) {
        int64_t len;
        const int64_t base = softmax_tile(&t, channels, k, &len);
        const float *xs = x->data + base;
        float *ys = y->data + base;
        float mx[RM_SOFTMAX_TILE];
        double sum[RM_SOFTMAX_TILE];

        /* Subtracting the maximum keeps every exponent <= 0: no overflow, and the largest term is exactly 1. */
        for (int64_t i = 0; i < len; i++)
            mx[i] = xs[i];
        for (int64_t c = 1; c < channels; c++)
            for (int64_t i = 0; i < len; i++)
                mx[i] = xs[c * t.len + i] > mx[i] ? xs[c * t.len + i] : mx[i];
        for (int64_t i = 0; i < len; i++)
            sum[i] = 0.0;
        /* y may be x: every element is read before it is written. */
        for (int64_t c = 0; c < channels; c++)
            for (int64_t i = 0; i < len; i++) {
                const float e = expf(xs[c * t.len + i] - mx[i]);
                ys[c * t.len + i] = e;
                sum[i] += e;
            }
        for (int64_t i = 0; i < len; i++)
            mx[i] = (float)(1.0 / sum[i]); /* reuse mx for the reciprocal */
        for (int64_t c = 0; c < channels; c++)
            for (int64_t i = 0; i < len; i++)
                ys[c * t.len + i] *= mx[i];
    }
    return RM_OK;
}

rm_status rm_softmax_backward(rm_ctx *ctx, const rm_tensor *y, const rm_tensor *dy, rm_tensor *dx)
{
    RM_TRY(rm_check_tensor(ctx, y, "softmax: y"));
    RM_TRY(rm_check_shape(ctx, dy, "softmax: dy", y->ne));
    if (!dx)
        return RM_OK;
    RM_TRY(rm_check_shape(ctx, dx, "softmax: dx", y->ne));

    const chunk_grid t = softmax_tiles_of(y);
    const int64_t channels = y->ne[1];

    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (t.count > 1)
    for (int64_t k = 0; k < t.count; k++) {
        int64_t len;
        const int64_t base = softmax_tile(&t, channels, k, &len);
        const float *ys = y->data + base, *dys = dy->data + base;
        float *dxs = dx->data + base;
        double dot[RM_SOFTMAX_TILE];
        float dotf[RM_SOFTMAX_TILE];

        /* dx = y·(dy - Σ_c y·dy): the Jacobian diag(y) - y·yᵀ applied to dy. */
        for (int64_t i = 0; i < len; i++)
            dot[i] = 0.0;
        for (int64_t c = 0; c < channels; c++)
            for (int64_t i = 0; i < len; i++)
                dot[i] += (double)ys[c * t.len + i] * dys[c * t.len + i];
        for (int64_t i = 0; i < len; i++)
            dotf[i] = (float)dot[i];
        /* dx may be dy: each element of dy is read just before the same element of dx is written. */
        for (int64_t c = 0; c < channels; c++)
            for (int64_t i = 0; i < len; i++)
                dxs[c * t.len + i] = ys[c * t.len + i] * (dys[c * t.len + i] - dotf[i]);
    }
    return RM_OK;
}
