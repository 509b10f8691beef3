/* repmode operators at work: a two-layer 3D network (conv 5³ → BatchNorm → ReLU → conv 1³) learns to predict a
 * blurred copy of a random volume, by plain gradient descent on the mean squared error. Every step runs each
 * operator forward and backward, through the public C API only.
 *
 * usage: repmode-ops-demo [steps (default 60)] [threads (default: all cores)]
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "repmode/repmode.h"

enum { D = 16, H = 32, W = 32, HIDDEN = 8 };
#define VOX ((size_t)D * H * W)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill_uniform(float *p, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = scale * (2.0f * (float)rand() / (float)RAND_MAX - 1.0f);
}

static void sgd(float *param, const float *grad, size_t n, float lr)
{
    for (size_t i = 0; i < n; i++)
        param[i] -= lr * grad[i];
}

/* Every buffer of the demo network, allocated once. */
typedef struct demo {
    float x[VOX], target[VOX];
    float w1[HIDDEN * 125], b1[HIDDEN], gamma[HIDDEN], beta[HIDDEN], rmean[HIDDEN], rvar[HIDDEN];
    float w2[HIDDEN], b2[1];
    float h1[HIDDEN * VOX], h2[HIDDEN * VOX], y[VOX];
    float mean[HIDDEN], invstd[HIDDEN];
    float dy[VOX], dh2[HIDDEN * VOX], dh1[HIDDEN * VOX];
    float dw1[HIDDEN * 125], db1[HIDDEN], dgamma[HIDDEN], dbeta[HIDDEN], dw2[HIDDEN], db2[1];
} demo;

/* One training step; returns the loss before the update, or a negative value on error. */
static float step(rm_ctx *ctx, demo *m, float lr)
{
    rm_tensor x = rm_tensor_5d(m->x, 1, 1, D, H, W), t = rm_tensor_5d(m->target, 1, 1, D, H, W);
    rm_tensor w1 = rm_tensor_5d(m->w1, HIDDEN, 1, 5, 5, 5), w2 = rm_tensor_5d(m->w2, 1, HIDDEN, 1, 1, 1);
    rm_tensor h1 = rm_tensor_5d(m->h1, 1, HIDDEN, D, H, W), h2 = rm_tensor_5d(m->h2, 1, HIDDEN, D, H, W);
    rm_tensor y = rm_tensor_5d(m->y, 1, 1, D, H, W), dy = rm_tensor_5d(m->dy, 1, 1, D, H, W);
    rm_tensor dh1 = rm_tensor_5d(m->dh1, 1, HIDDEN, D, H, W), dh2 = rm_tensor_5d(m->dh2, 1, HIDDEN, D, H, W);
    rm_tensor dw1 = rm_tensor_5d(m->dw1, HIDDEN, 1, 5, 5, 5), dw2 = rm_tensor_5d(m->dw2, 1, HIDDEN, 1, 1, 1);
    const rm_conv3d_params c5 = rm_conv3d_same(5), c1 = rm_conv3d_same(1);
    const rm_batchnorm3d bn = rm_batchnorm3d_make(m->gamma, m->beta, m->rmean, m->rvar);
    float loss = 0.0f;

    if (rm_conv3d_forward(ctx, &c5, &x, &w1, m->b1, &h1) != RM_OK ||
        rm_batchnorm3d_forward_train(ctx, &bn, &h1, &h2, m->mean, m->invstd) != RM_OK ||
        rm_activation_forward(ctx, RM_ACT_RELU, &h2, NULL, &h2) != RM_OK || /* in place: h2 keeps ReLU's output */
        rm_conv3d_forward(ctx, &c1, &h2, &w2, m->b2, &y) != RM_OK ||
        rm_mse_forward(ctx, &y, &t, &loss) != RM_OK ||
        rm_mse_backward(ctx, &y, &t, 1.0f, &dy) != RM_OK ||
        rm_conv3d_backward(ctx, &c1, &h2, &w2, &dy, &dh2, &dw2, m->db2) != RM_OK ||
        /* ReLU's gradient from its output: where the output is positive, so was the input */
        rm_activation_backward(ctx, RM_ACT_RELU, &h2, &dh2, &dh2, NULL) != RM_OK ||
        rm_batchnorm3d_backward_train(ctx, &bn, &h1, m->mean, m->invstd, &dh2, &dh1, m->dgamma, m->dbeta) != RM_OK ||
        rm_conv3d_backward(ctx, &c5, &x, &w1, &dh1, NULL, &dw1, m->db1) != RM_OK) {
        fprintf(stderr, "repmode-ops-demo: %s\n", rm_ctx_error(ctx));
        return -1.0f;
    }
    sgd(m->w1, m->dw1, HIDDEN * 125, lr);
    sgd(m->b1, m->db1, HIDDEN, lr);
    sgd(m->gamma, m->dgamma, HIDDEN, lr);
    sgd(m->beta, m->dbeta, HIDDEN, lr);
    sgd(m->w2, m->dw2, HIDDEN, lr);
    sgd(m->b2, m->db2, 1, lr);
    return loss;
}

int main(int argc, char **argv)
{
    const int steps = argc > 1 ? atoi(argv[1]) : 60;
    const int threads = argc > 2 ? atoi(argv[2]) : 0;
    if (steps < 1 || threads < 0) {
        fprintf(stderr, "usage: %s [steps >= 1] [threads >= 0]\n", argv[0]);
        return 1;
    }
    demo *m = calloc(1, sizeof *m);
    rm_ctx *ctx = rm_ctx_create(threads);
    if (!m || !ctx) {
        fprintf(stderr, "repmode-ops-demo: out of memory\n");
        return 2;
    }

    /* The task: from a random volume, predict its 5³ box blur. */
    srand(7);
    fill_uniform(m->x, VOX, 1.0f);
    rm_tensor x = rm_tensor_5d(m->x, 1, 1, D, H, W), t = rm_tensor_5d(m->target, 1, 1, D, H, W);
    if (rm_avgpool3d_forward(ctx, 5, &x, &t) != RM_OK) {
        fprintf(stderr, "repmode-ops-demo: %s\n", rm_ctx_error(ctx));
        return 2;
    }
    fill_uniform(m->w1, HIDDEN * 125, 0.09f); /* about 1/sqrt(fan-in), as PyTorch initializes */
    fill_uniform(m->w2, HIDDEN, 0.35f);
    for (int c = 0; c < HIDDEN; c++)
        m->gamma[c] = m->rvar[c] = 1.0f;

    printf("repmode operators demo: conv 5^3 (1->%d) -> BatchNorm -> ReLU -> conv 1^3 (%d->1) on a %dx%dx%d volume, "
           "%d threads\ntask: predict the 5^3 box blur of a random volume; plain gradient descent on MSE\n",
           HIDDEN, HIDDEN, D, H, W, rm_ctx_threads(ctx));
    const double t0 = now();
    float first = 0.0f, last = 0.0f;
    for (int s = 0; s < steps; s++) {
        last = step(ctx, m, 0.1f);
        if (last < 0.0f)
            return 2;
        if (s == 0)
            first = last;
        if (s % 10 == 0 || s == steps - 1)
            printf("  step %3d  loss %.6f\n", s, last);
    }
    const double secs = now() - t0;
    printf("loss %.6f -> %.6f in %d steps, %.2f s (%.1f ms per forward+backward step)\n", first, last, steps, secs,
           1e3 * secs / steps);
    const int learned = last < 0.5f * first;
    printf("%s\n", learned ? "the network learned the blur" : "the loss did not halve: something is wrong");
    rm_ctx_free(ctx);
    free(m);
    return learned ? 0 : 2;
}
