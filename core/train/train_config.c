/* A configuration file (the file of `repmode train --config`): the network's fields and its tasks, read by the same
 * readers as a model file's metadata (model/config_json.c), the normalization of the training volumes and their
 * augmentation. */
#include "model/config_json.h"
#include "train/augment.h"
#include "repmode/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "normalization": "zscore" or "percentile" (the method's defaults), or the object of a model file's
 * repmode.normalization. */
static rm_status read_normalization(rm_ctx *ctx, const cJSON *v, rm_normalization *out)
{
    const char *method = cJSON_GetStringValue(v);
    char *text = NULL;
    if (method && (strcmp(method, "zscore") == 0 || strcmp(method, "percentile") == 0)) {
        cJSON *o = cJSON_CreateObject();
        if (cJSON_AddStringToObject(o, "method", method)) /* else out of memory: text stays NULL */
            text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    } else if (cJSON_IsObject(v))
        text = cJSON_PrintUnformatted(v);
    else
        return rm_fail(ctx, RM_ERR_FORMAT, "config: 'normalization' must be \"zscore\", \"percentile\" or an object "
                       "such as {\"method\": \"percentile\", \"low\": 1, \"high\": 99}");
    if (!text)
        return rm_fail(ctx, RM_ERR_NOMEM, "config: out of memory");
    const rm_status s = rm_normalization_parse(ctx, text, out);
    cJSON_free(text);
    if (s == RM_OK)
        return RM_OK;
    /* Its messages start "normalization: "; here the field is named as the file names it. */
    char why[RM_ERROR_LEN];
    const char *prefix = "normalization: ";
    memcpy(why, rm_ctx_error(ctx), sizeof why);
    const size_t skip = strncmp(why, prefix, strlen(prefix)) == 0 ? strlen(prefix) : 0;
    return rm_fail(ctx, s, "config: 'normalization': %s", why + skip);
}

/* "augment": a recipe's name (rm_augment_preset), or an object of rm_augment's fields, the absent ones taken from its
 * "preset" (default "official"): flips and rotations true or false, depth_shift a whole number of layers. */
static rm_status read_augment(rm_ctx *ctx, const cJSON *v, rm_augment *out)
{
    static const char *const numbers[] = {"jitter",       "blur",       "gamma", "contrast",
                                          "illumination", "brightness", "noise"};
    if (cJSON_IsString(v))
        return rm_augment_preset(ctx, v->valuestring, out) == RM_OK
                   ? RM_OK
                   : rm_fail(ctx, RM_ERR_ARGUMENT, "config: 'augment': '%s' is not a recipe: none, official, "
                             "label-free or ink", v->valuestring);
    if (!cJSON_IsObject(v))
        return rm_fail(ctx, RM_ERR_FORMAT, "config: 'augment' must be a recipe's name or an object");
    const cJSON *preset = cJSON_GetObjectItemCaseSensitive(v, "preset");
    if (preset && !cJSON_IsString(preset))
        return rm_fail(ctx, RM_ERR_FORMAT, "config: 'augment.preset' must be a recipe's name");
    if (rm_augment_preset(ctx, preset ? preset->valuestring : "official", out) != RM_OK)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: 'augment.preset': '%s' is not a recipe: none, official, "
                       "label-free or ink", preset->valuestring);
    float *const number_fields[] = {&out->jitter,       &out->blur,       &out->gamma, &out->contrast,
                                    &out->illumination, &out->brightness, &out->noise};
    for (const cJSON *f = v->child; f; f = f->next) {
        const char *k = f->string;
        int known = strcmp(k, "preset") == 0;
        for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++)
            if (strcmp(k, numbers[i]) == 0) {
                if (!cJSON_IsNumber(f))
                    return rm_fail(ctx, RM_ERR_FORMAT, "config: 'augment.%s' must be a number", k);
                *number_fields[i] = (float)f->valuedouble;
                known = 1;
            }
        if (strcmp(k, "flips") == 0 || strcmp(k, "rotations") == 0) {
            if (!cJSON_IsBool(f))
                return rm_fail(ctx, RM_ERR_FORMAT, "config: 'augment.%s' must be true or false", k);
            *(k[0] == 'f' ? &out->flips : &out->rotations) = cJSON_IsTrue(f);
            known = 1;
        }
        if (strcmp(k, "depth_shift") == 0) {
            if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble) || fabs(f->valuedouble) > 1e9)
                return rm_fail(ctx, RM_ERR_FORMAT, "config: 'augment.depth_shift' must be a whole number of layers");
            out->depth_shift = (int64_t)f->valuedouble;
            known = 1;
        }
        if (!known)
            return rm_fail(ctx, RM_ERR_FORMAT, "config: 'augment.%s' is not an augmentation (flips, rotations, jitter, "
                           "blur, gamma, contrast, illumination, brightness, noise, depth_shift, preset)", k);
        if (cJSON_GetObjectItemCaseSensitive(v, k) != f)
            return rm_fail(ctx, RM_ERR_FORMAT, "config: 'augment.%s' is given twice", k);
    }
    if (rm_augment_validate(ctx, out) == RM_OK)
        return RM_OK;
    char why[RM_ERROR_LEN]; /* "augment: 'noise' must …" names the field as the file does */
    memcpy(why, rm_ctx_error(ctx), sizeof why);
    return rm_fail(ctx, RM_ERR_ARGUMENT, "config: %s", why);
}

rm_status rm_train_config_parse(rm_ctx *ctx, const char *json, rm_train_config *out)
{
    static const char *const own_fields[4] = {"tasks", "normalization", "augment", NULL};
    if (!json || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "config: NULL argument");
    memset(out, 0, sizeof *out);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root && rm_json_parsable(json, strlen(json), 1))
        return rm_fail(ctx, RM_ERR_NOMEM, "config: out of memory");
    if (!root) {
        int line = 1;
        for (const char *p = json; end && p < end; p++)
            line += *p == '\n';
        return rm_fail(ctx, RM_ERR_FORMAT, "config: not valid JSON (line %d)", line);
    }
    rm_train_config c = {.cfg = rm_config_lite(NULL, 0), .normalization = rm_normalization_zscore(),
                         .augment = rm_augment_official()};
    rm_status s = rm_config_read_object(ctx, "config", root, own_fields, &c.cfg);
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(root, "tasks");
    if (s == RM_OK && tasks) /* absent: rm_config_validate asks for at least one task */
        s = rm_tasks_read(ctx, "config: tasks", tasks, &c.tasks, &c.cfg.n_tasks);
    c.cfg.tasks = c.tasks;
    const cJSON *normalization = cJSON_GetObjectItemCaseSensitive(root, "normalization");
    if (s == RM_OK && normalization)
        s = read_normalization(ctx, normalization, &c.normalization);
    const cJSON *augment = cJSON_GetObjectItemCaseSensitive(root, "augment");
    if (s == RM_OK && augment)
        s = read_augment(ctx, augment, &c.augment);
    if (s == RM_OK)
        s = rm_config_validate(ctx, &c.cfg);
    cJSON_Delete(root);
    if (s != RM_OK) {
        rm_train_config_free(&c);
        return s;
    }
    *out = c;
    return RM_OK;
}

void rm_train_config_free(rm_train_config *config)
{
    if (!config)
        return;
    rm_dealloc(config->tasks);
    memset(config, 0, sizeof *config);
}
