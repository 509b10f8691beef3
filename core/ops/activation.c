/* Activations: ReLU, FReLU (max(x, 0) + bias[c]) and Mish (x·tanh(softplus(x))), forward and backward.
 *
 * Work is split into blocks: every (n, c) plane of D·H·W voxels is cut into chunks of RM_CHUNK elements. A block
 * is always computed the same way, whatever thread runs it, so results do not depend on the thread count. The FReLU
 * bias gradient sums each block in double into its own slot and then adds the slots of a channel in block order.
 */
#include "base/chunks.h"
#include "ops/activation_apply.h"
#include "repmode/ops.h"

#include <math.h>

/* The blocks of a tensor: its (n, c) planes of D·H·W voxels, cut into chunks. */
static chunk_grid act_blocks_of(const rm_tensor *x)
{
    return chunk_grid_of(x->ne[0] * x->ne[1], rm_tensor_spatial_numel(x), RM_CHUNK);
}

/* Block k covers elements [*begin, *end) of the flat tensor and belongs to channel *c. */
static void act_block_range(const chunk_grid *b, int64_t channels, int64_t k, int64_t *begin, int64_t *end,
                            int64_t *c)
{
    int64_t plane, lo, hi;
    chunk_grid_at(b, k, &plane, &lo, &hi);
    *begin = plane * b->len + lo;
    *end = plane * b->len + hi;
    *c = plane % channels;
}

/* d/dx x·tanh(sp(x)) = t + x·sech²(sp)·sigmoid(x). In the same terms, sech²(sp)·sigmoid(x) is 4e²(1+e)/D² for
 * x >= 0 and 4e(1+e)/D² for x < 0 (D the denominator of rm_mish_tanh_sp), so no term overflows and the limits are
 * exact: 1 for large x (e underflows to 0), 0 for very negative x. */
static inline float mish_grad(float x)
{
    const float e = expf(-fabsf(x));
    if (x >= 0.0f) {
        const float d = 1.0f + 2.0f * e + 2.0f * e * e;
        const float t = (1.0f + 2.0f * e) / d;
        return t + x * (4.0f * e * e * (1.0f + e)) / (d * d);
    }
    const float q = e * (e + 2.0f);
    const float d = q + 2.0f;
    return q / d + x * (4.0f * e * (1.0f + e)) / (d * d);
}

static rm_status act_check(rm_ctx *ctx, const char *op, rm_activation act, const void *bias, const char *bias_name)
{
    if (act != RM_ACT_RELU && act != RM_ACT_FRELU && act != RM_ACT_MISH)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: unknown activation %d", op, (int)act);
    if (act == RM_ACT_FRELU && !bias)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: FReLU needs %s (C,), got NULL", op, bias_name);
    return RM_OK;
}

rm_status rm_activation_forward(rm_ctx *ctx, rm_activation act, const rm_tensor *x, const float *bias, rm_tensor *y)
{
    RM_TRY(act_check(ctx, "activation", act, bias, "bias"));
    RM_TRY(rm_check_tensor(ctx, x, "activation: x"));
    RM_TRY(rm_check_shape(ctx, y, "activation: y", x->ne));

    const chunk_grid blk = act_blocks_of(x);
    const int64_t channels = x->ne[1];
    const float *xd = x->data;
    float *yd = y->data;

    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (blk.count > 1)
    for (int64_t k = 0; k < blk.count; k++) {
        int64_t i0, i1, c;
        act_block_range(&blk, channels, k, &i0, &i1, &c);
        rm_act_apply(act, act == RM_ACT_FRELU ? bias[c] : 0.0f, xd + i0, yd + i0, i1 - i0);
    }
    return RM_OK;
}

rm_status rm_activation_backward(rm_ctx *ctx, rm_activation act, const rm_tensor *x, const rm_tensor *dy,
                                 rm_tensor *dx, float *dbias)
{
    if (act != RM_ACT_RELU && act != RM_ACT_FRELU && act != RM_ACT_MISH)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "activation: unknown activation %d", (int)act);
    RM_TRY(rm_check_tensor(ctx, x, "activation: x"));
    RM_TRY(rm_check_shape(ctx, dy, "activation: dy", x->ne));
    if (dx)
        RM_TRY(rm_check_shape(ctx, dx, "activation: dx", x->ne));

    const int want_dbias = act == RM_ACT_FRELU && dbias;
    if (!dx && !want_dbias)
        return RM_OK;

    const chunk_grid blk = act_blocks_of(x);
    const int64_t channels = x->ne[1];
    double *partial = NULL;
    if (want_dbias) {
        partial = rm_ctx_workspace(ctx, (size_t)blk.count * sizeof *partial);
        if (!partial)
            return RM_ERR_NOMEM;
    }
    const float *xd = x->data;
    const float *dyd = dy->data;
    float *dxd = dx ? dx->data : NULL;

    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (blk.count > 1)
    for (int64_t k = 0; k < blk.count; k++) {
        int64_t i0, i1, c;
        act_block_range(&blk, channels, k, &i0, &i1, &c);
        /* dx may be dy: the bias sum reads this block of dy before dx overwrites it. */
        if (partial) {
            double s[8] = {0};
            int64_t i = i0;
            for (; i + 8 <= i1; i += 8)
                for (int l = 0; l < 8; l++)
                    s[l] += dyd[i + l];
            for (; i < i1; i++)
                s[0] += dyd[i];
            partial[k] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        }
        if (!dxd)
            continue;
        if (act == RM_ACT_MISH) {
            for (int64_t i = i0; i < i1; i++)
                dxd[i] = dyd[i] * mish_grad(xd[i]);
        } else {
            /* ReLU and FReLU: the gradient at exactly 0 is 0, as in PyTorch. The load is unconditional and each
             * element is read before it is written (dx may be dy), so the loop vectorizes without a branch. */
#pragma omp simd
            for (int64_t i = i0; i < i1; i++) {
                const float g = dyd[i];
                dxd[i] = xd[i] > 0.0f ? g : 0.0f;
            }
        }
    }

    if (partial) {
        /* Channel c's blocks, in order: for each sample n, the chunks of plane (n, c). */
        for (int64_t c = 0; c < channels; c++) {
            double s = 0.0;
            for (int64_t n = 0; n < x->ne[0]; n++)
                for (int64_t j = 0; j < blk.per_plane; j++)
                    s += partial[(n * channels + c) * blk.per_plane + j];
            dbias[c] = (float)s;
        }
    }
    return RM_OK;
}
