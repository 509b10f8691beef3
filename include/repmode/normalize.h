/* Per-volume intensity normalization (docs/network.md §1.2, docs/model-file.md §2.5).
 *
 * A network sees its input normalized over the whole volume, the same way in training and inference:
 *   - z-score (official): (x - mean) / sd, mean and population sd in double, summed in buffer order. A constant
 *     volume is only centred (sd taken as 1).
 *   - percentile: clip((x - lo) / (hi - lo), 0, 1), lo and hi the volume's `low` and `high` percentiles (default 1
 *     and 99), exact order statistics interpolated linearly between the closest ranks as numpy's default
 *     ('linear') method computes them in double. When hi == lo the volume has no spread between its bounds and
 *     every voxel becomes 0. Percentiles need finite intensities: NaN and infinities are refused.
 *
 * The method is a model's (rm_model_normalization); the parameters are a volume's (rm_normalization_compute). The
 * applied transform is one formula for every consumer, (x - offset) · scale, clipped to [0, 1] when `clip`, so the
 * command line, the ITK filter and a streamed computation give the same voxels bit for bit.
 */
#ifndef REPMODE_NORMALIZE_H
#define REPMODE_NORMALIZE_H

#include <string.h>

#include "repmode/core.h"
#include "repmode/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append only: model files name them ("zscore", "percentile"). */
typedef enum rm_norm_method {
    RM_NORM_ZSCORE = 0,
    RM_NORM_PERCENTILE = 1,
} rm_norm_method;

/* How a model normalizes its input. JSON: {"method":"zscore"} or {"method":"percentile","low":1,"high":99}. */
typedef struct rm_normalization {
    rm_norm_method method;
    double low, high; /* percentile: bounds in percent, 0 <= low < high <= 100 (unused by zscore) */
} rm_normalization;

/* The transform of one volume: y = (x - offset) · scale, then clipped to [0, 1] when clip. */
typedef struct rm_norm_params {
    double offset, scale;
    int clip;
} rm_norm_params;

/* The two methods as values (percentile's bounds are not checked here). Pure; thread safe. */
RM_API rm_normalization rm_normalization_zscore(void);
RM_API rm_normalization rm_normalization_percentile(double low, double high);
/* Checks the method and the bounds; the message names the field that is wrong. RM_ERR_ARGUMENT (norm NULL too) is
 * the only failure. */
RM_API rm_status rm_normalization_validate(rm_ctx *ctx, const rm_normalization *norm);
/* Reads the JSON text of repmode.normalization: an object with "method" ("zscore" or "percentile") and, for
 * percentile, optional "low" and "high" (default 1 and 99). Unknown fields and bad values are refused by name,
 * with RM_ERR_ARGUMENT (json or out NULL, text that is not a JSON object, a parse that runs out of memory too);
 * *out is written only on success. */
RM_API rm_status rm_normalization_parse(rm_ctx *ctx, const char *json, rm_normalization *out);
/* Compact JSON text of a normalization; NULL when out of memory, for norm NULL or an unknown method. The text is
 * the caller's: release it with rm_free. */
RM_API char *rm_normalization_json(const rm_normalization *norm);

/* The normalization a model (training form) or a deploy form was trained with: its file's repmode.normalization,
 * z-score when the file gives none. Only reads the model. RM_ERR_ARGUMENT: model, deploy or out NULL; also when
 * parsing the text runs out of memory (the JSON parser does not tell; the text itself was checked when it was set
 * or loaded). */
RM_API rm_status rm_model_normalization(rm_ctx *ctx, const rm_model *model, rm_normalization *out);
RM_API rm_status rm_deploy_normalization(rm_ctx *ctx, const rm_deploy *deploy, rm_normalization *out);
/* Records the normalization a model is trained with; its files carry it. RM_ERR_ARGUMENT: model NULL, or norm
 * refused by rm_normalization_validate; the model is unchanged then. RM_ERR_NOMEM. */
RM_API rm_status rm_model_set_normalization(rm_ctx *ctx, rm_model *model, const rm_normalization *norm);

/* The parameters of n (>= 1) voxels in memory, with the method of `norm`. Percentile selects on a copy (4·n
 * bytes, freed before returning) and leaves x unchanged. RM_ERR_ARGUMENT: norm, x or out NULL, n < 1, norm refused
 * by rm_normalization_validate, a NaN or infinite voxel with percentile (z-score does not look: such a voxel makes
 * the parameters NaN; see nonfinite.h). RM_ERR_NOMEM: percentile's copy. */
RM_API rm_status rm_normalization_compute(rm_ctx *ctx, const rm_normalization *norm, const float *x, int64_t n,
                                          rm_norm_params *out);
/* y[i] = the normalized x[i]; y may be x. Never fails; no pointer may be NULL. */
RM_API void rm_normalize(const rm_norm_params *params, const float *x, float *y, int64_t n);

/* The pieces rm_normalization_compute is made of, for callers that see a volume in parts (the ITK filter reads
 * slabs). */
/* z-score from the mean and the population sd of a volume (sd 0: only centred). */
RM_API rm_norm_params rm_norm_params_zscore(double mean, double sd);
/* The 0-based ranks, in the sorted volume of n voxels, whose values the two bounds interpolate: low's floor rank,
 * the next one, high's floor rank, the next one (each at most n - 1). */
RM_API void rm_normalization_ranks(const rm_normalization *norm, int64_t n, int64_t ranks[4]);
/* The percentile transform from the values found at those ranks. */
RM_API rm_norm_params rm_norm_params_percentile(const rm_normalization *norm, int64_t n, const float at[4]);

/* One normalized voxel: v is the voxel's value in double (so integer inputs need no rounding to float first). */
static inline float rm_norm_value(const rm_norm_params *p, double v)
{
    const double y = (v - p->offset) * p->scale;
    if (!p->clip)
        return (float)y;
    return y > 0.0 ? (y < 1.0 ? (float)y : 1.0f) : 0.0f; /* NaN and -0 give 0 */
}

/* The order-preserving key of a float: keys compare as unsigned integers the way the values compare (-0 before
 * +0), so order statistics can be selected on integer keys, in memory or by radix over a streamed volume. */
static inline uint32_t rm_norm_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

static inline float rm_norm_key_value(uint32_t key)
{
    const uint32_t u = (key & 0x80000000u) ? key & 0x7fffffffu : ~key;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Whether a float is NaN or infinite, from its key (percentiles refuse such voxels). */
static inline int rm_norm_key_finite(uint32_t key)
{
    const uint32_t u = (key & 0x80000000u) ? key & 0x7fffffffu : ~key;
    return (u & 0x7f800000u) != 0x7f800000u;
}

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_NORMALIZE_H */
