/* Network benchmark: the deploy-form forward (rm_deploy_forward, batch 1) of `official` on 32×64×64 and of `lite`
 * on 64³, against the same networks with the same weights in PyTorch (bench_network_torch.py: the reference's
 * BatchNorm-folded DeployNet), measured in the same run, plus the peak memory of `official` on its 32×128×128 patch.
 *
 * Every configuration runs in a C child process of its own, so its peak memory (VmHWM) is not polluted by the one
 * before. The child builds the model, writes it to a temporary file for PyTorch, makes the deploy form, drops the
 * training form, resets VmHWM (Linux clear_refs) and makes one untimed warm-up call. The PyTorch process then loads
 * the same model and makes its own warm-up call. With both ready, the benchmark times rounds: in each, one C call
 * and one PyTorch call, which goes first alternating by round (bench_common.h), so that a change of the shared
 * machine's load falls on both sides alike. The ratio is the median of the per-round ratios; their range is printed
 * beside it. The outputs of the last calls are compared, so both sides do the same computation. GFLOP/s count 2 ×
 * the convolutions' multiply-adds.
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

static const double TARGET_RATIO = 0.7;                           /* C throughput ≥ 0.7× PyTorch's */
static const double TARGET_PEAK_BYTES = 1.5 * 1024 * 1024 * 1024; /* official 32×128×128 */

typedef enum { OFFICIAL, LITE } network;

typedef struct bench_case {
    network net;
    int64_t d, h, w;
    int warmup; /* one untimed call first */
    int reps;   /* timed rounds (median) */
    int torch;  /* also in PyTorch, with the outputs compared */
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
    bench_torch torch;
    double t_seconds, t_first, t_peak_kib, t_growth_kib;
    bench_spread ratio; /* C's throughput over PyTorch's, per round */
    double diff;        /* the outputs' difference (output_difference) */
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
    char model[BENCH_PATH], input[BENCH_PATH], c_output[BENCH_PATH], torch_output[BENCH_PATH];
} case_files;

static case_files files_of(const char *dir)
{
    case_files f;
    snprintf(f.model, sizeof f.model, "%s/model.safetensors", dir);
    snprintf(f.input, sizeof f.input, "%s/input.f32", dir);
    snprintf(f.c_output, sizeof f.c_output, "%s/output_c.f32", dir);
    snprintf(f.torch_output, sizeof f.torch_output, "%s/output_torch.f32", dir);
    return f;
}

/* max |c - t| / max |t| over the outputs; -1 when one of them is missing. */
static double output_difference(const case_files *files, size_t n)
{
    float *c = read_floats(files->c_output, n), *t = read_floats(files->torch_output, n);
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
    int calls = 0;
    if (bc->warmup)
        r.first = timed_forward(ctx, deploy, &x, &y), calls++;
    bench_say(out, "ready");
    while (bench_next_command(in)) {
        const double t = timed_forward(ctx, deploy, &x, &y);
        if (calls++ == 0)
            r.first = t;
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

/* ---- one case: both sides side by side ----------------------------------------------------------------------------
 */

static case_result run_case(const bench_case *bc, int threads)
{
    case_result cr = {0};
    const rm_config cfg = make_config(bc->net);
    cr.gmac = forward_macs(&cfg, bc->d, bc->h, bc->w) / 1e9;
    printf("%s %lldx%lldx%lld: %.2f GMAC ...\n", network_name(bc->net), (long long)bc->d, (long long)bc->h,
           (long long)bc->w, cr.gmac);
    const case_files files = files_of(bench_temp);
    c_job job = {bc, &files, threads};
    bench_child c = bench_c_start(serve_c, &job);

    const bench_torch_args args = {BENCH_SCRIPT("bench_network_torch.py"),
                                   files.model,
                                   "0",
                                   bc->d,
                                   bc->h,
                                   bc->w,
                                   threads,
                                   files.input,
                                   "--output",
                                   files.torch_output};
    bench_torch *t = &cr.torch;
    bench_torch_start(t, bc->torch ? &args : NULL);

    double cs[BENCH_MAX_ROUNDS], ts[BENCH_MAX_ROUNDS];
    bench_rounds(&c, t, bc->reps, 1, cs, ts);
    bench_c_finish(&c, &cr.c, sizeof cr.c);
    const bench_key keys[] = {{"first", &cr.t_first}, {"peak_kib", &cr.t_peak_kib}, {"growth_kib", &cr.t_growth_kib}};
    bench_torch_finish(t, keys, sizeof keys / sizeof keys[0]);

    cr.c_seconds = bench_median_of(cs, bc->reps, 1);
    cr.diff = -1;
    if (t->ok) {
        cr.t_seconds = bench_median_of(ts, bc->reps, 1);
        cr.ratio = bench_ratios(ts, cs, bc->reps, 1);
        cr.diff = output_difference(&files, (size_t)(cfg.out_channels * bc->d * bc->h * bc->w));
    }
    bench_temp_clear(); /* the model file is large: do not keep it until the end */
    return cr;
}

/* ---- main ------------------------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const bench_options opt = bench_parse_options(argc, argv);
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("repmode network benchmark: deploy form, batch 1, %d threads, %d rounds of one C and one PyTorch call "
           "after a warm-up, OPENBLAS_CORETYPE %s\n",
           opt.threads, opt.reps, coretype ? coretype : "(auto)");
    check_mac_count();
    bench_temp_make();

    const bench_case cases[] = {
        {OFFICIAL, 32, 64, 64, 1, opt.reps, opt.torch},
        {LITE, 64, 64, 64, 1, opt.reps, opt.torch},
        {OFFICIAL, 32, 128, 128, 0, 1, 0}, /* peak memory of the official patch: one call */
    };
    enum { N_CASES = sizeof cases / sizeof cases[0] };
    case_result res[N_CASES];
    for (int i = 0; i < N_CASES; i++)
        res[i] = run_case(&cases[i], opt.threads);
    bench_temp_remove();

    printf("\n%-9s %-11s %8s %8s %8s %10s %8s %10s %10s %10s %10s\n", "config", "size", "C s", "C GF/s", "torch s",
           "torch GF/s", "C/torch", "range", "C peak MiB", "C +fwd MiB", "torch MiB");
    for (int i = 0; i < N_CASES; i++) {
        const bench_case *bc = &cases[i];
        const case_result *r = &res[i];
        char size[32];
        snprintf(size, sizeof size, "%lldx%lldx%lld", (long long)bc->d, (long long)bc->h, (long long)bc->w);
        printf("%-9s %-11s %8.3f %8.1f", network_name(bc->net), size, r->c_seconds, 2 * r->gmac / r->c_seconds);
        if (r->torch.ok) {
            char range[32];
            snprintf(range, sizeof range, "%.2f-%.2f", r->ratio.min, r->ratio.max);
            printf(" %8.3f %10.1f %8.2f %10s", r->t_seconds, 2 * r->gmac / r->t_seconds, r->ratio.median, range);
        } else {
            printf(" %8s %10s %8s %10s", "-", "-", "-", "-");
        }
        printf(" %10.0f %10.0f", mib(r->c.peak_kib), mib(r->c.peak_kib - r->c.rss_kib));
        if (r->torch.ok)
            printf(" %10.0f\n", mib(r->t_peak_kib));
        else
            printf(" %10s\n", "-");
    }

    printf("\nEach round times one C call and one PyTorch call, the two processes alive side by side, which goes first "
           "alternating by round. C s, torch s: the medians of the rounds' calls. C/torch: C's throughput over "
           "PyTorch's, the median of the per-round ratios (torch s / C s of one round); range: the smallest and "
           "largest of them.\n");
    printf("C peak: VmHWM of a process holding the deploy form over its forward calls%s; +fwd: the part of it "
           "added by the calls (activations, working memory). torch MiB: the same for the PyTorch process.\n",
           res[0].c.hwm_reset ? " (VmHWM reset after the training form was dropped)"
                              : " (VmHWM could not be reset: it includes building the training form)");
    for (int i = 0; i < N_CASES; i++) {
        const bench_case *bc = &cases[i];
        const case_result *r = &res[i];
        printf("%s %lldx%lldx%lld: C first call %.3f s, building the model and deploy form peaked at %.0f MiB",
               network_name(bc->net), (long long)bc->d, (long long)bc->h, (long long)bc->w, r->c.first,
               mib(r->c.model_peak_kib));
        if (r->torch.ok)
            printf("; PyTorch %s first call %.3f s, +fwd %.0f MiB; outputs max|C - torch| / max|torch| = %.2e (%s)\n",
                   r->torch.version, r->t_first, mib(r->t_growth_kib), r->diff,
                   r->diff >= 0 && r->diff <= 1e-3 ? "agree" : "DIFFER");
        else
            printf("; PyTorch: %s\n", r->torch.why);
    }

    printf("\ntargets (reported, not enforced):\n");
    for (int i = 0; i < N_CASES; i++)
        if (res[i].torch.ok)
            printf("  %-8s C throughput >= %.1fx PyTorch: %.2fx (median of the rounds)  %s\n",
                   network_name(cases[i].net), TARGET_RATIO, res[i].ratio.median,
                   res[i].ratio.median >= TARGET_RATIO ? "met" : "MISSED");
    const double peak = (double)res[N_CASES - 1].c.peak_kib * 1024.0;
    printf("  official 32x128x128 peak <= %.1f GiB: %.2f GiB  %s\n", TARGET_PEAK_BYTES / (1 << 30), peak / (1 << 30),
           peak <= TARGET_PEAK_BYTES ? "met" : "MISSED");
    return 0;
}
