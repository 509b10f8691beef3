/* Layer benchmark: every distinct convolution of the `official` network on its 32×128×128 patch (batch 1), forward,
 * backward data and backward weight, in GFLOP/s, as a share of this machine's measured FMA peak, and beside oneDNN
 * on the same shape with the same thread count, all in one run.
 *
 * The peak (bench_peak.h): every thread (one per core) runs a loop of independent FMAs on registers only; the best
 * of 20 short runs, measured again after the layers (a gap between the two means the machine was busy). No
 * convolution can go faster, so "% peak" says how far a pass is from the machine, not from another library.
 *
 * The layers: 5³ 'same' convolutions at every level, the 2³ stride-2 down-sampling convolutions and the 2³ stride-2
 * transposed convolutions of the up-sampling, no bias. A shape the network has twice is timed once and counted
 * twice in the totals (×2). A layer's level is that of its input: 1 at 32×128×128 … 4 at 4×16×16, 5 the bottleneck
 * at 2×8×8 (so up 512→256 is level 5, up 64→32 level 2).
 *
 * oneDNN (Debian's 2.6, its v2 C API) is given format `any` for every tensor, so it picks its own blocked layouts
 * (its best case); the inputs are reordered into them once, outside the timed calls. repmode's forward of a 5³
 * layer likewise runs on weights packed once outside the timed calls, as a deploy form keeps them (the engine's
 * packed forward, internal: this benchmark links the static library); its backward passes pack the weights inside
 * each call, as training must. oneDNN's OpenMP runtime takes the thread count from omp_set_num_threads. Timing:
 * one untimed warm-up call each, then rounds of one repmode call and one oneDNN call, which goes first alternating
 * by round, so that a change of the shared machine's load falls on both sides alike; each side's median (of 3
 * rounds at most where a round takes over a second, which keeps the default run near 3 minutes on 2 cores). GFLOP/s
 * count 2 × the multiply-adds that meet the input, not the zero padding. After the timed calls oneDNN's output is
 * reordered back to the plain layout and compared with repmode's: a broken setup on either side shows in the "outputs
 * agree" lines and makes the exit status 1. The table comes at the end, when both peak measurements are in; meanwhile a
 * line on a terminal's stderr tells the progress.
 *
 * usage: repmode-bench-layers [--threads N (2)] [--reps N (5)] [--only fwd|bwd] [--level 1..5]
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/conv_engine.h" /* the engine's packed weights, as a deploy form keeps them */
#include "repmode/repmode.h"

#include "bench_peak.h"
#include "bench_timing.h"

#ifdef BENCH_ONEDNN
#include <dnnl.h>
#endif

#define MAX_REPS 64
/* The level-1 layers take up to a second or two a round: fewer rounds keep the whole run near 3 minutes. */
#define LONG_ROUND_S 1.0
#define LONG_ROUND_REPS 3
/* Relative to the largest output magnitude; float sums of up to 8000 (forward) or 500 000 (weight) products. */
#define AGREE_TOLERANCE 1e-3

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "repmode-bench-layers: %s\n", what);
    exit(1);
}

static float *random_floats(size_t n, unsigned seed)
{
    float *p = bench_random_floats(n, seed);
    if (!p)
        die("out of memory");
    return p;
}

/* ---- the layers ---------------------------------------------------------------------------------------------- */

typedef enum { CONV, DOWN, UP } layer_kind;
typedef enum { FWD, BWD_DATA, BWD_WEIGHT, N_PASSES } pass;
static const char *const PASS_NAMES[N_PASSES] = {"fwd", "bwd data", "bwd weight"};

typedef struct {
    int level; /* the level of the input, 5 the bottleneck */
    layer_kind kind;
    int64_t ci, co;
    int64_t d, h, w; /* input */
    int count;       /* how many times `official` has this shape */
} layer;

/* `official`: base 32 channels, 4 levels, on its 32×128×128 patch; a line per level. */
/* clang-format off */
static const layer LAYERS[] = {
    {1, CONV, 1, 32, 32, 128, 128, 1},  {1, CONV, 32, 32, 32, 128, 128, 2},  {1, CONV, 64, 32, 32, 128, 128, 1},
    {1, CONV, 32, 1, 32, 128, 128, 1},  {1, DOWN, 32, 32, 32, 128, 128, 1},
    {2, CONV, 32, 64, 16, 64, 64, 1},   {2, CONV, 64, 64, 16, 64, 64, 2},    {2, CONV, 128, 64, 16, 64, 64, 1},
    {2, DOWN, 64, 64, 16, 64, 64, 1},   {2, UP, 64, 32, 16, 64, 64, 1},
    {3, CONV, 64, 128, 8, 32, 32, 1},   {3, CONV, 128, 128, 8, 32, 32, 2},   {3, CONV, 256, 128, 8, 32, 32, 1},
    {3, DOWN, 128, 128, 8, 32, 32, 1},  {3, UP, 128, 64, 8, 32, 32, 1},
    {4, CONV, 128, 256, 4, 16, 16, 1},  {4, CONV, 256, 256, 4, 16, 16, 2},   {4, CONV, 512, 256, 4, 16, 16, 1},
    {4, DOWN, 256, 256, 4, 16, 16, 1},  {4, UP, 256, 128, 4, 16, 16, 1},
    {5, CONV, 256, 512, 2, 8, 8, 1},    {5, CONV, 512, 512, 2, 8, 8, 1},     {5, UP, 512, 256, 2, 8, 8, 1},
};
/* clang-format on */
#define N_LAYERS (int)(sizeof LAYERS / sizeof LAYERS[0])

static int kernel_of(const layer *l)
{
    return l->kind == CONV ? 5 : 2;
}

static rm_conv3d_params params_of(const layer *l)
{
    return l->kind == CONV ? rm_conv3d_same(5) : rm_conv3d_strided(2, 2);
}

/* Output length along an axis of input length n. */
static int64_t out_size(const layer *l, int64_t n)
{
    return l->kind == DOWN ? n / 2 : l->kind == UP ? 2 * n : n;
}

static int64_t x_numel(const layer *l)
{
    return l->ci * l->d * l->h * l->w;
}
static int64_t y_numel(const layer *l)
{
    return l->co * out_size(l, l->d) * out_size(l, l->h) * out_size(l, l->w);
}
static int64_t w_numel(const layer *l)
{
    const int64_t k = kernel_of(l);
    return l->ci * l->co * k * k * k;
}

/* The (output, kernel tap) pairs along an axis of input length n whose tap falls inside the input, not on the
 * zero padding. A transposed convolution has no padding: every input meets every tap. */
static int64_t taps_along(const layer *l, int64_t n)
{
    const int k = kernel_of(l);
    if (l->kind == UP)
        return k * n;
    const rm_conv3d_params p = params_of(l);
    int64_t taps = 0;
    for (int64_t o = 0; o < out_size(l, n); o++)
        for (int t = 0; t < k; t++) {
            const int64_t i = o * p.stride - p.pad_before + t;
            taps += i >= 0 && i < n;
        }
    return taps;
}

/* 2 × the multiply-adds that meet the input, the same for the three passes. The padding's are left out: on the
 * small levels a 5³ kernel mostly overhangs the volume (2×8×8: 29% of the taps are inside), and a library that
 * skips them would otherwise pass the machine's peak. */
static double flop_of(const layer *l)
{
    return 2.0 * (double)(l->ci * l->co) * (double)(taps_along(l, l->d) * taps_along(l, l->h) * taps_along(l, l->w));
}

static void label_of(const layer *l, char *buf, size_t size)
{
    static const char *const kinds[] = {"conv5", "down2", "up2"};
    snprintf(buf, size, "L%d %s %lld->%lld %lldx%lldx%lld%s", l->level, kinds[l->kind], (long long)l->ci,
             (long long)l->co, (long long)l->d, (long long)l->h, (long long)l->w, l->count > 1 ? " x2" : "");
}

/* The engine's geometry of a 5³ layer. */
static rm_conv_geom conv5_geom(const layer *l)
{
    return rm_conv_geom_same(l->ci, l->co, l->d, l->h, l->w, 5, 5);
}

/* The plain tensors of one layer, PyTorch's layouts, shared by both sides: the inputs of every pass (x, w, dy) and
 * one output buffer per side, sized for the largest of y, dx and dw; and for a 5³ layer whose weights the engine
 * keeps packed, those packed weights (else NULL). */
typedef struct {
    float *x, *w, *dy, *out_rm, *out_dnnl, *w_packed;
} layer_data;

static layer_data layer_data_make(const rm_ctx *ctx, int threads, const layer *l)
{
    const int64_t a = x_numel(l), b = w_numel(l), c = y_numel(l);
    const size_t out = (size_t)(a > b ? (a > c ? a : c) : (b > c ? b : c));
    layer_data t = {random_floats((size_t)a, 1), random_floats((size_t)b, 2), random_floats((size_t)c, 3),
                    random_floats(out, 4),       random_floats(out, 5),       NULL};
    const rm_conv_geom g = conv5_geom(l);
    if (l->kind == CONV && rm_conv_engine_packs(ctx, &g)) {
        t.w_packed = malloc((size_t)b * sizeof(float)); /* the packed layout holds as many floats (conv_engine.h) */
        if (!t.w_packed)
            die("out of memory");
        rm_conv_engine_pack(&g, threads, t.w, t.w_packed);
    }
    return t;
}

static void layer_data_free(layer_data *t)
{
    free(t->x), free(t->w), free(t->dy), free(t->out_rm), free(t->out_dnnl), free(t->w_packed);
}

static int64_t out_numel(const layer *l, pass which)
{
    return which == FWD ? y_numel(l) : which == BWD_DATA ? x_numel(l) : w_numel(l);
}

/* ---- repmode's side ------------------------------------------------------------------------------------------ */

static void repmode_run(rm_ctx *ctx, const layer *l, pass which, const layer_data *t)
{
    typedef rm_status (*forward_fn)(rm_ctx *, const rm_conv3d_params *, const rm_tensor *, const rm_tensor *,
                                    const float *, rm_tensor *);
    typedef rm_status (*backward_fn)(rm_ctx *, const rm_conv3d_params *, const rm_tensor *, const rm_tensor *,
                                     const rm_tensor *, rm_tensor *, rm_tensor *, float *);
    const forward_fn forward = l->kind == UP ? rm_conv_transpose3d_forward : rm_conv3d_forward;
    const backward_fn backward = l->kind == UP ? rm_conv_transpose3d_backward : rm_conv3d_backward;
    const rm_conv3d_params p = params_of(l);
    const int64_t k = kernel_of(l), od = out_size(l, l->d), oh = out_size(l, l->h), ow = out_size(l, l->w);
    /* torch.nn's weight layouts: (Co, Ci, k, k, k) for a convolution, (Ci, Co, k, k, k) for a transposed one */
    const int64_t w0 = l->kind == UP ? l->ci : l->co, w1 = l->kind == UP ? l->co : l->ci;
    const rm_tensor x = rm_tensor_5d(t->x, 1, l->ci, l->d, l->h, l->w), w = rm_tensor_5d(t->w, w0, w1, k, k, k);
    const rm_tensor dy = rm_tensor_5d(t->dy, 1, l->co, od, oh, ow);
    rm_tensor y = rm_tensor_5d(t->out_rm, 1, l->co, od, oh, ow),
              dx = rm_tensor_5d(t->out_rm, 1, l->ci, l->d, l->h, l->w);
    rm_tensor dw = rm_tensor_5d(t->out_rm, w0, w1, k, k, k);
    const rm_conv_geom g = conv5_geom(l);
    const rm_status s = which == FWD && t->w_packed
                            ? rm_conv_engine_forward_packed(ctx, &g, t->x, t->w_packed, NULL, NULL, t->out_rm)
                        : which == FWD      ? forward(ctx, &p, &x, &w, NULL, &y)
                        : which == BWD_DATA ? backward(ctx, &p, &x, &w, &dy, &dx, NULL, NULL)
                                            : backward(ctx, &p, &x, &w, &dy, NULL, &dw, NULL);
    if (s != RM_OK)
        die(rm_ctx_error(ctx));
}

/* ---- oneDNN's side ------------------------------------------------------------------------------------------- */

#ifdef BENCH_ONEDNN

#define DNNL_CHECK(call)                                                                                               \
    do {                                                                                                               \
        if ((call) != dnnl_success)                                                                                    \
            die("oneDNN failed: " #call);                                                                              \
    } while (0)

typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
} onednn_env;

/* One pass, ready to run: the primitive, its arguments in oneDNN's layouts (inputs already reordered in), and the
 * plain buffer its output goes back to for the comparison. */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_exec_arg_t args[3];
    dnnl_memory_t out_plain;
    char impl[64];
} onednn_pass;

static int onednn_open(onednn_env *env, int threads)
{
    omp_set_num_threads(threads);
    return dnnl_engine_create(&env->engine, dnnl_cpu, 0) == dnnl_success &&
           dnnl_stream_create(&env->stream, env->engine, dnnl_stream_default_flags) == dnnl_success;
}

static void onednn_close(onednn_env *env)
{
    dnnl_stream_destroy(env->stream);
    dnnl_engine_destroy(env->engine);
}

static void onednn_reorder(const onednn_env *env, dnnl_memory_t from, dnnl_memory_t to)
{
    const dnnl_memory_desc_t *from_md, *to_md;
    DNNL_CHECK(dnnl_memory_get_memory_desc(from, &from_md));
    DNNL_CHECK(dnnl_memory_get_memory_desc(to, &to_md));
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    DNNL_CHECK(dnnl_reorder_primitive_desc_create(&pd, from_md, env->engine, to_md, env->engine, NULL));
    DNNL_CHECK(dnnl_primitive_create(&prim, pd));
    const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    DNNL_CHECK(dnnl_primitive_execute(prim, env->stream, 2, args));
    DNNL_CHECK(dnnl_stream_wait(env->stream));
    dnnl_primitive_destroy(prim);
    dnnl_primitive_desc_destroy(pd);
}

static void onednn_pass_create(const onednn_env *env, const layer *l, pass which, const layer_data *t, onednn_pass *dp)
{
    const int64_t k = kernel_of(l), s = l->kind == CONV ? 1 : 2, p = l->kind == CONV ? 2 : 0;
    const dnnl_dims_t x_dims = {1, l->ci, l->d, l->h, l->w};
    const dnnl_dims_t y_dims = {1, l->co, out_size(l, l->d), out_size(l, l->h), out_size(l, l->w)};
    const dnnl_dims_t w_dims = {l->co, l->ci, k, k, k}; /* oneDNN's weights are (out, in) for both kinds */
    const dnnl_dims_t strides = {s, s, s}, pad = {p, p, p};
    dnnl_memory_desc_t x_any, y_any, w_any, x_plain, y_plain, w_plain;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&x_any, 5, x_dims, dnnl_f32, dnnl_format_tag_any));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&y_any, 5, y_dims, dnnl_f32, dnnl_format_tag_any));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&w_any, 5, w_dims, dnnl_f32, dnnl_format_tag_any));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&x_plain, 5, x_dims, dnnl_f32, dnnl_ncdhw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&y_plain, 5, y_dims, dnnl_f32, dnnl_ncdhw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&w_plain, 5, w_dims, dnnl_f32, l->kind == UP ? dnnl_iodhw : dnnl_oidhw));

    /* The backward passes are created with the forward one as their hint, as oneDNN requires. */
    const int up = l->kind == UP;
    const dnnl_alg_kind_t alg = up ? dnnl_deconvolution_direct : dnnl_convolution_direct;
    dnnl_convolution_desc_t desc;
    dnnl_primitive_desc_t fwd_pd, pd;
    DNNL_CHECK((up ? dnnl_deconvolution_forward_desc_init : dnnl_convolution_forward_desc_init)(
        &desc, dnnl_forward_training, alg, &x_any, &w_any, NULL, &y_any, strides, pad, pad));
    DNNL_CHECK(dnnl_primitive_desc_create(&fwd_pd, &desc, NULL, env->engine, NULL));
    if (which == FWD) {
        pd = fwd_pd;
    } else {
        if (which == BWD_DATA)
            DNNL_CHECK((up ? dnnl_deconvolution_backward_data_desc_init : dnnl_convolution_backward_data_desc_init)(
                &desc, alg, &x_any, &w_any, &y_any, strides, pad, pad));
        else
            DNNL_CHECK((up ? dnnl_deconvolution_backward_weights_desc_init
                           : dnnl_convolution_backward_weights_desc_init)(&desc, alg, &x_any, &w_any, NULL, &y_any,
                                                                          strides, pad, pad));
        DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, env->engine, fwd_pd));
        dnnl_primitive_desc_destroy(fwd_pd);
    }

    /* Two inputs and the output (last) of each pass: the argument, oneDNN's query for its layout, the plain one. */
    typedef struct {
        int arg;
        dnnl_query_t query;
        const dnnl_memory_desc_t *plain;
        float *data;
    } argument;
    const argument fwd[3] = {{DNNL_ARG_SRC, dnnl_query_src_md, &x_plain, t->x},
                             {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, &w_plain, t->w},
                             {DNNL_ARG_DST, dnnl_query_dst_md, &y_plain, t->out_dnnl}};
    const argument bwd_data[3] = {{DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, &y_plain, t->dy},
                                  {DNNL_ARG_WEIGHTS, dnnl_query_weights_md, &w_plain, t->w},
                                  {DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, &x_plain, t->out_dnnl}};
    const argument bwd_weight[3] = {{DNNL_ARG_SRC, dnnl_query_src_md, &x_plain, t->x},
                                    {DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, &y_plain, t->dy},
                                    {DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, &w_plain, t->out_dnnl}};
    const argument *a = which == FWD ? fwd : which == BWD_DATA ? bwd_data : bwd_weight;
    for (int i = 0; i < 3; i++) {
        dnnl_memory_t plain;
        DNNL_CHECK(dnnl_memory_create(&plain, a[i].plain, env->engine, a[i].data));
        dp->args[i].arg = a[i].arg;
        DNNL_CHECK(dnnl_memory_create(&dp->args[i].memory, dnnl_primitive_desc_query_md(pd, a[i].query, 0), env->engine,
                                      DNNL_MEMORY_ALLOCATE));
        if (i < 2) {
            onednn_reorder(env, plain, dp->args[i].memory);
            dnnl_memory_destroy(plain);
        } else {
            dp->out_plain = plain;
        }
    }
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(dp->impl, sizeof dp->impl, "%s", impl);
    DNNL_CHECK(dnnl_primitive_create(&dp->prim, pd));
    dnnl_primitive_desc_destroy(pd);
}

static void onednn_pass_run(const onednn_env *env, const onednn_pass *dp)
{
    DNNL_CHECK(dnnl_primitive_execute(dp->prim, env->stream, 3, dp->args));
    DNNL_CHECK(dnnl_stream_wait(env->stream));
}

/* Reorders the output back into the plain buffer, for the comparison. */
static void onednn_pass_output(const onednn_env *env, const onednn_pass *dp)
{
    onednn_reorder(env, dp->args[2].memory, dp->out_plain);
}

static void onednn_pass_free(onednn_pass *dp)
{
    dnnl_primitive_destroy(dp->prim);
    for (int i = 0; i < 3; i++)
        dnnl_memory_destroy(dp->args[i].memory);
    dnnl_memory_destroy(dp->out_plain);
}

#else /* without oneDNN the table keeps its column, empty */

typedef struct {
    int unused;
} onednn_env;
typedef struct {
    char impl[64];
} onednn_pass;

static int onednn_open(onednn_env *env, int threads)
{
    (void)env, (void)threads;
    return 0;
}
static void onednn_close(onednn_env *env)
{
    (void)env;
}
static void onednn_pass_create(const onednn_env *env, const layer *l, pass which, const layer_data *t, onednn_pass *dp)
{
    (void)env, (void)l, (void)which, (void)t, (void)dp;
}
static void onednn_pass_run(const onednn_env *env, const onednn_pass *dp)
{
    (void)env, (void)dp;
}
static void onednn_pass_output(const onednn_env *env, const onednn_pass *dp)
{
    (void)env, (void)dp;
}
static void onednn_pass_free(onednn_pass *dp)
{
    (void)dp;
}

#endif

/* ---- timing and the table ------------------------------------------------------------------------------------ */

typedef struct {
    int threads, reps, passes[N_PASSES], level; /* level 0: all */
} options;

/* Per pass: the totals of the layers timed (weighted by count) and the worst disagreement between the sides. */
typedef struct {
    double flop, s_rm, s_dnnl;
    double worst_rel;
    const char *worst_layer;
    int checked;
} totals;

/* Seconds of one call (median of reps, at most LONG_ROUND_REPS when a round is long), each side; oneDNN's NAN
 * when it is absent. */
static void time_pass(rm_ctx *ctx, const onednn_env *env, int have_dnnl, const layer *l, pass which,
                      const layer_data *t, const onednn_pass *dp, int reps, double *s_rm, double *s_dnnl)
{
    double rm[MAX_REPS], dn[MAX_REPS];
    const double t0 = bench_now();
    repmode_run(ctx, l, which, t); /* warm-up: sizes the working memory, touches the pages */
    if (have_dnnl)
        onednn_pass_run(env, dp);
    if (bench_now() - t0 > LONG_ROUND_S && reps > LONG_ROUND_REPS)
        reps = LONG_ROUND_REPS;
    for (int r = 0; r < reps; r++) {
        for (int side = 0; side < 2; side++) {
            const int dnnl_turn = (side + r) % 2; /* who goes first alternates by round */
            if (dnnl_turn && !have_dnnl)
                continue;
            const double t0 = bench_now();
            if (dnnl_turn)
                onednn_pass_run(env, dp);
            else
                repmode_run(ctx, l, which, t);
            (dnnl_turn ? dn : rm)[r] = bench_now() - t0;
        }
    }
    *s_rm = bench_median(rm, reps);
    *s_dnnl = have_dnnl ? bench_median(dn, reps) : NAN;
}

/* Largest |a - b| over the largest |a|, on the n values of both sides' outputs. */
static double relative_difference(const float *a, const float *b, int64_t n)
{
    double diff = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - (double)b[i]));
        scale = fmax(scale, fabs((double)a[i]));
    }
    return scale > 0.0 ? diff / scale : diff;
}

/* One timed pass, kept until the end: the percentages need the peak measured after the layers too. */
typedef struct {
    const char *layer_label, *pass_label;
    double flop, s_rm, s_dnnl;
    char impl[64];
} row;

static void print_row(const char *layer_label, const char *pass_label, double flop, double s_rm, double s_dnnl,
                      double peak, const char *impl)
{
    const double g_rm = flop / s_rm / 1e9, g_dnnl = flop / s_dnnl / 1e9;
    if (isnan(s_dnnl))
        printf("%-34s %-10s %9.1f %6.1f%% %9s %7s %8s\n", layer_label, pass_label, g_rm, 100.0 * g_rm / peak, "-", "-",
               "-");
    else
        printf("%-34s %-10s %9.1f %6.1f%% %9.1f %6.1f%% %7.2fx  %s\n", layer_label, pass_label, g_rm,
               100.0 * g_rm / peak, g_dnnl, 100.0 * g_dnnl / peak, g_rm / g_dnnl, impl);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--threads N (2)] [--reps N (5, at most %d)] [--only fwd|bwd] [--level 1..5]\n", argv0,
            MAX_REPS);
    exit(1);
}

static options parse_options(int argc, char **argv)
{
    options o = {2, 5, {1, 1, 1}, 0};
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!value)
            usage(argv[0]);
        if (!strcmp(argv[i], "--threads"))
            o.threads = atoi(value);
        else if (!strcmp(argv[i], "--reps"))
            o.reps = atoi(value);
        else if (!strcmp(argv[i], "--level"))
            o.level = atoi(value);
        else if (!strcmp(argv[i], "--only") && (!strcmp(value, "fwd") || !strcmp(value, "bwd"))) {
            const int fwd = !strcmp(value, "fwd");
            o.passes[FWD] = fwd, o.passes[BWD_DATA] = !fwd, o.passes[BWD_WEIGHT] = !fwd;
        } else
            usage(argv[0]);
        i++;
    }
    if (o.threads < 1 || o.reps < 1 || o.reps > MAX_REPS || o.level < 0 || o.level > 5)
        usage(argv[0]);
    return o;
}

int main(int argc, char **argv)
{
    const options o = parse_options(argc, argv);
    const char *isa;
    const double peak_before = measure_fma_peak(o.threads, &isa);
    printf("repmode layer benchmark: `official` on 32x128x128, batch 1, %d threads, median of %d calls", o.threads,
           o.reps);
    if (o.reps > LONG_ROUND_REPS)
        printf(" (%d where a round takes over %.0f s)", LONG_ROUND_REPS, LONG_ROUND_S);
    printf("\n");

    onednn_env env;
    const int have_dnnl = onednn_open(&env, o.threads);
#ifdef BENCH_ONEDNN
    const dnnl_version_t *v = dnnl_version();
    if (have_dnnl)
        printf("oneDNN %d.%d.%d, its blocked layouts (format any), reorders outside the timed calls\n", v->major,
               v->minor, v->patch);
    else
        printf("oneDNN: could not create its CPU engine\n");
#else
    printf("oneDNN: not installed\n");
#endif
    fflush(stdout);

    rm_ctx *ctx = rm_ctx_create(o.threads);
    if (!ctx)
        die("out of memory");
    const int progress = isatty(STDERR_FILENO); /* one line, rewritten, and only on a terminal */
    char labels[N_LAYERS][64];
    row rows[N_LAYERS * N_PASSES];
    int n_rows = 0;
    totals tot[N_PASSES] = {{0}};
    for (int i = 0; i < N_LAYERS; i++) {
        const layer *l = &LAYERS[i];
        if (o.level && l->level != o.level)
            continue;
        char *label = labels[i];
        label_of(l, label, sizeof labels[i]);
        layer_data t = layer_data_make(ctx, o.threads, l);
        for (int which = FWD; which < N_PASSES; which++) {
            if (!o.passes[which])
                continue;
            if (progress)
                fprintf(stderr, "\r\033[Ktiming %s %s", label, PASS_NAMES[which]);
            row *r = &rows[n_rows++];
            onednn_pass dp = {0};
            if (have_dnnl)
                onednn_pass_create(&env, l, (pass)which, &t, &dp);
            time_pass(ctx, &env, have_dnnl, l, (pass)which, &t, &dp, o.reps, &r->s_rm, &r->s_dnnl);
            r->layer_label = label, r->pass_label = PASS_NAMES[which], r->flop = flop_of(l);
            snprintf(r->impl, sizeof r->impl, "%s", dp.impl);
            totals *tp = &tot[which];
            tp->flop += l->count * r->flop, tp->s_rm += l->count * r->s_rm, tp->s_dnnl += l->count * r->s_dnnl;
            if (have_dnnl) {
                onednn_pass_output(&env, &dp);
                const double rel = relative_difference(t.out_rm, t.out_dnnl, out_numel(l, (pass)which));
                if (!tp->checked || rel > tp->worst_rel)
                    tp->worst_rel = rel, tp->worst_layer = label;
                tp->checked++;
                onednn_pass_free(&dp);
            }
        }
        layer_data_free(&t);
    }
    if (progress)
        fprintf(stderr, "\r\033[K");
    rm_ctx_free(ctx);
    if (have_dnnl)
        onednn_close(&env);

    const double peak_after = measure_fma_peak(o.threads, &isa), peak = fmax(peak_before, peak_after);
    printf("FMA peak (%s, %d threads): %.1f GFLOP/s (%.1f per thread); before the layers %.1f, after %.1f\n", isa,
           o.threads, peak, peak / o.threads, peak_before, peak_after);
    printf("GFLOP/s count 2 x the multiply-adds that meet the input, not the zero padding\n");
    printf("\n%-34s %-10s %9s %7s %9s %7s %8s  %s\n", "layer", "pass", "repmode", "% peak", "oneDNN", "% peak",
           "rm/oneDNN", "oneDNN implementation");
    printf("%-34s %-10s %9s %7s %9s %7s\n", "", "", "GFLOP/s", "", "GFLOP/s", "");
    for (int i = 0; i < n_rows; i++)
        print_row(rows[i].layer_label, rows[i].pass_label, rows[i].flop, rows[i].s_rm, rows[i].s_dnnl, peak,
                  rows[i].impl);
    char total_label[64];
    snprintf(total_label, sizeof total_label, o.level ? "total of level %d (with x2)" : "total network (with x2)",
             o.level);
    for (int which = FWD; which < N_PASSES; which++)
        if (o.passes[which] && tot[which].flop > 0.0)
            print_row(total_label, PASS_NAMES[which], tot[which].flop, tot[which].s_rm, tot[which].s_dnnl, peak, "");

    int agree = 1;
    for (int which = FWD; which < N_PASSES; which++) {
        const totals *tp = &tot[which];
        if (!tp->checked)
            continue;
        const int ok = tp->worst_rel < AGREE_TOLERANCE;
        agree &= ok;
        printf("%s %s: max |diff| %.1e of max |output| over %d layers (worst: %s)\n",
               ok ? "outputs agree" : "OUTPUTS DIFFER", PASS_NAMES[which], tp->worst_rel, tp->checked, tp->worst_layer);
    }
    return agree ? 0 : 1;
}
