/* Network benchmark (issue 14): the deploy-form forward (rm_deploy_forward, batch 1) of `official` on 32×64×64 and
 * on its 32×128×128 patch, and of `lite` on 64³, against the same networks with the same weights in PyTorch
 * (bench_network_torch.py: the reference's BatchNorm-folded DeployNet) run twice, once with glibc's default malloc
 * and once at its best (bench_common.h: two glibc malloc variables in that process's environment only), all
 * measured in the same run, with the peak memory of every process and C's share of this machine's FMA peak.
 *
 * Every configuration runs in a C child process of its own, so its peak memory (VmHWM) is not polluted by the one
 * before. The child builds the model, writes it to a temporary file for PyTorch, makes the deploy form, drops the
 * training form, resets VmHWM (Linux clear_refs) and makes one untimed warm-up call. The two PyTorch processes then
 * load the same model and make their own warm-up calls. With the three ready, the benchmark times rounds: in each,
 * one call on each side, the side that goes first rotating by round (bench_common.h), so that a change of the shared
 * machine's load falls on every side alike. A ratio is the median of the per-round ratios; their range is printed
 * beside it. The outputs of the last calls are compared, so every side does the same computation. GFLOP/s count 2 ×
 * the convolutions' multiply-adds; "% peak" is C's GFLOP/s over the FMA peak (bench_peak.h), measured in a child
 * process before and after the cases, the larger of the two. On the 32×128×128 patch PyTorch takes 7-16 s a call
 * on 2 cores (default malloc the slower) and 1-2 GB per process: that case runs 3 rounds at most, which keeps a
 * default run near 5 minutes; --no-torch leaves C alone.
 *
 * usage: repmode-bench-network [--threads N (2)] [--reps N >= 3 (5)] [--no-torch]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repmode/model.h"
#include "repmode/repmode.h"

#define BENCH_NAME "repmode-bench-network"
#include "bench_common.h"

static const double TARGET_RATIO = 1.0;                           /* C throughput > PyTorch's at its best */
static const double TARGET_SHARE = 0.85;                          /* C GFLOP/s ≥ 85 % of the measured FMA peak */
static const double TARGET_PEAK_BYTES = 1.5 * 1024 * 1024 * 1024; /* official 32×128×128 */

typedef enum { OFFICIAL, LITE } network;

typedef struct bench_case {
    network net;
    int64_t d, h, w;
    int torch;  /* also in PyTorch, with the outputs compared */
    int rounds; /* timed rounds (medians) */
} bench_case;

/* What the C child measures beyond its calls' seconds; sent to the benchmark at "done". */
typedef struct c_result {
    double first;        /* the first call (allocates the activations) */
    long rss_kib;        /* VmRSS before the first call: deploy weights, context, program */
    long peak_kib;       /* VmHWM over the calls */
    int hwm_reset;       /* whether VmHWM could be reset after the training form was dropped */
    long model_peak_kib; /* VmHWM before the reset: building the model and its deploy form */
} c_result;

typedef struct case_result {
    double gmac;
    c_result c;
    double c_seconds; /* the median call */
    bench_torch torch[BENCH_TORCH_SIDES];
    bench_versus vs[BENCH_TORCH_SIDES];
    double diff[BENCH_TORCH_SIDES]; /* the outputs' difference (output_difference) */
} case_result;

/* ---- configurations and their cost -------------------------------------------------------------------------- */

static rm_task bench_tasks[12];

static rm_config make_config(network net)
{
    if (net == OFFICIAL)
        return rm_config_official(bench_tasks);
    bench_tasks[0] = rm_task_make("lite", RM_TASK_REGRESSION);
    return rm_config_lite(bench_tasks, 1);
}

static const char *network_name(network net)
{
    return net == OFFICIAL ? "official" : "lite";
}

/* ---- files ---------------------------------------------------------------------------------------------------- */

/* n floats from path, or NULL if the file is missing or has another size. */
static float *read_floats(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *v = malloc(n * sizeof *v);
    int extra = 0;
    const int ok = v && fread(v, sizeof *v, n, f) == n && fread(&extra, 1, 1, f) == 0;
    fclose(f);
    if (!ok) {
        free(v);
        return NULL;
    }
    return v;
}

typedef struct case_files {
    char model[BENCH_PATH], input[BENCH_PATH], c_output[BENCH_PATH], torch_output[BENCH_TORCH_SIDES][BENCH_PATH];
} case_files;

static case_files files_of(const char *dir)
{
    case_files f;
    snprintf(f.model, sizeof f.model, "%s/model.safetensors", dir);
    snprintf(f.input, sizeof f.input, "%s/input.f32", dir);
    snprintf(f.c_output, sizeof f.c_output, "%s/output_c.f32", dir);
    for (int s = 0; s < BENCH_TORCH_SIDES; s++)
        snprintf(f.torch_output[s], sizeof f.torch_output[s], "%s/output_torch%d.f32", dir, s);
    return f;
}

/* max |c - t| / max |t| over the outputs of C and of a PyTorch side; -1 when one of them is missing. */
static double output_difference(const case_files *files, int side, size_t n)
{
    float *c = read_floats(files->c_output, n), *t = read_floats(files->torch_output[side], n);
    double diff = -1;
    if (c && t) {
        double num = 0, den = 0;
        for (size_t i = 0; i < n; i++) {
            num = fmax(num, fabs((double)c[i] - (double)t[i]));
            den = fmax(den, fabs((double)t[i]));
        }
        diff = den > 0 ? num / den : num;
    }
    free(c);
    free(t);
    return diff;
}

/* ---- the C side (in a child process) ---------------------------------------------------------------------------- */

typedef struct c_job {
    const bench_case *bc;
    const case_files *files;
    int threads;
} c_job;

static double timed_forward(rm_ctx *ctx, rm_deploy *deploy, const rm_tensor *x, rm_tensor *y)
{
    const double t0 = bench_now();
    if (rm_deploy_forward(ctx, deploy, x, y) != RM_OK)
        die_rm(ctx, "rm_deploy_forward");
    return bench_now() - t0;
}

/* The C child (bench_child_fork): the deploy form ready and warmed up, then one forward per "run". */
static void serve_c(FILE *in, FILE *out, void *arg)
{
    const c_job *job = arg;
    const bench_case *bc = job->bc;
    c_result r = {0};
    rm_ctx *ctx = rm_ctx_create(job->threads);
    if (!ctx)
        die("out of memory");
    const rm_config cfg = make_config(bc->net);
    rm_model *model;
    if (rm_model_create(ctx, &cfg, 42, &model) != RM_OK)
        die_rm(ctx, "rm_model_create");
    if (bc->torch && rm_model_save(ctx, model, job->files->model) != RM_OK)
        die_rm(ctx, "rm_model_save");
    rm_deploy *deploy;
    if (rm_deploy_create(ctx, model, 0, &deploy) != RM_OK)
        die_rm(ctx, "rm_deploy_create");
    rm_model_free(model);

    const size_t nx = (size_t)(cfg.in_channels * bc->d * bc->h * bc->w);
    const size_t ny = (size_t)(cfg.out_channels * bc->d * bc->h * bc->w);
    float *xd = malloc(nx * sizeof *xd), *yd = malloc(ny * sizeof *yd);
    if (!xd || !yd)
        die("out of memory");
    fill_uniform(xd, nx, 0x9e3779b97f4a7c15u);
    memset(yd, 0, ny * sizeof *yd);
    if (bc->torch)
        write_floats(job->files->input, xd, nx);
    const rm_tensor x = rm_tensor_5d(xd, 1, cfg.in_channels, bc->d, bc->h, bc->w);
    rm_tensor y = rm_tensor_5d(yd, 1, cfg.out_channels, bc->d, bc->h, bc->w);

    r.model_peak_kib = status_kib("VmHWM");
    r.hwm_reset = reset_peak();
    r.rss_kib = status_kib("VmRSS");
    r.first = timed_forward(ctx, deploy, &x, &y);
    bench_say(out, "ready");
    while (bench_next_command(in)) {
        const double t = timed_forward(ctx, deploy, &x, &y);
        bench_say_seconds(out, &t, 1);
    }
    r.peak_kib = status_kib("VmHWM");
    if (bc->torch)
        write_floats(job->files->c_output, yd, ny);

    free(xd);
    free(yd);
    rm_deploy_free(deploy);
    rm_ctx_free(ctx);
    bench_say_result(out, &r, sizeof r);
}

/* ---- one case: the three sides side by side ------------------------------------------------------------------ */

static case_result run_case(const bench_case *bc, int threads)
{
    const int reps = bc->rounds;
    case_result cr = {0};
    const rm_config cfg = make_config(bc->net);
    cr.gmac = forward_macs(&cfg, bc->d, bc->h, bc->w) / 1e9;
    printf("%s %lldx%lldx%lld: %.2f GMAC ...\n", network_name(bc->net), (long long)bc->d, (long long)bc->h,
           (long long)bc->w, cr.gmac);
    const case_files files = files_of(bench_temp);
    c_job job = {bc, &files, threads};
    bench_child c = bench_c_start(serve_c, &job);

    double cs[BENCH_MAX_ROUNDS], ts[BENCH_TORCH_SIDES][BENCH_MAX_ROUNDS];
    double *tv[BENCH_TORCH_SIDES];
    for (int s = 0; s < BENCH_TORCH_SIDES; s++) {
        const bench_torch_args args = {BENCH_SCRIPT("bench_network_torch.py"),
                                       files.model,
                                       "0",
                                       bc->d,
                                       bc->h,
                                       bc->w,
                                       threads,
                                       files.input,
                                       "--output",
                                       files.torch_output[s]};
        bench_torch_start(&cr.torch[s], s, bc->torch ? &args : NULL);
        tv[s] = ts[s];
    }
    bench_rounds(&c, cr.torch, reps, 1, cs, tv);
    bench_c_finish(&c, &cr.c, sizeof cr.c);
    cr.c_seconds = bench_median_of(cs, reps, 1);
    for (int s = 0; s < BENCH_TORCH_SIDES; s++) {
        bench_torch_finish(&cr.torch[s], NULL, 0);
        cr.diff[s] = -1;
        if (cr.torch[s].ok) {
            cr.vs[s] = bench_versus_of(cs, ts[s], reps, 1);
            cr.diff[s] = output_difference(&files, s, (size_t)(cfg.out_channels * bc->d * bc->h * bc->w));
        }
    }
    bench_temp_clear(); /* the model file is large: do not keep it until the end */
    return cr;
}

/* ---- main ------------------------------------------------------------------------------------------------------ */

static int case_name(const bench_case *bc, char *name, size_t size)
{
    return snprintf(name, size, "%s %lldx%lldx%lld", network_name(bc->net), (long long)bc->d, (long long)bc->h,
                    (long long)bc->w);
}

int main(int argc, char **argv)
{
    const bench_options opt = bench_parse_options(argc, argv);
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("repmode network benchmark: deploy form, batch 1, %d threads, %d rounds (3 on 32x128x128) of one call on "
           "each side (C, PyTorch with default malloc, PyTorch at its best) after a warm-up, OPENBLAS_CORETYPE %s\n",
           opt.threads, opt.reps, coretype ? coretype : "(auto)");
    check_mac_count();
    enum { PATCH_ROUNDS = 3 }; /* a round of the patch takes half a minute */
    const double peak_before = bench_fma_peak(opt.threads);
    bench_temp_make();

    const bench_case cases[] = {
        {OFFICIAL, 32, 64, 64, opt.torch, opt.reps},
        {OFFICIAL, 32, 128, 128, opt.torch, PATCH_ROUNDS}, /* the official patch; its C peak memory has a target too */
        {LITE, 64, 64, 64, opt.torch, opt.reps},
    };
    enum { N_CASES = sizeof cases / sizeof cases[0], PATCH = 1 };
    case_result res[N_CASES];
    for (int i = 0; i < N_CASES; i++)
        res[i] = run_case(&cases[i], opt.threads);
    bench_temp_remove();
    const double peak = bench_print_peak(peak_before, bench_fma_peak(opt.threads), opt.threads);

    printf("\n%-9s %-11s %8s %8s %7s", "config", "size", "C s", "C GF/s", "% peak");
    bench_print_torch_heading();
    printf(" %9s %9s", "C MiB", "C +fwd");
    bench_print_torch_memory_heading();
    printf("\n");
    for (int i = 0; i < N_CASES; i++) {
        const bench_case *bc = &cases[i];
        const case_result *r = &res[i];
        char size[32];
        snprintf(size, sizeof size, "%lldx%lldx%lld", (long long)bc->d, (long long)bc->h, (long long)bc->w);
        const double gflops = 2 * r->gmac / r->c_seconds;
        printf("%-9s %-11s %8.3f %8.1f %6.1f%%", network_name(bc->net), size, r->c_seconds, gflops,
               100 * gflops / peak);
        bench_print_torch_row(r->torch, r->vs, 2 * r->gmac);
        printf(" %9.0f %9.0f", mib(r->c.peak_kib), mib(r->c.peak_kib - r->c.rss_kib));
        bench_print_torch_memory(r->torch);
        printf("\n");
    }

    printf("\n");
    bench_print_legend("call", peak);
    printf("C MiB: VmHWM of a process holding the deploy form over its forward calls%s; C +fwd: the part of it added "
           "by the calls (activations, working memory). torch MiB, best MiB: VmHWM of each PyTorch process over its "
           "calls (the one at its best keeps what it frees, the training form it was built from included).\n",
           res[0].c.hwm_reset ? " (VmHWM reset after the training form was dropped)"
                              : " (VmHWM could not be reset: it includes building the training form)");
    for (int i = 0; i < N_CASES; i++) {
        const case_result *r = &res[i];
        char name[64];
        case_name(&cases[i], name, sizeof name);
        printf("%s: C first call %.3f s, building the model and deploy form peaked at %.0f MiB\n", name, r->c.first,
               mib(r->c.model_peak_kib));
        for (int s = 0; s < BENCH_TORCH_SIDES; s++) {
            const bench_torch *t = &r->torch[s];
            if (t->ok)
                printf("  %-5s PyTorch %s first call %.3f s, +fwd %.0f MiB; outputs max|C - %s| / max|%s| = %.2e "
                       "(%s)\n",
                       bench_torch_label[s], t->version, t->first, mib(t->growth_kib), bench_torch_label[s],
                       bench_torch_label[s], r->diff[s], r->diff[s] >= 0 && r->diff[s] <= 1e-3 ? "agree" : "DIFFER");
            else
                printf("  %-5s PyTorch: %s\n", bench_torch_label[s], t->why);
        }
    }

    printf("\ntargets (reported, not enforced):\n");
    for (int i = 0; i < N_CASES; i++) {
        const case_result *r = &res[i];
        char name[64], what[128], figure[64];
        case_name(&cases[i], name, sizeof name);
        if (r->torch[BENCH_TORCH_BEST].ok) {
            const double ratio = r->vs[BENCH_TORCH_BEST].ratio.median;
            snprintf(what, sizeof what, "%s: C throughput > %.1fx PyTorch at its best", name, TARGET_RATIO);
            snprintf(figure, sizeof figure, "%.2fx (median)", ratio);
            bench_print_target(what, figure, ratio > TARGET_RATIO);
        }
        const double share = 2 * r->gmac / r->c_seconds / peak;
        snprintf(what, sizeof what, "%s: C >= %.0f%% of the measured FMA peak", name, 100 * TARGET_SHARE);
        snprintf(figure, sizeof figure, "%.1f%%", 100 * share);
        bench_print_target(what, figure, share >= TARGET_SHARE);
    }
    const double patch_peak = (double)res[PATCH].c.peak_kib * 1024.0;
    char what[128], figure[64];
    snprintf(what, sizeof what, "official 32x128x128: C peak memory <= %.1f GiB", TARGET_PEAK_BYTES / (1 << 30));
    snprintf(figure, sizeof figure, "%.2f GiB", patch_peak / (1 << 30));
    bench_print_target(what, figure, patch_peak <= TARGET_PEAK_BYTES);
    return 0;
}
