/* Mean squared error over all elements, and its gradient.
 *
 * The sum is cut into chunks of a fixed size, each summed in double into its own slot, and the slots are added in
 * order: the same partial sums whatever the thread count, so the loss is bit-identical on any number of threads.
 */
#include "rm_impl.h"
#include "repmode/ops.h"

#define RM_LOSS_CHUNK ((int64_t)1 << 16)

static rm_status mse_check(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target)
{
    RM_TRY(rm_check_tensor(ctx, pred, "mse: pred"));
    return rm_check_shape(ctx, target, "mse: target", pred->ne);
}

rm_status rm_mse_forward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, float *loss)
{
    RM_TRY(mse_check(ctx, pred, target));
    if (!loss)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "mse: loss is NULL");

    const int64_t n = rm_tensor_numel(pred);
    const int64_t chunks = (n + RM_LOSS_CHUNK - 1) / RM_LOSS_CHUNK;
    double *partial = rm_ctx_workspace(ctx, (size_t)chunks * sizeof *partial);
    if (!partial)
        return RM_ERR_NOMEM;
    const float *p = pred->data, *t = target->data;

    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (chunks > 1)
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t i0 = k * RM_LOSS_CHUNK;
        const int64_t i1 = i0 + RM_LOSS_CHUNK < n ? i0 + RM_LOSS_CHUNK : n;
        /* Eight interleaved partial sums: a fixed order the compiler can keep in vector registers. */
        double s[8] = {0};
        int64_t i = i0;
        for (; i + 8 <= i1; i += 8)
            for (int l = 0; l < 8; l++) {
                const double d = (double)p[i + l] - t[i + l];
                s[l] += d * d;
            }
        for (; i < i1; i++) {
            const double d = (double)p[i] - t[i];
            s[0] += d * d;
        }
        partial[k] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }

    double sum = 0.0;
    for (int64_t k = 0; k < chunks; k++)
        sum += partial[k];
    *loss = (float)(sum / (double)n);
    return RM_OK;
}

rm_status rm_mse_backward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, float dloss,
                          rm_tensor *dpred)
{
    RM_TRY(mse_check(ctx, pred, target));
    if (!dpred)
        return RM_OK;
    RM_TRY(rm_check_shape(ctx, dpred, "mse: dpred", pred->ne));

    const int64_t n = rm_tensor_numel(pred);
    const int64_t chunks = (n + RM_LOSS_CHUNK - 1) / RM_LOSS_CHUNK;
    const float scale = (float)(2.0 * (double)dloss / (double)n);
    const float *p = pred->data, *t = target->data;
    float *g = dpred->data;

    /* dpred may be pred or target: each element is read before it is written. */
    #pragma omp parallel for num_threads(ctx->n_threads) schedule(static) if (chunks > 1)
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t i0 = k * RM_LOSS_CHUNK;
        const int64_t i1 = i0 + RM_LOSS_CHUNK < n ? i0 + RM_LOSS_CHUNK : n;
        for (int64_t i = i0; i < i1; i++)
            g[i] = scale * (p[i] - t[i]);
    }
    return RM_OK;
}
