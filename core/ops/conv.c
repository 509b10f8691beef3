/* Public convolution and transposed convolution: argument checks, then the engine (conv_engine.h).
 *
 * A transposed convolution is the adjoint of a convolution, so it needs no arithmetic of its own: its forward is
 * the data gradient of the convolution with the same weight (w's (Ci, Co, kd, k, k) layout is that convolution's
 * (Co', Ci', kd, k, k)), its data gradient is that convolution's forward, and its weight gradient is that
 * convolution's weight gradient with the roles of input and output gradient exchanged.
 */
#include "ops/conv_engine.h"

#include <limits.h>
#include <string.h>

#define RM_CONV_MAX_KERNEL 7

rm_conv3d_params rm_conv3d_same(int kernel)
{
    rm_conv3d_params p = {kernel, 1, (kernel - 1) / 2, kernel - 1 - (kernel - 1) / 2, 0};
    return p;
}

rm_conv3d_params rm_conv3d_strided(int kernel, int stride)
{
    rm_conv3d_params p = {kernel, stride, 0, 0, 0};
    return p;
}

rm_conv3d_params rm_conv3d_planar(rm_conv3d_params p)
{
    p.planar = 1;
    return p;
}

int64_t rm_conv3d_out_size(const rm_conv3d_params *p, int axis, int64_t in)
{
    if (axis == 0 && p->planar)
        return in;
    const int64_t span = in + p->pad_before + p->pad_after - p->kernel;
    return span < 0 ? -1 : span / p->stride + 1;
}

/* The kernel's depth: 1 when planar. */
static int64_t kernel_depth(const rm_conv3d_params *p)
{
    return p->planar ? 1 : p->kernel;
}

/* Checks the parameters, x and w, whose shape is (Co, Ci, kd, k, k), or (Ci, Co, kd, k, k) when transposed. */
static rm_status check_args(rm_ctx *ctx, const char *op, const rm_conv3d_params *p, int transposed, const rm_tensor *x,
                            const rm_tensor *w)
{
    if (!p)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: params is NULL", op);
    if (p->kernel < 1 || p->kernel > RM_CONV_MAX_KERNEL)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: kernel size %d is outside 1..%d", op, p->kernel, RM_CONV_MAX_KERNEL);
    if (p->stride < 1 || p->stride > RM_CONV_MAX_KERNEL)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: stride %d is outside 1..%d", op, p->stride, RM_CONV_MAX_KERNEL);
    if (p->pad_before < 0 || p->pad_after < 0 || p->pad_before >= p->kernel || p->pad_after >= p->kernel)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: padding %d, %d must be in 0..%d", op, p->pad_before, p->pad_after,
                       p->kernel - 1);
    if (p->planar != 0 && p->planar != 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: planar is %d, not 0 or 1", op, p->planar);
    if (transposed && (p->pad_before != 0 || p->pad_after != 0))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: padding is not supported", op);
    RM_TRY(rm_check_tensor(ctx, x, "x"));
    RM_TRY(rm_check_tensor(ctx, w, "w"));
    const int64_t k = p->kernel;
    const int64_t w_ne[RM_MAX_DIMS] = {transposed ? x->ne[1] : w->ne[0], transposed ? w->ne[1] : x->ne[1],
                                       kernel_depth(p), k, k};
    return rm_check_shape(ctx, w, "w", w_ne);
}

/* The BLAS interface counts in int: one call's matrices must stay below 2^31 elements per dimension. */
static rm_status check_blas_limits(rm_ctx *ctx, const char *op, const rm_conv_geom *g)
{
    const int64_t taps = rm_conv_taps(g);
    const int64_t big[] = {g->ci * taps, g->co * taps, g->in[0] * g->in[1] * g->in[2],
                           g->out[0] * g->out[1] * g->out[2]};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        if (big[i] > INT_MAX)
            return rm_fail(ctx, RM_ERR_SHAPE,
                           "%s: %lld elements in one dimension exceed the limit of one call (%d); "
                           "split the volume into patches",
                           op, (long long)big[i], INT_MAX);
    return RM_OK;
}

/* The engine's geometry of p on one axis each (the sizes are the caller's to fill). */
static rm_conv_geom params_geom(const rm_conv3d_params *p, int64_t n, int64_t ci, int64_t co, int64_t pad)
{
    return (rm_conv_geom){.n = n,
                          .ci = ci,
                          .co = co,
                          .k = p->kernel,
                          .s = p->stride,
                          .pad = (int)pad,
                          .kd = (int)kernel_depth(p),
                          .sd = p->planar ? 1 : p->stride,
                          .pad_d = p->planar ? 0 : (int)pad};
}

/* Checks a convolution from x (N, Ci, D, H, W) with w (Co, Ci, kd, k, k) and fills the geometry and y's shape. */
static rm_status conv_geometry(rm_ctx *ctx, const char *op, const rm_conv3d_params *p, const rm_tensor *x,
                               const rm_tensor *w, rm_conv_geom *g, int64_t y_ne[RM_MAX_DIMS])
{
    RM_TRY(check_args(ctx, op, p, 0, x, w));
    *g = params_geom(p, x->ne[0], x->ne[1], w->ne[0], p->pad_before);
    for (int a = 0; a < 3; a++) {
        g->in[a] = x->ne[2 + a];
        g->out[a] = rm_conv3d_out_size(p, a, g->in[a]);
        if (g->out[a] < 1)
            return rm_fail(ctx, RM_ERR_SHAPE, "%s: input size %lld along axis %d is smaller than the kernel %d", op,
                           (long long)g->in[a], 2 + a, p->kernel);
    }
    const int64_t ne[RM_MAX_DIMS] = {g->n, g->co, g->out[0], g->out[1], g->out[2]};
    memcpy(y_ne, ne, sizeof ne);
    return check_blas_limits(ctx, op, g);
}

/* Checks a transposed convolution from x (N, Ci, D, H, W) with w (Ci, Co, kd, k, k) and fills the geometry of its
 * adjoint convolution (from y to x) and y's shape. */
static rm_status conv_transpose_geometry(rm_ctx *ctx, const char *op, const rm_conv3d_params *p, const rm_tensor *x,
                                         const rm_tensor *w, rm_conv_geom *g, int64_t y_ne[RM_MAX_DIMS])
{
    RM_TRY(check_args(ctx, op, p, 1, x, w));
    *g = params_geom(p, x->ne[0], w->ne[1], x->ne[1], 0);
    for (int a = 0; a < 3; a++) {
        g->out[a] = x->ne[2 + a];
        g->in[a] = a == 0 ? (g->out[0] - 1) * g->sd + g->kd : (g->out[a] - 1) * g->s + g->k;
    }
    const int64_t ne[RM_MAX_DIMS] = {g->n, g->ci, g->in[0], g->in[1], g->in[2]};
    memcpy(y_ne, ne, sizeof ne);
    return check_blas_limits(ctx, op, g);
}

/* db[c] = Σ over n and space of dy[n, c]: one channel per item, summed in double in a fixed order. */
static void channel_sums(rm_ctx *ctx, const rm_tensor *dy, float *db)
{
    const int64_t N = dy->ne[0], C = dy->ne[1], v = rm_tensor_spatial_numel(dy);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double acc = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *plane = dy->data + (n * C + c) * v;
            for (int64_t i = 0; i < v; i++)
                acc += plane[i];
        }
        db[c] = (float)acc;
    }
}

static void add_channel_bias(rm_ctx *ctx, rm_tensor *y, const float *b)
{
    const int64_t N = y->ne[0], C = y->ne[1], v = rm_tensor_spatial_numel(y);
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t nc = 0; nc < N * C; nc++) {
        float *plane = y->data + nc * v;
        const float bc = b[nc % C];
        for (int64_t i = 0; i < v; i++)
            plane[i] += bc;
    }
}

/* Validates the gradients a backward call was given against the shapes of x, w and dy. */
static rm_status check_grads(rm_ctx *ctx, const rm_tensor *x, const rm_tensor *w, const rm_tensor *dy,
                             const int64_t dy_ne[RM_MAX_DIMS], const rm_tensor *dx, const rm_tensor *dw)
{
    RM_TRY(rm_check_shape(ctx, dy, "dy", dy_ne));
    if (dx)
        RM_TRY(rm_check_shape(ctx, dx, "dx", x->ne));
    if (dw)
        RM_TRY(rm_check_shape(ctx, dw, "dw", w->ne));
    return RM_OK;
}

rm_status rm_conv3d_forward(rm_ctx *ctx, const rm_conv3d_params *p, const rm_tensor *x, const rm_tensor *w,
                            const float *b, rm_tensor *y)
{
    rm_conv_geom g;
    int64_t y_ne[RM_MAX_DIMS];
    RM_TRY(conv_geometry(ctx, "conv3d", p, x, w, &g, y_ne));
    RM_TRY(rm_check_shape(ctx, y, "y", y_ne));
    return rm_conv_engine_forward(ctx, &g, x->data, w->data, b, y->data);
}

rm_status rm_conv3d_backward(rm_ctx *ctx, const rm_conv3d_params *p, const rm_tensor *x, const rm_tensor *w,
                             const rm_tensor *dy, rm_tensor *dx, rm_tensor *dw, float *db)
{
    rm_conv_geom g;
    int64_t y_ne[RM_MAX_DIMS];
    RM_TRY(conv_geometry(ctx, "conv3d backward", p, x, w, &g, y_ne));
    RM_TRY(check_grads(ctx, x, w, dy, y_ne, dx, dw));
    if (dx)
        RM_TRY(rm_conv_engine_backward_data(ctx, &g, w->data, dy->data, dx->data));
    if (dw)
        RM_TRY(rm_conv_engine_backward_weight(ctx, &g, x->data, dy->data, dw->data));
    if (db)
        channel_sums(ctx, dy, db);
    return RM_OK;
}

rm_status rm_conv_transpose3d_forward(rm_ctx *ctx, const rm_conv3d_params *p, const rm_tensor *x, const rm_tensor *w,
                                      const float *b, rm_tensor *y)
{
    rm_conv_geom g;
    int64_t y_ne[RM_MAX_DIMS];
    RM_TRY(conv_transpose_geometry(ctx, "conv_transpose3d", p, x, w, &g, y_ne));
    RM_TRY(rm_check_shape(ctx, y, "y", y_ne));
    RM_TRY(rm_conv_engine_backward_data(ctx, &g, w->data, x->data, y->data));
    if (b)
        add_channel_bias(ctx, y, b);
    return RM_OK;
}

rm_status rm_conv_transpose3d_backward(rm_ctx *ctx, const rm_conv3d_params *p, const rm_tensor *x, const rm_tensor *w,
                                       const rm_tensor *dy, rm_tensor *dx, rm_tensor *dw, float *db)
{
    rm_conv_geom g;
    int64_t y_ne[RM_MAX_DIMS];
    RM_TRY(conv_transpose_geometry(ctx, "conv_transpose3d backward", p, x, w, &g, y_ne));
    RM_TRY(check_grads(ctx, x, w, dy, y_ne, dx, dw));
    if (dx)
        RM_TRY(rm_conv_engine_forward(ctx, &g, dy->data, w->data, NULL, dx->data));
    if (dw)
        RM_TRY(rm_conv_engine_backward_weight(ctx, &g, dy->data, x->data, dw->data));
    if (db)
        channel_sums(ctx, dy, db);
    return RM_OK;
}
