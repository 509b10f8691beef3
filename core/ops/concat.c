/* Concatenation along C and its backward, the split of dy into the inputs' gradients.
 *
 * In sample n, input i occupies one contiguous run of C_i·D·H·W floats of y, starting at channel offset_i. Both
 * directions copy those runs, cut into fixed chunks that the threads share.
 */
#include "base/chunks.h"
#include "repmode/ops.h"

#include <stdio.h>
#include <string.h>

/* Copies the run of `c` channels at channel `offset` of every sample between y (`yc` channels) and a tensor that
 * holds just those channels; to_y picks the direction. */
static void concat_copy(rm_ctx *ctx, float *y, int64_t yc, float *part, int64_t c, int64_t offset, int64_t batch,
                        int64_t spatial, int to_y)
{
    const int64_t run = c * spatial;
    const chunk_grid q = chunk_grid_of(batch, run, RM_CHUNK);

    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (q.count > 1)
    for (int64_t k = 0; k < q.count; k++) {
        int64_t n, lo, hi;
        chunk_grid_at(&q, k, &n, &lo, &hi);
        const int64_t len = hi - lo;
        float *py = y + (n * yc + offset) * spatial + lo;
        float *pp = part + n * run + lo;
        if (to_y)
            memcpy(py, pp, (size_t)len * sizeof *py);
        else
            memcpy(pp, py, (size_t)len * sizeof *pp);
    }
}

/* The expected shape of part i: y's N, D, H, W with the part's own channel count. */
static void part_shape(const rm_tensor *y, const rm_tensor *part, int64_t ne[RM_MAX_DIMS])
{
    for (int d = 0; d < RM_MAX_DIMS; d++)
        ne[d] = y->ne[d];
    ne[1] = part->ne[1];
}

/* Checks the pieces of a concatenation against the whole (y, or dy): every piece has the whole's N, D, H, W and
 * their channels add up to the whole's. With `may_skip` (gradients) a piece with NULL data still gives its shape,
 * which places the pieces after it. */
static rm_status check_parts(rm_ctx *ctx, const rm_tensor *whole, const char *whole_name,
                             const rm_tensor *const *parts, int n, const char *parts_name, const char *what,
                             int may_skip)
{
    if (!parts)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "concat: %s is NULL", parts_name);
    if (n < 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "concat: n = %d, expected at least 1 input", n);
    char name[48];
    snprintf(name, sizeof name, "concat: %s", whole_name);
    RM_TRY(rm_check_tensor(ctx, whole, name));
    int64_t channels = 0;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "concat: %s[%d]", parts_name, i);
        if (may_skip && !parts[i])
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s is NULL (to skip a gradient, give its shape with NULL data)",
                           name);
        rm_tensor shape_only = parts[i] ? *parts[i] : (rm_tensor){0};
        float placeholder = 0.0f;
        if (may_skip && !shape_only.data)
            shape_only.data = &placeholder;
        const rm_tensor *part = may_skip ? &shape_only : parts[i];
        RM_TRY(rm_check_tensor(ctx, part, name));
        int64_t ne[RM_MAX_DIMS];
        part_shape(whole, part, ne);
        RM_TRY(rm_check_shape(ctx, part, name, ne));
        channels += part->ne[1];
    }
    if (channels != whole->ne[1])
        return rm_fail(ctx, RM_ERR_SHAPE, "concat: the %s have %lld channels in all, %s has %lld", what,
                       (long long)channels, whole_name, (long long)whole->ne[1]);
    return RM_OK;
}

rm_status rm_concat_forward(rm_ctx *ctx, const rm_tensor *const *xs, int n, rm_tensor *y)
{
    RM_TRY(check_parts(ctx, y, "y", xs, n, "xs", "inputs", 0));
    const int64_t spatial = rm_tensor_spatial_numel(y);
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        concat_copy(ctx, y->data, y->ne[1], xs[i]->data, xs[i]->ne[1], offset, y->ne[0], spatial, 1);
        offset += xs[i]->ne[1];
    }
    return RM_OK;
}

rm_status rm_concat_backward(rm_ctx *ctx, const rm_tensor *dy, rm_tensor *const *dxs, int n)
{
    RM_TRY(check_parts(ctx, dy, "dy", (const rm_tensor *const *)dxs, n, "dxs", "gradients", 1));
    const int64_t spatial = rm_tensor_spatial_numel(dy);
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (dxs[i]->data)
            concat_copy(ctx, dy->data, dy->ne[1], dxs[i]->data, dxs[i]->ne[1], offset, dy->ne[0], spatial, 0);
        offset += dxs[i]->ne[1];
    }
    return RM_OK;
}
