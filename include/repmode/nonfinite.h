/* Non-finite voxels (NaN, ±infinity) in an input volume: found, counted and replaced before normalization.
 *
 * One NaN voxel would otherwise spread through every window that sees it and, through the z-score's mean, through
 * the whole prediction. A caller feeds the volume to a census (whole, or region by region in index order, as a
 * streamed reader does), asks the policy for the value to put in their place (or the refusal, with the count and
 * the first voxel's position), and replaces them in each region it reads. The same census gives the same value
 * however the volume is cut into regions.
 */
#ifndef REPMODE_NONFINITE_H
#define REPMODE_NONFINITE_H

#include "repmode/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What to do with non-finite voxels. Append only. */
typedef enum rm_nonfinite_policy {
    RM_NONFINITE_REFUSE = 0, /* an error naming their count and the first (the default of every consumer) */
    RM_NONFINITE_ZERO = 1,   /* replaced by 0 */
    RM_NONFINITE_MEAN = 2,   /* replaced by the mean of the volume's finite voxels (0 when there are none) */
} rm_nonfinite_policy;

/* "refuse", "zero" or "mean" to a policy; RM_ERR_ARGUMENT naming the three otherwise (name NULL too). out must not
 * be NULL. */
RM_API rm_status rm_nonfinite_policy_parse(rm_ctx *ctx, const char *name, rm_nonfinite_policy *out);
/* The policy's name, or "unknown": a static string, never freed. */
RM_API const char *rm_nonfinite_policy_name(rm_nonfinite_policy policy);

/* A running count over a volume's voxels in flat index order (x fastest). Plain data: copy and reset freely. */
typedef struct rm_nonfinite_census {
    int64_t seen;      /* voxels fed so far */
    int64_t nonfinite; /* of which NaN or infinite */
    int64_t first;     /* flat index of the first non-finite voxel; -1 when none */
    double finite_sum; /* the finite voxels' sum, in double, in index order */
} rm_nonfinite_census;

/* An empty census. */
RM_API rm_nonfinite_census rm_nonfinite_census_init(void);
/* Feeds the next n voxels of the volume (the ones after those already fed). Neither pointer may be NULL. */
RM_API void rm_nonfinite_census_add(rm_nonfinite_census *census, const float *x, int64_t n);

/* The value `policy` puts in place of the census's non-finite voxels, in *value. With none, RM_OK whatever the
 * policy. RM_NONFINITE_REFUSE with some: RM_ERR_ARGUMENT, the message giving their count and the first's position
 * as (x, y, z) in a volume of `size` (Z, Y, X), or its flat index when size is NULL; also RM_ERR_ARGUMENT for an
 * unknown policy. census and value must not be NULL. */
RM_API rm_status rm_nonfinite_resolve(rm_ctx *ctx, const rm_nonfinite_census *census, rm_nonfinite_policy policy,
                                      const int64_t *size, float *value);

/* Puts `value` in place of every non-finite voxel of x[0 .. n-1] (x must not be NULL when n > 0); returns how many
 * were replaced. */
RM_API int64_t rm_nonfinite_replace(float *x, int64_t n, float value);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_NONFINITE_H */
