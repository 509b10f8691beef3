/* Optimizers and learning-rate schedules (docs/network.md §5.3).
 *
 * An optimizer is made over a model and updates the model's trainable parameters (rm_param.trainable) from their
 * gradients, in place. It follows PyTorch's torch.optim.Adam and torch.optim.AdamW (single-tensor form, as of
 * PyTorch 1.13), step t counting from 1:
 *
 *     Adam:   g ← g + wd·θ                  (L2 penalty folded into the gradient, when wd > 0)
 *     AdamW:  θ ← θ·(1 − lr·wd)             (decoupled weight decay, before the Adam step)
 *     both:   m ← β1·m + (1 − β1)·g
 *             v ← β2·v + (1 − β2)·g²
 *             θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
 *
 * lr is the step's learning rate times the tensor's rm_param.lr_scale (1 unless set: a scale of 1 changes no bit),
 * in AdamW's decay too, as a PyTorch parameter group of that rate would have it.
 *
 * Weight decay (of either kind) applies only to convolution weights: never to BatchNorm weights and biases, biases
 * (gate.bias, activation.bias) or gates (gate.weight); rm_optim_decays() is the rule.
 *
 * A training loop, with the learning rate of each step from a schedule:
 *
 *     rm_optim_config oc = rm_optim_adamw_default();
 *     rm_schedule sched = rm_schedule_warmup_cosine(500, 20000, 0.01f);
 *     rm_optim *opt = NULL;
 *     if (rm_optim_create(ctx, model, &oc, &opt) != RM_OK) ...
 *     for (int64_t s = 0; s < 20000; s++) {
 *         // rm_model_forward_train, the loss's backward, rm_model_backward
 *         float lr = rm_schedule_lr(&sched, oc.lr, rm_optim_step_count(opt));
 *         if (rm_optim_step(ctx, opt, lr) != RM_OK) ...
 *     }
 *     rm_optim_free(opt);
 *
 * Every update is elementwise, so the result is bit-identical on any number of threads.
 *
 * Threads: an optimizer borrows its model and writes the model's parameters at each step: the model and the
 * optimizer are one thread's while it steps.
 */
#ifndef REPMODE_OPTIM_H
#define REPMODE_OPTIM_H

#include "repmode/core.h"
#include "repmode/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- optimizers ---------------------------------------------------------------------------------------------- */

/* Append only: checkpoints store these. */
typedef enum rm_optim_kind {
    RM_OPTIM_ADAM = 0,  /* Adam; weight_decay (if any) is an L2 term added to the gradient */
    RM_OPTIM_ADAMW = 1, /* AdamW (Loshchilov & Hutter): decoupled weight decay */
} rm_optim_kind;

typedef struct rm_optim_config {
    rm_optim_kind kind;
    float lr;           /* base learning rate (≥ 0); a schedule scales it, rm_optim_step takes the result */
    float beta1, beta2; /* decay rates of the first and second moments, in [0, 1) */
    float eps;          /* > 0, added to √v̂ */
    float weight_decay; /* ≥ 0 */
} rm_optim_config;

/* The official training: Adam, lr 1e-4, β = (0.9, 0.999), ε = 1e-8, no weight decay. */
RM_API rm_optim_config rm_optim_adam_official(void);
/* AdamW with PyTorch's defaults: lr 1e-3, β = (0.9, 0.999), ε = 1e-8, weight decay 0.01. */
RM_API rm_optim_config rm_optim_adamw_default(void);
/* Checks a configuration; the message names the field that is wrong. RM_ERR_ARGUMENT (cfg NULL too) is the only
 * failure. */
RM_API rm_status rm_optim_config_validate(rm_ctx *ctx, const rm_optim_config *cfg);

/* 1 when weight decay applies to the parameter of this (official) name, 0 when it does not: BatchNorm weights and
 * biases (…subsequent_layer.0.*, …conv_down.1.*, …convt.1.*), any bias (…bias) and gates (…gate.*). NULL: 0. */
RM_API int rm_optim_decays(const char *name);

typedef struct rm_optim rm_optim;

/* An optimizer over the trainable parameters of `model`, with zero moments and step count 0. The model may not
 * have gradients yet (they appear with its first training forward); it must outlive the optimizer (borrowed, not
 * freed by it). The optimizer is the caller's: free it with rm_optim_free. RM_ERR_ARGUMENT: out or model NULL,
 * cfg NULL or refused by rm_optim_config_validate, a model without trainable parameters. RM_ERR_NOMEM. */
RM_API rm_status rm_optim_create(rm_ctx *ctx, rm_model *model, const rm_optim_config *cfg, rm_optim **out);
RM_API void rm_optim_free(rm_optim *opt);
/* The optimizer's configuration, owned by it: valid until rm_optim_free. NULL for NULL. */
RM_API const rm_optim_config *rm_optim_get_config(const rm_optim *opt);

/* One update of every trainable parameter from its gradient, at learning rate lr (finite, ≥ 0; the config's lr
 * is not used here). Increments the step count first: the first call is step t = 1. Refused, changing nothing,
 * when the model has no gradients yet. RM_ERR_ARGUMENT (opt NULL, lr out of range, no gradients, a parameter's lr_scale
 * not finite or negative, a step count at INT64_MAX) is the only failure. */
RM_API rm_status rm_optim_step(rm_ctx *ctx, rm_optim *opt, float lr);

/* Updates done so far (the t of the last step); 0 for NULL. */
RM_API int64_t rm_optim_step_count(const rm_optim *opt);

/* ---- state, for checkpoints ---------------------------------------------------------------------------------- */

/* Append only: checkpoints store these. The names are PyTorch's optimizer state keys. */
typedef enum rm_optim_moment {
    RM_OPTIM_EXP_AVG = 0,    /* m, the first moment */
    RM_OPTIM_EXP_AVG_SQ = 1, /* v, the second moment */
} rm_optim_moment;

/* The optimizer's moment `which`: *n floats (the model's trainable scalars), one entry per trainable parameter
 * element, the parameters in rm_model_param order, each in its own row-major order. Read it to save a checkpoint;
 * write it (and rm_optim_set_step) to resume one: the following steps are then bit-identical to those of the
 * optimizer that was saved. The array is owned by the optimizer, valid until rm_optim_free. NULL (and *n = 0) for
 * an unknown `which` or a NULL opt; n may be NULL. */
RM_API float *rm_optim_moments(rm_optim *opt, rm_optim_moment which, size_t *n);
/* Sets the step count (≥ 0), as when resuming a checkpoint. RM_ERR_ARGUMENT (opt NULL, a negative step) is the
 * only failure. */
RM_API rm_status rm_optim_set_step(rm_ctx *ctx, rm_optim *opt, int64_t step);

/* ---- learning-rate schedules --------------------------------------------------------------------------------- */

/* Append only. */
typedef enum rm_schedule_kind {
    RM_SCHEDULE_CONSTANT = 0,       /* the base learning rate throughout (official) */
    RM_SCHEDULE_WARMUP_COSINE = 1,  /* linear warm-up, then cosine decay to a floor */
} rm_schedule_kind;

/* WARMUP_COSINE, with W = warmup_steps, T = total_steps, base = the base learning rate, floor = base·floor_ratio,
 * step s counting from 0 (the updates already done, rm_optim_step_count before the step):
 *
 *     s < W:              base·(s + 1)/W                      (step 0 gets base/W, step W−1 gets base)
 *     s0 ≤ s ≤ T − 1:     floor + (base − floor)·(1 + cos(π·(s − s0)/(T − 1 − s0)))/2,   s0 = max(W − 1, 0)
 *     s > T − 1:          floor
 *
 * so the cosine starts at base at step W − 1 (step 0 when W = 0) and reaches the floor at step T − 1. Valid when
 * W ≥ 0, T ≥ max(W, 1) + 1 and floor_ratio ∈ [0, 1]. floor_ratio 1 gives a warm-up then a constant rate. */
typedef struct rm_schedule {
    rm_schedule_kind kind;
    int64_t warmup_steps, total_steps; /* WARMUP_COSINE only */
    float floor_ratio;                 /* WARMUP_COSINE only */
} rm_schedule;

/* The two schedules as values (not checked here). Pure. */
RM_API rm_schedule rm_schedule_constant(void);
RM_API rm_schedule rm_schedule_warmup_cosine(int64_t warmup_steps, int64_t total_steps, float floor_ratio);
/* Checks a schedule; the message names the field that is wrong. RM_ERR_ARGUMENT (sched NULL too) is the only
 * failure. */
RM_API rm_status rm_schedule_validate(rm_ctx *ctx, const rm_schedule *sched);
/* The learning rate of step `step` (from 0). A negative step counts as 0; a NULL schedule is constant. */
RM_API float rm_schedule_lr(const rm_schedule *sched, float base_lr, int64_t step);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_OPTIM_H */
