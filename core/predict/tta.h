/* Test-time augmentation of one window (docs/network.md §6.4): the mean of the network over the 8 in-plane flips
 * and rotations of its input, each prediction turned back before it is added. */
#ifndef REPMODE_PREDICT_TTA_H
#define REPMODE_PREDICT_TTA_H

#include "model/model_impl.h"

/* The transforms: k = r + 4·f is a flip of X when f, then r quarter turns in the (Y, X) plane from Y towards X
 * (numpy's rot90(flip(x, X) if f else x, r, axes=(Y, X))). */
#define RM_TTA_TRANSFORMS 8

/* y (1, C, D, H, W) = the mean over the transforms k of T_k⁻¹(net(T_k(x))), x (1, 1, D, H, W). The sum runs in k
 * order in float, then is scaled by 1/8, so every window gives the same bits wherever it is computed. `in` (D·H·W
 * floats) and `out` (C·D·H·W floats) are scratch. Statuses as rm_deploy_forward_window's. */
rm_status rm_tta_forward_window(rm_ctx *ctx, const rm_deploy *d, const rm_tensor *x, const int64_t origin[3],
                                rm_tensor *y, float *in, float *out);

#endif
