/* Training a model on volumes held in memory: random patches in mixed-task batches, augmentation, the loss of
 * each task's kind, the optimizer and its schedule, and checkpoints that resume bit for bit.
 *
 * Every random choice (volume, crop, bucket, flips, rotation, jitter, noise, dropout) is a hash of (seed, step,
 * sample), so a run is reproducible bit for bit for a given seed whatever the thread count, and a run resumed from a
 * checkpoint continues exactly as the uninterrupted one.
 *
 * Weight averaging (rm_train_options.ema = d): after step n (n = 1, 2, …) the trainer updates its average of every
 * float tensor of the model (parameters and BatchNorm running statistics) as a ← a + (1 − d_n)·(θ − a), with
 * d_n = min(d, (1 + n)/(10 + n)), so that the early average follows the weights instead of the random
 * initialization; a starts as the initial weights. A tensor that does not change keeps its bits.
 *
 * Threads: a trainer borrows its model and volumes and changes the model at every step: the trainer, its model
 * and its optimizer are one thread's.
 */
#ifndef REPMODE_TRAINER_H
#define REPMODE_TRAINER_H

#include "repmode/core.h"
#include "repmode/model.h"
#include "repmode/normalize.h"
#include "repmode/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What to train, as a configuration file gives it (the file of `repmode train --config`): the network with its tasks
 * (docs/network.md §2.1) and how its volumes are normalized (docs/network.md §1.2), which the trained model records
 * (rm_model_set_normalization). Owns its tasks; release with rm_train_config_free. */
/* How training samples are augmented (docs/network.md §5.4). Every value is drawn per sample from the run's seed
 * (uniformly, unless said otherwise); 0 turns an augmentation off. The intensity augmentations act on the input's
 * voxels inside the volume (padding stays 0) in this order: jitter (as the crop is read), blur, gamma, contrast,
 * illumination, brightness, noise. Targets and masks are never changed by them. */
typedef struct rm_augment {
    int flips;           /* random flips along each axis (official) */
    int rotations;       /* random in-plane 90° rotations (needs patch Y == X) */
    float jitter;        /* in [0, 1): the input scaled by 1 ± j and shifted by ± j as it is read */
    float blur;          /* ≥ 0: a Gaussian blur in Y and X of standard deviation σ in [0, blur] voxels */
    float gamma;         /* ≥ 0: x ← lo + (hi − lo)·((x − lo)/(hi − lo))^γ, γ = (1 + g)^u for u in [−1, 1], over
                          * the sample's range [lo, hi] */
    float contrast;      /* in [0, 1): x ← m + c·(x − m), c in [1 − contrast, 1 + contrast], m the sample's mean */
    float illumination;  /* ≥ 0: x ← x + a·(cos φ·v + sin φ·u), a in [0, illumination], φ in [0, 2π), v and u from −1
                          * to 1 across the patch in Y and X: an uneven illumination, as normalization leaves it */
    float brightness;    /* ≥ 0: x ← x + b, b in [−brightness, brightness] */
    float noise;         /* ≥ 0: Gaussian noise of this standard deviation added to every voxel */
    int64_t depth_shift; /* ≥ 0: a volume with 2D labels is read s layers deeper, s in {−S, …, S}, clamped to its
                          * layers (its label belongs to no one layer); volumes with 3D labels are not shifted */
} rm_augment;

/* Nothing at all. */
RM_API rm_augment rm_augment_none(void);
/* A named recipe: "none"; "official" (flips, the official code's and a configuration's default); "label-free" for
 * transmitted-light to fluorescence, and "ink" for CT surface volumes (docs/network.md §5.4 gives their values).
 * RM_ERR_ARGUMENT: another name (the message lists the names), out NULL. */
RM_API rm_status rm_augment_preset(rm_ctx *ctx, const char *name, rm_augment *out);
/* Checks the ranges above; the message names the field. RM_ERR_ARGUMENT (a NULL too) is the only failure. */
RM_API rm_status rm_augment_validate(rm_ctx *ctx, const rm_augment *augment);

typedef struct rm_train_config {
    rm_config cfg;  /* cfg.tasks points at `tasks` */
    rm_task *tasks;
    rm_normalization normalization;
    rm_augment augment;
} rm_train_config;

/* Reads a configuration file's JSON text: an object with the fields of docs/network.md §2.1 (as repmode.config holds
 * them; absent ones take the `lite` defaults), "tasks", a non-empty list of {"name", "kind"?: "regression" (the
 * default) or "binary", "threshold"?: a number in [0, 1], "color"?: [r, g, b] each in [0, 1], "output"?: "3d" (the
 * default) or "2d"}, and "normalization"?: "zscore" (the default), "percentile" (p1-p99) or the object
 * rm_normalization_parse reads. The model file's reader checks the same fields with the same functions. Every field
 * is checked; an unknown or repeated field, a task listed twice and a value out of range are refused with a message
 * that names the field, starting "config: ": RM_ERR_FORMAT for text that does not say a configuration,
 * RM_ERR_ARGUMENT for a value outside its range (rm_config_validate), for a bad "normalization" object (its
 * field names too) and for json or out NULL; RM_ERR_NOMEM. On failure *out owns nothing. Free a parsed
 * configuration with rm_train_config_free (NULL allowed; it zeroes the struct). */
RM_API rm_status rm_train_config_parse(rm_ctx *ctx, const char *json, rm_train_config *out);
RM_API void rm_train_config_free(rm_train_config *config);

/* One training volume, normalized already, owned by the caller for the trainer's lifetime.
 *
 * A surface volume with 2D labels (docs/network.md §7, `decoder: 3d` with 2D extraction) sets target_2d: its target
 * and mask are (1, H, W) maps of the signal's (D, H, W) layers, and its task must have output_2d. A sample's loss is
 * then taken on its 2D logit map, the mean over the patch's layers of the network's 3D logits, against the same
 * in-plane crop of the label (flips in Y and X and rotations applied to it alike, a flip in depth leaving it as it
 * is). When such a volume is deeper than the patch, the random crop in depth is the random depth window of
 * docs/network.md §5.4. */
typedef struct rm_train_volume {
    const float *signal; /* (D, H, W) network input */
    const float *target; /* (D, H, W), or (1, H, W) when target_2d: intensity (regression tasks) or 0/1 (binary) */
    const float *mask;   /* like target, or NULL: only voxels (pixels) with mask > 0.5 count in the loss */
    int64_t size[3];     /* the signal's D, H, W */
    int task;            /* task index in the model */
    int target_2d;       /* 1: target and mask are 2D maps of the layers (see above); 0: they are volumes */
} rm_train_volume;

/* Patch sampling (docs/network.md §5.4).
 *
 * RM_SAMPLING_RANDOM (official): each sample's crop is uniform among all crop positions of its volume.
 *
 * RM_SAMPLING_BUCKETS: the crop positions of every binary-task volume are sorted into buckets by the crop's positive
 * fraction, the share of its counted voxels (pixels, for a 2D label) whose label is > 0.5, counted voxels being those
 * inside the volume with mask > 0.5 (all of them without a mask):
 *   RM_BUCKET_NONE  no positive voxel (also a crop with no counted voxel at all),
 *   RM_BUCKET_LOW   a fraction in (0, bucket_low],
 *   RM_BUCKET_HIGH  a fraction above bucket_low.
 * A sample draws its volume uniformly as with random crops; from a binary-task volume it then draws a bucket
 * uniformly among that volume's non-empty buckets, and a crop uniformly among the bucket's positions, so rare ink is
 * seen about as often as background. Buckets are per volume: a volume without ink gives "none" crops only. The
 * depth of a 2D-labelled volume's crop (its label does not depend on it) and every augmentation are drawn as with
 * random crops; regression volumes keep random crops. The buckets are made once, at rm_trainer_create, in time and
 * memory linear in the volumes' size (summed-area tables, then one byte per crop position kept). Bucketed sampling
 * without any binary-task volume is refused: it would do nothing. */
typedef enum rm_sampling { RM_SAMPLING_RANDOM = 0, RM_SAMPLING_BUCKETS = 1 } rm_sampling;
typedef enum rm_bucket { RM_BUCKET_NONE = 0, RM_BUCKET_LOW = 1, RM_BUCKET_HIGH = 2, RM_N_BUCKETS = 3 } rm_bucket;
#define RM_BUCKET_LOW_DEFAULT 0.1f

typedef struct rm_train_options {
    int64_t patch[3];       /* Z, Y, X; multiples of 2^levels; a smaller volume is zero-padded (and masked out) */
    int batch;              /* samples per step (official 8), each from a volume drawn uniformly */
    uint64_t seed;
    rm_optim_config optim;
    rm_schedule schedule;
    float smoothing;        /* label smoothing of the binary tasks' BCE */
    rm_augment augment;
    rm_sampling sampling;   /* how crops are placed (see above); RM_SAMPLING_RANDOM is the official */
    float bucket_low;       /* bucketed sampling: the "low" bucket's upper bound, in (0, 1) (RM_BUCKET_LOW_DEFAULT) */
    float ema;              /* 0, or the decay d in (0, 1) of an exponential moving average of the weights: see
                             * rm_trainer_swap_average */
} rm_train_options;

/* The official recipe for a patch: batch 8, Adam lr 1e-4 constant, random flips and crops, seed 0, no weight average
 * (and bucket_low RM_BUCKET_LOW_DEFAULT, should bucketed sampling be chosen). Pure; patch must not be NULL. */
RM_API rm_train_options rm_train_options_official(const int64_t patch[3]);
/* The options as compact JSON text, which a trained model's provenance records (docs/model-file.md §2.6): patch, batch,
 * optimizer {kind, lr, beta1, beta2, eps, weight_decay}, schedule {kind "constant", or "cosine" with warmup,
 * total_steps and floor}, smoothing, sampling ("random" or "buckets", then bucket_low), augment (a configuration
 * file's "augment" object, every field given) and ema; floats at the shortest decimal that reads back as the same
 * float. The seed is not in it (provenance records it beside). NULL for opt NULL or out of memory; release the text
 * with rm_free. */
RM_API char *rm_train_options_json(const rm_train_options *opt);

/* The loss of one sample as a training step takes it (regression: masked MSE; binary: ½·(soft BCE + Dice) with
 * `smoothing`), and dloss times its gradient into dlogits (like logits; NULL: not wanted). logits is
 * (1, 1, D, H, W); target and mask (mask may be NULL) are like logits, or (1, 1, 1, H, W) for a 2D label: then the
 * loss is that of the mean over depth of the logits, and the gradient of each logit is the map's gradient / D.
 * RM_ERR_ARGUMENT: logits, target or loss NULL, an unknown kind, smoothing outside [0, 0.5]. RM_ERR_SHAPE.
 * RM_ERR_NOMEM. */
RM_API rm_status rm_train_sample_loss(rm_ctx *ctx, rm_task_kind kind, float smoothing, const rm_tensor *logits,
                                      const rm_tensor *target, const rm_tensor *mask, float dloss, float *loss,
                                      rm_tensor *dlogits);

typedef struct rm_trainer rm_trainer;

/* A trainer of `model` (not owned; it must outlive the trainer) on volumes[0..n). Checks every volume and option.
 * The array of volumes is copied, their voxels are borrowed. The trainer is the caller's: free it with
 * rm_trainer_free. RM_ERR_ARGUMENT: model, opt or out NULL, an option out of range (the optimizer's and the
 * schedule's too), a model without one input and one output channel, no volume, a volume without signal or
 * target, of an unknown task or with labels of the wrong dimension, bucketed sampling without a binary task.
 * RM_ERR_SHAPE: a volume size below 1. RM_ERR_NOMEM. */
RM_API rm_status rm_trainer_create(rm_ctx *ctx, rm_model *model, const rm_train_options *opt,
                                   const rm_train_volume *volumes, int n, rm_trainer **out);
RM_API void rm_trainer_free(rm_trainer *t);
/* One step: a batch, forward, loss, backward, optimizer update. *loss receives the batch's loss before it.
 * RM_ERR_ARGUMENT (t or loss NULL, the average swapped in), RM_ERR_NOMEM. A failed step does not count, but its
 * forward may have updated some BatchNorm running statistics. */
RM_API rm_status rm_trainer_step(rm_ctx *ctx, rm_trainer *t, float *loss);
/* Steps done so far. t must not be NULL. */
RM_API int64_t rm_trainer_steps_done(const rm_trainer *t);

/* The last step's batch as the network saw it, for inspection: inputs, labels, masks and logits, each
 * (batch, 1, Z, Y, X) of the patch (a 2D label and its mask fill the first Y·X of their sample's block), each
 * sample's task, and the rm_bucket each sample's crop was drawn from (-1: a random crop). Every pointer is NULL
 * before the first step; the next step overwrites the data. The arrays are owned by the trainer, valid until
 * rm_trainer_free. */
/* What one sample's augmentation drew: the identity where an augmentation is off. */
typedef struct rm_augment_draw {
    int flips[3];        /* Z, Y, X: 1 flipped */
    int turns;           /* in-plane 90° rotations, 0..3 */
    float scale, shift;  /* jitter */
    float blur;          /* σ in voxels */
    float gamma, contrast;
    float illumination, angle; /* the ramp's amplitude a and direction φ */
    float brightness;
    int64_t depth_shift;
} rm_augment_draw;

typedef struct rm_train_batch {
    const float *x, *target, *mask, *logits;
    const int *tasks;
    const int *buckets;
    const rm_augment_draw *augment;
} rm_train_batch;
RM_API rm_train_batch rm_trainer_last_batch(const rm_trainer *t);
/* The best validation score of the run so far, kept by the trainer only so that checkpoints carry it and a resumed
 * run does not overwrite a better model it saved before. The trainer does not compare scores: which is better
 * (lower or higher) is the caller's. NaN means none yet: a new trainer, or one loaded from a checkpoint written
 * without a score (or before scores were kept). Setting a value that is not finite (NaN, ±inf) clears it to NaN.
 * Never fail; t must not be NULL. */
RM_API void rm_trainer_set_best_score(rm_trainer *t, double score);
RM_API double rm_trainer_best_score(const rm_trainer *t);
/* Exchanges the model's float tensors with the trainer's weight average (rm_train_options.ema), so that the model
 * can be validated or saved as the average; a second call restores the trained weights. While exchanged, steps and
 * checkpoints are refused (the model holds the average). RM_ERR_ARGUMENT: t NULL, a trainer without ema. */
RM_API rm_status rm_trainer_swap_average(rm_ctx *ctx, rm_trainer *t);
/* 1 while the model holds the average (after an odd number of rm_trainer_swap_average), else 0. */
RM_API int rm_trainer_average_swapped(const rm_trainer *t);
/* Writes the model, the optimizer's state, the weight average (with ema), the step, the seed and the best score to
 * one file (a training-form model file with the optimizer's moments added), atomically. Only reads the trainer.
 * Statuses as rm_model_save's (RM_ERR_ARGUMENT, also for t NULL or while the average is swapped in; RM_ERR_IO;
 * RM_ERR_NOMEM). */
RM_API rm_status rm_trainer_save_checkpoint(rm_ctx *ctx, const rm_trainer *t, const char *path);
/* Restores a checkpoint of this trainer's model configuration and seed into the trainer and its model, its weight
 * average (a trainer with ema needs a checkpoint that has one) and its best score (NaN when the file has none).
 * RM_ERR_ARGUMENT: t or path NULL, a checkpoint of a run with another seed, the average swapped in.
 * RM_ERR_IO: the file cannot be read. RM_ERR_FORMAT: not a checkpoint, or a tensor missing, of another shape (a
 * model of another configuration) or with impossible values. RM_ERR_NOMEM. Nothing is written before the seed is
 * checked; a later failure may leave the model's weights and the moments partly overwritten (the step and the score
 * are set only on success). */
RM_API rm_status rm_trainer_load_checkpoint(rm_ctx *ctx, rm_trainer *t, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_TRAINER_H */
