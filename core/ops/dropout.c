/* Dropout with a counter-based mask: element i of a tensor survives when a hash of (seed, i) maps to a uniform
 * number u in [0, 1) with u >= p. The mask needs no state and no storage, and the forward and the backward
 * recompute the same mask from the same (p, seed), in any order and on any number of threads.
 */
#include "base/chunks.h"
#include "base/rng.h"
#include "repmode/ops.h"

#include <string.h>

/* The seed is hashed once into a key; the index is hashed separately and mixed with the key, so two seeds give
 * unrelated masks rather than shifted copies of one stream. */
static inline uint64_t dropout_key(uint64_t seed) { return rm_mix64(seed + RM_GOLDEN); }

static inline int dropout_kept_key(float p, uint64_t key, int64_t index)
{
    return rm_u01f(rm_mix64(key ^ rm_mix64((uint64_t)index * RM_GOLDEN + UINT64_C(1)))) >= p;
}

int rm_dropout_kept(float p, uint64_t seed, int64_t index) { return dropout_kept_key(p, dropout_key(seed), index); }

/* out = in · kept / (1 - p), elementwise; out may be in. */
static void dropout_apply(rm_ctx *ctx, float p, uint64_t seed, const rm_tensor *in, rm_tensor *out)
{
    const int64_t n = rm_tensor_numel(in);
    const float *src = in->data;
    float *dst = out->data;
    if (p == 0.0f) {
        /* Everything survives with scale 1: a copy. */
        if (dst != src)
            memcpy(dst, src, (size_t)n * sizeof *dst);
        return;
    }
    const float scale = 1.0f / (1.0f - p);
    const uint64_t key = dropout_key(seed);
    const int64_t chunks = chunk_count(n);

    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (chunks > 1)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t i0, i1;
        chunk_range(k, n, &i0, &i1);
        for (int64_t i = i0; i < i1; i++)
            dst[i] = dropout_kept_key(p, key, i) ? src[i] * scale : 0.0f;
    }
}

static rm_status dropout_check(rm_ctx *ctx, const char *op, float p, const rm_tensor *in, const char *in_name,
                               const rm_tensor *out, const char *out_name)
{
    /* Written so that NaN fails too. */
    if (!(p >= 0.0f && p < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: p = %g is outside [0, 1)", op, (double)p);
    RM_TRY(rm_check_tensor(ctx, in, in_name));
    return rm_check_shape(ctx, out, out_name, in->ne);
}

rm_status rm_dropout_forward(rm_ctx *ctx, float p, uint64_t seed, const rm_tensor *x, rm_tensor *y)
{
    RM_TRY(dropout_check(ctx, "dropout", p, x, "dropout: x", y, "dropout: y"));
    dropout_apply(ctx, p, seed, x, y);
    return RM_OK;
}

rm_status rm_dropout_backward(rm_ctx *ctx, float p, uint64_t seed, const rm_tensor *dy, rm_tensor *dx)
{
    if (!dx) {
        /* No gradient wanted: still check the rest. */
        if (!(p >= 0.0f && p < 1.0f))
            return rm_fail(ctx, RM_ERR_ARGUMENT, "dropout: p = %g is outside [0, 1)", (double)p);
        return rm_check_tensor(ctx, dy, "dropout: dy");
    }
    RM_TRY(dropout_check(ctx, "dropout", p, dy, "dropout: dy", dx, "dropout: dx"));
    dropout_apply(ctx, p, seed, dy, dx);
    return RM_OK;
}
