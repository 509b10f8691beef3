/* The Inception block in the training form (docs/network.md §9): branch0 1³; branch1 and branch2 1³ → 3³; branch3 a
 * 3³ max-pool → 1³; every convolution followed by BatchNorm and the activation; the branches concatenated. Also the
 * plain U-Net's layer, the same machinery with one 3³ convolution. */
#include "model/inception.h"

#include <string.h>

/* The convolutions whose outputs are the block's, in concatenation order. */
static const int rm_inc_outputs[4] = {RM_INC_B0, RM_INC_B1B, RM_INC_B2B, RM_INC_B3};

size_t rm_inception_layout(const rm_unit *u, int64_t n, int64_t voxels, float *base, rm_inception_cache *c)
{
    size_t used = 0;
    float **slots[5];
    for (int j = 0; j < rm_unit_subconvs(u); j++) {
        const int64_t out = n * u->sub[j].co * voxels;
        slots[0] = &c->z[j], slots[1] = &c->u[j], slots[2] = &c->a[j], slots[3] = &c->gz[j], slots[4] = &c->ga[j];
        for (int k = 0; k < 5; k++) {
            if (base)
                *slots[k] = base + used;
            used += rm_work_floats(out);
        }
        if (base) {
            c->mean[j] = base + used;
            c->invstd[j] = base + used + rm_work_floats(u->sub[j].co);
        }
        used += 2 * rm_work_floats(u->sub[j].co);
    }
    float **inputs[3] = {&c->pool, &c->gpool, &c->gtmp};
    for (int k = 0; u->kind == RM_UNIT_INCEPTION && k < 3; k++) {
        if (base)
            *inputs[k] = base + used;
        used += rm_work_floats(n * u->ci * voxels);
    }
    return used;
}

/* x's shape with c channels. */
static rm_tensor like(float *data, const rm_tensor *x, int64_t c)
{
    return rm_tensor_5d(data, x->ne[0], c, x->ne[2], x->ne[3], x->ne[4]);
}

static rm_batchnorm3d sub_batchnorm(const rm_subconv *s)
{
    return rm_batchnorm3d_make(s->bn_w->data, s->bn_b->data, s->bn_mean->data, s->bn_var->data);
}

/* One convolution of the block: conv (same, no bias) → BatchNorm → activation, from `in` into c's buffers of j. */
static rm_status sub_forward(rm_ctx *ctx, const rm_subconv *s, int j, rm_activation act, int batch_stats,
                             const rm_tensor *in, rm_inception_cache *c)
{
    const rm_conv3d_params p = rm_conv3d_same(s->k);
    const rm_tensor w = rm_tensor_5d(s->weight->data, s->co, s->ci, s->k, s->k, s->k);
    rm_tensor z = like(c->z[j], in, s->co), pre = like(c->u[j], in, s->co), a = like(c->a[j], in, s->co);
    RM_TRY(rm_conv3d_forward(ctx, &p, in, &w, NULL, &z));
    const rm_batchnorm3d bn = sub_batchnorm(s);
    if (batch_stats) {
        RM_TRY(rm_batchnorm3d_forward_train(ctx, &bn, &z, &pre, c->mean[j], c->invstd[j]));
        ++*s->bn_count->count;
    } else {
        RM_TRY(rm_batchnorm3d_forward_infer(ctx, &bn, &z, &pre));
    }
    return rm_activation_forward(ctx, act, &pre, s->act_bias ? s->act_bias->data : NULL, &a);
}

rm_status rm_inception_forward(rm_ctx *ctx, const rm_unit *u, rm_activation act, int batch_stats, const rm_tensor *x,
                               rm_inception_cache *c, rm_tensor *y)
{
    if (u->kind == RM_UNIT_PLAIN) {
        RM_TRY(sub_forward(ctx, &u->sub[0], 0, act, batch_stats, x, c));
        memcpy(y->data, c->a[0], (size_t)rm_tensor_numel(y) * sizeof(float));
        return RM_OK;
    }
    const int64_t c4 = u->co / 4;
    rm_tensor a1 = like(c->a[RM_INC_B1A], x, c4), a2 = like(c->a[RM_INC_B2A], x, c4), pool = like(c->pool, x, u->ci);
    RM_TRY(rm_maxpool3d_forward(ctx, 3, x, &pool));
    const rm_tensor *inputs[RM_INC_CONVS] = {x, x, &a1, x, &a2, &pool};
    for (int j = 0; j < RM_INC_CONVS; j++)
        RM_TRY(sub_forward(ctx, &u->sub[j], j, act, batch_stats, inputs[j], c));
    rm_tensor parts[4];
    const rm_tensor *ptrs[4];
    for (int k = 0; k < 4; k++) {
        parts[k] = like(c->a[rm_inc_outputs[k]], x, c4);
        ptrs[k] = &parts[k];
    }
    return rm_concat_forward(ctx, ptrs, 4, y);
}

/* The backward of convolution j from its activation's gradient (c->ga[j], overwritten) into its parameters and gin
 * (NULL: not wanted). */
static rm_status sub_backward(rm_ctx *ctx, const rm_subconv *s, int j, rm_activation act, const rm_tensor *in,
                              rm_inception_cache *c, rm_tensor *gin)
{
    rm_tensor z = like(c->z[j], in, s->co), pre = like(c->u[j], in, s->co);
    rm_tensor ga = like(c->ga[j], in, s->co), gz = like(c->gz[j], in, s->co);
    RM_TRY(rm_activation_backward(ctx, act, &pre, &ga, &ga, s->act_bias ? s->act_bias->grad : NULL));
    const rm_batchnorm3d bn = sub_batchnorm(s);
    RM_TRY(
        rm_batchnorm3d_backward_train(ctx, &bn, &z, c->mean[j], c->invstd[j], &ga, &gz, s->bn_w->grad, s->bn_b->grad));
    const rm_conv3d_params p = rm_conv3d_same(s->k);
    const rm_tensor w = rm_tensor_5d(s->weight->data, s->co, s->ci, s->k, s->k, s->k);
    rm_tensor dw = rm_tensor_5d(s->weight->grad, s->co, s->ci, s->k, s->k, s->k);
    return rm_conv3d_backward(ctx, &p, in, &w, &gz, gin, &dw, NULL);
}

rm_status rm_inception_backward(rm_ctx *ctx, const rm_unit *u, rm_activation act, const rm_tensor *x,
                                rm_inception_cache *c, const rm_tensor *gy, rm_tensor *gx)
{
    if (u->kind == RM_UNIT_PLAIN) {
        memcpy(c->ga[0], gy->data, (size_t)rm_tensor_numel(gy) * sizeof(float));
        return sub_backward(ctx, &u->sub[0], 0, act, x, c, gx);
    }
    const int64_t c4 = u->co / 4, n_in = rm_tensor_numel(x);
    rm_tensor parts[4];
    rm_tensor *ptrs[4];
    for (int k = 0; k < 4; k++) {
        parts[k] = like(c->ga[rm_inc_outputs[k]], x, c4);
        ptrs[k] = &parts[k];
    }
    RM_TRY(rm_concat_backward(ctx, gy, ptrs, 4));
    /* The second convolutions of branches 1 and 2 send their input's gradient to the first ones' activations. */
    rm_tensor a1 = like(c->a[RM_INC_B1A], x, c4), a2 = like(c->a[RM_INC_B2A], x, c4);
    rm_tensor g1 = like(c->ga[RM_INC_B1A], x, c4), g2 = like(c->ga[RM_INC_B2A], x, c4);
    RM_TRY(sub_backward(ctx, &u->sub[RM_INC_B1B], RM_INC_B1B, act, &a1, c, &g1));
    RM_TRY(sub_backward(ctx, &u->sub[RM_INC_B2B], RM_INC_B2B, act, &a2, c, &g2));
    /* Four convolutions read x (one through the pool): their input gradients add up, in a fixed order. */
    rm_tensor pool = like(c->pool, x, u->ci), gpool = like(c->gpool, x, u->ci), gtmp = like(c->gtmp, x, u->ci);
    RM_TRY(sub_backward(ctx, &u->sub[RM_INC_B0], RM_INC_B0, act, x, c, gx));
    RM_TRY(sub_backward(ctx, &u->sub[RM_INC_B1A], RM_INC_B1A, act, x, c, gx ? &gtmp : NULL));
    if (gx)
        rm_add_into(ctx, gx->data, gtmp.data, n_in);
    RM_TRY(sub_backward(ctx, &u->sub[RM_INC_B2A], RM_INC_B2A, act, x, c, gx ? &gtmp : NULL));
    if (gx)
        rm_add_into(ctx, gx->data, gtmp.data, n_in);
    RM_TRY(sub_backward(ctx, &u->sub[RM_INC_B3], RM_INC_B3, act, &pool, c, gx ? &gpool : NULL));
    if (!gx)
        return RM_OK;
    RM_TRY(rm_maxpool3d_backward(ctx, 3, x, &gpool, &gtmp));
    rm_add_into(ctx, gx->data, gtmp.data, n_in);
    return RM_OK;
}
