/* What the harnesses do with a configuration that parsed: check that its JSON reads back as the same configuration,
 * build its network (training form with values) and the deploy form of its last task, and run that on a smallest
 * patch. Networks above a small size are skipped: the fuzzer looks for parser bugs, and a valid configuration of a
 * large network only costs memory. */
#ifndef REPMODE_FUZZ_NETWORK_H
#define REPMODE_FUZZ_NETWORK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repmode/model.h"
#include "repmode/trainer.h"

/* Bottleneck channels and in/out channels at most this, at most this many tasks. */
#define FUZZ_MAX_CHANNELS 16
#define FUZZ_MAX_TASKS 16

static inline int fuzz_small(const rm_config *c)
{
    return c->levels >= 1 && c->levels <= 3 && c->base_channels >= 1 &&
           (c->base_channels << c->levels) <= FUZZ_MAX_CHANNELS && c->in_channels <= FUZZ_MAX_CHANNELS &&
           c->out_channels <= FUZZ_MAX_CHANNELS && c->n_tasks <= FUZZ_MAX_TASKS;
}

static inline int fuzz_same_task(const rm_task *a, const rm_task *b)
{
    return strcmp(a->name, b->name) == 0 && a->kind == b->kind && a->output_2d == b->output_2d &&
           ((isnan(a->threshold) && isnan(b->threshold)) || a->threshold == b->threshold) &&
           a->has_color == b->has_color && (!a->has_color || memcmp(a->color, b->color, sizeof a->color) == 0);
}

/* The JSON of c (configuration with its tasks added) parsed again: the same configuration, or abort. */
static inline void fuzz_round_trip(rm_ctx *ctx, const rm_config *c)
{
    char *config = rm_config_json(c), *tasks = rm_tasks_json(c);
    if (!config || !tasks)
        abort();
    const size_t n = strlen(config) + strlen(tasks) + 16;
    char *text = malloc(n);
    if (!text)
        abort();
    config[strlen(config) - 1] = '\0'; /* drop the closing brace */
    snprintf(text, n, "%s,\"tasks\":%s}", config, tasks);
    rm_train_config back;
    if (rm_train_config_parse(ctx, text, &back) != RM_OK)
        abort();
    const rm_config *b = &back.cfg;
    int same = b->base_channels == c->base_channels && b->levels == c->levels && b->in_channels == c->in_channels &&
               b->out_channels == c->out_channels && b->activation == c->activation && b->dropout == c->dropout &&
               memcmp(b->patch, c->patch, sizeof c->patch) == 0 && b->n_tasks == c->n_tasks;
    for (int t = 0; same && t < c->n_tasks; t++)
        same = fuzz_same_task(&b->tasks[t], &c->tasks[t]);
    if (!same)
        abort();
    rm_train_config_free(&back);
    free(text);
    rm_free(config);
    rm_free(tasks);
}

/* The deploy form d of configuration c run once on a smallest patch of zeros. */
static inline void fuzz_forward(rm_ctx *ctx, rm_deploy *d, const rm_config *c)
{
    const int64_t side = (int64_t)1 << c->levels, n = side * side * side;
    float *x = calloc((size_t)(n * c->in_channels), sizeof *x), *y = malloc((size_t)(n * c->out_channels) * sizeof *y);
    if (!x || !y)
        abort();
    rm_tensor tx = rm_tensor_5d(x, 1, c->in_channels, side, side, side);
    rm_tensor ty = rm_tensor_5d(y, 1, c->out_channels, side, side, side);
    if (rm_deploy_forward(ctx, d, &tx, &ty) != RM_OK)
        abort();
    free(x);
    free(y);
}

/* The network of a valid configuration, built and run once. */
static inline void fuzz_network(rm_ctx *ctx, const rm_config *c)
{
    if (!fuzz_small(c))
        return;
    fuzz_round_trip(ctx, c);
    rm_model *m = NULL;
    rm_deploy *d = NULL;
    if (rm_model_create(ctx, c, 1, &m) != RM_OK || rm_deploy_create(ctx, m, c->n_tasks - 1, &d) != RM_OK)
        abort(); /* a valid, small configuration must build */
    fuzz_forward(ctx, d, c);
    rm_deploy_free(d);
    rm_model_free(m);
}

#endif /* REPMODE_FUZZ_NETWORK_H */
