/* Network configurations: the official and lite presets, tasks, and the checks a configuration must pass. */
#include "model/model_impl.h"

#include <math.h>
#include <string.h>

/* The official tasks in task-index order (docs/network.md §1.1: main.py sorts the dataset names). */
static const char *const rm_official_tasks[12] = {
    "alpha_tubulin", "beta_actin",        "desmoplakin", "dna",        "fibrillarin", "lamin_b1",
    "membrane_caax_63x", "myosin_iib", "sec61_beta",  "st6gal1", "tom20",       "zo1",
};

rm_task rm_task_make(const char *name, rm_task_kind kind)
{
    rm_task t;
    memset(&t, 0, sizeof t);
    if (name) {
        strncpy(t.name, name, RM_NAME_MAX - 1);
        t.name[RM_NAME_MAX - 1] = '\0';
    }
    t.kind = kind;
    t.threshold = NAN;
    return t;
}

rm_config rm_config_official(rm_task tasks[12])
{
    for (int i = 0; i < 12; i++)
        tasks[i] = rm_task_make(rm_official_tasks[i], RM_TASK_REGRESSION);
    rm_config c = {.base_channels = 32, .levels = 4, .in_channels = 1, .out_channels = 1,
                   .activation = RM_ACT_RELU, .dropout = 0.0f, .patch = {32, 128, 128}, .n_tasks = 12, .tasks = tasks};
    return c;
}

rm_config rm_config_lite(rm_task *tasks, int n_tasks)
{
    rm_config c = {.base_channels = 16, .levels = 4, .in_channels = 1, .out_channels = 1,
                   .activation = RM_ACT_RELU, .dropout = 0.0f, .patch = {64, 64, 64}, .n_tasks = n_tasks,
                   .tasks = tasks};
    return c;
}

int64_t rm_config_channels(const rm_config *cfg, int level) { return cfg->base_channels << (level - 1); }

rm_status rm_task_check_threshold(rm_ctx *ctx, const char *who, const char *task, float threshold)
{
    if (!isnan(threshold) && !(threshold >= 0.0f && threshold <= 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: task '%s': threshold = %g is outside [0, 1]", who, task,
                       (double)threshold);
    return RM_OK;
}

rm_status rm_config_validate(rm_ctx *ctx, const rm_config *cfg)
{
    if (!cfg)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config is NULL");
    if (cfg->levels < 1 || cfg->levels > RM_MAX_LEVELS)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: levels = %d is outside 1..%d", cfg->levels, RM_MAX_LEVELS);
    if (cfg->base_channels < 1 || cfg->base_channels > 4096)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: base_channels = %lld is outside 1..4096",
                       (long long)cfg->base_channels);
    if ((cfg->base_channels << cfg->levels) > (1 << 16))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: base_channels = %lld and levels = %d give a bottleneck of %lld "
                       "channels (at most 65536)", (long long)cfg->base_channels, cfg->levels,
                       (long long)(cfg->base_channels << cfg->levels));
    if (cfg->in_channels < 1 || cfg->in_channels > 4096 || cfg->out_channels < 1 || cfg->out_channels > 4096)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: in_channels = %lld and out_channels = %lld must be in 1..4096",
                       (long long)cfg->in_channels, (long long)cfg->out_channels);
    if (cfg->activation != RM_ACT_RELU && cfg->activation != RM_ACT_FRELU && cfg->activation != RM_ACT_MISH)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: unknown activation %d", (int)cfg->activation);
    if (cfg->block != RM_BLOCK_MODE && cfg->block != RM_BLOCK_INCEPTION && cfg->block != RM_BLOCK_PLAIN)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: unknown block %d", (int)cfg->block);
    if (cfg->block != RM_BLOCK_MODE && (cfg->n_tasks != 1 || cfg->decoder_2d || cfg->added_expert_kernel))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: block \"%s\" is a single-task network without gates: it takes "
                       "one task, the 3D decoder and no added expert",
                       cfg->block == RM_BLOCK_PLAIN ? "plain" : "inception");
    if (cfg->block == RM_BLOCK_INCEPTION && cfg->base_channels % 4 != 0)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: block \"inception\" splits every layer into 4 branches: "
                       "base_channels = %lld must be a multiple of 4", (long long)cfg->base_channels);
    if (cfg->decoder_2d != 0 && cfg->decoder_2d != 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: decoder_2d = %d (0 or 1)", cfg->decoder_2d);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: dropout = %g is outside [0, 1)", (double)cfg->dropout);
    const int64_t unit = (int64_t)1 << cfg->levels;
    for (int a = 0; a < 3; a++)
        if (cfg->patch[a] < unit || cfg->patch[a] % unit != 0)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "config: patch size %lld along axis %d is not a positive multiple of "
                           "2^levels = %lld", (long long)cfg->patch[a], a, (long long)unit);
    if (cfg->n_tasks < 1 || !cfg->tasks)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: 'tasks' must list at least one task, e.g. [{\"name\": "
                       "\"nuclei\", \"kind\": \"regression\"}]");
    if (cfg->n_tasks > RM_MAX_TASKS)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: %d tasks; a model has at most %d", cfg->n_tasks, RM_MAX_TASKS);
    if (cfg->added_expert_kernel != 0 && cfg->added_expert_kernel != 1 && cfg->added_expert_kernel != 3 &&
        cfg->added_expert_kernel != 5)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: added_expert kernel = %d (1, 3 or 5)", cfg->added_expert_kernel);
    if (cfg->added_expert_kernel && (cfg->added_expert_task < 0 || cfg->added_expert_task >= cfg->n_tasks))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: added_expert first_task = %d is not a task index (0..%d)",
                       cfg->added_expert_task, cfg->n_tasks - 1);
    for (int t = 0; t < cfg->n_tasks; t++) {
        const rm_task *task = &cfg->tasks[t];
        const char *end = memchr(task->name, '\0', RM_NAME_MAX);
        const size_t len = end ? (size_t)(end - task->name) : RM_NAME_MAX;
        if (len == 0 || len == RM_NAME_MAX)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "config: task %d has an empty or unterminated name", t);
        for (size_t i = 0; i < len; i++) {
            const char ch = task->name[i];
            /* Task names become tensor-name components (deploy.<task>.…) and CLI arguments. */
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                  ch == '-'))
                return rm_fail(ctx, RM_ERR_ARGUMENT, "config: task name '%s' may only use letters, digits, '_' and "
                               "'-'", task->name);
        }
        if (task->kind != RM_TASK_REGRESSION && task->kind != RM_TASK_BINARY)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "config: task '%s' has an unknown kind %d", task->name,
                           (int)task->kind);
        if (task->output_2d != 0 && task->output_2d != 1)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "config: task '%s' has output_2d %d (0 or 1)", task->name,
                           task->output_2d);
        if (cfg->decoder_2d && !task->output_2d)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "config: task '%s' needs 2D labels (\"output\": \"2d\"): the 2D "
                           "decoder predicts one 2D map per sample", task->name);
        RM_TRY(rm_task_check_threshold(ctx, "config", task->name, task->threshold));
        for (int k = 0; task->has_color && k < 3; k++)
            if (!(task->color[k] >= 0.0f && task->color[k] <= 1.0f))
                return rm_fail(ctx, RM_ERR_ARGUMENT, "config: task '%s': 'color' must be [r, g, b], each in [0, 1], "
                               "not [%g, %g, %g]", task->name, (double)task->color[0], (double)task->color[1],
                               (double)task->color[2]);
        for (int u = 0; u < t; u++)
            if (strcmp(cfg->tasks[u].name, task->name) == 0)
                return rm_fail(ctx, RM_ERR_ARGUMENT, "config: task '%s' appears twice in 'tasks'", task->name);
    }
    return RM_OK;
}
