/* Fine-tuning (docs/network.md §5.6): a model of a configuration whose weights are a trained model's, tasks mapped by
 * name; the encoder frozen, or stepped at a lower learning rate. */
#include "model/model_impl.h"

#include <string.h>

/* The first field of the network (those its tensors or their function depend on) in which a and b differ, or NULL;
 * dropout and patch are not among them. */
static const char *network_difference(const rm_config *a, const rm_config *b)
{
    if (a->base_channels != b->base_channels)
        return "base_channels";
    if (a->levels != b->levels)
        return "levels";
    if (a->in_channels != b->in_channels)
        return "in_channels";
    if (a->out_channels != b->out_channels)
        return "out_channels";
    if (a->activation != b->activation)
        return "activation";
    if (a->decoder_2d != b->decoder_2d)
        return "decoder";
    if (a->block != b->block)
        return "block";
    if (a->added_expert_kernel != b->added_expert_kernel)
        return "added_expert";
    return NULL;
}

static int ends_with(const char *s, const char *tail)
{
    const size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* to's gate weight (rows, T') from from's (rows, T): column t of to is column from_task[t] of from, or 0 when
 * from_task[t] is -1. */
static void map_gate(const rm_param *from, int from_cols, rm_param *to, int to_cols, const int *from_task)
{
    for (int64_t row = 0; row < to->shape[0]; row++)
        for (int t = 0; t < to_cols; t++)
            to->data[row * to_cols + t] = from_task[t] < 0 ? 0.0f : from->data[row * from_cols + from_task[t]];
}

rm_status rm_model_init_from(rm_ctx *ctx, const rm_model *source, const rm_config *cfg, rm_model **out)
{
    if (!source || !cfg || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "init: NULL argument");
    *out = NULL;
    RM_TRY(rm_config_validate(ctx, cfg));
    const char *field = network_difference(&source->cfg, cfg);
    if (field)
        return rm_fail(ctx, RM_ERR_ARGUMENT,
                       "init: the configuration's '%s' differs from the model's; fine-tuning keeps the model's "
                       "network (its repmode.config)",
                       field);
    if (source->cfg.added_expert_kernel)
        return rm_fail(ctx, RM_ERR_ARGUMENT,
                       "init: the model has an added expert, which only its tasks from '%s' on use: its tasks "
                       "cannot be mapped to another list",
                       source->tasks[source->cfg.added_expert_task].name);
    int *from_task = rm_malloc((size_t)cfg->n_tasks * sizeof *from_task);
    if (!from_task)
        return rm_fail(ctx, RM_ERR_NOMEM, "init: out of memory");
    rm_status s = RM_OK;
    for (int t = 0; t < cfg->n_tasks && s == RM_OK; t++) {
        const rm_task *task = &cfg->tasks[t];
        from_task[t] = rm_model_task_index(source, task->name);
        if (from_task[t] >= 0 && source->tasks[from_task[t]].kind != task->kind)
            s = rm_fail(ctx, RM_ERR_ARGUMENT, "init: task '%s' is %s in the configuration but %s in the model",
                        task->name, task->kind == RM_TASK_BINARY ? "binary" : "regression",
                        task->kind == RM_TASK_BINARY ? "regression" : "binary");
    }
    rm_model *m = NULL;
    if (s == RM_OK)
        s = rm_model_create(ctx, cfg, 0, &m); /* every value is overwritten below */
    for (size_t i = 0; s == RM_OK && i < m->n_params; i++) {
        rm_param *p = &m->params[i];
        const rm_param *q = rm_model_find_param((rm_model *)source, p->name);
        if (!q)
            s = rm_fail(ctx, RM_ERR_ARGUMENT, "init: the model has no tensor '%s'", p->name);
        else if (ends_with(p->name, "gate.weight"))
            map_gate(q, source->cfg.n_tasks, p, cfg->n_tasks, from_task);
        else if (q->numel != p->numel)
            s = rm_fail(ctx, RM_ERR_ARGUMENT, "init: '%s' differs in shape", p->name);
        else if (p->count)
            *p->count = *q->count;
        else
            memcpy(p->data, q->data, (size_t)p->numel * sizeof(float));
    }
    rm_dealloc(from_task);
    if (s == RM_OK)
        s = rm_model_set_text(ctx, &m->normalization, source->normalization);
    if (s == RM_OK)
        s = rm_model_set_text(ctx, &m->provenance, source->provenance);
    if (s != RM_OK) {
        rm_model_free(m);
        return s;
    }
    *out = m;
    return RM_OK;
}

/* The encoder's tensors: each level's conv_more and conv_down (docs/network.md §4), not the bottleneck. */
static int in_encoder(const rm_param *p)
{
    return strncmp(p->name, "encoder_block", strlen("encoder_block")) == 0;
}

rm_status rm_model_freeze_encoder(rm_ctx *ctx, rm_model *model)
{
    if (!model)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "freeze encoder: model is NULL");
    for (size_t i = 0; i < model->n_params; i++)
        if (in_encoder(&model->params[i])) {
            model->params[i].trainable = 0;
            model->params[i].grad = NULL;
        }
    /* The encoder is units [0, bottleneck): BatchNorm in inference mode there, and the backward stops before it. */
    model->frozen_units = rm_unit_bottleneck(model->cfg.levels);
    return RM_OK;
}

rm_status rm_model_set_encoder_lr_scale(rm_ctx *ctx, rm_model *model, float scale)
{
    if (!model)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "encoder lr scale: model is NULL");
    if (!(scale > 0.0f && scale <= 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "encoder lr scale: %g is outside (0, 1]", (double)scale);
    for (size_t i = 0; i < model->n_params; i++)
        if (in_encoder(&model->params[i]))
            model->params[i].lr_scale = scale;
    return RM_OK;
}
