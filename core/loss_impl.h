/* What the losses share: fixed-size chunks (so partial sums never depend on the thread count) and mask counting. */
#ifndef REPMODE_LOSS_IMPL_H
#define REPMODE_LOSS_IMPL_H

#include "rm_impl.h"

#define RM_LOSS_CHUNK ((int64_t)1 << 16)

static inline int64_t loss_chunks(int64_t n) { return (n + RM_LOSS_CHUNK - 1) / RM_LOSS_CHUNK; }

static inline void chunk_range(int64_t k, int64_t n, int64_t *i0, int64_t *i1)
{
    *i0 = k * RM_LOSS_CHUNK;
    *i1 = *i0 + RM_LOSS_CHUNK < n ? *i0 + RM_LOSS_CHUNK : n;
}

/* The number of voxels a mask selects (all of them without a mask). Integer counts: exact in any order. */
static inline int64_t mask_count(rm_ctx *ctx, const rm_tensor *mask, int64_t n)
{
    if (!mask)
        return n;
    const float *m = mask->data;
    int64_t count = 0;
    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) reduction(+ : count) if (n > RM_LOSS_CHUNK)
    for (int64_t i = 0; i < n; i++)
        count += m[i] > 0.5f;
    return count;
}

#endif /* REPMODE_LOSS_IMPL_H */
