/* Non-finite voxels of an input volume: the census, the policy's value, the replacement (repmode/nonfinite.h). */
#include "base/internal.h"
#include "repmode/nonfinite.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const policy_names[] = {"refuse", "zero", "mean"};

rm_status rm_nonfinite_policy_parse(rm_ctx *ctx, const char *name, rm_nonfinite_policy *out)
{
    for (int i = 0; name && i < 3; i++) {
        if (strcmp(name, policy_names[i]) == 0) {
            *out = (rm_nonfinite_policy)i;
            return RM_OK;
        }
    }
    return rm_fail(ctx, RM_ERR_ARGUMENT, "non-finite voxels: '%s' is not a policy (refuse, zero or mean)",
                   name ? name : "(null)");
}

const char *rm_nonfinite_policy_name(rm_nonfinite_policy policy)
{
    return (unsigned)policy < 3 ? policy_names[policy] : "unknown";
}

rm_nonfinite_census rm_nonfinite_census_init(void)
{
    rm_nonfinite_census c = {0, 0, -1, 0.0};
    return c;
}

void rm_nonfinite_census_add(rm_nonfinite_census *census, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(x[i])) {
            census->finite_sum += x[i];
        } else {
            if (census->nonfinite++ == 0)
                census->first = census->seen + i;
        }
    }
    census->seen += n;
}

rm_status rm_nonfinite_resolve(rm_ctx *ctx, const rm_nonfinite_census *census, rm_nonfinite_policy policy,
                               const int64_t *size, float *value)
{
    const int64_t finite = census->seen - census->nonfinite;
    switch (policy) {
    case RM_NONFINITE_ZERO: *value = 0.0f; return RM_OK;
    case RM_NONFINITE_MEAN: *value = finite > 0 ? (float)(census->finite_sum / (double)finite) : 0.0f; return RM_OK;
    case RM_NONFINITE_REFUSE: break;
    default: return rm_fail(ctx, RM_ERR_ARGUMENT, "non-finite voxels: unknown policy %d", (int)policy);
    }
    *value = 0.0f;
    if (census->nonfinite == 0)
        return RM_OK;
    char where[96];
    if (size && size[1] > 0 && size[2] > 0) {
        const int64_t f = census->first, plane = size[1] * size[2];
        snprintf(where, sizeof where, "voxel (x, y, z) = (%lld, %lld, %lld)", (long long)(f % size[2]),
                 (long long)(f / size[2] % size[1]), (long long)(f / plane));
    } else {
        snprintf(where, sizeof where, "flat index %lld", (long long)census->first);
    }
    return rm_fail(ctx, RM_ERR_ARGUMENT, "%lld of %lld voxels are not finite (NaN or infinite), the first at %s",
                   (long long)census->nonfinite, (long long)census->seen, where);
}

int64_t rm_nonfinite_replace(float *x, int64_t n, float value)
{
    int64_t replaced = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            x[i] = value;
            replaced++;
        }
    }
    return replaced;
}
