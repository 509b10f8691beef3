/* Reference masked MSE and binary loss ½·(soft BCE + Dice) in double, straight from the formulas of ops.h. */
#include "ops/ref/ref.h"

#include <math.h>

static int selected(const rm_dtensor *mask, int64_t i) { return !mask || mask->data[i] > 0.5; }

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

double rm_ref_masked_mse_forward(const rm_dtensor *pred, const rm_dtensor *target, const rm_dtensor *mask)
{
    const int64_t n = rm_ref_numel(pred);
    double s = 0.0;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!selected(mask, i))
            continue;
        const double d = pred->data[i] - target->data[i];
        s += d * d;
        m++;
    }
    return m > 0 ? s / (double)m : 0.0;
}

void rm_ref_masked_mse_backward(const rm_dtensor *pred, const rm_dtensor *target, const rm_dtensor *mask,
                                double dloss, rm_dtensor *dpred)
{
    if (!dpred)
        return;
    const int64_t n = rm_ref_numel(pred);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        m += selected(mask, i);
    for (int64_t i = 0; i < n; i++)
        dpred->data[i] = selected(mask, i) ? dloss * 2.0 * (pred->data[i] - target->data[i]) / (double)m : 0.0;
}

/* The sums both directions need: M, Σ BCE terms, Σ p·t, Σ p, Σ t over the selected voxels. */
typedef struct ref_binary_sums {
    double m, bce, pt, p, t;
} ref_binary_sums;

static ref_binary_sums ref_binary_sums_of(const rm_dtensor *logits, const rm_dtensor *target,
                                          const rm_dtensor *mask, double smoothing)
{
    ref_binary_sums s = {0.0, 0.0, 0.0, 0.0, 0.0};
    const int64_t n = rm_ref_numel(logits);
    for (int64_t i = 0; i < n; i++) {
        if (!selected(mask, i))
            continue;
        const double x = logits->data[i], t = target->data[i];
        const double ts = t * (1.0 - smoothing) + (1.0 - t) * smoothing;
        const double p = sigmoid(x);
        s.bce += fmax(x, 0.0) - x * ts + log1p(exp(-fabs(x)));
        s.pt += p * t;
        s.p += p;
        s.t += t;
        s.m += 1.0;
    }
    return s;
}

double rm_ref_binary_loss_forward(const rm_dtensor *logits, const rm_dtensor *target, const rm_dtensor *mask,
                                  double smoothing, double *bce, double *dice)
{
    const ref_binary_sums s = ref_binary_sums_of(logits, target, mask, smoothing);
    const double lambda = RM_DICE_LAMBDA;
    const double b = s.m > 0.0 ? s.bce / s.m : 0.0;
    const double d = 1.0 - (2.0 * s.pt + lambda) / (s.p + s.t + lambda);
    if (bce)
        *bce = b;
    if (dice)
        *dice = d;
    return 0.5 * (b + d);
}

void rm_ref_binary_loss_backward(const rm_dtensor *logits, const rm_dtensor *target, const rm_dtensor *mask,
                                 double smoothing, double dloss, rm_dtensor *dlogits)
{
    if (!dlogits)
        return;
    const ref_binary_sums s = ref_binary_sums_of(logits, target, mask, smoothing);
    const double lambda = RM_DICE_LAMBDA;
    const double num = 2.0 * s.pt + lambda, den = s.p + s.t + lambda;
    const int64_t n = rm_ref_numel(logits);
    for (int64_t i = 0; i < n; i++) {
        if (!selected(mask, i)) {
            dlogits->data[i] = 0.0;
            continue;
        }
        const double x = logits->data[i], t = target->data[i];
        const double ts = t * (1.0 - smoothing) + (1.0 - t) * smoothing;
        const double p = sigmoid(x);
        /* d bce / dx = (p − t')/M; d dice / dp = −(2t·den − num)/den², and dp/dx = p(1 − p). */
        const double dbce = (p - ts) / s.m;
        const double ddice = -(2.0 * t * den - num) / (den * den) * p * (1.0 - p);
        dlogits->data[i] = dloss * 0.5 * (dbce + ddice);
    }
}
