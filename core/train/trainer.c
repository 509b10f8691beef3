/* Training on in-memory volumes: batches of random or bucketed patches, augmentation, per-kind losses, optimizer,
 * checkpoints. Every random draw is a hash of (seed, step, sample, purpose): nothing depends on threads or on call
 * history. */
#include "model/model_impl.h"
#include "base/rng.h"
#include "train/augment.h"
#include "repmode/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* What each hash draw is for, so draws for different purposes never coincide. New purposes go at the end: the
 * values of the others are in every past run's draws. */
enum {
    DRAW_VOLUME, DRAW_CROP, DRAW_FLIP = DRAW_CROP + 3, DRAW_ROTATE, DRAW_SCALE, DRAW_SHIFT, DRAW_DROPOUT, DRAW_NOISE,
    DRAW_BUCKET, DRAW_BUCKET_CROP, DRAW_BLUR, DRAW_GAMMA, DRAW_CONTRAST, DRAW_BRIGHTNESS, DRAW_DEPTH_SHIFT,
    DRAW_ILLUMINATION, DRAW_ANGLE
};

/* A binary volume's crop positions by bucket (bucketed sampling). Positions are the crop starts (z, y, x) in
 * row-major order over grid; rows are runs of grid[2] positions along X. A 2D label has grid[0] = 1: its crop's
 * depth does not change the label and is drawn as for a random crop. */
typedef struct crop_buckets {
    uint8_t *bucket; /* per position its rm_bucket, in a byte: a large volume has about as many positions as voxels */
    int64_t *before; /* (rows + 1) x RM_N_BUCKETS: positions of each bucket in the rows before; the last is the total */
    int64_t grid[3];
} crop_buckets;

struct rm_trainer {
    rm_model *model;
    rm_optim *optim;
    rm_train_options opt;
    rm_train_volume *volumes;
    int n_volumes;
    int64_t step;
    int stepped; /* a step has filled the batch buffers */
    float *x, *target, *mask, *y, *dy; /* (batch, 1, patch) each; a 2D label fills the first Y·X of its sample */
    float *scratch;                    /* 3·Y·X: a 2D sample's logit map and its gradient; a blur's planes */
    uint8_t *inside;                   /* (patch): 1 where the sample being filled holds a voxel of its volume */
    rm_augment_draw *draws;            /* per sample */
    float *average;                    /* ema: the weight average, every float tensor of the model in order */
    size_t n_average;
    int swapped;                       /* the model holds the average (rm_trainer_swap_average) */
    int *tasks;
    int64_t (*layers)[2];              /* per sample: the patch layers [first, first + count) inside the volume */
    int *buckets;                      /* per sample: the rm_bucket its crop came from, -1 for a random crop */
    crop_buckets *crops;               /* per volume, bucketed sampling: its buckets (bucket NULL: random crops) */
    double best_score;                 /* the caller's best validation score, NaN when none */
};

rm_train_options rm_train_options_official(const int64_t patch[3])
{
    rm_train_options o = {.patch = {patch[0], patch[1], patch[2]}, .batch = 8, .seed = 0,
                          .optim = rm_optim_adam_official(), .schedule = rm_schedule_constant(),
                          .smoothing = RM_BINARY_LOSS_SMOOTHING, .augment = rm_augment_official(),
                          .sampling = RM_SAMPLING_RANDOM, .bucket_low = RM_BUCKET_LOW_DEFAULT};
    return o;
}

static uint64_t draw(const rm_trainer *t, int64_t sample, uint64_t purpose, uint64_t index)
{
    uint64_t h = rm_mix64(t->opt.seed + RM_GOLDEN);
    h = rm_mix64(h ^ (uint64_t)t->step);
    h = rm_mix64(h ^ ((uint64_t)sample << 8 | purpose));
    return rm_mix64(h ^ index);
}


/* ---- checks -------------------------------------------------------------------------------------------------- */

static rm_status check_options(rm_ctx *ctx, const rm_model *m, const rm_train_options *o)
{
    const int64_t unit = (int64_t)1 << m->cfg.levels;
    for (int a = 0; a < 3; a++)
        if (o->patch[a] < unit || o->patch[a] % unit != 0)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "train: patch size %lld along axis %d is not a positive multiple of "
                           "%lld", (long long)o->patch[a], a, (long long)unit);
    if (o->batch < 1 || o->batch > 256)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: batch %d is outside 1..256", o->batch);
    /* BatchNorm at the bottleneck normalizes each channel over batch x (patch / 2^levels) values: one value has no
     * variance to normalize by. */
    const int64_t deepest = (o->patch[0] / unit) * (o->patch[1] / unit) * (o->patch[2] / unit);
    if (o->batch * deepest < 2)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: a batch of %d patch(es) of %lld x %lld x %lld leaves one value "
                       "per channel at the bottleneck (the patch / 2^levels is 1 x 1 x 1), and BatchNorm needs two: "
                       "raise the batch or the patch", o->batch, (long long)o->patch[0], (long long)o->patch[1],
                       (long long)o->patch[2]);
    RM_TRY(rm_augment_validate(ctx, &o->augment));
    if (o->augment.rotations && o->patch[1] != o->patch[2])
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: in-plane rotations need a square patch, not %lld x %lld",
                       (long long)o->patch[1], (long long)o->patch[2]);
    if (!(o->smoothing >= 0.0f && o->smoothing <= 0.5f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: smoothing must be in [0, 0.5]");
    if (!(o->ema >= 0.0f && o->ema < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: the weight average's decay (ema) must be in [0, 1), not %g",
                       (double)o->ema);
    if (o->sampling != RM_SAMPLING_RANDOM && o->sampling != RM_SAMPLING_BUCKETS)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: unknown sampling %d", (int)o->sampling);
    if (o->sampling == RM_SAMPLING_BUCKETS && !(o->bucket_low > 0.0f && o->bucket_low < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: the low bucket's bound %g is outside (0, 1)",
                       (double)o->bucket_low);
    /* The buckets count a crop's voxels in 32 bits (see sat_at). */
    if (o->sampling == RM_SAMPLING_BUCKETS && o->patch[0] * o->patch[1] * o->patch[2] > (int64_t)UINT32_MAX)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: a patch of 2^32 voxels or more is too large for bucketed "
                       "sampling");
    if (m->cfg.in_channels != 1 || m->cfg.out_channels != 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: volumes train models of one input and one output channel");
    RM_TRY(rm_optim_config_validate(ctx, &o->optim));
    return rm_schedule_validate(ctx, &o->schedule);
}

static rm_status check_volumes(rm_ctx *ctx, const rm_model *m, const rm_train_volume *v, int n)
{
    if (!v || n < 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: no training volumes");
    for (int i = 0; i < n; i++) {
        if (!v[i].signal || !v[i].target)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "train: volume %d has no %s", i, v[i].signal ? "target" : "signal");
        if (v[i].task < 0 || v[i].task >= m->cfg.n_tasks)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "train: volume %d has task %d; the model has tasks 0..%d", i,
                           v[i].task, m->cfg.n_tasks - 1);
        if (m->only_task >= 0 && v[i].task != m->only_task)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "train: volume %d is of task '%s'; the model trains only '%s'", i,
                           m->cfg.tasks[v[i].task].name, m->cfg.tasks[m->only_task].name);
        for (int a = 0; a < 3; a++)
            if (v[i].size[a] < 1)
                return rm_fail(ctx, RM_ERR_SHAPE, "train: volume %d has size %lld along axis %d", i,
                               (long long)v[i].size[a], a);
        /* A task's labels are all 2D or all 3D, as its output_2d tells prediction. */
        const rm_task *task = &m->cfg.tasks[v[i].task];
        if (v[i].target_2d != 0 && v[i].target_2d != 1)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "train: volume %d has target_2d %d (0 or 1)", i, v[i].target_2d);
        if (v[i].target_2d != task->output_2d)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "train: volume %d has a %s target but task '%s' has %s labels", i,
                           v[i].target_2d ? "2D" : "3D", task->name, task->output_2d ? "2D" : "3D");
    }
    return RM_OK;
}

/* ---- buckets of crop positions (bucketed sampling) ----------------------------------------------------------- */

/* A summed-area table over a (d, h, w) grid holds at (z, y, x) of its (d + 1, h + 1, w + 1) cells the count of
 * voxels before z, y and x. It is uint32_t: sums wrap, but a box's count, a difference of them, comes out exact as
 * long as it is below 2^32 (a patch is far smaller), in half the memory of int64_t on a large volume. */
static int64_t sat_at(const int64_t n[3], int64_t z, int64_t y, int64_t x)
{
    return (z * (n[1] + 1) + y) * (n[2] + 1) + x;
}

/* The count in the box [lo, lo + ext) of a summed-area table over n. */
static uint32_t sat_box(const uint32_t *s, const int64_t n[3], const int64_t lo[3], const int64_t ext[3])
{
    const int64_t z0 = lo[0], y0 = lo[1], x0 = lo[2], z1 = z0 + ext[0], y1 = y0 + ext[1], x1 = x0 + ext[2];
    return s[sat_at(n, z1, y1, x1)] - s[sat_at(n, z0, y1, x1)] - s[sat_at(n, z1, y0, x1)] - s[sat_at(n, z1, y1, x0)] +
           s[sat_at(n, z0, y0, x1)] + s[sat_at(n, z0, y1, x0)] + s[sat_at(n, z1, y0, x0)] - s[sat_at(n, z0, y0, x0)];
}

/* Summed-area tables of the label's positive voxels and (with a mask) of its counted ones, into zeroed tables. */
static void label_sats(const rm_train_volume *v, const int64_t n[3], uint32_t *pos, uint32_t *in)
{
    const int64_t row = n[2] + 1, plane = (n[1] + 1) * row;
    for (int64_t z = 0; z < n[0]; z++)
        for (int64_t y = 0; y < n[1]; y++) {
            uint32_t run_pos = 0, run_in = 0; /* along the row so far */
            for (int64_t x = 0; x < n[2]; x++) {
                const int64_t i = (z * n[1] + y) * n[2] + x, c = sat_at(n, z + 1, y + 1, x + 1);
                const int counted = !v->mask || v->mask[i] > 0.5f;
                run_pos += (uint32_t)(counted && v->target[i] > 0.5f);
                pos[c] = run_pos + pos[c - row] + pos[c - plane] - pos[c - row - plane];
                if (in) {
                    run_in += (uint32_t)counted;
                    in[c] = run_in + in[c - row] + in[c - plane] - in[c - row - plane];
                }
            }
        }
}

static void crop_buckets_free(crop_buckets *cb)
{
    rm_dealloc(cb->bucket);
    rm_dealloc(cb->before);
}

/* Sorts every crop position of binary volume v (index i) into its bucket (see rm_sampling), in time linear in the
 * volume: one summed-area table pass, then O(1) per position. */
static rm_status make_buckets(rm_ctx *ctx, const rm_train_volume *v, int i, const int64_t P[3], float low,
                              crop_buckets *cb)
{
    const int64_t n[3] = {v->target_2d ? 1 : v->size[0], v->size[1], v->size[2]}; /* the label's grid */
    int64_t ext[3];                                                                 /* the crop inside the volume */
    for (int a = 0; a < 3; a++) {
        ext[a] = n[a] < P[a] ? n[a] : P[a];
        cb->grid[a] = n[a] - ext[a] + 1;
    }
    const int64_t rows = cb->grid[0] * cb->grid[1], cells = (n[0] + 1) * (n[1] + 1) * (n[2] + 1);
    uint32_t *pos = rm_calloc((size_t)cells, sizeof *pos), *in = v->mask ? rm_calloc((size_t)cells, sizeof *in) : NULL;
    cb->bucket = rm_malloc((size_t)(rows * cb->grid[2]));
    cb->before = rm_malloc((size_t)((rows + 1) * RM_N_BUCKETS) * sizeof *cb->before);
    if (!pos || (v->mask && !in) || !cb->bucket || !cb->before) {
        rm_dealloc(pos);
        rm_dealloc(in);
        return rm_fail(ctx, RM_ERR_NOMEM, "train: cannot allocate the sampling buckets of volume %d", i);
    }
    label_sats(v, n, pos, in);
    const uint32_t all = (uint32_t)(ext[0] * ext[1] * ext[2]); /* counted voxels of a crop without a mask */
    int64_t *before = cb->before;
    memset(before, 0, RM_N_BUCKETS * sizeof *before);
    for (int64_t r = 0; r < rows; r++) {
        int64_t *next = before + (r + 1) * RM_N_BUCKETS;
        memcpy(next, next - RM_N_BUCKETS, RM_N_BUCKETS * sizeof *next);
        for (int64_t x = 0; x < cb->grid[2]; x++) {
            const int64_t lo[3] = {r / cb->grid[1], r % cb->grid[1], x};
            const uint32_t p = sat_box(pos, n, lo, ext), c = in ? sat_box(in, n, lo, ext) : all;
            const rm_bucket k = p == 0 ? RM_BUCKET_NONE : (double)p <= (double)low * (double)c ? RM_BUCKET_LOW
                                                                                              : RM_BUCKET_HIGH;
            cb->bucket[r * cb->grid[2] + x] = (uint8_t)k;
            next[k]++;
        }
    }
    rm_dealloc(pos);
    rm_dealloc(in);
    return RM_OK;
}

/* Bucketed sampling: buckets for every binary volume; the others keep random crops (bucket NULL). */
static rm_status make_all_buckets(rm_ctx *ctx, rm_trainer *t)
{
    t->crops = rm_calloc((size_t)t->n_volumes, sizeof *t->crops);
    if (!t->crops)
        return rm_fail(ctx, RM_ERR_NOMEM, "train: out of memory");
    for (int i = 0; i < t->n_volumes; i++)
        if (t->model->cfg.tasks[t->volumes[i].task].kind == RM_TASK_BINARY)
            RM_TRY(make_buckets(ctx, &t->volumes[i], i, t->opt.patch, t->opt.bucket_low, &t->crops[i]));
    return RM_OK;
}

/* ---- life cycle ---------------------------------------------------------------------------------------------- */

/* ---- the weight average --------------------------------------------------------------------------------------- */

/* Calls f(average, tensor, count) over every float tensor of the model (parameters and running statistics), the
 * average's floats in the same order. */
static void each_averaged(rm_trainer *t, void (*f)(float *, float *, int64_t, float), float w)
{
    float *a = t->average;
    for (size_t i = 0; i < rm_model_n_params(t->model); i++) {
        rm_param *p = rm_model_param(t->model, i);
        if (p->data) {
            f(a, p->data, p->numel, w);
            a += p->numel;
        }
    }
}

static void copy_into(float *a, float *theta, int64_t n, float w)
{
    (void)w;
    memcpy(a, theta, (size_t)n * sizeof *a);
}

static void move_towards(float *a, float *theta, int64_t n, float w)
{
    for (int64_t j = 0; j < n; j++)
        a[j] += w * (theta[j] - a[j]); /* θ = a leaves a's bits: a tensor that does not train keeps them */
}

static void exchange(float *a, float *theta, int64_t n, float w)
{
    (void)w;
    for (int64_t j = 0; j < n; j++) {
        const float keep = a[j];
        a[j] = theta[j];
        theta[j] = keep;
    }
}

/* The average starts as the model's weights. */
static rm_status start_average(rm_ctx *ctx, rm_trainer *t)
{
    size_t n = 0;
    for (size_t i = 0; i < rm_model_n_params(t->model); i++)
        n += rm_model_param(t->model, i)->data ? (size_t)rm_model_param(t->model, i)->numel : 0;
    t->average = rm_malloc(n * sizeof(float));
    if (!t->average)
        return rm_fail(ctx, RM_ERR_NOMEM, "train: cannot allocate the weight average (%zu floats)", n);
    t->n_average = n;
    each_averaged(t, copy_into, 0.0f);
    return RM_OK;
}

/* After step n: a ← a + (1 − d_n)·(θ − a), d_n = min(d, (1 + n)/(10 + n)). */
static void update_average(rm_trainer *t)
{
    const double n = (double)t->step;
    each_averaged(t, move_towards, (float)(1.0 - fmin((double)t->opt.ema, (1.0 + n) / (10.0 + n))));
}

rm_status rm_trainer_swap_average(rm_ctx *ctx, rm_trainer *t)
{
    if (!t || !t->average)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: %s", t ? "this run keeps no weight average (ema 0)" :
                       "NULL argument");
    each_averaged(t, exchange, 0.0f);
    t->swapped = !t->swapped;
    return RM_OK;
}

int rm_trainer_average_swapped(const rm_trainer *t) { return t->swapped; }

rm_status rm_trainer_create(rm_ctx *ctx, rm_model *model, const rm_train_options *opt,
                            const rm_train_volume *volumes, int n, rm_trainer **out)
{
    if (!model || !opt || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: NULL argument");
    *out = NULL;
    RM_TRY(check_options(ctx, model, opt));
    RM_TRY(check_volumes(ctx, model, volumes, n));
    int binary = 0;
    for (int i = 0; i < n; i++)
        binary += model->cfg.tasks[volumes[i].task].kind == RM_TASK_BINARY;
    if (opt->sampling == RM_SAMPLING_BUCKETS && binary == 0)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: bucketed sampling needs a volume of a binary task; none of the "
                       "%d has one", n);
    rm_trainer *t = rm_calloc(1, sizeof *t);
    if (!t)
        return rm_fail(ctx, RM_ERR_NOMEM, "train: out of memory");
    t->model = model;
    t->opt = *opt;
    t->n_volumes = n;
    t->best_score = NAN;
    const size_t numel = (size_t)(opt->batch * opt->patch[0] * opt->patch[1] * opt->patch[2]);
    t->volumes = rm_malloc((size_t)n * sizeof *t->volumes);
    t->x = rm_malloc(numel * sizeof(float));
    t->target = rm_malloc(numel * sizeof(float));
    t->mask = rm_malloc(numel * sizeof(float));
    t->y = rm_malloc(numel * sizeof(float));
    t->dy = rm_malloc(numel * sizeof(float));
    t->scratch = rm_malloc((size_t)(3 * opt->patch[1] * opt->patch[2]) * sizeof(float));
    t->inside = rm_malloc(numel / (size_t)opt->batch);
    t->draws = rm_malloc((size_t)opt->batch * sizeof *t->draws);
    t->tasks = rm_malloc((size_t)opt->batch * sizeof *t->tasks);
    t->layers = rm_malloc((size_t)opt->batch * sizeof *t->layers);
    t->buckets = rm_malloc((size_t)opt->batch * sizeof *t->buckets);
    rm_status s = RM_OK;
    if (!t->volumes || !t->x || !t->target || !t->mask || !t->y || !t->dy || !t->scratch || !t->inside ||
        !t->draws || !t->tasks || !t->layers || !t->buckets)
        s = rm_fail(ctx, RM_ERR_NOMEM, "train: cannot allocate a batch of %zu voxels", numel);
    else
        memcpy(t->volumes, volumes, (size_t)n * sizeof *volumes);
    if (s == RM_OK && opt->ema > 0.0f)
        s = start_average(ctx, t);
    if (s == RM_OK && opt->sampling == RM_SAMPLING_BUCKETS)
        s = make_all_buckets(ctx, t);
    if (s == RM_OK)
        s = rm_optim_create(ctx, model, &opt->optim, &t->optim);
    if (s != RM_OK) {
        rm_trainer_free(t);
        return s;
    }
    *out = t;
    return RM_OK;
}

void rm_trainer_free(rm_trainer *t)
{
    if (!t)
        return;
    rm_optim_free(t->optim);
    rm_dealloc(t->volumes);
    rm_dealloc(t->x);
    rm_dealloc(t->target);
    rm_dealloc(t->mask);
    rm_dealloc(t->y);
    rm_dealloc(t->dy);
    rm_dealloc(t->scratch);
    rm_dealloc(t->inside);
    rm_dealloc(t->draws);
    rm_dealloc(t->average);
    rm_dealloc(t->tasks);
    rm_dealloc(t->layers);
    rm_dealloc(t->buckets);
    for (int i = 0; t->crops && i < t->n_volumes; i++)
        crop_buckets_free(&t->crops[i]);
    rm_dealloc(t->crops);
    rm_dealloc(t);
}

int64_t rm_trainer_steps_done(const rm_trainer *t) { return t->step; }

void rm_trainer_set_best_score(rm_trainer *t, double score) { t->best_score = isfinite(score) ? score : NAN; }

double rm_trainer_best_score(const rm_trainer *t) { return t->best_score; }

rm_train_batch rm_trainer_last_batch(const rm_trainer *t)
{
    rm_train_batch b = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (t && t->stepped)
        b = (rm_train_batch){t->x, t->target, t->mask, t->y, t->tasks, t->buckets, t->draws};
    return b;
}

/* ---- batches ------------------------------------------------------------------------------------------------- */

/* Patch pixel (y, x) → volume pixel: rotate in-plane (square patch), flip, then offset by the crop. */
static void in_plane(const int64_t P[3], int turns, const int flip[3], const int64_t start[3], int64_t y, int64_t x,
                     int64_t *sy, int64_t *sx)
{
    int64_t r = y, c = x;
    for (int k = 0; k < turns; k++) {
        const int64_t nr = c, nc = P[1] - 1 - r;
        r = nr;
        c = nc;
    }
    *sy = start[1] + (flip[1] ? P[1] - 1 - r : r);
    *sx = start[2] + (flip[2] ? P[2] - 1 - c : c);
}

/* Bucketed sampling of sample b: a bucket uniformly among the volume's non-empty ones, a crop uniformly among its
 * positions, found by rank (the row by bisection on the counts before each row, then the row scanned). Sets the
 * crop's start in plane, and in depth for a 3D label. Returns the bucket. */
static int bucketed_crop(const rm_trainer *t, const rm_train_volume *v, const crop_buckets *cb, int64_t b,
                         int64_t start[3])
{
    const int64_t rows = cb->grid[0] * cb->grid[1], *total = cb->before + rows * RM_N_BUCKETS;
    int nonempty = 0, k = 0;
    for (int i = 0; i < RM_N_BUCKETS; i++)
        nonempty += total[i] > 0;
    for (uint64_t pick = draw(t, b, DRAW_BUCKET, 0) % (uint64_t)nonempty;; k++)
        if (total[k] > 0 && pick-- == 0)
            break;
    const int64_t rank = (int64_t)(draw(t, b, DRAW_BUCKET_CROP, 0) % (uint64_t)total[k]);
    int64_t lo = 0, hi = rows; /* the row holds the rank: before[lo] <= rank < before[hi] */
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (cb->before[mid * RM_N_BUCKETS + k] <= rank)
            lo = mid;
        else
            hi = mid;
    }
    const uint8_t *row = cb->bucket + lo * cb->grid[2];
    int64_t x = 0;
    for (int64_t left = rank - cb->before[lo * RM_N_BUCKETS + k];; x++)
        if (row[x] == k && left-- == 0)
            break;
    if (!v->target_2d) /* a 2D label's crop keeps its random depth */
        start[0] = lo / cb->grid[1];
    start[1] = lo % cb->grid[1];
    start[2] = x;
    return k;
}

/* Uniform in [−1, 1). */
static double signed_uniform(const rm_trainer *t, int64_t b, uint64_t purpose)
{
    return 2.0 * rm_u01d(draw(t, b, purpose, 0)) - 1.0;
}

/* What sample b's augmentation draws (rm_augment_draw); the crop's random values are drawn by fill_sample. */
static rm_augment_draw draw_augment(const rm_trainer *t, int64_t b, const rm_train_volume *v)
{
    const rm_augment *a = &t->opt.augment;
    rm_augment_draw d = {.turns = a->rotations ? (int)(draw(t, b, DRAW_ROTATE, 0) & 3) : 0, .gamma = 1.0f,
                         .contrast = 1.0f};
    for (int k = 0; k < 3; k++)
        d.flips[k] = a->flips ? (int)(draw(t, b, DRAW_FLIP, (uint64_t)k) & 1) : 0;
    d.scale = (float)(1.0 + a->jitter * signed_uniform(t, b, DRAW_SCALE));
    d.shift = (float)(a->jitter * signed_uniform(t, b, DRAW_SHIFT));
    if (a->blur > 0.0f)
        d.blur = (float)(a->blur * rm_u01d(draw(t, b, DRAW_BLUR, 0)));
    if (a->gamma > 0.0f)
        d.gamma = (float)pow(1.0 + a->gamma, signed_uniform(t, b, DRAW_GAMMA));
    if (a->contrast > 0.0f)
        d.contrast = (float)(1.0 + a->contrast * signed_uniform(t, b, DRAW_CONTRAST));
    if (a->illumination > 0.0f) {
        d.illumination = (float)(a->illumination * rm_u01d(draw(t, b, DRAW_ILLUMINATION, 0)));
        d.angle = (float)(6.283185307179586 * rm_u01d(draw(t, b, DRAW_ANGLE, 0)));
    }
    if (a->brightness > 0.0f)
        d.brightness = (float)(a->brightness * signed_uniform(t, b, DRAW_BRIGHTNESS));
    if (a->depth_shift > 0 && v->target_2d)
        d.depth_shift = (int64_t)(draw(t, b, DRAW_DEPTH_SHIFT, 0) % (uint64_t)(2 * a->depth_shift + 1)) -
                        a->depth_shift;
    return d;
}

/* Sample b of the batch: a random (or bucketed) crop of a random volume, flipped and rotated, zero (and masked out)
 * beyond the volume, its input augmented (rm_augment). A 2D label takes the same in-plane crop. */
static void fill_sample(rm_trainer *t, int64_t b)
{
    const int64_t *P = t->opt.patch, pvol = P[0] * P[1] * P[2];
    const uint64_t index = draw(t, b, DRAW_VOLUME, 0) % (uint64_t)t->n_volumes;
    const rm_train_volume *v = &t->volumes[index];
    const rm_augment_draw d = t->draws[b] = draw_augment(t, b, v);
    int64_t start[3];
    for (int a = 0; a < 3; a++) {
        const int64_t room = v->size[a] - P[a];
        start[a] = room > 0 ? (int64_t)(draw(t, b, DRAW_CROP + (uint64_t)a, 0) % (uint64_t)(room + 1)) : 0;
    }
    const crop_buckets *cb = t->crops ? &t->crops[index] : NULL;
    t->buckets[b] = cb && cb->bucket ? bucketed_crop(t, v, cb, b, start) : -1;
    float *x = t->x + b * pvol, *tg = t->target + b * pvol, *mk = t->mask + b * pvol;
    t->tasks[b] = v->task;
    /* The patch layers that hold volume layers: all of them, or (a shallower volume) the first or, flipped, the
     * last size[0]. A 2D map is the mean over these. */
    const int64_t inside = v->size[0] < P[0] ? v->size[0] : P[0];
    t->layers[b][0] = d.flips[0] ? P[0] - inside : 0;
    t->layers[b][1] = inside;
    if (v->target_2d)
        for (int64_t y = 0; y < P[1]; y++)
            for (int64_t xx = 0; xx < P[2]; xx++) {
                int64_t sy, sx;
                in_plane(P, d.turns, d.flips, start, y, xx, &sy, &sx);
                const int64_t i = y * P[2] + xx, si = sy * v->size[2] + sx;
                const int out = sy >= v->size[1] || sx >= v->size[2];
                tg[i] = out ? 0.0f : v->target[si];
                mk[i] = out ? 0.0f : v->mask ? v->mask[si] : 1.0f;
            }
    for (int64_t z = 0; z < P[0]; z++)
        for (int64_t y = 0; y < P[1]; y++)
            for (int64_t xx = 0; xx < P[2]; xx++) {
                int64_t sy, sx;
                in_plane(P, d.turns, d.flips, start, y, xx, &sy, &sx);
                int64_t sz = start[0] + (d.flips[0] ? P[0] - 1 - z : z);
                const int64_t i = (z * P[1] + y) * P[2] + xx;
                t->inside[i] = sz < v->size[0] && sy < v->size[1] && sx < v->size[2];
                if (!t->inside[i]) {
                    x[i] = 0.0f;
                    if (!v->target_2d)
                        tg[i] = mk[i] = 0.0f;
                    continue;
                }
                if (!v->target_2d) {
                    const int64_t si = (sz * v->size[1] + sy) * v->size[2] + sx;
                    tg[i] = v->target[si];
                    mk[i] = v->mask ? v->mask[si] : 1.0f;
                }
                sz -= d.depth_shift;
                sz = sz < 0 ? 0 : sz >= v->size[0] ? v->size[0] - 1 : sz;
                x[i] = v->signal[(sz * v->size[1] + sy) * v->size[2] + sx] * d.scale + d.shift;
            }
    rm_augment_intensity(&d, P, t->inside, x, t->scratch);
    if (t->opt.augment.noise > 0.0f)
        for (int64_t i = 0; i < pvol; i++)
            if (t->inside[i]) {
                /* Box–Muller from two hash draws per voxel. */
                const uint64_t h = draw(t, b, DRAW_NOISE, (uint64_t)i);
                const double u1 = ((double)(h >> 40) + 0.5) * 0x1p-24, u2 = (double)(h & 0xffffff) * 0x1p-24;
                x[i] += t->opt.augment.noise * (float)rm_box_muller(u1, u2);
            }
}

/* The loss of the task's kind on logits y, and dloss times its gradient into dy (NULL: not wanted). */
static rm_status kind_loss(rm_ctx *ctx, rm_task_kind kind, float smoothing, const rm_tensor *y, const rm_tensor *tg,
                           const rm_tensor *mk, float dloss, float *loss, rm_tensor *dy)
{
    if (kind == RM_TASK_BINARY) {
        RM_TRY(rm_binary_loss_forward(ctx, y, tg, mk, smoothing, loss, NULL, NULL));
        return dy ? rm_binary_loss_backward(ctx, y, tg, mk, smoothing, dloss, dy) : RM_OK;
    }
    RM_TRY(rm_masked_mse_forward(ctx, y, tg, mk, loss));
    return dy ? rm_masked_mse_backward(ctx, y, tg, mk, dloss, dy) : RM_OK;
}

/* rm_train_sample_loss with scratch for a 2D label's map and its gradient (2·H·W floats). */
static rm_status sample_loss(rm_ctx *ctx, rm_task_kind kind, float smoothing, const rm_tensor *logits,
                             const rm_tensor *target, const rm_tensor *mask, float dloss, float *loss,
                             rm_tensor *dlogits, float *scratch)
{
    if (!(target->ne[2] == 1 && logits->ne[2] > 1))
        return kind_loss(ctx, kind, smoothing, logits, target, mask, dloss, loss, dlogits);
    /* A 2D label: the loss of the logits' mean over depth, whose gradient spreads evenly over depth. */
    const int64_t *n = logits->ne, plane = n[3] * n[4];
    rm_tensor map = rm_tensor_5d(scratch, n[0], n[1], 1, n[3], n[4]);
    rm_tensor dmap = rm_tensor_5d(scratch + n[0] * n[1] * plane, n[0], n[1], 1, n[3], n[4]);
    if (dlogits)
        RM_TRY(rm_check_shape(ctx, dlogits, "train loss: dlogits", logits->ne));
    RM_TRY(rm_depth_mean_forward(ctx, logits, &map));
    RM_TRY(kind_loss(ctx, kind, smoothing, &map, target, mask, dloss, loss, dlogits ? &dmap : NULL));
    return dlogits ? rm_depth_mean_backward(ctx, &dmap, dlogits) : RM_OK;
}

rm_status rm_train_sample_loss(rm_ctx *ctx, rm_task_kind kind, float smoothing, const rm_tensor *logits,
                               const rm_tensor *target, const rm_tensor *mask, float dloss, float *loss,
                               rm_tensor *dlogits)
{
    RM_TRY(rm_check_tensor(ctx, logits, "train loss: logits"));
    RM_TRY(rm_check_tensor(ctx, target, "train loss: target"));
    if (!loss)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train loss: loss is NULL");
    if (kind != RM_TASK_REGRESSION && kind != RM_TASK_BINARY)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train loss: unknown task kind %d", (int)kind);
    const int64_t *n = logits->ne;
    const int flat = target->ne[2] == 1 && n[2] > 1;
    float *scratch = flat ? rm_malloc((size_t)(2 * n[0] * n[1] * n[3] * n[4]) * sizeof(float)) : NULL;
    if (flat && !scratch)
        return rm_fail(ctx, RM_ERR_NOMEM, "train loss: out of memory");
    const rm_status s = sample_loss(ctx, kind, smoothing, logits, target, mask, dloss, loss, dlogits, scratch);
    rm_dealloc(scratch);
    return s;
}

/* The batch's loss (mean over samples of each sample's loss by its task's kind) and its gradient into dy. */
static rm_status batch_loss(rm_ctx *ctx, rm_trainer *t, float *loss)
{
    const int64_t *P = t->opt.patch, plane = P[1] * P[2], pvol = P[0] * plane;
    const float share = 1.0f / (float)t->opt.batch;
    double total = 0.0;
    for (int64_t b = 0; b < t->opt.batch; b++) {
        const rm_task *task = &t->model->cfg.tasks[t->tasks[b]];
        /* A 2D label: the logits of the layers inside the volume make its map; the padding layers get no gradient. */
        const int64_t first = task->output_2d ? t->layers[b][0] : 0, depth = task->output_2d ? t->layers[b][1] : P[0];
        const int64_t label_depth = task->output_2d ? 1 : P[0];
        if (task->output_2d)
            memset(t->dy + b * pvol, 0, (size_t)pvol * sizeof(float));
        rm_tensor y = rm_tensor_5d(t->y + b * pvol + first * plane, 1, 1, depth, P[1], P[2]);
        rm_tensor dy = rm_tensor_5d(t->dy + b * pvol + first * plane, 1, 1, depth, P[1], P[2]);
        rm_tensor tg = rm_tensor_5d(t->target + b * pvol, 1, 1, label_depth, P[1], P[2]);
        rm_tensor mk = rm_tensor_5d(t->mask + b * pvol, 1, 1, label_depth, P[1], P[2]);
        float l = 0.0f;
        RM_TRY(sample_loss(ctx, task->kind, t->opt.smoothing, &y, &tg, &mk, share, &l, &dy, t->scratch));
        total += l;
    }
    *loss = (float)(total / t->opt.batch);
    return RM_OK;
}

rm_status rm_trainer_step(rm_ctx *ctx, rm_trainer *t, float *loss)
{
    if (!t || !loss)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: NULL argument");
    if (t->swapped)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: the model holds the weight average; swap it back to train");
    const int64_t *P = t->opt.patch;
    for (int64_t b = 0; b < t->opt.batch; b++)
        fill_sample(t, b);
    rm_tensor x = rm_tensor_5d(t->x, t->opt.batch, 1, P[0], P[1], P[2]);
    rm_tensor y = rm_tensor_5d(t->y, t->opt.batch, 1, P[0], P[1], P[2]);
    rm_tensor dy = rm_tensor_5d(t->dy, t->opt.batch, 1, P[0], P[1], P[2]);
    RM_TRY(rm_model_forward_train(ctx, t->model, &x, t->tasks, draw(t, 0, DRAW_DROPOUT, 0), &y));
    RM_TRY(batch_loss(ctx, t, loss));
    t->stepped = 1;
    RM_TRY(rm_model_backward(ctx, t->model, &dy));
    RM_TRY(rm_optim_step(ctx, t->optim, rm_schedule_lr(&t->opt.schedule, t->opt.optim.lr, t->step)));
    t->step++;
    if (t->average)
        update_average(t);
    return RM_OK;
}

/* ---- checkpoints --------------------------------------------------------------------------------------------- */

rm_status rm_trainer_save_checkpoint(rm_ctx *ctx, const rm_trainer *t, const char *path)
{
    if (!t || !path)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: NULL argument");
    if (t->swapped)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: the model holds the weight average; swap it back to save a "
                       "checkpoint");
    size_t n_m = 0, n_v = 0;
    const float *m = rm_optim_moments(t->optim, RM_OPTIM_EXP_AVG, &n_m);
    const float *v = rm_optim_moments(t->optim, RM_OPTIM_EXP_AVG_SQ, &n_v);
    return rm_checkpoint_write(ctx, t->model, path, m, v, n_m, t->average, t->n_average, t->step, t->opt.seed,
                               t->best_score);
}

rm_status rm_trainer_load_checkpoint(rm_ctx *ctx, rm_trainer *t, const char *path)
{
    if (!t || !path)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: NULL argument");
    if (t->swapped)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train: the model holds the weight average; swap it back to load a "
                       "checkpoint");
    size_t n = 0;
    float *m = rm_optim_moments(t->optim, RM_OPTIM_EXP_AVG, &n);
    float *v = rm_optim_moments(t->optim, RM_OPTIM_EXP_AVG_SQ, &n);
    int64_t step = 0;
    double best = NAN;
    RM_TRY(rm_checkpoint_read(ctx, path, t->model, m, v, n, t->average, t->n_average, t->opt.seed, &step, &best));
    RM_TRY(rm_optim_set_step(ctx, t->optim, step));
    t->step = step;
    t->best_score = best;
    return RM_OK;
}
