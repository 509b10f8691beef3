/* Max pooling: a k×k×k maximum filter, stride 1, padding (k-1)/2 that never wins (PyTorch's max_pool3d with
 * stride 1: the padding is -inf), as the Inception block's pooling branch takes it (docs/network.md §9).
 *
 * Each output is its window's first maximum in (depth, height, width) order, NaN winning as it does in PyTorch; the
 * backward finds that same element again and adds the output's gradient to it, so ties go where PyTorch sends them.
 * Threads split (n, c) slices: every slice is one thread's, inputs and outputs alike.
 */
#include "base/internal.h"
#include "repmode/ops.h"

#include <math.h>
#include <string.h>

/* The largest kernel accepted: the Inception block's is 3. */
#define MAXPOOL_MAX_KERNEL 7

/* The index in its slice of the maximum of the window centred on (z, y, x). */
static int64_t window_argmax(const float *s, const int64_t dims[3], int r, int64_t z, int64_t y, int64_t x)
{
    int64_t best = -1;
    float top = 0.0f;
    for (int64_t a = z - r; a <= z + r; a++)
        for (int64_t b = y - r; b <= y + r; b++)
            for (int64_t c = x - r; c <= x + r; c++) {
                if (a < 0 || a >= dims[0] || b < 0 || b >= dims[1] || c < 0 || c >= dims[2])
                    continue;
                const int64_t i = (a * dims[1] + b) * dims[2] + c;
                if (best < 0 || s[i] > top || (isnan(s[i]) && !isnan(top))) {
                    best = i;
                    top = s[i];
                }
            }
    return best;
}

static rm_status check(rm_ctx *ctx, int kernel, const rm_tensor *x, const rm_tensor *y, const char *xn, const char *yn)
{
    if (kernel < 1 || kernel > MAXPOOL_MAX_KERNEL || kernel % 2 == 0)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "maxpool3d: kernel %d is not odd in 1..%d", kernel, MAXPOOL_MAX_KERNEL);
    RM_TRY(rm_check_tensor(ctx, x, xn));
    return rm_check_shape(ctx, y, yn, x->ne);
}

rm_status rm_maxpool3d_forward(rm_ctx *ctx, int kernel, const rm_tensor *x, rm_tensor *y)
{
    RM_TRY(check(ctx, kernel, x, y, "maxpool3d: x", "maxpool3d: y"));
    const int64_t dims[3] = {x->ne[2], x->ne[3], x->ne[4]}, vol = dims[0] * dims[1] * dims[2];
    const int r = kernel / 2;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t sl = 0; sl < x->ne[0] * x->ne[1]; sl++) {
        const float *s = x->data + sl * vol;
        float *d = y->data + sl * vol;
        for (int64_t z = 0; z < dims[0]; z++)
            for (int64_t h = 0; h < dims[1]; h++)
                for (int64_t w = 0; w < dims[2]; w++)
                    d[(z * dims[1] + h) * dims[2] + w] = s[window_argmax(s, dims, r, z, h, w)];
    }
    return RM_OK;
}

rm_status rm_maxpool3d_backward(rm_ctx *ctx, int kernel, const rm_tensor *x, const rm_tensor *dy, rm_tensor *dx)
{
    RM_TRY(check(ctx, kernel, x, dy, "maxpool3d: x", "maxpool3d: dy"));
    RM_TRY(rm_check_shape(ctx, dx, "maxpool3d: dx", x->ne));
    const int64_t dims[3] = {x->ne[2], x->ne[3], x->ne[4]}, vol = dims[0] * dims[1] * dims[2];
    const int r = kernel / 2;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t sl = 0; sl < x->ne[0] * x->ne[1]; sl++) {
        const float *s = x->data + sl * vol, *g = dy->data + sl * vol;
        float *d = dx->data + sl * vol;
        memset(d, 0, (size_t)vol * sizeof(float));
        for (int64_t z = 0; z < dims[0]; z++)
            for (int64_t h = 0; h < dims[1]; h++)
                for (int64_t w = 0; w < dims[2]; w++)
                    d[window_argmax(s, dims, r, z, h, w)] += g[(z * dims[1] + h) * dims[2] + w];
    }
    return RM_OK;
}
