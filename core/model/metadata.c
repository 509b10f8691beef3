/* A model's text metadata, which its files carry verbatim: the normalization it was trained with and its
 * provenance, both JSON objects as text. */
#include "model/model_impl.h"
#include "repmode/normalize.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

rm_status rm_model_set_text(rm_ctx *ctx, char **field, const char *json)
{
    const size_t n = strlen(json) + 1;
    char *copy = rm_malloc(n);
    if (!copy)
        return rm_fail(ctx, RM_ERR_NOMEM, "model: out of memory");
    memcpy(copy, json, n);
    rm_dealloc(*field);
    *field = copy;
    return RM_OK;
}

const char *rm_model_provenance(const rm_model *model) { return model->provenance; }

rm_status rm_model_set_provenance(rm_ctx *ctx, rm_model *model, const char *json)
{
    if (!model || !json)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "provenance: NULL argument");
    cJSON *parsed = cJSON_Parse(json);
    if (!parsed && rm_json_parsable(json, strlen(json), 0))
        return rm_fail(ctx, RM_ERR_NOMEM, "provenance: out of memory");
    const int object = cJSON_IsObject(parsed);
    cJSON_Delete(parsed);
    if (!object)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "provenance: not a JSON object");
    return rm_model_set_text(ctx, &model->provenance, json);
}

rm_status rm_model_normalization(rm_ctx *ctx, const rm_model *model, rm_normalization *out)
{
    if (!model || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: NULL argument");
    return rm_normalization_parse(ctx, model->normalization, out);
}

rm_status rm_deploy_normalization(rm_ctx *ctx, const rm_deploy *deploy, rm_normalization *out)
{
    if (!deploy)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: NULL argument");
    return rm_model_normalization(ctx, rm_deploy_structure(deploy), out);
}

rm_status rm_model_set_normalization(rm_ctx *ctx, rm_model *model, const rm_normalization *norm)
{
    if (!model)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: NULL argument");
    RM_TRY(rm_normalization_validate(ctx, norm));
    char *json = rm_normalization_json(norm);
    if (!json)
        return rm_fail(ctx, RM_ERR_NOMEM, "normalization: out of memory");
    const rm_status s = rm_model_set_text(ctx, &model->normalization, json);
    rm_dealloc(json);
    return s;
}
