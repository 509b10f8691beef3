/* Mean squared error, over all elements or over those a mask selects, and its gradient.
 *
 * The tensor is cut into chunks of a fixed size, each chunk's sum goes into its own slot in double, and the slots
 * are added in order: the same partial sums whatever the thread count, so the loss is bit-identical on any number
 * of threads.
 */
#include "base/chunks.h"
#include "repmode/ops.h"

#include <stdio.h>

typedef struct mse_part {
    double sum;
    int64_t count;
} mse_part;

/* What the chunks read, and the backward's gradient. */
typedef struct mse_args {
    const float *p, *t, *m;
    float scale;
    float *g;
} mse_args;

/* Checks the arguments; `op` ("mse" or "masked mse") starts every message. */
static rm_status mse_check(rm_ctx *ctx, const char *op, const rm_tensor *pred, const rm_tensor *target,
                           const rm_tensor *mask)
{
    char name[32];
    snprintf(name, sizeof name, "%s: pred", op);
    RM_TRY(rm_check_tensor(ctx, pred, name));
    snprintf(name, sizeof name, "%s: target", op);
    RM_TRY(rm_check_shape(ctx, target, name, pred->ne));
    snprintf(name, sizeof name, "%s: mask", op);
    if (mask)
        RM_TRY(rm_check_shape(ctx, mask, name, pred->ne));
    return RM_OK;
}

/* Σ (p - t)² over the selected elements of [i0, i1), in eight interleaved lanes (a fixed order the compiler keeps in
 * vector registers); an unselected element adds nothing to its lane. */
static void mse_chunk(const void *arg, void *slot, int64_t i0, int64_t i1)
{
    const mse_args *a = arg;
    const float *p = a->p, *t = a->t, *m = a->m;
    double s[8] = {0};
    int64_t count = 0, i = i0;
    if (!m) {
        for (; i + 8 <= i1; i += 8)
            for (int l = 0; l < 8; l++) {
                const double d = (double)p[i + l] - t[i + l];
                s[l] += d * d;
            }
        for (; i < i1; i++) {
            const double d = (double)p[i] - t[i];
            s[0] += d * d;
        }
        count = i1 - i0;
    } else {
        for (; i + 8 <= i1; i += 8)
            for (int l = 0; l < 8; l++) {
                if (m[i + l] > 0.5f) {
                    const double d = (double)p[i + l] - t[i + l];
                    s[l] += d * d;
                    count++;
                }
            }
        for (; i < i1; i++) {
            if (m[i] > 0.5f) {
                const double d = (double)p[i] - t[i];
                s[0] += d * d;
                count++;
            }
        }
    }
    *(mse_part *)slot = (mse_part){((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])), count};
}

/* g = scale·(p - t) on the selected elements of [i0, i1), 0 on the others. */
static void mse_grad_chunk(const void *arg, void *slot, int64_t i0, int64_t i1)
{
    (void)slot;
    const mse_args *a = arg;
    const float *p = a->p, *t = a->t, *m = a->m;
    const float scale = a->scale;
    float *g = a->g;
    if (!m) {
        for (int64_t i = i0; i < i1; i++)
            g[i] = scale * (p[i] - t[i]);
    } else {
        for (int64_t i = i0; i < i1; i++)
            g[i] = m[i] > 0.5f ? scale * (p[i] - t[i]) : 0.0f;
    }
}

static rm_status mse_forward(rm_ctx *ctx, const char *op, const rm_tensor *pred, const rm_tensor *target,
                             const rm_tensor *mask, float *loss)
{
    RM_TRY(mse_check(ctx, op, pred, target, mask));
    if (!loss)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: loss is NULL", op);

    const int64_t n = rm_tensor_numel(pred), chunks = chunk_count(n);
    const mse_args a = {.p = pred->data, .t = target->data, .m = mask ? mask->data : NULL};
    const mse_part *part = chunk_reduce(ctx, n, sizeof *part, mse_chunk, &a);
    if (!part)
        return RM_ERR_NOMEM;

    double sum = 0.0;
    int64_t count = 0;
    for (int64_t k = 0; k < chunks; k++) {
        sum += part[k].sum;
        count += part[k].count;
    }
    *loss = count > 0 ? (float)(sum / (double)count) : 0.0f;
    return RM_OK;
}

static rm_status mse_backward(rm_ctx *ctx, const char *op, const rm_tensor *pred, const rm_tensor *target,
                              const rm_tensor *mask, float dloss, rm_tensor *dpred)
{
    RM_TRY(mse_check(ctx, op, pred, target, mask));
    if (!dpred)
        return RM_OK;
    char name[32];
    snprintf(name, sizeof name, "%s: dpred", op);
    RM_TRY(rm_check_shape(ctx, dpred, name, pred->ne));

    const int64_t n = rm_tensor_numel(pred);
    const int64_t count = mask_count(ctx, mask, n);
    const float scale = count > 0 ? (float)(2.0 * (double)dloss / (double)count) : 0.0f;
    /* dpred may be any input: each element is read before it is written. */
    const mse_args a = {pred->data, target->data, mask ? mask->data : NULL, scale, dpred->data};
    for_each_chunk(ctx, n, NULL, 0, mse_grad_chunk, &a);
    return RM_OK;
}

rm_status rm_mse_forward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, float *loss)
{
    return mse_forward(ctx, "mse", pred, target, NULL, loss);
}

rm_status rm_mse_backward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, float dloss, rm_tensor *dpred)
{
    return mse_backward(ctx, "mse", pred, target, NULL, dloss, dpred);
}

rm_status rm_masked_mse_forward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, const rm_tensor *mask,
                                float *loss)
{
    return mse_forward(ctx, "masked mse", pred, target, mask, loss);
}

rm_status rm_masked_mse_backward(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, const rm_tensor *mask,
                                 float dloss, rm_tensor *dpred)
{
    return mse_backward(ctx, "masked mse", pred, target, mask, dloss, dpred);
}
