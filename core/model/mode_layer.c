/* The MoDE layer: gate, merge and merge gradient. Every loop is split by output channel o: all that one o
 * touches (its kernels, its gate entries) belongs to it alone, so threads never share a sum. */
#include "model/mode_layer.h"
#include "base/rng.h"

#include <math.h>

/* Index of tap (a, b, c) in a 5³ kernel. */
static inline int tap5(int a, int b, int c)
{
    return (a * 5 + b) * 5 + c;
}

double rm_mode_gate_normal(uint64_t key, uint64_t counter)
{
    const uint64_t h = rm_mix64(key ^ rm_mix64(counter * RM_GOLDEN + UINT64_C(1)));
    /* u1 in (0, 1] keeps the logarithm finite. */
    return rm_box_muller(1.0 - rm_u01d(h), rm_u01d(rm_mix64(h + RM_GOLDEN)));
}

int rm_mode_uses_added(const rm_unit *u, int task)
{
    return u->expert[RM_EXPERT_ADDED] != NULL && task >= u->added_from;
}

int rm_mode_gate_rows(const rm_unit *u)
{
    return u->expert[RM_EXPERT_ADDED] ? RM_MAX_EXPERTS : RM_N_EXPERTS;
}

void rm_mode_gate(const rm_unit *u, int task, int n_tasks, float *g)
{
    rm_mode_gate_noisy(u, task, n_tasks, 0.0, 0, g);
}

void rm_mode_gate_noisy(const rm_unit *u, int task, int n_tasks, double sigma, uint64_t key, float *g)
{
    const int64_t co = u->co;
    const int used = rm_mode_uses_added(u, task) ? RM_MAX_EXPERTS : RM_N_EXPERTS;
    const float *w = u->gate_w->data, *b = u->gate_b->data;
    for (int64_t o = 0; o < co; o++) {
        double logit[RM_MAX_EXPERTS], top = -INFINITY, sum = 0.0;
        for (int e = 0; e < used; e++) {
            const int64_t row = e * co + o;
            logit[e] = (double)w[row * n_tasks + task] + (double)b[row];
            if (sigma > 0.0)
                logit[e] += sigma * rm_mode_gate_normal(key, (uint64_t)row);
            top = logit[e] > top ? logit[e] : top;
        }
        for (int e = 0; e < used; e++)
            sum += logit[e] = exp(logit[e] - top);
        for (int e = 0; e < used; e++)
            g[e * co + o] = (float)(logit[e] / sum);
        for (int e = used; e < rm_mode_gate_rows(u); e++)
            g[e * co + o] = 0.0f;
    }
}

/* Tap t of a centred k³ (k², planar) kernel as a tap of the 5³ (5²) kernel. */
static int embed_tap(int planar, int k, int t)
{
    const int off = (RM_MODE_KERNEL - k) / 2;
    if (planar)
        return (t / k + off) * RM_MODE_KERNEL + t % k + off;
    return tap5(t / (k * k) + off, t / k % k + off, t % k + off);
}

/* Where a unit's smaller experts sit in its merged kernel: the 3³ (3²) taps, the centre, the added expert's taps. */
typedef struct merge_layout {
    int taps, taps3, taps_added; /* 125 or 25; 27 or 9; k³ or k² of the added expert (0 without one) */
    int centre;
    int at3[27], at_added[RM_MODE_TAPS];
} merge_layout;

static merge_layout layout_of(const rm_unit *u)
{
    merge_layout l;
    const int dims = u->planar ? 2 : 3, k = u->added_k;
    l.taps = dims == 2 ? 25 : RM_MODE_TAPS;
    l.taps3 = dims == 2 ? 9 : 27;
    l.taps_added = !k ? 0 : dims == 2 ? k * k : k * k * k;
    l.centre = embed_tap(u->planar, 1, 0);
    for (int t = 0; t < l.taps3; t++)
        l.at3[t] = embed_tap(u->planar, 3, t);
    for (int t = 0; t < l.taps_added; t++)
        l.at_added[t] = embed_tap(u->planar, k, t);
    return l;
}

void rm_mode_merge(rm_ctx *ctx, const rm_unit *u, int task, const float *g, float *w)
{
    const int64_t co = u->co, ci = u->ci;
    const float *k5 = u->expert[RM_EXPERT_K5]->data, *k3 = u->expert[RM_EXPERT_K3]->data;
    const float *k1 = u->expert[RM_EXPERT_K1]->data, *a3 = u->expert[RM_EXPERT_A3]->data;
    const float *a5 = u->expert[RM_EXPERT_A5]->data, *p3 = u->pool3->data, *p5 = u->pool5->data;
    const float *ka = rm_mode_uses_added(u, task) ? u->expert[RM_EXPERT_ADDED]->data : NULL;
    const merge_layout l = layout_of(u);
    const int T = l.taps, T3 = l.taps3, TA = l.taps_added;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t o = 0; o < co; o++) {
        const float g0 = g[o], g1 = g[co + o], g2 = g[2 * co + o], g3 = g[3 * co + o], g4 = g[4 * co + o];
        for (int64_t i = 0; i < ci; i++) {
            const int64_t oi = o * ci + i;
            float *wo = w + oi * T;
            /* The 5³ expert and the averaging 1³→avg5³ expert cover every tap. */
            for (int t = 0; t < T; t++)
                wo[t] = g0 * k5[oi * T + t] + g4 * (a5[oi] * p5[t]);
            /* The 3³ experts sit in the centre 3³, the 1³ expert at the centre. */
            for (int t3 = 0; t3 < T3; t3++)
                wo[l.at3[t3]] += g1 * k3[oi * T3 + t3] + g3 * (a3[oi] * p3[t3]);
            wo[l.centre] += g2 * k1[oi];
            for (int t = 0; ka && t < TA; t++)
                wo[l.at_added[t]] += g[RM_EXPERT_ADDED * co + o] * ka[oi * TA + t];
        }
    }
}

/* Adds a·b to *acc when acc is not NULL (a frozen tensor's gradient is not kept). */
static inline void add_grad(float *acc, float a, float b)
{
    if (acc)
        *acc += a * b;
}

/* Σ a[t]·b[t] in double, t < n, in DOT_LANES running sums (t mod DOT_LANES) added in one fixed order: chains that
 * vectorize, where one running sum waits for each addition (the merge gradient spent most of its time there). */
enum { DOT_LANES = 4 };
static double dot_double(const float *a, const float *b, int n)
{
    double s[DOT_LANES] = {0};
    int t = 0;
    for (; t + DOT_LANES <= n; t += DOT_LANES)
#pragma omp simd
        for (int l = 0; l < DOT_LANES; l++)
            s[l] += (double)a[t + l] * b[t + l];
    for (; t < n; t++)
        s[0] += (double)a[t] * b[t];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

void rm_mode_merge_backward(rm_ctx *ctx, const rm_unit *u, int task, int n_tasks, const float *g, const float *dw)
{
    const int64_t co = u->co, ci = u->ci;
    const float *k5 = u->expert[RM_EXPERT_K5]->data, *k3 = u->expert[RM_EXPERT_K3]->data;
    const float *k1 = u->expert[RM_EXPERT_K1]->data, *a3 = u->expert[RM_EXPERT_A3]->data;
    const float *a5 = u->expert[RM_EXPERT_A5]->data, *p3 = u->pool3->data, *p5 = u->pool5->data;
    float *dk5 = u->expert[RM_EXPERT_K5]->grad, *dk3 = u->expert[RM_EXPERT_K3]->grad;
    float *dk1 = u->expert[RM_EXPERT_K1]->grad, *da3 = u->expert[RM_EXPERT_A3]->grad;
    float *da5 = u->expert[RM_EXPERT_A5]->grad;
    float *dgw = u->gate_w->grad, *dgb = u->gate_b->grad;
    const int used = rm_mode_uses_added(u, task) ? RM_MAX_EXPERTS : RM_N_EXPERTS;
    const rm_param *added = used > RM_N_EXPERTS ? u->expert[RM_EXPERT_ADDED] : NULL;
    const float *ka = added ? added->data : NULL;
    float *dka = added ? added->grad : NULL;
    const merge_layout l = layout_of(u);
    const int T = l.taps, T3 = l.taps3, TA = l.taps_added;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t o = 0; o < co; o++) {
        const float g0 = g[o], g1 = g[co + o], g2 = g[2 * co + o], g3 = g[3 * co + o], g4 = g[4 * co + o];
        const float ga = added ? g[RM_EXPERT_ADDED * co + o] : 0.0f;
        /* dg[e]: the gradient of the gate weight g[e, o], = <expert e padded, dw[o]> over (i, taps). */
        double dg[RM_MAX_EXPERTS] = {0};
        for (int64_t i = 0; i < ci; i++) {
            const int64_t oi = o * ci + i;
            const float *d = dw + oi * T;
            double s3 = 0.0, sp3 = 0.0;
            for (int t = 0; dk5 && t < T; t++)
                dk5[oi * T + t] += g0 * d[t];
            const double s5 = dot_double(k5 + oi * T, d, T), sp5 = dot_double(p5, d, T);
            for (int t3 = 0; t3 < T3; t3++) {
                const float dc = d[l.at3[t3]];
                add_grad(dk3 ? &dk3[oi * T3 + t3] : NULL, g1, dc);
                s3 += (double)k3[oi * T3 + t3] * dc;
                sp3 += (double)p3[t3] * dc;
            }
            const float dcentre = d[l.centre];
            add_grad(dk1 ? &dk1[oi] : NULL, g2, dcentre);
            if (da3)
                da3[oi] += (float)(g3 * sp3);
            if (da5)
                da5[oi] += (float)(g4 * sp5);
            dg[RM_EXPERT_K5] += s5;
            dg[RM_EXPERT_K3] += s3;
            dg[RM_EXPERT_K1] += (double)k1[oi] * dcentre;
            dg[RM_EXPERT_A3] += (double)a3[oi] * sp3;
            dg[RM_EXPERT_A5] += (double)a5[oi] * sp5;
            for (int t = 0; added && t < TA; t++) {
                const float dc = d[l.at_added[t]];
                add_grad(dka ? &dka[oi * TA + t] : NULL, ga, dc);
                dg[RM_EXPERT_ADDED] += (double)ka[oi * TA + t] * dc;
            }
        }
        /* Softmax over the task's experts, then the linear gate: only column `task` and the bias see the one-hot
         * input. */
        double mean = 0.0;
        for (int e = 0; e < used; e++)
            mean += (double)g[e * co + o] * dg[e];
        for (int e = 0; e < used; e++) {
            const int64_t row = e * co + o;
            const float dlogit = (float)((double)g[row] * (dg[e] - mean));
            if (dgw)
                dgw[row * n_tasks + task] += dlogit;
            if (dgb)
                dgb[row] += dlogit;
        }
    }
}
