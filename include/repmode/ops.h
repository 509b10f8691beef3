/* repmode operators: forward and backward of every layer a RepMode network is built from.
 *
 * Conventions shared by every operator:
 * - Tensors are contiguous float32 (N, C, D, H, W) views owned by the caller (see core.h). Outputs must be
 *   allocated by the caller with the documented shape; a wrong shape is RM_ERR_SHAPE, nothing is written.
 * - Backward calls take the gradient of the loss with respect to the output (dy) and overwrite the gradients they
 *   are given (they never accumulate). Any gradient output may be NULL when it is not wanted.
 * - Results do not depend on the thread count: the same inputs give bit-identical outputs with 1 or many threads.
 * - Semantics are PyTorch's (cross-correlation, no kernel flip; weight layouts as in torch.nn).
 * - Statuses: RM_ERR_ARGUMENT for a NULL tensor, data or required output, or a parameter out of its range;
 *   RM_ERR_SHAPE for a dimension below 1 or a shape that does not fit; RM_ERR_NOMEM only where a comment names it
 *   (the context's working memory could not grow). Each comment lists what its operator can return.
 * - Threads: an operator keeps no state between calls; it writes only its outputs (and, in training mode,
 *   BatchNorm's running statistics) and the context's working memory.
 */
#ifndef REPMODE_OPS_H
#define REPMODE_OPS_H

#include "repmode/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- 3D convolution ------------------------------------------------------------------------------------------ */

/* A cubic kernel: the same size, stride and zero padding on the three spatial axes; or a planar one, 1×k×k: the
 * size, stride and padding on height and width only, depth untouched (kernel 1, stride 1, no padding), so that
 * each depth slice is convolved alone: the 2D layers, on (N, C, 1, H, W) or on every slice of a volume. */
typedef struct rm_conv3d_params {
    int kernel;     /* k: the kernel is k×k×k, or 1×k×k when planar */
    int stride;     /* s */
    int pad_before; /* zeros added before each spatial axis (height and width only when planar) */
    int pad_after;  /* zeros added after each spatial axis (height and width only when planar) */
    int planar;     /* 0 or 1 */
} rm_conv3d_params;

/* Stride 1 with "same" zero padding: the output has the input's size (even k pads one more after than before).
 * Nothing is checked here: the operators check the parameters. */
RM_API rm_conv3d_params rm_conv3d_same(int kernel);
/* The given stride with no padding, e.g. the learned 2×2×2 stride-2 down-sampling of the U-Net. */
RM_API rm_conv3d_params rm_conv3d_strided(int kernel, int stride);
/* p made planar: rm_conv3d_planar(rm_conv3d_same(5)) is the 5×5 "same" convolution of each depth slice. */
RM_API rm_conv3d_params rm_conv3d_planar(rm_conv3d_params p);
/* Output length along spatial axis `axis` (0 depth, 1 height, 2 width), (in + pad_before + pad_after - k) / s + 1
 * (in itself along a planar kernel's depth), or -1 when the input is too short. */
RM_API int64_t rm_conv3d_out_size(const rm_conv3d_params *p, int axis, int64_t in);

/* y (N, Co, Do, Ho, Wo) = conv(x (N, Ci, D, H, W), w (Co, Ci, k, k, k) or, planar, (Co, Ci, 1, k, k)) + b (Co,).
 * b may be NULL. RM_ERR_ARGUMENT: p NULL, kernel or stride outside 1..7, padding outside 0..k-1, planar not 0 or
 * 1. RM_ERR_SHAPE: w or y of another shape, an input shorter than the kernel, or one BLAS call's matrix past
 * INT_MAX elements along a side (split the volume). RM_ERR_NOMEM. */
RM_API rm_status rm_conv3d_forward(rm_ctx *ctx, const rm_conv3d_params *p, const rm_tensor *x, const rm_tensor *w,
                                   const float *b, rm_tensor *y);
/* Gradients of rm_conv3d_forward: dx like x, dw like w, db (Co,); each may be NULL. Statuses as the forward's
 * (RM_ERR_ARGUMENT, RM_ERR_SHAPE, RM_ERR_NOMEM); on RM_ERR_NOMEM dx may already be written. */
RM_API rm_status rm_conv3d_backward(rm_ctx *ctx, const rm_conv3d_params *p, const rm_tensor *x, const rm_tensor *w,
                                    const rm_tensor *dy, rm_tensor *dx, rm_tensor *dw, float *db);

/* Transposed convolution without padding (the U-Net's 2×2×2 stride-2 up-sampling):
 * y[o, s·z+a, s·y+b, s·x+c] += x[i, z, y, x] · w[i, o, a, b, c], output length (in - 1)·s + k.
 * x (N, Ci, D, H, W), w (Ci, Co, k, k, k) as torch.nn.ConvTranspose3d, b (Co,) or NULL. p must have no padding.
 * Planar: w (Ci, Co, 1, k, k), each depth slice up-sampled alone (the 2D decoder's 2×2 stride-2 up-sampling).
 * Forward and backward (dx, dw, db each may be NULL): RM_ERR_ARGUMENT as rm_conv3d_forward's, and for any
 * padding; RM_ERR_SHAPE; RM_ERR_NOMEM. */
RM_API rm_status rm_conv_transpose3d_forward(rm_ctx *ctx, const rm_conv3d_params *p, const rm_tensor *x,
                                             const rm_tensor *w, const float *b, rm_tensor *y);
RM_API rm_status rm_conv_transpose3d_backward(rm_ctx *ctx, const rm_conv3d_params *p, const rm_tensor *x,
                                              const rm_tensor *w, const rm_tensor *dy, rm_tensor *dx, rm_tensor *dw,
                                              float *db);

/* ---- average pooling ----------------------------------------------------------------------------------------- */

/* k×k×k mean filter, k 3 or 5 (the experts'), stride 1, zero padding (k-1)/2, divisor always k³
 * (count_include_pad); y like x. Backward: dx like dy. RM_ERR_ARGUMENT for another k, RM_ERR_SHAPE, RM_ERR_NOMEM. */
RM_API rm_status rm_avgpool3d_forward(rm_ctx *ctx, int kernel, const rm_tensor *x, rm_tensor *y);
RM_API rm_status rm_avgpool3d_backward(rm_ctx *ctx, int kernel, const rm_tensor *dy, rm_tensor *dx);

/* ---- max pooling --------------------------------------------------------------------------------------------- */

/* k×k×k maximum filter, k odd (the Inception block's 3), stride 1, padding (k-1)/2 that never wins; y like x. Each
 * output is its window's first maximum in (depth, height, width) order (NaN wins), as PyTorch's max_pool3d. The
 * backward adds each dy to the element its output took, in x: dx like x. RM_ERR_ARGUMENT (another k), RM_ERR_SHAPE. */
RM_API rm_status rm_maxpool3d_forward(rm_ctx *ctx, int kernel, const rm_tensor *x, rm_tensor *y);
RM_API rm_status rm_maxpool3d_backward(rm_ctx *ctx, int kernel, const rm_tensor *x, const rm_tensor *dy,
                                       rm_tensor *dx);

/* The mean over depth, y (N, C, 1, H, W) of x (N, C, D, H, W): the 2D map of a 3D prediction of a surface volume
 * (docs/network.md §7). Each output sums its D inputs in order, in double. RM_ERR_ARGUMENT, RM_ERR_SHAPE. */
RM_API rm_status rm_depth_mean_forward(rm_ctx *ctx, const rm_tensor *x, rm_tensor *y);
/* dx (N, C, D, H, W) from dy (N, C, 1, H, W): dx[n, c, z, h, w] = dy[n, c, 0, h, w] / D for every z.
 * RM_ERR_ARGUMENT, RM_ERR_SHAPE. */
RM_API rm_status rm_depth_mean_backward(rm_ctx *ctx, const rm_tensor *dy, rm_tensor *dx);

/* ---- batch normalization ------------------------------------------------------------------------------------- */

/* The parameters and running statistics of one BatchNorm3d, each (C,), owned by the caller. */
typedef struct rm_batchnorm3d {
    float *weight;       /* gamma */
    float *bias;         /* beta */
    float *running_mean;
    float *running_var;
    float momentum;      /* running = (1 - momentum)·running + momentum·batch; PyTorch's default 0.1 */
    float eps;           /* PyTorch's default 1e-5 */
} rm_batchnorm3d;

/* PyTorch's defaults: momentum 0.1, eps 1e-5. The struct keeps the four pointers (borrowed: the caller's arrays
 * must outlive its use); weight NULL means 1 and bias NULL means 0 (no affine transform). */
RM_API rm_batchnorm3d rm_batchnorm3d_make(float *weight, float *bias, float *running_mean, float *running_var);

/* Training mode: normalizes with the batch statistics over (N, D, H, W) (biased variance) and updates the running
 * statistics (unbiased variance). save_mean and save_invstd (C,) receive what the backward needs.
 * RM_ERR_ARGUMENT: bn, a running statistic, save_mean or save_invstd NULL, eps not finite and >= 0, momentum
 * outside [0, 1]. RM_ERR_SHAPE: y unlike x, or a single value per channel (N·D·H·W = 1).
 * Backward: dx, dweight and dbias may each be NULL; the running statistics are not needed. RM_ERR_ARGUMENT (bn,
 * save_mean or save_invstd NULL), RM_ERR_SHAPE. */
RM_API rm_status rm_batchnorm3d_forward_train(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x,
                                              rm_tensor *y, float *save_mean, float *save_invstd);
RM_API rm_status rm_batchnorm3d_backward_train(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x,
                                               const float *save_mean, const float *save_invstd,
                                               const rm_tensor *dy, rm_tensor *dx, float *dweight, float *dbias);
/* Inference mode: normalizes with the running statistics, which stay unchanged. Forward and backward (dx,
 * dweight, dbias each may be NULL): RM_ERR_ARGUMENT (bn or a running statistic NULL, eps not finite and >= 0),
 * RM_ERR_SHAPE. */
RM_API rm_status rm_batchnorm3d_forward_infer(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x,
                                              rm_tensor *y);
RM_API rm_status rm_batchnorm3d_backward_infer(rm_ctx *ctx, const rm_batchnorm3d *bn, const rm_tensor *x,
                                               const rm_tensor *dy, rm_tensor *dx, float *dweight, float *dbias);

/* ---- activations --------------------------------------------------------------------------------------------- */

/* Append only: model files store these values. */
typedef enum rm_activation {
    RM_ACT_RELU = 0,  /* max(x, 0) */
    RM_ACT_FRELU = 1, /* max(x, 0) + bias[c], one learnable bias per channel (Qiu et al. 2017) */
    RM_ACT_MISH = 2,  /* x·tanh(softplus(x)) (Misra 2019) */
} rm_activation;

/* y like x; bias (C,) for FReLU, NULL otherwise. y may be x (in place). RM_ERR_ARGUMENT: an unknown activation,
 * or FReLU without bias. RM_ERR_SHAPE. */
RM_API rm_status rm_activation_forward(rm_ctx *ctx, rm_activation act, const rm_tensor *x, const float *bias,
                                       rm_tensor *y);
/* Gradients from the forward's input x; dbias (C,) for FReLU. dx may be dy (in place); dx and dbias may be NULL.
 * RM_ERR_ARGUMENT: an unknown activation. RM_ERR_SHAPE. RM_ERR_NOMEM: FReLU's dbias needs working memory. */
RM_API rm_status rm_activation_backward(rm_ctx *ctx, rm_activation act, const rm_tensor *x, const rm_tensor *dy,
                                        rm_tensor *dx, float *dbias);

/* ---- dropout ------------------------------------------------------------------------------------------------- */

/* Whether element `index` survives dropout with probability p under `seed`: a counter-based generator, so the
 * mask depends only on (p, seed, index), never on threads or call order. */
RM_API int rm_dropout_kept(float p, uint64_t seed, int64_t index);
/* y = x · kept / (1 - p). 0 <= p < 1. y may be x. RM_ERR_ARGUMENT (p outside [0, 1)), RM_ERR_SHAPE. */
RM_API rm_status rm_dropout_forward(rm_ctx *ctx, float p, uint64_t seed, const rm_tensor *x, rm_tensor *y);
/* dx = dy · kept / (1 - p), with the same p and seed as the forward. dx may be dy, or NULL (only the checks run).
 * RM_ERR_ARGUMENT (p outside [0, 1)), RM_ERR_SHAPE. */
RM_API rm_status rm_dropout_backward(rm_ctx *ctx, float p, uint64_t seed, const rm_tensor *dy, rm_tensor *dx);

/* ---- channel concatenation ----------------------------------------------------------------------------------- */

/* y = cat(xs[0], …, xs[n-1]) along C; every input has y's N, D, H, W. RM_ERR_ARGUMENT: xs or an entry NULL,
 * n < 1. RM_ERR_SHAPE: the inputs' channels do not add up to y's, or another N, D, H or W. */
RM_API rm_status rm_concat_forward(rm_ctx *ctx, const rm_tensor *const *xs, int n, rm_tensor *y);
/* Splits dy back into the inputs' gradients. Every entry of dxs gives its input's shape; an entry whose data is
 * NULL is skipped (that gradient is not wanted). RM_ERR_ARGUMENT: dxs or an entry NULL, n < 1. RM_ERR_SHAPE. */
RM_API rm_status rm_concat_backward(rm_ctx *ctx, const rm_tensor *dy, rm_tensor *const *dxs, int n);

/* ---- softmax ------------------------------------------------------------------------------------------------- */

/* Softmax over C at every (n, d, h, w): a MoDE gate's logits (E, co) are the tensor {1, E, co, 1, 1}.
 * RM_ERR_ARGUMENT, RM_ERR_SHAPE. */
RM_API rm_status rm_softmax_forward(rm_ctx *ctx, const rm_tensor *x, rm_tensor *y);
/* Gradient from the forward's output y; dx may be NULL. RM_ERR_ARGUMENT, RM_ERR_SHAPE. */
RM_API rm_status rm_softmax_backward(rm_ctx *ctx, const rm_tensor *y, const rm_tensor *dy, rm_tensor *dx);

/* ---- dense layer --------------------------------------------------------------------------------------------- */

/* y (N, out) = x (N, in) · wᵀ + b, as torch.nn.Linear: w {out, in, 1, 1, 1}, b (out,) or NULL. A tensor's
 * features are everything after N, so x may be any {N, ...} whose trailing dims multiply to `in`. Backward: dx,
 * dw and db may each be NULL. Both: RM_ERR_ARGUMENT, RM_ERR_SHAPE. */
RM_API rm_status rm_dense_forward(rm_ctx *ctx, const rm_tensor *x, const rm_tensor *w, const float *b,
                                  rm_tensor *y);
RM_API rm_status rm_dense_backward(rm_ctx *ctx, const rm_tensor *x, const rm_tensor *w, const rm_tensor *dy,
                                   rm_tensor *dx, rm_tensor *dw, float *db);

/* ---- losses -------------------------------------------------------------------------------------------------- */

/* loss = mean((pred - target)²) over all elements. RM_ERR_ARGUMENT (loss NULL too), RM_ERR_SHAPE, RM_ERR_NOMEM. */
RM_API rm_status rm_mse_forward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, float *loss);
/* dpred = dloss · 2 (pred - target) / numel; dpred may be NULL (only the checks run). RM_ERR_ARGUMENT,
 * RM_ERR_SHAPE. */
RM_API rm_status rm_mse_backward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, float dloss,
                                 rm_tensor *dpred);

/* Masks: a mask has the prediction's shape; a voxel counts where mask > 0.5 (a NaN mask value does not count), and
 * mask NULL counts every voxel. Voxels outside the mask take part in no sum and get a zero gradient. The losses
 * read their inputs as they are: a NaN in a selected prediction or target propagates to the loss. */

/* loss = mean over the selected voxels of (pred - target)². With mask NULL this is rm_mse_forward, bit for bit.
 * When the mask selects no voxel the loss is 0 (and the backward's gradient is 0 everywhere). RM_ERR_ARGUMENT
 * (loss NULL too), RM_ERR_SHAPE, RM_ERR_NOMEM. */
RM_API rm_status rm_masked_mse_forward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target,
                                       const rm_tensor *mask, float *loss);
/* dpred = dloss · 2 (pred - target) / M on the M selected voxels, 0 elsewhere. dpred may be any of the inputs,
 * or NULL (only the checks run). RM_ERR_ARGUMENT, RM_ERR_SHAPE. */
RM_API rm_status rm_masked_mse_backward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target,
                                        const rm_tensor *mask, float dloss, rm_tensor *dpred);

/* The default label smoothing s of the binary loss, and the Dice smoothing constant λ (fixed). */
#define RM_BINARY_LOSS_SMOOTHING 0.1f
#define RM_DICE_LAMBDA 1.0

/* The loss of binary tasks (ink, masks), from logits x: loss = ½·(bce + dice), over the M selected voxels.
 * - bce = (1/M)·Σ max(x, 0) − x·t' + log1p(exp(−|x|)), the soft binary cross-entropy against the smoothed target
 *   t' = t·(1 − s) + (1 − t)·s (smoothing s in [0, 0.5]; 0 is plain BCE, RM_BINARY_LOSS_SMOOTHING the default).
 * - dice = 1 − (2·Σ p·t + λ) / (Σ p + Σ t + λ), p = sigmoid(x), λ = RM_DICE_LAMBDA, against the unsmoothed t.
 *   The sums run over the selected voxels of the whole tensor: one Dice for the batch, not one per sample or
 *   channel.
 * Targets are expected in [0, 1] (soft targets allowed; values are not checked). No selected voxel: bce = 0,
 * dice = 1 − λ/λ = 0, loss 0. `loss` is required; `bce` and `dice` (the two parts, before the ½) may be NULL.
 * RM_ERR_ARGUMENT (smoothing outside [0, 0.5], loss NULL), RM_ERR_SHAPE, RM_ERR_NOMEM. */
RM_API rm_status rm_binary_loss_forward(rm_ctx *ctx, const rm_tensor *logits, const rm_tensor *target,
                                        const rm_tensor *mask, float smoothing, float *loss, float *bce,
                                        float *dice);
/* dlogits = dloss · ∂loss/∂x: ½·[(p − t')/M + ((2·Σp·t + λ)/(Σp + Σt + λ)² − 2t/(Σp + Σt + λ))·p·(1 − p)] on the
 * selected voxels, 0 elsewhere. dlogits may be any of the inputs, or NULL (only the checks run). RM_ERR_ARGUMENT
 * (smoothing outside [0, 0.5]), RM_ERR_SHAPE, RM_ERR_NOMEM. */
RM_API rm_status rm_binary_loss_backward(rm_ctx *ctx, const rm_tensor *logits, const rm_tensor *target,
                                         const rm_tensor *mask, float smoothing, float dloss, rm_tensor *dlogits);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_OPS_H */
