/* The convolution engine: the one place that knows how a 3D convolution is computed.
 *
 * Everything convolution-shaped in the library (rm_conv3d_*, rm_conv_transpose3d_*, the networks) reaches the
 * arithmetic only through these calls, so the engine can change without touching its callers. Today: the direct
 * kernels of ops/direct (AVX-512 or AVX2, on a blocked channel layout) for stride-1 convolutions with enough
 * channels, on contexts whose instruction set has them; OpenBLAS SGEMM over cache-sized im2col tiles otherwise.
 *
 * Geometry: a convolution from x (n, ci, in[0..2]) to y (n, co, out[0..2]) with a cubic kernel k, stride s and
 * `pad` zeros before each axis; the output sizes are given, so zeros after each axis are implied by bounds.
 * Weights are (co, ci, k, k, k). Arrays are contiguous float32. Callers have validated shapes; the engine fails
 * only when it cannot get working memory. Results do not depend on the thread count.
 */
#ifndef REPMODE_CONV_ENGINE_H
#define REPMODE_CONV_ENGINE_H

#include "base/internal.h"
#include "repmode/ops.h"

typedef struct rm_conv_geom {
    int64_t n, ci, co;
    int64_t in[3];  /* D, H, W of x */
    int64_t out[3]; /* D, H, W of y */
    int k, s, pad;
} rm_conv_geom;

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
 * weights are packed on this context: only where the packed layout holds exactly co·ci·k³ floats, so a buffer of the
 * plain weights can hold them. Then packing, unpacking, and the forward on packed weights, followed by `act` unless
 * it is NULL (on a context whose instruction set cannot run the direct kernels, they are unpacked into working
 * memory first and the activation is a pass of its own). */
int rm_conv_engine_packs(const rm_ctx *ctx, const rm_conv_geom *g);
void rm_conv_engine_pack(const rm_conv_geom *g, int nth, const float *w, float *packed);
void rm_conv_engine_unpack(const rm_conv_geom *g, int nth, const float *packed, float *w);
rm_status rm_conv_engine_forward_packed(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *packed,
                                        const float *b, const rm_conv_act *act, float *y);

#endif /* REPMODE_CONV_ENGINE_H */
