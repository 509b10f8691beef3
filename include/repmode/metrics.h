/* repmode evaluation metrics: what `repmode eval` reports for regression tasks (fluorescence, SSIM included) and
 * binary tasks (ink), and the F0.5-best threshold of a binary task (`repmode train --tune-threshold`).
 *
 *     rm_binary_metrics bm;
 *     if (rm_binary_metrics_compute(ctx, &prob, &ink, &fragment, RM_BINARY_THRESHOLD, &bm) != RM_OK)
 *         fprintf(stderr, "repmode: %s\n", rm_ctx_error(ctx));
 *     else
 *         printf("F0.5 %.4f  AUC %.4f over %lld pixels\n", bm.f05, bm.auc, (long long)bm.count);
 *
 * Conventions shared by the calls:
 * - The prediction, the target and the optional mask have the same shape (any 5-D shape; see core.h). A voxel is
 *   selected when mask > 0.5, or always when mask is NULL; only selected voxels count.
 * - Every sum is accumulated in double over fixed-size chunks combined in a fixed order: the results do not
 *   depend on the thread count.
 * - Bad input is an error, never a silent NaN: a NaN anywhere in the mask, or a NaN or infinite value in a
 *   selected voxel of the prediction or the target, is RM_ERR_ARGUMENT with a message naming the tensor, the
 *   value and its element index; values outside the mask are not checked. On any error *out is unchanged.
 * - Statuses of every call: RM_ERR_ARGUMENT (a NULL tensor, data or out, a bad value as above), RM_ERR_SHAPE (a
 *   dimension below 1, target or mask unlike the prediction), RM_ERR_NOMEM (the context's working memory, or a
 *   sort's copy).
 */
#ifndef REPMODE_METRICS_H
#define REPMODE_METRICS_H

#include "repmode/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- regression ---------------------------------------------------------------------------------------------- */

/* Over the selected voxels, prediction p against target t. With no selected voxel (count 0) every metric is NaN. */
typedef struct rm_regression_metrics {
    double mse;     /* mean (p − t)² */
    double mae;     /* mean |p − t| */
    double r2;      /* 1 − Σ(t − p)² / Σ(t − mean t)², sklearn's r2_score: when t is constant, 1 if p == t at every
                       voxel and 0 otherwise */
    double pearson; /* Pearson correlation of p and t, in [−1, 1]; 0 when either p or t is constant */
    int64_t count;  /* selected voxels */
    double ssim;       /* rm_ssim_compute with ssim_range as the data range; NaN when the target is constant over the
                          selected voxels, when no window fits in the volume, or when a voxel outside the mask that a
                          window reads is not finite */
    double ssim_range; /* max t − min t over the selected voxels */
} rm_regression_metrics;

/* The regression metrics; statuses as above (RM_ERR_ARGUMENT, RM_ERR_SHAPE, RM_ERR_NOMEM). */
RM_API rm_status rm_regression_metrics_compute(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target,
                                               const rm_tensor *mask, rm_regression_metrics *out);

/* The mean structural similarity (SSIM, Wang et al. 2004) of p and t, in 3D: local means, variances (without the
 * sample correction) and covariance weighted by a Gaussian window of σ = 1.5 truncated to 11 taps per axis (as
 * scikit-image's gaussian_weights=True), constants C1 = (0.01·L)², C2 = (0.03·L)² with L = data_range, averaged over
 * the selected voxels whose whole window lies inside their volume (each of the N·C volumes of the tensor alone).
 * An axis of length 1 has no window along it, so a (1, H, W) image gets the 2D index; an axis of 2 to 10 voxels
 * leaves no voxel, and *out is NaN, as it is when the mask selects none. The windows read every voxel, selected or
 * not: a NaN or infinite value anywhere in p or t is RM_ERR_ARGUMENT naming it, and so is a data range that is not a
 * positive number. Statuses otherwise as above; the working memory is 5·(12·H·W) doubles, freed on return. */
RM_API rm_status rm_ssim_compute(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, const rm_tensor *mask,
                                 double data_range, double *out);

/* ---- binary -------------------------------------------------------------------------------------------------- */

/* The default decision threshold on probabilities. */
#define RM_BINARY_THRESHOLD 0.5f

/* Over the selected voxels: a voxel is predicted positive when prob > threshold, and is a positive when
 * target > 0.5. Ratios whose denominator is 0 are 1 when prediction and target are both empty (tp = fp = fn = 0:
 * nothing to find, nothing falsely found) and 0 otherwise. */
typedef struct rm_binary_metrics {
    double f05;       /* F-beta with beta = 0.5 (precision weighted): 1.25·tp / (1.25·tp + 0.25·fn + fp), which
                         equals (1 + β²)·P·R / (β²·P + R) */
    double dice;      /* 2·tp / (2·tp + fp + fn) (the F1 score) */
    double precision; /* tp / (tp + fp) */
    double recall;    /* tp / (tp + fn) */
    double auc;       /* ROC AUC of the probabilities (threshold-free): the probability that a random positive scores
                         above a random negative, ties counting one half (Mann–Whitney U / (positives·negatives));
                         NaN when the selected voxels hold only one class (or none) */
    int64_t count;    /* selected voxels: tp + fp + fn + tn */
    int64_t tp;       /* predicted positive, positive */
    int64_t fp;       /* predicted positive, negative */
    int64_t fn;       /* predicted negative, positive */
    int64_t tn;       /* predicted negative, negative */
} rm_binary_metrics;

/* threshold in [0, 1] (RM_BINARY_THRESHOLD by default). prob may hold any finite scores: only the threshold and
 * their order matter. Sorting for the AUC allocates a float per selected voxel for the duration of the call.
 * RM_ERR_ARGUMENT (a threshold outside [0, 1] too), RM_ERR_SHAPE, RM_ERR_NOMEM, as above. */
RM_API rm_status rm_binary_metrics_compute(rm_ctx *ctx, const rm_tensor *prob, const rm_tensor *target,
                                           const rm_tensor *mask, float threshold, rm_binary_metrics *out);

/* The decision threshold that maximizes F0.5 over the selected voxels (prob > threshold predicts a positive), found
 * exactly: the selected probabilities sorted in descending order, a sweep of the cumulative tp and fp, and every cut
 * between two consecutive distinct values considered, as well as "nothing positive" and "everything positive".
 * - The threshold of a cut between the values lo < hi is their midpoint (rounded to float; lo when the midpoint
 *   rounds up to hi), 1 for "nothing positive" and 0 for "everything positive", clamped to [0, 1]. A cut is
 *   considered only when that threshold makes it (lo <= threshold < hi): with probabilities in [0, 1], all are but
 *   "everything positive" when the lowest probability is 0.
 * - F0.5 is computed as rm_binary_metrics_compute reports it, so passing the threshold to it gives the same f05 bit
 *   for bit. Ties in F0.5 go to the highest threshold (the fewest positive predictions): without positives, or
 *   without a selected voxel, the threshold is 1 with F0.5 1 (nothing to find, nothing falsely found).
 * - Sorting allocates a float per selected voxel for the duration of the call, as the AUC does. */
typedef struct rm_best_threshold {
    float threshold; /* in [0, 1] */
    double f05;      /* F0.5 at that threshold */
    int64_t count;   /* selected voxels */
} rm_best_threshold;

/* The best threshold described above; statuses as above (RM_ERR_ARGUMENT, RM_ERR_SHAPE, RM_ERR_NOMEM). */
RM_API rm_status rm_binary_best_threshold(rm_ctx *ctx, const rm_tensor *prob, const rm_tensor *target,
                                          const rm_tensor *mask, rm_best_threshold *out);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_METRICS_H */
