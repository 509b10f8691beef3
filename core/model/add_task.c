/* Task-incremental learning (docs/network.md §5.5): a trained model gains a task, optionally with one more expert per
 * MoDE layer, and trains it alone while every old task's merged kernels stay bit for bit what they were. */
#include "model/mode_layer.h"

#include <string.h>

/* Copies old's gate (rows, T) into the new one's (rows', T + 1): the old columns and rows as they are, the new
 * task's column and an added expert's rows 0. Works for the bias too (one column, n_cols 1 on both sides). */
static void copy_gate(const rm_param *from, int from_cols, rm_param *to, int to_cols)
{
    memset(to->data, 0, (size_t)to->numel * sizeof(float));
    for (int64_t row = 0; row < from->shape[0]; row++)
        memcpy(to->data + row * to_cols, from->data + row * from_cols, (size_t)from_cols * sizeof(float));
}

/* Every tensor of `to` from the one of the same name in `from`: the gates widened, an added expert kept as
 * initialized. */
static rm_status copy_weights(rm_ctx *ctx, rm_model *from, rm_model *to)
{
    for (size_t i = 0; i < to->n_params; i++) {
        rm_param *p = &to->params[i];
        const rm_param *q = rm_model_find_param(from, p->name);
        if (!q)
            continue; /* the added expert */
        const size_t len = strlen(p->name);
        const int gate_w = len >= 11 && strcmp(p->name + len - 11, "gate.weight") == 0;
        const int gate_b = len >= 9 && strcmp(p->name + len - 9, "gate.bias") == 0;
        if (gate_w)
            copy_gate(q, from->cfg.n_tasks, p, to->cfg.n_tasks);
        else if (gate_b)
            copy_gate(q, 1, p, 1);
        else if (q->numel != p->numel)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "add task: '%s' differs in shape", p->name);
        else if (p->count)
            *p->count = *q->count;
        else
            memcpy(p->data, q->data, (size_t)p->numel * sizeof(float));
    }
    return RM_OK;
}

rm_status rm_model_add_task(rm_ctx *ctx, const rm_model *model, const rm_task *task, int added_kernel, uint64_t seed,
                            rm_model **out)
{
    if (!model || !task || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "add task: NULL argument");
    *out = NULL;
    if (model->cfg.block != RM_BLOCK_MODE)
        return rm_fail(ctx, RM_ERR_ARGUMENT,
                       "add task: the model's layers are %s, without task gates: only a RepMode "
                       "model (MoDE layers) learns tasks one by one",
                       model->cfg.block == RM_BLOCK_PLAIN ? "plain convolutions" : "Inception blocks");
    if (added_kernel != 0 && model->cfg.added_expert_kernel != 0)
        return rm_fail(ctx, RM_ERR_ARGUMENT,
                       "add task: the model already has an added expert (task '%s' trained "
                       "it); add '%s' without one: it will use that expert as it is",
                       model->tasks[model->cfg.added_expert_task].name, task->name);
    if (model->cfg.n_tasks >= RM_MAX_TASKS)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "add task: the model has %d tasks already, the most a model may have",
                       model->cfg.n_tasks);
    rm_config cfg = model->cfg;
    rm_task *tasks = rm_malloc((size_t)(cfg.n_tasks + 1) * sizeof *tasks);
    if (!tasks)
        return rm_fail(ctx, RM_ERR_NOMEM, "add task: out of memory");
    memcpy(tasks, model->tasks, (size_t)cfg.n_tasks * sizeof *tasks);
    tasks[cfg.n_tasks] = *task;
    cfg.tasks = tasks;
    cfg.n_tasks++;
    if (added_kernel != 0) {
        cfg.added_expert_kernel = added_kernel;
        cfg.added_expert_task = cfg.n_tasks - 1;
    }
    rm_model *m = NULL;
    rm_status s = rm_model_create(ctx, &cfg, seed, &m); /* validates the new task (its name new, its fields) */
    rm_dealloc(tasks);
    if (s == RM_OK)
        s = copy_weights(ctx, (rm_model *)model, m);
    if (s == RM_OK)
        s = rm_model_set_text(ctx, &m->normalization, model->normalization);
    if (s == RM_OK)
        s = rm_model_set_text(ctx, &m->provenance, model->provenance);
    if (s != RM_OK) {
        rm_model_free(m);
        return s;
    }
    *out = m;
    return RM_OK;
}

rm_status rm_model_train_only_task(rm_ctx *ctx, rm_model *model, int task)
{
    if (!model)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train only task: model is NULL");
    if (task < 0 || task >= model->cfg.n_tasks)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "train only task: task %d is outside 0..%d", task, model->cfg.n_tasks - 1);
    for (size_t i = 0; i < model->n_params; i++)
        model->params[i].trainable = 0;
    /* The gate's weight trains whole, but only column `task` ever gets a gradient (the one-hot input), and gates
     * never decay: the optimizer leaves the other columns as they are, bit for bit. */
    for (int i = 0; i < model->n_units; i++) {
        rm_unit *u = &model->units[i];
        if (u->kind != RM_UNIT_MODE && u->kind != RM_UNIT_FINAL)
            continue;
        u->gate_w->trainable = 1;
        if (u->expert[RM_EXPERT_ADDED] && u->added_from == task)
            u->expert[RM_EXPERT_ADDED]->trainable = 1;
    }
    for (size_t i = 0; i < model->n_params; i++)
        if (!model->params[i].trainable)
            model->params[i].grad = NULL;
    model->only_task = task;
    return RM_OK;
}
