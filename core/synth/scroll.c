/* Synthetic papyrus: a surface volume like the Vesuvius Challenge fragments, with a 2D ink label and a 2D fragment
 * mask.
 *
 * The volume is built as a density (0: air, about 1: papyrus), blurred by the scanner's point-spread function,
 * mapped to 16-bit intensities and given white noise:
 * - Fragment: a noisy ellipse whose edge is jagged at two scales; only its largest 4-connected piece is kept and its
 *   holes are filled, so the mask is one region. Outside it every layer is air.
 * - Sheet: the recto surface lies near the middle layer (a smooth height map, ±5% of the layers); below it the recto
 *   fibres run along X, and below them the verso fibres along Y (each a fractal noise stretched along its fibre
 *   direction, slightly tilted and wavy), with slow density variation and small pores. Air above and below.
 * - Cracks: thin wiggly lines mostly along the recto fibres, in a few places, where the sheet is missing.
 * - Ink: Greek-like capital letters (lines and arcs, strokes 2–3.5 pixels wide, letters 15–20 pixels tall) in
 *   rows of words like text, some rows blank, each letter with its own slant, jitter and ink strength. Ink adds a
 *   little density around the recto surface (a Gaussian profile over the layers, standard deviation one layer), so
 *   it is subtle: one to two noise standard deviations in the layer where it shows most, under one on average
 *   over the ink layers, against fibres of similar contrast that run along the lines of text. (Fainter ink, a third
 *   of this, was not learnable by a small model in CI time: F0.5 about 0.2.) The label is 1 where a stroke covers
 *   the pixel centre, inside the fragment.
 */
#include "synth/synth_impl.h"

#define AIR_LEVEL 9000.0f
#define PAPER_LEVEL 26000.0f
#define NOISE_STD 1800.0f
#define INK_DELTA 0.30f   /* density ink adds at the surface, full strength */
#define INK_SIGMA 1.0f    /* ink profile over the layers, in layers */
#define INK_REACH 1.0f    /* ink layers: within this many INK_SIGMA of the surface */
#define SHEET_FRACTION 0.35f /* sheet thickness, a fraction of the layers */
#define GLYPH_SEGS_MAX 40

enum {
    ST_MASK = 1,
    ST_MASK_EDGE,
    ST_MASK_JAG,
    ST_SURFACE,
    ST_RECTO,
    ST_VERSO,
    ST_WARP,
    ST_LOWFREQ,
    ST_PORES,
    ST_CRACK,
    ST_CRACK_GATE,
    ST_TEXT,
    ST_INK_TEXTURE,
    ST_NOISE,
};

/* ---- glyphs -------------------------------------------------------------------------------------------------- */

/* Strokes in a box of height 1 (y down, baseline at 1): lines 'L' (x0, y0, x1, y1) and elliptic arcs 'A' (cx, cy,
 * rx, ry, from, to) with angles in degrees (0: +x, 90: +y, i.e. down). */
typedef struct glyph_stroke {
    char kind;
    float v[6];
} glyph_stroke;

typedef struct glyph_def {
    float width;
    int n;
    glyph_stroke s[4];
} glyph_def;

static const glyph_def alphabet[] = {
    {0.70f, 3, {{'L', {0, 1, 0.35f, 0}}, {'L', {0.35f, 0, 0.7f, 1}}, {'L', {0.15f, 0.6f, 0.55f, 0.6f}}}}, /* Α */
    {0.60f, 2, {{'A', {0.35f, 0.5f, 0.35f, 0.5f, 40, 320}}, {'L', {0.02f, 0.5f, 0.42f, 0.5f}}}},          /* ϵ */
    {0.60f, 1, {{'A', {0.35f, 0.5f, 0.35f, 0.5f, 40, 320}}}},                                             /* Ϲ */
    {0.70f, 1, {{'A', {0.35f, 0.5f, 0.35f, 0.5f, 0, 360}}}},                                              /* Ο */
    {0.70f, 2, {{'A', {0.35f, 0.5f, 0.35f, 0.5f, 0, 360}}, {'L', {0.1f, 0.5f, 0.6f, 0.5f}}}},             /* Θ */
    {0.60f, 3, {{'L', {0, 1, 0, 0}}, {'L', {0, 0, 0.6f, 1}}, {'L', {0.6f, 1, 0.6f, 0}}}},                 /* Ν */
    {0.70f, 3, {{'L', {-0.05f, 0, 0.75f, 0}}, {'L', {0.1f, 0, 0.1f, 1}}, {'L', {0.6f, 0, 0.6f, 1}}}},     /* Π */
    {0.70f, 2, {{'L', {0, 0, 0.7f, 0}}, {'L', {0.35f, 0, 0.35f, 1}}}},                                    /* Τ */
    {0.70f, 2, {{'L', {0, 1, 0.35f, 0}}, {'L', {0.35f, 0, 0.7f, 1}}}},                                    /* Λ */
    {0.20f, 1, {{'L', {0.1f, 0, 0.1f, 1}}}},                                                              /* Ι */
    {0.60f, 3, {{'L', {0, 0, 0, 1}}, {'L', {0.6f, 0, 0.6f, 1}}, {'L', {0, 0.5f, 0.6f, 0.5f}}}},           /* Η */
    {0.60f, 3, {{'L', {0, 0, 0, 1}}, {'L', {0.55f, 0, 0, 0.55f}}, {'L', {0.15f, 0.42f, 0.6f, 1}}}},       /* Κ */
    {0.50f, 2, {{'L', {0, 0, 0, 1}}, {'A', {0, 0.27f, 0.45f, 0.27f, -90, 90}}}},                          /* Ρ */
    {0.70f, 3, {{'L', {0, 0, 0.35f, 0.5f}}, {'L', {0.7f, 0, 0.35f, 0.5f}}, {'L', {0.35f, 0.5f, 0.35f, 1}}}}, /* Υ */
    {0.80f, 4, {{'L', {0, 1, 0.08f, 0}}, {'L', {0.08f, 0, 0.4f, 0.7f}}, {'L', {0.4f, 0.7f, 0.72f, 0}},
                {'L', {0.72f, 0, 0.8f, 1}}}},                                                              /* Μ */
    {0.70f, 3, {{'L', {0, 1, 0.35f, 0}}, {'L', {0.35f, 0, 0.7f, 1}}, {'L', {0, 1, 0.7f, 1}}}},            /* Δ */
    {0.70f, 2, {{'L', {0, 0, 0.7f, 1}}, {'L', {0.7f, 0, 0, 1}}}},                                         /* Χ */
    {0.80f, 2, {{'A', {0.2f, 0.5f, 0.2f, 0.5f, 0, 180}}, {'A', {0.6f, 0.5f, 0.2f, 0.5f, 0, 180}}}},       /* ω */
    {0.50f, 2, {{'L', {0, 0, 0, 1}}, {'L', {0, 0, 0.5f, 0}}}},                                            /* Γ */
};
#define ALPHABET_SIZE ((int)(sizeof alphabet / sizeof alphabet[0]))

/* One letter placed on the page: its segments (pixel coordinates), stroke width and ink strength. */
typedef struct glyph {
    int n_segs;
    float seg[GLYPH_SEGS_MAX][4];
    float box[4]; /* x0, y0, x1, y1, widened by the stroke */
    float half_width;
    float strength;
} glyph;

typedef struct glyph_list {
    glyph *g;
    int64_t n, cap;
} glyph_list;

static int glyph_push(glyph_list *l, const glyph *g)
{
    if (l->n == l->cap) {
        const int64_t cap = l->cap ? 2 * l->cap : 64;
        glyph *p = rm_realloc(l->g, (size_t)cap * sizeof *p);
        if (!p)
            return 0;
        l->g = p;
        l->cap = cap;
    }
    l->g[l->n++] = *g;
    return 1;
}

/* Lays out rows of words over the whole page (the fragment mask clips them later). Serial: the random numbers are
 * drawn from one counter in a fixed order. Returns 0 when out of memory. */
static int layout_text(uint64_t seed, int64_t h, int64_t w, glyph_list *out)
{
    const uint64_t key = rm_sy_key(seed, ST_TEXT);
    uint64_t r = 0;
#define U(lo, hi) rm_sy_uniform(key, r++, (lo), (hi))
    const float gh = U(15.0f, 20.0f);          /* letter height */
    const float pitch = gh * U(1.8f, 2.2f);    /* line spacing */
    const float slant = U(-0.12f, 0.12f);      /* the scribe's slant */
    const float margin = U(-0.5f, 0.5f) * gh;  /* where the lines start */
    for (float top = U(0.0f, pitch) - pitch; top < (float)h; top += pitch) {
        if (U(0.0f, 1.0f) < 0.12f)
            continue; /* a blank line */
        const float tilt = U(-0.02f, 0.02f);
        float x = margin;
        int left_in_word = 2 + (int)U(0.0f, 6.999f);
        while (x < (float)w + gh) {
            const glyph_def *def = &alphabet[(int)U(0.0f, (float)ALPHABET_SIZE - 0.001f)];
            const float scale = gh * U(0.92f, 1.08f);
            const float y0 = top + tilt * x + U(-0.05f, 0.05f) * gh;
            const float sl = slant + U(-0.05f, 0.05f);
            glyph g;
            g.n_segs = 0;
            g.half_width = 0.5f * U(2.0f, 3.5f);
            g.strength = U(0.65f, 1.0f);
            const float jit = 0.04f * scale;
            for (int k = 0; k < def->n; k++) {
                const glyph_stroke *s = &def->s[k];
                /* Points of the stroke in the unit box: a line's ends, or an arc as 2–12 segments. */
                float pts[13][2];
                int np;
                if (s->kind == 'L') {
                    pts[0][0] = s->v[0], pts[0][1] = s->v[1], pts[1][0] = s->v[2], pts[1][1] = s->v[3];
                    np = 2;
                } else {
                    const float a0 = s->v[4] * 0.017453293f, a1 = s->v[5] * 0.017453293f;
                    int nseg = (int)ceilf(fabsf(s->v[5] - s->v[4]) / 30.0f);
                    nseg = nseg < 2 ? 2 : nseg > 12 ? 12 : nseg;
                    for (int i = 0; i <= nseg; i++) {
                        const float a = a0 + (a1 - a0) * (float)i / (float)nseg;
                        pts[i][0] = s->v[0] + s->v[2] * cosf(a);
                        pts[i][1] = s->v[1] + s->v[3] * sinf(a);
                    }
                    np = nseg + 1;
                }
                float prev[2] = {0, 0};
                for (int i = 0; i < np; i++) {
                    /* Slant (shear about the baseline), scale, place, and a hand's jitter. */
                    const float px = x + scale * (pts[i][0] + sl * (1.0f - pts[i][1])) + U(-jit, jit);
                    const float py = y0 + scale * pts[i][1] + U(-jit, jit);
                    if (i > 0 && g.n_segs < GLYPH_SEGS_MAX) {
                        float *sg = g.seg[g.n_segs++];
                        sg[0] = prev[0], sg[1] = prev[1], sg[2] = px, sg[3] = py;
                    }
                    prev[0] = px, prev[1] = py;
                }
            }
            g.box[0] = g.box[1] = INFINITY;
            g.box[2] = g.box[3] = -INFINITY;
            for (int i = 0; i < g.n_segs; i++)
                for (int e = 0; e < 2; e++) {
                    g.box[0] = fminf(g.box[0], g.seg[i][2 * e]);
                    g.box[1] = fminf(g.box[1], g.seg[i][2 * e + 1]);
                    g.box[2] = fmaxf(g.box[2], g.seg[i][2 * e]);
                    g.box[3] = fmaxf(g.box[3], g.seg[i][2 * e + 1]);
                }
            const float pad = g.half_width + 1.0f;
            g.box[0] -= pad, g.box[1] -= pad, g.box[2] += pad, g.box[3] += pad;
            if (g.box[2] >= 0.0f && g.box[0] < (float)w && g.box[3] >= 0.0f && g.box[1] < (float)h)
                if (!glyph_push(out, &g))
                    return 0;
            x += scale * (def->width + U(0.28f, 0.4f));
            if (--left_in_word == 0) {
                x += gh * U(0.5f, 0.9f);
                left_in_word = 2 + (int)U(0.0f, 6.999f);
            }
        }
    }
#undef U
    return 1;
}

static inline float seg_distance(const float s[4], float px, float py)
{
    const float dx = s[2] - s[0], dy = s[3] - s[1];
    const float len2 = dx * dx + dy * dy;
    float t = len2 > 0.0f ? ((px - s[0]) * dx + (py - s[1]) * dy) / len2 : 0.0f;
    t = rm_sy_clampf(t, 0.0f, 1.0f);
    const float ex = px - (s[0] + t * dx), ey = py - (s[1] + t * dy);
    return sqrtf(ex * ex + ey * ey);
}

/* Coverage of each pixel by ink (antialiased over one pixel) and the ink amount (coverage × strength), the maximum
 * over all letters: independent of the order the letters are visited in. */
static void render_text(int nth, const glyph_list *l, int64_t h, int64_t w, float *coverage, float *amount)
{
    #pragma omp parallel for num_threads(nth) schedule(dynamic, 4)
    for (int64_t y = 0; y < h; y++) {
        float *cov = coverage + y * w, *amt = amount + y * w;
        for (int64_t x = 0; x < w; x++)
            cov[x] = amt[x] = 0.0f;
        const float py = (float)y;
        for (int64_t k = 0; k < l->n; k++) {
            const glyph *g = &l->g[k];
            if (py < g->box[1] || py > g->box[3])
                continue;
            const int64_t x0 = rm_sy_clampi((int64_t)floorf(g->box[0]), 0, w - 1);
            const int64_t x1 = rm_sy_clampi((int64_t)ceilf(g->box[2]), 0, w - 1);
            for (int64_t x = x0; x <= x1; x++) {
                float dist = INFINITY;
                for (int i = 0; i < g->n_segs; i++)
                    dist = fminf(dist, seg_distance(g->seg[i], (float)x, py));
                const float c = rm_sy_clampf(g->half_width - dist + 0.5f, 0.0f, 1.0f);
                cov[x] = fmaxf(cov[x], c);
                amt[x] = fmaxf(amt[x], c * g->strength);
            }
        }
    }
}

/* ---- the fragment -------------------------------------------------------------------------------------------- */

/* Breadth-first flood over 4-neighbours from the `tail` pixels already in queue (and marked in seen): every unseen
 * neighbour (that is a 1 of mask, when only_mask) is marked `mark` and queued. Returns the pixels queued in all. */
static int64_t flood(const uint8_t *mask, int only_mask, int64_t h, int64_t w, int64_t *queue, int64_t tail,
                     uint8_t *seen, uint8_t mark)
{
    for (int64_t head = 0; head < tail;) {
        const int64_t i = queue[head++], y = i / w, x = i % w;
        const int64_t nb[4] = {x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1};
        for (int k = 0; k < 4; k++)
            if (nb[k] >= 0 && !seen[nb[k]] && (!only_mask || mask[nb[k]])) {
                seen[nb[k]] = mark;
                queue[tail++] = nb[k];
            }
    }
    return tail;
}

/* Keeps the largest 4-connected region of mask (1s) and fills its holes (0s not connected to the border).
 * queue holds h·w int64s, seen h·w bytes. */
static void mask_clean(uint8_t *mask, int64_t h, int64_t w, int64_t *queue, uint8_t *seen)
{
    const int64_t n = h * w;
    const size_t bytes = (size_t)h * (size_t)w; /* as size_t from the start: GCC cannot tell n is not negative */
    int64_t best_seed = -1, best_size = 0;
    memset(seen, 0, bytes);
    for (int64_t s = 0; s < n; s++) {
        if (!mask[s] || seen[s])
            continue;
        queue[0] = s;
        seen[s] = 1;
        const int64_t size = flood(mask, 1, h, w, queue, 1, seen, 1);
        if (size > best_size) {
            best_size = size;
            best_seed = s;
        }
    }
    /* The outside: 0s reachable from the border through 0s or through other regions' 1s (which are dropped). */
    memset(seen, 0, bytes);
    if (best_seed >= 0) {
        queue[0] = best_seed;
        seen[best_seed] = 2; /* 2: the kept region */
        flood(mask, 1, h, w, queue, 1, seen, 2);
    }
    int64_t tail = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t y = i / w, x = i % w;
        if ((y == 0 || y == h - 1 || x == 0 || x == w - 1) && seen[i] != 2) {
            seen[i] = 1; /* 1: outside */
            queue[tail++] = i;
        }
    }
    flood(mask, 0, h, w, queue, tail, seen, 1);
    /* Inside: the kept region and everything it encloses (unreached pixels). */
    for (int64_t i = 0; i < n; i++)
        mask[i] = seen[i] != 1;
}

static void make_mask(int nth, uint64_t seed, int64_t h, int64_t w, uint8_t *mask)
{
    const uint64_t key = rm_sy_key(seed, ST_MASK);
    const float cx = (float)w * rm_sy_uniform(key, 0, 0.45f, 0.55f);
    const float cy = (float)h * rm_sy_uniform(key, 1, 0.45f, 0.55f);
    const float rx = (float)w * rm_sy_uniform(key, 2, 0.38f, 0.47f);
    const float ry = (float)h * rm_sy_uniform(key, 3, 0.38f, 0.47f);
    const float th = rm_sy_uniform(key, 4, 0.0f, 3.14159265f);
    const float c = cosf(th), s = sinf(th);
    const float big = 0.25f * (float)(h < w ? h : w);
    const rm_sy_noise edge = rm_sy_noise_make(rm_sy_key(seed, ST_MASK_EDGE), big, big, big, NULL);
    const rm_sy_noise jag = rm_sy_noise_make(rm_sy_key(seed, ST_MASK_JAG), 5.0f, 5.0f, 5.0f, NULL);
    #pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            const float dx = (float)x - cx, dy = (float)y - cy;
            const float u = (c * dx + s * dy) / rx, v = (-s * dx + c * dy) / ry;
            const float q = sqrtf(u * u + v * v) + 0.18f * rm_sy_fbm3(&edge, 3, (float)x, (float)y, 0.0f) +
                            0.03f * rm_sy_noise3(&jag, (float)x, (float)y, 0.0f);
            mask[y * w + x] = q < 1.0f;
        }
}

/* ---- the volume ---------------------------------------------------------------------------------------------- */

void rm_synth_scroll_free(rm_synth_scroll_result *result)
{
    if (!result)
        return;
    rm_dealloc(result->volume);
    rm_dealloc(result->ink);
    rm_dealloc(result->mask);
    rm_dealloc(result);
}

rm_status rm_synth_scroll(rm_ctx *ctx, uint64_t seed, int64_t layers, int64_t h, int64_t w,
                          rm_synth_scroll_result **out)
{
    static const char *const names[3] = {"layers", "H", "W"};
    const int64_t size[3] = {layers, h, w};
    RM_TRY(rm_sy_check_args(ctx, "synth scroll", out, names, size));
    const int nth = ctx->n_threads;
    const int64_t L = layers, plane = h * w, n = L * plane;

    rm_synth_scroll_result *r = rm_calloc(1, sizeof *r);
    float *dens = rm_sy_alloc(n, sizeof *dens), *tmp = rm_sy_alloc(n, sizeof *tmp);
    /* Per pixel: surface height, paper factor (fragment, cracks, slow variation), ink coverage and amount. */
    float *surf = rm_sy_alloc(plane, sizeof *surf), *paper = rm_sy_alloc(plane, sizeof *paper);
    float *cov = rm_sy_alloc(plane, sizeof *cov), *amt = rm_sy_alloc(plane, sizeof *amt);
    int64_t *queue = rm_sy_alloc(plane, sizeof *queue);
    uint8_t *seen = rm_sy_alloc(plane, sizeof *seen);
    glyph_list text = {0};
    int ok = r && dens && tmp && surf && paper && cov && amt && queue && seen;
    if (r) {
        r->volume = rm_sy_alloc(n, sizeof *r->volume);
        r->ink = rm_sy_alloc(plane, sizeof *r->ink);
        r->mask = rm_sy_alloc(plane, sizeof *r->mask);
        ok = ok && r->volume && r->ink && r->mask;
    }
    ok = ok && layout_text(seed, h, w, &text);
    if (!ok) {
        rm_dealloc(dens), rm_dealloc(tmp), rm_dealloc(surf), rm_dealloc(paper), rm_dealloc(cov), rm_dealloc(amt), rm_dealloc(queue), rm_dealloc(seen), rm_dealloc(text.g);
        rm_synth_scroll_free(r);
        return rm_sy_nomem(ctx, "synth scroll", size);
    }
    r->layers = L;
    r->h = h;
    r->w = w;
    r->spacing[0] = r->spacing[1] = r->spacing[2] = 3.24;
    r->noise_std = NOISE_STD;

    /* The fragment, the text, and the per-pixel maps. */
    make_mask(nth, seed, h, w, r->mask);
    mask_clean(r->mask, h, w, queue, seen);
    render_text(nth, &text, h, w, cov, amt);
    const float thick = SHEET_FRACTION * (float)L;
    const float amp = fmaxf(0.5f, 0.05f * (float)L);
    float rot[9];
    const uint64_t kr = rm_sy_key(seed, ST_RECTO);
    const float fibre_tilt = rm_sy_uniform(kr, 0, -0.08f, 0.08f);
    rm_sy_rotation_xy(fibre_tilt, rot);
    /* Slow fields turned by random angles, so the value-noise lattice leaves no axis-aligned trace. */
    float turn[9];
    rm_sy_rotation_xy(rm_sy_uniform(rm_sy_key(seed, ST_SURFACE), 0, 0.0f, 6.2831853f), turn);
    const rm_sy_noise surface = rm_sy_noise_make(rm_sy_key(seed, ST_SURFACE), 110.0f, 110.0f, 110.0f, turn);
    rm_sy_rotation_xy(rm_sy_uniform(rm_sy_key(seed, ST_LOWFREQ), 0, 0.0f, 6.2831853f), turn);
    const rm_sy_noise lowfreq = rm_sy_noise_make(rm_sy_key(seed, ST_LOWFREQ), 45.0f, 45.0f, 45.0f, turn);
    const rm_sy_noise crack = rm_sy_noise_make(rm_sy_key(seed, ST_CRACK), 40.0f, 8.0f, 8.0f, rot);
    const rm_sy_noise crack_gate = rm_sy_noise_make(rm_sy_key(seed, ST_CRACK_GATE), 30.0f, 15.0f, 15.0f, NULL);
    const rm_sy_noise ink_tex = rm_sy_noise_make(rm_sy_key(seed, ST_INK_TEXTURE), 6.0f, 6.0f, 6.0f, NULL);
    const rm_sy_noise recto = rm_sy_noise_make(kr, 40.0f, 4.5f, 3.0f, rot);
    rm_sy_rotation_xy(1.5707963f + rm_sy_uniform(rm_sy_key(seed, ST_VERSO), 0, -0.08f, 0.08f), rot);
    const rm_sy_noise verso = rm_sy_noise_make(rm_sy_key(seed, ST_VERSO), 40.0f, 4.5f, 3.0f, rot);
    const rm_sy_noise warp = rm_sy_noise_make(rm_sy_key(seed, ST_WARP), 40.0f, 40.0f, 40.0f, NULL);
    const rm_sy_noise pores = rm_sy_noise_make(rm_sy_key(seed, ST_PORES), 3.5f, 3.5f, 2.5f, NULL);
    float smin = INFINITY, smax = -INFINITY;
    #pragma omp parallel for num_threads(nth) schedule(static) reduction(min : smin) reduction(max : smax)
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            const int64_t i = y * w + x;
            const float px = (float)x, py = (float)y;
            surf[i] = 0.5f * (float)L + amp * rm_sy_fbm3(&surface, 2, px, py, 0.0f);
            /* A crack: near the zero set of the crack field (the distance estimated as |c| / |∇c|), where the gate
             * field is high, widest in the middle of the gate's patch and tapering to its ends. */
            float gap = 0.0f;
            const float gate = rm_sy_noise3(&crack_gate, px, py, 0.0f);
            if (gate > 0.2f) {
                const float c0 = rm_sy_noise3(&crack, px, py, 0.0f);
                const float gx = rm_sy_noise3(&crack, px + 0.5f, py, 0.0f) - rm_sy_noise3(&crack, px - 0.5f, py, 0.0f);
                const float gy = rm_sy_noise3(&crack, px, py + 0.5f, 0.0f) - rm_sy_noise3(&crack, px, py - 0.5f, 0.0f);
                const float dist = fabsf(c0) / fmaxf(sqrtf(gx * gx + gy * gy), 1e-4f);
                const float half_width = 4.0f * (gate - 0.2f);
                gap = rm_sy_clampf(fminf(half_width, 1.2f) - dist + 0.5f, 0.0f, 1.0f);
            }
            paper[i] = r->mask[i] ? (1.0f - gap) * (1.0f + 0.12f * rm_sy_fbm3(&lowfreq, 2, px, py, 0.0f)) : 0.0f;
            r->ink[i] = (uint8_t)(r->mask[i] && cov[i] >= 0.5f);
            amt[i] = r->mask[i] ? amt[i] * (0.8f + 0.2f * rm_sy_noise3(&ink_tex, px, py, 0.0f)) : 0.0f;
            if (r->mask[i]) {
                smin = fminf(smin, surf[i]);
                smax = fmaxf(smax, surf[i]);
            }
        }
    if (!(smin <= smax)) /* an empty fragment (not expected): report the layers around the middle */
        smin = smax = 0.5f * (float)L;
    const float ink_centre = -0.25f; /* the profile's centre relative to the surface: on the top papyrus layer */
    r->ink_layer_first = rm_sy_clampi((int64_t)floorf(smin + ink_centre - INK_REACH * INK_SIGMA), 0, L - 1);
    r->ink_layer_last = rm_sy_clampi((int64_t)ceilf(smax + ink_centre + INK_REACH * INK_SIGMA), 0, L - 1);

    /* Density. */
    #pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t row = 0; row < L * h; row++) {
        const int64_t z = row / h, y = row % h;
        const float pz = (float)z, py = (float)y;
        for (int64_t x = 0; x < w; x++) {
            const int64_t i = y * w + x;
            float v = 0.0f;
            if (paper[i] > 0.0f) {
                const float s = surf[i], px = (float)x;
                const float occ = rm_sy_clampf(s - pz + 0.5f, 0.0f, 1.0f) *
                                  rm_sy_clampf(pz - (s - thick) + 0.5f, 0.0f, 1.0f);
                if (occ > 0.0f) {
                    const float wr = rm_sy_clampf(pz - (s - 0.5f * thick) + 0.5f, 0.0f, 1.0f);
                    const float wv = 2.0f * rm_sy_noise3(&warp, px, py, pz);
                    float fib = 0.0f;
                    if (wr > 0.0f)
                        fib += wr * rm_sy_fbm3(&recto, 2, px, py + wv, pz);
                    if (wr < 1.0f)
                        fib += (1.0f - wr) * rm_sy_fbm3(&verso, 2, px + wv, py, pz);
                    const float pore = rm_sy_smoothstep(0.45f, 0.75f, rm_sy_noise3(&pores, px, py, pz));
                    v = occ * (1.0f + 0.35f * fib) * (1.0f - 0.6f * pore);
                }
                const float dz = (pz - (s + ink_centre)) / INK_SIGMA;
                v += INK_DELTA * amt[i] * expf(-0.5f * dz * dz);
                v *= paper[i];
            }
            dens[row * w + x] = v;
        }
    }
    rm_sy_blur3(nth, dens, tmp, L, h, w, 0.6f, 0.6f, 0.6f);

    /* Intensities with noise, rounded to 16 bits. */
    const uint64_t noise_key = rm_sy_key(seed, ST_NOISE);
    #pragma omp parallel for num_threads(nth) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float v = AIR_LEVEL + (PAPER_LEVEL - AIR_LEVEL) * dens[i] + NOISE_STD * rm_sy_normal(noise_key, (uint64_t)i);
        r->volume[i] = (uint16_t)rm_sy_clampf(roundf(v), 0.0f, 65535.0f);
    }

    rm_dealloc(dens), rm_dealloc(tmp), rm_dealloc(surf), rm_dealloc(paper), rm_dealloc(cov), rm_dealloc(amt), rm_dealloc(queue), rm_dealloc(seen), rm_dealloc(text.g);
    *out = r;
    return RM_OK;
}
