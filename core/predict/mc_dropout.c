/* Monte Carlo dropout (docs/network.md §6.3): N stochastic passes of the sliding-window prediction, each with its
 * own noisy gates and dropout masks (rm_deploy_set_mc), reduced voxel by voxel to their mean and standard deviation.
 *
 * Each pass is an ordinary rm_predict_region, whose windows and blending do not depend on the region asked for, and
 * the passes are folded into the statistics in pass order (Welford's update, in double): a region predicted alone
 * equals the same region of the whole run bit for bit.
 */
#include "model/model_impl.h"
#include "repmode/ops.h"
#include "repmode/predict.h"

#include <math.h>

/* The progress of pass `pass` of `samples`, as a fraction of the whole run. */
typedef struct pass_progress {
    rm_progress_fn fn;
    void *user;
    int64_t pass, samples;
} pass_progress;

static int report_pass(void *user, double fraction)
{
    const pass_progress *pp = user;
    return pp->fn(pp->user, ((double)pp->pass + fraction) / (double)pp->samples);
}

static rm_status check_mc(rm_ctx *ctx, const rm_deploy *d, const rm_mc_params *mc, const int64_t volume[3],
                          const int64_t out_start[3], const int64_t out_size[3], float *mean)
{
    if (!d || !mc || !mean)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: NULL argument");
    if (mc->samples < 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: %lld Monte Carlo samples; at least 1 is needed",
                       (long long)mc->samples);
    if (mc->depth_mean && (out_start[0] != 0 || out_size[0] != volume[0]))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: a depth mean needs the region to span the volume's depth");
    return RM_OK;
}

rm_status rm_predict_region_mc(rm_ctx *ctx, rm_deploy *d, const rm_model *model, int task, const rm_window_params *p,
                               const rm_mc_params *mc, const int64_t volume[3], rm_read_fn read, void *read_user,
                               const int64_t out_start[3], const int64_t out_size[3], float *mean, float *std,
                               rm_progress_fn progress, void *progress_user)
{
    int64_t in_start[3], in_size[3];
    RM_TRY(rm_predict_input_region(ctx, d, p, volume, out_start, out_size, in_start, in_size));
    RM_TRY(check_mc(ctx, d, mc, volume, out_start, out_size, mean));
    const int64_t channels = rm_deploy_config(d)->out_channels, plane = out_size[1] * out_size[2];
    const int64_t depth = mc->depth_mean ? 1 : out_size[0], n = channels * depth * plane;
    /* One pass's prediction, and with a depth mean its reduction after it. */
    float *pred = rm_malloc((size_t)(channels * out_size[0] * plane + (mc->depth_mean ? n : 0)) * sizeof *pred);
    double *m = rm_calloc((size_t)n, sizeof *m), *m2 = rm_calloc((size_t)n, sizeof *m2);
    rm_status s = pred && m && m2 ? RM_OK
                                  : rm_fail(ctx, RM_ERR_NOMEM,
                                            "predict: out of memory for %lld voxels of "
                                            "Monte Carlo statistics",
                                            (long long)n);
    for (int64_t k = 0; s == RM_OK && k < mc->samples; k++) {
        const rm_mc_pass pass = {mc->dropout, mc->gate_noise, mc->seed, k};
        pass_progress pp = {progress, progress_user, k, mc->samples};
        s = rm_deploy_set_mc(ctx, d, model, task, &pass);
        if (s == RM_OK)
            s = rm_predict_region(ctx, d, p, volume, read, read_user, out_start, out_size, pred,
                                  progress ? report_pass : NULL, &pp);
        const float *y_pass = pred;
        if (s == RM_OK && mc->depth_mean) {
            const rm_tensor all = rm_tensor_5d(pred, 1, channels, out_size[0], out_size[1], out_size[2]);
            rm_tensor reduced = rm_tensor_5d(pred + channels * out_size[0] * plane, 1, channels, 1, out_size[1],
                                             out_size[2]);
            s = rm_depth_mean_forward(ctx, &all, &reduced);
            y_pass = reduced.data;
        }
        for (int64_t i = 0; s == RM_OK && i < n; i++) {
            const double y = mc->probabilities ? 1.0 / (1.0 + exp(-(double)y_pass[i])) : (double)y_pass[i];
            const double delta = y - m[i];
            m[i] += delta / (double)(k + 1);
            m2[i] += delta * (y - m[i]);
        }
    }
    /* Back to the plain deploy form, whatever happened. */
    const rm_mc_pass plain = {0.0f, 0.0f, 0, 0};
    const rm_status restored =
        model ? rm_deploy_set_task(ctx, d, model, task) : rm_deploy_set_mc(ctx, d, NULL, rm_deploy_task(d), &plain);
    s = s != RM_OK ? s : restored;
    for (int64_t i = 0; s == RM_OK && i < n; i++) {
        mean[i] = (float)m[i];
        if (std)
            std[i] = (float)sqrt(m2[i] / (double)mc->samples);
    }
    rm_dealloc(pred);
    rm_dealloc(m);
    rm_dealloc(m2);
    return s;
}
