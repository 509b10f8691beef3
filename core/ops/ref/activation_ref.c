/* Reference activations in double, element by element from the definitions. */
#include "ops/ref/ref.h"

#include <math.h>

/* softplus(x) = log(1 + e^x), written so that e^x never overflows. */
static double softplus(double x) { return log1p(exp(-fabs(x))) + (x > 0.0 ? x : 0.0); }

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static double act_value(rm_activation act, double x, double b)
{
    switch (act) {
    case RM_ACT_RELU: return x > 0.0 ? x : 0.0;
    case RM_ACT_FRELU: return (x > 0.0 ? x : 0.0) + b;
    case RM_ACT_MISH: return x * tanh(softplus(x));
    }
    return NAN;
}

/* d f / d x. Mish: tanh(sp) + x·sech²(sp)·sp'(x), with sp' = sigmoid; cosh overflowing to inf gives sech² = 0. */
static double act_derivative(rm_activation act, double x)
{
    switch (act) {
    case RM_ACT_RELU:
    case RM_ACT_FRELU: return x > 0.0 ? 1.0 : 0.0;
    case RM_ACT_MISH: {
        const double sp = softplus(x);
        const double ch = cosh(sp);
        return tanh(sp) + x * (1.0 / (ch * ch)) * sigmoid(x);
    }
    }
    return NAN;
}

void rm_ref_activation_forward(rm_activation act, const rm_dtensor *x, const double *bias, rm_dtensor *y)
{
    for (int64_t n = 0; n < x->ne[0]; n++)
        for (int64_t c = 0; c < x->ne[1]; c++)
            for (int64_t d = 0; d < x->ne[2]; d++)
                for (int64_t h = 0; h < x->ne[3]; h++)
                    for (int64_t w = 0; w < x->ne[4]; w++) {
                        const double b = act == RM_ACT_FRELU ? bias[c] : 0.0;
                        *rm_ref_at(y, n, c, d, h, w) = act_value(act, *rm_ref_at(x, n, c, d, h, w), b);
                    }
}

void rm_ref_activation_backward(rm_activation act, const rm_dtensor *x, const rm_dtensor *dy, rm_dtensor *dx,
                                double *dbias)
{
    if (dbias && act == RM_ACT_FRELU)
        for (int64_t c = 0; c < x->ne[1]; c++)
            dbias[c] = 0.0;
    for (int64_t n = 0; n < x->ne[0]; n++)
        for (int64_t c = 0; c < x->ne[1]; c++)
            for (int64_t d = 0; d < x->ne[2]; d++)
                for (int64_t h = 0; h < x->ne[3]; h++)
                    for (int64_t w = 0; w < x->ne[4]; w++) {
                        const double g = *rm_ref_at(dy, n, c, d, h, w);
                        /* d y / d bias[c] = 1 at every voxel of channel c. */
                        if (dbias && act == RM_ACT_FRELU)
                            dbias[c] += g;
                        if (dx)
                            *rm_ref_at(dx, n, c, d, h, w) = g * act_derivative(act, *rm_ref_at(x, n, c, d, h, w));
                    }
}
