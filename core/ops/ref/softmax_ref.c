/* Reference softmax over C in double, voxel by voxel. */
#include "ops/ref/ref.h"

#include <math.h>

void rm_ref_softmax_forward(const rm_dtensor *x, rm_dtensor *y)
{
    for (int64_t n = 0; n < x->ne[0]; n++)
        for (int64_t d = 0; d < x->ne[2]; d++)
            for (int64_t h = 0; h < x->ne[3]; h++)
                for (int64_t w = 0; w < x->ne[4]; w++) {
                    double mx = -INFINITY;
                    for (int64_t c = 0; c < x->ne[1]; c++)
                        mx = fmax(mx, *rm_ref_at(x, n, c, d, h, w));
                    double z = 0.0;
                    for (int64_t c = 0; c < x->ne[1]; c++)
                        z += exp(*rm_ref_at(x, n, c, d, h, w) - mx);
                    for (int64_t c = 0; c < x->ne[1]; c++)
                        *rm_ref_at(y, n, c, d, h, w) = exp(*rm_ref_at(x, n, c, d, h, w) - mx) / z;
                }
}

/* dx_c = Σ_k (∂y_k/∂x_c)·dy_k with ∂y_k/∂x_c = y_k·(δ_kc − y_c): the full Jacobian product, written out. */
void rm_ref_softmax_backward(const rm_dtensor *y, const rm_dtensor *dy, rm_dtensor *dx)
{
    if (!dx)
        return;
    for (int64_t n = 0; n < y->ne[0]; n++)
        for (int64_t d = 0; d < y->ne[2]; d++)
            for (int64_t h = 0; h < y->ne[3]; h++)
                for (int64_t w = 0; w < y->ne[4]; w++)
                    for (int64_t c = 0; c < y->ne[1]; c++) {
                        const double yc = *rm_ref_at(y, n, c, d, h, w);
                        double g = 0.0;
                        for (int64_t k = 0; k < y->ne[1]; k++) {
                            const double yk = *rm_ref_at(y, n, k, d, h, w);
                            g += yk * ((k == c ? 1.0 : 0.0) - yc) * *rm_ref_at(dy, n, k, d, h, w);
                        }
                        *rm_ref_at(dx, n, c, d, h, w) = g;
                    }
}
