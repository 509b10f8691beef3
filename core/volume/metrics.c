/* Evaluation metrics: MSE, MAE, R², Pearson r (and SSIM, from ssim.c) for regression tasks; F0.5, Dice, precision,
 * recall, ROC AUC for binary tasks (see include/repmode/metrics.h).
 *
 * Every pass cuts the tensor into chunks of a fixed size whose sums go into their own slots, in double (counts in
 * int64), added in chunk order afterwards: the results are the same for any thread count. The first pass also
 * validates the values it reads and remembers the first bad element of each chunk, so the error names the first
 * bad element of the tensor whatever the thread count. Regression needs two passes (the means first, then the
 * centred sums, which keeps R² and Pearson accurate when the mean is large compared to the spread). The AUC sorts
 * the positives' and the negatives' scores apart and counts, for each positive, the negatives below it and half
 * the negatives equal to it: the Mann–Whitney U in O(n log n). The best threshold sweeps the same sorted arrays from
 * the top, one distinct value at a time.
 */
#include "base/chunks.h"
#include "repmode/metrics.h"
#include "volume/ssim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* What is wrong with the first bad element of a chunk. */
typedef enum bad_kind {
    BAD_NONE = 0,
    BAD_MASK_NAN,
    BAD_PRED_NAN,
    BAD_PRED_INF,
    BAD_TARGET_NAN,
    BAD_TARGET_INF,
} bad_kind;

typedef struct bad_value {
    int64_t index;
    bad_kind kind;
} bad_value;

/* 1 when element i is selected, 0 when it is not, -1 (recorded in *bad) when the mask or a selected value is not
 * usable. */
static inline int select_checked(const float *p, const float *t, const float *m, int64_t i, bad_value *bad)
{
    bad_kind kind;
    if (m && isnan(m[i]))
        kind = BAD_MASK_NAN;
    else if (m && !(m[i] > 0.5f))
        return 0;
    else if (!isfinite(p[i]))
        kind = isnan(p[i]) ? BAD_PRED_NAN : BAD_PRED_INF;
    else if (!isfinite(t[i]))
        kind = isnan(t[i]) ? BAD_TARGET_NAN : BAD_TARGET_INF;
    else
        return 1;
    bad->kind = kind;
    bad->index = i;
    return -1;
}

/* The first bad value over the chunks, in element order, as an error; RM_OK when there is none. `bad` is the first
 * chunk's record, and the records of the following chunks are `stride` bytes apart. */
static rm_status report_bad(rm_ctx *ctx, const char *what, const char *pred_name, const bad_value *bad,
                            size_t stride, int64_t chunks)
{
    for (int64_t k = 0; k < chunks; k++) {
        const bad_value *b = (const bad_value *)((const char *)bad + (size_t)k * stride);
        if (b->kind == BAD_NONE)
            continue;
        const char *tensor = b->kind == BAD_MASK_NAN                                 ? "mask"
                             : b->kind == BAD_PRED_NAN || b->kind == BAD_PRED_INF ? pred_name
                                                                                   : "target";
        const char *value = b->kind == BAD_PRED_INF || b->kind == BAD_TARGET_INF ? "an infinite value" : "a NaN";
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: %s has %s at element %lld", what, tensor, value,
                       (long long)b->index);
    }
    return RM_OK;
}

static rm_status check_inputs(rm_ctx *ctx, const char *what, const char *pred_name, const rm_tensor *pred,
                              const rm_tensor *target, const rm_tensor *mask, const void *out)
{
    char name[64];
    snprintf(name, sizeof name, "%s: %s", what, pred_name);
    RM_TRY(rm_check_tensor(ctx, pred, name));
    snprintf(name, sizeof name, "%s: target", what);
    RM_TRY(rm_check_shape(ctx, target, name, pred->ne));
    if (mask) {
        snprintf(name, sizeof name, "%s: mask", what);
        RM_TRY(rm_check_shape(ctx, mask, name, pred->ne));
    }
    if (!out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: out is NULL", what);
    return RM_OK;
}

/* ---- regression ---------------------------------------------------------------------------------------------- */

typedef struct reg_part {
    bad_value bad;                /* first pass: the first bad element */
    int64_t count;                /* first pass: selected voxels */
    double sp, st;                /* first pass: Σp, Σt */
    float pmin, pmax, tmin, tmax; /* first pass: the ranges, to tell constant sides exactly */
    double se, ae;                /* second pass: Σ(p − t)², Σ|p − t| */
    double pp, tt, pt;            /* second pass: Σ(p − p̄)², Σ(t − t̄)², Σ(p − p̄)(t − t̄) */
} reg_part;

/* What the chunks of the two passes read. */
typedef struct reg_args {
    const float *p, *t, *m;
    double pmean, tmean; /* second pass */
} reg_args;

static void reg_first(const void *arg, void *slot, int64_t i0, int64_t i1)
{
    const reg_args *a = arg;
    const float *p = a->p, *t = a->t, *m = a->m;
    reg_part *r = slot;
    r->bad = (bad_value){-1, BAD_NONE};
    r->count = 0;
    r->sp = r->st = 0.0;
    r->pmin = r->tmin = INFINITY;
    r->pmax = r->tmax = -INFINITY;
    for (int64_t i = i0; i < i1; i++) {
        const int selected = select_checked(p, t, m, i, &r->bad);
        if (selected < 0)
            return;
        if (!selected)
            continue;
        r->count++;
        r->sp += p[i];
        r->st += t[i];
        r->pmin = fminf(r->pmin, p[i]);
        r->pmax = fmaxf(r->pmax, p[i]);
        r->tmin = fminf(r->tmin, t[i]);
        r->tmax = fmaxf(r->tmax, t[i]);
    }
}

static void reg_second(const void *arg, void *slot, int64_t i0, int64_t i1)
{
    const reg_args *a = arg;
    const float *p = a->p, *t = a->t, *m = a->m;
    const double pmean = a->pmean, tmean = a->tmean;
    reg_part *r = slot;
    double se = 0.0, ae = 0.0, pp = 0.0, tt = 0.0, pt = 0.0;
    for (int64_t i = i0; i < i1; i++) {
        if (m && !(m[i] > 0.5f))
            continue;
        const double d = (double)p[i] - t[i];
        const double dp = p[i] - pmean, dt = t[i] - tmean;
        se += d * d;
        ae += fabs(d);
        pp += dp * dp;
        tt += dt * dt;
        pt += dp * dt;
    }
    r->se = se;
    r->ae = ae;
    r->pp = pp;
    r->tt = tt;
    r->pt = pt;
}

rm_status rm_regression_metrics_compute(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target,
                                        const rm_tensor *mask, rm_regression_metrics *out)
{
    static const char what[] = "regression metrics";
    RM_TRY(check_inputs(ctx, what, "pred", pred, target, mask, out));

    const int64_t n = rm_tensor_numel(pred), chunks = chunk_count(n);
    reg_args a = {.p = pred->data, .t = target->data, .m = mask ? mask->data : NULL};
    reg_part *part = chunk_reduce(ctx, n, sizeof *part, reg_first, &a);
    if (!part)
        return RM_ERR_NOMEM;
    RM_TRY(report_bad(ctx, what, "pred", &part[0].bad, sizeof *part, chunks));

    int64_t count = 0;
    double sp = 0.0, st = 0.0;
    float pmin = INFINITY, pmax = -INFINITY, tmin = INFINITY, tmax = -INFINITY;
    for (int64_t k = 0; k < chunks; k++) {
        count += part[k].count;
        sp += part[k].sp;
        st += part[k].st;
        pmin = fminf(pmin, part[k].pmin);
        pmax = fmaxf(pmax, part[k].pmax);
        tmin = fminf(tmin, part[k].tmin);
        tmax = fmaxf(tmax, part[k].tmax);
    }
    rm_regression_metrics r = {NAN, NAN, NAN, NAN, count, NAN, NAN};
    if (count == 0) {
        *out = r;
        return RM_OK;
    }

    a.pmean = sp / (double)count;
    a.tmean = st / (double)count;
    for_each_chunk(ctx, n, part, sizeof *part, reg_second, &a);
    double se = 0.0, ae = 0.0, pp = 0.0, tt = 0.0, pt = 0.0;
    for (int64_t k = 0; k < chunks; k++) {
        se += part[k].se;
        ae += part[k].ae;
        pp += part[k].pp;
        tt += part[k].tt;
        pt += part[k].pt;
    }

    const int p_constant = pmin == pmax, t_constant = tmin == tmax;
    r.mse = se / (double)count;
    r.mae = ae / (double)count;
    /* sklearn's r2_score (force_finite): a constant target has no variance to explain. */
    r.r2 = t_constant ? (se == 0.0 ? 1.0 : 0.0) : 1.0 - se / tt;
    if (p_constant || t_constant || pp == 0.0 || tt == 0.0) {
        r.pearson = 0.0;
    } else {
        const double c = pt / sqrt(pp * tt);
        r.pearson = c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c; /* rounding can step just outside [−1, 1] */
    }
    r.ssim_range = (double)tmax - (double)tmin;
    /* The selected values are checked already; SSIM's windows read the others too. */
    if (!t_constant && rm_tensor_census(pred).nonfinite == 0 && rm_tensor_census(target).nonfinite == 0)
        RM_TRY(rm_ssim_checked(ctx, pred, target, mask, r.ssim_range, &r.ssim));
    *out = r;
    return RM_OK;
}

/* ---- binary -------------------------------------------------------------------------------------------------- */

typedef struct bin_part {
    bad_value bad;
    int64_t tp, fp, fn, tn;
    int64_t pos_at, neg_at; /* where this chunk's positive and negative scores start in the AUC's arrays */
} bin_part;

/* What the chunks of the binary calls read, and the score arrays the split fills. */
typedef struct bin_args {
    const float *p, *t, *m;
    float threshold;
    float *pos, *neg;
} bin_args;

static void bin_count(const void *arg, void *slot, int64_t i0, int64_t i1)
{
    const bin_args *a = arg;
    const float *p = a->p, *t = a->t, *m = a->m;
    const float threshold = a->threshold;
    bin_part *b = slot;
    b->bad = (bad_value){-1, BAD_NONE};
    int64_t tp = 0, fp = 0, fn = 0, tn = 0;
    for (int64_t i = i0; i < i1; i++) {
        const int selected = select_checked(p, t, m, i, &b->bad);
        if (selected < 0)
            break;
        if (!selected)
            continue;
        const int pos = t[i] > 0.5f, hit = p[i] > threshold;
        tp += pos && hit;
        fp += !pos && hit;
        fn += pos && !hit;
        tn += !pos && !hit;
    }
    b->tp = tp;
    b->fp = fp;
    b->fn = fn;
    b->tn = tn;
}

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* ROC AUC from the sorted scores of the positives and the negatives: for each run of equal positive scores, the
 * negatives strictly below count 1 and the equal ones ½. The counts are integers, exact in double up to 2^53. */
static double auc_sorted(const float *pos, int64_t npos, const float *neg, int64_t nneg)
{
    double u = 0.0;
    int64_t below = 0; /* negatives < the current positive score */
    for (int64_t i = 0; i < npos;) {
        const float v = pos[i];
        int64_t run = 1;
        while (i + run < npos && pos[i + run] == v)
            run++;
        while (below < nneg && neg[below] < v)
            below++;
        int64_t equal = 0;
        while (below + equal < nneg && neg[below + equal] == v)
            equal++;
        u += (double)run * ((double)below + 0.5 * (double)equal);
        i += run;
    }
    return u / ((double)npos * (double)nneg);
}

/* Copies the chunk's selected scores into pos and neg, in element order, at the offsets in its slot. */
static void split_chunk(const void *arg, void *slot, int64_t i0, int64_t i1)
{
    const bin_args *a = arg;
    const float *p = a->p, *t = a->t, *m = a->m;
    float *pos = a->pos, *neg = a->neg;
    int64_t op = ((const bin_part *)slot)->pos_at, on = ((const bin_part *)slot)->neg_at;
    for (int64_t i = i0; i < i1; i++) {
        if (m && !(m[i] > 0.5f))
            continue;
        if (t[i] > 0.5f)
            pos[op++] = p[i];
        else
            neg[on++] = p[i];
    }
}

/* The binary calls' first pass, on checked arguments: checks every selected value, counts each chunk at `threshold`
 * and sets each chunk's offsets into the positives' and negatives' score arrays. *parts is the context's workspace;
 * *totals gets tp, fp, fn, tn and count. */
static rm_status bin_pass(rm_ctx *ctx, const char *what, const rm_tensor *prob, const rm_tensor *target,
                          const rm_tensor *mask, float threshold, bin_part **parts, rm_binary_metrics *totals)
{
    const int64_t n = rm_tensor_numel(prob), nc = chunk_count(n);
    const bin_args a = {.p = prob->data, .t = target->data, .m = mask ? mask->data : NULL, .threshold = threshold};
    bin_part *part = chunk_reduce(ctx, n, sizeof *part, bin_count, &a);
    if (!part)
        return RM_ERR_NOMEM;
    RM_TRY(report_bad(ctx, what, "prob", &part[0].bad, sizeof *part, nc));

    rm_binary_metrics r = {0};
    for (int64_t k = 0; k < nc; k++) {
        part[k].pos_at = r.tp + r.fn;
        part[k].neg_at = r.fp + r.tn;
        r.tp += part[k].tp;
        r.fp += part[k].fp;
        r.fn += part[k].fn;
        r.tn += part[k].tn;
    }
    r.count = r.tp + r.fp + r.fn + r.tn;
    *parts = part;
    *totals = r;
    return RM_OK;
}

/* The selected scores, the positives' in [0, npos) and the negatives' after them, each sorted in ascending order;
 * NULL (with the error set) when out of memory. Release with free. */
static float *sorted_scores(rm_ctx *ctx, const char *what, const rm_tensor *prob, const rm_tensor *target,
                            const rm_tensor *mask, bin_part *part, int64_t npos, int64_t nneg)
{
    float *scores = rm_malloc((size_t)(npos + nneg) * sizeof *scores);
    if (!scores) {
        rm_fail(ctx, RM_ERR_NOMEM, "%s: cannot allocate %lld scores", what, (long long)(npos + nneg));
        return NULL;
    }
    const bin_args a = {.p = prob->data, .t = target->data, .m = mask ? mask->data : NULL, .pos = scores,
                        .neg = scores + npos};
    for_each_chunk(ctx, rm_tensor_numel(prob), part, sizeof *part, split_chunk, &a);
    qsort(scores, (size_t)npos, sizeof *scores, cmp_float);
    qsort(scores + npos, (size_t)nneg, sizeof *scores, cmp_float);
    return scores;
}

/* F0.5 as rm_binary_metrics defines it. Every term is a multiple of ¼ of an integer count, exact in double, so
 * only the division rounds: equal ratios give equal values, which makes ties exact. */
static double f05_of(int64_t tp, int64_t fp, int64_t fn)
{
    if (tp == 0 && fp == 0 && fn == 0)
        return 1.0;
    return 1.25 * (double)tp / (1.25 * (double)tp + 0.25 * (double)fn + (double)fp);
}

rm_status rm_binary_metrics_compute(rm_ctx *ctx, const rm_tensor *prob, const rm_tensor *target,
                                    const rm_tensor *mask, float threshold, rm_binary_metrics *out)
{
    static const char what[] = "binary metrics";
    RM_TRY(check_inputs(ctx, what, "prob", prob, target, mask, out));
    if (!(threshold >= 0.0f && threshold <= 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: threshold %g is outside [0, 1]", what, (double)threshold);
    bin_part *part;
    rm_binary_metrics r;
    RM_TRY(bin_pass(ctx, what, prob, target, mask, threshold, &part, &r));

    const double tp = (double)r.tp, fp = (double)r.fp, fn = (double)r.fn;
    const int both_empty = r.tp == 0 && r.fp == 0 && r.fn == 0;
    const double empty = both_empty ? 1.0 : 0.0;
    r.precision = r.tp + r.fp > 0 ? tp / (tp + fp) : empty;
    r.recall = r.tp + r.fn > 0 ? tp / (tp + fn) : empty;
    r.dice = both_empty ? 1.0 : 2.0 * tp / (2.0 * tp + fp + fn);
    r.f05 = f05_of(r.tp, r.fp, r.fn);

    const int64_t npos = r.tp + r.fn, nneg = r.fp + r.tn;
    r.auc = NAN;
    if (npos > 0 && nneg > 0) {
        float *scores = sorted_scores(ctx, what, prob, target, mask, part, npos, nneg);
        if (!scores)
            return RM_ERR_NOMEM;
        r.auc = auc_sorted(scores, npos, scores + npos, nneg);
        rm_dealloc(scores);
    }
    *out = r;
    return RM_OK;
}

/* ---- the best threshold -------------------------------------------------------------------------------------- */

/* The threshold of the cut between the distinct values lo < hi (hi = +∞: nothing above the cut; lo = −∞: nothing
 * below), or NaN when no threshold in [0, 1] makes it, i.e. when the threshold is not in [lo, hi). */
static float cut_threshold(float lo, float hi)
{
    float t;
    if (hi == INFINITY) {
        t = 1.0f;
    } else if (lo == -INFINITY) {
        t = 0.0f;
    } else {
        t = (float)(((double)lo + (double)hi) / 2.0);
        if (!(t < hi)) /* adjacent floats: the midpoint rounded up to hi */
            t = lo;
        t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
    }
    return lo <= t && t < hi ? t : NAN;
}

/* The F0.5-best cut of the ascending positives' and negatives' scores: a sweep from the top, each step moving every
 * voxel of the next distinct value into the predicted positives. The first cut is the highest threshold, and only a
 * strictly better F0.5 replaces the best, so ties keep the highest threshold. */
static rm_best_threshold sweep_cuts(const float *pos, int64_t npos, const float *neg, int64_t nneg)
{
    rm_best_threshold best = {NAN, -1.0, npos + nneg};
    int64_t i = npos, j = nneg, tp = 0, fp = 0; /* pos[0, i) and neg[0, j) are below the cut */
    float hi = INFINITY;
    for (;;) {
        const float lo = i > 0 && (j == 0 || pos[i - 1] >= neg[j - 1]) ? pos[i - 1]
                         : j > 0                                         ? neg[j - 1]
                                                                         : -INFINITY;
        const float t = cut_threshold(lo, hi);
        const double f = f05_of(tp, fp, npos - tp);
        if (!isnan(t) && f > best.f05) {
            best.threshold = t;
            best.f05 = f;
        }
        if (lo == -INFINITY)
            return best; /* some cut always has a threshold in [0, 1], so best is set */
        while (i > 0 && pos[i - 1] == lo)
            i--, tp++;
        while (j > 0 && neg[j - 1] == lo)
            j--, fp++;
        hi = lo;
    }
}

rm_status rm_binary_best_threshold(rm_ctx *ctx, const rm_tensor *prob, const rm_tensor *target,
                                   const rm_tensor *mask, rm_best_threshold *out)
{
    static const char what[] = "best threshold";
    RM_TRY(check_inputs(ctx, what, "prob", prob, target, mask, out));
    bin_part *part;
    rm_binary_metrics r;
    /* Any threshold: the pass is for the checks and each chunk's positives (tp + fn) and negatives (fp + tn). */
    RM_TRY(bin_pass(ctx, what, prob, target, mask, RM_BINARY_THRESHOLD, &part, &r));
    const int64_t npos = r.tp + r.fn, nneg = r.fp + r.tn;
    float *scores = NULL;
    if (r.count > 0 && !(scores = sorted_scores(ctx, what, prob, target, mask, part, npos, nneg)))
        return RM_ERR_NOMEM;
    *out = sweep_cuts(scores, npos, scores ? scores + npos : NULL, nneg);
    rm_dealloc(scores);
    return RM_OK;
}
