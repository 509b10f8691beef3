/* repmode: RepMode (Zhou et al., CVPR 2023) in C11, on the CPU.
 *
 * RepMode is a 3D U-Net whose convolutions are Mixtures of Diverse Experts (MoDE): five experts per layer, mixed
 * per task by a gate, and folded into one plain convolution per task after training. This library trains,
 * re-parameterizes and runs such networks with OpenBLAS; the ITK filter, the Slicer module, the `repmode`
 * command-line tool and the Python bindings are built on this C API.
 *
 * The API at work: predict one task of a model file over a whole volume, the model's normalization applied first,
 * with the official sliding window (a program that reads and writes raw float32 volumes; it is
 * examples/predict_volume.c, which a test keeps identical to this, builds and compares with `repmode predict`).
 *
 *     #include <math.h>
 *     #include <stdio.h>
 *     #include <stdlib.h>
 *     #include <string.h>
 *
 *     #include <repmode/repmode.h>
 *
 *     // The volume the sliding window reads, one window at a time: here it is in memory, Z-major, X fastest.
 *     typedef struct volume {
 *         float *voxels;
 *         int64_t size[3]; // Z, Y, X
 *     } volume;
 *
 *     static int read_window(void *user, const int64_t start[3], const int64_t size[3], float *buf)
 *     {
 *         const volume *v = user;
 *         for (int64_t z = 0; z < size[0]; z++)
 *             for (int64_t y = 0; y < size[1]; y++, buf += size[2])
 *                 memcpy(buf, v->voxels + ((start[0] + z) * v->size[1] + start[1] + y) * v->size[2] + start[2],
 *                        (size_t)size[2] * sizeof *buf);
 *         return 0;
 *     }
 *
 *     // One task of a model file over the whole volume, normalized in place. out: Z·Y·X values, or Y·X for a task with
 *     // 2D labels, *n_out of them. Binary tasks give probabilities, regression tasks intensities.
 *     static rm_status predict(rm_ctx *ctx, const char *model, const char *task, volume *v, float *out, int64_t *n_out)
 *     {
 *         const int64_t n = v->size[0] * v->size[1] * v->size[2], origin[3] = {0, 0, 0};
 *         rm_deploy *net = NULL;
 *         rm_normalization norm;
 *         rm_norm_params params;
 *         // The task's network (experts merged, BatchNorm folded), and the input normalization it was trained with,
 *         // computed over the whole volume.
 *         rm_status s = rm_deploy_load(ctx, model, task, &net);
 *         if (s == RM_OK)
 *             s = rm_deploy_normalization(ctx, net, &norm);
 *         if (s == RM_OK)
 *             s = rm_normalization_compute(ctx, &norm, v->voxels, n, &params);
 *         if (s != RM_OK) {
 *             rm_deploy_free(net);
 *             return s;
 *         }
 *         rm_normalize(&params, v->voxels, v->voxels, n);
 *
 *         // The model's patch, 50% overlap, Gaussian blending: the official sliding window.
 *         const rm_config *cfg = rm_deploy_config(net);
 *         const rm_task *t = &cfg->tasks[rm_deploy_task(net)];
 *         const rm_window_params p = rm_window_params_make(cfg->patch);
 *         s = rm_predict_region(ctx, net, &p, v->size, read_window, v, origin, v->size, out, NULL, NULL);
 *         *n_out = n;
 *         if (s == RM_OK && t->output_2d) { // 2D labels (ink on a surface volume): the mean over depth of the logits
 *             rm_tensor layers = rm_tensor_5d(out, 1, 1, v->size[0], v->size[1], v->size[2]);
 *             rm_tensor map = rm_tensor_5d(v->voxels, 1, 1, 1, v->size[1], v->size[2]); // the input is read: reuse it
 *             s = rm_depth_mean_forward(ctx, &layers, &map);
 *             *n_out = v->size[1] * v->size[2];
 *             memcpy(out, map.data, (size_t)*n_out * sizeof *out);
 *         }
 *         if (s == RM_OK && t->kind == RM_TASK_BINARY) // logits to probabilities
 *             for (int64_t i = 0; i < *n_out; i++)
 *                 out[i] = (float)(1.0 / (1.0 + exp(-(double)out[i])));
 *         rm_deploy_free(net);
 *         return s;
 *     }
 *
 *     int main(int argc, char **argv)
 *     {
 *         if (argc != 8) {
 *             fprintf(stderr, "usage: %s MODEL TASK Z Y X IN OUT (IN, OUT: raw float32, X fastest)\n", argv[0]);
 *             return 1;
 *         }
 *         volume v = {NULL, {atoll(argv[3]), atoll(argv[4]), atoll(argv[5])}};
 *         const int64_t n = v.size[0] * v.size[1] * v.size[2];
 *         v.voxels = n > 0 ? malloc((size_t)n * sizeof *v.voxels) : NULL;
 *         float *y = n > 0 ? malloc((size_t)n * sizeof *y) : NULL;
 *         FILE *in = fopen(argv[6], "rb");
 *         const int read_ok = v.voxels && y && in && fread(v.voxels, sizeof *y, (size_t)n, in) == (size_t)n;
 *         if (in)
 *             fclose(in);
 *         if (!read_ok) {
 *             fprintf(stderr, "%s: cannot read %lld voxels from %s\n", argv[0], (long long)n, argv[6]);
 *             free(v.voxels);
 *             free(y);
 *             return 1;
 *         }
 *
 *         rm_ctx *ctx = rm_ctx_create(0); // one thread per core; the results do not depend on the count
 *         int64_t n_out = 0;
 *         int status = 1;
 *         if (!ctx) {
 *             fprintf(stderr, "%s: out of memory\n", argv[0]);
 *         } else if (predict(ctx, argv[1], argv[2], &v, y, &n_out) != RM_OK) {
 *             fprintf(stderr, "%s: %s\n", argv[0], rm_ctx_error(ctx)); // the context tells what went wrong
 *         } else {
 *             FILE *out = fopen(argv[7], "wb");
 *             status = !out || fwrite(y, sizeof *y, (size_t)n_out, out) != (size_t)n_out;
 *             if (out && fclose(out) != 0)
 *                 status = 1;
 *             if (status)
 *                 fprintf(stderr, "%s: cannot write %s\n", argv[0], argv[7]);
 *         }
 *         rm_ctx_free(ctx);
 *         free(v.voxels);
 *         free(y);
 *         return status;
 *     }
 *
 * One level down, the operators: one conv → BatchNorm → ReLU step on a volume, forward and backward.
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
#include "repmode/nonfinite.h"
#include "repmode/synth.h"
#include "repmode/metrics.h"
#include "repmode/optim.h"
#include "repmode/predict.h"
#include "repmode/trainer.h"

#endif /* REPMODE_REPMODE_H */
