/* The training form: forward in training or inference mode, each sample with its own task's merged kernels, and
 * the backward through BatchNorm, the convolutions and the merge into every expert and gate.
 *
 * Memory: one block holds, per unit, the convolution output z, the BatchNorm output u (the activation's input)
 * and the activation a, their gradients, and per level the concatenation [skip, up] with its gradient. It is
 * sized for the batch's shape and kept while shapes do not grow. Merged kernels are made one task at a time into
 * one scratch buffer, so a mixed batch never holds more than one merged kernel per layer.
 */
#include "model/inception.h"
#include "model/mode_layer.h"

#include <stdlib.h>
#include <string.h>

/* Samples in one batch at most: bounds the per-call task lists. */
#define RM_MAX_BATCH 256

typedef struct unit_cache {
    float *z, *u, *a;     /* conv output, BatchNorm output, activation output (FINAL: none, y is the caller's) */
    float *gz, *ga;       /* gradients of z and of a (ga also serves u: the activation's backward runs in place) */
    float *dropped;       /* the input after dropout, when dropout is on */
    float *mean, *invstd; /* BatchNorm's batch statistics */
    rm_inception_cache inc; /* INCEPTION: its branches' buffers */
} unit_cache;

struct rm_train_state {
    int64_t shape[RM_MAX_DIMS]; /* the input shape the buffers are sized for */
    unit_cache *cache;
    float **cat, **gcat, **gskip; /* per level 1..L */
    float **skip2d, **gskip2d;    /* per level 1..L, 2D decoder: the skip's depth mean and its gradient */
    float *bottom2d, *gbottom2d;  /* 2D decoder: the bottleneck's depth mean and its gradient */
    float *x;                      /* the last training input (copied: its weight gradient needs it) */
    float *gdrop;                  /* the gradient of a dropped input, before the dropout's backward */
    float *w, *dw, *dw_sample;     /* one merged kernel, its gradient, one sample's share */
    float *gate;
    int *tasks;
    uint64_t seed;
    int training;  /* what the last forward was */
    float *block;
};

void rm_train_state_free(struct rm_train_state *s)
{
    if (!s)
        return;
    rm_dealloc(s->block);
    rm_dealloc(s->cache);
    rm_dealloc(s->cat);
    rm_dealloc(s->tasks);
    rm_dealloc(s);
}

/* Voxels per channel of one sample at `level` (1: the input's resolution), of 2D features (depth 1) when planar. */
static int64_t level_voxels(const int64_t shape[RM_MAX_DIMS], int level, int planar)
{
    return (planar ? 1 : shape[2] >> (level - 1)) * (shape[3] >> (level - 1)) * (shape[4] >> (level - 1));
}

static int64_t unit_in_voxels(const rm_unit *u, const int64_t shape[RM_MAX_DIMS])
{
    return level_voxels(shape, rm_unit_input_level(u), u->planar);
}

/* Carves the state's buffers out of one block (or, with base NULL, counts the floats they need). */
static size_t layout(rm_model *m, struct rm_train_state *s, float *base)
{
    const int64_t N = s->shape[0];
    const int dropout = m->cfg.dropout > 0.0f, d2 = m->cfg.decoder_2d;
    size_t used = 0, max_kernel = 0, max_in = 0, max_co = 0;
#define TAKE(ptr, count)                                  \
    do {                                                  \
        const size_t n_ = (size_t)(count);                \
        if (base)                                         \
            (ptr) = base + used;                          \
        used += rm_work_floats((int64_t)n_); /* 64-byte aligned */ \
    } while (0)
    for (int i = 0; i < m->n_units; i++) {
        const rm_unit *u = &m->units[i];
        unit_cache *c = &s->cache[i];
        const int64_t out = N * u->co * level_voxels(s->shape, u->level, u->planar);
        const int64_t in = N * u->ci * unit_in_voxels(u, s->shape);
        if (u->kind == RM_UNIT_FINAL && u->planar) { /* its 2D map, before it is repeated over depth into y */
            TAKE(c->z, out);
            TAKE(c->gz, out);
        }
        const int conv_bn = u->kind == RM_UNIT_MODE || u->kind == RM_UNIT_DOWN || u->kind == RM_UNIT_UP;
        const int block = u->kind != RM_UNIT_DOWN && u->kind != RM_UNIT_UP; /* MoDE or Inception, or their last */
        if (conv_bn) {
            TAKE(c->z, out);
            TAKE(c->u, out);
            TAKE(c->mean, u->co);
            TAKE(c->invstd, u->co);
            TAKE(c->gz, out);
        }
        if (conv_bn || rm_unit_subconvs(u)) {
            TAKE(c->a, out);
            TAKE(c->ga, out);
        }
        if (rm_unit_subconvs(u))
            used += rm_inception_layout(u, N, level_voxels(s->shape, u->level, 0), base ? base + used : NULL, &c->inc);
        if (dropout && block)
            TAKE(c->dropped, in);
        if (u->kind == RM_UNIT_MODE || u->kind == RM_UNIT_FINAL) {
            const size_t k = (size_t)rm_unit_weight_numel(u);
            max_kernel = k > max_kernel ? k : max_kernel;
            max_co = (size_t)u->co > max_co ? (size_t)u->co : max_co;
        }
        max_in = (size_t)in > max_in ? (size_t)in : max_in;
    }
    for (int k = 1; k <= m->cfg.levels; k++) {
        const int64_t ck = rm_config_channels(&m->cfg, k), half = N * ck * level_voxels(s->shape, k, 0);
        const int64_t half2d = N * ck * level_voxels(s->shape, k, 1);
        TAKE(s->cat[k], 2 * (d2 ? half2d : half));
        TAKE(s->gcat[k], 2 * (d2 ? half2d : half));
        TAKE(s->gskip[k], half);
        if (d2) {
            TAKE(s->skip2d[k], half2d);
            TAKE(s->gskip2d[k], half2d);
        }
    }
    if (d2) {
        const int L = m->cfg.levels;
        const int64_t bottom = N * rm_config_channels(&m->cfg, L + 1) * level_voxels(s->shape, L + 1, 1);
        TAKE(s->bottom2d, bottom);
        TAKE(s->gbottom2d, bottom);
    }
    TAKE(s->x, N * m->cfg.in_channels * level_voxels(s->shape, 1, 0));
    if (dropout)
        TAKE(s->gdrop, max_in);
    TAKE(s->w, max_kernel);
    TAKE(s->dw, max_kernel);
    TAKE(s->dw_sample, max_kernel);
    TAKE(s->gate, RM_MAX_EXPERTS * max_co);
#undef TAKE
    return used;
}

/* The state sized for x's shape, reusing the present one when the shape is unchanged. */
static rm_status train_state_for(rm_ctx *ctx, rm_model *m, const rm_tensor *x, struct rm_train_state **out)
{
    struct rm_train_state *s = m->train;
    if (s && memcmp(s->shape, x->ne, sizeof s->shape) == 0) {
        *out = s;
        return RM_OK;
    }
    rm_train_state_free(s);
    m->train = NULL;
    s = rm_calloc(1, sizeof *s);
    if (!s)
        return rm_fail(ctx, RM_ERR_NOMEM, "model: out of memory");
    memcpy(s->shape, x->ne, sizeof s->shape);
    const int L = m->cfg.levels;
    s->cache = rm_calloc((size_t)m->n_units, sizeof *s->cache);
    s->cat = rm_calloc((size_t)(5 * (L + 1)), sizeof *s->cat);
    s->tasks = rm_calloc((size_t)x->ne[0], sizeof *s->tasks);
    if (s->cache && s->cat) {
        s->gcat = s->cat + (L + 1);
        s->gskip = s->cat + 2 * (L + 1);
        s->skip2d = s->cat + 3 * (L + 1);
        s->gskip2d = s->cat + 4 * (L + 1);
    }
    const size_t floats = s->cache && s->cat ? layout(m, s, NULL) : 0;
    s->block = floats ? rm_aligned_alloc(64, floats * sizeof(float)) : NULL;
    if (!s->block || !s->tasks) {
        rm_train_state_free(s);
        return rm_fail(ctx, RM_ERR_NOMEM, "model: cannot allocate %zu MiB of activations for a batch of shape "
                       "(%lld, %lld, %lld, %lld, %lld)", floats * sizeof(float) >> 20, (long long)x->ne[0],
                       (long long)x->ne[1], (long long)x->ne[2], (long long)x->ne[3], (long long)x->ne[4]);
    }
    layout(m, s, s->block);
    m->train = s;
    *out = s;
    return RM_OK;
}

/* ---- unit wiring --------------------------------------------------------------------------------------------- */

/* n samples of c channels at `level`: of the level's depth, or 2D features (depth 1) when planar. */
static rm_tensor view(float *data, int64_t n, int64_t c, const int64_t shape[RM_MAX_DIMS], int level, int planar)
{
    return rm_tensor_5d(data, n, c, planar ? 1 : shape[2] >> (level - 1), shape[3] >> (level - 1),
                        shape[4] >> (level - 1));
}

/* Sample n of a batch tensor. */
static rm_tensor sample(const rm_tensor *t, int64_t n)
{
    rm_tensor s = *t;
    s.data = t->data + n * rm_tensor_sample_numel(t);
    s.ne[0] = 1;
    return s;
}

/* Where unit i reads its input, and where the gradient of that input goes (NULL for the network's input). */
static void unit_input(rm_model *m, struct rm_train_state *s, int i, float **in, float **gin)
{
    const rm_unit *u = &m->units[i];
    if (i == 0) {
        *in = s->x;
        *gin = NULL;
    } else if (rm_unit_reads_concat(m, i)) {
        *in = s->cat[u->level];
        *gin = s->gcat[u->level];
    } else if (u->planar && i == rm_unit_decoder(m->cfg.levels, m->cfg.levels)) {
        *in = s->bottom2d; /* the 2D decoder starts from the bottleneck's depth mean */
        *gin = s->gbottom2d;
    } else {
        *in = s->cache[i - 1].a;
        *gin = s->cache[i - 1].ga;
    }
}

static uint64_t unit_seed(uint64_t seed, int i) { return seed ^ (UINT64_C(0x9e3779b97f4a7c15) * (uint64_t)(i + 1)); }

/* Whether unit i's BatchNorm normalizes with the batch's statistics (and updates its running ones): in a training
 * forward, unless the unit is frozen (rm_model_train_only_task, rm_model_freeze_encoder). */
static int batchnorm_trains(const rm_model *m, const struct rm_train_state *s, int i)
{
    return s->training && m->only_task < 0 && i >= m->frozen_units;
}

/* The distinct tasks of the batch, ascending; returns how many. */
static int distinct_tasks(const int *tasks, int64_t n, int *out)
{
    int count = 0;
    for (int64_t j = 0; j < n; j++) {
        int seen = 0;
        for (int k = 0; k < count; k++)
            seen |= out[k] == tasks[j];
        if (!seen)
            out[count++] = tasks[j];
    }
    for (int a = 1; a < count; a++) /* a handful of tasks: insertion sort */
        for (int b = a; b > 0 && out[b - 1] > out[b]; b--) {
            const int t = out[b];
            out[b] = out[b - 1];
            out[b - 1] = t;
        }
    return count;
}

/* gz (N, C, 1, H, W) = Σ over depth of dy (N, C, D, H, W), in order, in double: the backward of the repetition. */
static void sum_over_depth(const rm_tensor *dy, rm_tensor *gz)
{
    const int64_t plane = dy->ne[3] * dy->ne[4], maps = dy->ne[0] * dy->ne[1];
    for (int64_t j = 0; j < maps; j++)
        for (int64_t v = 0; v < plane; v++) {
            double sum = 0.0;
            for (int64_t d = 0; d < dy->ne[2]; d++)
                sum += dy->data[(j * dy->ne[2] + d) * plane + v];
            gz->data[j * plane + v] = (float)sum;
        }
}

/* ---- forward ------------------------------------------------------------------------------------------------- */

/* A MoDE convolution: every sample with its own task's merged kernel. */
static rm_status mode_conv_forward(rm_ctx *ctx, rm_model *m, struct rm_train_state *s, const rm_unit *u,
                                   const rm_tensor *in, rm_tensor *out)
{
    const rm_conv3d_params p = rm_unit_conv_params(u);
    const rm_tensor w = rm_tensor_5d(s->w, u->co, u->ci, rm_unit_kernel_depth(u), 5, 5);
    int order[RM_MAX_BATCH];
    const int n_distinct = distinct_tasks(s->tasks, in->ne[0], order);
    for (int k = 0; k < n_distinct; k++) {
        rm_mode_gate(u, order[k], m->cfg.n_tasks, s->gate);
        rm_mode_merge(ctx, u, order[k], s->gate, s->w);
        for (int64_t n = 0; n < in->ne[0]; n++) {
            if (s->tasks[n] != order[k])
                continue;
            rm_tensor xn = sample(in, n), yn = sample(out, n);
            RM_TRY(rm_conv3d_forward(ctx, &p, &xn, &w, NULL, &yn));
        }
    }
    return RM_OK;
}

static rm_status unit_forward(rm_ctx *ctx, rm_model *m, struct rm_train_state *s, int i, rm_tensor *y)
{
    const rm_unit *u = &m->units[i];
    unit_cache *c = &s->cache[i];
    const int64_t N = s->shape[0];
    const int in_level = rm_unit_input_level(u);
    float *in_data, *gin;
    unit_input(m, s, i, &in_data, &gin);
    rm_tensor in = view(in_data, N, u->ci, s->shape, in_level, u->planar);
    const int direct_out = (u->kind == RM_UNIT_FINAL && !u->planar) || u->kind == RM_UNIT_OUT;
    rm_tensor z = direct_out ? *y : view(c->z, N, u->co, s->shape, u->level, u->planar);

    if (u->kind == RM_UNIT_DOWN || u->kind == RM_UNIT_UP) {
        const rm_conv3d_params p = rm_unit_conv_params(u);
        const rm_tensor w =
            rm_tensor_5d(u->weight->data, u->weight->shape[0], u->weight->shape[1], rm_unit_kernel_depth(u), 2, 2);
        RM_TRY(u->kind == RM_UNIT_DOWN ? rm_conv3d_forward(ctx, &p, &in, &w, NULL, &z)
                                       : rm_conv_transpose3d_forward(ctx, &p, &in, &w, NULL, &z));
    } else {
        if (s->training && c->dropped) {
            rm_tensor dropped = view(c->dropped, N, u->ci, s->shape, in_level, u->planar);
            RM_TRY(rm_dropout_forward(ctx, m->cfg.dropout, unit_seed(s->seed, i), &in, &dropped));
            in = dropped;
        }
        if (rm_unit_subconvs(u)) {
            rm_tensor a = view(c->a, N, u->co, s->shape, u->level, 0);
            return rm_inception_forward(ctx, u, m->cfg.activation, batchnorm_trains(m, s, i), &in, &c->inc, &a);
        }
        if (u->kind == RM_UNIT_OUT) {
            const rm_conv3d_params p = rm_conv3d_same(1);
            const rm_tensor w = rm_tensor_5d(u->weight->data, u->co, u->ci, 1, 1, 1);
            return rm_conv3d_forward(ctx, &p, &in, &w, u->bias->data, y);
        }
        RM_TRY(mode_conv_forward(ctx, m, s, u, &in, &z));
    }
    if (u->kind == RM_UNIT_FINAL) {
        if (!direct_out) /* a 2D decoder's map, repeated over depth as the output */
            rm_repeat_over_depth(z.data, y->ne[0] * y->ne[1], y->ne[2], y->ne[3] * y->ne[4], y->data);
        return RM_OK;
    }

    const rm_batchnorm3d bn = rm_unit_batchnorm(u);
    rm_tensor pre = view(c->u, N, u->co, s->shape, u->level, u->planar);
    rm_tensor a = view(c->a, N, u->co, s->shape, u->level, u->planar);
    if (batchnorm_trains(m, s, i)) {
        RM_TRY(rm_batchnorm3d_forward_train(ctx, &bn, &z, &pre, c->mean, c->invstd));
        ++*u->bn_count->count;
    } else {
        RM_TRY(rm_batchnorm3d_forward_infer(ctx, &bn, &z, &pre));
    }
    return rm_activation_forward(ctx, m->cfg.activation, &pre, u->act_bias ? u->act_bias->data : NULL, &a);
}

static rm_status forward(rm_ctx *ctx, rm_model *m, const rm_tensor *x, const int *tasks, uint64_t seed, int training,
                         rm_tensor *y)
{
    RM_TRY(rm_model_check_input(ctx, &m->cfg, x, tasks, y));
    if (!tasks)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "tasks is NULL");
    if (x->ne[0] > RM_MAX_BATCH)
        return rm_fail(ctx, RM_ERR_SHAPE, "a batch of %lld samples is more than %d", (long long)x->ne[0],
                       RM_MAX_BATCH);
    for (int64_t n = 0; training && m->only_task >= 0 && n < x->ne[0]; n++)
        if (tasks[n] != m->only_task)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "sample %lld has task '%s'; the model trains only '%s'",
                           (long long)n, m->tasks[tasks[n]].name, m->tasks[m->only_task].name);
    struct rm_train_state *s = NULL;
    if (training)
        RM_TRY(rm_model_ensure_grads(ctx, m));
    RM_TRY(train_state_for(ctx, m, x, &s));
    s->training = training;
    s->seed = seed;
    memcpy(s->tasks, tasks, (size_t)x->ne[0] * sizeof *tasks);
    memcpy(s->x, x->data, (size_t)rm_tensor_numel(x) * sizeof(float));

    for (int i = 0; i < m->n_units; i++) {
        const rm_unit *u = &m->units[i];
        const int64_t N = s->shape[0];
        if (u->planar && i == rm_unit_decoder(m->cfg.levels, m->cfg.levels)) {
            /* The 2D decoder starts from the bottleneck's output averaged over depth. */
            const int L = m->cfg.levels;
            const int64_t cb = rm_config_channels(&m->cfg, L + 1);
            rm_tensor bottom = view(s->cache[i - 1].a, N, cb, s->shape, L + 1, 0);
            rm_tensor bottom2d = view(s->bottom2d, N, cb, s->shape, L + 1, 1);
            RM_TRY(rm_depth_mean_forward(ctx, &bottom, &bottom2d));
        }
        if (rm_unit_reads_concat(m, i)) {
            /* The decoder's first convolution reads [skip, up]: the encoder's output at this level (its depth mean
             * in a 2D decoder), then the up-sampled features. */
            const int64_t ck = u->co;
            rm_tensor skip = view(s->cache[rm_unit_encoder(u->level) + 1].a, N, ck, s->shape, u->level, 0);
            if (u->planar) {
                rm_tensor skip2d = view(s->skip2d[u->level], N, ck, s->shape, u->level, 1);
                RM_TRY(rm_depth_mean_forward(ctx, &skip, &skip2d));
                skip = skip2d;
            }
            rm_tensor up = view(s->cache[i - 1].a, N, ck, s->shape, u->level, u->planar);
            rm_tensor cat = view(s->cat[u->level], N, 2 * ck, s->shape, u->level, u->planar);
            const rm_tensor *parts[2] = {&skip, &up};
            RM_TRY(rm_concat_forward(ctx, parts, 2, &cat));
        }
        RM_TRY(unit_forward(ctx, m, s, i, y));
    }
    return RM_OK;
}

rm_status rm_model_forward_train(rm_ctx *ctx, rm_model *model, const rm_tensor *x, const int *tasks, uint64_t seed,
                                 rm_tensor *y)
{
    return forward(ctx, model, x, tasks, seed, 1, y);
}

rm_status rm_model_forward_eval(rm_ctx *ctx, rm_model *model, const rm_tensor *x, const int *tasks, rm_tensor *y)
{
    return forward(ctx, model, x, tasks, 0, 0, y);
}

/* ---- backward ------------------------------------------------------------------------------------------------ */

/* The MoDE convolution's backward: per task, the merged kernel again, every sample's input gradient, and the
 * kernel gradient summed over the task's samples and scattered into the experts and the gate. */
static rm_status mode_conv_backward(rm_ctx *ctx, rm_model *m, struct rm_train_state *s, const rm_unit *u,
                                    const rm_tensor *in, const rm_tensor *gz, rm_tensor *gin)
{
    const rm_conv3d_params p = rm_unit_conv_params(u);
    const int kd = rm_unit_kernel_depth(u);
    const rm_tensor w = rm_tensor_5d(s->w, u->co, u->ci, kd, 5, 5);
    rm_tensor dw = rm_tensor_5d(s->dw, u->co, u->ci, kd, 5, 5);
    rm_tensor dws = rm_tensor_5d(s->dw_sample, u->co, u->ci, kd, 5, 5);
    const size_t kernel = (size_t)rm_unit_weight_numel(u);
    int order[RM_MAX_BATCH];
    const int n_distinct = distinct_tasks(s->tasks, in->ne[0], order);
    for (int k = 0; k < n_distinct; k++) {
        rm_mode_gate(u, order[k], m->cfg.n_tasks, s->gate);
        rm_mode_merge(ctx, u, order[k], s->gate, s->w);
        /* The task's first sample writes the kernel gradient, the next ones add theirs to it, in sample order. */
        int first = 1;
        for (int64_t n = 0; n < in->ne[0]; n++) {
            if (s->tasks[n] != order[k])
                continue;
            rm_tensor xn = sample(in, n), gn = sample(gz, n), dxn;
            if (gin)
                dxn = sample(gin, n);
            RM_TRY(rm_conv3d_backward(ctx, &p, &xn, &w, &gn, gin ? &dxn : NULL, first ? &dw : &dws, NULL));
            if (!first)
                rm_add_into(ctx, s->dw, s->dw_sample, (int64_t)kernel);
            first = 0;
        }
        rm_mode_merge_backward(ctx, u, order[k], m->cfg.n_tasks, s->gate, s->dw);
    }
    return RM_OK;
}

/* The backward of an Inception block or a plain layer (from its activation's gradient) or of those networks' output
 * layer (from dy, in gz), through the block's dropout when it has one. */
static rm_status other_block_backward(rm_ctx *ctx, rm_model *m, struct rm_train_state *s, int i, const rm_tensor *in,
                                      rm_tensor *gin, const rm_tensor *gz)
{
    const rm_unit *u = &m->units[i];
    unit_cache *c = &s->cache[i];
    const int64_t N = s->shape[0];
    rm_tensor seen = *in, gdrop = *in;
    if (c->dropped) { /* the block saw the dropped input; its gradient goes back through the same mask */
        seen.data = c->dropped;
        gdrop.data = s->gdrop;
    }
    rm_tensor *gx = gin ? (c->dropped ? &gdrop : gin) : NULL;
    if (rm_unit_subconvs(u)) {
        rm_tensor ga = view(c->ga, N, u->co, s->shape, u->level, 0);
        RM_TRY(rm_inception_backward(ctx, u, m->cfg.activation, &seen, &c->inc, &ga, gx));
    } else {
        const rm_conv3d_params p = rm_conv3d_same(1);
        const rm_tensor w = rm_tensor_5d(u->weight->data, u->co, u->ci, 1, 1, 1);
        rm_tensor dw = rm_tensor_5d(u->weight->grad, u->co, u->ci, 1, 1, 1);
        RM_TRY(rm_conv3d_backward(ctx, &p, &seen, &w, gz, gx, &dw, u->bias->grad));
    }
    return c->dropped && gin ? rm_dropout_backward(ctx, m->cfg.dropout, unit_seed(s->seed, i), &gdrop, gin) : RM_OK;
}

static rm_status unit_backward(rm_ctx *ctx, rm_model *m, struct rm_train_state *s, int i, const rm_tensor *dy)
{
    const rm_unit *u = &m->units[i];
    unit_cache *c = &s->cache[i];
    const int64_t N = s->shape[0];
    const int in_level = rm_unit_input_level(u);
    float *in_data, *gin_data;
    unit_input(m, s, i, &in_data, &gin_data);
    if (i == m->frozen_units)
        gin_data = NULL; /* the first unit after a frozen encoder: nothing before it takes a gradient */
    rm_tensor in = view(in_data, N, u->ci, s->shape, in_level, u->planar);
    rm_tensor gin = view(gin_data ? gin_data : in_data, N, u->ci, s->shape, in_level, u->planar);
    const int direct_out = (u->kind == RM_UNIT_FINAL && !u->planar) || u->kind == RM_UNIT_OUT;
    rm_tensor gz = direct_out ? *dy : view(c->gz, N, u->co, s->shape, u->level, u->planar);

    if (rm_unit_subconvs(u) || u->kind == RM_UNIT_OUT)
        return other_block_backward(ctx, m, s, i, &in, gin_data ? &gin : NULL, &gz);
    if (u->kind == RM_UNIT_FINAL && u->planar)
        sum_over_depth(dy, &gz); /* the 2D map was repeated over depth */
    if (u->kind != RM_UNIT_FINAL) {
        const rm_batchnorm3d bn = rm_unit_batchnorm(u);
        rm_tensor z = view(c->z, N, u->co, s->shape, u->level, u->planar);
        rm_tensor pre = view(c->u, N, u->co, s->shape, u->level, u->planar);
        rm_tensor ga = view(c->ga, N, u->co, s->shape, u->level, u->planar);
        RM_TRY(rm_activation_backward(ctx, m->cfg.activation, &pre, &ga, &ga, u->act_bias ? u->act_bias->grad : NULL));
        /* Frozen (rm_model_train_only_task), BatchNorm ran in inference mode: a fixed affine map per channel. */
        RM_TRY(m->only_task < 0 ? rm_batchnorm3d_backward_train(ctx, &bn, &z, c->mean, c->invstd, &ga, &gz,
                                                                u->bn_w->grad, u->bn_b->grad)
                                : rm_batchnorm3d_backward_infer(ctx, &bn, &z, &ga, &gz, NULL, NULL));
    }
    if (u->kind == RM_UNIT_DOWN || u->kind == RM_UNIT_UP) {
        const rm_conv3d_params p = rm_unit_conv_params(u);
        const int kd = rm_unit_kernel_depth(u);
        const rm_tensor w = rm_tensor_5d(u->weight->data, u->weight->shape[0], u->weight->shape[1], kd, 2, 2);
        rm_tensor dw = rm_tensor_5d(u->weight->grad, u->weight->shape[0], u->weight->shape[1], kd, 2, 2);
        rm_tensor *pdw = u->weight->grad ? &dw : NULL; /* frozen: no weight gradient to compute */
        return u->kind == RM_UNIT_DOWN ? rm_conv3d_backward(ctx, &p, &in, &w, &gz, &gin, pdw, NULL)
                                       : rm_conv_transpose3d_backward(ctx, &p, &in, &w, &gz, &gin, pdw, NULL);
    }
    if (!c->dropped)
        return mode_conv_backward(ctx, m, s, u, &in, &gz, gin_data ? &gin : NULL);
    /* With dropout the convolution saw the dropped input; its gradient goes back through the same mask. */
    rm_tensor dropped = view(c->dropped, N, u->ci, s->shape, in_level, u->planar);
    rm_tensor gdrop = view(s->gdrop, N, u->ci, s->shape, in_level, u->planar);
    RM_TRY(mode_conv_backward(ctx, m, s, u, &dropped, &gz, gin_data ? &gdrop : NULL));
    return gin_data ? rm_dropout_backward(ctx, m->cfg.dropout, unit_seed(s->seed, i), &gdrop, &gin) : RM_OK;
}

void rm_add_into(rm_ctx *ctx, float *dst, const float *src, int64_t n)
{
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t j = 0; j < n; j++)
        dst[j] += src[j];
}

rm_status rm_model_backward(rm_ctx *ctx, rm_model *model, const rm_tensor *dy)
{
    struct rm_train_state *s = model->train;
    if (!s || !s->training)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "model backward: no training forward to go back through");
    const int64_t y_ne[RM_MAX_DIMS] = {s->shape[0], model->cfg.out_channels, s->shape[2], s->shape[3], s->shape[4]};
    RM_TRY(rm_check_shape(ctx, dy, "dy", y_ne));
    for (size_t j = 0; j < model->n_params; j++)
        if (model->params[j].grad)
            memset(model->params[j].grad, 0, (size_t)model->params[j].numel * sizeof(float));

    const int64_t N = s->shape[0];
    for (int i = model->n_units - 1; i >= model->frozen_units; i--) { /* a frozen encoder takes no gradient */
        const rm_unit *u = &model->units[i];
        RM_TRY(unit_backward(ctx, model, s, i, dy));
        if (rm_unit_reads_concat(model, i)) {
            /* Split [skip, up]'s gradient: the up-sampling's share now, the skip's when the encoder is reached. */
            const int64_t ck = u->co;
            rm_tensor gcat = view(s->gcat[u->level], N, 2 * ck, s->shape, u->level, u->planar);
            rm_tensor gskip = view(s->gskip[u->level], N, ck, s->shape, u->level, 0);
            rm_tensor gskip2d = view(s->gskip2d[u->level], N, ck, s->shape, u->level, 1);
            rm_tensor gup = view(s->cache[i - 1].ga, N, ck, s->shape, u->level, u->planar);
            rm_tensor *parts[2] = {u->planar ? &gskip2d : &gskip, &gup};
            RM_TRY(rm_concat_backward(ctx, &gcat, parts, 2));
            if (u->planar)
                RM_TRY(rm_depth_mean_backward(ctx, &gskip2d, &gskip));
        } else if (u->planar && i == rm_unit_decoder(model->cfg.levels, model->cfg.levels)) {
            /* Back through the bottleneck's depth mean. */
            const int L = model->cfg.levels;
            const int64_t cb = rm_config_channels(&model->cfg, L + 1);
            rm_tensor g2d = view(s->gbottom2d, N, cb, s->shape, L + 1, 1);
            rm_tensor g = view(s->cache[i - 1].ga, N, cb, s->shape, L + 1, 0);
            RM_TRY(rm_depth_mean_backward(ctx, &g2d, &g));
        } else if (u->kind == RM_UNIT_DOWN) {
            /* The encoder's output fed both the down-sampling and the skip connection. */
            const int k = u->level - 1;
            rm_add_into(ctx, s->cache[i - 1].ga, s->gskip[k],
                        N * rm_config_channels(&model->cfg, k) * level_voxels(s->shape, k, 0));
        }
    }
    return RM_OK;
}
