/* A model's structure: its units in execution order and its named tensors in the official state_dict order
 * (docs/network.md §4), with PyTorch's default initialization. */
#include "model/model_impl.h"
#include "base/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many tensors per unit: an Inception block's 6 convolutions with 5 BatchNorm tensors and an activation
 * bias each (a MoDE layer has at most 16: 5 experts and an added one, 2 pools, 5 BatchNorm, an activation bias, 2
 * gate). */
#define RM_MAX_PARAMS_PER_UNIT 42

static const char *const rm_expert_names[RM_N_EXPERTS] = {
    "expert_conv5x5_conv", "expert_conv3x3_conv", "expert_conv1x1_conv", "expert_avg3x3_conv", "expert_avg5x5_conv",
};
static const int rm_expert_kernel[RM_N_EXPERTS] = {5, 3, 1, 1, 1};

/* ---- building the tensor table ------------------------------------------------------------------------------- */

typedef enum { RM_INIT_UNIFORM, RM_INIT_ONES, RM_INIT_ZEROS, RM_INIT_CONSTANT } rm_init;

/* What each tensor starts as, kept beside the table until the values exist. */
typedef struct rm_param_init {
    rm_init kind;
    float value; /* the bound for UNIFORM, the value for CONSTANT */
} rm_param_init;

typedef struct rm_builder {
    rm_model *m;
    rm_param_init *init;
} rm_builder;

static rm_param *add_tensor(rm_builder *b, const rm_unit *u, const char *suffix, int ndim, const int64_t *shape,
                            int trainable, rm_init init, float value)
{
    rm_model *m = b->m;
    const size_t i = m->n_params++;
    rm_param *p = &m->params[i];
    snprintf(m->names[i], RM_PARAM_NAME_MAX, "%s.%s", u->path, suffix);
    p->name = m->names[i];
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->numel *= shape[d];
    }
    p->trainable = trainable;
    p->lr_scale = 1.0f;
    b->init[i] = (rm_param_init){init, value};
    return p;
}

/* A conv weight (d0, d1, k, k, k), or (d0, d1, k, k) in a planar unit (PyTorch's Conv2d and ConvTranspose2d). */
static rm_param *add_conv_weight(rm_builder *b, const rm_unit *u, const char *suffix, int64_t d0, int64_t d1, int k,
                                 int trainable, rm_init init, float value)
{
    const int64_t shape[5] = {d0, d1, k, k, k};
    return add_tensor(b, u, suffix, u->planar ? 4 : 5, shape, trainable, init, value);
}

/* k^dims: a kernel's taps in the unit's dimensions. */
static int64_t taps(const rm_unit *u, int k)
{
    return u->planar ? k * k : k * k * k;
}

static rm_param *add_vector(rm_builder *b, const rm_unit *u, const char *suffix, int64_t n, int trainable, rm_init init,
                            float value)
{
    return add_tensor(b, u, suffix, 1, &n, trainable, init, value);
}

/* BatchNorm3d(co) under `prefix` ("subsequent_layer.0", "1", "branch0.bn") into the five pointers. */
static void add_batchnorm_of(rm_builder *b, const rm_unit *u, const char *prefix, int64_t co, rm_param **w,
                             rm_param **bias, rm_param **mean, rm_param **var, rm_param **count)
{
    char s[64];
    snprintf(s, sizeof s, "%s.weight", prefix);
    *w = add_vector(b, u, s, co, 1, RM_INIT_ONES, 0.0f);
    snprintf(s, sizeof s, "%s.bias", prefix);
    *bias = add_vector(b, u, s, co, 1, RM_INIT_ZEROS, 0.0f);
    snprintf(s, sizeof s, "%s.running_mean", prefix);
    *mean = add_vector(b, u, s, co, 0, RM_INIT_ZEROS, 0.0f);
    snprintf(s, sizeof s, "%s.running_var", prefix);
    *var = add_vector(b, u, s, co, 0, RM_INIT_ONES, 0.0f);
    snprintf(s, sizeof s, "%s.num_batches_tracked", prefix);
    *count = add_tensor(b, u, s, 0, NULL, 0, RM_INIT_ZEROS, 0.0f);
}

static void add_batchnorm(rm_builder *b, rm_unit *u, const char *prefix)
{
    add_batchnorm_of(b, u, prefix, u->co, &u->bn_w, &u->bn_b, &u->bn_mean, &u->bn_var, &u->bn_count);
}

static void add_activation(rm_builder *b, rm_unit *u)
{
    if (b->m->cfg.activation == RM_ACT_FRELU)
        u->act_bias = add_vector(b, u, "activation.bias", u->co, 1, RM_INIT_ZEROS, 0.0f);
}

/* MoDEConv(ci → co), 3D or 2D: experts, pools, BatchNorm and activation (not for the final layer), gate. */
static void add_mode(rm_builder *b, rm_unit *u)
{
    const int n_tasks = b->m->cfg.n_tasks;
    for (int e = 0; e < RM_N_EXPERTS; e++) {
        const int k = rm_expert_kernel[e];
        /* kaiming_uniform(a = √5) bounds a conv weight by 1/√fan_in. */
        u->expert[e] = add_conv_weight(b, u, rm_expert_names[e], u->co, u->ci, k, 1, RM_INIT_UNIFORM,
                                       (float)(1.0 / sqrt((double)(u->ci * taps(u, k)))));
    }
    const int64_t p3[3] = {3, 3, 3}, p5[3] = {5, 5, 5};
    const int dims = u->planar ? 2 : 3;
    u->pool3 = add_tensor(b, u, "expert_avg3x3_pool", dims, p3, 0, RM_INIT_CONSTANT, 1.0f / (float)taps(u, 3));
    u->pool5 = add_tensor(b, u, "expert_avg5x5_pool", dims, p5, 0, RM_INIT_CONSTANT, 1.0f / (float)taps(u, 5));
    if (u->kind == RM_UNIT_MODE)
        add_batchnorm(b, u, "subsequent_layer.0");
    const int added = b->m->cfg.added_expert_kernel;
    const int64_t rows = (added ? RM_MAX_EXPERTS : RM_N_EXPERTS) * u->co;
    const float bound = (float)(1.0 / sqrt((double)n_tasks)); /* nn.Linear(T, 5·co) */
    const int64_t gw[2] = {rows, n_tasks};
    u->gate_w = add_tensor(b, u, "gate.weight", 2, gw, 1, RM_INIT_UNIFORM, bound);
    u->gate_b = add_vector(b, u, "gate.bias", rows, 1, RM_INIT_UNIFORM, bound);
    /* FReLU's bias and the added expert are extensions: the official tree has no slot for them, so they follow the
     * layer's own tensors. */
    if (u->kind == RM_UNIT_MODE)
        add_activation(b, u);
    if (added) {
        u->added_k = added;
        u->added_from = b->m->cfg.added_expert_task;
        u->expert[RM_EXPERT_ADDED] = add_conv_weight(b, u, "expert_added_conv", u->co, u->ci, added, 1,
                                                     RM_INIT_UNIFORM, (float)(1.0 / sqrt((double)(u->ci * taps(u, added)))));
    }
}

/* Convolution j of an Inception block or a plain layer, under rm_subconv_prefix: conv.weight (co, ci, k, k, k), as
 * PyTorch's Conv3d initializes it, bn.*, and FReLU's activation.bias. */
static void add_subconv(rm_builder *b, rm_unit *u, int j, int64_t ci, int64_t co, int k)
{
    char s[64];
    const char *prefix = rm_subconv_prefix(u, j);
    rm_subconv *c = &u->sub[j];
    c->k = k;
    c->ci = ci;
    c->co = co;
    const int64_t shape[5] = {co, ci, k, k, k};
    snprintf(s, sizeof s, "%sconv.weight", prefix);
    c->weight = add_tensor(b, u, s, 5, shape, 1, RM_INIT_UNIFORM, (float)(1.0 / sqrt((double)(ci * k * k * k))));
    snprintf(s, sizeof s, "%sbn", prefix);
    add_batchnorm_of(b, u, s, co, &c->bn_w, &c->bn_b, &c->bn_mean, &c->bn_var, &c->bn_count);
    snprintf(s, sizeof s, "%sactivation.bias", prefix);
    c->act_bias = b->m->cfg.activation == RM_ACT_FRELU ? add_vector(b, u, s, co, 1, RM_INIT_ZEROS, 0.0f) : NULL;
}

const char *const rm_inception_branches[RM_INC_CONVS] = {"branch0.",   "branch1.0.", "branch1.1.",
                                                          "branch2.0.", "branch2.1.", "branch3."};

/* An Inception block ci → co: four branches of co/4 channels (docs/network.md §9). */
static void add_inception(rm_builder *b, rm_unit *u)
{
    const int64_t c4 = u->co / 4;
    for (int j = 0; j < RM_INC_CONVS; j++) {
        const int second = j == RM_INC_B1B || j == RM_INC_B2B; /* the 3³ after a 1³ */
        add_subconv(b, u, j, second ? c4 : u->ci, c4, second ? 3 : 1);
    }
}

/* The Inception network's output: Conv3d(ci, co, 1) with its bias, PyTorch's initialization. */
static void add_out(rm_builder *b, rm_unit *u)
{
    const float bound = (float)(1.0 / sqrt((double)u->ci));
    u->weight = add_conv_weight(b, u, "weight", u->co, u->ci, 1, 1, RM_INIT_UNIFORM, bound);
    u->bias = add_vector(b, u, "bias", u->co, 1, RM_INIT_UNIFORM, bound);
}

/* Down: Conv3d(k2, s2) fan_in = ci·8; Up: ConvTranspose3d (2d), whose fan_in PyTorch takes from weight dim 1 (= co)
 * times the taps. */
static void add_resample(rm_builder *b, rm_unit *u)
{
    const int down = u->kind == RM_UNIT_DOWN;
    const int64_t fan_in = (down ? u->ci : u->co) * taps(u, 2);
    u->weight = add_conv_weight(b, u, "0.weight", down ? u->co : u->ci, down ? u->ci : u->co, 2, 1, RM_INIT_UNIFORM,
                                (float)(1.0 / sqrt((double)fan_in)));
    add_batchnorm(b, u, "1");
    add_activation(b, u);
}

static void add_unit(rm_builder *b, rm_unit_kind kind, int level, int64_t ci, int64_t co, const char *path,
                     int planar)
{
    rm_model *m = b->m;
    rm_unit *u = &m->units[m->n_units++];
    memset(u, 0, sizeof *u);
    u->kind = kind;
    u->planar = planar;
    u->level = level;
    u->ci = ci;
    u->co = co;
    snprintf(u->path, sizeof u->path, "%s", path);
    if (kind == RM_UNIT_MODE || kind == RM_UNIT_FINAL)
        add_mode(b, u);
    else if (kind == RM_UNIT_INCEPTION)
        add_inception(b, u);
    else if (kind == RM_UNIT_PLAIN)
        add_subconv(b, u, 0, ci, co, 3);
    else if (kind == RM_UNIT_OUT)
        add_out(b, u);
    else
        add_resample(b, u);
}

/* The units and tensors of the configuration, in the official module order. */
static void build_units(rm_builder *b)
{
    const rm_config *c = &b->m->cfg;
    const int L = c->levels, d2 = c->decoder_2d; /* the decoder's layers are planar in a 2D decoder */
    const int gated = c->block == RM_BLOCK_MODE; /* the others end with a 1³ convolution */
    const rm_unit_kind layer = c->block == RM_BLOCK_INCEPTION ? RM_UNIT_INCEPTION
                               : c->block == RM_BLOCK_PLAIN   ? RM_UNIT_PLAIN
                                                              : RM_UNIT_MODE;
    char path[RM_UNIT_PATH_MAX];
    for (int k = 1; k <= L; k++) {
        const int64_t ci = k == 1 ? c->in_channels : rm_config_channels(c, k - 1), co = rm_config_channels(c, k);
        snprintf(path, sizeof path, "encoder_block%d.conv_more.conv1", k);
        add_unit(b, layer, k, ci, co, path, 0);
        snprintf(path, sizeof path, "encoder_block%d.conv_more.conv2", k);
        add_unit(b, layer, k, co, co, path, 0);
        snprintf(path, sizeof path, "encoder_block%d.conv_down", k);
        add_unit(b, RM_UNIT_DOWN, k + 1, co, co, path, 0);
    }
    const int64_t cl = rm_config_channels(c, L), cb = rm_config_channels(c, L + 1);
    add_unit(b, layer, L + 1, cl, cb, "bottle_block.conv1", 0);
    add_unit(b, layer, L + 1, cb, cb, "bottle_block.conv2", 0);
    for (int k = L; k >= 1; k--) {
        const int64_t ck = rm_config_channels(c, k);
        snprintf(path, sizeof path, "decoder_block%d.convt", k);
        add_unit(b, RM_UNIT_UP, k, 2 * ck, ck, path, d2);
        snprintf(path, sizeof path, "decoder_block%d.conv_less.conv1", k);
        add_unit(b, layer, k, 2 * ck, ck, path, d2);
        snprintf(path, sizeof path, "decoder_block%d.conv_less.conv2", k);
        add_unit(b, layer, k, ck, ck, path, d2);
    }
    add_unit(b, gated ? RM_UNIT_FINAL : RM_UNIT_OUT, 1, rm_config_channels(c, 1), c->out_channels, "conv_out", d2);
}

/* ---- initialization ------------------------------------------------------------------------------------------ */

static void initialize(rm_model *m, const rm_param_init *init, uint64_t seed)
{
    uint64_t state = seed;
    for (size_t i = 0; i < m->n_params; i++) {
        rm_param *p = &m->params[i];
        if (p->count) {
            *p->count = 0;
            continue;
        }
        for (int64_t j = 0; j < p->numel; j++) {
            switch (init[i].kind) {
            case RM_INIT_UNIFORM: {
                /* splitmix64 from the seed: the same seed gives the same weights on every machine */
                const float u = rm_u01f(rm_splitmix64_next(&state));
                p->data[j] = (2.0f * u - 1.0f) * init[i].value;
                break;
            }
            case RM_INIT_ONES: p->data[j] = 1.0f; break;
            case RM_INIT_ZEROS: p->data[j] = 0.0f; break;
            case RM_INIT_CONSTANT: p->data[j] = init[i].value; break;
            }
        }
    }
}

/* ---- life cycle ---------------------------------------------------------------------------------------------- */

static rm_status allocate_values(rm_ctx *ctx, rm_model *m)
{
    int64_t n_values = 0, n_counts = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        const rm_param *p = &m->params[i];
        if (p->ndim == 0)
            n_counts++;
        else
            n_values += p->numel;
    }
    m->values = rm_calloc((size_t)n_values, sizeof(float));
    m->counts = rm_calloc((size_t)n_counts, sizeof(int64_t));
    if (!m->values || !m->counts)
        return rm_fail(ctx, RM_ERR_NOMEM, "model: cannot allocate %lld parameters", (long long)n_values);
    float *v = m->values;
    int64_t *c = m->counts;
    for (size_t i = 0; i < m->n_params; i++) {
        rm_param *p = &m->params[i];
        if (p->ndim == 0) {
            p->count = c++;
        } else {
            p->data = v;
            v += p->numel;
        }
    }
    return RM_OK;
}

rm_status rm_model_ensure_grads(rm_ctx *ctx, rm_model *m)
{
    if (m->grads)
        return RM_OK;
    const int64_t n = rm_model_trainable_count(m);
    m->grads = rm_calloc((size_t)n, sizeof(float));
    if (!m->grads)
        return rm_fail(ctx, RM_ERR_NOMEM, "model: cannot allocate gradients for %lld parameters", (long long)n);
    float *g = m->grads;
    for (size_t i = 0; i < m->n_params; i++) {
        rm_param *p = &m->params[i];
        if (p->trainable) {
            p->grad = g;
            g += p->numel;
        }
    }
    return RM_OK;
}

rm_status rm_model_create(rm_ctx *ctx, const rm_config *cfg, uint64_t seed, rm_model **out)
{
    return rm_model_build(ctx, cfg, seed, 1, out);
}

rm_status rm_model_build(rm_ctx *ctx, const rm_config *cfg, uint64_t seed, int with_values, rm_model **out)
{
    if (!out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "model: out is NULL");
    *out = NULL;
    RM_TRY(rm_config_validate(ctx, cfg));
    rm_model *m = rm_calloc(1, sizeof *m);
    if (!m)
        return rm_fail(ctx, RM_ERR_NOMEM, "model: out of memory");
    const int max_units = 6 * cfg->levels + 3;
    const size_t max_params = (size_t)max_units * RM_MAX_PARAMS_PER_UNIT;
    m->cfg = *cfg;
    m->tasks = rm_malloc((size_t)cfg->n_tasks * sizeof *m->tasks);
    m->units = rm_calloc((size_t)max_units, sizeof *m->units);
    m->params = rm_calloc(max_params, sizeof *m->params);
    m->names = rm_calloc(max_params, sizeof *m->names);
    rm_param_init *init = rm_calloc(max_params, sizeof *init);
    rm_status s = RM_OK;
    if (!m->tasks || !m->units || !m->params || !m->names || !init) {
        s = rm_fail(ctx, RM_ERR_NOMEM, "model: out of memory");
    } else {
        m->only_task = -1;
        memcpy(m->tasks, cfg->tasks, (size_t)cfg->n_tasks * sizeof *m->tasks);
        m->cfg.tasks = m->tasks;
        rm_builder b = {m, init};
        build_units(&b);
        char provenance[96];
        snprintf(provenance, sizeof provenance, "{\"software\":\"repmode %s\",\"seed\":%llu}", REPMODE_VERSION,
                 (unsigned long long)seed);
        s = rm_model_set_text(ctx, &m->normalization, "{\"method\":\"zscore\"}");
        if (s == RM_OK)
            s = rm_model_set_text(ctx, &m->provenance, provenance);
        if (s == RM_OK && with_values)
            s = allocate_values(ctx, m);
        if (s == RM_OK && with_values)
            initialize(m, init, seed);
    }
    rm_dealloc(init);
    if (s != RM_OK) {
        rm_model_free(m);
        return s;
    }
    *out = m;
    return RM_OK;
}

void rm_model_free(rm_model *model)
{
    if (!model)
        return;
    rm_train_state_free(model->train);
    rm_dealloc(model->values);
    rm_dealloc(model->grads);
    rm_dealloc(model->counts);
    rm_dealloc(model->names);
    rm_dealloc(model->params);
    rm_dealloc(model->units);
    rm_dealloc(model->tasks);
    rm_dealloc(model->normalization);
    rm_dealloc(model->provenance);
    rm_dealloc(model);
}

rm_status rm_config_forward_macs(rm_ctx *ctx, const rm_config *cfg, const int64_t size[3], double *macs)
{
    if (!cfg || !size || !macs)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "forward macs: NULL argument");
    RM_TRY(rm_config_validate(ctx, cfg));
    const int64_t unit = (int64_t)1 << cfg->levels;
    for (int a = 0; a < 3; a++)
        if (size[a] < unit || size[a] % unit != 0)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "forward macs: size %lld along axis %d is not a positive multiple of "
                           "2^levels = %lld", (long long)size[a], a, (long long)unit);
    rm_model *m = NULL;
    RM_TRY(rm_model_build(ctx, cfg, 0, 0, &m));
    double total = 0.0;
    for (int i = 0; i < m->n_units; i++) {
        const rm_unit *u = &m->units[i];
        /* Every weight meets every output position once, but a transposed convolution's meets every input one. */
        const int level = u->kind == RM_UNIT_UP ? rm_unit_input_level(u) : u->level;
        const int64_t depth = u->kind == RM_UNIT_UP ? rm_unit_in_depth(u, size[0]) : rm_unit_out_depth(u, size[0]);
        const double positions = (double)depth * (double)(size[1] >> (level - 1)) * (double)(size[2] >> (level - 1));
        total += (double)rm_unit_weight_numel(u) * positions;
    }
    rm_model_free(m);
    *macs = total;
    return RM_OK;
}

/* ---- queries ------------------------------------------------------------------------------------------------- */

const rm_config *rm_model_config(const rm_model *model) { return &model->cfg; }

int rm_model_task_index(const rm_model *model, const char *name)
{
    for (int t = 0; name && t < model->cfg.n_tasks; t++)
        if (strcmp(model->tasks[t].name, name) == 0)
            return t;
    return -1;
}

rm_status rm_model_set_task_threshold(rm_ctx *ctx, rm_model *model, int task, float threshold)
{
    if (!model)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "task threshold: model is NULL");
    if (task < 0 || task >= model->cfg.n_tasks)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "task threshold: task %d; the model has tasks 0..%d", task,
                       model->cfg.n_tasks - 1);
    RM_TRY(rm_task_check_threshold(ctx, "task threshold", model->tasks[task].name, threshold));
    model->tasks[task].threshold = threshold; /* cfg.tasks is the same array */
    return RM_OK;
}

size_t rm_model_n_params(const rm_model *model) { return model->n_params; }

rm_param *rm_model_param(rm_model *model, size_t i) { return i < model->n_params ? &model->params[i] : NULL; }

rm_param *rm_model_find_param(rm_model *model, const char *name)
{
    for (size_t i = 0; name && i < model->n_params; i++)
        if (strcmp(model->params[i].name, name) == 0)
            return &model->params[i];
    return NULL;
}

int64_t rm_model_trainable_count(const rm_model *model)
{
    int64_t n = 0;
    for (size_t i = 0; i < model->n_params; i++)
        if (model->params[i].trainable)
            n += model->params[i].numel;
    return n;
}

rm_batchnorm3d rm_unit_batchnorm(const rm_unit *u)
{
    return rm_batchnorm3d_make(u->bn_w->data, u->bn_b->data, u->bn_mean->data, u->bn_var->data);
}

rm_status rm_model_check_input(rm_ctx *ctx, const rm_config *cfg, const rm_tensor *x, const int *tasks,
                               const rm_tensor *y)
{
    RM_TRY(rm_check_tensor(ctx, x, "x"));
    if (x->ne[1] != cfg->in_channels)
        return rm_fail(ctx, RM_ERR_SHAPE, "x has %lld channels, the model takes %lld", (long long)x->ne[1],
                       (long long)cfg->in_channels);
    const int64_t unit = (int64_t)1 << cfg->levels;
    for (int a = 2; a < 5; a++)
        if (x->ne[a] % unit != 0)
            return rm_fail(ctx, RM_ERR_SHAPE, "x has size %lld along axis %d; the network needs multiples of %lld",
                           (long long)x->ne[a], a, (long long)unit);
    for (int64_t n = 0; tasks && n < x->ne[0]; n++)
        if (tasks[n] < 0 || tasks[n] >= cfg->n_tasks)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "sample %lld has task %d; the model has tasks 0..%d", (long long)n,
                           tasks[n], cfg->n_tasks - 1);
    const int64_t y_ne[RM_MAX_DIMS] = {x->ne[0], cfg->out_channels, x->ne[2], x->ne[3], x->ne[4]};
    return rm_check_shape(ctx, y, "y", y_ne);
}
