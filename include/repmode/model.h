/* RepMode networks: configurations, the training form (MoDE layers with task gates), and the deploy form.
 *
 * A model is built from a configuration (docs/network.md §2.1): a 3D U-Net with `levels`
 * down-sampling stages whose convolutions are MoDE layers of five experts (5³, 3³, 1³, 1³→avg3³, 1³→avg5³) mixed
 * per output channel by a softmax gate over the one-hot task. Its parameters carry the official PyTorch
 * implementation's tensor names, in its state_dict order.
 *
 * The training form computes, for every sample, its task's merged kernels; BatchNorm statistics are shared over
 * the batch (mixed tasks). The deploy form is the same network for one task with every layer's experts merged and
 * BatchNorm folded: a plain U-Net of 5³ convolutions with biases, merged once into memory it keeps.
 *
 * Threads: the training form keeps its activations inside (for its backward), so its forward changes it: one thread
 * at a time per model. The deploy form's forward keeps its activations in the calling context and only reads the
 * deploy form: load one and let any number of threads predict with it at once, each with its own context (a
 * ThreadSanitizer test, tests/sanitize, holds it to that). Calls that only read a model (const) may share it.
 */
#ifndef REPMODE_MODEL_H
#define REPMODE_MODEL_H

#include "repmode/core.h"
#include "repmode/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append only: model files store these. */
typedef enum rm_task_kind {
    RM_TASK_REGRESSION = 0, /* fluorescence-style intensity, MSE */
    RM_TASK_BINARY = 1,     /* a probability map (ink, masks): logits, BCE + Dice */
} rm_task_kind;

#define RM_NAME_MAX 64

typedef struct rm_task {
    char name[RM_NAME_MAX];
    rm_task_kind kind;
    float threshold; /* label-map threshold; NaN when the file gives none */
    int has_color;
    float color[3]; /* label colour, RGB in [0, 1], when has_color */
    int output_2d;  /* labels are 2D maps of a surface volume (docs/network.md §7): the 2D logit map is the mean over
                     * depth of the 3D logits; "output": "2d" in the task's JSON */
} rm_task;

/* The most tasks a model may have: far above the official 12, and low enough that a file listing more is refused
 * before anything is allocated for them. */
#define RM_MAX_TASKS 1024

/* The most down-sampling stages (config.levels): a 256-voxel patch side already reaches 1 voxel at 8. */
#define RM_MAX_LEVELS 8

/* Append only: model files store these. */
typedef enum rm_block {
    RM_BLOCK_MODE = 0,      /* MoDE layers (RepMode, official) */
    RM_BLOCK_INCEPTION = 1, /* Inception blocks (docs/network.md §9): the study's comparison, one task, no gate */
    RM_BLOCK_PLAIN = 2,     /* a plain U-Net: one 3³ conv, BatchNorm and activation per layer; one task, no gate */
} rm_block;

/* The network's shape and options. Tasks are owned by whoever built the struct; a model keeps its own copy. */
typedef struct rm_config {
    int64_t base_channels; /* channels of level 1; level k has base·2^(k-1), the bottleneck base·2^levels */
    int levels;            /* down-sampling stages: spatial sizes must divide by 2^levels */
    int64_t in_channels, out_channels;
    rm_activation activation;
    float dropout;    /* dropout probability on the input of every MoDE layer in training (0: none) */
    int64_t patch[3]; /* default patch (Z, Y, X) for training and sliding-window inference */
    int n_tasks;
    rm_task *tasks;
    /* Task-incremental learning's added expert (docs/network.md §5.5): 0 for none (the official network), else the
     * kernel (1, 3 or 5) of one more expert in every MoDE layer, used by the tasks from added_expert_task on (that
     * task trained it) and never by the ones before, whose gates and merged kernels are those of the five experts. */
    int added_expert_kernel;
    int added_expert_task;
    /* 1: `decoder: 2d` (docs/network.md §7.2): the 3D encoder and bottleneck, every skip and the bottleneck's output
     * averaged over depth, and a 2D decoder of 2D MoDE layers; its one 2D map per sample is repeated over the input's
     * depth, so the network's output keeps the input's shape. Every task then has 2D labels (output_2d). 0: the
     * official 3D decoder. */
    int decoder_2d;
    /* What each of the U-Net's layers is (docs/network.md §9): MoDE layers, Inception blocks, or plain 3³ layers,
     * the last two with a 1³ output convolution, one task, the 3D decoder and no added expert. */
    rm_block block;
} rm_config;

/* The official network (base 32, 4 levels, the 12 tasks of the paper, ReLU, patch 32×128×128). `tasks` must hold
 * room for 12 tasks; they are written there and the configuration points at them (borrowed). */
RM_API rm_config rm_config_official(rm_task tasks[12]);
/* `lite`: base 16, 4 levels, patch 64³, with the caller's tasks (borrowed, not copied; not checked). */
RM_API rm_config rm_config_lite(rm_task *tasks, int n_tasks);
/* A task of the given name (copied, cut to RM_NAME_MAX - 1 bytes; NULL gives "") and kind, no threshold, no
 * colour, 3D labels. */
RM_API rm_task rm_task_make(const char *name, rm_task_kind kind);
/* Checks a configuration; the message names the field that is wrong. RM_ERR_ARGUMENT (cfg NULL too) is the only
 * failure. */
RM_API rm_status rm_config_validate(rm_ctx *ctx, const rm_config *cfg);
/* Channels at level k (1..levels), and levels + 1 for the bottleneck. cfg must not be NULL. */
RM_API int64_t rm_config_channels(const rm_config *cfg, int level);

/* The multiply-adds of one forward pass (its convolutions) of the network of cfg on one input of size[0..2] (Z, Y, X;
 * multiples of 2^levels), into *macs: what `repmode info` and the benchmarks print per voxel. The 3D decoder's
 * count for `official` is docs/network.md §8's (136.55 G on 32×64×64). RM_ERR_ARGUMENT: NULL, cfg refused by
 * rm_config_validate, a size that is not a positive multiple of 2^levels. RM_ERR_NOMEM. */
RM_API rm_status rm_config_forward_macs(rm_ctx *ctx, const rm_config *cfg, const int64_t size[3], double *macs);

/* ---- the training form --------------------------------------------------------------------------------------- */

typedef struct rm_model rm_model;

/* One named tensor of a model, in the official state_dict's order: parameters (trainable), BatchNorm running
 * statistics and the constant pooling kernels (buffers), and num_batches_tracked (int64). */
typedef struct rm_param {
    const char *name;
    int ndim;
    int64_t shape[RM_MAX_DIMS];
    int64_t numel;
    float *data;     /* NULL for the int64 counter */
    float *grad;     /* trainable parameters, once a training forward has run; else NULL */
    int64_t *count;  /* num_batches_tracked, else NULL */
    int trainable;
    float lr_scale;  /* an optimizer steps this tensor at lr·lr_scale (its weight decay too); 1 unless set, e.g. by
                      * rm_model_set_encoder_lr_scale */
} rm_param;

/* A new model with freshly initialized weights (PyTorch's default initialization, from our own generator seeded
 * with `seed`), BatchNorm weight 1, bias 0, running mean 0, variance 1. The model copies cfg and its tasks.
 * RM_ERR_ARGUMENT: out NULL, or cfg NULL or refused by rm_config_validate. RM_ERR_NOMEM. */
RM_API rm_status rm_model_create(rm_ctx *ctx, const rm_config *cfg, uint64_t seed, rm_model **out);
RM_API void rm_model_free(rm_model *model);
/* The model's configuration, owned by the model: valid until rm_model_free. model must not be NULL. */
RM_API const rm_config *rm_model_config(const rm_model *model);
/* The index of the task named `name` (NULL: none), or -1. */
RM_API int rm_model_task_index(const rm_model *model, const char *name);
/* Sets task `task`'s decision threshold (rm_task.threshold, which the model's files carry in repmode.tasks): a
 * value in [0, 1], or NaN to clear it (the default 0.5 on probabilities applies again). Anything else, or a task
 * out of range, is refused with RM_ERR_ARGUMENT (model NULL too) and leaves the model unchanged. */
RM_API rm_status rm_model_set_task_threshold(rm_ctx *ctx, rm_model *model, int task, float threshold);

/* The model's named tensors: their count, and tensor i (NULL when i is out of range). An rm_param, its name and
 * its data are owned by the model, valid until rm_model_free; the caller may write the values (data, count). grad
 * is NULL until the first training forward. model must not be NULL. */
RM_API size_t rm_model_n_params(const rm_model *model);
RM_API rm_param *rm_model_param(rm_model *model, size_t i);
/* The tensor named `name` (official naming), or NULL (name NULL too); owned by the model as rm_model_param's. */
RM_API rm_param *rm_model_find_param(rm_model *model, const char *name);
/* Trainable scalars (the official count for `official` is 123,877,633). model must not be NULL. */
RM_API int64_t rm_model_trainable_count(const rm_model *model);

/* Training mode: y (N, out, D, H, W) from x (N, in, D, H, W), sample n with task tasks[n]; BatchNorm uses batch
 * statistics and updates its running statistics; dropout (if configured) draws from `seed`. Keeps what the
 * backward needs. D, H and W must be multiples of 2^levels. model must not be NULL.
 * RM_ERR_ARGUMENT: x, y, their data or tasks NULL, a task out of range. RM_ERR_SHAPE: x's channels, a size not a
 * multiple of 2^levels, y's shape, more than 256 samples. RM_ERR_NOMEM: the activations (kept in the model, sized
 * for the batch's shape, made again when it changes), the gradients (made by the first training forward), the
 * operators' working memory. */
RM_API rm_status rm_model_forward_train(rm_ctx *ctx, rm_model *model, const rm_tensor *x, const int *tasks,
                                        uint64_t seed, rm_tensor *y);
/* Gradients of the last training forward given dy; written (not accumulated) into every trainable rm_param's
 * grad. model must not be NULL. RM_ERR_ARGUMENT: the model's last forward was not a training forward (an eval
 * forward in between counts), or dy NULL. RM_ERR_SHAPE: dy unlike that forward's y. RM_ERR_NOMEM. */
RM_API rm_status rm_model_backward(rm_ctx *ctx, rm_model *model, const rm_tensor *dy);
/* Inference mode of the training form (running statistics, no dropout), each sample with its own task. It uses,
 * and so changes, the model's activation buffers. Statuses as rm_model_forward_train's (RM_ERR_ARGUMENT,
 * RM_ERR_SHAPE, RM_ERR_NOMEM). */
RM_API rm_status rm_model_forward_eval(rm_ctx *ctx, rm_model *model, const rm_tensor *x, const int *tasks,
                                       rm_tensor *y);

/* ---- task-incremental learning (docs/network.md §5.5) ---------------------------------------------------------- */

/* A new model (the caller's: rm_model_free): `model`'s network, weights, normalization and provenance with one more
 * task, `task` (copied), last in the task list. Every MoDE gate gains the task's column, 0 (its gate starts as the
 * softmax of the gate bias). With added_kernel 1, 3 or 5 every MoDE layer also gains an expert of that kernel,
 * initialized from `seed` as a new model's conv weights are, with gate rows of 0 (weight and bias); the new task and
 * any added after it use it, the old tasks never do. Nothing an old task reads changes: their predictions are
 * bit-identical. added_kernel 0: no new expert. RM_ERR_ARGUMENT: model, task or out NULL, a task the configuration
 * refuses (a name the model has, a bad field), added_kernel not 0, 1, 3 or 5, an added expert when the model has one
 * already, a model with RM_MAX_TASKS tasks. RM_ERR_NOMEM. */
RM_API rm_status rm_model_add_task(rm_ctx *ctx, const rm_model *model, const rm_task *task, int added_kernel,
                                   uint64_t seed, rm_model **out);
/* Restricts training to `task`: only its own parameters stay trainable, its column of every MoDE gate (the gate's
 * weight trains whole, but its other columns never receive a gradient and gates never decay, so an optimizer leaves
 * them bit-identical) and the added expert if `task` is the one it was added with. Every other tensor is frozen
 * (trainable 0, grad NULL: its gradient is not computed), BatchNorm runs in inference mode in training forwards too
 * (running statistics used, not updated), and a training forward refuses samples of other tasks. Every other task's
 * predictions stay bit-identical however long `task` trains. Call it before making an optimizer or a trainer of
 * the model; it lasts for the model's life (files do not record it). RM_ERR_ARGUMENT: model NULL, task out of
 * range. */
RM_API rm_status rm_model_train_only_task(rm_ctx *ctx, rm_model *model, int task);

/* ---- fine-tuning (docs/network.md §5.6) --------------------------------------------------------------------- */

/* A new model (the caller's: rm_model_free) of configuration `cfg` whose weights are `source`'s, every tensor bit for
 * bit, BatchNorm running statistics and counters included, with the tasks mapped by name: a task of cfg that source
 * has takes that task's column of every MoDE gate (its kind must be the same; threshold, colour and output are
 * cfg's), a task source lacks starts with a column of 0 (as rm_model_add_task starts one), and source's tasks that
 * cfg does not list are dropped. The network must be source's: base_channels, levels, in_channels, out_channels,
 * activation, decoder, block and added_expert must be equal (dropout and patch, which no weight depends on, are
 * cfg's). The normalization and the provenance are source's. RM_ERR_ARGUMENT: a NULL argument, cfg refused by
 * rm_config_validate, a network field that differs (the message names the first), a task of another kind, a model
 * with an added expert (its tasks cannot be reordered). RM_ERR_NOMEM. */
RM_API rm_status rm_model_init_from(rm_ctx *ctx, const rm_model *source, const rm_config *cfg, rm_model **out);
/* Freezes the encoder (every tensor named encoder_block*, i.e. each level's conv_more and conv_down; not the
 * bottleneck): trainable 0 and no gradient (not computed: the backward stops at the bottleneck), its BatchNorm in
 * inference mode in training forwards too (running statistics used, not updated, not counted), so it computes the
 * same function however long the rest trains. Dropout stays as configured. Call it before making an optimizer or a
 * trainer of the model; it lasts for the model's life (files do not record it). RM_ERR_ARGUMENT: model NULL. */
RM_API rm_status rm_model_freeze_encoder(rm_ctx *ctx, rm_model *model);
/* Sets lr_scale of every encoder tensor (as rm_model_freeze_encoder names them) to `scale`, in (0, 1]: an optimizer
 * then steps them at lr·scale. RM_ERR_ARGUMENT: model NULL, scale outside (0, 1]. */
RM_API rm_status rm_model_set_encoder_lr_scale(rm_ctx *ctx, rm_model *model, float scale);

/* ---- model files (safetensors, docs/model-file.md) ----------------------------------------------------------- */

/* Reads a training-form model file; a file without metadata is read as the official configuration. A missing,
 * truncated or inconsistent file, a wrong shape or an unknown tensor is refused with a message naming it.
 * RM_ERR_ARGUMENT: path or out NULL. RM_ERR_IO: the file cannot be opened or read, or is not a regular file.
 * RM_ERR_FORMAT: the container, the metadata (configuration, tasks, normalization), a tensor missing, unknown, of
 * another dtype or shape, a weight not finite, beyond 1e10 or a negative BatchNorm variance, or a deploy-form
 * file. RM_ERR_NOMEM. */
RM_API rm_status rm_model_load(rm_ctx *ctx, const char *path, rm_model **out);
/* Writes the training form under the official tensor names, atomically (a failure leaves no file at path).
 * RM_ERR_ARGUMENT: model or path NULL, path empty, or metadata text that is not UTF-8 (a provenance). RM_ERR_IO:
 * the file cannot be written or renamed into place. RM_ERR_NOMEM. */
RM_API rm_status rm_model_save(rm_ctx *ctx, const rm_model *model, const char *path);
/* Writes the deploy form of tasks[0..n_tasks) (every task when n_tasks is 0): deploy.<task>.<block>.weight and
 * .bias per convolution, <block> being the MoDE layer's or the down/up block's path in the training form
 * (e.g. encoder_block1.conv_more.conv1, encoder_block1.conv_down), and .activation.bias for FReLU. Holds every
 * requested task's folded weights in memory while writing; atomic as rm_model_save. RM_ERR_ARGUMENT: as
 * rm_model_save's, and n_tasks < 0, tasks NULL with n_tasks > 0, a task out of range. RM_ERR_IO. RM_ERR_NOMEM. */
RM_API rm_status rm_model_save_deploy(rm_ctx *ctx, const rm_model *model, const int *tasks, int n_tasks,
                                      const char *path);

/* Replaces the model's repmode.provenance (a JSON object as text: software, training data, steps, seed, …), which
 * its files carry; the model keeps a copy. Anything but a JSON object is refused with RM_ERR_ARGUMENT (model or
 * json NULL, or a parse that runs out of memory, too), and the model is unchanged. RM_ERR_NOMEM: the copy. */
RM_API rm_status rm_model_set_provenance(rm_ctx *ctx, rm_model *model, const char *json);
/* The model's repmode.provenance, JSON text owned by the model (valid until it changes or rm_model_free). model must
 * not be NULL. */
RM_API const char *rm_model_provenance(const rm_model *model);

/* What a model file holds, read and checked whole. */
typedef struct rm_model_info {
    int deploy;         /* 1 for the deploy form, 0 for the training form */
    rm_config cfg;      /* cfg.tasks: the file's tasks, owned by the info */
    int64_t parameters; /* trainable scalars (training form), or weights and biases of one task (deploy form) */
    char *provenance;   /* the file's repmode.provenance (JSON text, owned by the info), or NULL when it has none */
} rm_model_info;

/* Reads and checks a model file of either form (a deploy-form file task by task) without keeping its weights.
 * info->cfg.tasks and info->provenance are owned by the info: free them with rm_model_info_free (NULL allowed; it zeroes the info). On
 * failure the info is zeroed and owns nothing. Statuses as rm_model_load's (RM_ERR_ARGUMENT, RM_ERR_IO,
 * RM_ERR_FORMAT, RM_ERR_NOMEM), but a deploy-form file is read. */
RM_API rm_status rm_model_info_read(rm_ctx *ctx, const char *path, rm_model_info *info);
RM_API void rm_model_info_free(rm_model_info *info);

/* The JSON text of a configuration (without its tasks) and of its task list, as a model file's metadata holds
 * them; the configuration's object with the list added as "tasks" is a configuration file that
 * rm_train_config_parse (trainer.h) reads back as the same configuration. cfg must be valid (rm_config_validate).
 * NULL when out of memory; the text is the caller's: release it with rm_free. */
RM_API char *rm_config_json(const rm_config *cfg);
RM_API char *rm_tasks_json(const rm_config *cfg);
/* Frees memory the library returned for the caller to release with rm_free (JSON texts); NULL is allowed. */
RM_API void rm_free(void *p);

/* ---- the deploy form ----------------------------------------------------------------------------------------- */

typedef struct rm_deploy rm_deploy;

/* The deploy form of `task`: every MoDE layer's experts merged and every BatchNorm folded into its convolution.
 * It keeps its own copy of the structure and the folded weights: the model may be freed afterwards. Free it with
 * rm_deploy_free. RM_ERR_ARGUMENT: model or out NULL, task out of range. RM_ERR_NOMEM. *out is unchanged on
 * failure. */
RM_API rm_status rm_deploy_create(rm_ctx *ctx, const rm_model *model, int task, rm_deploy **out);
/* Re-merges another task into the same memory (only a scratch of a few floats per channel is allocated).
 * RM_ERR_ARGUMENT: deploy or model NULL, task out of range, a model of another network. RM_ERR_NOMEM. A failure may
 * leave the weights partly rewritten: merge again before predicting. */
RM_API rm_status rm_deploy_set_task(rm_ctx *ctx, rm_deploy *deploy, const rm_model *model, int task);
/* One pass of Monte Carlo dropout (docs/network.md §6.3): dropout kept active on the input of every MoDE block and
 * Gaussian noise on every gate logit, so that repeated passes spread as the model is unsure. Every draw is a hash of
 * (seed, pass, layer, and the gate's expert and channel or the window's origin and the element), never of the
 * order of work: a pass gives the same bytes on any thread count and whichever region of a volume is predicted. */
typedef struct rm_mc_pass {
    float dropout;    /* p in [0, 1): each input element of a MoDE block zeroed with probability p, the rest scaled by
                         1 / (1 − p), as in training */
    float gate_noise; /* σ_g ≥ 0: σ_g·ε added to every gate logit before the softmax, ε standard normal */
    uint64_t seed;    /* the run's seed */
    int64_t pass;     /* the pass's index: each pass draws its own numbers */
} rm_mc_pass;

/* Makes the deploy form compute pass `mc` of `task`: the experts merged under the noisy gates (from `model`), and the
 * dropout applied in every forward until the next rm_deploy_set_mc or rm_deploy_set_task (which ends it). model may
 * be NULL when gate_noise is 0: the weights (those of `task`, already merged) stay. A dropout of 0 and a gate noise
 * of 0 give the plain deploy form's bytes. RM_ERR_ARGUMENT: deploy or mc NULL, a dropout outside [0, 1), a negative
 * or non-finite noise, gate noise without a model, a task the deploy form does not hold without a model; and
 * rm_deploy_set_task's statuses. */
RM_API rm_status rm_deploy_set_mc(rm_ctx *ctx, rm_deploy *deploy, const rm_model *model, int task,
                                  const rm_mc_pass *mc);
/* The deploy form of the task named `task` from a model file of either form (a training-form file is merged and
 * folded on loading). Free it with rm_deploy_free. Statuses as rm_model_load's (RM_ERR_IO, RM_ERR_FORMAT,
 * RM_ERR_NOMEM), and RM_ERR_ARGUMENT for path, task or out NULL and for a task the model does not have (the
 * message lists those it has). */
RM_API rm_status rm_deploy_load(rm_ctx *ctx, const char *path, const char *task, rm_deploy **out);
RM_API void rm_deploy_free(rm_deploy *deploy);
/* The index of the task the weights are merged for. deploy must not be NULL. */
RM_API int rm_deploy_task(const rm_deploy *deploy);
/* The network's configuration, with every task of the model it came from (the deploy form computes one). Owned by
 * the deploy form: valid until rm_deploy_free. deploy must not be NULL. */
RM_API const rm_config *rm_deploy_config(const rm_deploy *deploy);
/* y (N, out, D, H, W) from x (N, in, D, H, W). The activations live in the context's working memory (grown on the
 * first call for a patch size, reused by later calls), not in the deploy form, which a forward only reads: threads
 * may share one deploy form, each calling with its own context. RM_ERR_ARGUMENT: deploy, x, y or their data NULL.
 * RM_ERR_SHAPE: x's channels, a size not a multiple of 2^levels, y's shape. RM_ERR_NOMEM. */
RM_API rm_status rm_deploy_forward(rm_ctx *ctx, const rm_deploy *deploy, const rm_tensor *x, rm_tensor *y);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_MODEL_H */
