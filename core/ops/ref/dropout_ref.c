/* Reference dropout in double, with the keep mask given. */
#include "ops/ref/ref.h"

void rm_ref_dropout_forward(double p, const unsigned char *keep, const rm_dtensor *x, rm_dtensor *y)
{
    const int64_t n = rm_ref_numel(x);
    for (int64_t i = 0; i < n; i++)
        y->data[i] = keep[i] ? x->data[i] / (1.0 - p) : 0.0;
}

/* The forward is linear in x with the diagonal Jacobian keep/(1 - p). */
void rm_ref_dropout_backward(double p, const unsigned char *keep, const rm_dtensor *dy, rm_dtensor *dx)
{
    if (!dx)
        return;
    const int64_t n = rm_ref_numel(dy);
    for (int64_t i = 0; i < n; i++)
        dx->data[i] = keep[i] ? dy->data[i] / (1.0 - p) : 0.0;
}
