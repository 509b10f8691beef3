/* The SSIM of ssim.c for the other whole-volume metrics (metrics.c), which check their inputs themselves. */
#ifndef REPMODE_VOLUME_SSIM_H
#define REPMODE_VOLUME_SSIM_H

#include "base/internal.h"
#include "repmode/nonfinite.h"

/* The non-finite values of every element of x. */
static inline rm_nonfinite_census rm_tensor_census(const rm_tensor *x)
{
    rm_nonfinite_census census = rm_nonfinite_census_init();
    rm_nonfinite_census_add(&census, x->data, rm_tensor_numel(x));
    return census;
}

/* rm_ssim_compute (metrics.h) without its checks: the caller has checked the shapes, a positive finite data range,
 * out, and that every value of pred and target is finite. RM_ERR_NOMEM only. */
rm_status rm_ssim_checked(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, const rm_tensor *mask,
                          double data_range, double *out);

#endif /* REPMODE_VOLUME_SSIM_H */
