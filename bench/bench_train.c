/* Training benchmark (issues 4 and 14): one training step of `lite` on 64³ with batch 2 — rm_model_forward_train,
 * the MSE loss against a random target and its gradient, rm_model_backward, an AdamW update (rm_optim_step) —
 * against the same step in PyTorch (bench_train_torch.py: the reference network of tests/reference/repmode_torch.py,
 * the same weights, input and target, torch.optim.AdamW with the same hyper-parameters) run twice, once with glibc's
 * default malloc and once at its best (bench_common.h: two glibc malloc variables in that process's environment
 * only), all measured in the same run, with C's share of this machine's FMA peak.
 *
 * The batch mixes two regression tasks (sample 0 task 0, sample 1 task 1): every MoDE layer merges two kernels,
 * BatchNorm takes its statistics over the batch. No dropout, so both sides compute the same thing: the loss of
 * step 1 (the saved weights) must agree to 1e-4 relative; the loss of step 2 (after one AdamW update) is printed
 * beside it as a check of the backward and the optimizer.
 *
 * The C side runs in a child process (its own VmHWM): it builds the model, writes it to a temporary file for
 * PyTorch with the input and the target, then runs one warm-up step (step 1, which allocates the training state).
 * The two PyTorch processes then load the same model and run their own warm-up steps. With the three ready, the
 * benchmark times rounds: in each, one step on each side, the side that goes first rotating by round
 * (bench_common.h), so that a change of the shared machine's load falls on every side alike. Each phase (forward,
 * loss, backward, optimizer) is also timed on every side, to show where the time goes. Ratios are medians of the
 * per-round ratios; their range is printed beside them.
 *
 * GFLOP/s = 2 × multiply-adds of (forward + backward) / seconds per step, convolutions only. The forward's count
 * is bench_network.c's (forward_macs: 5³ convolutions, 2³ stride-2 down- and up-sampling, checked against the
 * docs/network.md §8 hand count for `official`) times the batch; the backward counts 2× the forward (every
 * convolution's data gradient and weight gradient, each as many multiply-adds as its forward; the first layer's
 * input gradient, which neither side computes, is counted too: 0.8 % of the forward). So a step counts 3× the
 * forward: 412.8 GMAC, 825.6 GFLOP. Kernel merging (about 0.2 %), BatchNorm, activations, the loss and the
 * optimizer are not counted, but their time is in the step. "% peak" is C's GFLOP/s over the FMA peak
 * (bench_peak.h), measured in a child process before and after the rounds, the larger of the two.
 *
 * usage: repmode-bench-train [--threads N (2)] [--reps N >= 3 (5)] [--no-torch]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repmode/model.h"
#include "repmode/ops.h"
#include "repmode/optim.h"
#include "repmode/repmode.h"

#define BENCH_NAME "repmode-bench-train"
#include "bench_common.h"

enum { BATCH = 2, SIZE = 64 };

static const double TARGET_RATIO = 2.5;     /* C throughput ≥ 2.5× PyTorch's, with default malloc and at its best */
static const double TARGET_SHARE = 0.60;    /* C GFLOP/s ≥ 60 % of the measured FMA peak */
static const double LOSS_TOLERANCE = 1e-4;  /* step 1: same weights, input and target */
static const double LOSS2_TOLERANCE = 1e-3; /* step 2: after one update, reported only */

static const int batch_tasks[BATCH] = {0, 1};

/* A step's seconds, as every side replies to "run": the whole step, then each phase. */
enum { STEP, FORWARD, LOSS, BACKWARD, OPTIMIZER, N_TIMES };
static const char *const time_names[N_TIMES] = {"step", "forward", "loss", "backward", "optimizer"};
_Static_assert((int)N_TIMES <= (int)BENCH_MAX_VALUES, "a reply to run holds at most BENCH_MAX_VALUES numbers");

/* What the C child measures beyond its steps' seconds; sent to the benchmark at "done". */
typedef struct c_result {
    double first[N_TIMES]; /* the warm-up step (allocates the training state) */
    double loss1, loss2;   /* the losses of steps 1 and 2 */
    long rss_kib;          /* VmRSS before the first step: model, optimizer state, data */
    long peak_kib;         /* VmHWM over the steps */
    int hwm_reset;
} c_result;

/* ---- configurations and their cost -------------------------------------------------------------------------- */

static rm_task bench_tasks[12];

static rm_config lite_config(void)
{
    bench_tasks[0] = rm_task_make("task0", RM_TASK_REGRESSION);
    bench_tasks[1] = rm_task_make("task1", RM_TASK_REGRESSION);
    return rm_config_lite(bench_tasks, 2);
}

/* ---- files ---------------------------------------------------------------------------------------------------- */

typedef struct case_files {
    char model[BENCH_PATH], input[BENCH_PATH], target[BENCH_PATH];
} case_files;

static case_files files_of(const char *dir)
{
    case_files f;
    snprintf(f.model, sizeof f.model, "%s/model.safetensors", dir);
    snprintf(f.input, sizeof f.input, "%s/input.f32", dir);
    snprintf(f.target, sizeof f.target, "%s/target.f32", dir);
    return f;
}

/* ---- the C side (in a child process) ---------------------------------------------------------------------------- */

typedef struct c_job {
    const case_files *files;
    int threads;
    int torch; /* write the files for PyTorch */
} c_job;

typedef struct train_state {
    rm_ctx *ctx;
    rm_model *model;
    rm_optim *opt;
    float lr;
    rm_tensor x, target, y, dy;
} train_state;

/* One training step, each phase timed into t[]; its loss. */
static float timed_step(train_state *s, double t[N_TIMES])
{
    float loss = 0;
    const double t0 = bench_now();
    if (rm_model_forward_train(s->ctx, s->model, &s->x, batch_tasks, 0, &s->y) != RM_OK)
        die_rm(s->ctx, "rm_model_forward_train");
    const double t1 = bench_now();
    if (rm_mse_forward(s->ctx, &s->y, &s->target, &loss) != RM_OK ||
        rm_mse_backward(s->ctx, &s->y, &s->target, 1.0f, &s->dy) != RM_OK)
        die_rm(s->ctx, "rm_mse");
    const double t2 = bench_now();
    if (rm_model_backward(s->ctx, s->model, &s->dy) != RM_OK)
        die_rm(s->ctx, "rm_model_backward");
    const double t3 = bench_now();
    if (rm_optim_step(s->ctx, s->opt, s->lr) != RM_OK)
        die_rm(s->ctx, "rm_optim_step");
    const double t4 = bench_now();
    t[STEP] = t4 - t0;
    t[FORWARD] = t1 - t0;
    t[LOSS] = t2 - t1;
    t[BACKWARD] = t3 - t2;
    t[OPTIMIZER] = t4 - t3;
    return loss;
}

/* The C child (bench_child_fork): the model, optimizer and data ready, step 1 as the warm-up, then one step per
 * "run". */
static void serve_c(FILE *in, FILE *out, void *arg)
{
    const c_job *job = arg;
    c_result r = {0};
    train_state s = {0};
    s.ctx = rm_ctx_create(job->threads);
    if (!s.ctx)
        die("out of memory");
    const rm_config cfg = lite_config();
    if (rm_model_create(s.ctx, &cfg, 42, &s.model) != RM_OK)
        die_rm(s.ctx, "rm_model_create");
    if (job->torch && rm_model_save(s.ctx, s.model, job->files->model) != RM_OK)
        die_rm(s.ctx, "rm_model_save");
    const rm_optim_config oc = rm_optim_adamw_default();
    if (rm_optim_create(s.ctx, s.model, &oc, &s.opt) != RM_OK)
        die_rm(s.ctx, "rm_optim_create");
    s.lr = oc.lr;

    const size_t nx = (size_t)(BATCH * cfg.in_channels * SIZE * SIZE * SIZE);
    const size_t ny = (size_t)(BATCH * cfg.out_channels * SIZE * SIZE * SIZE);
    float *xd = malloc(nx * sizeof *xd), *td = malloc(ny * sizeof *td);
    float *yd = calloc(ny, sizeof *yd), *dyd = calloc(ny, sizeof *dyd);
    if (!xd || !td || !yd || !dyd)
        die("out of memory");
    fill_uniform(xd, nx, 0x9e3779b97f4a7c15u);
    fill_uniform(td, ny, 0x2545f4914f6cdd1du);
    if (job->torch) {
        write_floats(job->files->input, xd, nx);
        write_floats(job->files->target, td, ny);
    }
    s.x = rm_tensor_5d(xd, BATCH, cfg.in_channels, SIZE, SIZE, SIZE);
    s.target = rm_tensor_5d(td, BATCH, cfg.out_channels, SIZE, SIZE, SIZE);
    s.y = rm_tensor_5d(yd, BATCH, cfg.out_channels, SIZE, SIZE, SIZE);
    s.dy = rm_tensor_5d(dyd, BATCH, cfg.out_channels, SIZE, SIZE, SIZE);

    r.hwm_reset = reset_peak();
    r.rss_kib = status_kib("VmRSS");
    r.loss1 = timed_step(&s, r.first);
    bench_say(out, "ready");
    for (int i = 0; bench_next_command(in); i++) {
        double t[N_TIMES];
        const float loss = timed_step(&s, t);
        if (i == 0)
            r.loss2 = loss;
        bench_say_seconds(out, t, N_TIMES);
    }
    r.peak_kib = status_kib("VmHWM");

    free(xd);
    free(td);
    free(yd);
    free(dyd);
    rm_optim_free(s.opt);
    rm_model_free(s.model);
    rm_ctx_free(s.ctx);
    bench_say_result(out, &r, sizeof r);
}

/* ---- main ------------------------------------------------------------------------------------------------------ */

/* "<what> <C's loss>", and for each PyTorch side that ran, its loss and whether the two agree. */
static void print_loss(const char *what, double c, const bench_torch t[BENCH_TORCH_SIDES],
                       const double torch[BENCH_TORCH_SIDES], double tolerance)
{
    printf("%s: C %.8g", what, c);
    int compared = 0;
    for (int s = 0; s < BENCH_TORCH_SIDES; s++)
        if (t[s].ok) {
            const double d = fabs(c - torch[s]) / fmax(fabs(torch[s]), 1e-30);
            printf(", %s %.8g (relative difference %.2e, %s)", bench_torch_label[s], torch[s], d,
                   d <= tolerance ? "agree" : "DIFFER");
            compared = 1;
        }
    if (compared)
        printf(" (tolerance %.0e)", tolerance);
    printf("\n");
}

int main(int argc, char **argv)
{
    const bench_options opt = bench_parse_options(argc, argv);
    const int reps = opt.reps;
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("repmode training benchmark: lite %dx%dx%d, batch %d (tasks %d and %d), forward + MSE + backward + AdamW, "
           "%d threads, %d rounds of one step on each side (C, PyTorch with default malloc, PyTorch at its best) "
           "after a warm-up, OPENBLAS_CORETYPE %s\n",
           SIZE, SIZE, SIZE, BATCH, batch_tasks[0], batch_tasks[1], opt.threads, reps, coretype ? coretype : "(auto)");
    check_mac_count();
    const rm_config cfg = lite_config();
    const double fwd_gmac = BATCH * forward_macs(&cfg, SIZE, SIZE, SIZE) / 1e9;
    const double step_gmac = 3 * fwd_gmac; /* forward + backward (2× forward) */
    printf("MAC count: forward %.2f GMAC (batch %d), backward 2x that, step %.2f GMAC = %.1f GFLOP\n", fwd_gmac, BATCH,
           step_gmac, 2 * step_gmac);
    const double peak_before = bench_fma_peak(opt.threads);

    bench_temp_make();
    const case_files files = files_of(bench_temp);
    printf("C and PyTorch ...\n");
    c_job job = {&files, opt.threads, opt.torch};
    bench_child c = bench_c_start(serve_c, &job);
    char tasks[32];
    snprintf(tasks, sizeof tasks, "%d,%d", batch_tasks[0], batch_tasks[1]);
    const bench_torch_args args = {BENCH_SCRIPT("bench_train_torch.py"),
                                   files.model,
                                   tasks,
                                   SIZE,
                                   SIZE,
                                   SIZE,
                                   opt.threads,
                                   files.input,
                                   "--target",
                                   files.target};
    bench_torch t[BENCH_TORCH_SIDES];
    double cs[BENCH_MAX_ROUNDS * N_TIMES], ts[BENCH_TORCH_SIDES][BENCH_MAX_ROUNDS * N_TIMES];
    double *tv[BENCH_TORCH_SIDES];
    for (int s = 0; s < BENCH_TORCH_SIDES; s++) {
        bench_torch_start(&t[s], s, opt.torch ? &args : NULL);
        tv[s] = ts[s];
    }

    bench_rounds(&c, t, reps, N_TIMES, cs, tv);
    c_result cr;
    bench_c_finish(&c, &cr, sizeof cr);
    double t_loss1[BENCH_TORCH_SIDES] = {0}, t_loss2[BENCH_TORCH_SIDES] = {0};
    for (int s = 0; s < BENCH_TORCH_SIDES; s++) {
        const bench_key keys[] = {{"loss1", &t_loss1[s]}, {"loss2", &t_loss2[s]}};
        bench_torch_finish(&t[s], keys, sizeof keys / sizeof keys[0]);
    }
    bench_temp_remove();
    const double peak = bench_print_peak(peak_before, bench_fma_peak(opt.threads), opt.threads);

    /* Medians of each phase and of the whole steps, and the per-round time ratios C / PyTorch. */
    double c_med[N_TIMES];
    bench_versus phase[BENCH_TORCH_SIDES][N_TIMES]; /* ratio: C's time over PyTorch's */
    for (int k = 0; k < N_TIMES; k++) {
        c_med[k] = bench_median_of(cs + k, reps, N_TIMES);
        for (int s = 0; s < BENCH_TORCH_SIDES; s++)
            if (t[s].ok) {
                phase[s][k].seconds = bench_median_of(ts[s] + k, reps, N_TIMES);
                phase[s][k].ratio = bench_ratios(cs + k, ts[s] + k, reps, N_TIMES);
            }
    }

    printf("\n%-10s %9s", "phase", "C s");
    for (int s = 0; s < BENCH_TORCH_SIDES; s++) {
        char secs[16], ratio[16];
        snprintf(secs, sizeof secs, "%s s", bench_torch_label[s]);
        snprintf(ratio, sizeof ratio, "C/%s", bench_torch_label[s]);
        printf(" %9s %8s %10s", secs, ratio, "range");
    }
    printf("\n");
    for (int k = FORWARD; k <= N_TIMES; k++) {
        const int p = k % N_TIMES; /* the whole step last */
        printf("%-10s %9.3f", time_names[p], c_med[p]);
        for (int s = 0; s < BENCH_TORCH_SIDES; s++)
            if (t[s].ok) {
                char range[32];
                snprintf(range, sizeof range, "%.2f-%.2f", phase[s][p].ratio.min, phase[s][p].ratio.max);
                printf(" %9.3f %8.2f %10s", phase[s][p].seconds, phase[s][p].ratio.median, range);
            } else {
                printf(" %9s %8s %10s", "-", "-", "-");
            }
        printf("\n");
    }
    printf("(seconds: medians of each phase over the rounds, and of the whole steps; C/torch, C/best: time ratio, the "
           "median of the per-round ratios; range: the smallest and largest of them)\n");

    bench_versus step[BENCH_TORCH_SIDES] = {{0}}; /* ratio: C's throughput over PyTorch's */
    for (int s = 0; s < BENCH_TORCH_SIDES; s++)
        if (t[s].ok)
            step[s] = bench_versus_of(cs + STEP, ts[s] + STEP, reps, N_TIMES);
    const double c_gf = 2 * step_gmac / c_med[STEP];
    printf("\n%-6s %9s %8s %7s", "config", "C s/step", "C GF/s", "% peak");
    bench_print_torch_heading();
    printf(" %9s %9s", "C MiB", "C +steps");
    bench_print_torch_memory_heading();
    printf("\n%-6s %9.3f %8.1f %6.1f%%", "lite", c_med[STEP], c_gf, 100 * c_gf / peak);
    bench_print_torch_row(t, step, 2 * step_gmac);
    printf(" %9.0f %9.0f", mib(cr.peak_kib), mib(cr.peak_kib - cr.rss_kib));
    bench_print_torch_memory(t);
    printf("\n\n");
    bench_print_legend("step", peak);
    printf("C MiB: VmHWM over the steps%s, C +steps: the part added by the steps; torch MiB, best MiB: each PyTorch "
           "process's VmHWM over its steps\n",
           cr.hwm_reset ? "" : " (VmHWM could not be reset: includes building the model)");

    printf("\nC warm-up step %.3f s (forward %.3f, loss %.3f, backward %.3f, optimizer %.3f)\n", cr.first[STEP],
           cr.first[FORWARD], cr.first[LOSS], cr.first[BACKWARD], cr.first[OPTIMIZER]);
    for (int s = 0; s < BENCH_TORCH_SIDES; s++)
        if (t[s].ok)
            printf("%-5s PyTorch %s warm-up step %.3f s, +steps %.0f MiB\n", bench_torch_label[s], t[s].version,
                   t[s].first, mib(t[s].growth_kib));
        else
            printf("%-5s PyTorch: %s\n", bench_torch_label[s], t[s].why);
    print_loss("loss of step 1", cr.loss1, t, t_loss1, LOSS_TOLERANCE);
    print_loss("loss of step 2 (after one AdamW update)", cr.loss2, t, t_loss2, LOSS2_TOLERANCE);

    printf("\ntargets (reported, not enforced):\n");
    char what[128], figure[64];
    for (int s = 0; s < BENCH_TORCH_SIDES; s++)
        if (t[s].ok) {
            snprintf(what, sizeof what, "lite training step: C throughput >= %.1fx %s", TARGET_RATIO,
                     s == BENCH_TORCH_BEST ? "PyTorch at its best" : "PyTorch with default malloc");
            snprintf(figure, sizeof figure, "%.2fx (median)", step[s].ratio.median);
            bench_print_target(what, figure, step[s].ratio.median >= TARGET_RATIO);
        }
    snprintf(what, sizeof what, "lite training step: C >= %.0f%% of the measured FMA peak", 100 * TARGET_SHARE);
    snprintf(figure, sizeof figure, "%.1f%%", 100 * c_gf / peak);
    bench_print_target(what, figure, c_gf / peak >= TARGET_SHARE);
    return 0;
}
