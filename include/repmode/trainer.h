/* Training a model on volumes held in memory: random patches in mixed-task batches, augmentation, the loss of
 * each task's kind, the optimizer and its schedule, and checkpoints that resume bit for bit.
 *
 * Every random choice (volume, crop, flips, rotation, jitter, noise, dropout) is a hash of (seed, step, sample),
 * so a run is reproducible bit for bit for a given seed whatever the thread count, and a run resumed from a
 * checkpoint continues exactly as the uninterrupted one.
 */
#ifndef REPMODE_TRAINER_H
#define REPMODE_TRAINER_H

#include "repmode/core.h"
#include "repmode/model.h"
#include "repmode/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One training volume, normalized already, owned by the caller for the trainer's lifetime. */
typedef struct rm_train_volume {
    const float *signal; /* (D, H, W) network input */
    const float *target; /* (D, H, W): intensity for regression tasks, 0/1 for binary ones */
    const float *mask;   /* (D, H, W) or NULL: only voxels with mask > 0.5 count in the loss */
    int64_t size[3];
    int task;            /* task index in the model */
} rm_train_volume;

typedef struct rm_train_options {
    int64_t patch[3];       /* Z, Y, X; multiples of 2^levels; a smaller volume is zero-padded (and masked out) */
    int batch;              /* samples per step (official 8), each from a volume drawn uniformly */
    uint64_t seed;
    rm_optim_config optim;
    rm_schedule schedule;
    float smoothing;        /* label smoothing of the binary tasks' BCE */
    int flips;              /* random flips along each axis (official) */
    int rotations;          /* random in-plane 90° rotations (needs patch Y == X) */
    float intensity_jitter; /* input scaled by 1 ± j and shifted by ± j (0: off) */
    float noise;            /* standard deviation of Gaussian noise added to the input (0: off) */
} rm_train_options;

/* The official recipe for a patch: batch 8, Adam lr 1e-4 constant, random flips, seed 0. */
RM_API rm_train_options rm_train_options_official(const int64_t patch[3]);

typedef struct rm_trainer rm_trainer;

/* A trainer of `model` (not owned; it must outlive the trainer) on volumes[0..n). Checks every volume and option. */
RM_API rm_status rm_trainer_create(rm_ctx *ctx, rm_model *model, const rm_train_options *opt,
                                   const rm_train_volume *volumes, int n, rm_trainer **out);
RM_API void rm_trainer_free(rm_trainer *t);
/* One step: a batch, forward, loss, backward, optimizer update. *loss receives the batch's loss before it. */
RM_API rm_status rm_trainer_step(rm_ctx *ctx, rm_trainer *t, float *loss);
RM_API int64_t rm_trainer_steps_done(const rm_trainer *t);
/* Writes the model, the optimizer's state, the step and the seed to one file (a training-form model file with the
 * optimizer's moments added), atomically. */
RM_API rm_status rm_trainer_save_checkpoint(rm_ctx *ctx, const rm_trainer *t, const char *path);
/* Restores a checkpoint of this trainer's model configuration and seed into the trainer and its model. */
RM_API rm_status rm_trainer_load_checkpoint(rm_ctx *ctx, rm_trainer *t, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_TRAINER_H */
