/* The convolution engine: the one place that knows how a 3D convolution is computed.
 *
 * Everything convolution-shaped in the library (rm_conv3d_*, rm_conv_transpose3d_*, the networks) reaches the
 * arithmetic only through these calls, so the engine can change without touching its callers. Today: the direct
 * kernels of ops/direct (AVX-512 or AVX2, on a blocked channel layout) for stride-1 convolutions with enough
 * channels, and for the forward and data gradient of tiling ones (kernel = stride, as the network's down- and
 * up-sampling), on contexts whose instruction set has them; OpenBLAS SGEMM over cache-sized im2col tiles otherwise.
 *
 * Geometry: a convolution from x (n, ci, in[0..2]) to y (n, co, out[0..2]) with a kernel of kd×k×k, stride s and
 * `pad` zeros before height and width, sd and pad_d along depth: a cubic kernel has kd = k, sd = s, pad_d = pad, a
 * planar one (the 2D layers, run on each depth slice) kd = 1, sd = 1, pad_d = 0. The output sizes are given, so
 * zeros after each axis are implied by bounds. Weights are (co, ci, kd, k, k). Arrays are contiguous float32.
 * Callers have validated shapes; the engine fails only when it cannot get working memory. Results do not depend on
 * the thread count.
 */
#ifndef REPMODE_CONV_ENGINE_H
#define REPMODE_CONV_ENGINE_H

#include "base/internal.h"
#include "repmode/ops.h"

typedef struct rm_conv_geom {
    int64_t n, ci, co;
    int64_t in[3];     /* D, H, W of x */
    int64_t out[3];    /* D, H, W of y */
    int k, s, pad;     /* height and width */
    int kd, sd, pad_d; /* depth */
} rm_conv_geom;

/* Taps of one kernel: kd·k². */
static inline int64_t rm_conv_taps(const rm_conv_geom *g)
{
    return (int64_t)g->kd * g->k * g->k;
}

/* Stride 1 along every axis. */
static inline int rm_conv_stride1(const rm_conv_geom *g)
{
    return g->s == 1 && g->sd == 1;
}

/* A stride-1 convolution of one sample that keeps the size d×h×w, with k's "same" padding: cubic (kd = k) or
 * planar (kd = 1). */
static inline rm_conv_geom rm_conv_geom_same(int64_t ci, int64_t co, int64_t d, int64_t h, int64_t w, int k, int kd)
{
    const rm_conv_geom g = {.n = 1, .ci = ci, .co = co, .in = {d, h, w}, .out = {d, h, w}, .k = k, .s = 1,
                            .pad = (k - 1) / 2, .kd = kd, .sd = 1, .pad_d = (kd - 1) / 2};
    return g;
}

/* An activation applied to a forward's outputs as they are stored (a deploy form's units), with FReLU's per-channel
 * bias: the same bits as rm_activation_forward after the convolution, without the separate pass. */
typedef struct rm_conv_act {
    rm_activation kind;
    const float *bias;
} rm_conv_act;

/* y = conv(x, w) + b; b may be NULL. */
rm_status rm_conv_engine_forward(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, const float *b,
                                 float *y);
/* dx = the gradient of conv(x, w) with respect to x, given dy (overwritten, not accumulated). */
rm_status rm_conv_engine_backward_data(rm_ctx *ctx, const rm_conv_geom *g, const float *w, const float *dy, float *dx);
/* dw = the gradient with respect to w, given x and dy (overwritten). */
rm_status rm_conv_engine_backward_weight(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *dy,
                                         float *dw);

/* Weights kept packed for the direct kernels, by a caller that runs them many times (a deploy form). Whether g's
 * weights are packed on this context: only where the packed layout holds exactly co·ci·kd·k² floats, so a buffer of
 * the plain weights can hold them. Then packing, unpacking, and the forward on packed weights, followed by `act`
 * unless it is NULL (on a context whose instruction set cannot run the direct kernels, they are unpacked into
 * working memory first and the activation is a pass of its own). */
int rm_conv_engine_packs(const rm_ctx *ctx, const rm_conv_geom *g);
void rm_conv_engine_pack(const rm_conv_geom *g, int nth, const float *w, float *packed);
void rm_conv_engine_unpack(const rm_conv_geom *g, int nth, const float *packed, float *w);
rm_status rm_conv_engine_forward_packed(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *packed,
                                        const float *b, const rm_conv_act *act, float *y);

#endif /* REPMODE_CONV_ENGINE_H */
