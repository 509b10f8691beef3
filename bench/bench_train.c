/* Training benchmark (issue 4): one training step of `lite` on 64³ with batch 2 — rm_model_forward_train, the MSE
 * loss against a random target and its gradient, rm_model_backward, an AdamW update (rm_optim_step) — against the
 * same step in PyTorch (bench_train_torch.py: the reference network of tests/reference/repmode_torch.py, the same
 * weights, input and target, torch.optim.AdamW with the same hyper-parameters), measured in the same run.
 *
 * The batch mixes two regression tasks (sample 0 task 0, sample 1 task 1): every MoDE layer merges two kernels,
 * BatchNorm takes its statistics over the batch. No dropout, so both sides compute the same thing: the loss of
 * step 1 (the saved weights) must agree to 1e-4 relative; the loss of step 2 (after one AdamW update) is printed
 * beside it as a check of the backward and the optimizer.
 *
 * The C side runs in a child process (its own VmHWM): it builds the model, writes it to a temporary file for
 * PyTorch with the input and the target, then runs one warm-up step (step 1, which allocates the training state)
 * and the median of the repeated ones, each phase timed on its own. PyTorch then runs the same steps.
 *
 * GFLOP/s = 2 × multiply-adds of (forward + backward) / seconds per step, convolutions only. The forward's count
 * is bench_network.c's (forward_macs: 5³ convolutions, 2³ stride-2 down- and up-sampling, checked against the
 * specification's hand count for `official`) times the batch; the backward counts 2× the forward (every
 * convolution's data gradient and weight gradient, each as many multiply-adds as its forward; the first layer's
 * input gradient, which neither side computes, is counted too: 0.8 % of the forward). So a step counts 3× the
 * forward: 412.8 GMAC, 825.6 GFLOP. Kernel merging (about 0.2 %), BatchNorm, activations, the loss and the
 * optimizer are not counted, but their time is in the step. These machines are shared: compare the ratio, not one
 * time. Each phase (forward, loss, backward, optimizer) is also timed on both sides, to show where the time goes.
 *
 * usage: repmode-bench-train [--threads N (2)] [--reps N >= 3 (5)] [--no-torch]
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "repmode/model.h"
#include "repmode/ops.h"
#include "repmode/optim.h"
#include "repmode/repmode.h"

#define BENCH_NAME "repmode-bench-train"
#include "bench_common.h"
#include "bench_timing.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "."
#endif
#define PYTHON "/usr/bin/python3"
#define TORCH_SCRIPT BENCH_SOURCE_DIR "/bench/bench_train_torch.py"

enum { MAX_REPS = 64, BATCH = 2, SIZE = 64 };

static const double TARGET_RATIO = 1.0;     /* C throughput ≥ PyTorch's */
static const double LOSS_TOLERANCE = 1e-4;  /* step 1: same weights, input and target */
static const double LOSS2_TOLERANCE = 1e-3; /* step 2: after one update, reported only */

static const int batch_tasks[BATCH] = {0, 1};

enum { FORWARD, LOSS, BACKWARD, OPTIMIZER, N_PHASES };
static const char *const phase_names[N_PHASES] = {"forward", "loss", "backward", "optimizer"};

/* What the child measures; sent to the parent through a pipe. */
typedef struct c_result {
    double seconds;           /* median step */
    double first;             /* the warm-up step (allocates the training state) */
    double phase[N_PHASES];   /* median of each phase */
    double first_phase[N_PHASES];
    double loss1, loss2;      /* the losses of steps 1 and 2 */
    long rss_kib;             /* VmRSS before the first step: model, optimizer state, data */
    long peak_kib;            /* VmHWM over the steps */
    int hwm_reset;
} c_result;

typedef struct torch_result {
    int ok;
    double seconds, first, phase[N_PHASES];
    double loss1, loss2;
    long peak_kib, growth_kib;
    char version[32];
    char why[128]; /* why there is no result */
} torch_result;

/* ---- configurations and their cost -------------------------------------------------------------------------- */

static rm_task bench_tasks[12];

static rm_config lite_config(void)
{
    bench_tasks[0] = rm_task_make("task0", RM_TASK_REGRESSION);
    bench_tasks[1] = rm_task_make("task1", RM_TASK_REGRESSION);
    return rm_config_lite(bench_tasks, 2);
}

/* The hand count of repmode-network.md §7 for `official`: 136.55 GMAC on 32×64×64. */
static void check_mac_count(void)
{
    rm_task tasks[12];
    const rm_config cfg = rm_config_official(tasks);
    const double a = forward_macs(&cfg, 32, 64, 64);
    if (fabs(a / 136.55e9 - 1) > 1e-4)
        die("the MAC count does not reproduce the specification's");
}

/* ---- files ---------------------------------------------------------------------------------------------------- */

typedef struct case_files {
    char model[320], input[320], target[320]; /* the folder has at most 255 characters */
} case_files;

static case_files files_of(const char *dir)
{
    case_files f;
    snprintf(f.model, sizeof f.model, "%s/model.safetensors", dir);
    snprintf(f.input, sizeof f.input, "%s/input.f32", dir);
    snprintf(f.target, sizeof f.target, "%s/target.f32", dir);
    return f;
}

/* The temporary folder, removed with what is left in it when the benchmark exits (also after an error). */
static char temp_dir[256];
static pid_t temp_owner;

static void remove_temp_dir(void)
{
    if (!temp_dir[0] || getpid() != temp_owner) /* not from a child process */
        return;
    const case_files f = files_of(temp_dir);
    remove(f.model);
    remove(f.input);
    remove(f.target);
    rmdir(temp_dir);
    temp_dir[0] = '\0';
}

/* ---- the C side (in a child process) ---------------------------------------------------------------------------- */

/* Uniform in [-1, 1) from a fixed xorshift generator: the same data in every run. */
static void fill_uniform(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 40) / (double)(1u << 24) * 2.0 - 1.0);
    }
}

static c_result run_c(const case_files *files, int threads, int reps, int torch)
{
    c_result r = {0};
    rm_ctx *ctx = rm_ctx_create(threads);
    if (!ctx)
        die("out of memory");
    const rm_config cfg = lite_config();
    rm_model *model;
    if (rm_model_create(ctx, &cfg, 42, &model) != RM_OK)
        die_rm(ctx, "rm_model_create");
    if (torch && rm_model_save(ctx, model, files->model) != RM_OK)
        die_rm(ctx, "rm_model_save");
    const rm_optim_config oc = rm_optim_adamw_default();
    rm_optim *opt;
    if (rm_optim_create(ctx, model, &oc, &opt) != RM_OK)
        die_rm(ctx, "rm_optim_create");

    const size_t nx = (size_t)(BATCH * cfg.in_channels * SIZE * SIZE * SIZE);
    const size_t ny = (size_t)(BATCH * cfg.out_channels * SIZE * SIZE * SIZE);
    float *xd = malloc(nx * sizeof *xd), *td = malloc(ny * sizeof *td);
    float *yd = calloc(ny, sizeof *yd), *dyd = calloc(ny, sizeof *dyd);
    if (!xd || !td || !yd || !dyd)
        die("out of memory");
    fill_uniform(xd, nx, 0x9e3779b97f4a7c15u);
    fill_uniform(td, ny, 0x2545f4914f6cdd1du);
    if (torch) {
        write_floats(files->input, xd, nx);
        write_floats(files->target, td, ny);
    }
    const rm_tensor x = rm_tensor_5d(xd, BATCH, cfg.in_channels, SIZE, SIZE, SIZE);
    const rm_tensor target = rm_tensor_5d(td, BATCH, cfg.out_channels, SIZE, SIZE, SIZE);
    rm_tensor y = rm_tensor_5d(yd, BATCH, cfg.out_channels, SIZE, SIZE, SIZE);
    rm_tensor dy = rm_tensor_5d(dyd, BATCH, cfg.out_channels, SIZE, SIZE, SIZE);

    r.hwm_reset = reset_peak();
    r.rss_kib = status_kib("VmRSS");
    double t[MAX_REPS + 1], ph[N_PHASES][MAX_REPS + 1];
    for (int i = 0; i < reps + 1; i++) {
        float loss = 0;
        const double t0 = bench_now();
        if (rm_model_forward_train(ctx, model, &x, batch_tasks, 0, &y) != RM_OK)
            die_rm(ctx, "rm_model_forward_train");
        const double t1 = bench_now();
        if (rm_mse_forward(ctx, &y, &target, &loss) != RM_OK || rm_mse_backward(ctx, &y, &target, 1.0f, &dy) != RM_OK)
            die_rm(ctx, "rm_mse");
        const double t2 = bench_now();
        if (rm_model_backward(ctx, model, &dy) != RM_OK)
            die_rm(ctx, "rm_model_backward");
        const double t3 = bench_now();
        if (rm_optim_step(ctx, opt, oc.lr) != RM_OK)
            die_rm(ctx, "rm_optim_step");
        const double t4 = bench_now();
        t[i] = t4 - t0;
        ph[FORWARD][i] = t1 - t0;
        ph[LOSS][i] = t2 - t1;
        ph[BACKWARD][i] = t3 - t2;
        ph[OPTIMIZER][i] = t4 - t3;
        if (i == 0)
            r.loss1 = loss;
        else if (i == 1)
            r.loss2 = loss;
    }
    r.peak_kib = status_kib("VmHWM");
    r.first = t[0];
    r.seconds = bench_median(t + 1, reps);
    for (int p = 0; p < N_PHASES; p++) {
        r.first_phase[p] = ph[p][0];
        r.phase[p] = bench_median(ph[p] + 1, reps);
    }

    free(xd);
    free(td);
    free(yd);
    free(dyd);
    rm_optim_free(opt);
    rm_model_free(model);
    rm_ctx_free(ctx);
    return r;
}

/* Runs the C side in a child process: its own address space, so its own VmHWM. */
static c_result run_c_in_child(const case_files *files, int threads, int reps, int torch)
{
    int fd[2];
    if (pipe(fd) != 0)
        die("pipe failed");
    fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0)
        die("fork failed");
    if (pid == 0) {
        close(fd[0]);
        const c_result r = run_c(files, threads, reps, torch);
        const ssize_t n = write(fd[1], &r, sizeof r);
        _exit(n == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fd[1]);
    c_result r = {0};
    const ssize_t n = read(fd[0], &r, sizeof r);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n != (ssize_t)sizeof r || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("the C benchmark's child process failed");
    return r;
}

/* ---- the PyTorch side ----------------------------------------------------------------------------------------- */

static torch_result run_torch(const case_files *files, int threads, int reps)
{
    torch_result r = {0};
    char tasks[32], dim[24], thr[16], nreps[16];
    snprintf(tasks, sizeof tasks, "%d,%d", batch_tasks[0], batch_tasks[1]);
    snprintf(dim, sizeof dim, "%d", SIZE);
    snprintf(thr, sizeof thr, "%d", threads);
    snprintf(nreps, sizeof nreps, "%d", reps);
    char *const argv[] = {PYTHON,   TORCH_SCRIPT, (char *)files->model, tasks,    dim,
                          dim,      dim,          thr,                  nreps,    "--input",
                          (char *)files->input,   "--target",           (char *)files->target, NULL};
    int fd[2];
    if (pipe(fd) != 0)
        die("pipe failed");
    fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0)
        die("fork failed");
    if (pid == 0) {
        close(fd[0]);
        if (dup2(fd[1], STDOUT_FILENO) < 0)
            _exit(127);
        close(fd[1]);
        execv(PYTHON, argv);
        _exit(127);
    }
    close(fd[1]);
    FILE *out = fdopen(fd[0], "r");
    if (!out)
        die("fdopen failed");
    /* `key value` lines; every key once. */
    struct {
        const char *key;
        double *value;
    } keys[] = {{"seconds", &r.seconds},       {"first", &r.first},           {"forward", &r.phase[FORWARD]},
                {"loss", &r.phase[LOSS]},      {"backward", &r.phase[BACKWARD]},
                {"optimizer", &r.phase[OPTIMIZER]}, {"loss1", &r.loss1},      {"loss2", &r.loss2}};
    enum { N_KEYS = sizeof keys / sizeof keys[0] };
    double peak = 0, growth = 0;
    char line[256], key[32], text[32];
    int found = 0;
    while (fgets(line, sizeof line, out)) {
        if (sscanf(line, "%31s %31s", key, text) != 2)
            continue;
        if (strcmp(key, "torch") == 0) {
            snprintf(r.version, sizeof r.version, "%s", text);
            found++;
            continue;
        }
        double *dst = strcmp(key, "peak_kib") == 0 ? &peak : strcmp(key, "growth_kib") == 0 ? &growth : NULL;
        for (int k = 0; k < N_KEYS && !dst; k++)
            if (strcmp(key, keys[k].key) == 0)
                dst = keys[k].value;
        if (dst && sscanf(text, "%lf", dst) == 1)
            found++;
    }
    r.peak_kib = (long)peak;
    r.growth_kib = (long)growth;
    fclose(out);
    int status = 0;
    waitpid(pid, &status, 0);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == 127)
        snprintf(r.why, sizeof r.why, "%s cannot run", PYTHON);
    else if (code == 3)
        snprintf(r.why, sizeof r.why, "PyTorch is not installed");
    else if (code != 0 || found != N_KEYS + 3)
        snprintf(r.why, sizeof r.why, "bench_train_torch.py failed (exit status %d)", code);
    else
        r.ok = 1;
    return r;
}

/* ---- main ------------------------------------------------------------------------------------------------------ */

static double relative(double a, double b)
{
    return fabs(a - b) / fmax(fabs(b), 1e-30);
}

static void usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--threads N (default 2)] [--reps N >= 3 (default 5)] [--no-torch]\n", prog);
    exit(1);
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 5, use_torch = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-torch") == 0)
            use_torch = 0;
        else
            usage(argv[0]);
    }
    if (threads < 1 || reps < 3 || reps > MAX_REPS)
        usage(argv[0]);

    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("repmode training benchmark: lite %dx%dx%d, batch %d (tasks %d and %d), forward + MSE + backward + AdamW, "
           "%d threads, median of %d steps after a warm-up, OPENBLAS_CORETYPE %s\n",
           SIZE, SIZE, SIZE, BATCH, batch_tasks[0], batch_tasks[1], threads, reps, coretype ? coretype : "(auto)");
    check_mac_count();
    const rm_config cfg = lite_config();
    const double fwd_gmac = BATCH * forward_macs(&cfg, SIZE, SIZE, SIZE) / 1e9;
    const double step_gmac = 3 * fwd_gmac; /* forward + backward (2× forward) */
    printf("MAC count: forward %.2f GMAC (batch %d), backward 2x that, step %.2f GMAC = %.1f GFLOP\n", fwd_gmac, BATCH,
           step_gmac, 2 * step_gmac);

    const char *tmp = getenv("TMPDIR");
    const int len = snprintf(temp_dir, sizeof temp_dir, "%s/repmode-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len < 0 || len >= (int)sizeof temp_dir)
        die("TMPDIR is too long");
    if (!mkdtemp(temp_dir))
        die_errno("cannot create a folder in", tmp && *tmp ? tmp : "/tmp");
    temp_owner = getpid();
    atexit(remove_temp_dir);
    const case_files files = files_of(temp_dir);

    printf("C ...\n");
    const c_result cr = run_c_in_child(&files, threads, reps, use_torch);
    torch_result tr = {0};
    if (use_torch) {
        printf("PyTorch ...\n");
        tr = run_torch(&files, threads, reps);
    } else {
        snprintf(tr.why, sizeof tr.why, "not run");
    }
    remove_temp_dir();

    const double c_gf = 2 * step_gmac / cr.seconds;
    printf("\n%-10s %9s %9s %8s\n", "phase", "C s", "torch s", "C/torch");
    for (int p = 0; p < N_PHASES; p++) {
        printf("%-10s %9.3f", phase_names[p], cr.phase[p]);
        if (tr.ok)
            printf(" %9.3f %8.2f\n", tr.phase[p], cr.phase[p] / tr.phase[p]);
        else
            printf(" %9s %8s\n", "-", "-");
    }
    printf("%-10s %9.3f", "step", cr.seconds);
    if (tr.ok)
        printf(" %9.3f %8.2f\n", tr.seconds, cr.seconds / tr.seconds);
    else
        printf(" %9s %8s\n", "-", "-");
    printf("(phases: medians of each phase; step: median of the whole steps; C/torch: time ratio)\n");

    printf("\n%-6s %9s %8s %9s %10s %8s %10s %10s %10s\n", "config", "C s/step", "C GF/s", "torch s", "torch GF/s",
           "C/torch", "C peak MiB", "C +steps", "torch MiB");
    printf("%-6s %9.3f %8.1f", "lite", cr.seconds, c_gf);
    if (tr.ok) {
        const double t_gf = 2 * step_gmac / tr.seconds;
        printf(" %9.3f %10.1f %8.2f", tr.seconds, t_gf, c_gf / t_gf);
    } else {
        printf(" %9s %10s %8s", "-", "-", "-");
    }
    printf(" %10.0f %10.0f", mib(cr.peak_kib), mib(cr.peak_kib - cr.rss_kib));
    if (tr.ok)
        printf(" %10.0f\n", mib(tr.peak_kib));
    else
        printf(" %10s\n", "-");
    printf("(C/torch: throughput ratio; C peak: VmHWM over the steps%s, +steps: the part added by the steps; "
           "torch MiB: the PyTorch process's VmHWM over its steps)\n",
           cr.hwm_reset ? "" : " (VmHWM could not be reset: includes building the model)");

    printf("\nC warm-up step %.3f s (forward %.3f, loss %.3f, backward %.3f, optimizer %.3f)", cr.first,
           cr.first_phase[FORWARD], cr.first_phase[LOSS], cr.first_phase[BACKWARD], cr.first_phase[OPTIMIZER]);
    if (tr.ok)
        printf("; PyTorch %s warm-up step %.3f s, +steps %.0f MiB\n", tr.version, tr.first, mib(tr.growth_kib));
    else
        printf("; PyTorch: %s\n", tr.why);
    const double d1 = tr.ok ? relative(cr.loss1, tr.loss1) : -1, d2 = tr.ok ? relative(cr.loss2, tr.loss2) : -1;
    printf("loss of step 1: C %.8g", cr.loss1);
    if (tr.ok)
        printf(", PyTorch %.8g, |C - torch| / |torch| = %.2e (%s, tolerance %.0e)\n", tr.loss1, d1,
               d1 <= LOSS_TOLERANCE ? "agree" : "DIFFER", LOSS_TOLERANCE);
    else
        printf("\n");
    printf("loss of step 2 (after one AdamW update): C %.8g", cr.loss2);
    if (tr.ok)
        printf(", PyTorch %.8g, relative difference %.2e (%s, tolerance %.0e)\n", tr.loss2, d2,
               d2 <= LOSS2_TOLERANCE ? "agree" : "DIFFER", LOSS2_TOLERANCE);
    else
        printf("\n");

    if (tr.ok) {
        const double ratio = tr.seconds / cr.seconds;
        printf("\ntarget (reported, not enforced):\n  lite training step, C throughput >= %.1fx PyTorch: %.2fx  %s\n",
               TARGET_RATIO, ratio, ratio >= TARGET_RATIO ? "met" : "MISSED");
    }
    return 0;
}
