/* Sliding-window prediction of volumes of any size (docs/network.md §6).
 *
 * Patches of the configured size cover the volume with the given overlap (official: 50%), the last window on each
 * axis pulled back to touch the border; patch predictions are blended with Gaussian weights (σ = patch/8, centred
 * at patch/2, peak 1) or constant ones. The window grid is anchored to the whole volume, so any output region
 * computed alone equals the same region of a whole-volume run bit for bit: every voxel sums the same windows in the
 * same order. The input is read through a callback, one window at a time, so callers can stream volumes far larger
 * than memory. A volume shorter than the patch along an axis is predicted with one window of that length rounded up
 * to the network's multiple, zero-padded, and cropped back.
 *
 * Threads: predicting only reads the deploy form (model.h): threads may predict with one deploy form at once, each
 * with its own context and cache. The callbacks are called on the calling thread, in window order.
 */
#ifndef REPMODE_PREDICT_H
#define REPMODE_PREDICT_H

#include "repmode/core.h"
#include "repmode/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append only. */
typedef enum rm_blend {
    RM_BLEND_GAUSSIAN = 0, /* exp(-Σ (x - P/2)² / (2 (P/8)²)) over the patch, as the official predict() */
    RM_BLEND_CONSTANT = 1, /* every voxel of every window weighs 1 */
} rm_blend;

typedef struct rm_window_params {
    int64_t patch[3]; /* Z, Y, X; multiples of 2^levels of the network */
    double overlap;   /* fraction of the patch shared by neighbours, in [0, 1): stride = ceil(patch·(1 - overlap)) */
    rm_blend blend;
    int tta; /* 1: test-time augmentation, each window the mean of the network over the 8 in-plane flips and
              * rotations of its input, turned back (docs/network.md §6.4); 8 times the work. 0: off */
} rm_window_params;

/* The official scheme for a patch: 50% overlap, Gaussian blending, no test-time augmentation. Pure; nothing is
 * checked here. */
RM_API rm_window_params rm_window_params_make(const int64_t patch[3]);

/* Window starts along one axis of length `len` for window length `window` (≤ len): k·stride, the last pulled back
 * to len - window. Writes at most `max` starts (starts may be NULL when max is 0); returns how many windows there
 * are. Pure: never fails. */
RM_API int64_t rm_window_starts(int64_t len, int64_t window, double overlap, int64_t *starts, int64_t max);

/* Fills `w` (patch[0]·patch[1]·patch[2] floats, the caller's) with the blending weights of one window. Pure. */
RM_API void rm_window_weights(rm_blend blend, const int64_t patch[3], float *w);

/* Reads voxels [start, start + size) of the (single-channel) input volume into buf, Z-major, X fastest. Called
 * only for regions inside the volume. Returns 0 on success; non-zero stops the prediction with RM_ERR_IO. */
typedef int (*rm_read_fn)(void *user, const int64_t start[3], const int64_t size[3], float *buf);
/* Reports the fraction of windows done; a non-zero return stops the prediction with RM_ERR_CANCELLED. */
typedef int (*rm_progress_fn)(void *user, double fraction);

/* The input region that predicting output voxels [out_start, out_start + out_size) reads: the bounding box, inside
 * the volume, of every window that reaches into the output region (the output plus the windows' halo). Streaming
 * callers ask their source for exactly this region. Only reads d.
 * RM_ERR_ARGUMENT: a NULL pointer, a model with more than one input channel, overlap outside [0, 1), an unknown
 * blending, a patch size that is not a positive multiple of 2^levels. RM_ERR_SHAPE: a volume size below 1, an
 * output region outside the volume. RM_ERR_NOMEM. */
RM_API rm_status rm_predict_input_region(rm_ctx *ctx, const rm_deploy *d, const rm_window_params *p,
                                         const int64_t volume[3], const int64_t out_start[3],
                                         const int64_t out_size[3], int64_t in_start[3], int64_t in_size[3]);

/* Predicts output voxels [out_start, out_start + out_size) of a volume of size `volume` with the deploy form d,
 * into out (out_channels × out_size, Z-major). progress may be NULL. The window and region buffers are the
 * context's working memory, kept for the next call; the callbacks must not predict with the same context. out is
 * written only on success. Statuses: those of rm_predict_input_region (RM_ERR_ARGUMENT, also for read or out NULL;
 * RM_ERR_SHAPE; RM_ERR_NOMEM) and of rm_deploy_forward, RM_ERR_IO when `read` returns non-zero, RM_ERR_CANCELLED
 * when `progress` does. */
RM_API rm_status rm_predict_region(rm_ctx *ctx, const rm_deploy *d, const rm_window_params *p, const int64_t volume[3],
                                   rm_read_fn read, void *read_user, const int64_t out_start[3],
                                   const int64_t out_size[3], float *out, rm_progress_fn progress,
                                   void *progress_user);

/* Window predictions kept from one call of rm_predict_region_cached to the next, so that regions predicted one
 * after another (the pieces of a streamed output) do not recompute the windows that straddle their borders. After
 * each call the cache holds only the windows of that call that reach outside its output region: about two layers
 * of windows around the region, never the whole volume. The results are bit for bit those without a cache. The
 * cache knows the network's weights (any change of them, by rm_deploy_set_task or another deploy form, even one at
 * a freed one's address), the window parameters and the volume size and empties itself when they change; the
 * caller clears it when the input's voxels change. */
typedef struct rm_window_cache rm_window_cache;

/* A cache that holds at most max_bytes of predictions; past that, windows are computed again. NULL: no memory.
 * The cache is the caller's: free it with rm_window_cache_free. It owns copies of the predictions and keeps no
 * pointer to a deploy form. Free and clear take NULL. */
RM_API rm_window_cache *rm_window_cache_create(size_t max_bytes);
RM_API void rm_window_cache_free(rm_window_cache *cache);
RM_API void rm_window_cache_clear(rm_window_cache *cache);
/* Bytes of window predictions held (0 for NULL). */
RM_API size_t rm_window_cache_bytes(const rm_window_cache *cache);

/* rm_predict_region, taking windows from `cache` when they are there and leaving there those that the next region
 * may need. cache NULL: no cache. A window the cache has no room or memory for is only computed again, never an
 * error. Statuses as rm_predict_region's (RM_ERR_ARGUMENT, RM_ERR_SHAPE, RM_ERR_NOMEM, RM_ERR_IO,
 * RM_ERR_CANCELLED); a failed call empties the cache. */
RM_API rm_status rm_predict_region_cached(rm_ctx *ctx, const rm_deploy *d, const rm_window_params *p,
                                          const int64_t volume[3], rm_read_fn read, void *read_user,
                                          const int64_t out_start[3], const int64_t out_size[3], float *out,
                                          rm_progress_fn progress, void *progress_user, rm_window_cache *cache);

/* ---- Monte Carlo dropout: uncertainty ------------------------------------------------------------------------ */

/* N passes of rm_deploy_set_mc (model.h), their mean and per-voxel standard deviation. */
typedef struct rm_mc_params {
    int64_t samples;   /* N ≥ 1 */
    uint64_t seed;     /* same seed, same bytes */
    float dropout;     /* p in [0, 1) on the input of every MoDE block */
    float gate_noise;  /* σ_g ≥ 0 on every gate logit; needs a training-form model */
    int probabilities; /* 1: the passes' sigmoids are averaged (a binary task's probabilities), 0: their outputs */
    int depth_mean;    /* 1: each pass is first averaged over depth (a task with 2D labels, before the sigmoid) */
} rm_mc_params;

/* Predicts output voxels [out_start, out_start + out_size) as rm_predict_region does, N times, pass k with
 * rm_deploy_set_mc(d, model, task, {dropout, gate_noise, seed, k}), and writes the passes' mean into `mean` and
 * their standard deviation (over N, not N − 1: 0 for one pass) into `std` (NULL: not wanted), each out_channels ×
 * out_size, or out_channels × 1 × out_size[1] × out_size[2] with depth_mean (then the region must span the whole
 * depth of the volume). model NULL: d is a deploy form of `task` from a deploy-form file, and gate_noise must be 0. d is left the
 * plain deploy form of `task` (merged again from model when there is one). Any region computed alone equals the
 * same region of the whole volume bit for bit, as for rm_predict_region. Statuses: RM_ERR_ARGUMENT for d, mc or mean
 * NULL and for fewer than 1 sample, rm_deploy_set_mc's and rm_predict_region's; RM_ERR_NOMEM for the statistics (two
 * doubles and a float per output voxel). */
RM_API rm_status rm_predict_region_mc(rm_ctx *ctx, rm_deploy *d, const rm_model *model, int task,
                                      const rm_window_params *p, const rm_mc_params *mc, const int64_t volume[3],
                                      rm_read_fn read, void *read_user, const int64_t out_start[3],
                                      const int64_t out_size[3], float *mean, float *std, rm_progress_fn progress,
                                      void *progress_user);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_PREDICT_H */
