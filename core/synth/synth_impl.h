/* What the synthetic-data generators share: counter-based random numbers, smooth (value) noise, Gaussian blur by
 * separable passes, size checks and allocation.
 *
 * Every random number is a hash of a key (derived from the seed and a purpose) and a counter (a voxel index, a
 * lattice point, an object number), so a value never depends on which thread computes it or in which order.
 */
#ifndef REPMODE_SYNTH_IMPL_H
#define REPMODE_SYNTH_IMPL_H

#include "base/internal.h"
#include "base/rng.h"
#include "repmode/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- random numbers ------------------------------------------------------------------------------------------ */

/* The key of one purpose (`stream`) of one sample: unrelated keys for different seeds or streams. */
static inline uint64_t rm_sy_key(uint64_t seed, uint64_t stream)
{
    return rm_mix64(rm_mix64(seed + RM_GOLDEN) ^ rm_mix64(stream * UINT64_C(0xd1b54a32d192ed03) + 1));
}

/* Word number `i` of the key's sequence: splitmix64 at counter i. */
static inline uint64_t rm_sy_hash(uint64_t key, uint64_t i) { return rm_mix64(key + (i + 1) * RM_GOLDEN); }

static inline float rm_sy_uniform(uint64_t key, uint64_t i, float lo, float hi)
{
    return lo + (hi - lo) * rm_u01f(rm_sy_hash(key, i));
}

/* Standard normal (Box–Muller on the two 32-bit halves of one hash). */
static inline float rm_sy_normal(uint64_t key, uint64_t i)
{
    const uint64_t h = rm_sy_hash(key, i);
    const double u1 = ((double)(h >> 32) + 0.5) * 0x1p-32;
    const double u2 = (double)(h & 0xffffffffu) * 0x1p-32;
    return (float)rm_box_muller(u1, u2);
}

/* ---- small helpers ------------------------------------------------------------------------------------------- */

static inline float rm_sy_clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* 0 at e0, 1 at e1, smooth in between (e0 > e1 allowed: a falling step). */
static inline float rm_sy_smoothstep(float e0, float e1, float v)
{
    const float t = rm_sy_clampf((v - e0) / (e1 - e0), 0.0f, 1.0f);
    return t * t * (3.0f - 2.0f * t);
}

static inline int64_t rm_sy_clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- smooth noise -------------------------------------------------------------------------------------------- */

/* Value noise on the integer lattice: random values in [-1, 1) at lattice points, blended with the quintic fade
 * (continuous value, gradient and curvature). */
static inline float rm_sy_lattice(uint64_t key, int64_t ix, int64_t iy, int64_t iz)
{
    const uint64_t packed = ((uint64_t)ix & 0x1fffff) | (((uint64_t)iy & 0x1fffff) << 21) |
                            (((uint64_t)iz & 0x1fffff) << 42);
    return (float)(rm_sy_hash(key, packed) >> 40) * 0x1p-23f - 1.0f;
}

static inline float rm_sy_fade(float t) { return t * t * t * (t * (t * 6.0f - 15.0f) + 10.0f); }

static inline float rm_sy_lerp(float a, float b, float t) { return a + t * (b - a); }

static inline float rm_sy_value_noise(uint64_t key, float qx, float qy, float qz)
{
    const float fx = floorf(qx), fy = floorf(qy), fz = floorf(qz);
    const int64_t ix = (int64_t)fx, iy = (int64_t)fy, iz = (int64_t)fz;
    const float tx = rm_sy_fade(qx - fx), ty = rm_sy_fade(qy - fy), tz = rm_sy_fade(qz - fz);
    const float c000 = rm_sy_lattice(key, ix, iy, iz), c100 = rm_sy_lattice(key, ix + 1, iy, iz);
    const float c010 = rm_sy_lattice(key, ix, iy + 1, iz), c110 = rm_sy_lattice(key, ix + 1, iy + 1, iz);
    const float c001 = rm_sy_lattice(key, ix, iy, iz + 1), c101 = rm_sy_lattice(key, ix + 1, iy, iz + 1);
    const float c011 = rm_sy_lattice(key, ix, iy + 1, iz + 1), c111 = rm_sy_lattice(key, ix + 1, iy + 1, iz + 1);
    const float x00 = rm_sy_lerp(c000, c100, tx), x10 = rm_sy_lerp(c010, c110, tx);
    const float x01 = rm_sy_lerp(c001, c101, tx), x11 = rm_sy_lerp(c011, c111, tx);
    return rm_sy_lerp(rm_sy_lerp(x00, x10, ty), rm_sy_lerp(x01, x11, ty), tz);
}

/* A noise field: value noise at lattice coordinates q = A·p + o, where A rotates the point p = (x, y, z) and then
 * divides each rotated axis by its period (so a field can be stretched along a direction, e.g. fibres), and o is a
 * random offset (so fields of one sample do not share lattice points). */
typedef struct rm_sy_noise {
    uint64_t key;
    float a[9];
    float o[3];
} rm_sy_noise;

/* r: a row-major rotation, or NULL for none. */
static inline rm_sy_noise rm_sy_noise_make(uint64_t key, float px, float py, float pz, const float *r)
{
    static const float eye[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    if (!r)
        r = eye;
    rm_sy_noise n;
    n.key = key;
    const float inv[3] = {1.0f / px, 1.0f / py, 1.0f / pz};
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            n.a[3 * i + j] = r[3 * i + j] * inv[i];
        n.o[i] = rm_sy_uniform(key, UINT64_C(0xffffffff00) + (uint64_t)i, 0.0f, 1024.0f);
    }
    return n;
}

/* A rotation by `angle` (radians) in the X-Y plane. */
static inline void rm_sy_rotation_xy(float angle, float r[9])
{
    const float c = cosf(angle), s = sinf(angle);
    const float m[9] = {c, s, 0, -s, c, 0, 0, 0, 1};
    memcpy(r, m, sizeof m);
}

/* A uniformly random rotation (a random unit quaternion from four normals). */
static inline void rm_sy_rotation_random(uint64_t key, float r[9])
{
    double q[4], len = 0.0;
    for (int i = 0; i < 4; i++) {
        q[i] = rm_sy_normal(key, UINT64_C(0xfffffffe00) + (uint64_t)i);
        len += q[i] * q[i];
    }
    len = sqrt(len);
    if (len < 1e-9) {
        rm_sy_rotation_xy(0.0f, r);
        return;
    }
    const double w = q[0] / len, x = q[1] / len, y = q[2] / len, z = q[3] / len;
    const double m[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),
                         2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                         2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y)};
    for (int i = 0; i < 9; i++)
        r[i] = (float)m[i];
}

/* The field at p, in [-1, 1]. */
static inline float rm_sy_noise3(const rm_sy_noise *n, float x, float y, float z)
{
    const float qx = n->a[0] * x + n->a[1] * y + n->a[2] * z + n->o[0];
    const float qy = n->a[3] * x + n->a[4] * y + n->a[5] * z + n->o[1];
    const float qz = n->a[6] * x + n->a[7] * y + n->a[8] * z + n->o[2];
    return rm_sy_value_noise(n->key, qx, qy, qz);
}

/* Fractal sum of `octaves` octaves (each half the period and half the amplitude of the last), in [-1, 1]. */
static inline float rm_sy_fbm3(const rm_sy_noise *n, int octaves, float x, float y, float z)
{
    const float qx = n->a[0] * x + n->a[1] * y + n->a[2] * z + n->o[0];
    const float qy = n->a[3] * x + n->a[4] * y + n->a[5] * z + n->o[1];
    const float qz = n->a[6] * x + n->a[7] * y + n->a[8] * z + n->o[2];
    float sum = 0.0f, amp = 1.0f, norm = 0.0f, f = 1.0f;
    for (int k = 0; k < octaves; k++) {
        /* Each octave its own lattice values (a re-mixed key, not a shifted copy of the first octave's). */
        const uint64_t key = k == 0 ? n->key : rm_mix64(n->key ^ ((uint64_t)k * UINT64_C(0xd1b54a32d192ed03)));
        sum += amp * rm_sy_value_noise(key, qx * f, qy * f, qz * f);
        norm += amp;
        amp *= 0.5f;
        f *= 2.0f;
    }
    return sum / norm;
}

/* ---- Gaussian blur ------------------------------------------------------------------------------------------- */

#define RM_SY_MAX_RADIUS 24

/* A normalized Gaussian of standard deviation sigma (voxels) truncated at 3 sigma: k[0 .. 2r], returns r.
 * sigma <= 0 gives the identity (r = 0). */
static inline int rm_sy_gauss_kernel(float sigma, float k[2 * RM_SY_MAX_RADIUS + 1])
{
    if (!(sigma > 0.0f)) {
        k[0] = 1.0f;
        return 0;
    }
    int r = (int)ceilf(3.0f * sigma);
    if (r > RM_SY_MAX_RADIUS)
        r = RM_SY_MAX_RADIUS;
    double w[2 * RM_SY_MAX_RADIUS + 1], sum = 0.0;
    for (int i = -r; i <= r; i++) {
        w[i + r] = exp(-0.5 * (double)i * i / ((double)sigma * (double)sigma));
        sum += w[i + r];
    }
    for (int i = 0; i <= 2 * r; i++)
        k[i] = (float)(w[i] / sum);
    return r;
}

/* One pass along `axis` (0: D, 1: H, 2: W) of a (d, h, w) volume, in → out (distinct), edges replicated. Each
 * output row is summed in a fixed order by one thread: the result does not depend on the thread count. */
static inline void rm_sy_blur_pass(int n_threads, const float *in, float *out, int64_t d, int64_t h, int64_t w,
                                   int axis, float sigma)
{
    float k[2 * RM_SY_MAX_RADIUS + 1];
    const int r = rm_sy_gauss_kernel(sigma, k);
    const int64_t rows = d * h;
    #pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
        const int64_t z = row / h, y = row % h;
        float *o = out + row * w;
        if (axis == 2) {
            const float *src = in + row * w;
            for (int64_t x = 0; x < w; x++) {
                float acc = 0.0f;
                for (int j = -r; j <= r; j++)
                    acc += k[j + r] * src[rm_sy_clampi(x + j, 0, w - 1)];
                o[x] = acc;
            }
            continue;
        }
        for (int64_t x = 0; x < w; x++)
            o[x] = 0.0f;
        for (int j = -r; j <= r; j++) {
            const float *src = axis == 1 ? in + (z * h + rm_sy_clampi(y + j, 0, h - 1)) * w
                                         : in + (rm_sy_clampi(z + j, 0, d - 1) * h + y) * w;
            const float kj = k[j + r];
            for (int64_t x = 0; x < w; x++)
                o[x] += kj * src[x];
        }
    }
}

/* Blurs a (d, h, w) volume in place with standard deviations (sz, sy, sx) in voxels; tmp holds d·h·w floats. */
static inline void rm_sy_blur3(int n_threads, float *a, float *tmp, int64_t d, int64_t h, int64_t w, float sz,
                               float sy, float sx)
{
    rm_sy_blur_pass(n_threads, a, tmp, d, h, w, 2, sx);
    rm_sy_blur_pass(n_threads, tmp, a, d, h, w, 1, sy);
    rm_sy_blur_pass(n_threads, a, tmp, d, h, w, 0, sz);
    memcpy(a, tmp, (size_t)(d * h * w) * sizeof *a);
}

/* ---- sizes and memory ---------------------------------------------------------------------------------------- */

/* A generator's arguments: out not NULL, each of n[0..2] at least RM_SYNTH_MIN_SIZE and their product at most
 * RM_SYNTH_MAX_VOXELS. `what` names the generator, `names` the three sizes (e.g. "D", "H", "W"). */
static inline rm_status rm_sy_check_args(rm_ctx *ctx, const char *what, const void *out, const char *const names[3],
                                         const int64_t n[3])
{
    if (!out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: out is NULL", what);
    for (int i = 0; i < 3; i++)
        if (n[i] < RM_SYNTH_MIN_SIZE)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: size %s = %lld is below the minimum %d", what, names[i],
                           (long long)n[i], RM_SYNTH_MIN_SIZE);
    /* Multiplied step by step against the bound, so the product cannot overflow. */
    int64_t total = 1;
    for (int i = 0; i < 3; i++) {
        if (n[i] > RM_SYNTH_MAX_VOXELS / total)
            return rm_fail(ctx, RM_ERR_ARGUMENT,
                           "%s: size %s×%s×%s = %lld×%lld×%lld is more than the %lld voxels allowed", what, names[0],
                           names[1], names[2], (long long)n[0], (long long)n[1], (long long)n[2],
                           (long long)RM_SYNTH_MAX_VOXELS);
        total *= n[i];
    }
    return RM_OK;
}

/* malloc of n elements of `size` bytes (n > 0, already bounded by the size check). */
static inline void *rm_sy_alloc(int64_t n, size_t size) { return rm_malloc((size_t)n * size); }

/* The error of a sample of the checked size n[0..2] that cannot be allocated. */
static inline rm_status rm_sy_nomem(rm_ctx *ctx, const char *what, const int64_t n[3])
{
    return rm_fail(ctx, RM_ERR_NOMEM, "%s: cannot allocate a %lld×%lld×%lld sample", what, (long long)n[0],
                   (long long)n[1], (long long)n[2]);
}

#endif /* REPMODE_SYNTH_IMPL_H */
