/* One loaded model, several threads predicting at once through the public API, each with its own context of one
 * thread: every thread must get the single-threaded prediction of its task bit for bit. A third of the threads
 * predict with one deploy form they all share, a third merge their own from the shared model, and a third load
 * their own from the model's file, all at the same time.
 * Under ThreadSanitizer (make test-sanitize) a data race between the threads fails the run even when the numbers
 * happen to agree.
 *
 *   repmode_threads_test MODEL_PATH   (the model is written there first)
 */
#define _POSIX_C_SOURCE 200809L /* pthread barriers under -std=c11 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <repmode/repmode.h>

#define N_THREADS 6
#define N_TASKS 3
#define ROUNDS 2 /* the second prediction of a thread reuses its deploy form's and context's buffers */

static const int64_t volume_size[3] = {20, 36, 28}; /* not multiples of the patch: windows pulled back, overlap */
static const char *const task_names[N_TASKS] = {"nuclei", "membrane", "ink"};

typedef struct job {
    const char *path;
    const rm_model *model;   /* shared, read only */
    const rm_deploy *shared; /* shared, read only: the deploy form of task 0 */
    const float *voxels;   /* shared, read only */
    const float *expected; /* the single-threaded prediction of this job's task */
    pthread_barrier_t *start;
    int task;
    enum { MERGED, FROM_FILE, SHARED } source;
    char failure[512]; /* empty when the thread's predictions equal the expected one */
} job;

static int64_t volume_numel(void) { return volume_size[0] * volume_size[1] * volume_size[2]; }

static int read_window(void *user, const int64_t start[3], const int64_t size[3], float *buf)
{
    const float *v = user;
    for (int64_t z = 0; z < size[0]; z++)
        for (int64_t y = 0; y < size[1]; y++, buf += size[2])
            memcpy(buf, v + ((start[0] + z) * volume_size[1] + start[1] + y) * volume_size[2] + start[2],
                   (size_t)size[2] * sizeof *buf);
    return 0;
}

static rm_status predict(rm_ctx *ctx, const rm_deploy *d, const float *voxels, float *out)
{
    const int64_t origin[3] = {0, 0, 0};
    const rm_window_params p = rm_window_params_make(rm_deploy_config(d)->patch);
    return rm_predict_region(ctx, d, &p, volume_size, read_window, (void *)voxels, origin, volume_size, out, NULL,
                             NULL);
}

static void *run_job(void *arg)
{
    job *j = arg;
    rm_ctx *ctx = rm_ctx_create(1);
    float *out = malloc((size_t)volume_numel() * sizeof *out);
    rm_deploy *d = NULL;
    pthread_barrier_wait(j->start);
    if (!ctx || !out) {
        snprintf(j->failure, sizeof j->failure, "out of memory");
        goto done;
    }
    rm_status s = j->source == FROM_FILE ? rm_deploy_load(ctx, j->path, task_names[j->task], &d)
                  : j->source == MERGED  ? rm_deploy_create(ctx, j->model, j->task, &d)
                                         : RM_OK;
    for (int round = 0; s == RM_OK && round < ROUNDS && !j->failure[0]; round++) {
        memset(out, 0xff, (size_t)volume_numel() * sizeof *out); /* NaNs: a voxel left unwritten cannot pass */
        s = predict(ctx, j->source == SHARED ? j->shared : d, j->voxels, out);
        if (s == RM_OK && memcmp(out, j->expected, (size_t)volume_numel() * sizeof *out) != 0)
            snprintf(j->failure, sizeof j->failure, "round %d differs from the single-threaded prediction", round);
    }
    if (s != RM_OK)
        snprintf(j->failure, sizeof j->failure, "%s", rm_ctx_error(ctx));
done:
    rm_deploy_free(d);
    free(out);
    rm_ctx_free(ctx);
    return NULL;
}

/* A small network of three tasks with seeded weights, written to `path` and read back: the model the threads
 * share is one loaded from a file, as in a server. */
static rm_status make_model(rm_ctx *ctx, const char *path, rm_model **out)
{
    rm_task tasks[N_TASKS];
    for (int t = 0; t < N_TASKS; t++)
        tasks[t] = rm_task_make(task_names[t], t == 2 ? RM_TASK_BINARY : RM_TASK_REGRESSION);
    rm_config cfg = rm_config_lite(tasks, N_TASKS);
    cfg.base_channels = 4;
    cfg.levels = 2;
    cfg.activation = RM_ACT_FRELU;
    for (int a = 0; a < 3; a++)
        cfg.patch[a] = 16;
    rm_model *m = NULL;
    rm_status s = rm_model_create(ctx, &cfg, 7, &m);
    if (s == RM_OK)
        s = rm_model_save(ctx, m, path);
    rm_model_free(m);
    return s == RM_OK ? rm_model_load(ctx, path, out) : s;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_PATH\n", argv[0]);
        return 2;
    }
    const size_t n = (size_t)volume_numel();
    float *voxels = malloc(n * sizeof *voxels), *expected = malloc(N_TASKS * n * sizeof *expected);
    rm_ctx *ctx = rm_ctx_create(1);
    rm_model *model = NULL;
    if (!voxels || !expected || !ctx) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 2;
    }
    uint64_t state = 12345;
    for (size_t i = 0; i < n; i++) { /* a fixed pseudo-random volume in [-1, 1) */
        state = state * 6364136223846793005u + 1442695040888963407u;
        voxels[i] = (float)((double)(state >> 11) / 4503599627370496.0 - 1.0);
    }

    rm_status s = make_model(ctx, argv[1], &model);
    for (int t = 0; s == RM_OK && t < N_TASKS; t++) { /* the references, one task after another */
        rm_deploy *d = NULL;
        s = rm_deploy_create(ctx, model, t, &d);
        if (s == RM_OK)
            s = predict(ctx, d, voxels, expected + (size_t)t * n);
        rm_deploy_free(d);
    }
    if (s != RM_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], rm_ctx_error(ctx));
        return 2;
    }

    rm_deploy *shared = NULL;
    if (rm_deploy_load(ctx, argv[1], task_names[0], &shared) != RM_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], rm_ctx_error(ctx));
        return 2;
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_THREADS);
    job jobs[N_THREADS];
    pthread_t threads[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        jobs[i] = (job){.path = argv[1], .model = model, .shared = shared, .voxels = voxels, .start = &start,
                        .source = i % 3, .task = i % 3 == SHARED ? 0 : i % N_TASKS};
        jobs[i].expected = expected + (size_t)jobs[i].task * n;
        if (pthread_create(&threads[i], NULL, run_job, &jobs[i]) != 0) {
            fprintf(stderr, "%s: cannot start thread %d\n", argv[0], i);
            return 2;
        }
    }
    int failed = 0;
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(threads[i], NULL);
        if (jobs[i].failure[0]) {
            fprintf(stderr, "thread %d (task %s, deploy form %s): %s\n", i, task_names[jobs[i].task],
                    jobs[i].source == FROM_FILE ? "its own, loaded from the file"
                    : jobs[i].source == MERGED  ? "its own, merged from the shared model"
                                                : "the shared one",
                    jobs[i].failure);
            failed = 1;
        }
    }
    pthread_barrier_destroy(&start);
    rm_deploy_free(shared);
    rm_model_free(model);
    rm_ctx_free(ctx);
    free(voxels);
    free(expected);
    if (!failed)
        printf("%d threads, %d rounds each: every prediction equals the single-threaded one bit for bit\n",
               N_THREADS, ROUNDS);
    return failed;
}
