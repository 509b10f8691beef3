/* The loss of binary tasks, ½·(soft BCE + Dice) from logits, with masks and its gradient.
 *
 * Same determinism scheme as loss.c: the tensor is cut into chunks of a fixed size, each chunk's sums go into its
 * own slot in double, and the slots are added in order afterwards. The partial sums do not depend on which thread
 * computed them, so every result is bit-identical on any number of threads. The backwards need the forward's sums
 * (the selected count, and for Dice Σp·t, Σp, Σt), so they run the same reduction first, then one elementwise pass.
 */
#include "base/chunks.h"
#include "repmode/ops.h"

#include <math.h>

/* ---- binary loss: ½·(soft BCE + Dice) ------------------------------------------------------------------------ */

typedef struct binary_part {
    double bce; /* Σ max(x, 0) - x·t' + log1p(exp(-|x|)) */
    double pt;  /* Σ p·t */
    double p;   /* Σ p */
    double t;   /* Σ t */
    int64_t count;
} binary_part;

typedef struct binary_sums {
    double bce, dice; /* the two parts of the loss */
    double m;         /* selected voxels */
    double pt, s;     /* Σ p·t and Σ p + Σ t */
} binary_sums;

/* What the chunks read, and the gradient's g with the factors a, b, c that rm_binary_loss_backward defines. */
typedef struct binary_args {
    const float *x, *t, *m;
    double s;
    float a, b, c;
    float *g;
} binary_args;

static rm_status binary_check(rm_ctx *ctx, const rm_tensor *logits, const rm_tensor *target, const rm_tensor *mask,
                              float smoothing)
{
    RM_TRY(rm_check_tensor(ctx, logits, "binary loss: logits"));
    RM_TRY(rm_check_shape(ctx, target, "binary loss: target", logits->ne));
    if (mask)
        RM_TRY(rm_check_shape(ctx, mask, "binary loss: mask", logits->ne));
    /* A negated comparison, so NaN is rejected too. Above 0.5 the smoothing would swap the classes. */
    if (!(smoothing >= 0.0f && smoothing <= 0.5f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "binary loss: smoothing %g is outside [0, 0.5]", (double)smoothing);
    return RM_OK;
}

/* p = sigmoid(x) and e = exp(-|x|), with r = 1/(1 + e): p = r for x >= 0 and e·r below, 1 - p the other one, so
 * neither p nor 1 - p is ever formed by a cancelling subtraction, and no exponent overflows. */
static inline float sigmoid_e(float x, float *e_out, float *r_out)
{
    const float e = expf(-fabsf(x));
    const float r = 1.0f / (1.0f + e);
    *e_out = e;
    *r_out = r;
    return x >= 0.0f ? r : e * r;
}

static void binary_chunk(const void *arg, void *slot, int64_t i0, int64_t i1)
{
    const binary_args *a = arg;
    const float *x = a->x, *t = a->t, *m = a->m;
    const double s = a->s;
    binary_part b = {0.0, 0.0, 0.0, 0.0, 0};
    for (int64_t i = i0; i < i1; i++) {
        if (m && !(m[i] > 0.5f))
            continue;
        float e, r;
        const float p = sigmoid_e(x[i], &e, &r);
        const double ti = t[i];
        const double ts = ti * (1.0 - s) + (1.0 - ti) * s;
        /* The products in double: max(x, 0) - x·t' cancels for large x, and float rounding of x·t' would show. */
        b.bce += (double)fmaxf(x[i], 0.0f) - (double)x[i] * ts + (double)log1pf(e);
        b.pt += (double)p * ti;
        b.p += p;
        b.t += ti;
        b.count++;
    }
    *(binary_part *)slot = b;
}

static void binary_grad_chunk(const void *arg, void *slot, int64_t i0, int64_t i1)
{
    (void)slot;
    const binary_args *a = arg;
    const float *x = a->x, *t = a->t, *m = a->m;
    const float sm = (float)a->s, keep = 1.0f - sm, ga = a->a, gb = a->b, gc = a->c;
    float *g = a->g;
    for (int64_t i = i0; i < i1; i++) {
        if (m && !(m[i] > 0.5f)) {
            g[i] = 0.0f;
            continue;
        }
        float e, r;
        const float p = sigmoid_e(x[i], &e, &r);
        const float ti = t[i];
        const float ts = ti * keep + (1.0f - ti) * sm;
        g[i] = ga * (p - ts) + (gb - gc * ti) * (e * r * r);
    }
}

static rm_status binary_reduce(rm_ctx *ctx, const rm_tensor *logits, const rm_tensor *target, const rm_tensor *mask,
                               float smoothing, binary_sums *out)
{
    const int64_t n = rm_tensor_numel(logits), chunks = chunk_count(n);
    const binary_args a = {.x = logits->data, .t = target->data, .m = mask ? mask->data : NULL, .s = smoothing};
    const binary_part *part = chunk_reduce(ctx, n, sizeof *part, binary_chunk, &a);
    if (!part)
        return RM_ERR_NOMEM;

    binary_part sum = {0.0, 0.0, 0.0, 0.0, 0};
    for (int64_t k = 0; k < chunks; k++) {
        sum.bce += part[k].bce;
        sum.pt += part[k].pt;
        sum.p += part[k].p;
        sum.t += part[k].t;
        sum.count += part[k].count;
    }
    out->m = (double)sum.count;
    out->pt = sum.pt;
    out->s = sum.p + sum.t;
    out->bce = sum.count > 0 ? sum.bce / out->m : 0.0;
    out->dice = 1.0 - (2.0 * sum.pt + RM_DICE_LAMBDA) / (out->s + RM_DICE_LAMBDA);
    return RM_OK;
}

rm_status rm_binary_loss_forward(rm_ctx *ctx, const rm_tensor *logits, const rm_tensor *target,
                                 const rm_tensor *mask, float smoothing, float *loss, float *bce, float *dice)
{
    RM_TRY(binary_check(ctx, logits, target, mask, smoothing));
    if (!loss)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "binary loss: loss is NULL");

    binary_sums s;
    RM_TRY(binary_reduce(ctx, logits, target, mask, smoothing, &s));
    *loss = (float)(0.5 * (s.bce + s.dice));
    if (bce)
        *bce = (float)s.bce;
    if (dice)
        *dice = (float)s.dice;
    return RM_OK;
}

rm_status rm_binary_loss_backward(rm_ctx *ctx, const rm_tensor *logits, const rm_tensor *target,
                                  const rm_tensor *mask, float smoothing, float dloss, rm_tensor *dlogits)
{
    RM_TRY(binary_check(ctx, logits, target, mask, smoothing));
    if (!dlogits)
        return RM_OK;
    RM_TRY(rm_check_shape(ctx, dlogits, "binary loss: dlogits", logits->ne));

    binary_sums s;
    RM_TRY(binary_reduce(ctx, logits, target, mask, smoothing, &s));

    /* g = a·(p − t') + (b − c·t)·p·(1 − p): the BCE term with a = ½·dloss/M, the Dice term with
     * b = ½·dloss·(2·Σp·t + λ)/(S + λ)² and c = ½·dloss·2/(S + λ), S = Σp + Σt. */
    const double half = 0.5 * (double)dloss, sl = s.s + RM_DICE_LAMBDA;
    binary_args a = {.x = logits->data, .t = target->data, .m = mask ? mask->data : NULL, .s = smoothing,
                     .g = dlogits->data};
    a.a = s.m > 0.0 ? (float)(half / s.m) : 0.0f;
    a.b = (float)(half * (2.0 * s.pt + RM_DICE_LAMBDA) / (sl * sl));
    a.c = (float)(half * 2.0 / sl);
    /* dlogits may be any input: each element is read before it is written. */
    for_each_chunk(ctx, rm_tensor_numel(logits), NULL, 0, binary_grad_chunk, &a);
    return RM_OK;
}
