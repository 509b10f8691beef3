/* The direct convolution (conv_direct.h): packing, the padded input planes, threads, and the choice of kernel.
 *
 * Items are output planes (sample, z), split into one contiguous range per thread. A thread keeps the kd input
 * planes its current output plane reads in a ring of padded, blocked planes, so moving to the next output plane
 * converts one new input plane, not kd. Within an item, for each group of output channel blocks and each chunk of
 * input channel blocks (whose weights stay in cache over the plane), every output row is cut into tiles of at most
 * the kernel's positions. Depth and height taps that fall on the padding are skipped (they would add zeros, a large
 * share of the work on the deepest levels' small planes); width taps are not (they vary along the row).
 *
 * Deep layers, whose weights outweigh their outputs, go the other way round (forward_by_groups): items are groups of
 * output channel blocks, and each chunk of weights serves every output plane before the next, so that each weight
 * is read once per call (by planes, every thread reads all of them for each of its planes). The order of the sums
 * of each output is the same either way.
 *
 * A tiling convolution (kernel = stride, no padding: the network's 2³ stride-2 down-sampling, and through its data
 * gradient the transposed up-sampling) is the 1³ convolution of its input rearranged space-to-depth, ci·kd·k²
 * channels at the output's size: the ring converts its planes that way, and its data gradient, a 1³ convolution
 * into ci·kd·k² channels, puts each output plane back depth-to-space.
 */
#include "ops/direct/conv_direct.h"

#include <omp.h>
#include <string.h>

enum { RM_DIRECT_CALL_WEIGHTS = 512 * 1024 }; /* bytes of weights (or sums) one pass over the rows keeps: L2 / 2 */

int rm_conv_direct_suits(const rm_ctx *ctx, const rm_conv_geom *g)
{
    /* Output channels are computed in blocks of 16: below that, most of each vector would be padding. */
    return RM_HAVE_DIRECT && ctx->isa >= RM_ISA_AVX2 && rm_conv_stride1(g) && g->co >= 16 && g->k <= RM_DIRECT_MAX_K &&
           g->kd <= RM_DIRECT_MAX_K;
}

int rm_conv_direct_suits_weight(const rm_ctx *ctx, const rm_conv_geom *g)
{
    /* Vectors run over 16 input channels, or with one input channel over positions: between, most of each vector
     * would be padding. */
    return RM_HAVE_DIRECT && ctx->isa >= RM_ISA_AVX2 && rm_conv_stride1(g) && (g->ci >= 16 || g->ci == 1) &&
           g->k <= RM_DIRECT_MAX_K && g->kd <= RM_DIRECT_MAX_K;
}

/* Kernel = stride along every axis and no padding, the windows inside the input: a 1³ convolution space-to-depth. */
static int tiling(const rm_conv_geom *g)
{
    return !rm_conv_stride1(g) && g->k == g->s && g->kd == g->sd && g->pad == 0 && g->pad_d == 0 &&
           g->out[0] * g->kd <= g->in[0] && g->out[1] * g->k <= g->in[1] && g->out[2] * g->k <= g->in[2];
}

int rm_conv_direct_suits_tiling(const rm_ctx *ctx, const rm_conv_geom *g, int pass)
{
    /* Each call packs the ci·taps·co weights: below about 1024 outputs per output channel, packing them costs more
     * than the kernels gain (down-sampling 256 channels to 2×8×8 ran at half SGEMM's speed). */
    const int64_t depth_channels = g->ci * rm_conv_taps(g), outputs = g->n * g->out[0] * g->out[1] * g->out[2];
    return RM_HAVE_DIRECT && ctx->isa >= RM_ISA_AVX2 && tiling(g) && (pass == 0 ? g->co : depth_channels) >= 16 &&
           outputs >= 1024;
}

int rm_conv_direct_suits_reduce(const rm_ctx *ctx, const rm_conv_geom *g)
{
    return RM_HAVE_DIRECT && ctx->isa >= RM_ISA_AVX2 && rm_conv_stride1(g) && g->co < 16 && g->ci >= 16 && g->k == 5 &&
           g->kd <= RM_DIRECT_MAX_K;
}

/* The sizes every part of one call agrees on. */
typedef struct direct_plan {
    const rm_conv_geom *g;
    const rm_conv_geom *tiled; /* for a tiling convolution's input, its geometry (g is then its 1³ one), or NULL */
    rm_isa isa;                /* the context's: AVX-512 converts input planes by register transposes */
    int64_t lanes, ncib, cop; /* L, input channel blocks, output channels rounded up to 16 */
    int64_t hp, wp;           /* padded plane: Ho + k - 1 rows of Wo + k - 1 positions */
    int64_t plane_floats;     /* one padded, blocked input plane: ncib·Hp·Wp·L */
    int64_t group_floats;     /* the packed weights of one full group of output channels: ncib·kd·k²·L·32 */
} direct_plan;

static direct_plan plan_of(const rm_conv_geom *g)
{
    direct_plan p = {.g = g};
    p.lanes = rm_min64(g->ci, 16);
    p.ncib = rm_ceil_div(g->ci, p.lanes);
    p.cop = rm_ceil_div(g->co, 16) * 16;
    p.hp = g->out[1] + g->k - 1;
    p.wp = g->out[2] + g->k - 1;
    p.plane_floats = p.ncib * p.hp * p.wp * p.lanes;
    p.group_floats = p.ncib * rm_conv_taps(g) * p.lanes * RM_DIRECT_GROUP;
    return p;
}

/* The width of the packed weights' group holding output channel o (the last group may be 16 wide). */
static int64_t group_width(const direct_plan *p, int64_t o)
{
    return rm_min64(RM_DIRECT_GROUP, p->cop - o / RM_DIRECT_GROUP * RM_DIRECT_GROUP);
}

/* Where weight (output o, input i, tap) is in the packed layout. */
static int64_t packed_index(const direct_plan *p, int64_t o, int64_t i, int64_t tap)
{
    const int64_t taps = rm_conv_taps(p->g), L = p->lanes;
    return o / RM_DIRECT_GROUP * p->group_floats + ((i / L * taps + tap) * L + i % L) * group_width(p, o) +
           o % RM_DIRECT_GROUP;
}

/* dst[x·stride + l] = rows[l][x] for l < nrows, x < n (stride may be negative): channel rows into vectors of lanes,
 * each vector written whole before the next. AVX-512 moves 16 rows by register transposes. */
static void interleave(rm_isa isa, const float *const rows[16], int64_t nrows, int64_t n, int64_t stride, float *dst)
{
#if RM_HAVE_DIRECT
    if (nrows == 16 && isa >= RM_ISA_AVX512) {
        rm_direct_interleave16_avx512(rows, n, stride, dst);
        return;
    }
#endif
    for (int64_t x = 0; x < n; x++)
        for (int64_t l = 0; l < nrows; l++)
            dst[x * stride + l] = rows[l][x];
}

/* The packed weights (conv_direct.h) of taps [t0, t1) for input channel block cib and the 16 output channels from o0,
 * at dst, where tap t0 of the block's first channel goes (the other taps are left as they are), zero where channels
 * do not exist. For each input channel, the 16 output channels' taps are contiguous runs in w; they are interleaved
 * into one whole 64-byte row of 16 channels per tap: rows a tap apart are L·gw floats apart, a power-of-two stride
 * that maps them all to a few cache sets, so writing them a float at a time would evict each row before it is
 * complete. Mirrored, the run is read from its last tap's mirror and written backwards. */
static void pack_item(const direct_plan *p, const float *w, int mirrored, int64_t t0, int64_t t1, int64_t cib,
                      int64_t o0, float *dst)
{
    static const float zeros[RM_DIRECT_MAX_K * RM_DIRECT_MAX_K * RM_DIRECT_MAX_K];
    const rm_conv_geom *g = p->g;
    const int64_t taps = rm_conv_taps(g), L = p->lanes, tap_floats = L * group_width(p, o0), nt = t1 - t0;
    for (int64_t i = cib * L; i < (cib + 1) * L; i++, dst += group_width(p, o0)) {
        const float *rows[16];
        for (int64_t j = 0; j < 16; j++) {
            const int64_t o = o0 + j;
            rows[j] = i >= g->ci || o >= g->co ? zeros
                      : mirrored               ? w + (i * g->co + o) * taps + taps - t1
                                               : w + (o * g->ci + i) * taps + t0;
        }
        if (mirrored)
            interleave(p->isa, rows, 16, nt, -tap_floats, dst + (nt - 1) * tap_floats);
        else
            interleave(p->isa, rows, 16, nt, tap_floats, dst);
    }
}

/* All the packed weights of taps [t0, t1), in items of (input channel block, block of 16 output channels). */
static void pack_weights(const direct_plan *p, int nth, const float *w, int mirrored, int64_t t0, int64_t t1,
                         float *wp)
{
    const int64_t ncob = p->cop / 16;
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t item = 0; item < p->ncib * ncob; item++) {
        const int64_t cib = item / ncob, o0 = item % ncob * 16;
        pack_item(p, w, mirrored, t0, t1, cib, o0, wp + packed_index(p, o0, cib * p->lanes, t0));
    }
}

/* The taps [*t0, *t1) of the depth taps that meet some input plane of g: the kernels skip the others. */
static void reached_taps(const rm_conv_geom *g, int64_t *t0, int64_t *t1)
{
    const int64_t a0 = rm_clamp64(g->pad_d - g->out[0] + 1, 0, g->kd), a1 = rm_clamp64(g->pad_d + g->in[0], a0, g->kd);
    *t0 = a0 * g->k * g->k;
    *t1 = a1 * g->k * g->k;
}

int64_t rm_conv_direct_packed_numel(const rm_conv_geom *g)
{
    const direct_plan p = plan_of(g);
    return p.ncib * rm_conv_taps(g) * p.lanes * p.cop;
}

void rm_conv_direct_pack(const rm_conv_geom *g, int nth, const float *w, float *packed)
{
    const direct_plan p = plan_of(g);
    pack_weights(&p, nth, w, 0, 0, rm_conv_taps(g), packed);
}

void rm_conv_direct_unpack(const rm_conv_geom *g, int nth, const float *packed, float *w)
{
    const direct_plan p = plan_of(g);
    const int64_t taps = rm_conv_taps(g);
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t o = 0; o < g->co; o++)
        for (int64_t i = 0; i < g->ci; i++)
            for (int64_t tap = 0; tap < taps; tap++)
                w[(o * g->ci + i) * taps + tap] = packed[packed_index(&p, o, i, tap)];
}

/* Writes input plane iz of sample image `img` (ci, in) into `dst`, padded and blocked; the padding and the lanes of
 * missing channels are left as they are (zero). Row by row, a block's channels in turn: a padded row of a block
 * (Wp·64 bytes) stays in L1 while its lanes are filled, where a whole block plane (1 MB at 128²) would not. */
static void convert_plane(const direct_plan *p, const float *img, int64_t iz, float *dst)
{
    const rm_conv_geom *g = p->g;
    const int64_t H = g->in[1], W = g->in[2], L = p->lanes, pad = g->pad, plane = g->in[0] * H * W;
    const int64_t rows = rm_min64(H, p->hp - pad), cols = rm_min64(W, p->wp - pad);
    for (int64_t cib = 0; cib < p->ncib; cib++) {
        const int64_t lanes = rm_min64(L, g->ci - cib * L);
        const float *src = img + (cib * L * g->in[0] + iz) * H * W;
        for (int64_t h = 0; h < rows; h++) {
            const float *row[16];
            for (int64_t l = 0; l < lanes; l++)
                row[l] = src + l * plane + h * W;
            interleave(p->isa, row, lanes, cols, L, dst + ((cib * p->hp + h + pad) * p->wp + pad) * L);
        }
    }
}

/* Where space-to-depth channel ch of tiling convolution t (input channel i = ch / taps at tap ch % taps of each
 * window) reads its first window, in floats from the start of a sample of t's input. */
static int64_t tiled_channel_offset(const rm_conv_geom *t, int64_t ch)
{
    const int64_t taps = rm_conv_taps(t), i = ch / taps, tap = ch % taps, k = t->k;
    return ((i * t->in[0] + tap / (k * k)) * t->in[1] + tap / k % k) * t->in[2] + tap % k;
}

/* Writes plane z of a tiling convolution's input rearranged space-to-depth into `dst`, blocked; the lanes of missing
 * channels are left as they are. */
static void convert_tiled_plane(const direct_plan *p, const float *img, int64_t z, float *dst)
{
    const rm_conv_geom *t = p->tiled;
    const int64_t k = t->k, W = t->in[2], L = p->lanes, Ho = p->g->out[1], Wo = p->g->out[2];
    const float *plane = img + z * t->kd * t->in[1] * W;
    for (int64_t cib = 0; cib < p->ncib; cib++) {
        const int64_t lanes = rm_min64(L, p->g->ci - cib * L);
        for (int64_t h = 0; h < Ho; h++) {
            float *d = dst + (cib * Ho + h) * Wo * L;
            for (int64_t l = 0; l < lanes; l++) {
                const float *s = plane + tiled_channel_offset(t, cib * L + l) + h * k * W;
                for (int64_t x = 0; x < Wo; x++)
                    d[x * L + l] = s[x * k];
            }
        }
    }
}

/* A thread's kd padded input planes, in slots by depth modulo kd, so that consecutive output planes share them. */
typedef struct plane_ring {
    const direct_plan *p;
    float *planes;                 /* kd slots of plane_floats */
    int64_t held[RM_DIRECT_MAX_K]; /* the plane n·D + iz each slot holds, or -1 */
} plane_ring;

/* The floats of nplanes consecutive padded input planes: the one-input-channel forward kernel reads up to a vector
 * past a row's end, so 16 more, zeros, past the last plane. */
static size_t planes_size(const direct_plan *p, int64_t nplanes)
{
    return rm_work_floats(nplanes * p->plane_floats + (p->lanes == 1 ? 16 : 0));
}

static size_t ring_size(const direct_plan *p)
{
    return planes_size(p, p->g->kd);
}

/* The input plane iz that depth tap a of output plane z reads, or -1 outside the volume (the padding's zeros). */
static int64_t tap_plane(const rm_conv_geom *g, int64_t z, int a)
{
    const int64_t iz = z + a - g->pad_d;
    return iz >= 0 && iz < g->in[0] ? iz : -1;
}

/* A ring on `mem` (ring_size floats), all zeros: the padding and the lanes of missing channels stay so. */
static plane_ring ring_start(const direct_plan *p, float *mem)
{
    plane_ring r = {.p = p, .planes = mem};
    memset(mem, 0, ring_size(p) * sizeof(float));
    for (int a = 0; a < RM_DIRECT_MAX_K; a++)
        r.held[a] = -1;
    return r;
}

/* planes[a] = the padded input plane that depth tap a of output plane z of sample n reads, or NULL outside the
 * volume; converts the ones the ring does not hold yet. */
static void ring_planes(plane_ring *r, const float *x, int64_t n, int64_t z, const float *planes[RM_DIRECT_MAX_K])
{
    const direct_plan *p = r->p;
    const rm_conv_geom *src = p->tiled ? p->tiled : p->g;
    const int64_t kd = p->g->kd, D = p->g->in[0], sample = src->ci * src->in[0] * src->in[1] * src->in[2];
    for (int a = 0; a < kd; a++) {
        const int64_t iz = tap_plane(p->g, z, a), slot = iz % kd;
        planes[a] = NULL;
        if (iz < 0)
            continue;
        float *dst = r->planes + slot * p->plane_floats;
        if (r->held[slot] != n * D + iz) {
            if (p->tiled)
                convert_tiled_plane(p, x + n * sample, iz, dst);
            else
                convert_plane(p, x + n * sample, iz, dst);
            r->held[slot] = n * D + iz;
        }
        planes[a] = dst;
    }
}

/* The height taps [b0, b1) of output row oy that meet input rows (the others read the padding's zeros). */
static void height_taps(const rm_conv_geom *g, int64_t oy, int *b0, int *b1)
{
    *b0 = (int)rm_clamp64(g->pad - oy, 0, g->k);
    *b1 = (int)rm_clamp64(g->in[1] + g->pad - oy, *b0, g->k);
}

/* The work of one output plane (n, z) of a forward, given the padded input planes its depth taps read (NULL
 * outside the volume) and `extra`, floats of the calling thread's own. */
typedef void (*plane_work)(const void *job, int64_t n, int64_t z, const float *planes[RM_DIRECT_MAX_K], float *extra);

/* Runs `work` on every output plane of p's convolution, split into one contiguous range per thread; each thread
 * has a ring of padded input planes and extra_floats of its own, at mem (nth · (ring_size + extra_floats)). */
static void over_planes(const direct_plan *p, int nth, float *mem, size_t extra_floats, const float *x, plane_work work,
                        const void *job)
{
    const int64_t Do = p->g->out[0];
#pragma omp parallel num_threads(nth)
    {
        float *mine = mem + (size_t)omp_get_thread_num() * (ring_size(p) + extra_floats);
        plane_ring ring = ring_start(p, mine);
#pragma omp for schedule(static)
        for (int64_t item = 0; item < p->g->n * Do; item++) {
            const int64_t n = item / Do, z = item % Do;
            const float *planes[RM_DIRECT_MAX_K];
            ring_planes(&ring, x, n, z, planes);
            work(job, n, z, planes, mine + ring_size(p));
        }
    }
}

typedef void (*row_kernel)(const rm_direct_row *r);

typedef void (*wgrad_kernel)(const rm_direct_wgrad_row *r);

typedef void (*reduce_kernel)(const rm_direct_reduce_row *r);

#if RM_HAVE_DIRECT
static row_kernel kernel_of(rm_isa isa, int lanes)
{
    if (lanes == 1)
        return isa >= RM_ISA_AVX512 ? rm_direct_pos_row_avx512 : rm_direct_pos_row_avx2;
    return isa >= RM_ISA_AVX512 ? rm_direct_row_avx512 : rm_direct_row_avx2;
}
static wgrad_kernel wgrad_kernel_of(rm_isa isa, int lanes)
{
    if (lanes == 1)
        return isa >= RM_ISA_AVX512 ? rm_direct_pos_wgrad_row_avx512 : rm_direct_pos_wgrad_row_avx2;
    return isa >= RM_ISA_AVX512 ? rm_direct_wgrad_row_avx512 : rm_direct_wgrad_row_avx2;
}
static reduce_kernel reduce_kernel_of(rm_isa isa)
{
    return isa >= RM_ISA_AVX512 ? rm_direct_reduce_row_avx512 : rm_direct_reduce_row_avx2;
}
#else
static row_kernel kernel_of(rm_isa isa, int lanes)
{
    return (void)isa, (void)lanes, NULL;
}
static wgrad_kernel wgrad_kernel_of(rm_isa isa, int lanes)
{
    return (void)isa, (void)lanes, NULL;
}
static reduce_kernel reduce_kernel_of(rm_isa isa)
{
    return (void)isa, NULL;
}
#endif

/* What every output plane of one forward shares. */
typedef struct forward_job {
    const direct_plan *p;
    row_kernel kernel;
    const float *wp, *bias; /* packed weights (NULL: `w` packed chunk by chunk); the bias padded to cop, or NULL */
    const float *w;         /* the weights as given, packed in the calls by groups when wp is NULL */
    int mirrored;           /* w is read mirrored (rm_conv_direct_forward) */
    int64_t t0, t1;         /* the taps of the depth taps that meet the input: only these are packed */
    const rm_conv_act *act;
    float *y;
    int64_t chunk, nb_max, rw_one, rw_pair; /* input blocks per call; output blocks per call; positions */
    int64_t part_floats;                    /* the thread's partial sums between chunks, then its output plane: */
    const rm_conv_geom *untile;             /* for a tiling convolution's data gradient, that convolution: each output
                                             * plane is computed in the thread's buffer, then put depth-to-space */
} forward_job;

/* Output plane z of sample n, computed as `plane` ([ci·taps][Ho][Wo]), into the data gradient dx of the tiling
 * convolution t: channel i·taps + tap goes to input channel i at that tap of each window. */
static void untile_plane(const rm_conv_geom *t, const float *plane, int64_t n, int64_t z, float *dx)
{
    const int64_t k = t->k, W = t->in[2], Ho = t->out[1], Wo = t->out[2];
    float *sample = dx + (n * t->ci * t->in[0] + z * t->kd) * t->in[1] * W;
    for (int64_t ch = 0; ch < t->ci * rm_conv_taps(t); ch++) {
        float *d = sample + tiled_channel_offset(t, ch);
        for (int64_t h = 0; h < Ho; h++)
            for (int64_t x = 0; x < Wo; x++)
                d[h * k * W + x * k] = plane[(ch * Ho + h) * Wo + x];
    }
}

/* Sets r for the group of output blocks from block cob. */
static void set_group(const forward_job *j, rm_direct_row *r, int64_t cob)
{
    const int64_t ncob = j->p->cop / 16;
    r->cob = (int)cob;
    r->gw = group_width(j->p, cob * 16);
    r->bias = j->bias ? j->bias + cob * 16 : NULL;
    r->nb = (int)rm_min64(j->nb_max, ncob - cob);
    r->nco = rm_min64(r->nb * 16, j->p->g->co - cob * 16);
}

/* Sets r for the chunk of input blocks from block cib0. */
static void set_chunk(const forward_job *j, rm_direct_row *r, int64_t cib0)
{
    r->ncib = rm_min64(j->chunk, j->p->ncib - cib0);
    r->first = cib0 == 0;
    r->last = cib0 + r->ncib == j->p->ncib;
    r->act = r->last ? j->act : NULL;
}

/* The packed weights of r's group from input block cib0 on: in wp, or (by groups) packed into `buf` now. */
static const float *chunk_weights(const forward_job *j, const rm_direct_row *r, int64_t cib0, float *buf)
{
    const direct_plan *p = j->p;
    const int64_t block_floats = rm_conv_taps(p->g) * p->lanes * r->gw;
    if (j->wp)
        return j->wp + r->cob * 16 / RM_DIRECT_GROUP * p->group_floats + cib0 * block_floats;
    for (int64_t cib = cib0; cib < cib0 + r->ncib; cib++)
        for (int64_t o0 = r->cob * 16; o0 < (r->cob + r->nb) * 16; o0 += 16) /* the group's blocks r computes */
            pack_item(p, j->w, j->mirrored, j->t0, j->t1, cib, o0,
                      buf + (cib - cib0) * block_floats + j->t0 * p->lanes * r->gw + o0 % RM_DIRECT_GROUP);
    return buf;
}

/* Every row of output plane (n, z), in tiles, for r's group and chunk of input blocks from cib0: the depth taps'
 * padded input planes (NULL outside the volume), the partial sums of the plane, and the group's first output channel
 * at the plane's first position. */
static void plane_rows(const forward_job *j, rm_direct_row *r, int64_t cib0, const float *const planes[RM_DIRECT_MAX_K],
                       float *part, float *out)
{
    const direct_plan *p = j->p;
    const int64_t Ho = p->g->out[1], Wo = p->g->out[2], ntiles = rm_ceil_div(Wo, r->nb == 2 ? j->rw_pair : j->rw_one);
    for (int64_t oy = 0; oy < Ho; oy++) {
        height_taps(p->g, oy, &r->b0, &r->b1);
        for (int64_t t = 0; t < ntiles; t++) {
            const int64_t x0 = Wo * t / ntiles, x1 = Wo * (t + 1) / ntiles;
            for (int a = 0; a < p->g->kd; a++)
                r->planes[a] = planes[a] ? planes[a] + cib0 * r->cib_stride + (oy * p->wp + x0) * p->lanes : NULL;
            r->rw = (int)(x1 - x0);
            r->part = part + (oy * Wo + x0) * 32;
            r->out = out + oy * Wo + x0;
            j->kernel(r);
        }
    }
}

/* The kernel call's settings that no group, chunk or row changes; vout floats between output channels. */
static rm_direct_row row_template(const forward_job *j, int64_t vout)
{
    const direct_plan *p = j->p;
    return (rm_direct_row){.out_stride = vout,
                           .cib_stride = p->hp * p->wp * p->lanes,
                           .row_stride = p->wp * p->lanes,
                           .k = p->g->k,
                           .kd = p->g->kd,
                           .lanes = (int)p->lanes};
}

/* One output plane: for each group of output blocks and each chunk of input blocks, every row (on packed wp). */
static void forward_plane(const void *arg, int64_t n, int64_t z, const float *planes[RM_DIRECT_MAX_K], float *part)
{
    const forward_job *j = arg;
    const rm_conv_geom *g = j->p->g;
    const int64_t plane = g->out[1] * g->out[2];
    /* Where channel o's plane starts: y's, or the thread's plane buffer's. */
    float *const out0 = j->untile ? part + j->part_floats : j->y + (n * g->co * g->out[0] + z) * plane;
    const int64_t vout = j->untile ? plane : g->out[0] * plane;
    rm_direct_row r = row_template(j, vout);
    for (int64_t cob = 0; cob < j->p->cop / 16; cob += j->nb_max) {
        set_group(j, &r, cob);
        for (int64_t cib0 = 0; cib0 < j->p->ncib; cib0 += j->chunk) {
            set_chunk(j, &r, cib0);
            r.w = chunk_weights(j, &r, cib0, NULL);
            plane_rows(j, &r, cib0, planes, part, out0 + cob * 16 * vout);
        }
    }
    if (j->untile)
        untile_plane(j->untile, out0, n, z, j->y);
}

/* The floats of every input plane of p's convolution, padded and blocked, for forward_by_groups. */
static size_t all_planes_size(const direct_plan *p)
{
    return planes_size(p, p->g->n * p->g->in[0]);
}

/* Deep layers, whose weights outweigh their outputs: threads take groups of output blocks, and each chunk of a
 * group's weights serves every output plane before the next chunk, so every weight is read once per call, not once
 * per plane and thread. Weights given unpacked are packed chunk by chunk into the thread's buffer just before their
 * use (not all of them out to memory and back). The input (small, here) is converted once, every plane, into the
 * shared memory at mem (all_planes_size); then each thread's memory: the partial sums of every output plane, then
 * the chunk buffer (extra_floats in all). */
static void forward_by_groups(const forward_job *j, int nth, float *mem, size_t extra_floats, const float *x)
{
    const direct_plan *p = j->p;
    const rm_conv_geom *g = p->g;
    const int64_t D = g->in[0], plane = g->out[1] * g->out[2], vout = g->out[0] * plane, nplanes = g->n * g->out[0];
    const int64_t ngroups = rm_ceil_div(p->cop / 16, j->nb_max), sample = g->ci * D * g->in[1] * g->in[2];
    float *in = mem;
#pragma omp parallel num_threads(nth)
    {
#pragma omp for schedule(static)
        for (int64_t pl = 0; pl < g->n * D; pl++) {
            float *dst = in + pl * p->plane_floats;
            memset(dst, 0, (size_t)p->plane_floats * sizeof(float));
            convert_plane(p, x + pl / D * sample, pl % D, dst);
        }
        if (omp_get_thread_num() == 0 && p->lanes == 1)
            memset(in + g->n * D * p->plane_floats, 0, 16 * sizeof(float));
#pragma omp barrier
        float *part = mem + all_planes_size(p) + (size_t)omp_get_thread_num() * extra_floats;
        float *buf = part + rm_work_floats(nplanes * plane * 32);
        rm_direct_row r = row_template(j, vout);
#pragma omp for schedule(static)
        for (int64_t grp = 0; grp < ngroups; grp++) {
            set_group(j, &r, grp * j->nb_max);
            for (int64_t cib0 = 0; cib0 < p->ncib; cib0 += j->chunk) {
                set_chunk(j, &r, cib0);
                r.w = chunk_weights(j, &r, cib0, buf);
                for (int64_t item = 0; item < nplanes; item++) {
                    const int64_t n = item / g->out[0], z = item % g->out[0];
                    const float *planes[RM_DIRECT_MAX_K];
                    for (int a = 0; a < g->kd; a++) {
                        const int64_t iz = tap_plane(g, z, a);
                        planes[a] = iz >= 0 ? in + (n * D + iz) * p->plane_floats : NULL;
                    }
                    plane_rows(j, &r, cib0, planes, part + item * plane * 32,
                               j->y + (n * g->co * g->out[0] + z) * plane + r.cob * 16 * vout);
                }
            }
        }
    }
}

/* Whether forward_by_groups suits p's convolution on nth threads: the weights outweigh the outputs, and there are
 * groups enough for every thread twice. */
static int by_groups(const direct_plan *p, int64_t nb_max, int nth)
{
    const rm_conv_geom *g = p->g;
    return !p->tiled && rm_conv_taps(g) * g->ci > g->n * g->out[0] * g->out[1] * g->out[2] &&
           rm_ceil_div(p->cop / 16, nb_max) >= 2 * nth;
}

/* y = act(conv(x, w) + b) on the packed weights wp, or, when wp is NULL, on w packed first (into the working memory,
 * or by groups chunk by chunk; `mirrored` as rm_conv_direct_forward has it); act may be NULL. The kernel applies the
 * activation to each tile's sums before it stores them (row_kernel.inc). */
static rm_status forward(rm_ctx *ctx, const direct_plan *pp, const float *x, const float *wp, const float *w,
                         int mirrored, const float *b, const rm_conv_act *act, const rm_conv_geom *untile, float *y)
{
    direct_plan p = *pp;
    const rm_conv_geom *g = p.g;
    p.isa = ctx->isa;
    const int nth = ctx->n_threads, k5 = g->k == 5, avx512 = ctx->isa >= RM_ISA_AVX512;
    forward_job j = {.p = &p,
                     .kernel = kernel_of(ctx->isa, (int)p.lanes),
                     .w = w,
                     .mirrored = mirrored,
                     .act = act,
                     .y = y,
                     .nb_max = avx512 ? RM_DIRECT_AVX512_NB : RM_DIRECT_AVX2_NB,
                     .rw_one = k5 ? (avx512 ? RM_DIRECT_AVX512_RW5_1 : RM_DIRECT_AVX2_RW5_1)
                                  : (avx512 ? RM_DIRECT_AVX512_RW1 : RM_DIRECT_AVX2_RW1),
                     .rw_pair = k5 ? RM_DIRECT_AVX512_RW5_2 : RM_DIRECT_AVX512_RW2};
    if (p.lanes == 1) /* one input channel, one block: vectors over positions (pos_kernel.inc) */
        j.rw_one = j.rw_pair = avx512 ? RM_DIRECT_AVX512_POS_RW : RM_DIRECT_AVX2_POS_RW;
    /* Only the depth taps that meet the input: the deepest levels, thinner than the kernel, read 3 of 5. */
    reached_taps(g, &j.t0, &j.t1);
    const int groups = !untile && by_groups(&p, j.nb_max, nth);
    const size_t w_floats = wp || groups ? 0 : rm_work_floats(rm_conv_direct_packed_numel(g));
    const size_t b_floats = rm_work_floats(p.cop);
    /* Input channel blocks per kernel call: as many as keep one call's weights within half the L2 cache. */
    j.chunk = rm_clamp64(RM_DIRECT_CALL_WEIGHTS / (rm_conv_taps(g) * p.lanes * j.nb_max * 16 * (int64_t)sizeof(float)),
                         1, p.ncib);
    size_t extra_floats, shared_floats = 0, ring_floats = ring_size(&p);
    if (groups) {
        shared_floats = all_planes_size(&p);
        ring_floats = 0;
        extra_floats = rm_work_floats(g->n * g->out[0] * g->out[1] * g->out[2] * 32) +
                       (wp ? 0 : rm_work_floats(j.chunk * rm_conv_taps(g) * p.lanes * RM_DIRECT_GROUP));
    } else {
        j.part_floats = j.chunk < p.ncib ? (int64_t)rm_work_floats(g->out[1] * g->out[2] * 32) : 0;
        j.untile = untile;
        extra_floats = (size_t)j.part_floats + (untile ? rm_work_floats(g->co * g->out[1] * g->out[2]) : 0);
    }
    if (!j.kernel)
        return rm_fail(ctx, RM_ERR_INTERNAL, "the direct convolution is not built for this processor");
    float *ws =
        rm_ctx_workspace(ctx, (w_floats + b_floats + shared_floats + (size_t)nth * (ring_floats + extra_floats)) *
                                  sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
    if (!wp && !groups) {
        pack_weights(&p, nth, w, mirrored, j.t0, j.t1, ws);
        wp = ws;
    }
    float *bp = ws + w_floats;
    for (int64_t o = 0; o < p.cop; o++)
        bp[o] = b && o < g->co ? b[o] : 0.0f;
    j.wp = wp;
    j.bias = b ? bp : NULL;
    if (groups)
        forward_by_groups(&j, nth, bp + b_floats, extra_floats, x);
    else
        over_planes(&p, nth, bp + b_floats, extra_floats, x, forward_plane, &j);
    return RM_OK;
}

rm_status rm_conv_direct_forward(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, int mirrored,
                                 const float *b, float *y)
{
    const direct_plan p = plan_of(g);
    return forward(ctx, &p, x, NULL, w, mirrored, b, NULL, NULL, y);
}

rm_status rm_conv_direct_forward_packed(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *packed,
                                        const float *b, const rm_conv_act *act, float *y)
{
    const direct_plan p = plan_of(g);
    return forward(ctx, &p, x, packed, NULL, 0, b, act, NULL, y);
}

/* The 1³ convolution that tiling convolution t is over its input space-to-depth: ci·taps channels in, at the
 * output's size; with `adjoint`, its data gradient's (co channels in, ci·taps out). */
static rm_conv_geom tiled_pointwise(const rm_conv_geom *t, int adjoint)
{
    const int64_t deep = t->ci * rm_conv_taps(t);
    rm_conv_geom g = {.n = t->n, .ci = adjoint ? t->co : deep, .co = adjoint ? deep : t->co, .k = 1, .s = 1};
    g.kd = g.sd = 1;
    for (int axis = 0; axis < 3; axis++)
        g.in[axis] = g.out[axis] = t->out[axis];
    return g;
}

rm_status rm_conv_direct_tiling_forward(rm_ctx *ctx, const rm_conv_geom *t, const float *x, const float *w,
                                        const float *b, float *y)
{
    const rm_conv_geom g = tiled_pointwise(t, 0);
    direct_plan p = plan_of(&g);
    p.tiled = t;
    return forward(ctx, &p, x, NULL, w, 0, b, NULL, NULL, y);
}

rm_status rm_conv_direct_tiling_backward_data(rm_ctx *ctx, const rm_conv_geom *t, const float *w, const float *dy,
                                              float *dx)
{
    const rm_conv_geom g = tiled_pointwise(t, 1);
    const direct_plan p = plan_of(&g);
    /* The windows leave the input's last planes, rows or columns out when its size is not a multiple of theirs:
     * their gradient is zero, and only those are not written by the planes. */
    if (t->out[0] * t->kd < t->in[0] || t->out[1] * t->k < t->in[1] || t->out[2] * t->k < t->in[2])
        memset(dx, 0, (size_t)(t->n * t->ci * t->in[0] * t->in[1] * t->in[2]) * sizeof(float));
    /* (co, ci·taps) weights read as the adjoint's, whose one tap mirrored is itself. */
    return forward(ctx, &p, dy, NULL, w, 1, NULL, NULL, t, dx);
}

/* The few-output-channels weights of one output channel: [cib][tap][16] for the kd·25 taps of a kd×5×5 kernel. */
static int64_t reduce_channel_floats(const direct_plan *p)
{
    return p->ncib * rm_conv_taps(p->g) * 16;
}

/* The few-output-channels weights [o][cib][tap][16], zero in the lanes of missing input channels (`mirrored` as
 * rm_conv_direct_forward has it). */
static void pack_reduce_weights(const direct_plan *p, int nth, const float *w, int mirrored, float *wr)
{
    const rm_conv_geom *g = p->g;
    const int64_t taps = rm_conv_taps(g);
#pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t o = 0; o < g->co; o++)
        for (int64_t cib = 0; cib < p->ncib; cib++)
            for (int64_t tap = 0; tap < taps; tap++)
                for (int64_t l = 0; l < 16; l++) {
                    const int64_t i = cib * 16 + l;
                    wr[o * reduce_channel_floats(p) + (cib * taps + tap) * 16 + l] =
                        i >= g->ci ? 0.0f
                        : mirrored ? w[(i * g->co + o) * taps + taps - 1 - tap]
                                   : w[(o * g->ci + i) * taps + tap];
                }
}

/* The sum of 16 lane sums, in one fixed order (a pairwise tree) on every instruction set. */
static float lane_total(const float *s)
{
    float t[8];
    for (int i = 0; i < 8; i++)
        t[i] = s[i] + s[i + 8];
    for (int n = 4; n >= 1; n /= 2)
        for (int i = 0; i < n; i++)
            t[i] += t[i + n];
    return t[0];
}

/* What every output plane of one few-output-channels forward shares. */
typedef struct reduce_job {
    const direct_plan *p;
    reduce_kernel kernel;
    const float *wr, *b; /* the packed weights; the bias or NULL */
    float *y;
    int64_t rw_max;
} reduce_job;

/* One output plane: each output channel's rows in tiles, each tile's lane sums added into the output. */
static void reduce_plane(const void *arg, int64_t n, int64_t z, const float *planes[RM_DIRECT_MAX_K], float *sums)
{
    const reduce_job *j = arg;
    const direct_plan *p = j->p;
    const rm_conv_geom *g = p->g;
    const int64_t Ho = g->out[1], Wo = g->out[2], ntiles = rm_ceil_div(Wo, j->rw_max);
    rm_direct_reduce_row r = {
        .lane_sums = sums, .cib_stride = p->hp * p->wp * 16, .row_stride = p->wp * 16, .ncib = p->ncib, .kd = g->kd};
    for (int64_t o = 0; o < g->co; o++) {
        r.w = j->wr + o * reduce_channel_floats(p);
        float *out = j->y + ((n * g->co + o) * g->out[0] + z) * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++) {
            height_taps(g, oy, &r.b0, &r.b1);
            for (int64_t t = 0; t < ntiles; t++) {
                const int64_t x0 = Wo * t / ntiles, x1 = Wo * (t + 1) / ntiles;
                for (int a = 0; a < g->kd; a++)
                    r.planes[a] = planes[a] ? planes[a] + (oy * p->wp + x0) * 16 : NULL;
                r.rw = (int)(x1 - x0);
                j->kernel(&r);
                for (int64_t i = 0; i < r.rw; i++)
                    out[oy * Wo + x0 + i] = (j->b ? j->b[o] : 0.0f) + lane_total(sums + i * 16);
            }
        }
    }
}

rm_status rm_conv_direct_forward_reduce(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w,
                                        int mirrored, const float *b, float *y)
{
    direct_plan p = plan_of(g);
    p.isa = ctx->isa;
    const int nth = ctx->n_threads;
    reduce_job j = {.p = &p,
                    .kernel = reduce_kernel_of(ctx->isa),
                    .b = b,
                    .y = y,
                    .rw_max = ctx->isa >= RM_ISA_AVX512 ? RM_DIRECT_AVX512_REDUCE_RW : RM_DIRECT_AVX2_REDUCE_RW};
    const size_t w_floats = rm_work_floats(g->co * reduce_channel_floats(&p)),
                 sums_floats = rm_work_floats(j.rw_max * 16);
    if (!j.kernel)
        return rm_fail(ctx, RM_ERR_INTERNAL, "the direct convolution is not built for this processor");
    float *ws = rm_ctx_workspace(ctx, (w_floats + (size_t)nth * (ring_size(&p) + sums_floats)) * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
    pack_reduce_weights(&p, nth, w, mirrored, ws);
    j.wr = ws;
    over_planes(&p, nth, ws + w_floats, sums_floats, x, reduce_plane, &j);
    return RM_OK;
}

/* Items are (input channel block, group of O output channels). A layer with few items (the last layer's one or
 * two) also splits its output planes into RANGES fixed ranges, so that every thread has work; work units (range,
 * item) are split into one contiguous run per thread. Each unit owns the running sums of its item's weights,
 * [a][b][O][c][16], and walks its range's output rows in order, so each weight adds its products in the same order
 * on any number of threads: rows (sample, z, y), then positions; then the ranges' sums in range order. */
enum { RM_DIRECT_WGRAD_RANGES = 8 };

/* The shape of one weight-gradient call's items and their sums. */
typedef struct wgrad_items {
    const rm_conv_geom *g;
    int64_t o_per, ngroups, item_floats;
    int position_lanes; /* one input channel: a sum's 16 lanes are positions mod 16, added by lane_total */
    rm_isa isa;         /* AVX-512 writes dw by register transposes */
} wgrad_items;

/* One sum of the items' sums at s: its input lane, or its 16 position lanes added. */
static float item_sum(const wgrad_items *it, const float *s)
{
    return it->position_lanes ? lane_total(s) : *s;
}

/* dw of items [i0, i1) from their sums (item i0's at s, each next item's after it); with several ranges, each
 * range's sums are range_stride floats after the previous range's, added in range order. */
static void sums_to_dw(const wgrad_items *it, int64_t i0, int64_t i1, const float *s, int64_t nranges,
                       int64_t range_stride, float *dw)
{
    const rm_conv_geom *g = it->g;
    const int64_t k = g->k, taps = rm_conv_taps(g);
    for (int64_t item = i0; item < i1; item++) {
        const int64_t cib = item / it->ngroups, o0 = item % it->ngroups * it->o_per,
                      nl = rm_min64(16, g->ci - cib * 16);
        const float *si = s + (item - i0) * it->item_floats;
        for (int64_t j = 0; j < it->o_per && o0 + j < g->co; j++) {
            float *rows[16];
            for (int64_t l = 0; l < nl; l++)
                rows[l] = dw + ((o0 + j) * g->ci + cib * 16 + l) * taps;
#if RM_HAVE_DIRECT
            if (nranges == 1 && !it->position_lanes && nl == 16 && it->isa >= RM_ISA_AVX512) {
                /* One vector of 16 input lanes per tap (ab, c), ab = a·k + b: their transposes are dw's rows. Taps
                 * as (ab, c), here and below: no divisions in these loops over all of dw. */
                const float *vecs[RM_DIRECT_MAX_K * RM_DIRECT_MAX_K * RM_DIRECT_MAX_K], **v = vecs;
                for (int64_t ab = 0; ab < taps / k; ab++)
                    for (int64_t c = 0; c < k; c++)
                        *v++ = si + (ab * it->o_per + j) * k * 16 + c * 16;
                rm_direct_deinterleave16_avx512(vecs, taps, rows);
                continue;
            }
#endif
            for (int64_t l = 0; l < nl; l++)
                for (int64_t ab = 0; ab < taps / k; ab++) {
                    const float *v = si + (ab * it->o_per + j) * k * 16 + l;
                    for (int64_t c = 0; c < k; c++) {
                        float total = item_sum(it, v + c * 16);
                        for (int64_t range = 1; range < nranges; range++)
                            total += item_sum(it, v + c * 16 + range * range_stride);
                        rows[l][ab * k + c] = total;
                    }
                }
        }
    }
}

rm_status rm_conv_direct_backward_weight(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *dy, float *dw)
{
    direct_plan p = plan_of(g);
    p.isa = ctx->isa;
    const int nth = ctx->n_threads, k = g->k;
    const int o_per = (int)rm_min64(rm_direct_wgrad_channels(ctx->isa, k), g->co);
    const wgrad_kernel kernel = wgrad_kernel_of(ctx->isa, (int)p.lanes);
    const int64_t ngroups = rm_ceil_div(g->co, o_per), nitems = p.ncib * ngroups;
    const wgrad_items items = {.g = g,
                               .o_per = o_per,
                               .ngroups = ngroups,
                               .item_floats = rm_conv_taps(g) * o_per * 16,
                               .position_lanes = p.lanes == 1,
                               .isa = ctx->isa};
    const int64_t Do = g->out[0], Ho = g->out[1], Wo = g->out[2], nplanes = g->n * Do, item_floats = items.item_floats;
    /* Counted in items of RM_DIRECT_MAX_O channels, whatever this instruction set's O: the same ranges, the same
     * sums on every instruction set. */
    const int64_t few = p.ncib * rm_ceil_div(g->co, RM_DIRECT_MAX_O) < RM_DIRECT_WGRAD_RANGES;
    const int64_t nranges = few ? rm_min64(RM_DIRECT_WGRAD_RANGES, nplanes) : 1, nunits = nranges * nitems;
    /* Output rows per kernel call: enough for 256 positions, so that short rows do not spend their time loading and
     * storing the sums and setting up calls (measured against 64: 1.06-1.10× at levels 2-4, 1.02× at level 1; 512
     * and 1024 gain 0-2% more); with one input channel, whose positions go 16 to a vector, for 2048 (measured: 2.9×
     * SGEMM at 512, 3.2× at 2048, little more beyond). */
    const int64_t rows = rm_clamp64(rm_ceil_div(p.lanes == 1 ? 2048 : 256, Wo), 1, Ho);
    /* Units whose sums stay in the L2 cache walk the rows together; a deep layer's many items go in several groups,
     * each walking the rows again (its input is small). With one range, a group's sums are zeroed before and
     * written into dw after its walk, while they are in cache, in a buffer of the thread's; with several, every
     * unit keeps its sums until the ranges are added. */
    const int64_t group = rm_clamp64(RM_DIRECT_CALL_WEIGHTS / (item_floats * (int64_t)sizeof(float)), 1, nitems);
    const size_t sums_floats = rm_work_floats(nranges > 1 ? nunits * item_floats : nth * group * item_floats);
    const size_t zeros_floats = rm_work_floats(rows * Wo), ring_floats = ring_size(&p);
    if (!kernel)
        return rm_fail(ctx, RM_ERR_INTERNAL, "the direct convolution is not built for this processor");
    float *ws = rm_ctx_workspace(ctx, (sums_floats + zeros_floats + (size_t)nth * ring_floats) * sizeof(float));
    if (!ws)
        return RM_ERR_NOMEM;
    float *sums = ws, *zeros = ws + sums_floats;
    memset(zeros, 0, zeros_floats * sizeof(float));
    if (nranges > 1)
        memset(sums, 0, sums_floats * sizeof(float));
#pragma omp parallel num_threads(nth)
    {
        const int ith = omp_get_thread_num(), nthreads = omp_get_num_threads();
        plane_ring ring = ring_start(&p, zeros + zeros_floats + (size_t)ith * ring_floats);
        int64_t first, end;
        rm_split(nunits, ith, nthreads, &first, &end);
        for (int64_t u0 = first, u1; u0 < end; u0 = u1) {
            const int64_t range = u0 / nitems;
            u1 = rm_min64(rm_min64(end, u0 + group), (range + 1) * nitems);
            /* Unit u0's sums; the next units' follow. */
            float *s0 = nranges > 1 ? sums + u0 * item_floats : sums + (size_t)ith * group * item_floats;
            if (nranges == 1)
                memset(s0, 0, (size_t)((u1 - u0) * item_floats) * sizeof(float));
            for (int64_t pl = nplanes * range / nranges; pl < nplanes * (range + 1) / nranges; pl++) {
                const int64_t n = pl / Do, z = pl % Do;
                const float *planes[RM_DIRECT_MAX_K];
                ring_planes(&ring, x, n, z, planes);
                for (int64_t oy0 = 0; oy0 < Ho; oy0 += rows) {
                    const int64_t oy1 = rm_min64(Ho, oy0 + rows);
                    for (int64_t unit = u0; unit < u1; unit++) {
                        const int64_t item = unit % nitems, cib = item / ngroups, o0 = item % ngroups * o_per;
                        rm_direct_wgrad_row r = {
                            .wo = Wo, .x_rows = p.wp * p.lanes, .dy_rows = Wo, .k = k, .o = o_per, .split = g->co == 1};
                        for (int64_t a = 0; a < g->kd; a++) {
                            if (!planes[a])
                                continue;
                            for (int64_t b = 0; b < k; b++) {
                                /* The rows whose height tap b meets the input (the others would add zeros). */
                                const int64_t lo = rm_max64(oy0, g->pad - b), hi = rm_min64(oy1, g->in[1] + g->pad - b);
                                if (lo >= hi)
                                    continue;
                                for (int64_t j = 0; j < o_per; j++)
                                    r.dy[j] = o0 + j < g->co ? dy + ((n * g->co + o0 + j) * Do + z) * Ho * Wo + lo * Wo
                                                             : zeros;
                                r.rows = hi - lo;
                                r.x = planes[a] + (cib * p.hp + lo + b) * p.wp * p.lanes;
                                r.acc = s0 + (unit - u0) * item_floats + (a * k + b) * o_per * k * 16;
                                kernel(&r);
                            }
                        }
                    }
                }
            }
            if (nranges == 1)
                sums_to_dw(&items, u0, u1, s0, 1, 0, dw);
        }
    }
    if (nranges > 1) {
#pragma omp parallel for num_threads(nth) schedule(static)
        for (int64_t item = 0; item < nitems; item++)
            sums_to_dw(&items, item, item + 1, sums + item * item_floats, nranges, nitems * item_floats, dw);
    }
    return RM_OK;
}
