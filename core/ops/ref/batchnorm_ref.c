/* Reference BatchNorm3d, straight from the formulas, two passes for the statistics. A NULL weight means γ = 1 and
 * a NULL bias β = 0 (affine=False). */
#include "ops/ref/ref.h"

#include <math.h>

static double gamma_of(const double *weight, int64_t c) { return weight ? weight[c] : 1.0; }

void rm_ref_batchnorm3d_forward_train(const rm_dtensor *x, const double *weight, const double *bias,
                                      double *running_mean, double *running_var, double momentum, double eps,
                                      rm_dtensor *y, double *save_mean, double *save_invstd)
{
    const int64_t N = x->ne[0], C = x->ne[1], D = x->ne[2], H = x->ne[3], W = x->ne[4];
    const double M = (double)(N * D * H * W);
    for (int64_t c = 0; c < C; c++) {
        double sum = 0.0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t w = 0; w < W; w++)
                        sum += *rm_ref_at(x, n, c, d, h, w);
        const double mean = sum / M;
        double sq = 0.0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t w = 0; w < W; w++) {
                        const double dev = *rm_ref_at(x, n, c, d, h, w) - mean;
                        sq += dev * dev;
                    }
        const double var_biased = sq / M;
        const double var_unbiased = sq / (M - 1.0);
        const double invstd = 1.0 / sqrt(var_biased + eps);
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t w = 0; w < W; w++) {
                        const double xhat = (*rm_ref_at(x, n, c, d, h, w) - mean) * invstd;
                        *rm_ref_at(y, n, c, d, h, w) = gamma_of(weight, c) * xhat + (bias ? bias[c] : 0.0);
                    }
        save_mean[c] = mean;
        save_invstd[c] = invstd;
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean;
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var_unbiased;
    }
}

void rm_ref_batchnorm3d_backward_train(const rm_dtensor *x, const double *weight, const double *save_mean,
                                       const double *save_invstd, const rm_dtensor *dy, rm_dtensor *dx,
                                       double *dweight, double *dbias)
{
    const int64_t N = x->ne[0], C = x->ne[1], D = x->ne[2], H = x->ne[3], W = x->ne[4];
    const double M = (double)(N * D * H * W);
    for (int64_t c = 0; c < C; c++) {
        const double mean = save_mean[c], invstd = save_invstd[c];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t w = 0; w < W; w++) {
                        const double g = *rm_ref_at(dy, n, c, d, h, w);
                        const double xhat = (*rm_ref_at(x, n, c, d, h, w) - mean) * invstd;
                        sum_dy += g;
                        sum_dy_xhat += g * xhat;
                    }
        if (dweight)
            dweight[c] = sum_dy_xhat;
        if (dbias)
            dbias[c] = sum_dy;
        if (!dx)
            continue;
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t w = 0; w < W; w++) {
                        const double g = *rm_ref_at(dy, n, c, d, h, w);
                        const double xhat = (*rm_ref_at(x, n, c, d, h, w) - mean) * invstd;
                        *rm_ref_at(dx, n, c, d, h, w) =
                            gamma_of(weight, c) * invstd / M * (M * g - sum_dy - xhat * sum_dy_xhat);
                    }
    }
}

void rm_ref_batchnorm3d_forward_infer(const rm_dtensor *x, const double *weight, const double *bias,
                                      const double *running_mean, const double *running_var, double eps,
                                      rm_dtensor *y)
{
    for (int64_t n = 0; n < x->ne[0]; n++)
        for (int64_t c = 0; c < x->ne[1]; c++)
            for (int64_t d = 0; d < x->ne[2]; d++)
                for (int64_t h = 0; h < x->ne[3]; h++)
                    for (int64_t w = 0; w < x->ne[4]; w++) {
                        const double xhat =
                            (*rm_ref_at(x, n, c, d, h, w) - running_mean[c]) / sqrt(running_var[c] + eps);
                        *rm_ref_at(y, n, c, d, h, w) = gamma_of(weight, c) * xhat + (bias ? bias[c] : 0.0);
                    }
}

void rm_ref_batchnorm3d_backward_infer(const rm_dtensor *x, const double *weight, const double *running_mean,
                                       const double *running_var, double eps, const rm_dtensor *dy, rm_dtensor *dx,
                                       double *dweight, double *dbias)
{
    const int64_t C = x->ne[1];
    for (int64_t c = 0; c < C; c++) {
        if (dweight)
            dweight[c] = 0.0;
        if (dbias)
            dbias[c] = 0.0;
    }
    for (int64_t n = 0; n < x->ne[0]; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t d = 0; d < x->ne[2]; d++)
                for (int64_t h = 0; h < x->ne[3]; h++)
                    for (int64_t w = 0; w < x->ne[4]; w++) {
                        const double std = sqrt(running_var[c] + eps);
                        const double g = *rm_ref_at(dy, n, c, d, h, w);
                        const double xhat = (*rm_ref_at(x, n, c, d, h, w) - running_mean[c]) / std;
                        if (dx)
                            *rm_ref_at(dx, n, c, d, h, w) = g * gamma_of(weight, c) / std;
                        if (dweight)
                            dweight[c] += g * xhat;
                        if (dbias)
                            dbias[c] += g;
                    }
}
