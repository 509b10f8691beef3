/* One activation over a run of one channel's values: the one definition that the activation operator
 * (activation.c) and the direct convolution's fused epilogue (ops/direct) share, so that fusing the activation into
 * a convolution's stores gives the same bits as the separate pass. */
#ifndef REPMODE_ACTIVATION_APPLY_H
#define REPMODE_ACTIVATION_APPLY_H

#include <math.h>
#include <stdint.h>

#include "repmode/ops.h"

/* tanh(softplus(x)) with one exponential and no overflow. With n = e^x, tanh(log(1 + n)) = n(n + 2) / (n(n + 2) + 2);
 * for x >= 0 numerator and denominator are divided by n², leaving e = e^-x <= 1 in place of n. */
static inline float rm_mish_tanh_sp(float x, float e)
{
    if (x >= 0.0f)
        return (1.0f + 2.0f * e) / (1.0f + 2.0f * e + 2.0f * e * e);
    const float q = e * (e + 2.0f);
    return q / (q + 2.0f);
}

/* act(x), with `bias` FReLU's bias (unused otherwise). */
static inline float rm_act_one(rm_activation act, float bias, float x)
{
    switch (act) {
    case RM_ACT_RELU:
        /* `x < 0 ? 0 : x` rather than fmaxf so that NaN propagates, as in PyTorch. */
        return x < 0.0f ? 0.0f : x;
    case RM_ACT_FRELU:
        return (x < 0.0f ? 0.0f : x) + bias;
    case RM_ACT_MISH:
        return x * rm_mish_tanh_sp(x, expf(-fabsf(x)));
    }
    return x;
}

/* y[i] = act(x[i]) for i < n, one channel's run (bias: its FReLU bias, unused otherwise); y may be x. One loop per
 * activation, each with the activation known, so that it vectorizes. */
static inline void rm_act_apply(rm_activation act, float bias, const float *x, float *y, int64_t n)
{
    switch (act) {
    case RM_ACT_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = rm_act_one(RM_ACT_RELU, bias, x[i]);
        break;
    case RM_ACT_FRELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = rm_act_one(RM_ACT_FRELU, bias, x[i]);
        break;
    case RM_ACT_MISH:
        for (int64_t i = 0; i < n; i++)
            y[i] = rm_act_one(RM_ACT_MISH, bias, x[i]);
        break;
    }
}

#endif /* REPMODE_ACTIVATION_APPLY_H */
