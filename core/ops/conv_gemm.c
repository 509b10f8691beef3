/* The convolution engine on OpenBLAS: SGEMM over im2col tiles small enough to stay in cache.
 *
 * Stride 1, the plane path: input plane z' reaches output planes z = z' + pad_d - a through the kd depth taps a.
 * So one GEMM per input plane multiplies the im2col of only its in-plane taps (rows (i, b, c): kd times less
 * gathering than the 3D im2col) by all depth taps of the weight at once: M = kd·co rows instead of co, which is
 * what makes a GEMM with few output channels fast. The depth taps are stacked in reverse, so the product's rows
 * fall on consecutive output planes of a tile kept as (z, o) rows, and the GEMM accumulates straight into it. The
 * weight gradient is the same product turned around (dy's (z, o) rows times the in-plane im2col transposed), and
 * the data gradient is the forward convolution of dy with the mirrored, transposed kernel.
 *
 * Stride 1 with kd·co below RM_THIN_ROWS (the final layer's single output channel), the thin path: too few GEMM rows
 * to pay for gathering, so a direct loop over a zero-padded copy of each input plane, without BLAS.
 *
 * Other strides, the 3D path: for each sample and tile of output voxels, the im2col rows of a group of input
 * channels are gathered and multiplied by the matching weight columns; the weight gradient sums such products, and
 * the data gradient is a GEMM into im2col form scattered back (col2im) per channel group.
 *
 * Threads: OpenMP splits the independent items; OpenBLAS (its OpenMP build) sees a one-thread ICV inside our
 * regions and runs in the calling thread. Tile, block and band sizes depend on the shapes only, never on the thread
 * count, and every sum runs inside one item in a fixed order, so each result element is produced by the same
 * operations whatever the number of threads: bit-identical output.
 */
#include "ops/conv_engine.h"
#include "ops/direct/conv_direct.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

const char *rm_blas_core(void) { return openblas_get_corename(); }

enum {
    RM_COL_FLOATS = 1 << 17, /* im2col rows per thread at most 512 KiB: half of this processor's L2 */
    RM_PLANE_TILE = 256,     /* in-plane positions per plane-path GEMM */
    RM_PLANE_BLOCK = 64,     /* output channels per forward item (k·64 GEMM rows) */
    RM_PLANE_BAND = 512,     /* weight-gradient columns per item at most */
    RM_TILE_FWD = 512,       /* 3D path: output voxels per forward GEMM */
    RM_TILE_BWD = 1024,      /* 3D path: voxels per weight-gradient GEMM (its reduction dimension) */
    RM_BWD_ROWS = 64,        /* 3D path: weight-gradient columns per parallel item */
    RM_SCATTER_GROUPS = 8,   /* 3D path: channel groups of the data gradient */
    RM_THIN_ROWS = 16,       /* the thin path below this many plane-path GEMM rows (k·co) */
};

static int64_t vol3(const int64_t d[3])
{
    return d[0] * d[1] * d[2];
}
/* The size of the fewest equal parts of n that are at most `most` each (the last may be smaller). */
static int64_t even_part(int64_t n, int64_t most)
{
    return rm_ceil_div(n, rm_ceil_div(n, most));
}

/* Moves data between sample image `img` (ci, in) and rows [r0, r1) of the 3D im2col matrix for output voxels
 * [t0, t0 + nt). Row r is input channel r / (kd·k²) at tap (a, b, c), the remainder in that order, and column j
 * holds what the tap reads for output voxel t0 + j = (z, y, x): input (z·sd + a - pad_d, y·s + b - pad,
 * x·s + c - pad). Gathering writes col (zero where the tap falls outside the image); scattering adds col into img.
 * One walker for both directions keeps their index arithmetic identical. */
static void col_transfer(const rm_conv_geom *g, float *img, int64_t r0, int64_t r1, int64_t t0, int64_t nt, float *col,
                         int scatter)
{
    const int k = g->k, s = g->s, pad = g->pad;
    const int64_t taps = rm_conv_taps(g), D = g->in[0], H = g->in[1], W = g->in[2];
    const int64_t Ho = g->out[1], Wo = g->out[2];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t tap = r % taps;
        const int a = (int)(tap / (k * k)), b = (int)(tap / k % k), c = (int)(tap % k);
        float *plane = img + r / taps * D * H * W;
        float *seg = col + (r - r0) * nt;
        for (int64_t t = t0, end = t0 + nt; t < end;) {
            const int64_t line = t / Wo, ox0 = t % Wo, ox1 = rm_min64(Wo, ox0 + (end - t)), len = ox1 - ox0;
            const int64_t iz = line / Ho * g->sd + a - g->pad_d, iy = line % Ho * s + b - pad;
            if (iz < 0 || iz >= D || iy < 0 || iy >= H) {
                if (!scatter)
                    memset(seg, 0, (size_t)len * sizeof(float));
            } else if (s == 1) {
                /* ix = ox + c - pad lies in [0, W) exactly for ox in [lo, hi). */
                const int64_t lo = rm_clamp64(pad - c, ox0, ox1), hi = rm_clamp64(W + pad - c, lo, ox1);
                float *src = plane + (iz * H + iy) * W + c - pad;
                if (scatter) {
                    for (int64_t ox = lo; ox < hi; ox++)
                        src[ox] += seg[ox - ox0];
                } else {
                    memset(seg, 0, (size_t)(lo - ox0) * sizeof(float));
                    memcpy(seg + (lo - ox0), src + lo, (size_t)(hi - lo) * sizeof(float));
                    memset(seg + (hi - ox0), 0, (size_t)(ox1 - hi) * sizeof(float));
                }
            } else {
                float *src = plane + (iz * H + iy) * W;
                for (int64_t ox = ox0; ox < ox1; ox++) {
                    const int64_t ix = ox * s + c - pad;
                    const int inside = ix >= 0 && ix < W;
                    if (scatter && inside)
                        src[ix] += seg[ox - ox0];
                    else if (!scatter)
                        seg[ox - ox0] = inside ? src[ix] : 0.0f;
                }
            }
            seg += len;
            t += len;
        }
    }
}

/* ---- the plane path (stride 1) ------------------------------------------------------------------------------- */

/* Floats of the padded line plane_gather works in: output positions plus the kernel's reach, whole lines. */
static size_t plane_line_floats(const rm_conv_geom *g)
{
    return rm_work_floats(g->out[2] + g->k - 1);
}

/* Gathers rows [r0, r1) of the in-plane im2col of input plane zi of sample image `img` (ci, in), for in-plane
 * output positions [t0, t0 + nt): row r is input channel r / k² at tap (b, c), and column j reads input
 * (zi, y + b - pad, x + c - pad) for position t0 + j = (y, x), zero outside the image. Each input line is copied
 * once into `pline` with its zero padding around it, and the k taps c of the line are then plain copies out of it:
 * the padding costs no per-segment zeroing and the loops no divisions. pline holds plane_line_floats(g) floats. */
static void plane_gather(const rm_conv_geom *g, int64_t zi, const float *img, int64_t r0, int64_t r1, int64_t t0,
                         int64_t nt, float *col, float *pline)
{
    const int k = g->k, pad = g->pad;
    const int64_t k2 = (int64_t)k * k, H = g->in[1], W = g->in[2], Wo = g->out[2], span = Wo + k - 1;
    const int64_t copied = rm_clamp64(span - pad, 0, W); /* input floats of a line that some tap reads */
    memset(pline, 0, (size_t)span * sizeof(float));
    for (int64_t r = r0; r < r1;) {
        const int64_t i = r / k2, b = r % k2 / k, c0 = r % k, c1 = rm_min64(k, c0 + r1 - r);
        const float *plane = img + (i * g->in[0] + zi) * H * W;
        float *row = col + (r - r0) * nt;
        for (int64_t t = t0, end = t0 + nt, line = t0 / Wo, ox0 = t0 % Wo; t < end; line++, ox0 = 0) {
            const int64_t len = rm_min64(Wo - ox0, end - t), iy = line + b - pad, j = t - t0;
            if (iy < 0 || iy >= H) {
                for (int64_t c = c0; c < c1; c++)
                    memset(row + (c - c0) * nt + j, 0, (size_t)len * sizeof(float));
            } else {
                memcpy(pline + pad, plane + iy * W, (size_t)copied * sizeof(float));
                for (int64_t c = c0; c < c1; c++)
                    memcpy(row + (c - c0) * nt + j, pline + ox0 + c, (size_t)len * sizeof(float));
            }
            t += len;
        }
        r += c1 - c0;
    }
}

/* Moves the kernel (co, ci, kd, k, k) of g to or from the plane path's weight matrix: for each block of `block`
 * output channels, rows (a', o) by columns (i, b, c), where a' = kd-1-a reverses the depth tap so that consecutive
 * rows land on consecutive output planes. `mirrored`: the kernel is stored as its adjoint's (ci, co, kd, k, k) with
 * the taps reversed, as the data gradient's convolution has it. */
static void weight_transfer(const rm_conv_geom *g, int nth, float *kernel, int mirrored, float *mat, int64_t block,
                            int to_kernel)
{
    const int64_t kd = g->kd, k2 = (int64_t)g->k * g->k, taps = rm_conv_taps(g), ci = g->ci, co = g->co;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t o = 0; o < co; o++) {
        const int64_t o0 = o / block * block, nb = rm_min64(block, co - o0);
        for (int64_t i = 0; i < ci; i++)
            for (int64_t a = 0; a < kd; a++) {
                /* The k² in-plane taps of depth tap a lie together on both sides (reversed in a mirrored kernel). */
                float *kv =
                    mirrored ? kernel + (i * co + o) * taps + taps - 1 - a * k2 : kernel + (o * ci + i) * taps + a * k2;
                float *mv = mat + (o0 * kd + (kd - 1 - a) * nb + o - o0) * ci * k2 + i * k2;
                for (int64_t bc = 0; bc < k2; bc++) {
                    float *kt = mirrored ? kv - bc : kv + bc;
                    if (to_kernel)
                        *kt = mv[bc];
                    else
                        mv[bc] = *kt;
                }
            }
    }
}

/* Moves one sample's channels [o0, o0 + nb) at in-plane positions [p0, p0 + np) between a volume (co, out) and a
 * tile of (z, o) rows: dy into the weight gradient's tile, the finished forward tile out. */
static void tile_transfer(const rm_conv_geom *g, float *vol, int64_t o0, int64_t nb, int64_t p0, int64_t np,
                          float *tile, int to_tile)
{
    const int64_t plane = g->out[1] * g->out[2], vout = vol3(g->out);
    for (int64_t z = 0; z < g->out[0]; z++)
        for (int64_t o = 0; o < nb; o++) {
            float *v = vol + (o0 + o) * vout + z * plane + p0, *t = tile + (z * nb + o) * np;
            memcpy(to_tile ? t : v, to_tile ? v : t, (size_t)np * sizeof(float));
        }
}

/* Input planes [0, this) reach some output plane. */
static int64_t plane_inputs(const rm_conv_geom *g)
{
    return rm_min64(g->in[0], g->out[0] + g->kd - 1 - g->pad_d);
}

/* The output planes [*z0, *z1) that input plane zi < plane_inputs(g) reaches (at least one); the first through
 * reversed depth tap *a0. */
static void reached_planes(const rm_conv_geom *g, int64_t zi, int64_t *z0, int64_t *z1, int64_t *a0)
{
    const int64_t top = zi + g->pad_d - (g->kd - 1); /* the plane reversed tap 0 would reach */
    *z0 = rm_max64(0, top);
    *z1 = rm_min64(g->out[0], zi + g->pad_d + 1);
    *a0 = *z0 - top;
}

static int64_t plane_tile(const rm_conv_geom *g)
{
    return even_part(g->out[1] * g->out[2], RM_PLANE_TILE);
}

/* Input channels per in-plane im2col group: as many as fit RM_COL_FLOATS for one tile, in equal groups. */
static int64_t plane_channel_group(const rm_conv_geom *g)
{
    return even_part(g->ci, rm_clamp64(RM_COL_FLOATS / ((int64_t)g->k * g->k * plane_tile(g)), 1, g->ci));
}

/* Output channels per forward item: equal blocks of at most RM_PLANE_BLOCK, and at least two when the plane is a
 * single tile, so that small planes give parallel items too. */
static int64_t plane_out_block(const rm_conv_geom *g)
{
    const int one_tile = g->out[1] * g->out[2] <= RM_PLANE_TILE;
    return even_part(g->co, one_tile ? rm_min64(RM_PLANE_BLOCK, rm_ceil_div(g->co, 2)) : RM_PLANE_BLOCK);
}

/* Items are (sample, block of output channels, tile of in-plane positions) and cover all depths: each output
 * element starts at its bias and adds the input planes in order, channel groups in order within each. */
static rm_status forward_planes(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, int mirrored,
                                const float *b, float *y)
{
    const int nth = ctx->n_threads;
    const int64_t k2 = (int64_t)g->k * g->k, K = g->ci * k2, vin = vol3(g->in), vout = vol3(g->out);
    const int64_t plane = g->out[1] * g->out[2], tile = plane_tile(g), ntiles = rm_ceil_div(plane, tile);
    const int64_t block = plane_out_block(g), nblocks = rm_ceil_div(g->co, block);
    const int64_t group = plane_channel_group(g), nzi = plane_inputs(g);
    /* The weight matrix, then per thread an im2col group and an accumulator of (z, o) rows. */
    const size_t mat_floats = rm_work_floats(g->co * K * g->kd), col_floats = rm_work_floats(group * k2 * tile);
    const size_t acc_floats = rm_work_floats(g->out[0] * block * tile);
    const size_t per_thread = col_floats + acc_floats + plane_line_floats(g);
    float *ws = rm_ctx_workspace(ctx, (mat_floats + (size_t)nth * per_thread) * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
    weight_transfer(g, nth, (float *)w, mirrored, ws, block, 0);
#pragma omp parallel num_threads(nth)
    {
        omp_set_num_threads(1); /* OpenBLAS: run in this thread */
        float *col = ws + mat_floats + (size_t)omp_get_thread_num() * per_thread, *acc = col + col_floats;
        float *pline = acc + acc_floats;
#pragma omp for schedule(static)
        for (int64_t item = 0; item < g->n * nblocks * ntiles; item++) {
            const int64_t n = item / (nblocks * ntiles), o0 = item / ntiles % nblocks * block;
            const int64_t nb = rm_min64(block, g->co - o0), p0 = item % ntiles * tile, np = rm_min64(tile, plane - p0);
            const float *wb = ws + o0 * g->kd * K; /* this block's rows (a', o) */
            for (int64_t row = 0; row < g->out[0] * nb; row++)
                for (int64_t j = 0; j < np; j++)
                    acc[row * np + j] = b ? b[o0 + row % nb] : 0.0f;
            for (int64_t zi = 0; zi < nzi; zi++) {
                int64_t z0, z1, a0;
                reached_planes(g, zi, &z0, &z1, &a0);
                for (int64_t c0 = 0; c0 < g->ci; c0 += group) {
                    const int64_t c1 = rm_min64(g->ci, c0 + group);
                    plane_gather(g, zi, x + n * g->ci * vin, c0 * k2, c1 * k2, p0, np, col, pline);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)((z1 - z0) * nb), (int)np,
                                (int)((c1 - c0) * k2), 1.0f, wb + a0 * nb * K + c0 * k2, (int)K, col, (int)np, 1.0f,
                                acc + z0 * nb * np, (int)np);
                }
            }
            tile_transfer(g, y + n * g->co * vout, o0, nb, p0, np, acc, 0);
        }
    }
    return RM_OK;
}

/* ---- the thin path (stride 1, few channels on one side) ------------------------------------------------------- */

/* The plane path's GEMM uses each gathered column for its kd·co rows only: with one output channel (the final layer)
 * that is kd, and the gathering and packing cost more than the arithmetic. Such convolutions are computed directly. */
static int thin(const rm_conv_geom *g)
{
    return g->kd * g->co < RM_THIN_ROWS;
}

/* y[p] += Σ_c wt[c]·x[p + c] for p < n, the taps added in order c = 0, 1, …; k = 5 spelled out for the compiler.
 * Fused multiply-adds: one rounding per tap on every path, in hardware where the processor has FMA. */
RM_MULTIVERSION static void row_taps(float *restrict y, const float *restrict x, const float *restrict wt, int k,
                                     int64_t n)
{
    if (k == 5) {
        const float w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3], w4 = wt[4];
        for (int64_t p = 0; p < n; p++)
            y[p] = fmaf(w4, x[p + 4], fmaf(w3, x[p + 3], fmaf(w2, x[p + 2], fmaf(w1, x[p + 1], fmaf(w0, x[p], y[p])))));
        return;
    }
    for (int c = 0; c < k; c++)
        for (int64_t p = 0; p < n; p++)
            y[p] = fmaf(wt[c], x[p + c], y[p]);
}

/* Items are (sample, output plane). An input plane is copied into a zero-padded plane of Ho + k - 1 rows of
 * Wp = Wo + k - 1, so that tap (b, c) of every output position (y, x) reads at one offset b·Wp + c from (y, x): the
 * output plane is computed on rows of Wp (the last k - 1 positions of each row are discarded) in one long loop per
 * input channel, depth tap, height tap and output channel, starting at the bias, in that order. */
static rm_status forward_thin(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, int mirrored,
                              const float *b, float *y)
{
    const int nth = ctx->n_threads, k = g->k, pad = g->pad;
    const int64_t taps = rm_conv_taps(g), ci = g->ci, co = g->co, D = g->in[0], H = g->in[1], W = g->in[2];
    const int64_t Do = g->out[0], Ho = g->out[1], Wo = g->out[2], vout = Do * Ho * Wo;
    const int64_t Wp = Wo + k - 1, Hp = Ho + k - 1, grid = Ho * Wp, copied = rm_clamp64(Wp - pad, 0, W);
    const size_t wk_floats = rm_work_floats(ci * co * taps), padded_floats = rm_work_floats(Hp * Wp + k);
    const size_t per_thread = padded_floats + rm_work_floats(co * grid);
    float *ws = rm_ctx_workspace(ctx, (wk_floats + (size_t)nth * per_thread) * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
    /* The weights as (i, a, b, o, c): the taps one padded plane meets lie together. */
    for (int64_t o = 0; o < co; o++)
        for (int64_t i = 0; i < ci; i++)
            for (int64_t tap = 0; tap < taps; tap++)
                ws[(i * taps + tap - tap % k) * co + o * k + tap % k] =
                    mirrored ? w[(i * co + o) * taps + taps - 1 - tap] : w[(o * ci + i) * taps + tap];
#pragma omp parallel num_threads(nth)
    {
        float *padded = ws + wk_floats + (size_t)omp_get_thread_num() * per_thread, *acc = padded + padded_floats;
        memset(padded, 0, padded_floats * sizeof(float)); /* the zeros around the copied rows stay */
#pragma omp for schedule(static)
        for (int64_t item = 0; item < g->n * Do; item++) {
            const int64_t n = item / Do, z = item % Do;
            for (int64_t o = 0; o < co; o++)
                for (int64_t p = 0; p < grid; p++)
                    acc[o * grid + p] = b ? b[o] : 0.0f;
            for (int64_t i = 0; i < ci; i++)
                for (int64_t a = 0; a < g->kd; a++) {
                    const int64_t iz = z + a - g->pad_d;
                    if (iz < 0 || iz >= D)
                        continue;
                    const float *src = x + ((n * ci + i) * D + iz) * H * W;
                    for (int64_t r = 0; r < Hp; r++) {
                        const int64_t iy = r - pad;
                        if (iy >= 0 && iy < H)
                            memcpy(padded + r * Wp + pad, src + iy * W, (size_t)copied * sizeof(float));
                    }
                    for (int64_t bb = 0; bb < k; bb++) {
                        const float *wt = ws + (i * taps + (a * k + bb) * k) * co;
                        for (int64_t o = 0; o < co; o++)
                            row_taps(acc + o * grid, padded + bb * Wp, wt + o * k, k, grid);
                    }
                }
            for (int64_t o = 0; o < co; o++)
                for (int64_t oy = 0; oy < Ho; oy++)
                    memcpy(y + (n * co + o) * vout + (z * Ho + oy) * Wo, acc + o * grid + oy * Wp,
                           (size_t)Wo * sizeof(float));
        }
    }
    return RM_OK;
}

/* Weight-gradient columns per item: equal bands of at most RM_PLANE_BAND, at least two and a power of two in
 * number, so that they share out evenly between two or four cores. */
static int64_t plane_band(const rm_conv_geom *g)
{
    const int64_t K = g->ci * g->k * g->k;
    int64_t nbands = 2;
    while (K > nbands * RM_PLANE_BAND)
        nbands *= 2;
    return rm_ceil_div(K, nbands);
}

/* dw2[(a', o), r] = Σ_n Σ_z' Σ_p dy[n, o, z' + pad_d - a, p] col_z'[r, p] with a = kd-1-a': each item owns a band of
 * columns r = (i, b, c) and walks every sample, tile and input plane in order. */
static rm_status backward_weight_planes(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *dy, float *dw)
{
    const int nth = ctx->n_threads;
    const int64_t K = g->ci * g->k * g->k, co = g->co, vin = vol3(g->in), vout = vol3(g->out);
    const int64_t plane = g->out[1] * g->out[2], tile = plane_tile(g), band = plane_band(g), nzi = plane_inputs(g);
    /* The gradient's matrix, then per thread an im2col band and dy's tile as (z, o) rows. */
    const size_t mat_floats = rm_work_floats(co * K * g->kd), col_floats = rm_work_floats(band * tile);
    const size_t dyt_floats = rm_work_floats(g->out[0] * co * tile),
                 per_thread = col_floats + dyt_floats + plane_line_floats(g);
    float *ws = rm_ctx_workspace(ctx, (mat_floats + (size_t)nth * per_thread) * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
#pragma omp parallel num_threads(nth)
    {
        omp_set_num_threads(1);
        float *col = ws + mat_floats + (size_t)omp_get_thread_num() * per_thread, *dyt = col + col_floats;
        float *pline = dyt + dyt_floats;
#pragma omp for schedule(static)
        for (int64_t item = 0; item < rm_ceil_div(K, band); item++) {
            const int64_t r0 = item * band, r1 = rm_min64(K, r0 + band);
            for (int64_t row = 0; row < g->kd * co; row++)
                memset(ws + row * K + r0, 0, (size_t)(r1 - r0) * sizeof(float));
            for (int64_t n = 0; n < g->n; n++)
                for (int64_t p0 = 0; p0 < plane; p0 += tile) {
                    const int64_t np = rm_min64(tile, plane - p0);
                    tile_transfer(g, (float *)(dy + n * co * vout), 0, co, p0, np, dyt, 1);
                    for (int64_t zi = 0; zi < nzi; zi++) {
                        int64_t z0, z1, a0;
                        reached_planes(g, zi, &z0, &z1, &a0);
                        plane_gather(g, zi, x + n * g->ci * vin, r0, r1, p0, np, col, pline);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)((z1 - z0) * co), (int)(r1 - r0),
                                    (int)np, 1.0f, dyt + z0 * co * np, (int)np, col, (int)np, 1.0f,
                                    ws + a0 * co * K + r0, (int)K);
                    }
                }
        }
    }
    weight_transfer(g, nth, dw, 0, ws, co, 1);
    return RM_OK;
}

/* ---- the 3D path (other strides) ----------------------------------------------------------------------------- */

/* One call of the 3D path: what its items read and write, and how they are cut. */
typedef struct job_3d {
    const rm_conv_geom *g;
    const float *x, *w, *b, *dy;
    float *out; /* y, dx or dw */
    int64_t group, ntiles;
} job_3d;

typedef void (*item_3d_fn)(const job_3d *j, int64_t item, float *col);

/* Runs fn(j, item, col) for items [0, nitems) over the context's threads, each thread with its own im2col buffer of
 * col_floats in the workspace and OpenBLAS running inside it. */
static rm_status run_3d(rm_ctx *ctx, const job_3d *j, int64_t nitems, size_t col_floats, item_3d_fn fn)
{
    const int nth = ctx->n_threads;
    float *ws = rm_ctx_workspace(ctx, (size_t)nth * col_floats * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
#pragma omp parallel num_threads(nth)
    {
        omp_set_num_threads(1);
        float *col = ws + (size_t)omp_get_thread_num() * col_floats;
#pragma omp for schedule(static)
        for (int64_t item = 0; item < nitems; item++)
            fn(j, item, col);
    }
    return RM_OK;
}

/* Input channels per im2col group: as many as RM_COL_FLOATS holds, and at most a `parts`-th of them. */
static int64_t col_group(const rm_conv_geom *g, int64_t parts)
{
    return rm_clamp64(rm_min64(rm_ceil_div(g->ci, parts), RM_COL_FLOATS / (rm_conv_taps(g) * RM_TILE_FWD)), 1, g->ci);
}

/* Items are (sample, tile of output voxels); each output element starts at its bias and adds the channel groups
 * in order. */
static void forward_3d_item(const job_3d *j, int64_t item, float *col)
{
    const rm_conv_geom *g = j->g;
    const float *x = j->x, *w = j->w, *b = j->b;
    const int64_t taps = rm_conv_taps(g), K = g->ci * taps, vin = vol3(g->in), vout = vol3(g->out);
    const int64_t n = item / j->ntiles, t0 = item % j->ntiles * RM_TILE_FWD, nt = rm_min64(RM_TILE_FWD, vout - t0);
    float *yt = j->out + n * g->co * vout + t0;
    if (b)
        for (int64_t o = 0; o < g->co; o++)
            for (int64_t i = 0; i < nt; i++)
                yt[o * vout + i] = b[o];
    for (int64_t c0 = 0; c0 < g->ci; c0 += j->group) {
        const int64_t c1 = rm_min64(g->ci, c0 + j->group);
        col_transfer(g, (float *)(x + n * g->ci * vin), c0 * taps, c1 * taps, t0, nt, col, 0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->co, (int)nt, (int)((c1 - c0) * taps), 1.0f,
                    w + c0 * taps, (int)K, col, (int)nt, (b || c0 > 0) ? 1.0f : 0.0f, yt, (int)vout);
    }
}

static rm_status forward_3d(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, const float *b,
                            float *y)
{
    const job_3d j = {.g = g,
                      .x = x,
                      .w = w,
                      .b = b,
                      .out = y,
                      .group = col_group(g, 1),
                      .ntiles = rm_ceil_div(vol3(g->out), RM_TILE_FWD)};
    return run_3d(ctx, &j, g->n * j.ntiles, (size_t)(j.group * rm_conv_taps(g) * RM_TILE_FWD), forward_3d_item);
}

/* dcol = wᵀ·dy per tile, scattered back into dx. Items own whole input channels, so no two threads write the same
 * dx element, and each element sums its contributions in tile order then tap order. */
static void backward_data_3d_item(const job_3d *j, int64_t item, float *col)
{
    const rm_conv_geom *g = j->g;
    const int64_t taps = rm_conv_taps(g), K = g->ci * taps, vin = vol3(g->in), vout = vol3(g->out);
    const int64_t c0 = item * j->group, c1 = rm_min64(g->ci, c0 + j->group);
    for (int64_t n = 0; n < g->n; n++) {
        float *dxn = j->out + n * g->ci * vin;
        memset(dxn + c0 * vin, 0, (size_t)((c1 - c0) * vin) * sizeof(float));
        for (int64_t tile = 0; tile < j->ntiles; tile++) {
            const int64_t t0 = tile * RM_TILE_FWD, nt = rm_min64(RM_TILE_FWD, vout - t0);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)((c1 - c0) * taps), (int)nt, (int)g->co, 1.0f,
                        j->w + c0 * taps, (int)K, j->dy + n * g->co * vout + t0, (int)vout, 0.0f, col, (int)nt);
            col_transfer(g, dxn, c0 * taps, c1 * taps, t0, nt, col, 1);
        }
    }
}

static rm_status backward_data_3d(rm_ctx *ctx, const rm_conv_geom *g, const float *w, const float *dy, float *dx)
{
    const job_3d j = {.g = g,
                      .w = w,
                      .dy = dy,
                      .out = dx,
                      .group = col_group(g, RM_SCATTER_GROUPS),
                      .ntiles = rm_ceil_div(vol3(g->out), RM_TILE_FWD)};
    return run_3d(ctx, &j, rm_ceil_div(g->ci, j.group), (size_t)(j.group * rm_conv_taps(g) * RM_TILE_FWD),
                  backward_data_3d_item);
}

/* dw[o, r] = Σ_n Σ_t dy[n, o, t] col_n[r, t]: each item owns RM_BWD_ROWS columns r of dw and walks every sample
 * and tile in order, so no reduction is ever split between threads. */
static void backward_weight_3d_item(const job_3d *j, int64_t item, float *col)
{
    const rm_conv_geom *g = j->g;
    const int64_t K = g->ci * rm_conv_taps(g), vin = vol3(g->in), vout = vol3(g->out);
    const int64_t r0 = item * RM_BWD_ROWS, r1 = rm_min64(K, r0 + RM_BWD_ROWS);
    for (int64_t n = 0; n < g->n; n++) {
        for (int64_t tile = 0; tile < j->ntiles; tile++) {
            const int64_t t0 = tile * RM_TILE_BWD, nt = rm_min64(RM_TILE_BWD, vout - t0);
            const int first = n == 0 && tile == 0;
            col_transfer(g, (float *)(j->x + n * g->ci * vin), r0, r1, t0, nt, col, 0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->co, (int)(r1 - r0), (int)nt, 1.0f,
                        j->dy + n * g->co * vout + t0, (int)vout, col, (int)nt, first ? 0.0f : 1.0f, j->out + r0,
                        (int)K);
        }
    }
}

static rm_status backward_weight_3d(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *dy, float *dw)
{
    const job_3d j = {.g = g, .x = x, .dy = dy, .out = dw, .ntiles = rm_ceil_div(vol3(g->out), RM_TILE_BWD)};
    return run_3d(ctx, &j, rm_ceil_div(g->ci * rm_conv_taps(g), RM_BWD_ROWS), (size_t)RM_BWD_ROWS * RM_TILE_BWD,
                  backward_weight_3d_item);
}

/* ---- the engine ---------------------------------------------------------------------------------------------- */

/* A stride-1 forward, w stored as g's own kernel or (mirrored) as its adjoint's: the direct kernels where the context
 * and the shape allow them, else the thin or the plane path. */
static rm_status forward_stride1(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, int mirrored,
                                 const float *b, float *y)
{
    if (rm_conv_direct_suits(ctx, g))
        return rm_conv_direct_forward(ctx, g, x, w, mirrored, b, y);
    if (rm_conv_direct_suits_reduce(ctx, g))
        return rm_conv_direct_forward_reduce(ctx, g, x, w, mirrored, b, y);
    return thin(g) ? forward_thin(ctx, g, x, w, mirrored, b, y) : forward_planes(ctx, g, x, w, mirrored, b, y);
}

rm_status rm_conv_engine_forward(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, const float *b,
                                 float *y)
{
    if (rm_conv_stride1(g))
        return forward_stride1(ctx, g, x, w, 0, b, y);
    if (rm_conv_direct_suits_tiling(ctx, g, 0))
        return rm_conv_direct_tiling_forward(ctx, g, x, w, b, y);
    return forward_3d(ctx, g, x, w, b, y);
}

/* Stride 1: dx[i, p] = Σ_o Σ_tap w[o, i, tap] dy[o, p - tap + pad] is the convolution of dy with the kernel
 * wf[i, o, a, b, c] = w[o, i, kd-1-a, k-1-b, k-1-c] and padding kd-1-pad_d, k-1-pad. */
rm_status rm_conv_engine_backward_data(rm_ctx *ctx, const rm_conv_geom *g, const float *w, const float *dy, float *dx)
{
    if (!rm_conv_stride1(g))
        return rm_conv_direct_suits_tiling(ctx, g, 1) ? rm_conv_direct_tiling_backward_data(ctx, g, w, dy, dx)
                                                      : backward_data_3d(ctx, g, w, dy, dx);
    const rm_conv_geom t = {.n = g->n,
                            .ci = g->co,
                            .co = g->ci,
                            .in = {g->out[0], g->out[1], g->out[2]},
                            .out = {g->in[0], g->in[1], g->in[2]},
                            .k = g->k,
                            .s = 1,
                            .pad = g->k - 1 - g->pad,
                            .kd = g->kd,
                            .sd = 1,
                            .pad_d = g->kd - 1 - g->pad_d};
    return forward_stride1(ctx, &t, dy, w, 1, NULL, dx);
}

rm_status rm_conv_engine_backward_weight(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *dy, float *dw)
{
    if (rm_conv_direct_suits_weight(ctx, g))
        return rm_conv_direct_backward_weight(ctx, g, x, dy, dw);
    return rm_conv_stride1(g) ? backward_weight_planes(ctx, g, x, dy, dw) : backward_weight_3d(ctx, g, x, dy, dw);
}

int rm_conv_engine_packs(const rm_ctx *ctx, const rm_conv_geom *g)
{
    return rm_conv_direct_suits(ctx, g) && rm_conv_direct_packed_numel(g) == g->co * g->ci * rm_conv_taps(g);
}

void rm_conv_engine_pack(const rm_conv_geom *g, int nth, const float *w, float *packed)
{
    rm_conv_direct_pack(g, nth, w, packed);
}

void rm_conv_engine_unpack(const rm_conv_geom *g, int nth, const float *packed, float *w)
{
    rm_conv_direct_unpack(g, nth, packed, w);
}

rm_status rm_conv_engine_forward_packed(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *packed,
                                        const float *b, const rm_conv_act *act, float *y)
{
    if (rm_conv_direct_suits(ctx, g))
        return rm_conv_direct_forward_packed(ctx, g, x, packed, b, act, y);
    float *w = rm_ctx_work(ctx, RM_WORK_UNPACKED, (size_t)(g->co * g->ci * rm_conv_taps(g)) * sizeof(float));
    if (!w)
        return RM_ERR_NOMEM;
    rm_conv_engine_unpack(g, ctx->n_threads, packed, w);
    RM_TRY(rm_conv_engine_forward(ctx, g, x, w, b, y));
    if (!act)
        return RM_OK;
    rm_tensor t = rm_tensor_5d(y, g->n, g->co, g->out[0], g->out[1], g->out[2]);
    return rm_activation_forward(ctx, act->kind, &t, act->bias, &t);
}
