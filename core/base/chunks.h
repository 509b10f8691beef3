/* Reductions over fixed-size chunks, as the losses and metrics make them: each chunk's partial sums go into its own
 * slot and the slots are combined in order, so no sum depends on the thread count. Also planes cut into chunks, and
 * the count a mask selects. */
#ifndef REPMODE_CHUNKS_H
#define REPMODE_CHUNKS_H

#include "base/internal.h"

static inline int64_t chunk_count(int64_t n) { return (n + RM_CHUNK - 1) / RM_CHUNK; }

static inline void chunk_range(int64_t k, int64_t n, int64_t *i0, int64_t *i1)
{
    *i0 = k * RM_CHUNK;
    *i1 = *i0 + RM_CHUNK < n ? *i0 + RM_CHUNK : n;
}

/* Planes of `len` items (that need not lie next to each other), each cut into pieces of at most `size` items: the
 * work items of the ops that keep a plane's channel or sample in view. Piece k is in plane k / per_plane. */
typedef struct chunk_grid {
    int64_t len, size, per_plane, count;
} chunk_grid;

static inline chunk_grid chunk_grid_of(int64_t planes, int64_t len, int64_t size)
{
    const int64_t per_plane = (len + size - 1) / size;
    return (chunk_grid){len, size, per_plane, planes * per_plane};
}

/* Piece k: items [*lo, *hi) of plane *plane. */
static inline void chunk_grid_at(const chunk_grid *g, int64_t k, int64_t *plane, int64_t *lo, int64_t *hi)
{
    *plane = k / g->per_plane;
    *lo = k % g->per_plane * g->size;
    *hi = *lo + g->size < g->len ? *lo + g->size : g->len;
}

/* Calls fn(arg, slot, i0, i1) for every chunk k = [i0, i1) of n items, the chunks shared out over the context's
 * threads; slot is chunk k's `size` bytes in `slots` (NULL without slots). A chunk writes only its own slot or
 * elements, so no result depends on which thread runs it. */
typedef void (*chunk_fn)(const void *arg, void *slot, int64_t i0, int64_t i1);

static inline void for_each_chunk(rm_ctx *ctx, int64_t n, void *slots, size_t size, chunk_fn fn, const void *arg)
{
    const int64_t chunks = chunk_count(n);
    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (chunks > 1)
    for (int64_t k = 0; k < chunks; k++) {
        int64_t i0, i1;
        chunk_range(k, n, &i0, &i1);
        fn(arg, slots ? (char *)slots + (size_t)k * size : NULL, i0, i1);
    }
}

/* for_each_chunk into one new slot of `size` bytes per chunk, in the context's working memory: the slots, in chunk
 * order, or NULL (with the error set) when the memory cannot grow. */
static inline void *chunk_reduce(rm_ctx *ctx, int64_t n, size_t size, chunk_fn fn, const void *arg)
{
    void *slots = rm_ctx_workspace(ctx, (size_t)chunk_count(n) * size);
    if (slots)
        for_each_chunk(ctx, n, slots, size, fn, arg);
    return slots;
}

/* The number of voxels a mask selects (all of them without a mask). Integer counts: exact in any order. */
static inline int64_t mask_count(rm_ctx *ctx, const rm_tensor *mask, int64_t n)
{
    if (!mask)
        return n;
    const float *m = mask->data;
    int64_t count = 0;
    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) reduction(+ : count) if (n > RM_CHUNK)
    for (int64_t i = 0; i < n; i++)
        count += m[i] > 0.5f;
    return count;
}

#endif /* REPMODE_CHUNKS_H */
