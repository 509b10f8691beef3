/* Tensor views: construction, sizes, and the argument checks every operator shares. */
#include "base/internal.h"

#include <stdio.h>

rm_tensor rm_tensor_5d(float *data, int64_t n, int64_t c, int64_t d, int64_t h, int64_t w)
{
    rm_tensor t = {data, {n, c, d, h, w}};
    return t;
}

int64_t rm_tensor_numel(const rm_tensor *t) { return t->ne[0] * rm_tensor_sample_numel(t); }

int64_t rm_tensor_sample_numel(const rm_tensor *t) { return t->ne[1] * rm_tensor_spatial_numel(t); }

int64_t rm_tensor_spatial_numel(const rm_tensor *t) { return t->ne[2] * t->ne[3] * t->ne[4]; }

int rm_tensor_same_shape(const rm_tensor *a, const rm_tensor *b)
{
    for (int i = 0; i < RM_MAX_DIMS; i++)
        if (a->ne[i] != b->ne[i])
            return 0;
    return 1;
}

const char *rm_shape_str(const int64_t ne[RM_MAX_DIMS], char *buf, size_t len)
{
    snprintf(buf, len, "(%lld, %lld, %lld, %lld, %lld)", (long long)ne[0], (long long)ne[1], (long long)ne[2],
             (long long)ne[3], (long long)ne[4]);
    return buf;
}

rm_status rm_check_tensor(rm_ctx *ctx, const rm_tensor *t, const char *name)
{
    if (!t)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s is NULL", name);
    if (!t->data)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s has no data", name);
    for (int i = 0; i < RM_MAX_DIMS; i++) {
        if (t->ne[i] <= 0) {
            char s[96];
            return rm_fail(ctx, RM_ERR_SHAPE, "%s has an empty or negative dimension: %s", name,
                           rm_shape_str(t->ne, s, sizeof s));
        }
    }
    return RM_OK;
}

rm_status rm_check_shape(rm_ctx *ctx, const rm_tensor *t, const char *name, const int64_t ne[RM_MAX_DIMS])
{
    RM_TRY(rm_check_tensor(ctx, t, name));
    for (int i = 0; i < RM_MAX_DIMS; i++) {
        if (t->ne[i] != ne[i]) {
            char got[96], want[96];
            return rm_fail(ctx, RM_ERR_SHAPE, "%s has shape %s, expected %s", name, rm_shape_str(t->ne, got, sizeof got),
                           rm_shape_str(ne, want, sizeof want));
        }
    }
    return RM_OK;
}
