/* Sliding-window prediction: the official window grid and Gaussian stitching (docs/network.md §6), over any
 * output region of a volume read through a callback. */
#include "model/model_impl.h"
#include "predict/tta.h"
#include "repmode/predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

rm_window_params rm_window_params_make(const int64_t patch[3])
{
    rm_window_params p = {{patch[0], patch[1], patch[2]}, 0.5, RM_BLEND_GAUSSIAN, 0};
    return p;
}

static int64_t window_stride(int64_t window, double overlap)
{
    const int64_t s = (int64_t)ceil((double)window * (1.0 - overlap));
    return s < 1 ? 1 : s;
}

int64_t rm_window_starts(int64_t len, int64_t window, double overlap, int64_t *starts, int64_t max)
{
    const int64_t stride = window_stride(window, overlap);
    /* official: n = ceil((L - P) / S + 1), window k at k·S, the last pulled back to end at L */
    const int64_t n = len <= window ? 1 : (len - window + stride - 1) / stride + 1;
    for (int64_t k = 0; k < n && k < max; k++) {
        const int64_t s = k * stride;
        starts[k] = len <= window ? 0 : (s < len - window ? s : len - window);
    }
    return n;
}

void rm_window_weights(rm_blend blend, const int64_t patch[3], float *w)
{
    for (int64_t z = 0; z < patch[0]; z++)
        for (int64_t y = 0; y < patch[1]; y++)
            for (int64_t x = 0; x < patch[2]; x++) {
                double e = 0.0;
                const int64_t at[3] = {z, y, x};
                for (int a = 0; a < 3 && blend == RM_BLEND_GAUSSIAN; a++) {
                    const double d = (double)(at[a] - patch[a] / 2), sigma = (double)patch[a] / 8.0;
                    e += d * d / (2.0 * sigma * sigma);
                }
                w[(z * patch[1] + y) * patch[2] + x] = (float)exp(-e);
            }
}

/* The windows of one axis that touch the output range [r0, r1). */
typedef struct axis_windows {
    int64_t window; /* window length: the patch, or the volume rounded up to the network's multiple if shorter */
    int64_t *starts;
    int64_t n;
} axis_windows;

static rm_status plan_axis(rm_ctx *ctx, int64_t len, int64_t patch, int64_t unit, double overlap, int64_t r0,
                           int64_t r1, axis_windows *a)
{
    a->window = len >= patch ? patch : (len + unit - 1) / unit * unit;
    const int64_t total = rm_window_starts(len, a->window, overlap, NULL, 0);
    a->starts = rm_malloc((size_t)total * sizeof *a->starts);
    if (!a->starts)
        return rm_fail(ctx, RM_ERR_NOMEM, "predict: out of memory");
    rm_window_starts(len, a->window, overlap, a->starts, total);
    /* Keep, in order, the windows that reach into [r0, r1). */
    a->n = 0;
    for (int64_t k = 0; k < total; k++)
        if (a->starts[k] < r1 && a->starts[k] + a->window > r0)
            a->starts[a->n++] = a->starts[k];
    return RM_OK;
}

/* Checks the model, the window parameters and the output region. */
static rm_status check_windows(rm_ctx *ctx, const rm_deploy *d, const rm_window_params *p, const int64_t volume[3],
                               const int64_t out_start[3], const int64_t out_size[3])
{
    if (!d || !p || !volume || !out_start || !out_size)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: NULL argument");
    const rm_config *cfg = rm_deploy_config(d);
    const int64_t unit = (int64_t)1 << cfg->levels;
    if (cfg->in_channels != 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: the model takes %lld input channels; sliding-window "
                       "prediction reads single-channel volumes", (long long)cfg->in_channels);
    if (!(p->overlap >= 0.0 && p->overlap < 1.0))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: overlap %g is outside [0, 1)", p->overlap);
    if (p->blend != RM_BLEND_GAUSSIAN && p->blend != RM_BLEND_CONSTANT)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: unknown blending %d", (int)p->blend);
    if (p->tta != 0 && p->tta != 1)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: tta is %d, not 0 or 1", p->tta);
    for (int a = 0; a < 3; a++) {
        if (p->patch[a] < unit || p->patch[a] % unit != 0)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: patch size %lld along axis %d is not a positive multiple "
                           "of %lld, as the network needs", (long long)p->patch[a], a, (long long)unit);
        if (volume[a] < 1)
            return rm_fail(ctx, RM_ERR_SHAPE, "predict: the volume has size %lld along axis %d",
                           (long long)volume[a], a);
        if (out_start[a] < 0 || out_size[a] < 1 || out_start[a] + out_size[a] > volume[a])
            return rm_fail(ctx, RM_ERR_SHAPE, "predict: output region [%lld, %lld) along axis %d is outside the "
                           "volume [0, %lld)", (long long)out_start[a], (long long)(out_start[a] + out_size[a]), a,
                           (long long)volume[a]);
    }
    return RM_OK;
}

/* Checks the arguments and plans the windows of every axis that reach into the output region; the caller frees
 * ax[a].starts whatever the status. */
static rm_status plan_windows(rm_ctx *ctx, const rm_deploy *d, const rm_window_params *p, const int64_t volume[3],
                              const int64_t out_start[3], const int64_t out_size[3], axis_windows ax[3])
{
    RM_TRY(check_windows(ctx, d, p, volume, out_start, out_size));
    const int64_t unit = (int64_t)1 << rm_deploy_config(d)->levels;
    rm_status s = RM_OK;
    for (int a = 0; s == RM_OK && a < 3; a++)
        s = plan_axis(ctx, volume[a], p->patch[a], unit, p->overlap, out_start[a], out_start[a] + out_size[a], &ax[a]);
    return s;
}

rm_status rm_predict_input_region(rm_ctx *ctx, const rm_deploy *d, const rm_window_params *p,
                                  const int64_t volume[3], const int64_t out_start[3], const int64_t out_size[3],
                                  int64_t in_start[3], int64_t in_size[3])
{
    if (!in_start || !in_size)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: NULL argument");
    axis_windows ax[3] = {{0}};
    const rm_status s = plan_windows(ctx, d, p, volume, out_start, out_size, ax);
    for (int a = 0; a < 3; a++) {
        if (s == RM_OK) {
            /* starts ascend; a window longer than the volume (a short axis) reads only the volume */
            const int64_t end = ax[a].starts[ax[a].n - 1] + ax[a].window;
            in_start[a] = ax[a].starts[0];
            in_size[a] = (end < volume[a] ? end : volume[a]) - in_start[a];
        }
        rm_dealloc(ax[a].starts);
    }
    return s;
}

/* Reads window [s, s + win) of the volume, zero beyond its end (only a volume shorter than the window has one). */
static int read_window(rm_read_fn read, void *user, const int64_t volume[3], const int64_t s[3], const int64_t win[3],
                       float *buf, float *staging)
{
    int64_t size[3];
    int inside = 1;
    for (int a = 0; a < 3; a++) {
        size[a] = s[a] + win[a] <= volume[a] ? win[a] : volume[a] - s[a];
        inside &= size[a] == win[a];
    }
    if (inside)
        return read(user, s, size, buf);
    const int rc = read(user, s, size, staging);
    memset(buf, 0, (size_t)(win[0] * win[1] * win[2]) * sizeof(float));
    for (int64_t z = 0; z < size[0]; z++)
        for (int64_t y = 0; y < size[1]; y++)
            memcpy(buf + (z * win[1] + y) * win[2], staging + (z * size[1] + y) * size[2],
                   (size_t)size[2] * sizeof(float));
    return rc;
}

/* One window's prediction (channels × window voxels), and whether the current call used it. */
typedef struct cached_window {
    int64_t start[3];
    float *pred;
    int used;
} cached_window;

struct rm_window_cache {
    cached_window *w;
    int64_t n, cap;
    size_t bytes, max_bytes;
    /* what the windows were computed with: any change empties the cache */
    uint64_t generation; /* the deploy form's weights (the task included), not its address */
    rm_window_params params;
    int64_t volume[3], window[3];
};

rm_window_cache *rm_window_cache_create(size_t max_bytes)
{
    rm_window_cache *c = rm_calloc(1, sizeof *c);
    if (c)
        c->max_bytes = max_bytes;
    return c;
}

void rm_window_cache_clear(rm_window_cache *c)
{
    if (!c)
        return;
    for (int64_t i = 0; i < c->n; i++)
        rm_dealloc(c->w[i].pred);
    c->n = 0;
    c->bytes = 0;
}

void rm_window_cache_free(rm_window_cache *c)
{
    rm_window_cache_clear(c);
    if (c)
        rm_dealloc(c->w);
    rm_dealloc(c);
}

size_t rm_window_cache_bytes(const rm_window_cache *c) { return c ? c->bytes : 0; }

/* Empties the cache unless its windows were computed by the same weights, windows and volume. */
static void cache_begin(rm_window_cache *c, const rm_deploy *d, const rm_window_params *p, const int64_t volume[3],
                        const int64_t win[3])
{
    const int same = c->generation == rm_deploy_generation(d) && c->params.overlap == p->overlap &&
                     c->params.blend == p->blend && c->params.tta == p->tta && memcmp(c->params.patch, p->patch, sizeof p->patch) == 0 &&
                     memcmp(c->volume, volume, sizeof c->volume) == 0 && memcmp(c->window, win, sizeof c->window) == 0;
    if (!same) {
        rm_window_cache_clear(c);
        c->generation = rm_deploy_generation(d);
        c->params = *p;
        memcpy(c->volume, volume, sizeof c->volume);
        memcpy(c->window, win, sizeof c->window);
    }
    for (int64_t i = 0; i < c->n; i++)
        c->w[i].used = 0;
}

static cached_window *cache_find(rm_window_cache *c, const int64_t start[3])
{
    for (int64_t i = 0; c && i < c->n; i++)
        if (memcmp(c->w[i].start, start, sizeof c->w[i].start) == 0)
            return &c->w[i];
    return NULL;
}

/* Keeps a copy of a window's prediction; a full cache or no memory only means it will be computed again. */
static void cache_put(rm_window_cache *c, const int64_t start[3], const float *pred, size_t floats)
{
    if (c->bytes + floats * sizeof(float) > c->max_bytes)
        return;
    if (c->n == c->cap) {
        const int64_t cap = c->cap ? 2 * c->cap : 16;
        cached_window *w = rm_realloc(c->w, (size_t)cap * sizeof *w);
        if (!w)
            return;
        c->w = w;
        c->cap = cap;
    }
    float *copy = rm_malloc(floats * sizeof *copy);
    if (!copy)
        return;
    memcpy(copy, pred, floats * sizeof *copy);
    cached_window *e = &c->w[c->n++];
    memcpy(e->start, start, sizeof e->start);
    e->pred = copy;
    e->used = 1;
    c->bytes += floats * sizeof *copy;
}

/* Whether a window reaches outside the output region: only such windows can serve another region. */
static int reaches_outside(const int64_t start[3], const int64_t win[3], const int64_t out_start[3],
                           const int64_t out_size[3])
{
    int outside = 0;
    for (int a = 0; a < 3; a++)
        outside |= start[a] < out_start[a] || start[a] + win[a] > out_start[a] + out_size[a];
    return outside;
}

/* Drops the windows this call did not use, and those it used that lie inside its output region (no later region
 * needs them), keeping the order of the others. */
static void cache_end(rm_window_cache *c, const int64_t win[3], const int64_t out_start[3], const int64_t out_size[3],
                      size_t floats)
{
    int64_t kept = 0;
    for (int64_t i = 0; i < c->n; i++) {
        if (c->w[i].used && reaches_outside(c->w[i].start, win, out_start, out_size)) {
            c->w[kept++] = c->w[i];
        } else {
            rm_dealloc(c->w[i].pred);
            c->bytes -= floats * sizeof(float);
        }
    }
    c->n = kept;
}

/* One call's buffers: a window's input, its staging for reads past the volume's end, its blending weights and its
 * prediction, the region's accumulators (weighted sums per channel and weights, in double), and with test-time
 * augmentation a transformed window's input and prediction. */
typedef struct region_buffers {
    float *in, *staging, *weights, *pred, *tta_in, *tta_pred;
    double *num, *den;
} region_buffers;

/* Lays the buffers out in the context's window memory, kept from call to call and apart from the operators'
 * scratch that the deploy form's forward takes in between, and zeroes the accumulators. */
static rm_status take_buffers(rm_ctx *ctx, int64_t channels, int64_t wvol, int64_t ovol, int tta, region_buffers *b)
{
    const size_t window = rm_work_align((size_t)wvol * sizeof(float)),
                 pred = rm_work_align((size_t)(channels * wvol) * sizeof(float)),
                 num = rm_work_align((size_t)(channels * ovol) * sizeof(double)),
                 den = rm_work_align((size_t)ovol * sizeof(double)), extra = tta ? window + pred : 0;
    char *p = rm_ctx_work(ctx, RM_WORK_WINDOWS, 3 * window + pred + num + den + extra);
    if (!p)
        return rm_fail(ctx, RM_ERR_NOMEM, "predict: cannot allocate the buffers of a %lld-voxel region",
                       (long long)ovol);
    b->in = (float *)p;
    b->staging = (float *)(p + window);
    b->weights = (float *)(p + 2 * window);
    b->pred = (float *)(p + 3 * window);
    b->num = (double *)(p + 3 * window + pred);
    b->den = (double *)(p + 3 * window + pred + num);
    b->tta_in = tta ? (float *)(p + 3 * window + pred + num + den) : NULL;
    b->tta_pred = tta ? (float *)(p + 4 * window + pred + num + den) : NULL;
    memset(b->num, 0, (size_t)(channels * ovol) * sizeof *b->num);
    memset(b->den, 0, (size_t)ovol * sizeof *b->den);
    return RM_OK;
}

rm_status rm_predict_region(rm_ctx *ctx, const rm_deploy *d, const rm_window_params *p, const int64_t volume[3],
                            rm_read_fn read, void *read_user, const int64_t out_start[3], const int64_t out_size[3],
                            float *out, rm_progress_fn progress, void *progress_user)
{
    return rm_predict_region_cached(ctx, d, p, volume, read, read_user, out_start, out_size, out, progress,
                                    progress_user, NULL);
}

rm_status rm_predict_region_cached(rm_ctx *ctx, const rm_deploy *d, const rm_window_params *p, const int64_t volume[3],
                                   rm_read_fn read, void *read_user, const int64_t out_start[3],
                                   const int64_t out_size[3], float *out, rm_progress_fn progress,
                                   void *progress_user, rm_window_cache *cache)
{
    if (!read || !out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "predict: NULL argument");
    axis_windows ax[3] = {{0}};
    rm_status s = plan_windows(ctx, d, p, volume, out_start, out_size, ax);
    const int64_t channels = d ? rm_deploy_config(d)->out_channels : 0;
    const int64_t win[3] = {ax[0].window, ax[1].window, ax[2].window};
    /* out_size may be the NULL the checks refused. */
    const int64_t wvol = win[0] * win[1] * win[2], ovol = s == RM_OK ? out_size[0] * out_size[1] * out_size[2] : 0;
    region_buffers b = {0};
    if (s == RM_OK)
        s = take_buffers(ctx, channels, wvol, ovol, p->tta, &b);
    if (s == RM_OK)
        rm_window_weights(p->blend, win, b.weights);
    if (s == RM_OK && cache)
        cache_begin(cache, d, p, volume, win);

    const int64_t total = ax[0].n * ax[1].n * ax[2].n;
    rm_tensor x = rm_tensor_5d(b.in, 1, 1, win[0], win[1], win[2]);
    rm_tensor y = rm_tensor_5d(b.pred, 1, channels, win[0], win[1], win[2]);
    /* Windows in one global order (z, y, x starts ascending): every voxel sums its windows in the same order
     * whatever region is asked for. */
    for (int64_t k = 0; s == RM_OK && k < total; k++) {
        const int64_t st[3] = {ax[0].starts[k / (ax[1].n * ax[2].n)], ax[1].starts[k / ax[2].n % ax[1].n],
                               ax[2].starts[k % ax[2].n]};
        cached_window *hit = cache_find(cache, st);
        const float *wp = hit ? hit->pred : b.pred;
        if (hit) {
            hit->used = 1;
        } else {
            if (read_window(read, read_user, volume, st, win, b.in, b.staging) != 0) {
                s = rm_fail(ctx, RM_ERR_IO, "predict: reading the input at (%lld, %lld, %lld) failed",
                            (long long)st[0], (long long)st[1], (long long)st[2]);
                break;
            }
            s = p->tta ? rm_tta_forward_window(ctx, d, &x, st, &y, b.tta_in, b.tta_pred)
                       : rm_deploy_forward_window(ctx, d, &x, st, &y);
            if (s != RM_OK)
                break;
            if (cache && reaches_outside(st, win, out_start, out_size))
                cache_put(cache, st, b.pred, (size_t)(channels * wvol));
        }
        /* The part of the window inside the output region. */
        int64_t lo[3], hi[3];
        for (int a = 0; a < 3; a++) {
            lo[a] = st[a] > out_start[a] ? st[a] : out_start[a];
            hi[a] = st[a] + win[a] < out_start[a] + out_size[a] ? st[a] + win[a] : out_start[a] + out_size[a];
        }
        for (int64_t z = lo[0]; z < hi[0]; z++)
            for (int64_t r = lo[1]; r < hi[1]; r++)
                for (int64_t c = lo[2]; c < hi[2]; c++) {
                    const int64_t wi = ((z - st[0]) * win[1] + (r - st[1])) * win[2] + (c - st[2]);
                    const int64_t oi = ((z - out_start[0]) * out_size[1] + (r - out_start[1])) * out_size[2] +
                                       (c - out_start[2]);
                    b.den[oi] += b.weights[wi];
                    for (int64_t ch = 0; ch < channels; ch++)
                        b.num[ch * ovol + oi] += (double)b.weights[wi] * wp[ch * wvol + wi];
                }
        if (progress && progress(progress_user, (double)(k + 1) / (double)total) != 0)
            s = rm_fail(ctx, RM_ERR_CANCELLED, "predict: cancelled by the progress callback");
    }
    for (int64_t ch = 0; s == RM_OK && ch < channels; ch++)
        for (int64_t i = 0; i < ovol; i++)
            out[ch * ovol + i] = (float)(b.num[ch * ovol + i] / b.den[i]);
    if (s == RM_OK && cache)
        cache_end(cache, win, out_start, out_size, (size_t)(channels * wvol));
    else if (cache)
        rm_window_cache_clear(cache); /* an aborted call may have left windows half used */
    for (int a = 0; a < 3; a++)
        rm_dealloc(ax[a].starts);
    return s;
}
