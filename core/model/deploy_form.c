/* The deploy form: one task's network with every MoDE layer merged and every BatchNorm folded (docs/network.md
 * §3.5): W' = W_t·s[o], b' = β[o] − μ[o]·s[o], s = γ / √(σ² + ε); for the transposed convolution
 * the scale goes on weight dimension 1. What is left is a plain U-Net of convolutions with biases.
 *
 * Memory: the folded weights live in one block made at creation and rewritten in place by rm_deploy_set_task;
 * the 5³ weights the convolution engine's direct kernels take are kept in their packed layout (same size), so a
 * forward pass does not pack them again;
 * activations of one sample live in per-level buffers made for the largest patch seen. The decoder's
 * concatenation costs nothing: the encoder writes its skip into the first half of the level's [skip, up] buffer
 * and the up-sampling writes the second half.
 */
#include "base/rng.h"
#include "model/mode_layer.h"
#include "ops/conv_engine.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct deploy_unit {
    const rm_unit *src; /* shape and kind, from the deploy form's own structure */
    float *w;           /* MODE, FINAL (co, ci, 5, 5, 5); DOWN (co, ci, 2, 2, 2); UP (ci, co, 2, 2, 2) */
    float *b;           /* (co) */
    float *act_bias;    /* FReLU's bias, else NULL */
    int packed;         /* w is in the convolution engine's packed layout (rm_conv_engine_pack), not the plain one */
    float *sw[RM_INC_CONVS], *sb[RM_INC_CONVS], *sact[RM_INC_CONVS]; /* INCEPTION: each convolution's, folded */
} deploy_unit;

struct rm_deploy {
    rm_model *structure; /* the network's units and shapes, without tensors */
    const rm_config *cfg;
    int task;
    uint64_t generation; /* of the folded weights: see rm_deploy_generation */
    deploy_unit *units;
    int n_units;
    float *weights;
    float mc_dropout; /* a Monte Carlo pass's dropout on the input of every MoDE block (rm_deploy_set_mc), or 0 */
    uint64_t mc_key;  /* that pass's key */
};

/* One sample's activations, per level 1..levels+1, laid out in the calling context's working memory: a deploy form
 * holds nothing that a forward pass writes, so threads may share one, each with its own context. */
typedef struct activations {
    float *t[RM_MAX_LEVELS + 2], *o[RM_MAX_LEVELS + 2], *cat[RM_MAX_LEVELS + 2], *down[RM_MAX_LEVELS + 2];
    float *bottom, *map; /* 2D decoder: the bottleneck's depth mean, and the 2D map before it is repeated over depth */
    float *inception;    /* an Inception block's pooled input and the output of a branch's first convolution */
    float *dropped; /* a MoDE block's input after a Monte Carlo pass's dropout (the largest: level 1's [skip, up]) */
} activations;

/* One counter for the whole process, so that no two states of folded weights share a generation, whichever deploy
 * form (or address) holds them. */
static _Atomic uint64_t last_generation;

static void new_generation(rm_deploy *d)
{
    d->generation = atomic_fetch_add_explicit(&last_generation, 1, memory_order_relaxed) + 1;
}

/* The 5³ (5², planar) convolution of a MODE or FINAL unit on a volume of d×h×w at its level. */
static rm_conv_geom mode_geom(const rm_unit *u, int64_t d, int64_t h, int64_t w)
{
    return rm_conv_geom_same(u->ci, u->co, d, h, w, RM_MODE_KERNEL, rm_unit_kernel_depth(u));
}

/* Puts the plain weights of a packed unit into the packed layout, in place. */
static rm_status pack_unit(rm_ctx *ctx, deploy_unit *du)
{
    if (!du->packed)
        return RM_OK;
    const rm_conv_geom g = mode_geom(du->src, 1, 1, 1);
    const int64_t n = rm_unit_weight_numel(du->src);
    float *plain = rm_malloc((size_t)n * sizeof *plain);
    if (!plain)
        return rm_fail(ctx, RM_ERR_NOMEM, "deploy: cannot allocate %lld floats to pack weights", (long long)n);
    memcpy(plain, du->w, (size_t)n * sizeof *plain);
    rm_conv_engine_pack(&g, ctx->n_threads, plain, du->w);
    rm_dealloc(plain);
    return RM_OK;
}

/* Scales output channel o of w by s[o]: w is (co, rest) when `outer`, else (ci, co, rest). */
static void scale_channels(float *w, const double *s, int64_t ci, int64_t co, int64_t taps, int outer)
{
    for (int64_t i = 0; i < ci; i++)
        for (int64_t o = 0; o < co; o++) {
            float *wk = w + (outer ? o * ci + i : i * co + o) * taps;
            for (int64_t t = 0; t < taps; t++)
                wk[t] = (float)(wk[t] * s[o]);
        }
}

/* The key of unit i's gate noise in a pass keyed `key`. */
static uint64_t unit_key(uint64_t key, int i)
{
    return rm_mix64(key ^ rm_mix64((uint64_t)i * RM_GOLDEN + UINT64_C(7)));
}

/* Folds a BatchNorm into the convolution before it: w (co, ci, taps) when `outer`, else (ci, co, taps), scaled per
 * output channel by s = γ / √(σ² + ε), and b = β − μ·s. */
static void fold_batchnorm(const rm_batchnorm3d *bn, int64_t ci, int64_t co, int64_t taps, int outer, double *scale,
                           float *w, float *b)
{
    for (int64_t o = 0; o < co; o++) {
        scale[o] = (double)bn->weight[o] / sqrt((double)bn->running_var[o] + (double)bn->eps);
        b[o] = (float)((double)bn->bias[o] - (double)bn->running_mean[o] * scale[o]);
    }
    scale_channels(w, scale, ci, co, taps, outer);
}

/* An Inception block's six convolutions or a plain layer's one, each with its BatchNorm folded; those networks' 1³
 * output layer as it is. */
static void fold_other(const rm_unit *u, deploy_unit *d, double *scale)
{
    if (u->kind == RM_UNIT_OUT) {
        memcpy(d->w, u->weight->data, (size_t)rm_unit_weight_numel(u) * sizeof(float));
        memcpy(d->b, u->bias->data, (size_t)u->co * sizeof(float));
        return;
    }
    for (int j = 0; j < rm_unit_subconvs(u); j++) {
        const rm_subconv *c = &u->sub[j];
        memcpy(d->sw[j], c->weight->data, (size_t)rm_subconv_weight_numel(c) * sizeof(float));
        const rm_batchnorm3d bn = rm_batchnorm3d_make(c->bn_w->data, c->bn_b->data, c->bn_mean->data, c->bn_var->data);
        fold_batchnorm(&bn, c->ci, c->co, c->k * c->k * c->k, 1, scale, d->sw[j], d->sb[j]);
        if (d->sact[j])
            memcpy(d->sact[j], c->act_bias->data, (size_t)c->co * sizeof(float));
    }
}

/* Folds unit i of m for `task`, its gate logits with noise of σ `sigma` under the pass key `key` (σ 0: none). */
static rm_status fold_unit(rm_ctx *ctx, const rm_model *m, deploy_unit *d, int i, int task, double sigma, uint64_t key,
                           double *scale, float *gate)
{
    const rm_unit *u = &m->units[i];
    if (rm_unit_subconvs(u) || u->kind == RM_UNIT_OUT) {
        fold_other(u, d, scale);
        return RM_OK;
    }
    if (u->kind == RM_UNIT_MODE || u->kind == RM_UNIT_FINAL) {
        rm_mode_gate_noisy(u, task, m->cfg.n_tasks, sigma, unit_key(key, i), gate);
        rm_mode_merge(ctx, u, task, gate, d->w);
    } else {
        memcpy(d->w, u->weight->data, (size_t)rm_unit_weight_numel(u) * sizeof(float));
    }
    if (u->kind == RM_UNIT_FINAL) {
        memset(d->b, 0, (size_t)u->co * sizeof(float));
        return pack_unit(ctx, d);
    }
    const rm_batchnorm3d bn = rm_unit_batchnorm(u);
    fold_batchnorm(&bn, u->ci, u->co, rm_unit_weight_numel(u) / (u->ci * u->co), u->kind != RM_UNIT_UP, scale, d->w, d->b);
    if (d->act_bias)
        memcpy(d->act_bias, u->act_bias->data, (size_t)u->co * sizeof(float));
    return pack_unit(ctx, d);
}

/* Whether `m` has the structure the deploy form was made for (its tasks may differ: gates are not kept). */
static int same_structure(const rm_deploy *d, const rm_model *m)
{
    if (m->n_units != d->n_units || m->cfg.activation != d->cfg->activation)
        return 0;
    for (int i = 0; i < d->n_units; i++)
        if (m->units[i].kind != d->units[i].src->kind || m->units[i].ci != d->units[i].src->ci ||
            m->units[i].co != d->units[i].src->co)
            return 0;
    return 1;
}

/* Merges and folds `task` into d, the gate logits with noise of σ `sigma` under `key`. */
static rm_status set_weights(rm_ctx *ctx, rm_deploy *d, const rm_model *model, int task, double sigma, uint64_t key)
{
    if (!d || !model)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: NULL argument");
    if (task < 0 || task >= model->cfg.n_tasks)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: task %d is outside 0..%d", task, model->cfg.n_tasks - 1);
    if (!same_structure(d, model))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: the model's network differs from the deploy form's");
    if (!model->values)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: the model has no weights");
    int64_t max_co = 0;
    for (int i = 0; i < d->n_units; i++)
        max_co = d->units[i].src->co > max_co ? d->units[i].src->co : max_co;
    double *scale = rm_malloc((size_t)max_co * sizeof *scale);
    float *gate = rm_malloc((size_t)(RM_MAX_EXPERTS * max_co) * sizeof *gate);
    rm_status s = scale && gate ? RM_OK : rm_fail(ctx, RM_ERR_NOMEM, "deploy: out of memory");
    for (int i = 0; s == RM_OK && i < d->n_units; i++)
        s = fold_unit(ctx, model, &d->units[i], i, task, sigma, key, scale, gate);
    rm_dealloc(scale);
    rm_dealloc(gate);
    new_generation(d); /* even a failed merge may have rewritten some weights */
    if (s == RM_OK)
        d->task = task;
    return s;
}

rm_status rm_deploy_set_task(rm_ctx *ctx, rm_deploy *d, const rm_model *model, int task)
{
    RM_TRY(set_weights(ctx, d, model, task, 0.0, 0));
    d->mc_dropout = 0.0f;
    return RM_OK;
}

/* The keys of one pass: the gate noise's, and the dropout's (different streams of the same seed and pass). */
static uint64_t pass_key(const rm_mc_pass *mc, uint64_t stream)
{
    return rm_mix64(rm_mix64(mc->seed + RM_GOLDEN) ^ rm_mix64((uint64_t)mc->pass * RM_GOLDEN + stream));
}

rm_status rm_deploy_set_mc(rm_ctx *ctx, rm_deploy *d, const rm_model *model, int task, const rm_mc_pass *mc)
{
    if (!d || !mc)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: NULL argument");
    if (!(mc->dropout >= 0.0f && mc->dropout < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: Monte Carlo dropout %g is outside [0, 1)", (double)mc->dropout);
    if (!(mc->gate_noise >= 0.0f) || !isfinite(mc->gate_noise))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: gate noise %g is not a finite number >= 0",
                       (double)mc->gate_noise);
    if (model)
        RM_TRY(set_weights(ctx, d, model, task, mc->gate_noise, pass_key(mc, 1)));
    else if (mc->gate_noise > 0.0f)
        return rm_fail(ctx, RM_ERR_ARGUMENT,
                       "deploy: gate noise needs the gates and experts of a training-form model; "
                       "this deploy form has them merged already");
    else if (task != d->task)
        return rm_fail(ctx, RM_ERR_ARGUMENT,
                       "deploy: the deploy form holds task %d, not %d, and no model was given to "
                       "merge it",
                       d->task, task);
    else
        new_generation(d); /* the same weights, another computation */
    d->mc_dropout = mc->dropout;
    d->mc_key = pass_key(mc, 2);
    return RM_OK;
}

int64_t rm_deploy_weight_numel(const rm_model *structure)
{
    int64_t floats = 0;
    for (int i = 0; i < structure->n_units; i++) {
        const rm_unit *u = &structure->units[i];
        if (!rm_unit_subconvs(u))
            floats += rm_unit_weight_numel(u) + u->co + (u->act_bias ? u->co : 0);
        for (int j = 0; j < rm_unit_subconvs(u); j++)
            floats += rm_subconv_weight_numel(&u->sub[j]) + u->sub[j].co * (u->sub[j].act_bias ? 2 : 1);
    }
    return floats;
}

/* Lays unit u's weight, bias and activation bias out from `base`, each on its own 64-byte line (the direct kernels
 * load packed weights a line at a time), and returns the floats they take; with base NULL, only counts them. */
static size_t carve_unit(const rm_unit *u, float *base, deploy_unit *du)
{
    if (rm_unit_subconvs(u)) { /* each convolution's triple */
        size_t used = 0;
        for (int j = 0; j < rm_unit_subconvs(u); j++) {
            const rm_subconv *c = &u->sub[j];
            const size_t w = rm_work_floats(rm_subconv_weight_numel(c)), co = rm_work_floats(c->co);
            if (base) {
                du->sw[j] = base + used;
                du->sb[j] = base + used + w;
                du->sact[j] = c->act_bias ? base + used + w + co : NULL;
            }
            used += w + 2 * co;
        }
        return used;
    }
    const size_t w = rm_work_floats(rm_unit_weight_numel(u)), c = rm_work_floats(u->co);
    if (base) {
        du->w = base;
        du->b = base + w;
        du->act_bias = u->act_bias ? base + w + c : NULL;
    }
    return w + 2 * c;
}

rm_status rm_deploy_alloc(rm_ctx *ctx, const rm_config *cfg, rm_deploy **out)
{
    *out = NULL;
    rm_deploy *d = rm_calloc(1, sizeof *d);
    if (!d)
        return rm_fail(ctx, RM_ERR_NOMEM, "deploy: out of memory");
    const rm_status s = rm_model_build(ctx, cfg, 0, 0, &d->structure);
    if (s != RM_OK) {
        rm_dealloc(d);
        return s;
    }
    const rm_model *m = d->structure;
    d->cfg = &m->cfg;
    d->task = -1;
    new_generation(d);
    d->n_units = m->n_units;
    d->units = rm_calloc((size_t)d->n_units, sizeof *d->units);
    size_t floats = 0;
    for (int i = 0; i < m->n_units; i++)
        floats += carve_unit(&m->units[i], NULL, NULL);
    d->weights = rm_aligned_alloc(RM_WORK_ALIGN, floats * sizeof(float));
    if (!d->units || !d->weights) {
        rm_deploy_free(d);
        return rm_fail(ctx, RM_ERR_NOMEM, "deploy: cannot allocate %zu weights", floats);
    }
    float *p = d->weights;
    for (int i = 0; i < m->n_units; i++) {
        const rm_unit *u = &m->units[i];
        deploy_unit *du = &d->units[i];
        du->src = u;
        p += carve_unit(u, p, du);
        if (u->kind == RM_UNIT_MODE || u->kind == RM_UNIT_FINAL) {
            const rm_conv_geom g = mode_geom(u, 1, 1, 1);
            du->packed = rm_conv_engine_packs(ctx, &g);
        }
    }
    *out = d;
    return RM_OK;
}

rm_status rm_deploy_create(rm_ctx *ctx, const rm_model *model, int task, rm_deploy **out)
{
    if (!model || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: NULL argument");
    rm_deploy *d;
    RM_TRY(rm_deploy_alloc(ctx, &model->cfg, &d));
    rm_status s = rm_deploy_set_normalization_text(ctx, d, model->normalization);
    if (s == RM_OK)
        s = rm_deploy_set_task(ctx, d, model, task);
    if (s != RM_OK) {
        rm_deploy_free(d);
        return s;
    }
    *out = d;
    return RM_OK;
}

void rm_deploy_free(rm_deploy *d)
{
    if (!d)
        return;
    rm_dealloc(d->units);
    rm_dealloc(d->weights);
    rm_model_free(d->structure);
    rm_dealloc(d);
}

int rm_deploy_task(const rm_deploy *d)
{
    return d->task;
}

const rm_config *rm_deploy_config(const rm_deploy *d)
{
    return &d->structure->cfg;
}

const rm_model *rm_deploy_structure(const rm_deploy *d)
{
    return d->structure;
}

rm_status rm_deploy_loaded(rm_ctx *ctx, rm_deploy *d, int task)
{
    new_generation(d);
    for (int i = 0; i < d->n_units; i++)
        RM_TRY(pack_unit(ctx, &d->units[i]));
    d->task = task;
    return RM_OK;
}

uint64_t rm_deploy_generation(const rm_deploy *d)
{
    return d->generation;
}

rm_status rm_deploy_set_normalization_text(rm_ctx *ctx, rm_deploy *d, const char *json)
{
    return rm_model_set_text(ctx, &d->structure->normalization, json);
}

void rm_deploy_sub_tensors(rm_deploy *d, int i, int j, float **w, float **b, float **act_bias)
{
    *w = d->units[i].sw[j];
    *b = d->units[i].sb[j];
    *act_bias = d->units[i].sact[j];
}

void rm_deploy_unit_tensors(rm_deploy *d, int i, float **w, float **b, float **act_bias)
{
    *w = d->units[i].w;
    *b = d->units[i].b;
    *act_bias = d->units[i].act_bias;
}

rm_status rm_deploy_unit_plain_copy(rm_ctx *ctx, const rm_deploy *d, int i, float **plain)
{
    const deploy_unit *du = &d->units[i];
    *plain = NULL;
    if (!du->packed)
        return RM_OK;
    const int64_t n = rm_unit_weight_numel(du->src);
    *plain = rm_malloc((size_t)n * sizeof **plain);
    if (!*plain)
        return rm_fail(ctx, RM_ERR_NOMEM, "deploy: cannot allocate %lld floats to unpack weights", (long long)n);
    const rm_conv_geom g = mode_geom(du->src, 1, 1, 1);
    rm_conv_engine_unpack(&g, ctx->n_threads, du->w, *plain);
    return RM_OK;
}

void rm_deploy_tensor_name(const rm_unit *u, const char *task, const char *what, char *buf, size_t len)
{
    snprintf(buf, len, "deploy.%s.%s.%s", task, u->path, what);
}

/* ---- forward ------------------------------------------------------------------------------------------------- */

/* Per-level activation buffers for one sample of dims (D, H, W) at full resolution, in the context's memory. */
static rm_status reserve_activations(rm_ctx *ctx, const rm_deploy *d, const int64_t dims[3], activations *a)
{
    const rm_config *c = d->cfg;
    const int L = c->levels;
    const int64_t voxels = dims[0] * dims[1] * dims[2];
    int64_t sizes[4][RM_MAX_LEVELS + 2] = {{0}}, total = 0;
    for (int k = 1; k <= L + 1; k++) {
        const int64_t v = voxels >> (3 * (k - 1)), ck = rm_config_channels(c, k);
        const int64_t plane = (dims[1] >> (k - 1)) * (dims[2] >> (k - 1)), cat = c->decoder_2d ? plane : v;
        sizes[0][k] = ck * v;                                        /* t: first convolution's output */
        sizes[1][k] = ck * v;                                        /* o: second convolution's output */
        sizes[2][k] = k <= L ? 2 * ck * cat : 0;                     /* cat: [skip, up] (2D in a 2D decoder) */
        sizes[3][k] = k >= 2 ? rm_config_channels(c, k - 1) * v : 0; /* down: the down-sampling's output */
        for (int j = 0; j < 4; j++)
            total += (int64_t)rm_work_floats(sizes[j][k]);
    }
    const int64_t bottom = c->decoder_2d ? rm_config_channels(c, L + 1) * ((dims[1] >> L) * (dims[2] >> L)) : 0;
    const int64_t map = c->decoder_2d ? c->out_channels * dims[1] * dims[2] : 0;
    int64_t inception = 0; /* the largest block's pooled input and one branch's first output */
    for (int i = 0; i < d->n_units; i++) {
        const rm_unit *u = d->units[i].src;
        const int64_t need = (u->ci + u->co / 4) * (voxels >> (3 * (u->level - 1)));
        inception = u->kind == RM_UNIT_INCEPTION && need > inception ? need : inception;
    }
    total += (int64_t)(rm_work_floats(bottom) + rm_work_floats(map) + rm_work_floats(inception));
    /* A Monte Carlo pass's dropped input: as large as the largest MoDE block's input. */
    int64_t dropped = 0;
    for (int i = 0; d->mc_dropout > 0.0f && i < d->n_units; i++) {
        const rm_unit *u = d->units[i].src;
        if (u->kind != RM_UNIT_DOWN && u->kind != RM_UNIT_UP) { /* every block, and the output layer */
            const int64_t shift = rm_unit_input_level(u) - 1;
            const int64_t in = u->ci * rm_unit_in_depth(u, dims[0]) * (dims[1] >> shift) * (dims[2] >> shift);
            dropped = in > dropped ? in : dropped;
        }
    }
    total += (int64_t)rm_work_floats(dropped);
    float *p = rm_ctx_work(ctx, RM_WORK_ACTIVATIONS, (size_t)total * sizeof(float));
    if (!p)
        return RM_ERR_NOMEM; /* rm_ctx_work set the message */
    memset(a, 0, sizeof *a);
    a->dropped = dropped ? p : NULL;
    p += rm_work_floats(dropped);
    a->bottom = bottom ? p : NULL;
    p += rm_work_floats(bottom);
    a->map = map ? p : NULL;
    p += rm_work_floats(map);
    a->inception = inception ? p : NULL;
    p += rm_work_floats(inception);
    float **bufs[4] = {a->t, a->o, a->cat, a->down};
    for (int k = 1; k <= L + 1; k++)
        for (int j = 0; j < 4; j++) {
            bufs[j][k] = sizes[j][k] ? p : NULL;
            p += rm_work_floats(sizes[j][k]);
        }
    return RM_OK;
}

/* The seed of unit i's dropout in the window at `origin` of the volume: every draw is keyed by the pass, the unit,
 * the window and (in rm_dropout_forward) the element, never by the order of work. */
static uint64_t dropout_seed(const rm_deploy *d, int i, const int64_t origin[3])
{
    uint64_t h = unit_key(d->mc_key, i);
    for (int a = 0; a < 3; a++)
        h = rm_mix64(h ^ rm_mix64((uint64_t)origin[a] * RM_GOLDEN + (uint64_t)a));
    return h;
}

/* An Inception block's convolution j (a plain layer's: 0), folded (with bias), and its activation, from x into y. */
static rm_status run_branch_conv(rm_ctx *ctx, const rm_deploy *d, const deploy_unit *du, int j, const rm_tensor *x,
                                 rm_tensor *y)
{
    const rm_subconv *c = &du->src->sub[j];
    const rm_conv3d_params p = rm_conv3d_same(c->k);
    const rm_tensor w = rm_tensor_5d(du->sw[j], c->co, c->ci, c->k, c->k, c->k);
    RM_TRY(rm_conv3d_forward(ctx, &p, x, &w, du->sb[j], y));
    return rm_activation_forward(ctx, d->cfg->activation, y, du->sact[j], y);
}

/* An Inception block on one sample: each branch writes its channels of y (the concatenation costs nothing). */
static rm_status run_inception(rm_ctx *ctx, const rm_deploy *d, const activations *a, const deploy_unit *du,
                               const rm_tensor *x, rm_tensor *y)
{
    const int64_t c4 = du->src->co / 4, v = x->ne[2] * x->ne[3] * x->ne[4];
    rm_tensor pool = *x, first = *x, out[4];
    pool.data = a->inception;
    first.data = a->inception + x->ne[1] * v;
    first.ne[1] = c4;
    for (int k = 0; k < 4; k++) {
        out[k] = first;
        out[k].data = y->data + k * c4 * v;
    }
    RM_TRY(run_branch_conv(ctx, d, du, RM_INC_B0, x, &out[0]));
    RM_TRY(run_branch_conv(ctx, d, du, RM_INC_B1A, x, &first));
    RM_TRY(run_branch_conv(ctx, d, du, RM_INC_B1B, &first, &out[1]));
    RM_TRY(run_branch_conv(ctx, d, du, RM_INC_B2A, x, &first));
    RM_TRY(run_branch_conv(ctx, d, du, RM_INC_B2B, &first, &out[2]));
    RM_TRY(rm_maxpool3d_forward(ctx, 3, x, &pool));
    return run_branch_conv(ctx, d, du, RM_INC_B3, &pool, &out[3]);
}

/* One unit on one sample: convolution with bias, then the activation (not for the final layer): fused into the
 * convolution's stores where the weights are packed, else in place after it. In a Monte Carlo pass a MoDE block's
 * input goes through dropout first (into a->dropped), keyed by the window's origin. */
static rm_status run_unit(rm_ctx *ctx, const rm_deploy *d, const activations *a, int i, const float *in, float *out,
                          const int64_t dims[3], const int64_t origin[3])
{
    const deploy_unit *du = &d->units[i];
    const rm_unit *u = du->src;
    const int in_level = rm_unit_input_level(u);
    rm_tensor x = rm_tensor_5d((float *)in, 1, u->ci, rm_unit_in_depth(u, dims[0]), dims[1] >> (in_level - 1),
                               dims[2] >> (in_level - 1));
    if (d->mc_dropout > 0.0f && u->kind != RM_UNIT_DOWN && u->kind != RM_UNIT_UP) {
        rm_tensor dropped = x;
        dropped.data = a->dropped;
        RM_TRY(rm_dropout_forward(ctx, d->mc_dropout, dropout_seed(d, i, origin), &x, &dropped));
        x = dropped;
    }
    rm_tensor y = rm_tensor_5d(out, 1, u->co, rm_unit_out_depth(u, dims[0]), dims[1] >> (u->level - 1),
                               dims[2] >> (u->level - 1));
    if (u->kind == RM_UNIT_INCEPTION)
        return run_inception(ctx, d, a, du, &x, &y);
    if (u->kind == RM_UNIT_PLAIN)
        return run_branch_conv(ctx, d, du, 0, &x, &y);
    const rm_conv3d_params p = rm_unit_conv_params(u);
    const int kd = rm_unit_kernel_depth(u);
    if (u->kind == RM_UNIT_OUT) {
        const rm_tensor w = rm_tensor_5d(du->w, u->co, u->ci, 1, 1, 1);
        return rm_conv3d_forward(ctx, &p, &x, &w, du->b, &y);
    }
    if (u->kind == RM_UNIT_DOWN || u->kind == RM_UNIT_UP) {
        const rm_tensor w = rm_tensor_5d(du->w, u->weight->shape[0], u->weight->shape[1], kd, 2, 2);
        RM_TRY(u->kind == RM_UNIT_DOWN ? rm_conv3d_forward(ctx, &p, &x, &w, du->b, &y)
                                       : rm_conv_transpose3d_forward(ctx, &p, &x, &w, du->b, &y));
    } else if (du->packed) {
        /* The activation fused into the convolution's stores. */
        const rm_conv_geom g = mode_geom(u, y.ne[2], y.ne[3], y.ne[4]);
        const rm_conv_act act = {d->cfg->activation, du->act_bias};
        return rm_conv_engine_forward_packed(ctx, &g, x.data, du->w, du->b, u->kind == RM_UNIT_FINAL ? NULL : &act,
                                             y.data);
    } else {
        const rm_tensor w = rm_tensor_5d(du->w, u->co, u->ci, kd, 5, 5);
        RM_TRY(rm_conv3d_forward(ctx, &p, &x, &w, du->b, &y));
    }
    if (u->kind == RM_UNIT_FINAL)
        return RM_OK;
    return rm_activation_forward(ctx, d->cfg->activation, &y, du->act_bias, &y);
}

/* The depth mean of `channels` channels of the level-k features at x into y (2D features of that level). */
static rm_status mean_over_depth(rm_ctx *ctx, const float *x, int64_t channels, const int64_t dims[3], int k, float *y)
{
    const int64_t h = dims[1] >> (k - 1), w = dims[2] >> (k - 1);
    rm_tensor t3 = rm_tensor_5d((float *)x, 1, channels, dims[0] >> (k - 1), h, w);
    rm_tensor t2 = rm_tensor_5d(y, 1, channels, 1, h, w);
    return rm_depth_mean_forward(ctx, &t3, &t2);
}

static rm_status forward_sample(rm_ctx *ctx, const rm_deploy *d, const activations *a, const float *x, float *y,
                                const int64_t dims[3], const int64_t origin[3])
{
    const rm_config *c = d->cfg;
    const int L = c->levels, d2 = c->decoder_2d;
    const float *h = x;
    for (int k = 1; k <= L; k++) {
        const int e = rm_unit_encoder(k);
        /* The skip: the first half of [skip, up], or (2D decoder) a volume whose depth mean goes there. */
        float *skip = d2 ? a->o[k] : a->cat[k];
        RM_TRY(run_unit(ctx, d, a, e, h, a->t[k], dims, origin));
        RM_TRY(run_unit(ctx, d, a, e + 1, a->t[k], skip, dims, origin));
        RM_TRY(run_unit(ctx, d, a, e + 2, skip, a->down[k + 1], dims, origin));
        h = a->down[k + 1];
    }
    const int b = rm_unit_bottleneck(L);
    RM_TRY(run_unit(ctx, d, a, b, h, a->t[L + 1], dims, origin));
    RM_TRY(run_unit(ctx, d, a, b + 1, a->t[L + 1], a->o[L + 1], dims, origin));
    h = a->o[L + 1];
    if (d2) {
        RM_TRY(mean_over_depth(ctx, h, rm_config_channels(c, L + 1), dims, L + 1, a->bottom));
        h = a->bottom;
    }
    for (int k = L; k >= 1; k--) {
        const int u = rm_unit_decoder(L, k);
        const int64_t ck = rm_config_channels(c, k), plane = (dims[1] >> (k - 1)) * (dims[2] >> (k - 1));
        const int64_t half = ck * (d2 ? plane : (dims[0] >> (k - 1)) * plane);
        if (d2)
            RM_TRY(mean_over_depth(ctx, a->o[k], ck, dims, k, a->cat[k]));
        RM_TRY(run_unit(ctx, d, a, u, h, a->cat[k] + half, dims, origin));
        RM_TRY(run_unit(ctx, d, a, u + 1, a->cat[k], a->t[k], dims, origin));
        RM_TRY(run_unit(ctx, d, a, u + 2, a->t[k], a->o[k], dims, origin)); /* the skip is used: o[k] is free */
        h = a->o[k];
    }
    if (!d2)
        return run_unit(ctx, d, a, d->n_units - 1, h, y, dims, origin);
    RM_TRY(run_unit(ctx, d, a, d->n_units - 1, h, a->map, dims, origin));
    rm_repeat_over_depth(a->map, c->out_channels, dims[0], dims[1] * dims[2], y);
    return RM_OK;
}

rm_status rm_deploy_forward(rm_ctx *ctx, const rm_deploy *d, const rm_tensor *x, rm_tensor *y)
{
    static const int64_t origin[3] = {0, 0, 0};
    return rm_deploy_forward_window(ctx, d, x, origin, y);
}

rm_status rm_deploy_forward_window(rm_ctx *ctx, const rm_deploy *d, const rm_tensor *x, const int64_t origin[3],
                                   rm_tensor *y)
{
    if (!d)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy: NULL argument");
    RM_TRY(rm_model_check_input(ctx, d->cfg, x, NULL, y));
    const int64_t dims[3] = {x->ne[2], x->ne[3], x->ne[4]};
    activations a;
    RM_TRY(reserve_activations(ctx, d, dims, &a));
    for (int64_t n = 0; n < x->ne[0]; n++)
        RM_TRY(forward_sample(ctx, d, &a, x->data + n * rm_tensor_sample_numel(x),
                              y->data + n * rm_tensor_sample_numel(y), dims, origin));
    return RM_OK;
}
