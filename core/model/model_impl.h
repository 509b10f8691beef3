/* The insides of a model: its units (one convolution with its BatchNorm and activation each), its named
 * tensors, and the helpers the training and deploy forms share. */
#ifndef REPMODE_MODEL_IMPL_H
#define REPMODE_MODEL_IMPL_H

#include "base/internal.h"
#include "repmode/model.h"

#include <string.h>

#define RM_PARAM_NAME_MAX 192
#define RM_UNIT_PATH_MAX 96

/* The MoDE experts, in the official order (docs/network.md §3.2), then the one task-incremental learning may add
 * (docs/network.md §5.5), which only the tasks from cfg.added_expert_task on use. */
enum {
    RM_EXPERT_K5, RM_EXPERT_K3, RM_EXPERT_K1, RM_EXPERT_A3, RM_EXPERT_A5, RM_N_EXPERTS,
    RM_EXPERT_ADDED = RM_N_EXPERTS, RM_MAX_EXPERTS
};

typedef enum rm_unit_kind {
    RM_UNIT_MODE,      /* MoDE conv 5³ (stride 1, same) → BatchNorm → activation */
    RM_UNIT_FINAL,     /* MoDE conv 5³ alone: no BatchNorm, no activation, no bias */
    RM_UNIT_DOWN,      /* conv 2³ stride 2 → BatchNorm → activation */
    RM_UNIT_UP,        /* transposed conv 2³ stride 2 → BatchNorm → activation */
    RM_UNIT_INCEPTION, /* an Inception block (block "inception", in place of MODE): four branches, concatenated */
    RM_UNIT_PLAIN,     /* conv 3³ (same) → BatchNorm → activation (block "plain", in place of MODE) */
    RM_UNIT_OUT,       /* conv 1³ with bias (blocks "inception" and "plain", in place of FINAL) */
} rm_unit_kind;

/* An Inception block's convolutions, each conv (same, no bias) → BatchNorm → activation: branch0 1³; branch1 1³ →
 * 3³; branch2 1³ → 3³; branch3 1³ after a 3³ max-pool. Branch outputs of co/4 channels, concatenated in order. */
enum { RM_INC_B0, RM_INC_B1A, RM_INC_B1B, RM_INC_B2A, RM_INC_B2B, RM_INC_B3, RM_INC_CONVS };
/* Their module paths inside the block, as tensor-name prefixes: "branch0.", "branch1.0.", "branch1.1.", "branch2.0.",
 * "branch2.1.", "branch3."; rm_subconv_prefix gives them, and "" for a plain layer's one convolution (its tensors are
 * the layer's). */
extern const char *const rm_inception_branches[RM_INC_CONVS];

typedef struct rm_subconv {
    int k;          /* 1 or 3 */
    int64_t ci, co;
    rm_param *weight, *bn_w, *bn_b, *bn_mean, *bn_var, *bn_count, *act_bias;
} rm_subconv;

typedef struct rm_unit {
    rm_unit_kind kind;
    char path[RM_UNIT_PATH_MAX]; /* module path of the convolution, e.g. "encoder_block1.conv_more.conv1" */
    int level;                   /* resolution level of the output: 1 is the input's, levels + 1 the bottleneck */
    int64_t ci, co;
    int planar;                       /* a 2D decoder's layer (docs/network.md §7.2): 2D kernels, outputs of depth 1 */
    rm_param *expert[RM_MAX_EXPERTS]; /* MODE, FINAL; expert[RM_EXPERT_ADDED] NULL unless the model has one */
    int added_k, added_from;        /* MODE, FINAL with an added expert: its kernel and the first task using it */
    rm_param *pool3, *pool5;        /* MODE, FINAL: the constant averaging kernels */
    rm_param *gate_w, *gate_b;      /* MODE, FINAL: (E·co, T) and (E·co,), E = 5, or 6 with an added expert */
    rm_param *weight;               /* DOWN (co, ci, 2, 2, 2), UP (ci, co, 2, 2, 2), OUT (co, ci, 1, 1, 1) */
    rm_param *bias;                 /* OUT (co,) */
    rm_subconv sub[RM_INC_CONVS];   /* INCEPTION (6), PLAIN (1) */
    rm_param *bn_w, *bn_b, *bn_mean, *bn_var, *bn_count; /* all but FINAL */
    rm_param *act_bias;             /* FReLU's per-channel bias */
} rm_unit;

struct rm_train_state;

struct rm_model {
    rm_config cfg; /* cfg.tasks points at `tasks` */
    rm_task *tasks;
    rm_param *params;
    size_t n_params;
    char (*names)[RM_PARAM_NAME_MAX];
    float *values; /* every float tensor, one block */
    float *grads;  /* gradients of the trainable ones, one block */
    int64_t *counts;
    rm_unit *units;
    int n_units;
    struct rm_train_state *train; /* activations kept for the backward; NULL until a training forward */
    int only_task;                /* -1, or the one task that trains (rm_model_train_only_task): BatchNorm frozen */
    int frozen_units;             /* units [0, frozen_units) are frozen (rm_model_freeze_encoder): BatchNorm in
                                   * inference mode, no backward; 0: none */
    char *normalization;          /* repmode.normalization and repmode.provenance: JSON text, kept verbatim */
    char *provenance;
};

/* A model of the configuration: with_values 0 builds only the structure (names, shapes, units) without memory
 * for the tensors, as the deploy form needs. */
rm_status rm_model_build(rm_ctx *ctx, const rm_config *cfg, uint64_t seed, int with_values, rm_model **out);
/* A task's decision threshold must be NaN (none) or in [0, 1]; the one check of rm_config_validate and
 * rm_model_set_task_threshold. `who` starts the message. */
rm_status rm_task_check_threshold(rm_ctx *ctx, const char *who, const char *task, float threshold);
/* Replaces one of the model's JSON text fields with a copy of `json`. */
rm_status rm_model_set_text(rm_ctx *ctx, char **field, const char *json);

static inline const char *rm_subconv_prefix(const rm_unit *u, int j)
{
    return u->kind == RM_UNIT_INCEPTION ? rm_inception_branches[j] : "";
}

/* The units in execution order: encoder k = 1..L (conv1, conv2, down), bottleneck (conv1, conv2), decoder
 * k = L..1 (up, conv1, conv2), final. */
static inline int rm_unit_encoder(int k) { return 3 * (k - 1); }
static inline int rm_unit_bottleneck(int levels) { return 3 * levels; }
static inline int rm_unit_decoder(int levels, int k) { return 3 * levels + 2 + 3 * (levels - k); }

/* The resolution level of a unit's input: a down-sampling reads the level above its output, an up-sampling the
 * level below. */
static inline int rm_unit_input_level(const rm_unit *u)
{
    return u->kind == RM_UNIT_DOWN ? u->level - 1 : u->kind == RM_UNIT_UP ? u->level + 1 : u->level;
}

/* The kernel of a unit's convolution along height and width (5 for MoDE layers, 2 for down- and up-sampling), and
 * along depth (1 for a planar unit); its weight's element count. */
static inline int rm_unit_kernel(const rm_unit *u)
{
    return u->kind == RM_UNIT_DOWN || u->kind == RM_UNIT_UP ? 2 : u->kind == RM_UNIT_OUT ? 1 : 5;
}
static inline int rm_unit_kernel_depth(const rm_unit *u) { return u->planar ? 1 : rm_unit_kernel(u); }
static inline int64_t rm_subconv_weight_numel(const rm_subconv *c) { return c->ci * c->co * c->k * c->k * c->k; }
/* The convolutions a unit keeps in sub[]: an Inception block's six, a plain layer's one, none for the others. */
static inline int rm_unit_subconvs(const rm_unit *u)
{
    return u->kind == RM_UNIT_INCEPTION ? RM_INC_CONVS : u->kind == RM_UNIT_PLAIN ? 1 : 0;
}
/* An Inception block's or a plain layer's: the sum of its convolutions'. */
static inline int64_t rm_unit_weight_numel(const rm_unit *u)
{
    if (rm_unit_subconvs(u)) {
        int64_t n = 0;
        for (int j = 0; j < rm_unit_subconvs(u); j++)
            n += rm_subconv_weight_numel(&u->sub[j]);
        return n;
    }
    const int64_t k = rm_unit_kernel(u);
    return u->ci * u->co * rm_unit_kernel_depth(u) * k * k;
}

/* The convolution parameters of a MoDE unit (5³ or 5², same), the Inception network's output (1³) and a down- or
 * up-sampling (2³ or 2², stride 2). */
static inline rm_conv3d_params rm_unit_conv_params(const rm_unit *u)
{
    const rm_conv3d_params p = u->kind == RM_UNIT_DOWN || u->kind == RM_UNIT_UP ? rm_conv3d_strided(2, 2)
                                                                                 : rm_conv3d_same(rm_unit_kernel(u));
    return u->planar ? rm_conv3d_planar(p) : p;
}

/* The depth of a unit's output at full input depth `depth`: 1 for a planar unit, else its level's. */
static inline int64_t rm_unit_out_depth(const rm_unit *u, int64_t depth)
{
    return u->planar ? 1 : depth >> (u->level - 1);
}

/* The depth of a unit's input: a planar unit reads 2D features (the first up-sampling of a 2D decoder reads the
 * bottleneck's depth mean). */
static inline int64_t rm_unit_in_depth(const rm_unit *u, int64_t depth)
{
    return u->planar ? 1 : depth >> (rm_unit_input_level(u) - 1);
}

/* Whether unit i is a decoder's first convolution, the one that reads the level's [skip, up] concatenation. */
static inline int rm_unit_reads_concat(const rm_model *m, int i)
{
    const rm_unit *u = &m->units[i];
    return (u->kind == RM_UNIT_MODE || u->kind == RM_UNIT_INCEPTION || u->kind == RM_UNIT_PLAIN) &&
           u->level <= m->cfg.levels &&
           i == rm_unit_decoder(m->cfg.levels, u->level) + 1;
}

void rm_train_state_free(struct rm_train_state *state);

/* dst[j] += src[j] for j < n, split over the context's threads (every element its own sum: the same on any count):
 * where a training backward adds a second gradient into a tensor's. */
void rm_add_into(rm_ctx *ctx, float *dst, const float *src, int64_t n);

/* y (maps, depth, plane) = map (maps, plane) at every depth: a 2D decoder's map as the network's output, which keeps
 * the input's shape (docs/network.md §7.2). */
static inline void rm_repeat_over_depth(const float *map, int64_t maps, int64_t depth, int64_t plane, float *y)
{
    for (int64_t j = 0; j < maps; j++)
        for (int64_t d = 0; d < depth; d++)
            memcpy(y + (j * depth + d) * plane, map + j * plane, (size_t)plane * sizeof(float));
}

/* Gradient buffers are made on the first training step: inference never pays for them. */
rm_status rm_model_ensure_grads(rm_ctx *ctx, rm_model *model);

/* The deploy form's insides, for its files: its structure, and unit i's folded weight, bias and FReLU bias (NULL
 * when the activation has none). */
rm_status rm_deploy_alloc(rm_ctx *ctx, const rm_config *cfg, rm_deploy **out);
/* The floats of one task's deploy-form weights for a model of this structure (weights, biases, activation biases). */
int64_t rm_deploy_weight_numel(const rm_model *structure);
const rm_model *rm_deploy_structure(const rm_deploy *d);
void rm_deploy_unit_tensors(rm_deploy *d, int i, float **w, float **b, float **act_bias);
/* Convolution j of an Inception block, unit i: its folded weight (co, ci, k, k, k), bias and FReLU bias (or NULL). */
void rm_deploy_sub_tensors(rm_deploy *d, int i, int j, float **w, float **b, float **act_bias);
/* Unit i's weight may be kept in the convolution engine's packed layout (conv_engine.h): then rm_deploy_unit_tensors
 * gives the packed values, a loader writes plain values through it (rm_deploy_loaded packs them), and a writer takes
 * the plain values from this copy, the caller's (rm_dealloc); *plain is NULL when the unit's weight is plain. */
rm_status rm_deploy_unit_plain_copy(rm_ctx *ctx, const rm_deploy *d, int i, float **plain);
/* After a loader has written every unit's plain weights through rm_deploy_unit_tensors: packs those kept packed and
 * records the task they belong to (a new generation). */
rm_status rm_deploy_loaded(rm_ctx *ctx, rm_deploy *d, int task);
/* rm_deploy_forward of a window whose first voxel is `origin` in the volume: a Monte Carlo pass's dropout draws are
 * keyed by it (rm_deploy_forward is the window at the origin). */
rm_status rm_deploy_forward_window(rm_ctx *ctx, const rm_deploy *d, const rm_tensor *x, const int64_t origin[3],
                                   rm_tensor *y);
/* The generation of the deploy form's folded weights: a value taken from one process-wide counter each time they
 * are made or rewritten (rm_deploy_alloc, rm_deploy_set_task, rm_deploy_set_mc, rm_deploy_loaded). Equal generations mean the
 * same weights, unlike equal pointers (a form re-merged, or a new one at a freed one's address). */
uint64_t rm_deploy_generation(const rm_deploy *d);
/* Replaces the deploy form's normalization (JSON text, as its model's): rm_deploy_normalization reads it. */
rm_status rm_deploy_set_normalization_text(rm_ctx *ctx, rm_deploy *d, const char *json);
/* The tensor name of unit i's `what` ("weight", "bias", "activation.bias") in the deploy form of `task`. */
void rm_deploy_tensor_name(const rm_unit *u, const char *task, const char *what, char *buf, size_t len);

/* Training checkpoints: the training form plus the optimizer's moments (n floats each), the trainer's weight average
 * (n_average floats, or none when average is NULL) and the step, seed and best score (left out when not finite) in
 * repmode.checkpoint metadata. Reading requires a model of the same configuration, the run's seed, and an average
 * exactly when the reader wants one; it then overwrites the model's weights (all of them are checked first only by
 * shape: a damaged file can leave them partly written). *best is NaN for a file without a score. */
rm_status rm_checkpoint_write(rm_ctx *ctx, const rm_model *model, const char *path, const float *m, const float *v,
                              size_t n, const float *average, size_t n_average, int64_t step, uint64_t seed,
                              double best);
rm_status rm_checkpoint_read(rm_ctx *ctx, const char *path, rm_model *into, float *m, float *v, size_t n,
                             float *average, size_t n_average, uint64_t seed, int64_t *step, double *best);

/* The BatchNorm of a unit as the operators take it. */
rm_batchnorm3d rm_unit_batchnorm(const rm_unit *u);

/* Checks x (N, in, D, H, W) against the model: D, H, W multiples of 2^levels; `tasks` valid when given. */
rm_status rm_model_check_input(rm_ctx *ctx, const rm_config *cfg, const rm_tensor *x, const int *tasks,
                               const rm_tensor *y);

#endif /* REPMODE_MODEL_IMPL_H */
