/* SSIM, the structural similarity index (Wang, Bovik, Sheikh & Simoncelli 2004), in 3D (see include/repmode/metrics.h).
 *
 * Local means, variances and the covariance are Gaussian-weighted over a window of 11 taps per axis (σ = 1.5,
 * truncated at 3.5σ as scikit-image does), the variances without the sample correction (the paper's form); the
 * index is averaged over the voxels whose whole window lies inside the volume, so no border rule is needed. An axis
 * of length 1 has no window along it: a (1, H, W) image gets the 2D index.
 *
 * The filter is separable. Planes are filtered in height and width as they come, into a ring of the last 11
 * filtered planes, and each output plane is then the depth filter of the ring. Sums are in double (a variance is a
 * difference of two large terms when the intensities are far from zero), the SSIM of each output row is summed in
 * order, the rows in order, the planes in order: the result does not depend on the thread count.
 */
#include "volume/ssim.h"
#include "repmode/metrics.h"

#include <math.h>
#include <string.h>

enum {
    SSIM_RADIUS = 5, /* int(3.5·σ + 0.5) */
    SSIM_TAPS = 2 * SSIM_RADIUS + 1,
    SSIM_STATS = 5, /* E[p], E[t], E[p²], E[t²], E[p·t] */
};
#define SSIM_SIGMA 1.5
#define SSIM_K1 0.01
#define SSIM_K2 0.03

/* The normalized Gaussian weights of one axis. */
static void gaussian_taps(double w[SSIM_TAPS])
{
    double sum = 0.0;
    for (int i = 0; i < SSIM_TAPS; i++)
        sum += w[i] = exp(-(double)((i - SSIM_RADIUS) * (i - SSIM_RADIUS)) / (2.0 * SSIM_SIGMA * SSIM_SIGMA));
    for (int i = 0; i < SSIM_TAPS; i++)
        w[i] /= sum;
}

/* One volume's filtering: its sizes, each axis's window (11 taps, or 1 along an axis of length 1) and the output
 * sizes (the voxels whose window lies inside). */
typedef struct ssim_volume {
    const float *p, *t, *m; /* one volume of each, D·H·W; m may be NULL */
    int64_t d, h, w;
    int rd, rh, rw;     /* window radius per axis */
    int64_t od, oh, ow; /* output sizes */
    double taps[SSIM_TAPS];
    double c1, c2;
    double *row;  /* h · ow · SSIM_STATS: the width-filtered rows of one plane */
    double *ring; /* (2·rd + 1) planes of oh · ow · SSIM_STATS */
} ssim_volume;

/* The weight of tap i of an axis of radius r (r is 5 or 0). */
static double tap_weight(const ssim_volume *v, int r, int i)
{
    return r ? v->taps[i] : 1.0;
}

/* Filters plane z in width, then in height, into ring slot z mod (2·rd + 1). */
static void filter_plane(rm_ctx *ctx, ssim_volume *v, int64_t z)
{
    const float *p = v->p + z * v->h * v->w, *t = v->t + z * v->h * v->w;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t y = 0; y < v->h; y++)
        for (int64_t x = 0; x < v->ow; x++) {
            double s[SSIM_STATS] = {0};
            for (int c = 0; c <= 2 * v->rw; c++) {
                const double a = p[y * v->w + x + c], b = t[y * v->w + x + c], wt = tap_weight(v, v->rw, c);
                s[0] += wt * a;
                s[1] += wt * b;
                s[2] += wt * a * a;
                s[3] += wt * b * b;
                s[4] += wt * a * b;
            }
            memcpy(v->row + (y * v->ow + x) * SSIM_STATS, s, sizeof s);
        }
    double *slot = v->ring + z % (2 * v->rd + 1) * v->oh * v->ow * SSIM_STATS;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t y = 0; y < v->oh; y++)
        for (int64_t x = 0; x < v->ow; x++) {
            double s[SSIM_STATS] = {0};
            for (int b = 0; b <= 2 * v->rh; b++) {
                const double *r = v->row + ((y + b) * v->ow + x) * SSIM_STATS, wt = tap_weight(v, v->rh, b);
                for (int q = 0; q < SSIM_STATS; q++)
                    s[q] += wt * r[q];
            }
            memcpy(slot + (y * v->ow + x) * SSIM_STATS, s, sizeof s);
        }
}

/* The SSIM of output plane z (the ring holds input planes z .. z + 2·rd): its sum over the selected voxels and their
 * count, rows added in order. */
static void output_plane(rm_ctx *ctx, const ssim_volume *v, int64_t z, double *row_sums, int64_t *row_counts,
                         double *sum, int64_t *count)
{
    const int64_t slots = 2 * v->rd + 1, plane = v->oh * v->ow * SSIM_STATS;
#pragma omp parallel for num_threads(ctx->n_threads) schedule(static)
    for (int64_t y = 0; y < v->oh; y++) {
        double total = 0.0;
        int64_t n = 0;
        for (int64_t x = 0; x < v->ow; x++) {
            const int64_t centre = ((z + v->rd) * v->h + y + v->rh) * v->w + x + v->rw;
            if (v->m && !(v->m[centre] > 0.5f))
                continue;
            double s[SSIM_STATS] = {0};
            for (int a = 0; a < slots; a++) {
                const double *r = v->ring + (z + a) % slots * plane + (y * v->ow + x) * SSIM_STATS;
                const double wt = tap_weight(v, v->rd, a);
                for (int q = 0; q < SSIM_STATS; q++)
                    s[q] += wt * r[q];
            }
            const double mp = s[0], mt = s[1];
            const double vp = s[2] - mp * mp, vt = s[3] - mt * mt, cov = s[4] - mp * mt;
            total += (2.0 * mp * mt + v->c1) * (2.0 * cov + v->c2) / ((mp * mp + mt * mt + v->c1) * (vp + vt + v->c2));
            n++;
        }
        row_sums[y] = total;
        row_counts[y] = n;
    }
    for (int64_t y = 0; y < v->oh; y++) {
        *sum += row_sums[y];
        *count += row_counts[y];
    }
}

/* Every voxel a window reads must be finite, inside the mask or not. */
static rm_status check_finite(rm_ctx *ctx, const rm_tensor *x, const char *name)
{
    const rm_nonfinite_census census = rm_tensor_census(x);
    if (census.nonfinite)
        return rm_fail(ctx, RM_ERR_ARGUMENT,
                       "ssim: %s has %lld values that are not finite, the first at element %lld "
                       "(the windows read every voxel, inside the mask or not)",
                       name, (long long)census.nonfinite, (long long)census.first);
    return RM_OK;
}

/* The radius of an axis of length n: none for 1, else the window's (the axis may then be too short for it). */
static int axis_radius(int64_t n)
{
    return n == 1 ? 0 : SSIM_RADIUS;
}

rm_status rm_ssim_compute(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, const rm_tensor *mask,
                          double data_range, double *out)
{
    static const char what[] = "ssim";
    RM_TRY(rm_check_tensor(ctx, pred, "ssim: pred"));
    RM_TRY(rm_check_shape(ctx, target, "ssim: target", pred->ne));
    if (mask)
        RM_TRY(rm_check_shape(ctx, mask, "ssim: mask", pred->ne));
    if (!out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: out is NULL", what);
    if (!(data_range > 0.0) || !isfinite(data_range))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: the data range %g is not a positive number", what, data_range);
    RM_TRY(check_finite(ctx, pred, "pred"));
    RM_TRY(check_finite(ctx, target, "target"));
    return rm_ssim_checked(ctx, pred, target, mask, data_range, out);
}

rm_status rm_ssim_checked(rm_ctx *ctx, const rm_tensor *pred, const rm_tensor *target, const rm_tensor *mask,
                          double data_range, double *out)
{
    ssim_volume v = {.d = pred->ne[2], .h = pred->ne[3], .w = pred->ne[4]};
    v.rd = axis_radius(v.d);
    v.rh = axis_radius(v.h);
    v.rw = axis_radius(v.w);
    v.od = v.d - 2 * v.rd;
    v.oh = v.h - 2 * v.rh;
    v.ow = v.w - 2 * v.rw;
    if (v.od < 1 || v.oh < 1 || v.ow < 1) {
        *out = NAN; /* no window fits */
        return RM_OK;
    }
    gaussian_taps(v.taps);
    v.c1 = (SSIM_K1 * data_range) * (SSIM_K1 * data_range);
    v.c2 = (SSIM_K2 * data_range) * (SSIM_K2 * data_range);
    const size_t row_floats = (size_t)(v.h * v.ow * SSIM_STATS),
                 ring_floats = (size_t)((2 * v.rd + 1) * v.oh * v.ow * SSIM_STATS);
    double *mem =
        rm_malloc((row_floats + ring_floats + (size_t)v.oh) * sizeof(double) + (size_t)v.oh * sizeof(int64_t));
    if (!mem)
        return rm_fail(ctx, RM_ERR_NOMEM, "ssim: out of memory for the filtered planes");
    v.row = mem;
    v.ring = mem + row_floats;
    double *row_sums = v.ring + ring_floats;
    int64_t *row_counts = (int64_t *)(row_sums + v.oh);

    const int64_t volumes = pred->ne[0] * pred->ne[1], voxels = v.d * v.h * v.w;
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t k = 0; k < volumes; k++) {
        v.p = pred->data + k * voxels;
        v.t = target->data + k * voxels;
        v.m = mask ? mask->data + k * voxels : NULL;
        for (int64_t z = 0; z < v.d; z++) {
            filter_plane(ctx, &v, z);
            if (z >= 2 * v.rd)
                output_plane(ctx, &v, z - 2 * v.rd, row_sums, row_counts, &sum, &count);
        }
    }
    rm_dealloc(mem);
    *out = count ? sum / (double)count : NAN;
    return RM_OK;
}
