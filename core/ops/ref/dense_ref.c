/* Reference dense layer in double: x is the matrix (N, in) of its samples' features, w the matrix (out, in). */
#include "ops/ref/ref.h"

void rm_ref_dense_forward(const rm_dtensor *x, const rm_dtensor *w, const double *b, rm_dtensor *y)
{
    const int64_t batch = x->ne[0], in = rm_ref_numel(x) / batch, out = w->ne[0];
    for (int64_t n = 0; n < batch; n++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++)
                s += x->data[n * in + i] * w->data[o * in + i];
            y->data[n * out + o] = s;
        }
}

void rm_ref_dense_backward(const rm_dtensor *x, const rm_dtensor *w, const rm_dtensor *dy, rm_dtensor *dx,
                           rm_dtensor *dw, double *db)
{
    const int64_t batch = x->ne[0], in = rm_ref_numel(x) / batch, out = w->ne[0];
    /* dx = dy · w */
    if (dx)
        for (int64_t n = 0; n < batch; n++)
            for (int64_t i = 0; i < in; i++) {
                double s = 0.0;
                for (int64_t o = 0; o < out; o++)
                    s += dy->data[n * out + o] * w->data[o * in + i];
                dx->data[n * in + i] = s;
            }
    /* dw = dyᵀ · x */
    if (dw)
        for (int64_t o = 0; o < out; o++)
            for (int64_t i = 0; i < in; i++) {
                double s = 0.0;
                for (int64_t n = 0; n < batch; n++)
                    s += dy->data[n * out + o] * x->data[n * in + i];
                dw->data[o * in + i] = s;
            }
    /* db = Σ_n dy */
    if (db)
        for (int64_t o = 0; o < out; o++) {
            double s = 0.0;
            for (int64_t n = 0; n < batch; n++)
                s += dy->data[n * out + o];
            db[o] = s;
        }
}
