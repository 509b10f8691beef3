/* repmode: RepMode (Zhou et al., CVPR 2023) in C11, on the CPU.
 *
 * RepMode is a 3D U-Net whose convolutions are Mixtures of Diverse Experts (MoDE): five experts per layer, mixed
 * per task by a gate, and folded into one plain convolution per task after training. This library trains,
 * re-parameterizes and runs such networks with OpenBLAS; the ITK filter, the Slicer module, the `repmode`
 * command-line tool and the Python bindings are built on this C API.
 *
 * The API in one example: one conv → BatchNorm → ReLU step on a volume, forward and backward.
 *
 *     #include <repmode/repmode.h>
 *
 *     rm_ctx *ctx = rm_ctx_create(0);                        // all cores; NULL only when out of memory
 *     float *xd = ..., *wd = ..., *yd = ..., *zd = ...;      // caller-owned float32 buffers
 *     rm_tensor x = rm_tensor_5d(xd, 1, 1, 32, 64, 64);      // (N, C, D, H, W)
 *     rm_tensor w = rm_tensor_5d(wd, 16, 1, 5, 5, 5);        // (Cout, Cin, k, k, k)
 *     rm_tensor y = rm_tensor_5d(yd, 1, 16, 32, 64, 64);
 *     rm_tensor z = rm_tensor_5d(zd, 1, 16, 32, 64, 64);
 *     rm_conv3d_params p = rm_conv3d_same(5);                // stride 1, zero "same" padding
 *     rm_batchnorm3d bn = rm_batchnorm3d_make(gamma, beta, running_mean, running_var);
 *     float mean[16], invstd[16];
 *
 *     if (rm_conv3d_forward(ctx, &p, &x, &w, NULL, &y) != RM_OK ||
 *         rm_batchnorm3d_forward_train(ctx, &bn, &y, &z, mean, invstd) != RM_OK ||
 *         rm_activation_forward(ctx, RM_ACT_RELU, &z, NULL, &z) != RM_OK) {
 *         fprintf(stderr, "repmode: %s\n", rm_ctx_error(ctx));
 *     }
 *     // backward: rm_activation_backward, rm_batchnorm3d_backward_train, rm_conv3d_backward, in reverse order
 *     rm_ctx_free(ctx);
 *
 * Memory: tensors are views of caller-owned memory; the context keeps its working memory between calls, so
 * repeated calls of the same shapes allocate nothing. Errors: every fallible call returns an rm_status and leaves
 * a message in the context; the library never prints, aborts or exits.
 */
#ifndef REPMODE_REPMODE_H
#define REPMODE_REPMODE_H

#include "repmode/core.h"
#include "repmode/ops.h"
#include "repmode/model.h"
#include "repmode/normalize.h"
#include "repmode/synth.h"
#include "repmode/metrics.h"
#include "repmode/optim.h"
#include "repmode/predict.h"
#include "repmode/trainer.h"

#endif /* REPMODE_REPMODE_H */
