/* Augmentation recipes and the intensity augmentations of a training sample (docs/network.md §5.4). The trainer
 * draws the values (trainer.c); here they are applied. */
#include "train/augment.h"
#include "base/internal.h"

#include <math.h>
#include <string.h>

rm_augment rm_augment_none(void)
{
    rm_augment a;
    memset(&a, 0, sizeof a);
    return a;
}

rm_augment rm_augment_official(void)
{
    rm_augment a = rm_augment_none();
    a.flips = 1;
    return a;
}

rm_status rm_augment_preset(rm_ctx *ctx, const char *name, rm_augment *out)
{
    if (!out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: NULL argument");
    rm_augment a = rm_augment_none();
    if (name && strcmp(name, "none") == 0) {
    } else if (name && strcmp(name, "official") == 0) {
        a = rm_augment_official();
    } else if (name && strcmp(name, "label-free") == 0) {
        /* Microscopes differ in focus, illumination and camera: blur, gamma, contrast, an illumination ramp and
         * brightness cover them. */
        a = (rm_augment){.flips = 1,
                         .rotations = 1,
                         .blur = 1.0f,
                         .gamma = 0.3f,
                         .contrast = 0.3f,
                         .illumination = 1.0f,
                         .brightness = 0.2f,
                         .noise = 0.1f};
    } else if (name && strcmp(name, "ink") == 0) {
        /* CT scans differ in energy and reconstruction, and a surface volume's papyrus surface in depth. */
        a = (rm_augment){.flips = 1,
                         .rotations = 1,
                         .blur = 0.5f,
                         .gamma = 0.2f,
                         .contrast = 0.2f,
                         .brightness = 0.1f,
                         .noise = 0.1f,
                         .depth_shift = 2};
    } else
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: '%s' is not a recipe: none, official, label-free or ink",
                       name ? name : "(null)");
    *out = a;
    return RM_OK;
}

rm_status rm_augment_validate(rm_ctx *ctx, const rm_augment *a)
{
    if (!a)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: NULL argument");
    if ((a->flips != 0 && a->flips != 1) || (a->rotations != 0 && a->rotations != 1))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'flips' and 'rotations' must be 0 or 1");
    if (!(a->jitter >= 0.0f && a->jitter < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'jitter' must be in [0, 1), not %g", (double)a->jitter);
    if (!(a->blur >= 0.0f && a->blur <= 16.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'blur' must be in [0, 16] voxels, not %g", (double)a->blur);
    if (!(a->gamma >= 0.0f && a->gamma <= 4.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'gamma' must be in [0, 4], not %g", (double)a->gamma);
    if (!(a->contrast >= 0.0f && a->contrast < 1.0f))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'contrast' must be in [0, 1), not %g", (double)a->contrast);
    if (!(a->illumination >= 0.0f && isfinite(a->illumination)))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'illumination' must be finite, 0 or more, not %g",
                       (double)a->illumination);
    if (!(a->brightness >= 0.0f && isfinite(a->brightness)))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'brightness' must be finite, 0 or more, not %g",
                       (double)a->brightness);
    if (!(a->noise >= 0.0f && isfinite(a->noise)))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'noise' must be finite, 0 or more, not %g", (double)a->noise);
    if (a->depth_shift < 0 || a->depth_shift > 1024)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "augment: 'depth_shift' must be in [0, 1024] layers, not %lld",
                       (long long)a->depth_shift);
    return RM_OK;
}

/* One pass of a 1D Gaussian along X (step 1, n = X) or Y (step X, n = Y) of a plane: out = Σ_k w_k·in[i + k], the
 * terms beyond the plane left out. */
static void gaussian_pass(const float *in, float *out, const float *w, int64_t r, int64_t rows, int64_t n, int64_t step,
                          int64_t row_step)
{
    for (int64_t j = 0; j < rows; j++)
        for (int64_t i = 0; i < n; i++) {
            const int64_t lo = i - r < 0 ? -i : -r, hi = i + r >= n ? n - 1 - i : r;
            float s = 0.0f;
            for (int64_t k = lo; k <= hi; k++)
                s += w[k + r] * in[j * row_step + (i + k) * step];
            out[j * row_step + i * step] = s;
        }
}

/* A Gaussian blur in Y and X of every layer, normalized over the inside voxels (Σ w·x·inside / Σ w·inside), so that
 * padding and the patch's edges do not darken the voxels next to them. Separable: numerator and denominator are
 * each two 1D passes. */
static void blur_in_plane(float sigma, const int64_t P[3], const uint8_t *inside, float *x, float *scratch)
{
    const int64_t r = (int64_t)ceil(3.0 * sigma), plane = P[1] * P[2];
    if (r < 1)
        return;
    float w[2 * 48 + 1]; /* r ≤ 3·16 (rm_augment_validate) */
    for (int64_t k = -r; k <= r; k++)
        w[k + r] = (float)exp(-0.5 * (double)(k * k) / ((double)sigma * sigma));
    float *num = scratch, *den = scratch + plane, *tmp = scratch + 2 * plane;
    for (int64_t z = 0; z < P[0]; z++) {
        float *xz = x + z * plane;
        const uint8_t *in = inside + z * plane;
        for (int64_t i = 0; i < plane; i++)
            num[i] = in[i] ? xz[i] : 0.0f;
        gaussian_pass(num, tmp, w, r, P[1], P[2], 1, P[2]);
        gaussian_pass(tmp, num, w, r, P[2], P[1], P[2], 1);
        for (int64_t i = 0; i < plane; i++)
            den[i] = in[i] ? 1.0f : 0.0f;
        gaussian_pass(den, tmp, w, r, P[1], P[2], 1, P[2]);
        gaussian_pass(tmp, den, w, r, P[2], P[1], P[2], 1);
        for (int64_t i = 0; i < plane; i++)
            if (in[i])
                xz[i] = num[i] / den[i]; /* den ≥ w_0 = 1: the voxel itself is inside */
    }
}

/* The range [lo, hi] of the inside voxels mapped onto itself by t ↦ t^γ; a constant sample is left as it is. */
static void gamma_on_range(float gamma, int64_t n, const uint8_t *inside, float *x)
{
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (inside[i]) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
        }
    if (!(hi > lo))
        return;
    const double range = (double)hi - lo;
    for (int64_t i = 0; i < n; i++)
        if (inside[i])
            x[i] = (float)(lo + range * pow(((double)x[i] - lo) / range, gamma));
}

/* x ← m + c·(x − m) around the inside voxels' mean m. */
static void contrast_around_mean(float c, int64_t n, const uint8_t *inside, float *x)
{
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++)
        if (inside[i]) {
            sum += x[i];
            count++;
        }
    if (count == 0)
        return;
    const double m = sum / (double)count;
    for (int64_t i = 0; i < n; i++)
        if (inside[i])
            x[i] = (float)(m + c * ((double)x[i] - m));
}

/* x ← x + a·(cos φ·v + sin φ·u), v and u from −1 to 1 across the patch in Y and X. */
static void illumination_ramp(float a, float angle, const int64_t P[3], const uint8_t *inside, float *x)
{
    const double cy = cos(angle) * a, cx = sin(angle) * a;
    for (int64_t z = 0; z < P[0]; z++)
        for (int64_t y = 0; y < P[1]; y++)
            for (int64_t c = 0; c < P[2]; c++) {
                const int64_t i = (z * P[1] + y) * P[2] + c;
                if (inside[i])
                    x[i] = (float)(x[i] + cy * (2.0 * (double)y / (double)(P[1] - 1) - 1.0) +
                                   cx * (2.0 * (double)c / (double)(P[2] - 1) - 1.0));
            }
}

void rm_augment_intensity(const rm_augment_draw *d, const int64_t P[3], const uint8_t *inside, float *x, float *scratch)
{
    const int64_t n = P[0] * P[1] * P[2];
    if (d->blur > 0.0f)
        blur_in_plane(d->blur, P, inside, x, scratch);
    if (d->gamma != 1.0f)
        gamma_on_range(d->gamma, n, inside, x);
    if (d->contrast != 1.0f)
        contrast_around_mean(d->contrast, n, inside, x);
    if (d->illumination != 0.0f)
        illumination_ramp(d->illumination, d->angle, P, inside, x);
    if (d->brightness != 0.0f)
        for (int64_t i = 0; i < n; i++)
            if (inside[i])
                x[i] += d->brightness;
}
