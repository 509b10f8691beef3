/* Reference average pooling, straight from the definition: y[v] = Σ of the in-range x in the k×k×k window
 * centred on v, divided by k³. The backward is written as the literal scatter of each output's gradient to the
 * inputs its window read, independent of the forward's code. */
#include "ops/ref/ref.h"

void rm_ref_avgpool3d_forward(int kernel, const rm_dtensor *x, rm_dtensor *y)
{
    const int64_t r = (kernel - 1) / 2;
    const double div = (double)kernel * kernel * kernel;
    for (int64_t n = 0; n < x->ne[0]; n++)
        for (int64_t c = 0; c < x->ne[1]; c++)
            for (int64_t d = 0; d < x->ne[2]; d++)
                for (int64_t h = 0; h < x->ne[3]; h++)
                    for (int64_t w = 0; w < x->ne[4]; w++) {
                        double sum = 0.0;
                        for (int64_t a = d - r; a <= d + r; a++)
                            for (int64_t b = h - r; b <= h + r; b++)
                                for (int64_t e = w - r; e <= w + r; e++) {
                                    if (a < 0 || a >= x->ne[2] || b < 0 || b >= x->ne[3] || e < 0 || e >= x->ne[4])
                                        continue; /* zero padding */
                                    sum += *rm_ref_at(x, n, c, a, b, e);
                                }
                        *rm_ref_at(y, n, c, d, h, w) = sum / div;
                    }
}

void rm_ref_avgpool3d_backward(int kernel, const rm_dtensor *dy, rm_dtensor *dx)
{
    const int64_t r = (kernel - 1) / 2;
    const double div = (double)kernel * kernel * kernel;
    const int64_t total = rm_ref_numel(dx);
    for (int64_t i = 0; i < total; i++)
        dx->data[i] = 0.0;
    /* Output (d, h, w) read input (a, b, e) with weight 1/k³: send that share of its gradient back. */
    for (int64_t n = 0; n < dy->ne[0]; n++)
        for (int64_t c = 0; c < dy->ne[1]; c++)
            for (int64_t d = 0; d < dy->ne[2]; d++)
                for (int64_t h = 0; h < dy->ne[3]; h++)
                    for (int64_t w = 0; w < dy->ne[4]; w++) {
                        const double g = *rm_ref_at(dy, n, c, d, h, w) / div;
                        for (int64_t a = d - r; a <= d + r; a++)
                            for (int64_t b = h - r; b <= h + r; b++)
                                for (int64_t e = w - r; e <= w + r; e++) {
                                    if (a < 0 || a >= dx->ne[2] || b < 0 || b >= dx->ne[3] || e < 0 ||
                                        e >= dx->ne[4])
                                        continue;
                                    *rm_ref_at(dx, n, c, a, b, e) += g;
                                }
                    }
}

void rm_ref_depth_mean_forward(const rm_dtensor *x, rm_dtensor *y)
{
    for (int64_t n = 0; n < x->ne[0]; n++)
        for (int64_t c = 0; c < x->ne[1]; c++)
            for (int64_t h = 0; h < x->ne[3]; h++)
                for (int64_t w = 0; w < x->ne[4]; w++) {
                    double sum = 0.0;
                    for (int64_t d = 0; d < x->ne[2]; d++)
                        sum += *rm_ref_at(x, n, c, d, h, w);
                    *rm_ref_at(y, n, c, 0, h, w) = sum / (double)x->ne[2];
                }
}

void rm_ref_depth_mean_backward(const rm_dtensor *dy, rm_dtensor *dx)
{
    /* Every input (d, h, w) feeds output (0, h, w) with weight 1/D. */
    for (int64_t n = 0; n < dx->ne[0]; n++)
        for (int64_t c = 0; c < dx->ne[1]; c++)
            for (int64_t d = 0; d < dx->ne[2]; d++)
                for (int64_t h = 0; h < dx->ne[3]; h++)
                    for (int64_t w = 0; w < dx->ne[4]; w++)
                        *rm_ref_at(dx, n, c, d, h, w) = *rm_ref_at(dy, n, c, 0, h, w) / (double)dx->ne[2];
}
