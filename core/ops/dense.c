/* The dense layer, torch.nn.Linear: y (N, out) = x (N, in) · wᵀ + b, w (out, in).
 *
 * It only computes a MoDE gate's logits, a few thousand multiply-adds, so plain loops do. Every output element is one
 * sum in double over a fixed index order, and the threads share whole output rows or tiles of them, so the result
 * does not depend on the thread count.
 */
#include "base/internal.h"
#include "repmode/ops.h"

#define RM_DENSE_TILE 256

/* Σ a[i]·b[i] in double, over eight interleaved partial sums in a fixed order. */
static double dense_dot(const float *a, const float *b, int64_t n)
{
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            s[l] += (double)a[i + l] * b[i + l];
    for (; i < n; i++)
        s[0] += (double)a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* out[r, :] = Σ_j coef[r·r_stride + j·j_stride]·rows[j, :] for r < n_out, with `count` rows j of `len` floats.
 * Each output element is one double sum over j in order; threads share tiles of output rows. */
static void weighted_rows(rm_ctx *ctx, const float *coef, int64_t r_stride, int64_t j_stride, const float *rows,
                          int64_t count, int64_t len, int64_t n_out, float *out)
{
    const int64_t tiles = (len + RM_DENSE_TILE - 1) / RM_DENSE_TILE;
    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (n_out * tiles > 1)
    for (int64_t k = 0; k < n_out * tiles; k++) {
        const int64_t r = k / tiles, i0 = (k % tiles) * RM_DENSE_TILE;
        const int64_t n = i0 + RM_DENSE_TILE < len ? RM_DENSE_TILE : len - i0;
        double acc[RM_DENSE_TILE];
        for (int64_t i = 0; i < n; i++)
            acc[i] = 0.0;
        for (int64_t j = 0; j < count; j++) {
            const double g = coef[r * r_stride + j * j_stride];
            const float *row = rows + j * len + i0;
            for (int64_t i = 0; i < n; i++)
                acc[i] += g * row[i];
        }
        for (int64_t i = 0; i < n; i++)
            out[r * len + i0 + i] = (float)acc[i];
    }
}

/* Checks x, w and the (N, out) tensor `y_name` (y or dy); *in_out receives in. */
static rm_status dense_check(rm_ctx *ctx, const rm_tensor *x, const rm_tensor *w, const rm_tensor *y,
                             const char *y_name, int64_t *in_out)
{
    RM_TRY(rm_check_tensor(ctx, x, "dense: x"));
    RM_TRY(rm_check_tensor(ctx, w, "dense: w"));
    const int64_t in = rm_tensor_sample_numel(x);
    const int64_t w_ne[RM_MAX_DIMS] = {w->ne[0], in, 1, 1, 1};
    RM_TRY(rm_check_shape(ctx, w, "dense: w", w_ne));
    const int64_t y_ne[RM_MAX_DIMS] = {x->ne[0], w->ne[0], 1, 1, 1};
    RM_TRY(rm_check_shape(ctx, y, y_name, y_ne));
    *in_out = in;
    return RM_OK;
}

rm_status rm_dense_forward(rm_ctx *ctx, const rm_tensor *x, const rm_tensor *w, const float *b, rm_tensor *y)
{
    int64_t in;
    RM_TRY(dense_check(ctx, x, w, y, "dense: y", &in));

    const int64_t batch = x->ne[0], out = w->ne[0];
    const float *xd = x->data, *wd = w->data;
    float *yd = y->data;

    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (batch * out > 1)
    for (int64_t k = 0; k < batch * out; k++) {
        const int64_t n = k / out, o = k % out;
        const double s = dense_dot(xd + n * in, wd + o * in, in);
        yd[k] = (float)(b ? s + b[o] : s);
    }
    return RM_OK;
}

rm_status rm_dense_backward(rm_ctx *ctx, const rm_tensor *x, const rm_tensor *w, const rm_tensor *dy, rm_tensor *dx,
                            rm_tensor *dw, float *db)
{
    int64_t in;
    RM_TRY(dense_check(ctx, x, w, dy, "dense: dy", &in));
    if (dx)
        RM_TRY(rm_check_shape(ctx, dx, "dense: dx", x->ne));
    if (dw)
        RM_TRY(rm_check_shape(ctx, dw, "dense: dw", w->ne));

    const int64_t batch = x->ne[0], out = w->ne[0];
    /* dx[n, :] = Σ_o dy[n, o]·w[o, :] and dw[o, :] = Σ_n dy[n, o]·x[n, :]: both are rows of coefficients times a
     * stack of rows. */
    if (dx)
        weighted_rows(ctx, dy->data, out, 1, w->data, out, in, batch, dx->data);
    if (dw)
        weighted_rows(ctx, dy->data, 1, out, x->data, batch, in, out, dw->data);
    if (db) {
        for (int64_t o = 0; o < out; o++) {
            double s = 0.0;
            for (int64_t n = 0; n < batch; n++)
                s += dy->data[n * out + o];
            db[o] = (float)s;
        }
    }
    return RM_OK;
}
