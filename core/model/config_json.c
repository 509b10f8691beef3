/* Configurations and tasks as the JSON strings of a model file's metadata (docs/model-file.md §2): repmode.config holds
 * the fields of docs/network.md §2.1 except the tasks, which repmode.tasks lists in task-index order. */
#include "model/config_json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rm_expert_keys[5] = {"conv5", "conv3", "conv1", "avg3", "avg5"};
static const char *const rm_activation_keys[3] = {"relu", "frelu", "mish"};
static const char *const rm_kind_keys[2] = {"regression", "binary"};
static const char *const rm_output_keys[2] = {"3d", "2d"};

/* The shortest decimal that reads back as the same float: 0.1f prints as 0.1, not 0.10000000149011612. */
static cJSON *float_number(float v)
{
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    return cJSON_CreateRaw(buf);
}

static char *print_and_free(cJSON *root)
{
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

char *rm_config_json(const rm_config *cfg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *experts = cJSON_CreateStringArray(rm_expert_keys, 5);
    const double patch[3] = {(double)cfg->patch[0], (double)cfg->patch[1], (double)cfg->patch[2]};
    cJSON *p = cJSON_CreateDoubleArray(patch, 3);
    if (!root || !experts || !p) {
        cJSON_Delete(experts);
        cJSON_Delete(p);
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddNumberToObject(root, "base_channels", (double)cfg->base_channels);
    cJSON_AddNumberToObject(root, "levels", cfg->levels);
    cJSON_AddNumberToObject(root, "in_channels", (double)cfg->in_channels);
    cJSON_AddNumberToObject(root, "out_channels", (double)cfg->out_channels);
    cJSON_AddItemToObject(root, "experts", experts);
    cJSON_AddStringToObject(root, "norm", "batch");
    cJSON_AddStringToObject(root, "activation", rm_activation_keys[cfg->activation]);
    cJSON_AddItemToObject(root, "dropout", float_number(cfg->dropout));
    cJSON_AddStringToObject(root, "decoder", "3d");
    cJSON_AddItemToObject(root, "patch", p);
    return print_and_free(root);
}

char *rm_tasks_to_json(const rm_task *tasks, const int *which, int n)
{
    cJSON *root = cJSON_CreateArray();
    for (int j = 0; root && j < n; j++) {
        const rm_task *t = &tasks[which ? which[j] : j];
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "kind", rm_kind_keys[t->kind]);
        if (!isnan(t->threshold))
            cJSON_AddItemToObject(o, "threshold", float_number(t->threshold));
        if (t->has_color) {
            cJSON *c = cJSON_AddArrayToObject(o, "color");
            for (int k = 0; c && k < 3; k++)
                cJSON_AddItemToArray(c, float_number(t->color[k]));
        }
        if (t->output_2d) /* absent means 3d, so files of 3D tasks keep their bytes */
            cJSON_AddStringToObject(o, "output", "2d");
        cJSON_AddItemToArray(root, o);
    }
    return print_and_free(root);
}

char *rm_tasks_json(const rm_config *cfg) { return rm_tasks_to_json(cfg->tasks, NULL, cfg->n_tasks); }

void rm_free(void *p) { free(p); }

/* ---- parsing ------------------------------------------------------------------------------------------------- */

static int index_of(const char *s, const char *const *keys, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, keys[i]) == 0)
            return i;
    return -1;
}

/* A whole number field in [lo, hi]; *ok cleared with a message on failure. */
static int64_t get_int(rm_ctx *ctx, const char *where, const cJSON *obj, const char *key, int64_t lo, int64_t hi,
                       rm_status *st)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (*st != RM_OK)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi) {
        *st = rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config field '%s' must be a whole number in %lld..%lld", where,
                      key, (long long)lo, (long long)hi);
        return 0;
    }
    return (int64_t)v->valuedouble;
}

static rm_status parse_config(rm_ctx *ctx, const char *where, const cJSON *root, rm_config *cfg)
{
    if (!cJSON_IsObject(root))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config is not a JSON object", where);
    rm_status st = RM_OK;
    cfg->base_channels = get_int(ctx, where, root, "base_channels", 1, 4096, &st);
    cfg->levels = (int)get_int(ctx, where, root, "levels", 1, 8, &st);
    cfg->in_channels = get_int(ctx, where, root, "in_channels", 1, 4096, &st);
    cfg->out_channels = get_int(ctx, where, root, "out_channels", 1, 4096, &st);
    RM_TRY(st);

    const cJSON *experts = cJSON_GetObjectItemCaseSensitive(root, "experts");
    int standard = cJSON_IsArray(experts) && cJSON_GetArraySize(experts) == 5;
    for (int e = 0; standard && e < 5; e++)
        standard = index_of(cJSON_GetStringValue(cJSON_GetArrayItem(experts, e)), rm_expert_keys + e, 1) == 0;
    if (experts && !standard)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config experts must be [\"conv5\", \"conv3\", \"conv1\", "
                       "\"avg3\", \"avg5\"]", where);
    const char *norm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "norm"));
    if (norm && strcmp(norm, "batch") != 0)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config norm '%s' is not supported (only 'batch')", where, norm);
    const char *decoder = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "decoder"));
    if (decoder && strcmp(decoder, "3d") != 0)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config decoder '%s' is not supported (only '3d')", where,
                       decoder);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "activation");
    const int a = act ? index_of(cJSON_GetStringValue(act), rm_activation_keys, 3) : RM_ACT_RELU;
    if (a < 0)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config activation must be \"relu\", \"frelu\" or \"mish\"",
                       where);
    cfg->activation = (rm_activation)a;
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(root, "dropout");
    if (dropout && !cJSON_IsNumber(dropout))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config dropout must be a number", where);
    cfg->dropout = dropout ? (float)dropout->valuedouble : 0.0f;
    const cJSON *patch = cJSON_GetObjectItemCaseSensitive(root, "patch");
    if (patch) {
        if (!cJSON_IsArray(patch) || cJSON_GetArraySize(patch) != 3)
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config patch must be a list of three sizes (Z, Y, X)",
                           where);
        for (int k = 0; k < 3; k++) {
            const cJSON *v = cJSON_GetArrayItem(patch, k);
            if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
                v->valuedouble > 1e6)
                return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config patch must hold positive whole numbers", where);
            cfg->patch[k] = (int64_t)v->valuedouble;
        }
    }
    return RM_OK;
}

static rm_status parse_tasks(rm_ctx *ctx, const char *where, const cJSON *root, rm_task **tasks, int *n_tasks)
{
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) < 1)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.tasks is not a non-empty JSON list", where);
    const int n = cJSON_GetArraySize(root);
    rm_task *t = calloc((size_t)n, sizeof *t);
    if (!t)
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory", where);
    for (int i = 0; i < n; i++) {
        const cJSON *o = cJSON_GetArrayItem(root, i);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "name"));
        const int kind = index_of(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "kind")), rm_kind_keys, 2);
        if (!cJSON_IsObject(o) || !name || strlen(name) >= RM_NAME_MAX || kind < 0) {
            free(t);
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.tasks entry %d needs a \"name\" (under %d characters) and "
                           "a \"kind\" of \"regression\" or \"binary\"", where, i, RM_NAME_MAX);
        }
        t[i] = rm_task_make(name, (rm_task_kind)kind);
        const cJSON *threshold = cJSON_GetObjectItemCaseSensitive(o, "threshold");
        if (cJSON_IsNumber(threshold))
            t[i].threshold = (float)threshold->valuedouble;
        const cJSON *output = cJSON_GetObjectItemCaseSensitive(o, "output");
        const int out2d = output ? index_of(cJSON_GetStringValue(output), rm_output_keys, 2) : 0;
        if (out2d < 0) {
            free(t);
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.tasks entry %d ('%s'): \"output\" must be \"3d\" or "
                           "\"2d\"", where, i, name);
        }
        t[i].output_2d = out2d;
        const cJSON *color = cJSON_GetObjectItemCaseSensitive(o, "color");
        if (cJSON_IsArray(color) && cJSON_GetArraySize(color) == 3) {
            t[i].has_color = 1;
            for (int k = 0; k < 3; k++)
                t[i].color[k] = (float)cJSON_GetNumberValue(cJSON_GetArrayItem(color, k));
        }
    }
    *tasks = t;
    *n_tasks = n;
    return RM_OK;
}

rm_status rm_config_from_json(rm_ctx *ctx, const char *where, const char *config_json, const char *tasks_json,
                              rm_config *cfg, rm_task **tasks)
{
    cJSON *c = cJSON_Parse(config_json), *t = cJSON_Parse(tasks_json);
    rm_status st = RM_OK;
    if (!c)
        st = rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.config is not valid JSON", where);
    else if (!t)
        st = rm_fail(ctx, RM_ERR_FORMAT, "%s: repmode.tasks is not valid JSON", where);
    if (st == RM_OK)
        st = parse_config(ctx, where, c, cfg);
    if (st == RM_OK)
        st = parse_tasks(ctx, where, t, tasks, &cfg->n_tasks);
    if (st == RM_OK)
        cfg->tasks = *tasks;
    cJSON_Delete(c);
    cJSON_Delete(t);
    return st;
}
