/* The convolution engine on OpenBLAS: SGEMM over im2col tiles small enough to stay in cache.
 *
 * Forward: for each sample and each tile of output voxels, the im2col rows of a group of input channels are
 * gathered (never the whole volume's im2col) and multiplied by the matching weight columns, accumulating into the
 * output tile. Weight gradient: every parallel item owns a band of weight-gradient columns and sums over all
 * samples and tiles in a fixed order. Data gradient: for stride 1, a forward convolution of dy with the flipped,
 * transposed kernel; for larger strides, GEMM into im2col form and a scatter back (col2im) per channel group.
 *
 * Threads: OpenMP splits the independent items; OpenBLAS (its OpenMP build) sees a one-thread ICV inside our
 * regions and runs in the calling thread. Tile sizes are constants, never derived from the thread count, so each
 * result element is produced by the same operations whatever the number of threads: bit-identical output.
 */
#include "conv_engine.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

enum {
    RM_TILE_FWD = 512,       /* output voxels per forward GEMM */
    RM_TILE_BWD = 1024,      /* voxels per weight-gradient GEMM (its reduction dimension) */
    RM_COL_FLOATS = 1 << 17, /* im2col rows per thread at most 512 KiB: half of this processor's L2 */
    RM_BWD_ROWS = 64,        /* weight-gradient columns per parallel item */
    RM_SCATTER_GROUPS = 8,   /* channel groups of the strided data gradient */
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t vol3(const int64_t d[3]) { return d[0] * d[1] * d[2]; }
static int64_t cube(int k) { return (int64_t)k * k * k; }

/* Moves data between sample image `img` (ci, in) and rows [r0, r1) of its im2col matrix for output voxels
 * [t0, t0 + nt): row r is input channel r / k³ at kernel tap r % k³, column j what that tap reads for output
 * voxel t0 + j. Gathering writes col (zero where the tap falls outside the image); scattering adds col into img.
 * One walker for both directions keeps their index arithmetic identical. */
static void col_transfer(const rm_conv_geom *g, float *img, int64_t r0, int64_t r1, int64_t t0, int64_t nt,
                         float *col, int scatter)
{
    const int k = g->k, s = g->s, pad = g->pad;
    const int64_t k3 = cube(k), D = g->in[0], H = g->in[1], W = g->in[2];
    const int64_t Ho = g->out[1], Wo = g->out[2];
    for (int64_t r = r0; r < r1; r++) {
        const int64_t tap = r % k3;
        const int a = (int)(tap / (k * k)), b = (int)(tap / k % k), c = (int)(tap % k);
        float *plane = img + r / k3 * D * H * W;
        float *seg = col + (r - r0) * nt;
        for (int64_t t = t0, end = t0 + nt; t < end;) {
            const int64_t line = t / Wo, ox0 = t % Wo, ox1 = min64(Wo, ox0 + (end - t)), len = ox1 - ox0;
            const int64_t iz = line / Ho * s + a - pad, iy = line % Ho * s + b - pad;
            if (iz < 0 || iz >= D || iy < 0 || iy >= H) {
                if (!scatter)
                    memset(seg, 0, (size_t)len * sizeof(float));
            } else if (s == 1) {
                /* ix = ox + c - pad lies in [0, W) exactly for ox in [lo, hi). */
                const int64_t lo = clamp64(pad - c, ox0, ox1), hi = clamp64(W + pad - c, lo, ox1);
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

/* ---- forward ------------------------------------------------------------------------------------------------- */

/* Input channels per im2col group: as many as fit RM_COL_FLOATS for one tile. */
static int64_t forward_channel_group(const rm_conv_geom *g)
{
    return clamp64(RM_COL_FLOATS / (cube(g->k) * RM_TILE_FWD), 1, g->ci);
}

static size_t forward_workspace_floats(const rm_conv_geom *g, int nth)
{
    return (size_t)nth * (size_t)(forward_channel_group(g) * cube(g->k) * RM_TILE_FWD);
}

static void forward_with(const rm_conv_geom *g, int nth, const float *x, const float *w, const float *b, float *y,
                         float *ws)
{
    const int64_t k3 = cube(g->k), K = g->ci * k3, vin = vol3(g->in), vout = vol3(g->out);
    const int64_t group = forward_channel_group(g), ntiles = ceil_div(vout, RM_TILE_FWD);
    const size_t col_floats = (size_t)(group * k3 * RM_TILE_FWD);
#pragma omp parallel num_threads(nth)
    {
        omp_set_num_threads(1); /* OpenBLAS: run in this thread */
        float *col = ws + (size_t)omp_get_thread_num() * col_floats;
#pragma omp for schedule(static)
        for (int64_t item = 0; item < g->n * ntiles; item++) {
            const int64_t n = item / ntiles, t0 = item % ntiles * RM_TILE_FWD, nt = min64(RM_TILE_FWD, vout - t0);
            float *yt = y + n * g->co * vout + t0;
            if (b)
                for (int64_t o = 0; o < g->co; o++)
                    for (int64_t j = 0; j < nt; j++)
                        yt[o * vout + j] = b[o];
            for (int64_t c0 = 0; c0 < g->ci; c0 += group) {
                const int64_t c1 = min64(g->ci, c0 + group);
                col_transfer(g, (float *)(x + n * g->ci * vin), c0 * k3, c1 * k3, t0, nt, col, 0);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->co, (int)nt, (int)((c1 - c0) * k3),
                            1.0f, w + c0 * k3, (int)K, col, (int)nt, (b || c0 > 0) ? 1.0f : 0.0f, yt, (int)vout);
            }
        }
    }
}

rm_status rm_conv_engine_forward(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, const float *b,
                                 float *y)
{
    const int nth = ctx->n_threads;
    float *ws = rm_ctx_workspace(ctx, forward_workspace_floats(g, nth) * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
    forward_with(g, nth, x, w, b, y, ws);
    return RM_OK;
}

/* ---- data gradient ------------------------------------------------------------------------------------------- */

/* Stride 1: dx[i, p] = Σ_o Σ_tap w[o, i, tap] dy[o, p - tap + pad] is the convolution of dy with the kernel
 * wf[i, o, a, b, c] = w[o, i, k-1-a, k-1-b, k-1-c] and padding k-1-pad. */
static rm_status backward_data_flipped(rm_ctx *ctx, const rm_conv_geom *g, const float *w, const float *dy,
                                       float *dx)
{
    const int nth = ctx->n_threads, k = g->k;
    const int64_t k3 = cube(k);
    const rm_conv_geom t = {.n = g->n, .ci = g->co, .co = g->ci, .in = {g->out[0], g->out[1], g->out[2]},
                            .out = {g->in[0], g->in[1], g->in[2]}, .k = k, .s = 1, .pad = k - 1 - g->pad};
    /* The flipped kernel first, padded so the forward's working memory after it stays 64-byte aligned. */
    const size_t wf_floats = (size_t)(g->ci * g->co * k3 + 15) / 16 * 16;
    float *ws = rm_ctx_workspace(ctx, (wf_floats + forward_workspace_floats(&t, nth)) * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
    float *wf = ws;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t i = 0; i < g->ci; i++)
        for (int64_t o = 0; o < g->co; o++)
            for (int64_t tap = 0; tap < k3; tap++)
                wf[(i * g->co + o) * k3 + tap] = w[(o * g->ci + i) * k3 + (k3 - 1 - tap)];
    forward_with(&t, nth, dy, wf, NULL, dx, ws + wf_floats);
    return RM_OK;
}

/* Any stride: dcol = wᵀ·dy per tile, scattered back into dx. Items own whole input channels, so no two threads
 * write the same dx element, and each element sums its contributions in tile order then tap order. */
static rm_status backward_data_scatter(rm_ctx *ctx, const rm_conv_geom *g, const float *w, const float *dy,
                                       float *dx)
{
    const int nth = ctx->n_threads;
    const int64_t k3 = cube(g->k), K = g->ci * k3, vin = vol3(g->in), vout = vol3(g->out);
    const int64_t group = clamp64(min64(ceil_div(g->ci, RM_SCATTER_GROUPS), RM_COL_FLOATS / (k3 * RM_TILE_FWD)), 1,
                                  g->ci);
    const int64_t ngroups = ceil_div(g->ci, group), ntiles = ceil_div(vout, RM_TILE_FWD);
    const size_t col_floats = (size_t)(group * k3 * RM_TILE_FWD);
    float *ws = rm_ctx_workspace(ctx, (size_t)nth * col_floats * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
#pragma omp parallel num_threads(nth)
    {
        omp_set_num_threads(1);
        float *col = ws + (size_t)omp_get_thread_num() * col_floats;
#pragma omp for schedule(static)
        for (int64_t gi = 0; gi < ngroups; gi++) {
            const int64_t c0 = gi * group, c1 = min64(g->ci, c0 + group);
            for (int64_t n = 0; n < g->n; n++) {
                float *dxn = dx + n * g->ci * vin;
                memset(dxn + c0 * vin, 0, (size_t)((c1 - c0) * vin) * sizeof(float));
                for (int64_t tile = 0; tile < ntiles; tile++) {
                    const int64_t t0 = tile * RM_TILE_FWD, nt = min64(RM_TILE_FWD, vout - t0);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)((c1 - c0) * k3), (int)nt, (int)g->co,
                                1.0f, w + c0 * k3, (int)K, dy + n * g->co * vout + t0, (int)vout, 0.0f, col, (int)nt);
                    col_transfer(g, dxn, c0 * k3, c1 * k3, t0, nt, col, 1);
                }
            }
        }
    }
    return RM_OK;
}

rm_status rm_conv_engine_backward_data(rm_ctx *ctx, const rm_conv_geom *g, const float *w, const float *dy,
                                       float *dx)
{
    return g->s == 1 ? backward_data_flipped(ctx, g, w, dy, dx) : backward_data_scatter(ctx, g, w, dy, dx);
}

/* ---- weight gradient ----------------------------------------------------------------------------------------- */

/* dw[o, r] = Σ_n Σ_t dy[n, o, t] col_n[r, t]: each item owns RM_BWD_ROWS columns r of dw and walks every sample
 * and tile in order, so no reduction is ever split between threads. */
rm_status rm_conv_engine_backward_weight(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *dy,
                                         float *dw)
{
    const int nth = ctx->n_threads;
    const int64_t K = g->ci * cube(g->k), vin = vol3(g->in), vout = vol3(g->out);
    const int64_t nitems = ceil_div(K, RM_BWD_ROWS), ntiles = ceil_div(vout, RM_TILE_BWD);
    const size_t col_floats = (size_t)RM_BWD_ROWS * RM_TILE_BWD;
    float *ws = rm_ctx_workspace(ctx, (size_t)nth * col_floats * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
#pragma omp parallel num_threads(nth)
    {
        omp_set_num_threads(1);
        float *col = ws + (size_t)omp_get_thread_num() * col_floats;
#pragma omp for schedule(static)
        for (int64_t item = 0; item < nitems; item++) {
            const int64_t r0 = item * RM_BWD_ROWS, r1 = min64(K, r0 + RM_BWD_ROWS);
            for (int64_t n = 0; n < g->n; n++) {
                for (int64_t tile = 0; tile < ntiles; tile++) {
                    const int64_t t0 = tile * RM_TILE_BWD, nt = min64(RM_TILE_BWD, vout - t0);
                    const int first = n == 0 && tile == 0;
                    col_transfer(g, (float *)(x + n * g->ci * vin), r0, r1, t0, nt, col, 0);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->co, (int)(r1 - r0), (int)nt, 1.0f,
                                dy + n * g->co * vout + t0, (int)vout, col, (int)nt, first ? 0.0f : 1.0f, dw + r0,
                                (int)K);
                }
            }
        }
    }
    return RM_OK;
}
