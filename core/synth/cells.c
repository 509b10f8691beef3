/* Synthetic cells: a bright-field (transmitted-light) z-stack of a colony of cells with fluorescence-style targets
 * for nuclei, membranes, nucleoli and mitochondria.
 *
 * Geometry, in physical units of one in-plane voxel (a Z step is `az` ≈ 2.7 of them, as in the Allen Cell images of
 * hiPSC colonies, which are one layer of tall cells on a coverslip):
 * - Cells are columns: the Voronoi cells of centres on a jittered 2D grid (spacing 30, or 30/√density under the
 *   imaging option `density`), from the glass near the bottom of the stack to a domed top at 62–80% of the stack's
 *   height; culture medium above. A few cells are missing (gaps in the colony, medium down to the glass). Each
 *   voxel finds its nearest centre among the 9 of its grid neighbourhood and its distance to the cell's nearest side
 *   (the bisector with another centre).
 * - Membranes: the cells' sides, tops and bottoms, about one voxel thick in whatever direction they run.
 * - Nuclei: a rotated ellipsoid per cell, elongated like the cell, with a noisy surface, 2 units away from the
 *   membrane.
 * - Nucleoli: 1–3 small dense spheres inside each nucleus.
 * - Mitochondria: tubules in the cytoplasm running mostly parallel to the glass: curves where a field varying in
 *   the plane crosses zero, cut by thin sheets where a field varying mostly along Z does, present in patches.
 *
 * The transmitted-light signal is computed from an optical density (refractive-index-like) field: cytoplasm with a
 * granular texture and denser mitochondria, nuclei slightly denser but smooth, nucleoli dense, membranes thin dense
 * sheets. The density is blurred (out of focus: more along Z than in-plane) and imaged as slight absorption plus a
 * defocus phase contrast (the in-plane Laplacian), under uneven illumination, with shot and read noise (the imaging
 * options scale the contrast, the noise and the blur's widths, and add a linear illumination gradient). So each
 * target is predictable from the signal: nuclei are smooth, slightly darker regions without granules, membranes thin
 * phase edges, nucleoli dense spots with halos, mitochondria dense tubules in the cytoplasm. (The tubules are about
 * as dense as nucleoli and stand out of a fine granular texture: thinner, fainter ones were not learnable by a small
 * model in CI time, Pearson r 0.16.)
 *
 * The targets are the structures blurred by a small point-spread function, with gain, a faint background and a
 * little noise, clamped to [0, 1].
 */
#include "synth/synth_impl.h"

#define CELL_SPACING 30.0f /* at density 1 */
#define CELL_JITTER 0.3f
#define CELL_DROP 0.08f
#define NUCLEOLI_MAX 3
#define MITO_RADIUS 2.0f      /* tubule radius in the plane (Gaussian width, in-plane units) */
#define MITO_HALF_HEIGHT 6.0f /* tubule half-height (Gaussian width, in-plane units: about 2.2 Z steps) */
#define MEMBRANE_WIDTH 0.8f /* density: in voxels along the normal (wide enough not to alias along oblique lines) */
#define MEMBRANE_TARGET_WIDTH 0.55f /* the stain: thinner, smoothed by the point-spread function */
#define SPACING_Z 0.29
#define SPACING_XY 0.108

/* Random streams of one sample. */
enum {
    ST_CELLS = 1,
    ST_NUCLEUS_SHAPE,
    ST_GRANULES,
    ST_CHROMATIN,
    ST_MITO_A,
    ST_MITO_B,
    ST_MITO_PATCH,
    ST_ILLUMINATION,
    ST_SIGNAL_NOISE,
    ST_TARGET_NOISE, /* + target index */
    ST_GRADIENT = ST_TARGET_NOISE + RM_SYNTH_CELLS_TARGETS,
};

typedef struct sy_cell {
    float c[2];        /* centre (x, y), physical */
    int present;       /* 0: culture medium */
    float top;         /* height of the top at the centre */
    float dome;        /* how much lower the top is half a spacing away from the centre */
    float nc[3];       /* nucleus centre (x, y, z) */
    float inv_axes[3]; /* 1 / semi-axes of the nucleus in its frame (u, v in-plane rotated, z) */
    float mean_axis;   /* mean semi-axis: turns the ellipsoid's level into a distance */
    float cs, sn;      /* in-plane rotation of the nucleus */
    float bright;      /* nuclear stain brightness */
    float mem_bright;  /* membrane stain brightness */
    float density;     /* optical density factor of the cell */
    int n_nucleoli;
    float nl[NUCLEOLI_MAX][4]; /* centre (x, y, z) and radius */
    float nl_bright[NUCLEOLI_MAX];
} sy_cell;

typedef struct cells_geom {
    float spacing; /* of the cells' grid */
    int64_t n[2];  /* grid cells along x, y; grid index i holds grid coordinate i - 1 */
    float az;      /* Z step in in-plane units */
    float base;    /* height of the glass */
    sy_cell *cells;
} cells_geom;

/* Every cell's parameters, from hashes of (seed, cell index): independent of threads and of each other. */
static void make_cells(uint64_t seed, float ez, cells_geom *g)
{
    const uint64_t key = rm_sy_key(seed, ST_CELLS);
    const float S = g->spacing;
    for (int64_t iy = 0; iy < g->n[1]; iy++)
        for (int64_t ix = 0; ix < g->n[0]; ix++) {
            const int64_t idx = iy * g->n[0] + ix;
            sy_cell *c = &g->cells[idx];
            uint64_t r = (uint64_t)idx * 64;
#define U(lo, hi) rm_sy_uniform(key, r++, (lo), (hi))
            c->c[0] = ((float)(ix - 1) + 0.5f + U(-CELL_JITTER, CELL_JITTER)) * S;
            c->c[1] = ((float)(iy - 1) + 0.5f + U(-CELL_JITTER, CELL_JITTER)) * S;
            c->present = U(0.0f, 1.0f) >= CELL_DROP;
            c->top = ez * U(0.62f, 0.80f);
            c->dome = U(2.0f, 5.0f);
            const float height = c->top - g->base;
            c->nc[0] = c->c[0] + U(-1.5f, 1.5f);
            c->nc[1] = c->c[1] + U(-1.5f, 1.5f);
            c->nc[2] = g->base + 0.5f * height + U(-0.05f, 0.05f) * height;
            const float ra = S * U(0.42f, 0.50f);
            const float rb = ra * U(0.8f, 1.0f);
            const float rc = 0.40f * height * U(0.9f, 1.1f);
            c->inv_axes[0] = 1.0f / ra;
            c->inv_axes[1] = 1.0f / rb;
            c->inv_axes[2] = 1.0f / rc;
            c->mean_axis = (ra + rb + rc) / 3.0f;
            const float theta = U(0.0f, 3.14159265f);
            c->cs = cosf(theta);
            c->sn = sinf(theta);
            c->bright = U(0.6f, 1.0f);
            c->mem_bright = U(0.7f, 1.0f);
            c->density = U(0.9f, 1.1f);
            c->n_nucleoli = 1 + (int)U(0.0f, 2.999f);
            for (int j = 0; j < NUCLEOLI_MAX; j++) {
                /* A point in the ball of radius 0.45 of the nucleus frame: a random direction and a radius
                 * distributed as the cube root of a uniform. */
                float dir[3], len = 0.0f;
                for (int a = 0; a < 3; a++) {
                    dir[a] = rm_sy_normal(key, r++);
                    len += dir[a] * dir[a];
                }
                len = sqrtf(len) + 1e-6f;
                const float rad = 0.45f * cbrtf(U(0.0f, 1.0f));
                const float u = dir[0] / len * rad * ra, v = dir[1] / len * rad * rb;
                const float wz = dir[2] / len * rad * rc;
                /* Back from the nucleus frame: (u, v) was (x, y) rotated by theta. */
                c->nl[j][0] = c->nc[0] + c->cs * u - c->sn * v;
                c->nl[j][1] = c->nc[1] + c->sn * u + c->cs * v;
                c->nl[j][2] = c->nc[2] + wz;
                c->nl[j][3] = U(2.0f, 3.2f);
                c->nl_bright[j] = U(0.8f, 1.0f);
            }
#undef U
        }
}

/* Height of the cell's top above (x, y): a dome. */
static inline float cell_top(const sy_cell *c, float spacing, float px, float py)
{
    const float dx = px - c->c[0], dy = py - c->c[1];
    const float half = 0.5f * spacing;
    return c->top - c->dome * (dx * dx + dy * dy) / (half * half);
}

/* A membrane of Gaussian profile (width in voxels) at the cell's sides (weighted by how much of a cell is there),
 * and at its top and bottom when the voxel's cell is present. Distances in voxels. */
static inline float membrane_profile(float side, float up, float down, float width, float inside, int present)
{
    side /= width, up /= width, down /= width;
    float m = expf(-side * side) * inside;
    if (present)
        m = fmaxf(m, fmaxf(expf(-up * up), expf(-down * down)));
    return m;
}

/* The structures at one voxel. */
typedef struct voxel_parts {
    float cyto;      /* 1 inside a cell */
    float nucleus;   /* nucleus indicator, soft edge */
    float membrane;  /* membrane indicator (density) */
    float membrane_stain; /* thinner, for the target */
    float nucleolus; /* nucleolus indicator */
    float mito;      /* mitochondria indicator */
    float gran;      /* cytoplasm granules, [-1, 1] */
    float chrom;     /* chromatin texture, [-1, 1] */
    const sy_cell *cell;
} voxel_parts;

typedef struct cells_fields {
    rm_sy_noise nucleus_shape, granules, chromatin, mito_a, mito_b, mito_patch;
} cells_fields;

static void voxel_structures(const cells_geom *g, const cells_fields *f, float px, float py, float pz,
                             voxel_parts *out)
{
    const float S = g->spacing, az = g->az, base = g->base;
    const int64_t bx = (int64_t)floorf(px / S) + 1, by = (int64_t)floorf(py / S) + 1;
    const sy_cell *cand[9];
    float d2[9];
    int n = 0, best = 0;
    for (int64_t iy = by - 1; iy <= by + 1; iy++)
        for (int64_t ix = bx - 1; ix <= bx + 1; ix++) {
            const sy_cell *c = &g->cells[iy * g->n[0] + ix];
            const float dx = px - c->c[0], dy = py - c->c[1];
            cand[n] = c;
            d2[n] = dx * dx + dy * dy;
            if (d2[n] < d2[best])
                best = n;
            n++;
        }
    const sy_cell *c1 = cand[best];
    /* Distance to the nearest side: the bisector with the centre k is (d_k² − d_1²) / (2 |c_k − c_1|) away. */
    float bnd = INFINITY;
    int nb = best;
    for (int k = 0; k < n; k++) {
        if (k == best)
            continue;
        const float ex = cand[k]->c[0] - c1->c[0], ey = cand[k]->c[1] - c1->c[1];
        const float t = (d2[k] - d2[best]) / (2.0f * sqrtf(ex * ex + ey * ey));
        if (t < bnd) {
            bnd = t;
            nb = k;
        }
    }
    const sy_cell *c2 = cand[nb];
    const float top1 = cell_top(c1, S, px, py), top2 = cell_top(c2, S, px, py);
    /* Inside a column between the glass and the top, edges soft over one Z step. */
    const float above_base = rm_sy_clampf(0.5f + (pz - base) / az, 0.0f, 1.0f);
    const float in1 = c1->present ? rm_sy_clampf(0.5f + (top1 - pz) / az, 0.0f, 1.0f) * above_base : 0.0f;
    const float in2 = c2->present ? rm_sy_clampf(0.5f + (top2 - pz) / az, 0.0f, 1.0f) * above_base : 0.0f;

    /* Membranes: the sides (vertical: one voxel is one unit), the top and the bottom (one voxel is az units). */
    const float side = bnd, up = (pz - top1) / az, down = (pz - base) / az; /* in voxels */
    const float inside = fmaxf(in1, in2);
    out->membrane = membrane_profile(side, up, down, MEMBRANE_WIDTH, inside, c1->present);
    out->membrane_stain = membrane_profile(side, up, down, MEMBRANE_TARGET_WIDTH, inside, c1->present);
    out->cell = c1;
    out->cyto = in1;
    out->nucleus = out->nucleolus = out->mito = out->gran = out->chrom = 0.0f;
    if (!(in1 > 0.0f))
        return;

    /* Nucleus: the ellipsoid's level e (1 on the surface) with a noisy surface, as a distance, kept away from the
     * cell's sides, top and bottom. */
    const float rx = px - c1->nc[0], ry = py - c1->nc[1], rz = pz - c1->nc[2];
    const float u = (c1->cs * rx + c1->sn * ry) * c1->inv_axes[0];
    const float v = (-c1->sn * rx + c1->cs * ry) * c1->inv_axes[1];
    const float wz = rz * c1->inv_axes[2];
    float e = sqrtf(u * u + v * v + wz * wz);
    float sdf = 1e30f;
    if (e < 2.0f) {
        e += 0.10f * rm_sy_noise3(&f->nucleus_shape, px, py, pz);
        sdf = (e - 1.0f) * c1->mean_axis;
    }
    const float wall = fminf(bnd, fminf(top1 - pz, pz - base)); /* distance to the cell's boundary */
    sdf = fmaxf(sdf, 2.0f - wall);
    out->nucleus = rm_sy_clampf(0.5f - sdf / 1.2f, 0.0f, 1.0f);

    if (out->nucleus > 0.0f) {
        out->chrom = rm_sy_noise3(&f->chromatin, px, py, pz);
        float nl = 0.0f;
        for (int j = 0; j < c1->n_nucleoli; j++) {
            const float dx = px - c1->nl[j][0], dy = py - c1->nl[j][1], dz = (pz - c1->nl[j][2]) / 1.3f;
            const float dist = sqrtf(dx * dx + dy * dy + dz * dz);
            nl = fmaxf(nl, c1->nl_bright[j] * rm_sy_clampf(0.5f - (dist - c1->nl[j][3]), 0.0f, 1.0f));
        }
        out->nucleolus = nl * out->nucleus;
    }
    if (out->nucleus < 1.0f) {
        out->gran = rm_sy_fbm3(&f->granules, 2, px, py, pz);
        const float allowed = in1 * rm_sy_smoothstep(1.0f, 2.5f, sdf) * rm_sy_smoothstep(1.0f, 2.2f, wall);
        if (allowed > 0.0f) {
            const float patch = rm_sy_smoothstep(-0.6f, 0.0f, rm_sy_noise3(&f->mito_patch, px, py, pz));
            if (patch > 0.0f) {
                /* Distances to the zero sets, estimated as |value| / |gradient| (so tubules keep their width where a
                 * field is flat), the in-plane field's gradient in the plane, the other's along Z. */
                const rm_sy_noise *fa = &f->mito_a, *fb = &f->mito_b;
                const float a = rm_sy_noise3(fa, px, py, pz), b = rm_sy_noise3(fb, px, py, pz);
                const float ax = rm_sy_noise3(fa, px + 0.5f, py, pz) - rm_sy_noise3(fa, px - 0.5f, py, pz);
                const float ay = rm_sy_noise3(fa, px, py + 0.5f, pz) - rm_sy_noise3(fa, px, py - 0.5f, pz);
                const float bz = (rm_sy_noise3(fb, px, py, pz + 0.5f) - rm_sy_noise3(fb, px, py, pz - 0.5f));
                const float da = fabsf(a) / fmaxf(sqrtf(ax * ax + ay * ay), 1e-4f) / MITO_RADIUS;
                const float db = fabsf(b) / fmaxf(fabsf(bz), 1e-4f) / MITO_HALF_HEIGHT;
                out->mito = allowed * patch * expf(-(da * da + db * db));
            }
        }
    }
}

static const char *const cells_target_names[RM_SYNTH_CELLS_TARGETS] = {"nuclei", "membranes", "nucleoli",
                                                                       "mitochondria"};

void rm_synth_cells_free(rm_synth_cells_result *result)
{
    if (!result)
        return;
    rm_dealloc(result->signal);
    for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++)
        rm_dealloc(result->targets[t]);
    rm_dealloc(result);
}

rm_synth_cells_imaging rm_synth_cells_imaging_default(void)
{
    rm_synth_cells_imaging im = {.contrast = 1.0, .noise = 1.0, .blur = 1.0, .density = 1.0, .illumination = 0.0};
    return im;
}

/* v in [lo, hi] (lo excluded when lo_open, hi when hi_open); NaN is outside. */
static rm_status check_range(rm_ctx *ctx, const char *name, double v, double lo, int lo_open, double hi, int hi_open)
{
    if (!((lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi)))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "synth cells: %s = %g is outside %c%g, %g%c", name, v, lo_open ? '(' : '[',
                       lo, hi, hi_open ? ')' : ']');
    return RM_OK;
}

rm_status rm_synth_cells_imaging_validate(rm_ctx *ctx, const rm_synth_cells_imaging *im)
{
    if (!im)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "synth cells: imaging is NULL");
    RM_TRY(check_range(ctx, "contrast", im->contrast, 0.0, 1, 10.0, 0));
    RM_TRY(check_range(ctx, "noise", im->noise, 0.0, 0, 10.0, 0));
    RM_TRY(check_range(ctx, "blur", im->blur, 0.0, 0, 5.0, 0));
    RM_TRY(check_range(ctx, "density", im->density, 0.25, 0, 4.0, 0));
    RM_TRY(check_range(ctx, "illumination", im->illumination, 0.0, 0, 1.0, 1));
    return RM_OK;
}

rm_status rm_synth_cells(rm_ctx *ctx, uint64_t seed, int64_t d, int64_t h, int64_t w, rm_synth_cells_result **out)
{
    const rm_synth_cells_imaging im = rm_synth_cells_imaging_default();
    return rm_synth_cells_imaged(ctx, seed, d, h, w, &im, out);
}

rm_status rm_synth_cells_imaged(rm_ctx *ctx, uint64_t seed, int64_t d, int64_t h, int64_t w,
                                const rm_synth_cells_imaging *im, rm_synth_cells_result **out)
{
    static const char *const names[3] = {"D", "H", "W"};
    const int64_t size[3] = {d, h, w};
    RM_TRY(rm_sy_check_args(ctx, "synth cells", out, names, size));
    RM_TRY(rm_synth_cells_imaging_validate(ctx, im));
    const int nth = ctx->n_threads;
    const int64_t n = d * h * w;

    cells_geom g;
    g.spacing = CELL_SPACING / sqrtf((float)im->density); /* a confluent layer: more cells per area are narrower */
    g.az = (float)(SPACING_Z / SPACING_XY);
    const float ez = (float)(d - 1) * g.az + 1.0f; /* height of the stack */
    g.base = g.az; /* the glass: one Z step above the bottom of the stack */
    g.n[0] = (int64_t)ceilf((float)w / g.spacing) + 2;
    g.n[1] = (int64_t)ceilf((float)h / g.spacing) + 2;
    g.cells = rm_sy_alloc(g.n[0] * g.n[1], sizeof *g.cells);
    rm_synth_cells_result *r = rm_calloc(1, sizeof *r);
    float *tmp = rm_sy_alloc(n, sizeof *tmp);
    int ok = g.cells && r && tmp;
    if (r) {
        r->signal = rm_sy_alloc(n, sizeof *r->signal);
        ok = ok && r->signal;
        for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++) {
            r->targets[t] = rm_sy_alloc(n, sizeof *r->targets[t]);
            ok = ok && r->targets[t];
        }
    }
    if (!ok) {
        rm_dealloc(g.cells);
        rm_dealloc(tmp);
        rm_synth_cells_free(r);
        return rm_sy_nomem(ctx, "synth cells", size);
    }
    r->d = d;
    r->h = h;
    r->w = w;
    r->spacing[0] = SPACING_Z;
    r->spacing[1] = SPACING_XY;
    r->spacing[2] = SPACING_XY;
    r->n_targets = RM_SYNTH_CELLS_TARGETS;
    for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++)
        r->target_names[t] = cells_target_names[t];

    make_cells(seed, ez, &g);
    cells_fields f;
    float rot[9];
    f.nucleus_shape = rm_sy_noise_make(rm_sy_key(seed, ST_NUCLEUS_SHAPE), 7.0f, 7.0f, 7.0f, NULL);
    f.granules = rm_sy_noise_make(rm_sy_key(seed, ST_GRANULES), 3.5f, 3.5f, 7.0f, NULL);
    f.chromatin = rm_sy_noise_make(rm_sy_key(seed, ST_CHROMATIN), 3.0f, 3.0f, 6.0f, NULL);
    /* Tubules mostly parallel to the coverslip (cells are flat): curves of a field that varies in-plane, cut by
     * thin near-horizontal sheets of a field that varies mostly along Z. */
    rm_sy_rotation_xy(rm_sy_uniform(rm_sy_key(seed, ST_MITO_A), 0, 0.0f, 3.14159265f), rot);
    f.mito_a = rm_sy_noise_make(rm_sy_key(seed, ST_MITO_A), 8.0f, 8.0f, 30.0f, rot);
    f.mito_b = rm_sy_noise_make(rm_sy_key(seed, ST_MITO_B), 30.0f, 30.0f, 10.0f, NULL);
    f.mito_patch = rm_sy_noise_make(rm_sy_key(seed, ST_MITO_PATCH), 16.0f, 16.0f, 16.0f, NULL);

    /* The structures (targets before imaging) and the optical density (in signal). */
    float *nuc = r->targets[RM_SYNTH_NUCLEI], *mem = r->targets[RM_SYNTH_MEMBRANES];
    float *nol = r->targets[RM_SYNTH_NUCLEOLI], *mit = r->targets[RM_SYNTH_MITOCHONDRIA];
    float *phi = r->signal;
    #pragma omp parallel for num_threads(nth) schedule(dynamic, 4)
    for (int64_t row = 0; row < d * h; row++) {
        const int64_t z = row / h, y = row % h;
        const float pz = (float)z * g.az, py = (float)y;
        for (int64_t x = 0; x < w; x++) {
            voxel_parts p;
            voxel_structures(&g, &f, (float)x, py, pz, &p);
            const int64_t i = row * w + x;
            const sy_cell *c = p.cell;
            nuc[i] = p.nucleus * c->bright * (1.0f + 0.15f * p.chrom) * (1.0f - 0.3f * p.nucleolus);
            mem[i] = p.membrane_stain * c->mem_bright;
            nol[i] = p.nucleolus;
            mit[i] = p.mito;
            const float cyto = 0.26f + 0.10f * p.gran + 1.00f * p.mito;
            const float nucl = 0.50f + 0.03f * p.chrom + 0.45f * p.nucleolus;
            phi[i] = p.cyto * c->density * ((1.0f - p.nucleus) * cyto + p.nucleus * nucl) + 0.30f * p.membrane;
        }
    }

    /* Fluorescence: a small point-spread function, gain, faint background and noise. */
    static const float gain[RM_SYNTH_CELLS_TARGETS] = {1.0f, 1.3f, 1.2f, 2.2f};
    for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++) {
        float *a = r->targets[t];
        rm_sy_blur3(nth, a, tmp, d, h, w, 0.7f, 0.9f, 0.9f);
        const uint64_t key = rm_sy_key(seed, ST_TARGET_NOISE + (uint64_t)t);
        const float gt = gain[t];
        #pragma omp parallel for num_threads(nth) schedule(static)
        for (int64_t i = 0; i < n; i++)
            a[i] = rm_sy_clampf(0.02f + gt * a[i] + 0.008f * rm_sy_normal(key, (uint64_t)i), 0.0f, 1.0f);
    }

    /* Bright field: out-of-focus blur, then absorption and defocus phase contrast, illumination and noise. */
    const float blur = (float)im->blur;
    rm_sy_blur3(nth, phi, tmp, d, h, w, 1.5f * blur, blur, blur);
    const rm_sy_noise illum = rm_sy_noise_make(rm_sy_key(seed, ST_ILLUMINATION), 90.0f, 90.0f, 6.0f, NULL);
    const uint64_t noise_key = rm_sy_key(seed, ST_SIGNAL_NOISE);
    const float absorption = 0.30f * (float)im->contrast, phase = 2.0f * (float)im->contrast;
    const float noise = (float)im->noise;
    /* The gradient's r = (x, y) · u / reach: u a unit vector drawn from the seed, reach the largest |(x, y) · u| over
     * the field, both relative to its centre. */
    const float theta = rm_sy_uniform(rm_sy_key(seed, ST_GRADIENT), 0, 0.0f, 6.28318531f);
    const float ux = cosf(theta), uy = sinf(theta), cx = 0.5f * (float)(w - 1), cy = 0.5f * (float)(h - 1);
    const float slope = (float)im->illumination / (fabsf(ux) * cx + fabsf(uy) * cy);
    #pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t row = 0; row < d * h; row++) {
        const int64_t z = row / h, y = row % h;
        const float *c = phi + row * w;
        const float *up = phi + (z * h + (y > 0 ? y - 1 : y)) * w;
        const float *dn = phi + (z * h + (y < h - 1 ? y + 1 : y)) * w;
        for (int64_t x = 0; x < w; x++) {
            const float lap = up[x] + dn[x] + c[x > 0 ? x - 1 : x] + c[x < w - 1 ? x + 1 : x] - 4.0f * c[x];
            const float gradient = 1.0f + slope * (ux * ((float)x - cx) + uy * ((float)y - cy));
            const float light =
                1000.0f * (1.0f + 0.06f * rm_sy_noise3(&illum, (float)x, (float)y, (float)z)) * gradient;
            float v = light * (1.0f - absorption * c[x] + phase * lap);
            v = fmaxf(v, 0.0f);
            /* Shot noise (gain 0.1 count per electron) and read noise. */
            const float sd = noise * sqrtf(0.1f * v + 16.0f);
            tmp[row * w + x] = fmaxf(v + sd * rm_sy_normal(noise_key, (uint64_t)(row * w + x)), 0.0f);
        }
    }
    memcpy(r->signal, tmp, (size_t)n * sizeof *tmp);

    rm_dealloc(g.cells);
    rm_dealloc(tmp);
    *out = r;
    return RM_OK;
}
