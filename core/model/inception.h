/* The Inception block of the comparison network (block "inception", docs/network.md §9) in the training form: its
 * four branches forward in training or inference mode, and their backward into every convolution and BatchNorm; and
 * the plain U-Net's layer (block "plain"), one 3³ convolution through the same functions. */
#ifndef REPMODE_INCEPTION_H
#define REPMODE_INCEPTION_H

#include "model/model_impl.h"

/* What a training forward of one block keeps for its backward: per convolution its output z, BatchNorm output u,
 * activation a, their gradients and the batch statistics; the pooled input; scratch for the input's gradient. */
typedef struct rm_inception_cache {
    float *z[RM_INC_CONVS], *u[RM_INC_CONVS], *a[RM_INC_CONVS], *gz[RM_INC_CONVS], *ga[RM_INC_CONVS];
    float *mean[RM_INC_CONVS], *invstd[RM_INC_CONVS];
    float *pool, *gpool, *gtmp;
} rm_inception_cache;

/* Lays the cache of block u for n samples of `voxels` voxels out from base (64-byte aligned pieces) and returns the
 * floats it takes; with base NULL, only counts them. */
size_t rm_inception_layout(const rm_unit *u, int64_t n, int64_t voxels, float *base, rm_inception_cache *c);

/* y (N, co, ...) = [branch0, branch1, branch2, branch3](x): BatchNorm with the batch's statistics (updating the
 * running ones) when `batch_stats`, else with the running ones. */
rm_status rm_inception_forward(rm_ctx *ctx, const rm_unit *u, rm_activation act, int batch_stats, const rm_tensor *x,
                               rm_inception_cache *c, rm_tensor *y);
/* From gy, the gradient of y, every parameter's gradient (written into their grads, which the caller zeroed) and
 * gx (NULL: not wanted). The cache is the last forward's, with batch statistics; gy may be overwritten. */
rm_status rm_inception_backward(rm_ctx *ctx, const rm_unit *u, rm_activation act, const rm_tensor *x,
                                rm_inception_cache *c, const rm_tensor *gy, rm_tensor *gx);

#endif /* REPMODE_INCEPTION_H */
