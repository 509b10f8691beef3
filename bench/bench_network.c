/* Network benchmark: the deploy-form forward (rm_deploy_forward, batch 1) of `official` on 32×64×64 and of `lite`
 * on 64³, against the same networks with the same weights in PyTorch (bench_network_torch.py: the reference's
 * BatchNorm-folded DeployNet), measured in the same run, plus the peak memory of `official` on its 32×128×128 patch.
 *
 * Every configuration runs in a child process of its own, so its peak memory (VmHWM) is not polluted by the one
 * before. The child builds the model, writes it to a temporary file for PyTorch, makes the deploy form, drops the
 * training form, resets VmHWM (Linux clear_refs) and then times one warm-up call and the median of the repeated
 * ones. PyTorch then runs the same input; the outputs are compared, so both sides do the same computation.
 * GFLOP/s count 2 × the convolutions' multiply-adds. These machines are shared: compare the ratio, not one time.
 *
 * usage: repmode-bench-network [--threads N (2)] [--reps N >= 3 (5)] [--no-torch]
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
#include "repmode/repmode.h"

#define BENCH_NAME "repmode-bench-network"
#include "bench_common.h"
#include "bench_timing.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "."
#endif
#define PYTHON "/usr/bin/python3"
#define TORCH_SCRIPT BENCH_SOURCE_DIR "/bench/bench_network_torch.py"

enum { MAX_REPS = 64 };

static const double TARGET_RATIO = 0.7;                           /* C throughput ≥ 0.7× PyTorch's */
static const double TARGET_PEAK_BYTES = 1.5 * 1024 * 1024 * 1024; /* official 32×128×128 */

typedef enum { OFFICIAL, LITE } network;

typedef struct bench_case {
    network net;
    int64_t d, h, w;
    int warmup; /* one untimed call first */
    int reps;   /* timed calls (median) */
    int torch;  /* also in PyTorch, with the outputs compared */
} bench_case;

/* What a child measures; sent to the parent through a pipe. */
typedef struct c_result {
    double seconds;      /* median of the timed calls */
    double first;        /* the first call (allocates the activations) */
    long rss_kib;        /* VmRSS before the first call: deploy weights, context, program */
    long peak_kib;       /* VmHWM over the calls */
    int hwm_reset;       /* whether VmHWM could be reset after the training form was dropped */
    long model_peak_kib; /* VmHWM before the reset: building the model and its deploy form */
} c_result;

typedef struct torch_result {
    int ok;
    double seconds, first;
    long peak_kib, growth_kib;
    char version[32];
    char why[128]; /* why there is no result */
} torch_result;

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

/* The hand count of repmode-network.md §7 for `official`: 136.55 GMAC on 32×64×64, 273.1 G on 64³. */
static void check_mac_count(void)
{
    const rm_config cfg = make_config(OFFICIAL);
    const double a = forward_macs(&cfg, 32, 64, 64), b = forward_macs(&cfg, 64, 64, 64);
    printf("MAC count, official: %.2f G on 32x64x64 (spec 136.55 G), %.1f G on 64^3 (spec 273.1 G), %.4f M per voxel\n",
           a / 1e9, b / 1e9, a / (32 * 64 * 64) / 1e6);
    if (fabs(a / 136.55e9 - 1) > 1e-4 || fabs(b / 273.1e9 - 1) > 2e-4)
        die("the MAC count does not reproduce the specification's");
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
    char model[320], input[320], c_output[320], torch_output[320]; /* the folder has at most 255 characters */
} case_files;

static case_files files_of(const char *dir, int index)
{
    case_files f;
    snprintf(f.model, sizeof f.model, "%s/model%d.safetensors", dir, index);
    snprintf(f.input, sizeof f.input, "%s/input%d.f32", dir, index);
    snprintf(f.c_output, sizeof f.c_output, "%s/output%d_c.f32", dir, index);
    snprintf(f.torch_output, sizeof f.torch_output, "%s/output%d_torch.f32", dir, index);
    return f;
}

static void remove_files(const case_files *f)
{
    remove(f->model);
    remove(f->input);
    remove(f->c_output);
    remove(f->torch_output);
}

/* The temporary folder, removed with what is left in it when the benchmark exits (also after an error). */
static char temp_dir[256];
static pid_t temp_owner;
enum { MAX_CASES = 8 };

static void remove_temp_dir(void)
{
    if (!temp_dir[0] || getpid() != temp_owner) /* not from a child process */
        return;
    for (int i = 0; i < MAX_CASES; i++) {
        const case_files f = files_of(temp_dir, i);
        remove_files(&f);
    }
    rmdir(temp_dir);
    temp_dir[0] = '\0';
}

/* ---- the C side (in a child process) ---------------------------------------------------------------------------- */

/* Uniform in [-1, 1) from a fixed xorshift generator: the same input in every run. */
static void fill_input(float *x, size_t n)
{
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 40) / (double)(1u << 24) * 2.0 - 1.0);
    }
}

static c_result run_c(const bench_case *bc, const case_files *files, int threads)
{
    c_result r = {0};
    rm_ctx *ctx = rm_ctx_create(threads);
    if (!ctx)
        die("out of memory");
    const rm_config cfg = make_config(bc->net);
    rm_model *model;
    if (rm_model_create(ctx, &cfg, 42, &model) != RM_OK)
        die_rm(ctx, "rm_model_create");
    if (bc->torch && rm_model_save(ctx, model, files->model) != RM_OK)
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
    fill_input(xd, nx);
    memset(yd, 0, ny * sizeof *yd);
    if (bc->torch)
        write_floats(files->input, xd, nx);
    const rm_tensor x = rm_tensor_5d(xd, 1, cfg.in_channels, bc->d, bc->h, bc->w);
    rm_tensor y = rm_tensor_5d(yd, 1, cfg.out_channels, bc->d, bc->h, bc->w);

    r.model_peak_kib = status_kib("VmHWM");
    r.hwm_reset = reset_peak();
    r.rss_kib = status_kib("VmRSS");
    double t[MAX_REPS + 1];
    const int calls = bc->reps + (bc->warmup ? 1 : 0);
    for (int i = 0; i < calls; i++) {
        const double t0 = bench_now();
        if (rm_deploy_forward(ctx, deploy, &x, &y) != RM_OK)
            die_rm(ctx, "rm_deploy_forward");
        t[i] = bench_now() - t0;
    }
    r.peak_kib = status_kib("VmHWM");
    r.first = t[0];
    r.seconds = bench_median(t + (bc->warmup ? 1 : 0), bc->reps);
    if (bc->torch)
        write_floats(files->c_output, yd, ny);

    free(xd);
    free(yd);
    rm_deploy_free(deploy);
    rm_ctx_free(ctx);
    return r;
}

/* Runs the C side of one case in a child process: its own address space, so its own VmHWM. */
static c_result run_c_in_child(const bench_case *bc, const case_files *files, int threads)
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
        const c_result r = run_c(bc, files, threads);
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

static torch_result run_torch(const bench_case *bc, const case_files *files, int threads)
{
    torch_result r = {0};
    char dims[3][24], thr[16], reps[16];
    snprintf(dims[0], sizeof dims[0], "%lld", (long long)bc->d);
    snprintf(dims[1], sizeof dims[1], "%lld", (long long)bc->h);
    snprintf(dims[2], sizeof dims[2], "%lld", (long long)bc->w);
    snprintf(thr, sizeof thr, "%d", threads);
    snprintf(reps, sizeof reps, "%d", bc->reps);
    char *const argv[] = {PYTHON,
                          TORCH_SCRIPT,
                          (char *)files->model,
                          "0",
                          dims[0],
                          dims[1],
                          dims[2],
                          thr,
                          reps,
                          "--input",
                          (char *)files->input,
                          "--output",
                          (char *)files->torch_output,
                          NULL};
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
    char line[256];
    int found = 0;
    while (fgets(line, sizeof line, out)) {
        found += sscanf(line, "seconds %lf", &r.seconds) == 1;
        found += sscanf(line, "first %lf", &r.first) == 1;
        found += sscanf(line, "peak_kib %ld", &r.peak_kib) == 1;
        found += sscanf(line, "growth_kib %ld", &r.growth_kib) == 1;
        found += sscanf(line, "torch %31s", r.version) == 1;
    }
    fclose(out);
    int status = 0;
    waitpid(pid, &status, 0);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == 127)
        snprintf(r.why, sizeof r.why, "%s cannot run", PYTHON);
    else if (code == 3)
        snprintf(r.why, sizeof r.why, "PyTorch is not installed");
    else if (code != 0 || found != 5)
        snprintf(r.why, sizeof r.why, "bench_network_torch.py failed (exit status %d)", code);
    else
        r.ok = 1;
    return r;
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

/* ---- main ------------------------------------------------------------------------------------------------------ */

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
    printf("repmode network benchmark: deploy form, batch 1, %d threads, median of %d runs after a warm-up, "
           "OPENBLAS_CORETYPE %s\n",
           threads, reps, coretype ? coretype : "(auto)");
    check_mac_count();

    const char *tmp = getenv("TMPDIR");
    const int len = snprintf(temp_dir, sizeof temp_dir, "%s/repmode-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len < 0 || len >= (int)sizeof temp_dir)
        die("TMPDIR is too long");
    if (!mkdtemp(temp_dir))
        die_errno("cannot create a folder in", tmp && *tmp ? tmp : "/tmp");
    temp_owner = getpid();
    atexit(remove_temp_dir);

    const bench_case cases[] = {
        {OFFICIAL, 32, 64, 64, 1, reps, use_torch},
        {LITE, 64, 64, 64, 1, reps, use_torch},
        {OFFICIAL, 32, 128, 128, 0, 1, 0}, /* peak memory of the official patch: one call */
    };
    enum { N_CASES = sizeof cases / sizeof cases[0] };
    _Static_assert((int)N_CASES <= (int)MAX_CASES, "remove_temp_dir removes MAX_CASES cases' files");
    c_result cr[N_CASES];
    torch_result tr[N_CASES];
    double diff[N_CASES], gmacs[N_CASES];
    for (int i = 0; i < N_CASES; i++) {
        const bench_case *bc = &cases[i];
        const case_files files = files_of(temp_dir, i);
        const rm_config cfg = make_config(bc->net);
        gmacs[i] = forward_macs(&cfg, bc->d, bc->h, bc->w) / 1e9;
        printf("%s %lldx%lldx%lld: %.2f GMAC ...\n", network_name(bc->net), (long long)bc->d, (long long)bc->h,
               (long long)bc->w, gmacs[i]);
        cr[i] = run_c_in_child(bc, &files, threads);
        memset(&tr[i], 0, sizeof tr[i]);
        diff[i] = -1;
        if (bc->torch) {
            tr[i] = run_torch(bc, &files, threads);
            if (tr[i].ok)
                diff[i] = output_difference(&files, (size_t)(cfg.out_channels * bc->d * bc->h * bc->w));
        } else {
            snprintf(tr[i].why, sizeof tr[i].why, "not run");
        }
        remove_files(&files); /* the model file is large: do not keep it until the end */
    }
    remove_temp_dir();

    printf("\n%-9s %-11s %9s %8s %9s %8s %8s %10s %10s %10s\n", "config", "size", "C s", "C GF/s", "torch s",
           "torch GF/s", "C/torch", "C peak MiB", "C +fwd MiB", "torch MiB");
    for (int i = 0; i < N_CASES; i++) {
        const bench_case *bc = &cases[i];
        char size[32];
        snprintf(size, sizeof size, "%lldx%lldx%lld", (long long)bc->d, (long long)bc->h, (long long)bc->w);
        const double c_gf = 2 * gmacs[i] / cr[i].seconds;
        printf("%-9s %-11s %9.3f %8.1f", network_name(bc->net), size, cr[i].seconds, c_gf);
        if (tr[i].ok) {
            const double t_gf = 2 * gmacs[i] / tr[i].seconds;
            printf(" %9.3f %8.1f %8.2f", tr[i].seconds, t_gf, c_gf / t_gf);
        } else {
            printf(" %9s %8s %8s", "-", "-", "-");
        }
        printf(" %10.0f %10.0f", mib(cr[i].peak_kib), mib(cr[i].peak_kib - cr[i].rss_kib));
        if (tr[i].ok)
            printf(" %10.0f\n", mib(tr[i].peak_kib));
        else
            printf(" %10s\n", "-");
    }

    printf("\nC peak: VmHWM of a process holding the deploy form over its forward calls%s; +fwd: the part of it "
           "added by the calls (activations, working memory). torch MiB: the same for the PyTorch process.\n",
           cr[0].hwm_reset ? " (VmHWM reset after the training form was dropped)"
                           : " (VmHWM could not be reset: it includes building the training form)");
    for (int i = 0; i < N_CASES; i++) {
        const bench_case *bc = &cases[i];
        printf("%s %lldx%lldx%lld: C first call %.3f s, building the model and deploy form peaked at %.0f MiB",
               network_name(bc->net), (long long)bc->d, (long long)bc->h, (long long)bc->w, cr[i].first,
               mib(cr[i].model_peak_kib));
        if (tr[i].ok)
            printf("; PyTorch %s first call %.3f s, +fwd %.0f MiB; outputs max|C - torch| / max|torch| = %.2e (%s)\n",
                   tr[i].version, tr[i].first, mib(tr[i].growth_kib), diff[i],
                   diff[i] >= 0 && diff[i] <= 1e-3 ? "agree" : "DIFFER");
        else
            printf("; PyTorch: %s\n", tr[i].why);
    }

    printf("\ntargets (reported, not enforced):\n");
    for (int i = 0; i < N_CASES; i++)
        if (tr[i].ok) {
            const double ratio = tr[i].seconds / cr[i].seconds;
            printf("  %-8s C throughput >= %.1fx PyTorch: %.2fx  %s\n", network_name(cases[i].net), TARGET_RATIO, ratio,
                   ratio >= TARGET_RATIO ? "met" : "MISSED");
        }
    const double peak = (double)cr[N_CASES - 1].peak_kib * 1024.0;
    printf("  official 32x128x128 peak <= %.1f GiB: %.2f GiB  %s\n", TARGET_PEAK_BYTES / (1 << 30), peak / (1 << 30),
           peak <= TARGET_PEAK_BYTES ? "met" : "MISSED");
    return 0;
}
