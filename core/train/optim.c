/* Adam and AdamW over a model's trainable parameters, and learning-rate schedules.
 *
 * The update follows PyTorch 1.13's single-tensor Adam/AdamW operation by operation, in float32, with the
 * step-dependent factors (bias corrections, step size) computed in double once per step and rounded to float, as
 * PyTorch's Python scalars are when they meet a float tensor. Each element's update reads and writes only that
 * element, so splitting the elements over threads cannot change a bit.
 */
#include "base/internal.h"
#include "repmode/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- configuration --------------------------------------------------------------------------------------- */

rm_optim_config rm_optim_adam_official(void)
{
    rm_optim_config c = {.kind = RM_OPTIM_ADAM, .lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                         .weight_decay = 0.0f};
    return c;
}

rm_optim_config rm_optim_adamw_default(void)
{
    rm_optim_config c = {.kind = RM_OPTIM_ADAMW, .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                         .weight_decay = 0.01f};
    return c;
}

rm_status rm_optim_config_validate(rm_ctx *ctx, const rm_optim_config *cfg)
{
    if (!cfg)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: config is NULL");
    if (cfg->kind != RM_OPTIM_ADAM && cfg->kind != RM_OPTIM_ADAMW)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: kind %d is unknown", (int)cfg->kind);
    /* Written so that NaN fails every check. */
    if (!(cfg->lr >= 0.0f) || isinf(cfg->lr))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: lr = %g must be finite and >= 0", (double)cfg->lr);
    if (!(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: beta1 = %g is outside [0, 1)", (double)cfg->beta1);
    if (!(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: beta2 = %g is outside [0, 1)", (double)cfg->beta2);
    if (!(cfg->eps > 0.0f) || isinf(cfg->eps))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: eps = %g must be finite and > 0", (double)cfg->eps);
    if (!(cfg->weight_decay >= 0.0f) || isinf(cfg->weight_decay))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: weight_decay = %g must be finite and >= 0",
                       (double)cfg->weight_decay);
    return RM_OK;
}

/* ---- which parameters decay -------------------------------------------------------------------------------- */

/* Whether the dot-separated component starting at s is exactly `word`. */
static int component_is(const char *s, const char *word)
{
    const size_t n = strlen(word);
    return strncmp(s, word, n) == 0 && (s[n] == '.' || s[n] == '\0');
}

int rm_optim_decays(const char *name)
{
    if (!name)
        return 0;
    const char *prev = NULL; /* the component before `c` */
    for (const char *c = name;;) {
        const char *dot = strchr(c, '.');
        const int last = dot == NULL;
        if (component_is(c, "gate"))
            return 0; /* gate.weight, gate.bias */
        if (last && component_is(c, "bias"))
            return 0; /* every bias, BatchNorm's and FReLU's (activation.bias) included */
        /* BatchNorm: subsequent_layer.0.* in a MoDE layer, conv_down.1.* and convt.1.* in a down/up block. */
        if (prev && (component_is(prev, "subsequent_layer") && component_is(c, "0")))
            return 0;
        if (prev && (component_is(prev, "conv_down") || component_is(prev, "convt")) && component_is(c, "1"))
            return 0;
        if (last)
            return 1;
        prev = c;
        c = dot + 1;
    }
}

/* ---- the optimizer ------------------------------------------------------------------------------------------ */

typedef struct rm_optim_slot {
    rm_param *param;
    size_t offset; /* of its first element in m and v */
    int decay;
} rm_optim_slot;

struct rm_optim {
    rm_model *model;
    rm_optim_config cfg;
    int64_t step;
    rm_optim_slot *slots; /* the trainable parameters, in rm_model_param order */
    size_t n_slots;
    size_t n;     /* trainable scalars */
    float *state; /* m (n floats), then v (n floats) */
};

rm_status rm_optim_create(rm_ctx *ctx, rm_model *model, const rm_optim_config *cfg, rm_optim **out)
{
    if (!out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: out is NULL");
    *out = NULL;
    if (!model)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: model is NULL");
    RM_TRY(rm_optim_config_validate(ctx, cfg));

    const size_t n_params = rm_model_n_params(model);
    size_t n_slots = 0, n = 0;
    for (size_t i = 0; i < n_params; i++) {
        const rm_param *p = rm_model_param(model, i);
        if (p->trainable) {
            n_slots++;
            n += (size_t)p->numel;
        }
    }
    if (n_slots == 0)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: the model has no trainable parameters");

    rm_optim *o = rm_calloc(1, sizeof *o);
    if (o) {
        o->slots = rm_calloc(n_slots, sizeof *o->slots);
        o->state = rm_calloc(2 * n, sizeof *o->state);
    }
    if (!o || !o->slots || !o->state) {
        rm_optim_free(o);
        return rm_fail(ctx, RM_ERR_NOMEM, "optim: cannot allocate the moments of %zu parameters", n);
    }
    o->model = model;
    o->cfg = *cfg;
    o->n_slots = n_slots;
    o->n = n;
    size_t k = 0, offset = 0;
    for (size_t i = 0; i < n_params; i++) {
        rm_param *p = rm_model_param(model, i);
        if (!p->trainable)
            continue;
        o->slots[k].param = p;
        o->slots[k].offset = offset;
        o->slots[k].decay = rm_optim_decays(p->name);
        offset += (size_t)p->numel;
        k++;
    }
    *out = o;
    return RM_OK;
}

void rm_optim_free(rm_optim *opt)
{
    if (!opt)
        return;
    rm_dealloc(opt->slots);
    rm_dealloc(opt->state);
    rm_dealloc(opt);
}

const rm_optim_config *rm_optim_get_config(const rm_optim *opt) { return opt ? &opt->cfg : NULL; }

int64_t rm_optim_step_count(const rm_optim *opt) { return opt ? opt->step : 0; }

rm_status rm_optim_set_step(rm_ctx *ctx, rm_optim *opt, int64_t step)
{
    if (!opt)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: optimizer is NULL");
    if (step < 0)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: step count %lld is negative", (long long)step);
    opt->step = step;
    return RM_OK;
}

float *rm_optim_moments(rm_optim *opt, rm_optim_moment which, size_t *n)
{
    if (n)
        *n = 0;
    if (!opt || (which != RM_OPTIM_EXP_AVG && which != RM_OPTIM_EXP_AVG_SQ))
        return NULL;
    if (n)
        *n = opt->n;
    return which == RM_OPTIM_EXP_AVG ? opt->state : opt->state + opt->n;
}

/* The factors of one step, each as the float PyTorch's kernels would use. */
typedef struct rm_adam_factors {
    float beta1, one_minus_beta1, beta2, one_minus_beta2;
    float neg_step_size; /* −lr / (1 − β1^t) */
    float bc2_sqrt;      /* √(1 − β2^t) */
    float eps;
    float shrink; /* AdamW, decaying parameters: 1 − lr·wd; else 1 */
    float l2;     /* Adam, decaying parameters: wd; else 0 */
} rm_adam_factors;

/* One tensor's update, elements [begin, end): the operations of PyTorch's _single_tensor_adam(w) in their order. */
static void adam_update(float *restrict theta, const float *restrict grad, float *restrict m, float *restrict v,
                        int64_t begin, int64_t end, const rm_adam_factors *f)
{
    const rm_adam_factors c = *f;
    for (int64_t i = begin; i < end; i++) {
        const float t = theta[i] * c.shrink;        /* param.mul_(1 − lr·wd) */
        const float g = grad[i] + c.l2 * t;         /* grad.add(param, alpha = wd) */
        const float mi = m[i] * c.beta1 + c.one_minus_beta1 * g;       /* exp_avg.mul_(β1).add_(g, 1 − β1) */
        const float vi = v[i] * c.beta2 + c.one_minus_beta2 * g * g;   /* exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2) */
        const float denom = sqrtf(vi) / c.bc2_sqrt + c.eps;             /* (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps) */
        m[i] = mi;
        v[i] = vi;
        theta[i] = t + c.neg_step_size * mi / denom;                    /* param.addcdiv_(exp_avg, denom, −step) */
    }
}

/* The factors of step t for a tensor stepped at learning rate lr (the step's rate times the tensor's lr_scale, as a
 * PyTorch parameter group of that rate would be), bc1 = 1 − β1^t, bc2 = 1 − β2^t; `decay`: rm_optim_decays. */
static rm_adam_factors adam_factors(const rm_optim_config *cfg, double lr, double bc1, double bc2, int decay)
{
    rm_adam_factors f = {
        .beta1 = cfg->beta1,
        .one_minus_beta1 = (float)(1.0 - (double)cfg->beta1),
        .beta2 = cfg->beta2,
        .one_minus_beta2 = (float)(1.0 - (double)cfg->beta2),
        .neg_step_size = (float)(-lr / bc1),
        .bc2_sqrt = (float)sqrt(bc2),
        .eps = cfg->eps,
        .shrink = 1.0f,
        .l2 = 0.0f,
    };
    if (decay && cfg->weight_decay > 0.0f) {
        if (cfg->kind == RM_OPTIM_ADAMW)
            f.shrink = (float)(1.0 - lr * (double)cfg->weight_decay);
        else
            f.l2 = cfg->weight_decay;
    }
    return f;
}

rm_status rm_optim_step(rm_ctx *ctx, rm_optim *opt, float lr)
{
    if (!opt)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: optimizer is NULL");
    if (!(lr >= 0.0f) || isinf(lr))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: lr = %g must be finite and >= 0", (double)lr);
    for (size_t k = 0; k < opt->n_slots; k++)
        if (!opt->slots[k].param->grad)
            return rm_fail(ctx, RM_ERR_ARGUMENT,
                           "optim: parameter %s has no gradient yet (run a training forward and backward first)",
                           opt->slots[k].param->name);
    if (opt->step == INT64_MAX)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: the step count cannot grow further");

    for (size_t k = 0; k < opt->n_slots; k++) {
        const float scale = opt->slots[k].param->lr_scale;
        if (!(scale >= 0.0f) || isinf(scale))
            return rm_fail(ctx, RM_ERR_ARGUMENT, "optim: parameter %s has lr_scale %g; it must be finite and >= 0",
                           opt->slots[k].param->name, (double)scale);
    }

    const rm_optim_config *cfg = &opt->cfg;
    const int64_t t = opt->step + 1;
    const double bc1 = 1.0 - pow((double)cfg->beta1, (double)t);
    const double bc2 = 1.0 - pow((double)cfg->beta2, (double)t);
    float *m = opt->state, *v = opt->state + opt->n;
    const rm_optim_slot *slots = opt->slots;
    const size_t n_slots = opt->n_slots;
    /* One parallel region; every tensor's elements are split evenly over the threads. */
    #pragma omp parallel num_threads(ctx->n_threads)
    {
        for (size_t k = 0; k < n_slots; k++) {
            const rm_optim_slot *s = &slots[k];
            /* lr·1 is lr exactly: a scale of 1 steps as before scales existed. */
            const rm_adam_factors f = adam_factors(cfg, (double)lr * (double)s->param->lr_scale, bc1, bc2, s->decay);
            const int64_t numel = s->param->numel;
            #pragma omp for schedule(static) nowait
            for (int64_t b = 0; b < numel; b += 4096)
                adam_update(s->param->data, s->param->grad, m + s->offset, v + s->offset, b,
                            b + 4096 < numel ? b + 4096 : numel, &f);
        }
    }
    opt->step = t;
    return RM_OK;
}

/* ---- learning-rate schedules -------------------------------------------------------------------------------- */

rm_schedule rm_schedule_constant(void)
{
    rm_schedule s = {.kind = RM_SCHEDULE_CONSTANT, .warmup_steps = 0, .total_steps = 0, .floor_ratio = 1.0f};
    return s;
}

rm_schedule rm_schedule_warmup_cosine(int64_t warmup_steps, int64_t total_steps, float floor_ratio)
{
    rm_schedule s = {.kind = RM_SCHEDULE_WARMUP_COSINE, .warmup_steps = warmup_steps, .total_steps = total_steps,
                     .floor_ratio = floor_ratio};
    return s;
}

rm_status rm_schedule_validate(rm_ctx *ctx, const rm_schedule *sched)
{
    if (!sched)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "schedule is NULL");
    if (sched->kind == RM_SCHEDULE_CONSTANT)
        return RM_OK;
    if (sched->kind != RM_SCHEDULE_WARMUP_COSINE)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "schedule: kind %d is unknown", (int)sched->kind);
    if (sched->warmup_steps < 0)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "schedule: warmup_steps = %lld is negative",
                       (long long)sched->warmup_steps);
    const int64_t min_total = (sched->warmup_steps > 1 ? sched->warmup_steps : 1) + 1;
    if (sched->total_steps < min_total)
        return rm_fail(ctx, RM_ERR_ARGUMENT,
                       "schedule: total_steps = %lld leaves no decay after %lld warm-up steps (needs >= %lld)",
                       (long long)sched->total_steps, (long long)sched->warmup_steps, (long long)min_total);
    if (!(sched->floor_ratio >= 0.0f && sched->floor_ratio <= 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "schedule: floor_ratio = %g is outside [0, 1]",
                       (double)sched->floor_ratio);
    return RM_OK;
}

float rm_schedule_lr(const rm_schedule *sched, float base_lr, int64_t step)
{
    if (!sched || sched->kind != RM_SCHEDULE_WARMUP_COSINE)
        return base_lr;
    const double base = base_lr;
    const double floor = base * (double)sched->floor_ratio;
    const int64_t w = sched->warmup_steps > 0 ? sched->warmup_steps : 0;
    const int64_t s = step > 0 ? step : 0;
    if (s < w)
        return (float)(base * (double)(s + 1) / (double)w);
    const int64_t s0 = w > 1 ? w - 1 : 0;
    const int64_t span = sched->total_steps - 1 - s0;
    if (span <= 0 || s >= s0 + span)
        return (float)floor;
    const double progress = (double)(s - s0) / (double)span;
    return (float)(floor + (base - floor) * 0.5 * (1.0 + cos(M_PI * progress)));
}
