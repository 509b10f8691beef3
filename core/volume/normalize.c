/* Per-volume intensity normalization (repmode/normalize.h): the method as a model file's JSON, the parameters of a
 * volume (z-score statistics or exact percentiles), and the transform they make. */
#include "base/internal.h"
#include "repmode/normalize.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RM_PERCENTILE_LOW 1.0
#define RM_PERCENTILE_HIGH 99.0

static const char *const rm_norm_keys[2] = {"zscore", "percentile"};

rm_normalization rm_normalization_zscore(void)
{
    return (rm_normalization){.method = RM_NORM_ZSCORE, .low = RM_PERCENTILE_LOW, .high = RM_PERCENTILE_HIGH};
}

rm_normalization rm_normalization_percentile(double low, double high)
{
    return (rm_normalization){.method = RM_NORM_PERCENTILE, .low = low, .high = high};
}

rm_status rm_normalization_validate(rm_ctx *ctx, const rm_normalization *norm)
{
    if (!norm)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: NULL argument");
    if (norm->method != RM_NORM_ZSCORE && norm->method != RM_NORM_PERCENTILE)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: unknown method %d", (int)norm->method);
    if (norm->method == RM_NORM_ZSCORE)
        return RM_OK;
    /* written so that NaN fails every test */
    if (!(norm->low >= 0.0 && norm->low < 100.0))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: 'low' must be a percent in [0, 100), not %g", norm->low);
    if (!(norm->high > 0.0 && norm->high <= 100.0))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: 'high' must be a percent in (0, 100], not %g",
                       norm->high);
    if (!(norm->low < norm->high))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: 'low' (%g) must be below 'high' (%g)", norm->low,
                       norm->high);
    return RM_OK;
}

/* The fields of a parsed object; root is the parsed text (NULL when it is not JSON). */
static rm_status parse_object(rm_ctx *ctx, const cJSON *root, rm_normalization *out)
{
    if (!cJSON_IsObject(root))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: not a JSON object such as {\"method\":\"zscore\"} or "
                                             "{\"method\":\"percentile\",\"low\":1,\"high\":99}");
    const char *method = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "method"));
    rm_normalization n;
    if (method && strcmp(method, rm_norm_keys[RM_NORM_ZSCORE]) == 0)
        n = rm_normalization_zscore();
    else if (method && strcmp(method, rm_norm_keys[RM_NORM_PERCENTILE]) == 0)
        n = rm_normalization_percentile(RM_PERCENTILE_LOW, RM_PERCENTILE_HIGH);
    else
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: 'method' must be \"zscore\" or \"percentile\"");
    for (const cJSON *item = root->child; item; item = item->next) {
        const char *key = item->string;
        for (const cJSON *seen = root->child; seen != item; seen = seen->next)
            if (strcmp(seen->string, key) == 0)
                return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: '%s' is given twice", key);
        if (strcmp(key, "method") == 0)
            continue;
        const int percentile = n.method == RM_NORM_PERCENTILE;
        double *bound = percentile && strcmp(key, "low") == 0 ? &n.low
                        : percentile && strcmp(key, "high") == 0 ? &n.high
                                                                 : NULL;
        if (!bound)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: unknown field '%s' for the method \"%s\"%s", key,
                           method, percentile ? " (it takes 'low' and 'high')" : " (it takes none)");
        if (!cJSON_IsNumber(item))
            return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: '%s' must be a number (a percent)", key);
        *bound = item->valuedouble;
    }
    RM_TRY(rm_normalization_validate(ctx, &n));
    *out = n;
    return RM_OK;
}

rm_status rm_normalization_parse(rm_ctx *ctx, const char *json, rm_normalization *out)
{
    if (!json || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: NULL argument");
    cJSON *root = cJSON_Parse(json);
    if (!root && rm_json_parsable(json, strlen(json), 0))
        return rm_fail(ctx, RM_ERR_NOMEM, "normalization: out of memory");
    const rm_status s = parse_object(ctx, root, out);
    cJSON_Delete(root);
    return s;
}

char *rm_normalization_json(const rm_normalization *norm)
{
    if (!norm || (norm->method != RM_NORM_ZSCORE && norm->method != RM_NORM_PERCENTILE))
        return NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root || !cJSON_AddStringToObject(root, "method", rm_norm_keys[norm->method]) ||
        (norm->method == RM_NORM_PERCENTILE &&
         (!cJSON_AddNumberToObject(root, "low", norm->low) || !cJSON_AddNumberToObject(root, "high", norm->high)))) {
        cJSON_Delete(root);
        return NULL;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- a volume's parameters ----------------------------------------------------------------------------------- */

rm_norm_params rm_norm_params_zscore(double mean, double sd)
{
    /* multiplied by 1 / sd, not divided by sd: the arithmetic every earlier z-score of repmode used */
    return (rm_norm_params){.offset = mean, .scale = sd > 0.0 ? 1.0 / sd : 1.0, .clip = 0};
}

/* Where percent p falls in the sorted n voxels, as numpy's 'linear' method puts it: (n - 1) · p / 100. */
static double virtual_rank(int64_t n, double percent) { return (double)(n - 1) * (percent / 100.0); }

void rm_normalization_ranks(const rm_normalization *norm, int64_t n, int64_t ranks[4])
{
    const double bounds[2] = {norm->low, norm->high};
    for (int b = 0; b < 2; b++) {
        int64_t k = (int64_t)floor(virtual_rank(n, bounds[b]));
        k = k < 0 ? 0 : k > n - 1 ? n - 1 : k;
        ranks[2 * b] = k;
        ranks[2 * b + 1] = k + 1 < n ? k + 1 : n - 1;
    }
}

/* numpy's lerp: from the upper neighbour when t >= 0.5, so that t = 1 gives b exactly. */
static double lerp(double a, double b, double t)
{
    const double d = b - a;
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

rm_norm_params rm_norm_params_percentile(const rm_normalization *norm, int64_t n, const float at[4])
{
    const double bounds[2] = {norm->low, norm->high};
    double v[2];
    for (int b = 0; b < 2; b++) {
        const double h = virtual_rank(n, bounds[b]);
        v[b] = lerp(at[2 * b], at[2 * b + 1], h - floor(h));
    }
    /* hi == lo: no spread between the bounds, every voxel becomes 0 */
    return (rm_norm_params){.offset = v[0], .scale = v[1] > v[0] ? 1.0 / (v[1] - v[0]) : 0.0, .clip = 1};
}

static inline void swap_keys(uint32_t *a, uint32_t *b)
{
    const uint32_t t = *a;
    *a = *b;
    *b = t;
}

static int compare_keys(const void *a, const void *b)
{
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Quickselect: puts the k-th smallest of a[lo..hi] at a[k], nothing larger before it, nothing smaller after.
 * Three-way partitions keep runs of equal values (flat backgrounds) linear; a range that stops shrinking (an
 * adversarial order for the median-of-three pivot) is sorted instead, so the worst case is n log n. */
static void select_key(uint32_t *a, int64_t lo, int64_t hi, int64_t k)
{
    int budget = 16;
    for (int64_t m = hi - lo + 1; m > 1; m >>= 1)
        budget += 2;
    while (hi > lo) {
        if (--budget < 0) {
            qsort(a + lo, (size_t)(hi - lo + 1), sizeof *a, compare_keys);
            return;
        }
        const uint32_t x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        const uint32_t pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
        int64_t lt = lo, i = lo, gt = hi; /* [lo, lt) < pivot, [lt, i) == pivot, (gt, hi] > pivot */
        while (i <= gt) {
            if (a[i] < pivot)
                swap_keys(&a[lt++], &a[i++]);
            else if (a[i] > pivot)
                swap_keys(&a[i], &a[gt--]);
            else
                i++;
        }
        if (k < lt)
            hi = lt - 1;
        else if (k > gt)
            lo = gt + 1;
        else
            return;
    }
}

static rm_status compute_percentile(rm_ctx *ctx, const rm_normalization *norm, const float *x, int64_t n,
                                    rm_norm_params *out)
{
    uint32_t *keys = rm_malloc((size_t)n * sizeof *keys);
    if (!keys)
        return rm_fail(ctx, RM_ERR_NOMEM, "normalization: out of memory for a copy of %lld voxels", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        keys[i] = rm_norm_key(x[i]);
        if (!rm_norm_key_finite(keys[i])) {
            rm_dealloc(keys);
            return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: voxel %lld is %s; percentiles need finite intensities",
                           (long long)i, isnan(x[i]) ? "NaN" : "infinite");
        }
    }
    int64_t ranks[4], sorted[4];
    rm_normalization_ranks(norm, n, ranks);
    memcpy(sorted, ranks, sizeof ranks);
    for (int i = 1; i < 4; i++) /* low + 1 can pass high's floor rank */
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            const int64_t t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    /* Each selection leaves the ranks above it in [rank + 1, n): the next one searches only there. */
    int64_t from = 0;
    for (int i = 0; i < 4; i++)
        if (sorted[i] >= from) {
            select_key(keys, from, n - 1, sorted[i]);
            from = sorted[i] + 1;
        }
    float at[4];
    for (int i = 0; i < 4; i++)
        at[i] = rm_norm_key_value(keys[ranks[i]]);
    rm_dealloc(keys);
    *out = rm_norm_params_percentile(norm, n, at);
    return RM_OK;
}

rm_status rm_normalization_compute(rm_ctx *ctx, const rm_normalization *norm, const float *x, int64_t n,
                                   rm_norm_params *out)
{
    if (!norm || !x || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: NULL argument");
    if (n < 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "normalization: a volume of %lld voxels", (long long)n);
    RM_TRY(rm_normalization_validate(ctx, norm));
    if (norm->method == RM_NORM_PERCENTILE)
        return compute_percentile(ctx, norm, x, n, out);
    /* Two passes in double, in buffer order: the streamed ITK statistics sum slabs in the same order. */
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += x[i];
    const double mean = sum / (double)n;
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (x[i] - mean) * (x[i] - mean);
    *out = rm_norm_params_zscore(mean, sqrt(ss / (double)n));
    return RM_OK;
}

void rm_normalize(const rm_norm_params *params, const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = rm_norm_value(params, x[i]);
}
