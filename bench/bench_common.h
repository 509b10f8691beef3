/* What the two comparisons with PyTorch share (bench_network.c, bench_train.c) beyond timing: fatal errors naming
 * the benchmark (BENCH_NAME, defined before this header, with _POSIX_C_SOURCE 200809L), the options, the
 * convolutions' multiply-add count, the machine's FMA peak, the process's memory from /proc, raw float files, the
 * temporary folder, and the three child processes (C, PyTorch with glibc's default malloc, PyTorch at its best)
 * that the benchmark drives side by side. */
#ifndef REPMODE_BENCH_COMMON_H
#define REPMODE_BENCH_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repmode/model.h"
#include "repmode/repmode.h"

#include "bench_peak.h"
#include "bench_timing.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME (the benchmark's name for its messages) before including bench_common.h"
#endif

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR "."
#endif
/* The PyTorch sides run from the source tree, where bench_torch_common.py sits beside them. */
#define BENCH_PYTHON "/usr/bin/python3"
#define BENCH_SCRIPT(name) BENCH_SOURCE_DIR "/bench/" name

_Noreturn static void die(const char *what)
{
    fprintf(stderr, BENCH_NAME ": %s\n", what);
    exit(1);
}

_Noreturn static void die_errno(const char *what, const char *path)
{
    fprintf(stderr, BENCH_NAME ": %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

_Noreturn static void die_rm(rm_ctx *ctx, const char *what)
{
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, rm_ctx_error(ctx));
    exit(1);
}

/* ---- options ---------------------------------------------------------------------------------------------------- */

enum { BENCH_MAX_ROUNDS = 64 };

typedef struct bench_options {
    int threads; /* --threads N (2) */
    int reps;    /* --reps N, 3..BENCH_MAX_ROUNDS (5): the timed rounds */
    int torch;   /* 0 with --no-torch */
} bench_options;

static bench_options bench_parse_options(int argc, char **argv)
{
    bench_options o = {2, 5, 1};
    int ok = 1;
    for (int i = 1; i < argc && ok; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            o.threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            o.reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-torch") == 0)
            o.torch = 0;
        else
            ok = 0;
    }
    if (!ok || o.threads < 1 || o.reps < 3 || o.reps > BENCH_MAX_ROUNDS) {
        fprintf(stderr, "usage: %s [--threads N (default 2)] [--reps N >= 3 (default 5)] [--no-torch]\n", argv[0]);
        exit(1);
    }
    return o;
}

/* ---- cost and memory -------------------------------------------------------------------------------------------- */

/* Multiply-adds of one forward over d×h×w voxels, convolutions only: a 5³ convolution costs ci·co·125 per output
 * voxel, the 2³ stride-2 down-sampling ci·co·8 per output voxel, the transposed up-sampling ci·co·8 per input
 * voxel. Level k (1..L) has voxels v >> 3(k-1), the bottleneck (L+1) the coarsest. */
static double forward_macs(const rm_config *cfg, int64_t d, int64_t h, int64_t w)
{
    const int L = cfg->levels;
    const double v = (double)(d * h * w);
    double macs = 0;
    for (int k = 1; k <= L; k++) {
        const double vk = v / pow(8.0, k - 1), vnext = vk / 8.0;
        const double c = (double)rm_config_channels(cfg, k), cnext = (double)rm_config_channels(cfg, k + 1);
        const double cin = k == 1 ? (double)cfg->in_channels : (double)rm_config_channels(cfg, k - 1);
        macs += (cin * c + c * c) * 125 * vk;   /* encoder: Sub2(cin → c) */
        macs += c * c * 8 * vnext;              /* down: c → c, per output voxel at level k+1 */
        macs += cnext * c * 8 * vnext;          /* up: cnext → c, per input voxel at level k+1 */
        macs += (2 * c * c + c * c) * 125 * vk; /* decoder: Sub2(2c → c) on [skip, up] */
    }
    const double cb = (double)rm_config_channels(cfg, L + 1), cl = (double)rm_config_channels(cfg, L);
    /* the bottleneck, Sub2(cl → cb), then conv_out */
    macs += (cl * cb + cb * cb) * 125 * (v / pow(8.0, L));
    macs += (double)rm_config_channels(cfg, 1) * (double)cfg->out_channels * 125 * v;
    return macs;
}

/* forward_macs against the hand count of docs/network.md §8 for `official`: 136.55 GMAC on 32×64×64, 273.1 G
 * on 64³; printed, and fatal when they differ. */
static void check_mac_count(void)
{
    rm_task tasks[12];
    const rm_config cfg = rm_config_official(tasks);
    const double a = forward_macs(&cfg, 32, 64, 64), b = forward_macs(&cfg, 64, 64, 64);
    printf("MAC count, official: %.2f G on 32x64x64 (spec 136.55 G), %.1f G on 64^3 (spec 273.1 G), "
           "%.4f M per voxel\n",
           a / 1e9, b / 1e9, a / (32 * 64 * 64) / 1e6);
    if (fabs(a / 136.55e9 - 1) > 1e-4 || fabs(b / 273.1e9 - 1) > 2e-4)
        die("the MAC count does not reproduce the specification's");
}

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    const size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Resets VmHWM to the current VmRSS (Linux 4.0 and later); 0 where that is not allowed. */
static int reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return 0;
    const int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static double mib(double kib)
{
    return kib / 1024.0;
}

/* ---- data and files --------------------------------------------------------------------------------------------- */

/* Uniform in [-1, 1) from a fixed xorshift generator: the same data in every run. */
static void fill_uniform(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 40) / (double)(1u << 24) * 2.0 - 1.0);
    }
}

static void write_floats(const char *path, const float *v, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        die_errno("cannot write", path);
    if (fwrite(v, sizeof *v, n, f) != n || fclose(f) != 0)
        die_errno("cannot write", path);
}

/* The folder of the files the sides exchange (bench_temp_make): at most 255 characters, so that the path of a
 * file with a short name in it fits in BENCH_PATH. */
enum { BENCH_PATH = 320 };
static char bench_temp[256];
static pid_t bench_temp_owner;

/* Removes the files in the folder: the model files are large, do not keep them longer than needed. */
static void bench_temp_clear(void)
{
    DIR *dir = opendir(bench_temp);
    if (!dir)
        return;
    for (struct dirent *e; (e = readdir(dir));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            char path[sizeof bench_temp + 1 + sizeof e->d_name];
            snprintf(path, sizeof path, "%s/%s", bench_temp, e->d_name);
            remove(path);
        }
    closedir(dir);
}

static void bench_temp_remove(void)
{
    if (!bench_temp[0] || getpid() != bench_temp_owner) /* not from a child process */
        return;
    bench_temp_clear();
    rmdir(bench_temp);
    bench_temp[0] = '\0';
}

/* Makes the folder, removed with what is left in it when the benchmark exits (also after an error). */
static void bench_temp_make(void)
{
    const char *tmp = getenv("TMPDIR");
    const int len = snprintf(bench_temp, sizeof bench_temp, "%s/repmode-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len < 0 || len >= (int)sizeof bench_temp)
        die("TMPDIR is too long");
    if (!mkdtemp(bench_temp))
        die_errno("cannot create a folder in", tmp && *tmp ? tmp : "/tmp");
    bench_temp_owner = getpid();
    atexit(bench_temp_remove);
}

/* ---- the sides as child processes -------------------------------------------------------------------------------
 * Each side (C, and PyTorch twice: bench_torch) runs in a child process of its own (its own address space, so its
 * own VmHWM and its own malloc settings), and the benchmark drives all at once, a round of one timed call on each
 * side at a time, so that a change of the machine's load falls on every side alike. The protocol, one line each way:
 *   the child, after its set-up and its warm-up call:  "ready" (a PyTorch script: "ready <PyTorch version>")
 *   "run"   one timed call; the reply: its seconds, then those of its parts if it has any, separated by spaces
 *   "done"  the child's own figures, then it exits: a forked C child writes its result struct (bench_c_finish),
 *           a script `key value` lines (bench_torch_finish) */

enum { BENCH_MAX_VALUES = 8 }; /* numbers in a reply to "run" */

typedef struct bench_child {
    pid_t pid;
    FILE *to;   /* commands */
    FILE *from; /* replies */
} bench_child;

/* Forks with a pipe each way; 0 in the child, with its ends in *in and *out. The parent's ends close on exec, so
 * that a script started later does not hold them open: a child would not see the end of its commands. */
static pid_t bench_fork_piped(bench_child *ch, int *in, int *out)
{
    int cmd[2], reply[2];
    if (pipe(cmd) != 0 || pipe(reply) != 0)
        die_errno("cannot create", "a pipe");
    if (fcntl(cmd[1], F_SETFD, FD_CLOEXEC) != 0 || fcntl(reply[0], F_SETFD, FD_CLOEXEC) != 0)
        die_errno("cannot set up", "a pipe");
    signal(SIGPIPE, SIG_IGN); /* a child that has died fails the next write (EPIPE) instead of ending the benchmark */
    fflush(stdout);           /* else the child inherits what is buffered and prints it again */
    const pid_t pid = fork();
    if (pid < 0)
        die_errno("cannot fork", "a child process");
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        close(cmd[1]);
        close(reply[0]);
        *in = cmd[0];
        *out = reply[1];
        return 0;
    }
    close(cmd[0]);
    close(reply[1]);
    ch->pid = pid;
    ch->to = fdopen(cmd[1], "w");
    ch->from = fdopen(reply[0], "r");
    if (!ch->to || !ch->from)
        die_errno("cannot open", "a pipe");
    return pid;
}

/* A child that runs fn(commands, replies, arg) in a copy of this process and exits when it returns. */
static bench_child bench_child_fork(void (*fn)(FILE *in, FILE *out, void *arg), void *arg)
{
    bench_child ch = {0};
    int in, out;
    if (bench_fork_piped(&ch, &in, &out) == 0) {
        FILE *fin = fdopen(in, "r"), *fout = fdopen(out, "w");
        if (!fin || !fout)
            die_errno("cannot open", "a pipe");
        fn(fin, fout, arg);
        _exit(fclose(fout) == 0 ? 0 : 1);
    }
    return ch;
}

/* A child that execs argv[0] in the environment env with its standard input and output on the pipes; exit status
 * 127 if it cannot. */
static bench_child bench_child_spawn(char *const argv[], char *const env[])
{
    bench_child ch = {0};
    int in, out;
    if (bench_fork_piped(&ch, &in, &out) == 0) {
        if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0)
            _exit(127);
        execve(argv[0], argv, env);
        _exit(127);
    }
    return ch;
}

static int bench_child_tell(bench_child *ch, const char *command)
{
    return fprintf(ch->to, "%s\n", command) >= 0 && fflush(ch->to) == 0;
}

/* Sends command (none if NULL), then reads the reply line into line, without its newline; 0 when the child has
 * closed its end instead (it failed). */
static int bench_child_ask(bench_child *ch, const char *command, char *line, int size)
{
    if ((command && !bench_child_tell(ch, command)) || !fgets(line, size, ch->from))
        return 0;
    line[strcspn(line, "\n")] = '\0';
    return 1;
}

/* One timed call: the n numbers of the reply to "run" in v; 0 if the child did not give them. */
static int bench_child_run(bench_child *ch, int n, double *v)
{
    char line[BENCH_MAX_VALUES * 32];
    if (!bench_child_ask(ch, "run", line, sizeof line))
        return 0;
    const char *p = line;
    for (int i = 0; i < n; i++) {
        char *end;
        v[i] = strtod(p, &end);
        if (end == p)
            return 0;
        p = end;
    }
    return 1;
}

/* Closes the pipes (a child still reading its commands then ends) and waits: the child's exit status, -1 when a
 * signal ended it. */
static int bench_child_wait(bench_child *ch)
{
    fclose(ch->to);
    fclose(ch->from);
    int status = 0;
    const pid_t pid = waitpid(ch->pid, &status, 0);
    ch->pid = 0;
    return pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- in a forked C child ---- */

static void bench_say(FILE *out, const char *line)
{
    if (fprintf(out, "%s\n", line) < 0 || fflush(out) != 0)
        die("cannot reply to the benchmark");
}

static void bench_say_seconds(FILE *out, const double *v, int n)
{
    char line[BENCH_MAX_VALUES * 32] = "";
    for (int i = 0, len = 0; i < n; i++)
        len += snprintf(line + len, sizeof line - (size_t)len, i ? " %.9f" : "%.9f", v[i]);
    bench_say(out, line);
}

/* The next command: 1 for "run", 0 for "done". */
static int bench_next_command(FILE *in)
{
    char line[16];
    if (!fgets(line, sizeof line, in))
        exit(1); /* the benchmark has gone, and said why */
    if (strcmp(line, "run\n") == 0)
        return 1;
    if (strcmp(line, "done\n") != 0)
        die("unknown command from the benchmark");
    return 0;
}

static void bench_say_result(FILE *out, const void *result, size_t size)
{
    if (fwrite(result, size, 1, out) != 1 || fflush(out) != 0)
        die("cannot reply to the benchmark");
}

/* ---- in the benchmark ---- */

/* Starts the C side (fn as in bench_child_fork) and waits for it to be ready. */
static bench_child bench_c_start(void (*fn)(FILE *in, FILE *out, void *arg), void *arg)
{
    bench_child ch = bench_child_fork(fn, arg);
    char line[16];
    if (!bench_child_ask(&ch, NULL, line, sizeof line) || strcmp(line, "ready") != 0)
        die("the C benchmark's child process failed");
    return ch;
}

/* "done": the C side's result struct; then waits for it to exit. */
static void bench_c_finish(bench_child *ch, void *result, size_t size)
{
    const int ok = bench_child_tell(ch, "done") && fread(result, size, 1, ch->from) == 1;
    if (bench_child_wait(ch) != 0 || !ok)
        die("the C benchmark's child process failed");
}

/* The machine's FMA peak with `threads` threads (bench_peak.h), in GFLOP/s, measured in a child process: the
 * benchmark itself must not start OpenMP threads, its C children are forks of it. */
static void serve_peak(FILE *in, FILE *out, void *arg)
{
    const char *isa;
    const double gflops = measure_fma_peak(*(const int *)arg, &isa);
    if (bench_next_command(in)) /* "done" */
        die("unknown command from the benchmark");
    bench_say_result(out, &gflops, sizeof gflops);
}

static double bench_fma_peak(int threads)
{
    bench_child ch = bench_child_fork(serve_peak, &threads);
    double gflops;
    bench_c_finish(&ch, &gflops, sizeof gflops);
    return gflops;
}

/* The PyTorch sides: the same script run twice with BENCH_PYTHON, once with glibc's default malloc and once at its
 * best: with the two variables below in its environment (and only in its own: the C side and the other PyTorch
 * process never see them), glibc serves even large blocks from its heap instead of mmap and keeps what is freed,
 * so PyTorch stops getting fresh zeroed pages from the kernel for every activation of every call. */
enum { BENCH_TORCH_DEFAULT, BENCH_TORCH_BEST, BENCH_TORCH_SIDES };
static const char *const bench_torch_label[BENCH_TORCH_SIDES] = {"torch", "best"}; /* in the tables */
static const char *const bench_torch_title[BENCH_TORCH_SIDES] = {
    "PyTorch with glibc's default malloc",
    "PyTorch at its best (MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736)"};
static char *const bench_best_malloc[] = {"MALLOC_MMAP_THRESHOLD_=4294967296", "MALLOC_TRIM_THRESHOLD_=68719476736"};
enum { BENCH_BEST_VARS = sizeof bench_best_malloc / sizeof bench_best_malloc[0] };

extern char **environ;

/* This process's environment for a PyTorch side, in a new array (the strings are shared): without the variables of
 * bench_best_malloc, whatever the shell set them to, so that the default side has glibc's defaults; with them for
 * the side at its best. */
static char **bench_torch_env(int side)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + BENCH_BEST_VARS + 1) * sizeof *env);
    if (!env)
        die("out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int ours = 0;
        for (int j = 0; j < BENCH_BEST_VARS; j++) {
            const size_t name = (size_t)(strchr(bench_best_malloc[j], '=') - bench_best_malloc[j]) + 1;
            ours |= strncmp(environ[i], bench_best_malloc[j], name) == 0;
        }
        if (!ours)
            env[k++] = environ[i];
    }
    for (int j = 0; side == BENCH_TORCH_BEST && j < BENCH_BEST_VARS; j++)
        env[k++] = bench_best_malloc[j];
    env[k] = NULL;
    return env;
}

/* One PyTorch side. Without PyTorch, or when the script fails, the benchmark still reports the other sides'
 * figures: ok is 0 and why says why. At "done" the script gives the figures of bench_torch_common.serve. */
typedef struct bench_torch {
    bench_child child;
    int ok;
    char script[64];
    char version[32];
    char why[128];
    double first, peak_kib, growth_kib; /* its warm-up call, VmHWM over its calls, VmHWM - VmRSS before them */
} bench_torch;

/* Waits for a script that did not answer as it should, and says why from its exit status. */
static void bench_torch_failed(bench_torch *t, int code)
{
    t->ok = 0;
    if (t->child.pid)
        code = bench_child_wait(&t->child);
    if (code == 127)
        snprintf(t->why, sizeof t->why, "%s cannot run", BENCH_PYTHON);
    else if (code == 3)
        snprintf(t->why, sizeof t->why, "PyTorch is not installed");
    else
        snprintf(t->why, sizeof t->why, "%s failed (exit status %d)", t->script, code);
}

/* What both scripts are given: MODEL TASK D H W THREADS --input X, and an option of the script's own. */
typedef struct bench_torch_args {
    const char *script; /* BENCH_SCRIPT(name) */
    const char *model, *task;
    int64_t d, h, w;
    int threads;
    const char *input;
    const char *option, *value;
} bench_torch_args;

/* Starts the script with BENCH_PYTHON as the given side (BENCH_TORCH_DEFAULT or _BEST) and waits for it to be
 * ready; with a NULL, says it was not run. */
static void bench_torch_start(bench_torch *t, int side, const bench_torch_args *a)
{
    memset(t, 0, sizeof *t);
    if (!a) {
        snprintf(t->why, sizeof t->why, "not run");
        return;
    }
    const char *slash = strrchr(a->script, '/');
    snprintf(t->script, sizeof t->script, "%s", slash ? slash + 1 : a->script);
    char dims[3][24], threads[16];
    snprintf(dims[0], sizeof dims[0], "%lld", (long long)a->d);
    snprintf(dims[1], sizeof dims[1], "%lld", (long long)a->h);
    snprintf(dims[2], sizeof dims[2], "%lld", (long long)a->w);
    snprintf(threads, sizeof threads, "%d", a->threads);
    char *const argv[] = {
        BENCH_PYTHON, (char *)a->script, (char *)a->model, (char *)a->task,   dims[0],          dims[1], dims[2],
        threads,      "--input",         (char *)a->input, (char *)a->option, (char *)a->value, NULL};
    char **env = bench_torch_env(side);
    t->child = bench_child_spawn(argv, env);
    free(env);
    char line[128];
    t->ok = bench_child_ask(&t->child, NULL, line, sizeof line) && sscanf(line, "ready %31s", t->version) == 1;
    if (!t->ok)
        bench_torch_failed(t, -1);
}

typedef struct bench_key {
    const char *key;
    double *value;
} bench_key;

/* "done": the script's `key value` lines, into t's figures and the n values of the script's own keys, every key
 * once; then waits for it to exit. */
static void bench_torch_finish(bench_torch *t, const bench_key *own, int n)
{
    if (!t->ok)
        return;
    const bench_key common[] = {{"first", &t->first}, {"peak_kib", &t->peak_kib}, {"growth_kib", &t->growth_kib}};
    enum { N_COMMON = sizeof common / sizeof common[0] };
    int found = 0;
    if (bench_child_tell(&t->child, "done")) {
        char line[128], key[32];
        double v;
        while (fgets(line, sizeof line, t->child.from))
            for (int k = 0; k < N_COMMON + n; k++) {
                const bench_key *kk = k < N_COMMON ? &common[k] : &own[k - N_COMMON];
                if (sscanf(line, "%31s %lf", key, &v) == 2 && strcmp(key, kk->key) == 0)
                    *kk->value = v, found++;
            }
    }
    const int code = bench_child_wait(&t->child);
    if (code != 0 || found != N_COMMON + n)
        bench_torch_failed(t, code);
}

/* A pause before each timed call: after a call, each side's idle OpenMP threads spin-wait for a while (libgomp's
 * default policy) before they sleep, and would take cores from the next side's timed call. */
static void bench_settle(void)
{
    const struct timespec pause = {.tv_sec = 0, .tv_nsec = 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
}

/* rounds rounds, each one timed call on each side: C, then t[0], t[1] in that cyclic order, round i starting at
 * side i % 3, so that no side always goes first or last, each after a pause (bench_settle). Round i's n numbers in
 * cv[i·n..] and tv[s][i·n..]. A script that stops answering is dropped (ok 0); sides without a script (ok 0) are
 * skipped. */
static void bench_rounds(bench_child *c, bench_torch t[BENCH_TORCH_SIDES], int rounds, int n, double *cv,
                         double *tv[BENCH_TORCH_SIDES])
{
    for (int i = 0; i < rounds; i++)
        for (int k = 0; k < 1 + BENCH_TORCH_SIDES; k++) {
            const int side = (i + k) % (1 + BENCH_TORCH_SIDES);
            bench_settle();
            if (side == 0) {
                if (!bench_child_run(c, n, cv + i * n))
                    die("the C benchmark's child process failed");
            } else if (t[side - 1].ok && !bench_child_run(&t[side - 1].child, n, tv[side - 1] + i * n)) {
                bench_torch_failed(&t[side - 1], -1);
            }
        }
}

/* ---- the figures of the rounds ---- */

/* The median of v[0], v[stride], ... (n numbers, n <= BENCH_MAX_ROUNDS). */
static double bench_median_of(const double *v, int n, int stride)
{
    double w[BENCH_MAX_ROUNDS];
    for (int i = 0; i < n; i++)
        w[i] = v[i * stride];
    return bench_median(w, n);
}

/* The per-round ratios num[i·stride] / den[i·stride]: their median (what the benchmarks report: a round's two
 * calls ran under the same load), smallest and largest. */
typedef struct bench_spread {
    double median, min, max;
} bench_spread;

static bench_spread bench_ratios(const double *num, const double *den, int n, int stride)
{
    double r[BENCH_MAX_ROUNDS];
    for (int i = 0; i < n; i++)
        r[i] = num[i * stride] / den[i * stride];
    const double median = bench_median(r, n); /* sorts r */
    const bench_spread s = {median, r[0], r[n - 1]};
    return s;
}

/* A PyTorch side against C over the rounds: its median seconds, and C's throughput over its own (the per-round
 * ratios of its seconds over C's). */
typedef struct bench_versus {
    double seconds;
    bench_spread ratio;
} bench_versus;

static bench_versus bench_versus_of(const double *cv, const double *tv, int n, int stride)
{
    const bench_versus v = {bench_median_of(tv, n, stride), bench_ratios(tv, cv, n, stride)};
    return v;
}

/* ---- the tables ---- */

/* The PyTorch sides' columns of a table, heading and rows: per side its seconds, GFLOP/s, C's throughput over its
 * own (median of the rounds) and their range; dashes for a side that did not run. */
static void bench_print_torch_heading(void)
{
    for (int s = 0; s < BENCH_TORCH_SIDES; s++) {
        char secs[16], gflops[16], ratio[16];
        snprintf(secs, sizeof secs, "%s s", bench_torch_label[s]);
        snprintf(gflops, sizeof gflops, "%s GF/s", bench_torch_label[s]);
        snprintf(ratio, sizeof ratio, "C/%s", bench_torch_label[s]);
        printf(" %8s %10s %8s %9s", secs, gflops, ratio, "range");
    }
}

static void bench_print_torch_row(const bench_torch t[BENCH_TORCH_SIDES], const bench_versus v[BENCH_TORCH_SIDES],
                                  double gflop)
{
    for (int s = 0; s < BENCH_TORCH_SIDES; s++)
        if (t[s].ok) {
            char range[32];
            snprintf(range, sizeof range, "%.2f-%.2f", v[s].ratio.min, v[s].ratio.max);
            printf(" %8.3f %10.1f %8.2f %9s", v[s].seconds, gflop / v[s].seconds, v[s].ratio.median, range);
        } else {
            printf(" %8s %10s %8s %9s", "-", "-", "-", "-");
        }
}

/* The PyTorch sides' peak memory (VmHWM over their calls), heading and rows. */
static void bench_print_torch_memory_heading(void)
{
    for (int s = 0; s < BENCH_TORCH_SIDES; s++) {
        char name[16];
        snprintf(name, sizeof name, "%s MiB", bench_torch_label[s]);
        printf(" %9s", name);
    }
}

static void bench_print_torch_memory(const bench_torch t[BENCH_TORCH_SIDES])
{
    for (int s = 0; s < BENCH_TORCH_SIDES; s++)
        if (t[s].ok)
            printf(" %9.0f", mib(t[s].peak_kib));
        else
            printf(" %9s", "-");
}

/* What the columns mean; `call` names what a round times on each side (a call, a step). */
static void bench_print_legend(const char *call, double peak)
{
    printf("Each round times one %s on each side, the three processes alive side by side, the side that goes first "
           "rotating by round. Seconds: the medians of the rounds. %% peak: C's GFLOP/s over the FMA peak measured in "
           "this run (%.1f GFLOP/s). C/torch, C/best: C's throughput over PyTorch's, the median of the per-round "
           "ratios; range: the smallest and largest of them.\n",
           call, peak);
    for (int s = 0; s < BENCH_TORCH_SIDES; s++)
        printf("%s: %s\n", bench_torch_label[s], bench_torch_title[s]);
}

/* The FMA peak, measured before and after the rounds (a gap between the two means the machine was busy): the
 * larger. */
static double bench_print_peak(double before, double after, int threads)
{
    const double peak = fmax(before, after);
    printf("FMA peak (bench_peak.h, %d threads): %.1f GFLOP/s; before the rounds %.1f, after %.1f\n", threads, peak,
           before, after);
    return peak;
}

/* One line of the targets (reported, not enforced). */
static void bench_print_target(const char *what, const char *figure, int met)
{
    printf("  %-66s %-22s %s\n", what, figure, met ? "met" : "MISSED");
}

#endif /* REPMODE_BENCH_COMMON_H */
