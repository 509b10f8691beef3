/* Reference mean squared error in double. */
#include "ops/ref/ref.h"

double rm_ref_mse_forward(const rm_dtensor *pred, const rm_dtensor *target)
{
    const int64_t n = rm_ref_numel(pred);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = pred->data[i] - target->data[i];
        s += d * d;
    }
    return s / (double)n;
}

void rm_ref_mse_backward(const rm_dtensor *pred, const rm_dtensor *target, double dloss, rm_dtensor *dpred)
{
    if (!dpred)
        return;
    const int64_t n = rm_ref_numel(pred);
    for (int64_t i = 0; i < n; i++)
        dpred->data[i] = dloss * 2.0 * (pred->data[i] - target->data[i]) / (double)n;
}
