/* Model files (docs/model-file.md): the training form under the official tensor names, the deploy form under
 * deploy.<task>.<module path>.{weight,bias}, both with the repmode.* metadata, in safetensors containers. */
#include "model/config_json.h"
#include "model/model_impl.h"
#include "repmode/normalize.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RM_FORMAT_VERSION "1"

/* The metadata every repmode file carries; tasks_json differs between the forms. */
static rm_status write_file_with(rm_ctx *ctx, const char *path, const rm_model *m, const char *form,
                                 const char *tasks_json, const rm_st_entry *entries, size_t n, const char *extra_key,
                                 const char *extra_value)
{
    char *config = rm_config_json(&m->cfg);
    if (!config || !tasks_json) {
        rm_dealloc(config);
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory", path);
    }
    const char *keys[] = {"repmode.format", "repmode.form", "repmode.config", "repmode.tasks", "repmode.normalization",
                          "repmode.provenance", extra_key};
    const char *values[] = {RM_FORMAT_VERSION, form, config, tasks_json, m->normalization, m->provenance, extra_value};
    const rm_status s = rm_st_write(ctx, path, entries, n, keys, values, extra_key ? 7 : 6);
    rm_dealloc(config);
    return s;
}

static rm_status write_file(rm_ctx *ctx, const char *path, const rm_model *m, const char *form, const char *tasks_json,
                            const rm_st_entry *entries, size_t n)
{
    return write_file_with(ctx, path, m, form, tasks_json, entries, n, NULL, NULL);
}

/* The training form's tensors, followed by `extra` (checkpoints add the optimizer's state). */
static rm_status save_training(rm_ctx *ctx, const rm_model *model, const char *path, const rm_st_entry *extra,
                               size_t n_extra, const char *extra_key, const char *extra_value)
{
    if (!model || !path)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "model save: NULL argument");
    if (!model->values)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: the model has no weights to save", path);
    rm_st_entry *entries = rm_calloc(model->n_params + n_extra, sizeof *entries);
    char *tasks = rm_tasks_to_json(model->tasks, NULL, model->cfg.n_tasks);
    if (!entries) {
        rm_dealloc(tasks);
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < model->n_params; i++) {
        const rm_param *p = &model->params[i];
        entries[i] = (rm_st_entry){.name = p->name, .dtype = p->count ? RM_ST_I64 : RM_ST_F32, .ndim = p->ndim,
                                   .data = p->count ? (const void *)p->count : (const void *)p->data};
        memcpy(entries[i].shape, p->shape, sizeof p->shape);
    }
    if (n_extra)
        memcpy(entries + model->n_params, extra, n_extra * sizeof *extra);
    const rm_status s = write_file_with(ctx, path, model, "training", tasks, entries, model->n_params + n_extra,
                                        extra_key, extra_value);
    rm_dealloc(entries);
    rm_dealloc(tasks);
    return s;
}

rm_status rm_model_save(rm_ctx *ctx, const rm_model *model, const char *path)
{
    return save_training(ctx, model, path, NULL, 0, NULL, NULL);
}

/* ---- reading ------------------------------------------------------------------------------------------------- */

/* The configuration a file describes: its metadata, or the official network when it has none (a state_dict
 * converted by a plain tool). *form receives "training" or "deploy". */
static rm_status read_config(rm_ctx *ctx, const char *path, const rm_st_file *f, rm_config *cfg, rm_task **tasks,
                             const char **form)
{
    rm_task official[12];
    *cfg = rm_config_official(official);
    *form = "training";
    if (rm_st_metadata_count(f) == 0) {
        *tasks = rm_malloc(sizeof official);
        if (!*tasks)
            return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory", path);
        memcpy(*tasks, official, sizeof official);
        cfg->tasks = *tasks;
        return RM_OK;
    }
    const char *version = rm_st_metadata(f, "repmode.format");
    const char *config = rm_st_metadata(f, "repmode.config"), *task_list = rm_st_metadata(f, "repmode.tasks");
    if (!version || !config || !task_list)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: the metadata lacks %s", path,
                       !version ? "repmode.format" : !config ? "repmode.config" : "repmode.tasks");
    if (strcmp(version, RM_FORMAT_VERSION) != 0)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.format '%s' is not one this version reads (%s)", path, version,
                       RM_FORMAT_VERSION);
    const char *f_form = rm_st_metadata(f, "repmode.form");
    if (f_form && strcmp(f_form, "training") != 0 && strcmp(f_form, "deploy") != 0)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.form '%s' is neither \"training\" nor \"deploy\"", path, f_form);
    if (f_form)
        *form = f_form;
    RM_TRY(rm_config_from_json(ctx, path, config, task_list, cfg, tasks));
    rm_status s = rm_config_validate(ctx, cfg);
    /* The normalization is checked here, where every reader passes: a model is never used with a method it cannot
     * apply. Its messages start "normalization: ". */
    const char *normalization = rm_st_metadata(f, "repmode.normalization"), *key = "";
    rm_normalization unused;
    if (s == RM_OK && normalization && (s = rm_normalization_parse(ctx, normalization, &unused)) != RM_OK)
        key = "repmode.";
    if (s != RM_OK) {
        char why[RM_ERROR_LEN];
        memcpy(why, rm_ctx_error(ctx), sizeof why);
        rm_dealloc(*tasks);
        *tasks = NULL;
        /* A value out of range is the file's fault; running out of memory is not. */
        return rm_fail(ctx, s == RM_ERR_NOMEM ? s : RM_ERR_FORMAT, "%s: %s%s", path, key, why);
    }
    return RM_OK;
}

/* A model file read whole, with the configuration it describes (cfg.tasks points at tasks) and its form. */
typedef struct model_file {
    rm_st_file *st;
    rm_config cfg;
    rm_task *tasks;
    const char *form; /* "training" or "deploy" */
} model_file;

static void close_model_file(model_file *mf)
{
    rm_st_free(mf->st);
    rm_dealloc(mf->tasks);
    memset(mf, 0, sizeof *mf);
}

/* Reads a model file and the configuration it describes; on success the caller closes it. */
static rm_status open_model_file(rm_ctx *ctx, const char *path, model_file *mf)
{
    memset(mf, 0, sizeof *mf);
    RM_TRY(rm_st_read(ctx, path, &mf->st));
    const rm_status s = read_config(ctx, path, mf->st, &mf->cfg, &mf->tasks, &mf->form);
    if (s != RM_OK)
        close_model_file(mf);
    return s;
}

/* The largest weight magnitude a model may hold. Trained networks stay many orders below it; values beyond it
 * overflow float32 activations within a few layers and turn the whole prediction into NaN. */
#define RM_MAX_WEIGHT 1e10f

static int is_variance(const char *name)
{
    const char *suffix = "running_var";
    const size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

/* Refuses weights that would make every prediction NaN or meaningless: non-finite values, values beyond
 * RM_MAX_WEIGHT, and negative BatchNorm variances (the square root of the fold would be NaN). */
static rm_status check_weights(rm_ctx *ctx, const char *path, const char *name, const float *w, int64_t n)
{
    const int variance = is_variance(name);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        const float v = w[i];
        if (!(fabsf(v) <= RM_MAX_WEIGHT) || (variance && v < 0.0f)) {
            bad++;
            if (first < 0)
                first = i;
        }
    }
    if (bad == 0)
        return RM_OK;
    const float v = w[first];
    const char *what = !isfinite(v) ? "a non-finite value" : variance && v < 0.0f ? "a negative BatchNorm variance"
                                                                                   : "a value beyond 1e10";
    return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s' holds %lld impossible value%s; the first, at flat index %lld, "
                   "is %s (%g): the model file is damaged", path, name, (long long)bad, bad == 1 ? "" : "s",
                   (long long)first, what, (double)v);
}

/* Copies entry `name` of the file into dst after checking its dtype and shape (only checks them when dst is NULL). */
static rm_status take_tensor(rm_ctx *ctx, const char *path, const rm_st_file *f, const char *name, int ndim,
                             const int64_t *shape, int is_count, void *dst)
{
    const rm_st_entry *e = rm_st_find(f, name);
    if (!e)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s' is missing", path, name);
    if (e->dtype != (is_count ? RM_ST_I64 : RM_ST_F32))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s' must be %s", path, name, is_count ? "I64" : "F32 (or F16/BF16)");
    int same = e->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = e->shape[d] == shape[d];
    if (!same) {
        char want[96] = "(", got[96] = "(";
        for (int d = 0; d < ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)shape[d]);
        for (int d = 0; d < e->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)e->shape[d]);
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s' has shape %s), the configuration needs %s)", path, name, got,
                       want);
    }
    if (!dst)
        return RM_OK;
    memcpy(dst, e->data, (size_t)rm_st_numel(e) * (is_count ? sizeof(int64_t) : sizeof(float)));
    return is_count ? RM_OK : check_weights(ctx, path, name, dst, rm_st_numel(e));
}

/* Copies every tensor of m from the file (only checks them when m is a structure without values); tensors the model
 * lacks are refused unless they start with `extra`. */
static rm_status take_weights(rm_ctx *ctx, const char *path, const rm_st_file *f, rm_model *m, const char *extra)
{
    rm_status s = RM_OK;
    for (size_t i = 0; s == RM_OK && i < m->n_params; i++) {
        rm_param *p = &m->params[i];
        s = take_tensor(ctx, path, f, p->name, p->ndim, p->shape, p->ndim == 0,
                        p->ndim == 0 ? (void *)p->count : (void *)p->data);
    }
    for (size_t i = 0; s == RM_OK && i < rm_st_count(f); i++) {
        const char *name = rm_st_at(f, i)->name;
        if (!rm_model_find_param(m, name) && !(extra && strncmp(name, extra, strlen(extra)) == 0))
            s = rm_fail(ctx, RM_ERR_FORMAT, "%s: unknown tensor '%s' for this configuration", path, name);
    }
    return s;
}

static rm_status load_training(rm_ctx *ctx, const char *path, const rm_st_file *f, const rm_config *cfg,
                               rm_model **out)
{
    /* A training checkpoint is a model file too: its optimizer state is simply not part of the model. */
    const char *extra = rm_st_metadata(f, "repmode.checkpoint") ? "optimizer." : NULL;
    /* Names, shapes and types first, on the structure alone (a few kilobytes): a configuration that does not match
     * the file's tensors, a forged width among them, is refused before its weights are allocated (terabytes for the
     * widest). */
    rm_model *m;
    RM_TRY(rm_model_build(ctx, cfg, 0, 0, &m));
    rm_status s = take_weights(ctx, path, f, m, extra);
    rm_model_free(m);
    RM_TRY(s);
    RM_TRY(rm_model_build(ctx, cfg, 0, 1, &m));
    s = take_weights(ctx, path, f, m, extra);
    const char *normalization = rm_st_metadata(f, "repmode.normalization");
    const char *provenance = rm_st_metadata(f, "repmode.provenance");
    if (s == RM_OK && normalization)
        s = rm_model_set_text(ctx, &m->normalization, normalization);
    if (s == RM_OK && provenance)
        s = rm_model_set_text(ctx, &m->provenance, provenance);
    if (s != RM_OK) {
        rm_model_free(m);
        return s;
    }
    *out = m;
    return RM_OK;
}

rm_status rm_model_load(rm_ctx *ctx, const char *path, rm_model **out)
{
    if (!path || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "model load: NULL argument");
    *out = NULL;
    model_file mf;
    RM_TRY(open_model_file(ctx, path, &mf));
    rm_status s = RM_OK;
    if (strcmp(mf.form, "training") != 0)
        s = rm_fail(ctx, RM_ERR_FORMAT, "%s: a deploy-form model holds no training weights; load it with "
                    "rm_deploy_load", path);
    if (s == RM_OK)
        s = load_training(ctx, path, mf.st, &mf.cfg, out);
    close_model_file(&mf);
    return s;
}

/* ---- the deploy form ----------------------------------------------------------------------------------------- */

/* The tensors of unit i of deploy form d for task `task`: weight, bias and FReLU bias (when there is one). The
 * weight's values are `plain` when given (a packed weight's plain copy), else the deploy form's own. */
/* The most tensors one unit has in a deploy-form file: an Inception block's six convolutions, three each. */
#define RM_UNIT_ENTRIES (3 * RM_INC_CONVS)
typedef char rm_entry_name[RM_PARAM_NAME_MAX + 64];

/* One convolution's entries: `prefix`weight (ndim, shape), `prefix`bias (co) and `prefix`activation.bias (co, FReLU). */
static int conv_entries(const rm_unit *u, const char *task, const char *prefix, int ndim, const int64_t shape[5],
                        int64_t co, float *w, float *b, float *act, rm_entry_name *names, rm_st_entry *e)
{
    static const char *const what[3] = {"weight", "bias", "activation.bias"};
    const int n = act ? 3 : 2;
    float *data[3] = {w, b, act};
    for (int j = 0; j < n; j++) {
        char full[RM_PARAM_NAME_MAX];
        snprintf(full, sizeof full, "%s%s", prefix, what[j]);
        rm_deploy_tensor_name(u, task, full, names[j], sizeof names[j]);
        e[j] = (rm_st_entry){.name = names[j], .dtype = RM_ST_F32, .ndim = j ? 1 : ndim, .data = data[j]};
        if (j)
            e[j].shape[0] = co;
        else
            memcpy(e[j].shape, shape, 5 * sizeof *shape);
    }
    return n;
}

/* The deploy-form file entries of unit i (weights plain: `plain` when the unit keeps them packed); returns how many. */
static int unit_entries(rm_deploy *d, int i, const char *task, float *plain, rm_entry_name *names, rm_st_entry *e)
{
    const rm_unit *u = &rm_deploy_structure(d)->units[i];
    float *w, *b, *act;
    if (rm_unit_subconvs(u)) {
        int n = 0;
        for (int j = 0; j < rm_unit_subconvs(u); j++) {
            const rm_subconv *c = &u->sub[j];
            const int64_t shape[5] = {c->co, c->ci, c->k, c->k, c->k};
            rm_deploy_sub_tensors(d, i, j, &w, &b, &act);
            n += conv_entries(u, task, rm_subconv_prefix(u, j), 5, shape, c->co, w, b, act, names + n, e + n);
        }
        return n;
    }
    rm_deploy_unit_tensors(d, i, &w, &b, &act);
    const int64_t k = rm_unit_kernel(u);
    const int64_t d0 = u->kind == RM_UNIT_UP ? u->ci : u->co, d1 = u->kind == RM_UNIT_UP ? u->co : u->ci;
    /* (d0, d1, k, k, k), or (d0, d1, k, k) for a planar unit, as PyTorch's Conv2d */
    const int64_t shape[5] = {d0, d1, k, k, k};
    return conv_entries(u, task, "", u->planar ? 4 : 5, shape, u->co, plain ? plain : w, b, act, names, e);
}

rm_status rm_model_save_deploy(rm_ctx *ctx, const rm_model *model, const int *tasks, int n_tasks, const char *path)
{
    if (!model || !path || (n_tasks > 0 && !tasks) || n_tasks < 0)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy save: bad argument");
    const int n = n_tasks ? n_tasks : model->cfg.n_tasks;
    for (int j = 0; j < n_tasks; j++)
        if (tasks[j] < 0 || tasks[j] >= model->cfg.n_tasks)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy save: task %d is outside 0..%d", tasks[j],
                           model->cfg.n_tasks - 1);
    /* One deploy form per task, all alive until the file is written, with plain copies of its packed weights. */
    rm_deploy **forms = rm_calloc((size_t)n, sizeof *forms);
    const size_t per_task = (size_t)model->n_units * RM_UNIT_ENTRIES;
    rm_st_entry *entries = rm_calloc(per_task * (size_t)n, sizeof *entries);
    rm_entry_name *names = rm_calloc(per_task * (size_t)n, sizeof *names);
    float **plain = rm_calloc((size_t)model->n_units * (size_t)n, sizeof *plain);
    int *which = rm_malloc((size_t)n * sizeof *which);
    rm_status s = forms && entries && names && plain && which ? RM_OK
                                                               : rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory", path);
    size_t count = 0;
    for (int j = 0; s == RM_OK && j < n; j++) {
        which[j] = n_tasks ? tasks[j] : j;
        s = rm_deploy_create(ctx, model, which[j], &forms[j]);
        for (int i = 0; s == RM_OK && i < model->n_units; i++) {
            float **copy = &plain[(size_t)j * model->n_units + i];
            s = rm_deploy_unit_plain_copy(ctx, forms[j], i, copy);
            if (s == RM_OK)
                count += (size_t)unit_entries(forms[j], i, model->tasks[which[j]].name, *copy, names + count,
                                              entries + count);
        }
    }
    if (s == RM_OK) {
        char *task_json = rm_tasks_to_json(model->tasks, which, n);
        s = write_file(ctx, path, model, "deploy", task_json, entries, count);
        rm_dealloc(task_json);
    }
    for (int j = 0; forms && j < n; j++)
        rm_deploy_free(forms[j]);
    for (size_t i = 0; plain && i < (size_t)model->n_units * (size_t)n; i++)
        rm_dealloc(plain[i]);
    rm_dealloc(plain);
    rm_dealloc(forms);
    rm_dealloc(entries);
    rm_dealloc(names);
    rm_dealloc(which);
    return s;
}

static rm_status load_deploy(rm_ctx *ctx, const char *path, const rm_st_file *f, const rm_config *cfg, int task,
                             rm_deploy **out)
{
    /* A configuration with more weights than the file holds values is not this file's network (a forged width among
     * them): refused before its weights are allocated, as in load_training. */
    rm_model *structure;
    RM_TRY(rm_model_build(ctx, cfg, 0, 0, &structure));
    const int64_t needed = rm_deploy_weight_numel(structure);
    rm_model_free(structure);
    int64_t held = 0;
    for (size_t i = 0; i < rm_st_count(f); i++)
        held += rm_st_numel(rm_st_at(f, i));
    if (needed > held)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: its configuration (base_channels %lld, levels %d) has %lld weights "
                       "per task, but the file holds %lld values: the configuration is not the network of this file",
                       path, (long long)cfg->base_channels, cfg->levels, (long long)needed, (long long)held);
    rm_deploy *d;
    RM_TRY(rm_deploy_alloc(ctx, cfg, &d));
    const rm_model *m = rm_deploy_structure(d);
    rm_status s = RM_OK;
    for (int i = 0; s == RM_OK && i < m->n_units; i++) {
        rm_entry_name names[RM_UNIT_ENTRIES];
        rm_st_entry e[RM_UNIT_ENTRIES];
        const int k = unit_entries(d, i, cfg->tasks[task].name, NULL, names, e);
        for (int j = 0; s == RM_OK && j < k; j++)
            s = take_tensor(ctx, path, f, e[j].name, e[j].ndim, e[j].shape, 0, (void *)e[j].data);
    }
    const char *normalization = rm_st_metadata(f, "repmode.normalization");
    if (s == RM_OK && normalization)
        s = rm_deploy_set_normalization_text(ctx, d, normalization);
    if (s == RM_OK)
        s = rm_deploy_loaded(ctx, d, task);
    if (s != RM_OK) {
        rm_deploy_free(d);
        return s;
    }
    *out = d;
    return RM_OK;
}

rm_status rm_deploy_load(rm_ctx *ctx, const char *path, const char *task, rm_deploy **out)
{
    if (!path || !task || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "deploy load: NULL argument");
    *out = NULL;
    model_file mf;
    RM_TRY(open_model_file(ctx, path, &mf));
    const rm_config *cfg = &mf.cfg;
    rm_status s = RM_OK;
    int t = -1;
    for (int j = 0; j < cfg->n_tasks; j++)
        if (strcmp(cfg->tasks[j].name, task) == 0)
            t = j;
    if (t < 0) {
        char names[512] = "";
        for (int j = 0; j < cfg->n_tasks && strlen(names) + RM_NAME_MAX + 3 < sizeof names; j++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", j ? ", " : "", cfg->tasks[j].name);
        s = rm_fail(ctx, RM_ERR_ARGUMENT, "%s: the model has no task '%s' (it has: %s)", path, task, names);
    }
    if (s == RM_OK && strcmp(mf.form, "deploy") == 0) {
        s = load_deploy(ctx, path, mf.st, cfg, t, out);
    } else if (s == RM_OK) {
        rm_model *m = NULL;
        s = load_training(ctx, path, mf.st, cfg, &m);
        if (s == RM_OK)
            s = rm_deploy_create(ctx, m, t, out);
        rm_model_free(m);
    }
    close_model_file(&mf);
    return s;
}

/* ---- describing a file ---------------------------------------------------------------------------------------- */

rm_status rm_model_info_read(rm_ctx *ctx, const char *path, rm_model_info *info)
{
    if (!path || !info)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "model info: NULL argument");
    memset(info, 0, sizeof *info);
    model_file mf;
    RM_TRY(open_model_file(ctx, path, &mf));
    rm_status s = RM_OK;
    info->deploy = strcmp(mf.form, "deploy") == 0;
    if (!info->deploy) {
        rm_model *m = NULL;
        s = load_training(ctx, path, mf.st, &mf.cfg, &m);
        info->parameters = s == RM_OK ? rm_model_trainable_count(m) : 0;
        rm_model_free(m);
    }
    /* A deploy-form file is checked task by task; its size is one task's weights. */
    for (int t = 0; s == RM_OK && info->deploy && t < mf.cfg.n_tasks; t++) {
        rm_deploy *d = NULL;
        s = load_deploy(ctx, path, mf.st, &mf.cfg, t, &d);
        if (s == RM_OK && t == 0)
            info->parameters = rm_deploy_weight_numel(rm_deploy_structure(d));
        rm_deploy_free(d);
    }
    const char *provenance = rm_st_metadata(mf.st, "repmode.provenance");
    if (s == RM_OK && provenance)
        s = rm_model_set_text(ctx, &info->provenance, provenance);
    if (s == RM_OK) {
        info->cfg = mf.cfg; /* the info takes the tasks */
        mf.tasks = NULL;
    } else {
        rm_dealloc(info->provenance);
        memset(info, 0, sizeof *info);
    }
    close_model_file(&mf);
    return s;
}

void rm_model_info_free(rm_model_info *info)
{
    if (!info)
        return;
    rm_dealloc(info->cfg.tasks);
    rm_dealloc(info->provenance);
    memset(info, 0, sizeof *info);
}

/* ---- checkpoints ---------------------------------------------------------------------------------------------- */

#define RM_CHECKPOINT_KEY "repmode.checkpoint"
#define RM_CHECKPOINT_AVERAGE "optimizer.average"

rm_status rm_checkpoint_write(rm_ctx *ctx, const rm_model *model, const char *path, const float *m, const float *v,
                              size_t n, const float *average, size_t n_average, int64_t step, uint64_t seed,
                              double best)
{
    /* Without a best score the metadata is exactly what it was before scores were kept; %.17g gives the double
     * back exactly. */
    char state[128];
    const int len = snprintf(state, sizeof state, "{\"step\":%lld,\"seed\":%llu", (long long)step,
                             (unsigned long long)seed);
    snprintf(state + len, sizeof state - (size_t)len, isfinite(best) ? ",\"best\":%.17g}" : "}", best);
    const rm_st_entry extra[3] = {
        {.name = "optimizer.exp_avg", .dtype = RM_ST_F32, .ndim = 1, .shape = {(int64_t)n}, .data = m},
        {.name = "optimizer.exp_avg_sq", .dtype = RM_ST_F32, .ndim = 1, .shape = {(int64_t)n}, .data = v},
        {.name = RM_CHECKPOINT_AVERAGE, .dtype = RM_ST_F32, .ndim = 1, .shape = {(int64_t)n_average}, .data = average},
    };
    return save_training(ctx, model, path, extra, average ? 3 : 2, RM_CHECKPOINT_KEY, state);
}

rm_status rm_checkpoint_read(rm_ctx *ctx, const char *path, rm_model *into, float *m, float *v, size_t n,
                             float *average, size_t n_average, uint64_t seed, int64_t *step, double *best)
{
    rm_st_file *f;
    RM_TRY(rm_st_read(ctx, path, &f));
    const char *state = rm_st_metadata(f, RM_CHECKPOINT_KEY);
    unsigned long long s_seed = 0;
    long long s_step = -1;
    double s_best = NAN;
    rm_status s = RM_OK;
    /* The best score is optional: older checkpoints end after the seed. */
    const int got = state ? sscanf(state, "{\"step\":%lld,\"seed\":%llu,\"best\":%lf", &s_step, &s_seed, &s_best) : 0;
    if (got < 2 || s_step < 0)
        s = rm_fail(ctx, RM_ERR_FORMAT, "%s: not a training checkpoint (no valid %s metadata)", path,
                    RM_CHECKPOINT_KEY);
    else if (s_seed != seed)
        s = rm_fail(ctx, RM_ERR_ARGUMENT, "%s: the checkpoint's run has seed %llu, this one %llu", path, s_seed,
                    (unsigned long long)seed);
    else if (!average != !rm_st_find(f, RM_CHECKPOINT_AVERAGE))
        s = rm_fail(ctx, RM_ERR_ARGUMENT, "%s: the checkpoint's run %s a weight average (ema), this one %s", path,
                    average ? "has no" : "keeps", average ? "keeps one" : "does not");
    /* Weights are copied only once the file has proven to be this run's checkpoint. */
    if (s == RM_OK)
        s = take_weights(ctx, path, f, into, "optimizer.");
    const int64_t shape[1] = {(int64_t)n};
    if (s == RM_OK)
        s = take_tensor(ctx, path, f, "optimizer.exp_avg", 1, shape, 0, m);
    if (s == RM_OK)
        s = take_tensor(ctx, path, f, "optimizer.exp_avg_sq", 1, shape, 0, v);
    const int64_t average_shape[1] = {(int64_t)n_average};
    if (s == RM_OK && average)
        s = take_tensor(ctx, path, f, RM_CHECKPOINT_AVERAGE, 1, average_shape, 0, average);
    if (s == RM_OK) {
        *step = s_step;
        *best = got == 3 && isfinite(s_best) ? s_best : NAN;
    }
    rm_st_free(f);
    return s;
}
