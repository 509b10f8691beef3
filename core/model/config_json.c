/* Configurations and tasks as the JSON strings of a model file's metadata (docs/model-file.md §2): repmode.config
 * holds the fields of docs/network.md §2.1 except the tasks, which repmode.tasks lists in task-index order. The
 * readers of those fields are also those of a configuration file (train/train_config.c), so the two cannot drift. */
#include "model/config_json.h"
#include "base/json_write.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rm_expert_keys[5] = {"conv5", "conv3", "conv1", "avg3", "avg5"};
static const char *const rm_activation_keys[3] = {"relu", "frelu", "mish"};
static const char *const rm_kind_keys[2] = {"regression", "binary"};
static const char *const rm_output_keys[2] = {"3d", "2d"};
static const char *const rm_block_keys[3] = {"mode", "inception", "plain"};

char *rm_config_json(const rm_config *cfg)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    const double patch[3] = {(double)cfg->patch[0], (double)cfg->patch[1], (double)cfg->patch[2]};
    int ok = rm_json_put(root, "base_channels", cJSON_CreateNumber((double)cfg->base_channels)) &&
             rm_json_put(root, "levels", cJSON_CreateNumber(cfg->levels)) &&
             rm_json_put(root, "in_channels", cJSON_CreateNumber((double)cfg->in_channels)) &&
             rm_json_put(root, "out_channels", cJSON_CreateNumber((double)cfg->out_channels)) &&
             rm_json_put(root, "experts", cJSON_CreateStringArray(rm_expert_keys, 5)) &&
             rm_json_put(root, "norm", cJSON_CreateString("batch")) &&
             rm_json_put(root, "activation", cJSON_CreateString(rm_activation_keys[cfg->activation])) &&
             rm_json_put(root, "dropout", rm_json_float(cfg->dropout)) &&
             rm_json_put(root, "decoder", cJSON_CreateString(cfg->decoder_2d ? "2d" : "3d")) &&
             rm_json_put(root, "patch", cJSON_CreateDoubleArray(patch, 3));
    if (ok && cfg->block != RM_BLOCK_MODE) /* absent for MoDE layers, so RepMode files keep their bytes */
        ok = rm_json_put(root, "block", cJSON_CreateString(rm_block_keys[cfg->block]));
    if (ok && cfg->added_expert_kernel) { /* absent without one, so other files keep their bytes */
        cJSON *added = cJSON_CreateObject();
        ok = rm_json_put(root, "added_expert", added) &&
             rm_json_put(added, "kernel", cJSON_CreateNumber(cfg->added_expert_kernel)) &&
             rm_json_put(added, "first_task", cJSON_CreateNumber(cfg->added_expert_task));
    }
    return rm_json_print(root, ok);
}

char *rm_tasks_to_json(const rm_task *tasks, const int *which, int n)
{
    cJSON *root = cJSON_CreateArray();
    int ok = root != NULL;
    for (int j = 0; ok && j < n; j++) {
        const rm_task *t = &tasks[which ? which[j] : j];
        cJSON *o = cJSON_CreateObject();
        ok = rm_json_put(root, NULL, o) && rm_json_put(o, "name", cJSON_CreateString(t->name)) &&
             rm_json_put(o, "kind", cJSON_CreateString(rm_kind_keys[t->kind]));
        if (ok && !isnan(t->threshold))
            ok = rm_json_put(o, "threshold", rm_json_float(t->threshold));
        if (ok && t->has_color) {
            cJSON *c = cJSON_CreateArray();
            ok = rm_json_put(o, "color", c);
            for (int k = 0; ok && k < 3; k++)
                ok = rm_json_put(c, NULL, rm_json_float(t->color[k]));
        }
        if (ok && t->output_2d) /* absent means 3d, so files of 3D tasks keep their bytes */
            ok = rm_json_put(o, "output", cJSON_CreateString("2d"));
    }
    return rm_json_print(root, ok);
}

char *rm_tasks_json(const rm_config *cfg) { return rm_tasks_to_json(cfg->tasks, NULL, cfg->n_tasks); }

void rm_free(void *p) { rm_dealloc(p); }

/* ---- parsing: one reader per field, for a model file's metadata and a configuration file alike -------------- */
/* The readers check what the JSON text says (types, names, shapes); what the values must be (ranges, task names,
 * duplicate tasks) is rm_config_validate's, which every caller runs after them, so no rule lives twice. */

static int index_of(const char *s, const char *const *keys, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, keys[i]) == 0)
            return i;
    return -1;
}

static int listed(const char *s, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* A whole number that an int holds (a larger one would wrap when stored). */
static int is_whole(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) <= INT_MAX;
}

static rm_status whole_number(rm_ctx *ctx, const char *where, const cJSON *v, int64_t *out)
{
    if (!is_whole(v))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: '%s' must be a whole number (below 2^31)", where, v->string);
    *out = (int64_t)v->valuedouble;
    return RM_OK;
}

/* A string among keys[0..n); `choices` lists them for the message. */
static rm_status one_of(rm_ctx *ctx, const char *where, const cJSON *v, const char *const *keys, int n,
                        const char *choices, int *out)
{
    const int i = index_of(cJSON_GetStringValue(v), keys, n);
    if (i < 0)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: '%s' must be %s", where, v->string, choices);
    *out = i;
    return RM_OK;
}

/* A member of obj whose key an earlier member has: cJSON keeps both, and reading one would hide the other. */
static rm_status unique_keys(rm_ctx *ctx, const char *where, const cJSON *obj)
{
    for (const cJSON *item = obj->child; item; item = item->next)
        for (const cJSON *seen = obj->child; seen != item; seen = seen->next)
            if (strcmp(seen->string, item->string) == 0)
                return rm_fail(ctx, RM_ERR_FORMAT, "%s: '%s' is given twice", where, item->string);
    return RM_OK;
}

static rm_status read_base_channels(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    return whole_number(ctx, where, v, &cfg->base_channels);
}

static rm_status read_levels(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    int64_t levels = 0;
    RM_TRY(whole_number(ctx, where, v, &levels));
    cfg->levels = (int)levels;
    return RM_OK;
}

static rm_status read_in_channels(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    return whole_number(ctx, where, v, &cfg->in_channels);
}

static rm_status read_out_channels(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    return whole_number(ctx, where, v, &cfg->out_channels);
}

/* Only the official expert set exists: the field is checked, not stored. */
static rm_status read_experts(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    (void)cfg;
    int standard = cJSON_IsArray(v) && cJSON_GetArraySize(v) == 5;
    for (int e = 0; standard && e < 5; e++)
        standard = index_of(cJSON_GetStringValue(cJSON_GetArrayItem(v, e)), rm_expert_keys + e, 1) == 0;
    if (!standard)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: 'experts' must be [\"conv5\", \"conv3\", \"conv1\", \"avg3\", "
                       "\"avg5\"]", where);
    return RM_OK;
}

static rm_status read_norm(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    (void)cfg;
    static const char *const batch[1] = {"batch"};
    int unused;
    return one_of(ctx, where, v, batch, 1, "\"batch\" (the only one supported)", &unused);
}

static rm_status read_activation(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    int a = 0;
    RM_TRY(one_of(ctx, where, v, rm_activation_keys, 3, "\"relu\", \"frelu\" or \"mish\"", &a));
    cfg->activation = (rm_activation)a;
    return RM_OK;
}

static rm_status read_dropout(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    if (!cJSON_IsNumber(v))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: 'dropout' must be a number in [0, 1)", where);
    cfg->dropout = (float)v->valuedouble;
    return RM_OK;
}

static rm_status read_decoder(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    int choice = 0;
    RM_TRY(one_of(ctx, where, v, rm_output_keys, 2, "\"3d\" (the official decoder) or \"2d\" (depth-averaged skips "
                  "and a 2D decoder, for 2D labels of a surface volume)", &choice));
    cfg->decoder_2d = choice;
    return RM_OK;
}

static rm_status read_patch(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: 'patch' must be a list of three sizes [Z, Y, X]", where);
    int64_t patch[3];
    for (int k = 0; k < 3; k++) {
        const cJSON *size = cJSON_GetArrayItem(v, k);
        if (!is_whole(size))
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: 'patch' must be a list of three whole sizes [Z, Y, X]", where);
        patch[k] = (int64_t)size->valuedouble;
    }
    memcpy(cfg->patch, patch, sizeof patch);
    return RM_OK;
}

/* {"kernel": k, "first_task": t}: the expert task-incremental learning added, and the index of the task it was
 * added with (docs/network.md §5.5). */
static rm_status read_added_expert(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(v, "kernel"),
                *t = cJSON_GetObjectItemCaseSensitive(v, "first_task");
    if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) != 2 || !is_whole(k) || !is_whole(t))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: 'added_expert' must be {\"kernel\": 1, 3 or 5, \"first_task\": a "
                       "task index}", where);
    cfg->added_expert_kernel = (int)k->valuedouble;
    cfg->added_expert_task = (int)t->valuedouble;
    return RM_OK;
}

static rm_status read_block(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg)
{
    int choice = 0;
    RM_TRY(one_of(ctx, where, v, rm_block_keys, 3, "\"mode\" (RepMode's MoDE layers, the default), \"inception\" or "
                  "\"plain\" (the single-task comparison networks)", &choice));
    cfg->block = (rm_block)choice;
    return RM_OK;
}

typedef rm_status (*rm_field_reader)(rm_ctx *ctx, const char *where, const cJSON *v, rm_config *cfg);

static const struct {
    const char *key;
    rm_field_reader read;
} rm_config_fields[] = {
    {"base_channels", read_base_channels}, {"levels", read_levels},   {"in_channels", read_in_channels},
    {"out_channels", read_out_channels},   {"experts", read_experts}, {"norm", read_norm},
    {"activation", read_activation},       {"dropout", read_dropout}, {"decoder", read_decoder},
    {"patch", read_patch},                 {"added_expert", read_added_expert}, {"block", read_block},
};

rm_status rm_config_read_object(rm_ctx *ctx, const char *where, const cJSON *obj, const char *const *others,
                                rm_config *cfg)
{
    if (!cJSON_IsObject(obj))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: not a JSON object", where);
    RM_TRY(unique_keys(ctx, where, obj));
    const int n_fields = (int)(sizeof rm_config_fields / sizeof rm_config_fields[0]);
    for (const cJSON *item = obj->child; item; item = item->next) {
        int f = 0;
        while (f < n_fields && strcmp(item->string, rm_config_fields[f].key) != 0)
            f++;
        if (f < n_fields)
            RM_TRY(rm_config_fields[f].read(ctx, where, item, cfg));
        else if (!listed(item->string, others))
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: unknown field '%s'", where, item->string);
    }
    return RM_OK;
}

/* ---- tasks ---- */

/* "color": [r, g, b]; the range is rm_config_validate's, and says the same. */
static rm_status read_color(rm_ctx *ctx, const char *where, const cJSON *v, rm_task *t)
{
    int numbers = cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3;
    for (int k = 0; numbers && k < 3; k++) {
        const cJSON *c = cJSON_GetArrayItem(v, k);
        numbers = cJSON_IsNumber(c);
        t->color[k] = (float)cJSON_GetNumberValue(c);
    }
    if (!numbers)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: 'color' must be [r, g, b], each in [0, 1]", where);
    t->has_color = 1;
    return RM_OK;
}

/* Entry i of a task list: "name" (required), "kind" (default regression), "threshold", "color", "output". */
static rm_status read_task(rm_ctx *ctx, const char *where, int i, const cJSON *o, rm_task *t)
{
    char at[RM_ERROR_LEN];
    snprintf(at, sizeof at, "%s[%d]", where, i);
    if (!cJSON_IsObject(o))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s must be an object {\"name\", \"kind\"[, \"threshold\", \"color\", "
                       "\"output\"]}", at);
    RM_TRY(unique_keys(ctx, at, o));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "name"));
    if (!name || strlen(name) >= RM_NAME_MAX)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: 'name' must be a string shorter than %d characters", at,
                       RM_NAME_MAX);
    *t = rm_task_make(name, RM_TASK_REGRESSION);
    snprintf(at, sizeof at, "%s[%d] ('%s')", where, i, name);
    for (const cJSON *v = o->child; v; v = v->next) {
        int choice = 0;
        if (strcmp(v->string, "name") == 0)
            continue;
        if (strcmp(v->string, "kind") == 0) {
            RM_TRY(one_of(ctx, at, v, rm_kind_keys, 2, "\"regression\" or \"binary\"", &choice));
            t->kind = (rm_task_kind)choice;
        } else if (strcmp(v->string, "threshold") == 0) {
            if (!cJSON_IsNumber(v))
                return rm_fail(ctx, RM_ERR_FORMAT, "%s: 'threshold' must be a number in [0, 1]", at);
            t->threshold = (float)v->valuedouble;
        } else if (strcmp(v->string, "color") == 0) {
            RM_TRY(read_color(ctx, at, v, t));
        } else if (strcmp(v->string, "output") == 0) {
            RM_TRY(one_of(ctx, at, v, rm_output_keys, 2, "\"3d\" (volumes, the default) or \"2d\" (2D labels of a "
                          "surface volume)", &choice));
            t->output_2d = choice;
        } else
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: unknown field '%s'", at, v->string);
    }
    return RM_OK;
}

rm_status rm_tasks_read(rm_ctx *ctx, const char *where, const cJSON *list, rm_task **tasks, int *n_tasks)
{
    *tasks = NULL;
    *n_tasks = 0;
    if (!cJSON_IsArray(list))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s must be a list of tasks {\"name\", \"kind\"[, \"threshold\", "
                       "\"color\", \"output\"]}", where);
    const int n = cJSON_GetArraySize(list);
    if (n == 0) /* rm_config_validate names the empty list */
        return RM_OK;
    if (n > RM_MAX_TASKS) /* before allocating for them or checking each against the others */
        return rm_fail(ctx, RM_ERR_FORMAT, "%s lists %d tasks; a model has at most %d", where, n, RM_MAX_TASKS);
    rm_task *t = rm_calloc((size_t)n, sizeof *t);
    if (!t)
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory", where);
    int i = 0;
    for (const cJSON *o = list->child; o; o = o->next, i++) {
        const rm_status s = read_task(ctx, where, i, o, &t[i]);
        if (s != RM_OK) {
            rm_dealloc(t);
            return s;
        }
    }
    *tasks = t;
    *n_tasks = n;
    return RM_OK;
}

rm_status rm_config_from_json(rm_ctx *ctx, const char *where, const char *config_json, const char *tasks_json,
                              rm_config *cfg, rm_task **tasks)
{
    /* Files always hold the network's shape: a missing one would be read as the official's and fail later. */
    static const char *const required[4] = {"base_channels", "levels", "in_channels", "out_channels"};
    char at[RM_ERROR_LEN];
    cJSON *c = cJSON_Parse(config_json), *t = cJSON_Parse(tasks_json);
    rm_status st = RM_OK;
    *tasks = NULL;
    if ((!c && rm_json_parsable(config_json, strlen(config_json), 0)) ||
        (!t && rm_json_parsable(tasks_json, strlen(tasks_json), 0)))
        st = rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory reading the configuration", where);
    else if (!c)
        st = rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config is not valid JSON", where);
    else if (!t)
        st = rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.tasks is not valid JSON", where);
    snprintf(at, sizeof at, "%s: repmode.config", where);
    if (st == RM_OK)
        st = rm_config_read_object(ctx, at, c, NULL, cfg);
    for (int k = 0; st == RM_OK && k < 4; k++)
        if (!cJSON_GetObjectItemCaseSensitive(c, required[k]))
            st = rm_fail(ctx, RM_ERR_FORMAT, "%s lacks '%s'", at, required[k]);
    snprintf(at, sizeof at, "%s: repmode.tasks", where);
    if (st == RM_OK)
        st = rm_tasks_read(ctx, at, t, tasks, &cfg->n_tasks);
    if (st == RM_OK)
        cfg->tasks = *tasks;
    cJSON_Delete(c);
    cJSON_Delete(t);
    return st;
}
