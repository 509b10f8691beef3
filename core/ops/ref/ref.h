/* Reference operators: plain loops in double precision, written straight from the formulas, for the tests.
 *
 * They are the independent check on the fast float operators of include/repmode/ops.h: the tests compare every
 * fast forward and backward with these, and check these backwards against central finite differences of these
 * forwards. Nothing here is fast or validated: callers pass correct shapes. Same semantics and argument order as
 * the fast operators, with doubles; every gradient output may be NULL; gradients are overwritten.
 */
#ifndef REPMODE_REF_H
#define REPMODE_REF_H

#include "repmode/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rm_dtensor {
    double *data;
    int64_t ne[RM_MAX_DIMS];
} rm_dtensor;

/* Element (n, c, d, h, w) of a contiguous 5-D tensor. */
static inline double *rm_ref_at(const rm_dtensor *t, int64_t n, int64_t c, int64_t d, int64_t h, int64_t w)
{
    return t->data + (((n * t->ne[1] + c) * t->ne[2] + d) * t->ne[3] + h) * t->ne[4] + w;
}

static inline int64_t rm_ref_numel(const rm_dtensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3] * t->ne[4];
}

void rm_ref_conv3d_forward(const rm_conv3d_params *p, const rm_dtensor *x, const rm_dtensor *w, const double *b,
                           rm_dtensor *y);
void rm_ref_conv3d_backward(const rm_conv3d_params *p, const rm_dtensor *x, const rm_dtensor *w,
                            const rm_dtensor *dy, rm_dtensor *dx, rm_dtensor *dw, double *db);
void rm_ref_conv_transpose3d_forward(const rm_conv3d_params *p, const rm_dtensor *x, const rm_dtensor *w,
                                     const double *b, rm_dtensor *y);
void rm_ref_conv_transpose3d_backward(const rm_conv3d_params *p, const rm_dtensor *x, const rm_dtensor *w,
                                      const rm_dtensor *dy, rm_dtensor *dx, rm_dtensor *dw, double *db);

void rm_ref_avgpool3d_forward(int kernel, const rm_dtensor *x, rm_dtensor *y);
void rm_ref_avgpool3d_backward(int kernel, const rm_dtensor *dy, rm_dtensor *dx);
/* y (N, C, 1, H, W): the mean of x (N, C, D, H, W) over D; the backward spreads dy evenly over D. */
void rm_ref_depth_mean_forward(const rm_dtensor *x, rm_dtensor *y);
void rm_ref_depth_mean_backward(const rm_dtensor *dy, rm_dtensor *dx);

/* BatchNorm3d. Parameters and statistics are (C,) arrays; the training forward updates running_mean/var. */
void rm_ref_batchnorm3d_forward_train(const rm_dtensor *x, const double *weight, const double *bias,
                                      double *running_mean, double *running_var, double momentum, double eps,
                                      rm_dtensor *y, double *save_mean, double *save_invstd);
void rm_ref_batchnorm3d_backward_train(const rm_dtensor *x, const double *weight, const double *save_mean,
                                       const double *save_invstd, const rm_dtensor *dy, rm_dtensor *dx,
                                       double *dweight, double *dbias);
void rm_ref_batchnorm3d_forward_infer(const rm_dtensor *x, const double *weight, const double *bias,
                                      const double *running_mean, const double *running_var, double eps,
                                      rm_dtensor *y);
void rm_ref_batchnorm3d_backward_infer(const rm_dtensor *x, const double *weight, const double *running_mean,
                                       const double *running_var, double eps, const rm_dtensor *dy, rm_dtensor *dx,
                                       double *dweight, double *dbias);

void rm_ref_activation_forward(rm_activation act, const rm_dtensor *x, const double *bias, rm_dtensor *y);
void rm_ref_activation_backward(rm_activation act, const rm_dtensor *x, const rm_dtensor *dy, rm_dtensor *dx,
                                double *dbias);

/* Dropout with an explicit keep mask (1 keep, 0 drop) of x's size: the mask's generator is tested on its own. */
void rm_ref_dropout_forward(double p, const unsigned char *keep, const rm_dtensor *x, rm_dtensor *y);
void rm_ref_dropout_backward(double p, const unsigned char *keep, const rm_dtensor *dy, rm_dtensor *dx);

void rm_ref_concat_forward(const rm_dtensor *const *xs, int n, rm_dtensor *y);
void rm_ref_concat_backward(const rm_dtensor *dy, rm_dtensor *const *dxs, int n);

void rm_ref_softmax_forward(const rm_dtensor *x, rm_dtensor *y);
void rm_ref_softmax_backward(const rm_dtensor *y, const rm_dtensor *dy, rm_dtensor *dx);

void rm_ref_dense_forward(const rm_dtensor *x, const rm_dtensor *w, const double *b, rm_dtensor *y);
void rm_ref_dense_backward(const rm_dtensor *x, const rm_dtensor *w, const rm_dtensor *dy, rm_dtensor *dx,
                           rm_dtensor *dw, double *db);

double rm_ref_mse_forward(const rm_dtensor *pred, const rm_dtensor *target);
void rm_ref_mse_backward(const rm_dtensor *pred, const rm_dtensor *target, double dloss, rm_dtensor *dpred);

/* Masked losses: mask NULL or of pred's shape, a voxel counts where mask > 0.5 (see ops.h). */
double rm_ref_masked_mse_forward(const rm_dtensor *pred, const rm_dtensor *target, const rm_dtensor *mask);
void rm_ref_masked_mse_backward(const rm_dtensor *pred, const rm_dtensor *target, const rm_dtensor *mask,
                                double dloss, rm_dtensor *dpred);
/* ½·(soft BCE + Dice) from logits; bce and dice (the parts) may be NULL. */
double rm_ref_binary_loss_forward(const rm_dtensor *logits, const rm_dtensor *target, const rm_dtensor *mask,
                                  double smoothing, double *bce, double *dice);
void rm_ref_binary_loss_backward(const rm_dtensor *logits, const rm_dtensor *target, const rm_dtensor *mask,
                                 double smoothing, double dloss, rm_dtensor *dlogits);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_REF_H */
