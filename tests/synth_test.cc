// Synthetic samples: determinism (same seed → bit-identical on 1 and 2 threads, different seeds differ), value
// ranges, and statistics showing the data is meaningful and learnable: cell structures of plausible size and
// place, a transmitted-light signal whose local statistics differ by structure; imaging options that change what
// they say by the amounts they say, measured on the signal; a papyrus fragment that is one region, ink only inside it,
// and ink that changes the density of the middle layers subtly.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "repmode/synth.h"
#include "test_util.h"

namespace {

using rmtest::Ctx;

struct CellsDeleter {
    void operator()(rm_synth_cells_result *r) const { rm_synth_cells_free(r); }
};
struct ScrollDeleter {
    void operator()(rm_synth_scroll_result *r) const { rm_synth_scroll_free(r); }
};
using Cells = std::unique_ptr<rm_synth_cells_result, CellsDeleter>;
using Scroll = std::unique_ptr<rm_synth_scroll_result, ScrollDeleter>;

constexpr int64_t D = 16, H = 64, W = 64;

Cells make_cells(uint64_t seed, int threads = 2, int64_t d = D, int64_t h = H, int64_t w = W)
{
    Ctx ctx(threads);
    rm_synth_cells_result *r = nullptr;
    const rm_status s = rm_synth_cells(ctx, seed, d, h, w, &r);
    EXPECT_EQ(s, RM_OK) << rm_ctx_error(ctx);
    return Cells(r);
}

Scroll make_scroll(uint64_t seed, int threads = 2, int64_t l = D, int64_t h = H, int64_t w = W)
{
    Ctx ctx(threads);
    rm_synth_scroll_result *r = nullptr;
    const rm_status s = rm_synth_scroll(ctx, seed, l, h, w, &r);
    EXPECT_EQ(s, RM_OK) << rm_ctx_error(ctx);
    return Scroll(r);
}

template <typename T> bool same_bytes(const T *a, const T *b, int64_t n)
{
    return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(T)) == 0;
}

template <typename T> double fraction_different(const T *a, const T *b, int64_t n)
{
    int64_t diff = 0;
    for (int64_t i = 0; i < n; i++)
        diff += a[i] != b[i];
    return static_cast<double>(diff) / static_cast<double>(n);
}

// Mean and standard deviation of v over the voxels where keep(i).
template <typename F> std::pair<double, double> mean_std(const std::vector<float> &v, F keep)
{
    double s = 0, q = 0, n = 0;
    for (size_t i = 0; i < v.size(); i++)
        if (keep(static_cast<int64_t>(i))) {
            s += v[i];
            q += static_cast<double>(v[i]) * v[i];
            n++;
        }
    if (n == 0)
        return {NAN, NAN};
    const double m = s / n;
    return {m, std::sqrt(std::max(0.0, q / n - m * m))};
}

// In-plane (k×k window, clipped at the borders) mean and standard deviation of every voxel of a (d, h, w) volume.
void local_stats(const float *x, int64_t d, int64_t h, int64_t w, int k, std::vector<float> &mean,
                 std::vector<float> &sd)
{
    const int r = k / 2;
    mean.assign(static_cast<size_t>(d * h * w), 0.0f);
    sd.assign(mean.size(), 0.0f);
    for (int64_t z = 0; z < d; z++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t xx = 0; xx < w; xx++) {
                double s = 0, q = 0, n = 0;
                for (int64_t yy = std::max<int64_t>(0, y - r); yy <= std::min(h - 1, y + r); yy++)
                    for (int64_t x2 = std::max<int64_t>(0, xx - r); x2 <= std::min(w - 1, xx + r); x2++) {
                        const double v = x[(z * h + yy) * w + x2];
                        s += v, q += v * v, n++;
                    }
                const size_t i = static_cast<size_t>((z * h + y) * w + xx);
                mean[i] = static_cast<float>(s / n);
                sd[i] = static_cast<float>(std::sqrt(std::max(0.0, q / n - (s / n) * (s / n))));
            }
}

// ---- cells -------------------------------------------------------------------------------------------------------

TEST(SynthCells, ShapesNamesAndSpacing)
{
    const Cells c = make_cells(1);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->d, D);
    EXPECT_EQ(c->h, H);
    EXPECT_EQ(c->w, W);
    ASSERT_EQ(c->n_targets, RM_SYNTH_CELLS_TARGETS);
    EXPECT_STREQ(c->target_names[RM_SYNTH_NUCLEI], "nuclei");
    EXPECT_STREQ(c->target_names[RM_SYNTH_MEMBRANES], "membranes");
    EXPECT_STREQ(c->target_names[RM_SYNTH_NUCLEOLI], "nucleoli");
    EXPECT_STREQ(c->target_names[RM_SYNTH_MITOCHONDRIA], "mitochondria");
    EXPECT_GT(c->spacing[0], c->spacing[1]); // coarser along Z, as in a microscope's z-stack
    EXPECT_EQ(c->spacing[1], c->spacing[2]);
    EXPECT_NE(c->signal, nullptr);
    for (int t = 0; t < c->n_targets; t++)
        EXPECT_NE(c->targets[t], nullptr);
}

TEST(SynthCells, SameSeedIsBitIdenticalOnOneAndTwoThreads)
{
    const Cells a = make_cells(7, 1), b = make_cells(7, 2), c = make_cells(7, 2);
    ASSERT_TRUE(a && b && c);
    const int64_t n = D * H * W;
    EXPECT_TRUE(same_bytes(a->signal, b->signal, n));
    EXPECT_TRUE(same_bytes(b->signal, c->signal, n));
    for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++) {
        EXPECT_TRUE(same_bytes(a->targets[t], b->targets[t], n)) << a->target_names[t];
        EXPECT_TRUE(same_bytes(b->targets[t], c->targets[t], n)) << a->target_names[t];
    }
}

TEST(SynthCells, DifferentSeedsDiffer)
{
    const int64_t n = D * H * W;
    const Cells a = make_cells(1);
    for (uint64_t other : {UINT64_C(2), UINT64_C(0), ~UINT64_C(0)}) {
        const Cells b = make_cells(other);
        ASSERT_TRUE(a && b);
        EXPECT_GT(fraction_different(a->signal, b->signal, n), 0.95) << "seed " << other;
        // Nuclei in different places: their masks overlap no more than chance allows.
        int64_t both = 0, either = 0;
        for (int64_t i = 0; i < n; i++) {
            const bool p = a->targets[RM_SYNTH_NUCLEI][i] > 0.5f, q = b->targets[RM_SYNTH_NUCLEI][i] > 0.5f;
            both += p && q;
            either += p || q;
        }
        EXPECT_LT(static_cast<double>(both) / static_cast<double>(either), 0.5) << "seed " << other;
    }
}

TEST(SynthCells, TargetsWithinUnitIntervalAndSignalPlausible)
{
    for (uint64_t seed : {1, 2, 3}) {
        const Cells c = make_cells(seed);
        ASSERT_TRUE(c);
        const int64_t n = D * H * W;
        for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++) {
            const float *v = c->targets[t];
            float lo = 1, hi = 0;
            for (int64_t i = 0; i < n; i++) {
                ASSERT_TRUE(v[i] >= 0.0f && v[i] <= 1.0f) << c->target_names[t] << " voxel " << i << " = " << v[i];
                lo = std::min(lo, v[i]), hi = std::max(hi, v[i]);
            }
            EXPECT_LT(lo, 0.05f) << c->target_names[t];
            EXPECT_GT(hi, 0.6f) << c->target_names[t]; // every structure is present and bright somewhere
        }
        const std::vector<float> s(c->signal, c->signal + n);
        for (float v : s)
            ASSERT_TRUE(std::isfinite(v) && v >= 0.0f);
        const auto [m, sd] = mean_std(s, [](int64_t) { return true; });
        EXPECT_GT(m, 500.0);
        EXPECT_LT(m, 2000.0);
        EXPECT_GT(sd / m, 0.02); // contrast above the noise ...
        EXPECT_LT(sd / m, 0.3);  // ... but weak, as in bright field
    }
}

TEST(SynthCells, NucleiCoverTenToFiftyPercent)
{
    for (uint64_t seed : {1, 2, 3, 4, 5}) {
        const Cells c = make_cells(seed);
        ASSERT_TRUE(c);
        const int64_t n = D * H * W;
        int64_t in = 0;
        for (int64_t i = 0; i < n; i++)
            in += c->targets[RM_SYNTH_NUCLEI][i] > 0.25f;
        const double f = static_cast<double>(in) / static_cast<double>(n);
        EXPECT_GT(f, 0.10) << "seed " << seed;
        EXPECT_LT(f, 0.50) << "seed " << seed;
    }
}

TEST(SynthCells, MembranesAreThinSheets)
{
    for (uint64_t seed : {1, 2, 3}) {
        const Cells c = make_cells(seed);
        ASSERT_TRUE(c);
        const float *m = c->targets[RM_SYNTH_MEMBRANES];
        // Above the glass: the cells' bottoms on the glass make one whole slice of membrane.
        int64_t on = 0, thin = 0;
        for (int64_t z = 3; z < D; z++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    if (m[(z * H + y) * W + x] <= 0.5f)
                        continue;
                    on++;
                    // Thin: off the membrane within 2 voxels along some axis.
                    bool found = false;
                    for (int k = -2; k <= 2 && !found; k++) {
                        auto off = [&](int64_t zz, int64_t yy, int64_t xx) {
                            return zz >= 0 && zz < D && yy >= 0 && yy < H && xx >= 0 && xx < W &&
                                   m[(zz * H + yy) * W + xx] < 0.25f;
                        };
                        found = off(z + k, y, x) || off(z, y + k, x) || off(z, y, x + k);
                    }
                    thin += found;
                }
        const double f = static_cast<double>(on) / static_cast<double>((D - 3) * H * W);
        EXPECT_GT(f, 0.005) << "seed " << seed;
        EXPECT_LT(f, 0.15) << "seed " << seed;
        EXPECT_GT(static_cast<double>(thin) / static_cast<double>(on), 0.95) << "seed " << seed;
    }
}

TEST(SynthCells, NucleoliLieInsideNucleiAndMitochondriaOutside)
{
    for (uint64_t seed : {1, 2, 3}) {
        const Cells c = make_cells(seed);
        ASSERT_TRUE(c);
        const float *nuc = c->targets[RM_SYNTH_NUCLEI], *nol = c->targets[RM_SYNTH_NUCLEOLI];
        const float *mit = c->targets[RM_SYNTH_MITOCHONDRIA];
        int64_t nol_on = 0, nol_in = 0, mit_on = 0, mit_out = 0, nuc_on = 0;
        for (int64_t i = 0; i < D * H * W; i++) {
            nuc_on += nuc[i] > 0.5f;
            if (nol[i] > 0.5f) {
                nol_on++;
                nol_in += nuc[i] > 0.25f;
            }
            if (mit[i] > 0.5f) {
                mit_on++;
                mit_out += nuc[i] < 0.25f;
            }
        }
        EXPECT_GT(nol_on, 0) << "seed " << seed;
        EXPECT_LT(nol_on, nuc_on / 5) << "seed " << seed; // small spots
        EXPECT_GT(mit_on, 0) << "seed " << seed;
        EXPECT_GE(static_cast<double>(nol_in) / static_cast<double>(nol_on), 0.99) << "seed " << seed;
        EXPECT_GE(static_cast<double>(mit_out) / static_cast<double>(mit_on), 0.97) << "seed " << seed;
    }
}

// The signal predicts each target: local statistics differ by structure by a clear margin.
TEST(SynthCells, SignalLocalStatisticsDifferByStructure)
{
    for (uint64_t seed : {1, 2, 3}) {
        const Cells c = make_cells(seed);
        ASSERT_TRUE(c);
        const int64_t n = D * H * W;
        const std::vector<float> sig(c->signal, c->signal + n);
        const float *nuc = c->targets[RM_SYNTH_NUCLEI], *mem = c->targets[RM_SYNTH_MEMBRANES];
        const float *nol = c->targets[RM_SYNTH_NUCLEOLI], *mit = c->targets[RM_SYNTH_MITOCHONDRIA];
        std::vector<float> m5, s5, m3, s3;
        local_stats(c->signal, D, H, W, 5, m5, s5);
        local_stats(c->signal, D, H, W, 3, m3, s3);

        // Cytoplasm near nuclei: no nucleus, no membrane, within 4 voxels in-plane of a nucleus.
        std::vector<char> near(static_cast<size_t>(n), 0);
        for (int64_t z = 0; z < D; z++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    if (nuc[(z * H + y) * W + x] <= 0.5f)
                        continue;
                    for (int64_t yy = std::max<int64_t>(0, y - 4); yy <= std::min(H - 1, y + 4); yy++)
                        for (int64_t xx = std::max<int64_t>(0, x - 4); xx <= std::min(W - 1, x + 4); xx++)
                            near[static_cast<size_t>((z * H + yy) * W + xx)] = 1;
                }
        auto in_nucleus = [&](int64_t i) { return nuc[i] > 0.5f && nol[i] < 0.05f; };
        auto cytoplasm = [&](int64_t i) { return near[i] && nuc[i] < 0.05f && mem[i] < 0.1f; };

        // Nuclei: darker on average (denser), and smoother (less texture) than the cytoplasm around them.
        const auto [mn, sn] = mean_std(m5, in_nucleus);
        const auto [mc, sc] = mean_std(m5, cytoplasm);
        EXPECT_GT((mc - mn) / std::sqrt(0.5 * (sn * sn + sc * sc)), 1.0) << "seed " << seed;
        const auto [tn, tsn] = mean_std(s3, in_nucleus);
        const auto [tc, tsc] = mean_std(s3, cytoplasm);
        EXPECT_LT(tn, 0.85 * tc) << "seed " << seed << ": texture in nuclei " << tn << ", in cytoplasm " << tc;

        // Nucleoli: dense dark spots, far darker than the rest of the nucleus.
        const auto [ml, sl] = mean_std(sig, [&](int64_t i) { return nol[i] > 0.5f; });
        const auto [mr, sr] = mean_std(sig, in_nucleus);
        EXPECT_GT(mr - ml, 2.0 * sr) << "seed " << seed;

        // Membranes: thin phase edges, strong local contrast.
        const auto [tm, tsm] = mean_std(s3, [&](int64_t i) { return mem[i] > 0.5f; });
        const auto [to, tso] = mean_std(s3, [&](int64_t i) { return mem[i] < 0.05f; });
        EXPECT_GT(tm, 1.4 * to) << "seed " << seed;

        // Mitochondria: denser (darker) than the cytoplasm without them.
        const auto [mm, smm] = mean_std(sig, [&](int64_t i) { return mit[i] > 0.5f; });
        const auto [mo, smo] = mean_std(sig, [&](int64_t i) { return cytoplasm(i) && mit[i] < 0.05f; });
        EXPECT_GT(mo - mm, 0.75 * smo) << "seed " << seed;
    }
}

TEST(SynthCells, RejectsBadSizesWithAMessage)
{
    Ctx ctx(1);
    rm_synth_cells_result *r = nullptr;
    EXPECT_EQ(rm_synth_cells(ctx, 1, 7, 64, 64, &r), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("D = 7"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_synth_cells(ctx, 1, 16, 0, 64, &r), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("H = 0"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_synth_cells(ctx, 1, 16, 64, -3, &r), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("W = -3"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_synth_cells(ctx, 1, 1024, 4096, 4096, &r), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("1024×4096×4096"), std::string::npos) << rm_ctx_error(ctx);
    // Large enough to overflow a naive product.
    EXPECT_EQ(rm_synth_cells(ctx, 1, INT64_C(1) << 40, INT64_C(1) << 40, INT64_C(1) << 40, &r), RM_ERR_ARGUMENT);
    EXPECT_EQ(r, nullptr);
    EXPECT_EQ(rm_synth_cells(ctx, 1, 16, 64, 64, nullptr), RM_ERR_ARGUMENT);
    rm_synth_cells_free(nullptr);
}

TEST(SynthCells, SmallestSizeWorks)
{
    const Cells c = make_cells(3, 2, RM_SYNTH_MIN_SIZE, RM_SYNTH_MIN_SIZE, RM_SYNTH_MIN_SIZE);
    ASSERT_TRUE(c);
    for (int64_t i = 0; i < int64_t{RM_SYNTH_MIN_SIZE} * RM_SYNTH_MIN_SIZE * RM_SYNTH_MIN_SIZE; i++)
        ASSERT_TRUE(std::isfinite(c->signal[i]));
}

// ---- cells: imaging options -------------------------------------------------------------------------------------

Cells make_imaged(uint64_t seed, const rm_synth_cells_imaging &im, int threads = 2, int64_t d = D, int64_t h = H,
                  int64_t w = W)
{
    Ctx ctx(threads);
    rm_synth_cells_result *r = nullptr;
    const rm_status s = rm_synth_cells_imaged(ctx, seed, d, h, w, &im, &r);
    EXPECT_EQ(s, RM_OK) << rm_ctx_error(ctx);
    return Cells(r);
}

// Imaging with one field changed from the defaults.
rm_synth_cells_imaging imaging_with(double rm_synth_cells_imaging::*field, double value)
{
    rm_synth_cells_imaging im = rm_synth_cells_imaging_default();
    im.*field = value;
    return im;
}

double stddev(const std::vector<double> &v)
{
    double s = 0, q = 0;
    for (double x : v)
        s += x, q += x * x;
    const double m = s / static_cast<double>(v.size());
    return std::sqrt(std::max(0.0, q / static_cast<double>(v.size()) - m * m));
}

// a - b, voxel by voxel.
std::vector<double> difference(const float *a, const float *b, int64_t n)
{
    std::vector<double> d(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++)
        d[static_cast<size_t>(i)] = static_cast<double>(a[i]) - b[i];
    return d;
}

TEST(SynthCellsImaging, DefaultsAreTodaysSampleBitForBit)
{
    const rm_synth_cells_imaging im = rm_synth_cells_imaging_default();
    EXPECT_EQ(im.contrast, 1.0);
    EXPECT_EQ(im.noise, 1.0);
    EXPECT_EQ(im.blur, 1.0);
    EXPECT_EQ(im.density, 1.0);
    EXPECT_EQ(im.illumination, 0.0);
    for (uint64_t seed : {UINT64_C(0), UINT64_C(9)}) {
        const Cells a = make_cells(seed), b = make_imaged(seed, im);
        ASSERT_TRUE(a && b);
        EXPECT_TRUE(same_bytes(a->signal, b->signal, D * H * W)) << "seed " << seed;
        for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++)
            EXPECT_TRUE(same_bytes(a->targets[t], b->targets[t], D * H * W)) << a->target_names[t];
    }
}

TEST(SynthCellsImaging, SignalOptionsChangeTheSignalOnlyAndTheTargetsNotABit)
{
    const int64_t n = D * H * W;
    const Cells a = make_cells(4);
    ASSERT_TRUE(a);
    const std::pair<double rm_synth_cells_imaging::*, double> changes[] = {
        {&rm_synth_cells_imaging::contrast, 2.0},
        {&rm_synth_cells_imaging::noise, 0.5},
        {&rm_synth_cells_imaging::blur, 2.0},
        {&rm_synth_cells_imaging::illumination, 0.5},
    };
    for (const auto &[field, value] : changes) {
        const Cells b = make_imaged(4, imaging_with(field, value));
        ASSERT_TRUE(b);
        EXPECT_GT(fraction_different(a->signal, b->signal, n), 0.5) << "value " << value;
        for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++)
            EXPECT_TRUE(same_bytes(a->targets[t], b->targets[t], n)) << a->target_names[t] << ", value " << value;
    }
}

TEST(SynthCellsImaging, SameImagingIsBitIdenticalOnOneAndTwoThreads)
{
    const int64_t n = D * H * W;
    const rm_synth_cells_imaging im = {/*contrast*/ 2.5, /*noise*/ 0.7, /*blur*/ 1.6, /*density*/ 1.8,
                                       /*illumination*/ 0.4};
    const Cells c = make_imaged(4, im, 1), d = make_imaged(4, im, 2);
    ASSERT_TRUE(c && d);
    EXPECT_TRUE(same_bytes(c->signal, d->signal, n));
    for (int t = 0; t < RM_SYNTH_CELLS_TARGETS; t++)
        EXPECT_TRUE(same_bytes(c->targets[t], d->targets[t], n)) << c->target_names[t];
}

TEST(SynthCellsImaging, NoiseScalesTheShotAndReadNoise)
{
    constexpr int64_t d = 24; // tall enough for slices of culture medium above the cells
    const int64_t n = d * H * W;
    for (uint64_t seed : {1, 2}) {
        const auto noise = &rm_synth_cells_imaging::noise;
        const Cells s0 = make_imaged(seed, imaging_with(noise, 0.0), 2, d);
        const Cells s1 = make_imaged(seed, imaging_with(noise, 1.0), 2, d);
        const Cells s2 = make_imaged(seed, imaging_with(noise, 2.0), 2, d);
        ASSERT_TRUE(s0 && s1 && s2);
        // The same draws, scaled: twice the noise at 2.
        const double sd1 = stddev(difference(s1->signal, s0->signal, n));
        const double sd2 = stddev(difference(s2->signal, s0->signal, n));
        EXPECT_NEAR(sd2 / sd1, 2.0, 0.01) << "seed " << seed;
        // At 1 it is today's model: variance 0.1 · counts + 16 (shot noise at gain 0.1, read noise 4 counts).
        double mean0 = 0;
        for (int64_t i = 0; i < n; i++)
            mean0 += s0->signal[i];
        mean0 /= static_cast<double>(n);
        EXPECT_NEAR(sd1 * sd1 / (0.1 * mean0 + 16.0), 1.0, 0.05) << "seed " << seed;
        // Independently of that: the difference of neighbours in the top slice (medium, a smooth background), whose
        // standard deviation is √2 times the noise's there.
        auto neighbour_sd = [&](const float *s) {
            std::vector<double> v;
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x + 1 < W; x++) {
                    const int64_t i = ((d - 1) * H + y) * W + x;
                    v.push_back(static_cast<double>(s[i + 1]) - s[i]);
                }
            return stddev(v) / std::sqrt(2.0);
        };
        const double r0 = neighbour_sd(s0->signal), r1 = neighbour_sd(s1->signal), r2 = neighbour_sd(s2->signal);
        EXPECT_LT(r0, 0.05 * r1) << "seed " << seed << ": noise-free, " << r0 << " against " << r1;
        EXPECT_NEAR(r2 / r1, 2.0, 0.2) << "seed " << seed;
        EXPECT_NEAR(r1 / std::sqrt(0.1 * 1000.0 + 16.0), 1.0, 0.15) << "seed " << seed; // about 1000 counts there
    }
}

// Root mean square of the differences of in-plane neighbours (along X and Y): the signal's gradient energy. Only
// pairs of voxels both in `keep` count, when it is given.
double gradient_rms(const std::vector<double> &v, int64_t d, int64_t h, int64_t w, const std::vector<char> &keep = {})
{
    double q = 0, n = 0;
    for (int64_t z = 0; z < d; z++)
        for (int64_t y = 0; y + 1 < h; y++)
            for (int64_t x = 0; x + 1 < w; x++) {
                const size_t i = static_cast<size_t>((z * h + y) * w + x), right = i + 1,
                             below = i + static_cast<size_t>(w);
                if (keep.empty() || (keep[i] && keep[right])) {
                    q += (v[right] - v[i]) * (v[right] - v[i]);
                    n++;
                }
                if (keep.empty() || (keep[i] && keep[below])) {
                    q += (v[below] - v[i]) * (v[below] - v[i]);
                    n++;
                }
            }
    return std::sqrt(q / n);
}

std::vector<double> as_double(const float *a, int64_t n)
{
    return std::vector<double>(a, a + n);
}

TEST(SynthCellsImaging, ContrastScalesTheDeviationFromTheLight)
{
    const int64_t n = D * H * W;
    for (uint64_t seed : {1, 2}) {
        // Noise-free, the signal is light · (1 − contrast · (absorption − phase)), clamped to 0 where the phase term
        // is strong: affine in the contrast where not clamped, and the part that does not change is the light,
        // without any structure of the cells.
        rm_synth_cells_imaging im = imaging_with(&rm_synth_cells_imaging::noise, 0.0);
        const Cells s1 = make_imaged(seed, im);
        im.contrast = 2.0;
        const Cells s2 = make_imaged(seed, im);
        im.contrast = 0.5;
        const Cells sh = make_imaged(seed, im);
        ASSERT_TRUE(s1 && s2 && sh);
        std::vector<char> linear(static_cast<size_t>(n)); // not clamped at contrast 2, so at 1 and 0.5 neither
        std::vector<double> light(static_cast<size_t>(n));
        double affine = 0, n_linear = 0;
        for (int64_t i = 0; i < n; i++) {
            const size_t k = static_cast<size_t>(i);
            linear[k] = s2->signal[i] > 0.0f;
            light[k] = 2.0 * s1->signal[i] - s2->signal[i];
            if (linear[k]) {
                affine = std::max(affine, std::fabs(light[k] - (2.0 * sh->signal[i] - s1->signal[i])));
                n_linear++;
            }
        }
        EXPECT_GT(n_linear, 0.95 * static_cast<double>(n)) << "seed " << seed;
        EXPECT_LT(affine, 0.05) << "seed " << seed;
        const double light_rms = gradient_rms(light, D, H, W, linear);
        const double signal_rms = gradient_rms(as_double(s1->signal, n), D, H, W, linear);
        EXPECT_LT(light_rms, 0.03 * signal_rms) << "seed " << seed << ": " << light_rms << " against " << signal_rms;
        // Deviations from the light: twice at contrast 2, half at 0.5; nuclei darker than the light.
        double dev1 = 0, dev2 = 0, devh = 0, nuclei = 0, n_nuclei = 0;
        for (int64_t i = 0; i < n; i++) {
            const double l = light[static_cast<size_t>(i)];
            if (!linear[static_cast<size_t>(i)])
                continue;
            dev1 += std::fabs(s1->signal[i] - l), dev2 += std::fabs(s2->signal[i] - l);
            devh += std::fabs(sh->signal[i] - l);
            if (s1->targets[RM_SYNTH_NUCLEI][i] > 0.5f)
                nuclei += s1->signal[i] - l, n_nuclei++;
        }
        EXPECT_NEAR(dev2 / dev1, 2.0, 1e-3) << "seed " << seed;
        EXPECT_NEAR(devh / dev1, 0.5, 1e-3) << "seed " << seed;
        EXPECT_LT(nuclei / n_nuclei, -0.05 * 1000.0) << "seed " << seed;
    }
}

// Connected components (6-connected) of target > threshold.
int64_t count_components(const float *a, int64_t d, int64_t h, int64_t w, float threshold)
{
    std::vector<char> seen(static_cast<size_t>(d * h * w), 0);
    std::vector<int64_t> stack;
    int64_t count = 0;
    for (int64_t s = 0; s < d * h * w; s++) {
        if (seen[static_cast<size_t>(s)] || !(a[s] > threshold))
            continue;
        count++;
        seen[static_cast<size_t>(s)] = 1;
        stack.assign(1, s);
        while (!stack.empty()) {
            const int64_t i = stack.back();
            stack.pop_back();
            const int64_t z = i / (h * w), y = i / w % h, x = i % w;
            const int64_t nb[6][3] = {{z - 1, y, x}, {z + 1, y, x}, {z, y - 1, x},
                                      {z, y + 1, x}, {z, y, x - 1}, {z, y, x + 1}};
            for (const auto &p : nb) {
                if (p[0] < 0 || p[0] >= d || p[1] < 0 || p[1] >= h || p[2] < 0 || p[2] >= w)
                    continue;
                const int64_t j = (p[0] * h + p[1]) * w + p[2];
                if (!seen[static_cast<size_t>(j)] && a[j] > threshold) {
                    seen[static_cast<size_t>(j)] = 1;
                    stack.push_back(j);
                }
            }
        }
    }
    return count;
}

TEST(SynthCellsImaging, DensityScalesTheNumberOfCells)
{
    constexpr int64_t h = 160, w = 160;
    const auto density = &rm_synth_cells_imaging::density;
    double ones = 0, twos = 0, halves = 0;
    for (uint64_t seed : {1, 2, 3}) {
        const Cells c1 = make_imaged(seed, imaging_with(density, 1.0), 2, D, h, w);
        const Cells c2 = make_imaged(seed, imaging_with(density, 2.0), 2, D, h, w);
        const Cells ch = make_imaged(seed, imaging_with(density, 0.5), 2, D, h, w);
        ASSERT_TRUE(c1 && c2 && ch);
        ones += static_cast<double>(count_components(c1->targets[RM_SYNTH_NUCLEI], D, h, w, 0.5f));
        twos += static_cast<double>(count_components(c2->targets[RM_SYNTH_NUCLEI], D, h, w, 0.5f));
        halves += static_cast<double>(count_components(ch->targets[RM_SYNTH_NUCLEI], D, h, w, 0.5f));
    }
    // One nucleus a cell: (160 / 30)² ≈ 28 cells a sample at density 1, a few missing, some cut by the border.
    EXPECT_GT(ones / 3, 15.0);
    EXPECT_LT(ones / 3, 45.0);
    EXPECT_NEAR(twos / ones, 2.0, 0.3) << ones << " nuclei at density 1, " << twos << " at 2";
    EXPECT_NEAR(halves / ones, 0.5, 0.1) << ones << " nuclei at density 1, " << halves << " at 0.5";
}

// Least-squares plane a + bx·(x − cx) + by·(y − cy) through the (h, w) map m, (cx, cy) its centre.
std::array<double, 3> fit_plane(const std::vector<double> &m, int64_t h, int64_t w)
{
    const double cx = 0.5 * static_cast<double>(w - 1), cy = 0.5 * static_cast<double>(h - 1);
    double s = 0, sx = 0, sy = 0, xx = 0, yy = 0;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            const double v = m[static_cast<size_t>(y * w + x)], dx = static_cast<double>(x) - cx,
                         dy = static_cast<double>(y) - cy;
            s += v, sx += v * dx, sy += v * dy, xx += dx * dx, yy += dy * dy; // the grid: x and y uncorrelated
        }
    return {s / static_cast<double>(h * w), sx / xx, sy / yy};
}

// The signal's mean over Z, an (h, w) map.
std::vector<double> z_mean(const float *s, int64_t d, int64_t h, int64_t w)
{
    std::vector<double> m(static_cast<size_t>(h * w), 0.0);
    for (int64_t z = 0; z < d; z++)
        for (int64_t i = 0; i < h * w; i++)
            m[static_cast<size_t>(i)] += s[z * h * w + i] / static_cast<double>(d);
    return m;
}

TEST(SynthCellsImaging, IlluminationIsALinearGradientOfTheGivenStrength)
{
    constexpr int64_t h = 64, w = 96;
    const double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1);
    std::vector<std::array<double, 2>> directions;
    for (uint64_t seed : {1, 2, 3}) {
        const rm_synth_cells_imaging quiet = imaging_with(&rm_synth_cells_imaging::noise, 0.0);
        const Cells flat = make_imaged(seed, quiet, 2, D, h, w);
        const Cells noisy_flat = make_imaged(seed, rm_synth_cells_imaging_default(), 2, D, h, w);
        for (double g : {0.2, 0.6}) {
            // Noise-free, the ratio to the sample without the gradient is the gradient itself: a plane through 1
            // that reaches 1 ± g at the field's far corners (or edges).
            rm_synth_cells_imaging im = quiet;
            im.illumination = g;
            const Cells lit = make_imaged(seed, im, 2, D, h, w);
            ASSERT_TRUE(flat && noisy_flat && lit);
            std::vector<double> ratio(static_cast<size_t>(h * w), 0.0);
            for (int64_t z = 0; z < D; z++)
                for (int64_t i = 0; i < h * w; i++)
                    ratio[static_cast<size_t>(i)] += lit->signal[z * h * w + i] / flat->signal[z * h * w + i] / D;
            const auto [a, bx, by] = fit_plane(ratio, h, w);
            EXPECT_NEAR(a, 1.0, 1e-4) << "seed " << seed << ", g " << g;
            EXPECT_NEAR(std::fabs(bx) * cx + std::fabs(by) * cy, g, 1e-3) << "seed " << seed << ", g " << g;
            double off = 0;
            for (int64_t y = 0; y < h; y++)
                for (int64_t x = 0; x < w; x++)
                    off = std::max(
                        off, std::fabs(ratio[static_cast<size_t>(y * w + x)] -
                                       (a + bx * (static_cast<double>(x) - cx) + by * (static_cast<double>(y) - cy))));
            EXPECT_LT(off, 1e-4) << "seed " << seed << ", g " << g;
            if (g == 0.6)
                directions.push_back({bx / std::hypot(bx, by), by / std::hypot(bx, by)});

            // With noise, as one would measure it: the relative slope of a plane fitted to the signal's mean over
            // Z, less that of the sample without the gradient (its uneven illumination, its cells).
            im.noise = 1.0;
            const Cells noisy = make_imaged(seed, im, 2, D, h, w);
            ASSERT_TRUE(noisy);
            const auto p = fit_plane(z_mean(noisy->signal, D, h, w), h, w);
            const auto q = fit_plane(z_mean(noisy_flat->signal, D, h, w), h, w);
            const double gx = p[1] / p[0] - q[1] / q[0], gy = p[2] / p[0] - q[2] / q[0];
            EXPECT_NEAR(std::fabs(gx) * cx + std::fabs(gy) * cy, g, 0.1 * g) << "seed " << seed << ", g " << g;
        }
    }
    // The direction is drawn from the seed: the three seeds' differ.
    for (size_t i = 0; i < directions.size(); i++)
        for (size_t j = i + 1; j < directions.size(); j++)
            EXPECT_LT(directions[i][0] * directions[j][0] + directions[i][1] * directions[j][1], 0.99);
}

TEST(SynthCellsImaging, BlurLowersTheGradientEnergy)
{
    const int64_t n = D * H * W;
    for (uint64_t seed : {1, 2}) {
        double last = INFINITY;
        for (double b : {0.0, 0.5, 1.0, 2.0, 4.0}) {
            rm_synth_cells_imaging im = imaging_with(&rm_synth_cells_imaging::noise, 0.0);
            im.blur = b;
            const Cells c = make_imaged(seed, im);
            ASSERT_TRUE(c);
            const double e = gradient_rms(as_double(c->signal, n), D, H, W);
            EXPECT_LT(e, 0.8 * last) << "seed " << seed << ", blur " << b;
            last = e;
        }
    }
}

TEST(SynthCellsImaging, RejectsValuesOutsideTheRangesNamingTheField)
{
    Ctx ctx(1);
    using F = double rm_synth_cells_imaging::*;
    const struct {
        F field;
        const char *name;
        double lo, hi; // the range's ends, accepted unless open
        bool lo_open, hi_open;
    } fields[] = {
        {&rm_synth_cells_imaging::contrast, "contrast", 0.0, 10.0, true, false},
        {&rm_synth_cells_imaging::noise, "noise", 0.0, 10.0, false, false},
        {&rm_synth_cells_imaging::blur, "blur", 0.0, 5.0, false, false},
        {&rm_synth_cells_imaging::density, "density", 0.25, 4.0, false, false},
        {&rm_synth_cells_imaging::illumination, "illumination", 0.0, 1.0, false, true},
    };
    EXPECT_EQ(rm_synth_cells_imaging_validate(ctx, nullptr), RM_ERR_ARGUMENT);
    for (const auto &f : fields) {
        const rm_synth_cells_imaging lo = imaging_with(f.field, f.lo), hi = imaging_with(f.field, f.hi);
        EXPECT_EQ(rm_synth_cells_imaging_validate(ctx, &lo), f.lo_open ? RM_ERR_ARGUMENT : RM_OK) << f.name;
        EXPECT_EQ(rm_synth_cells_imaging_validate(ctx, &hi), f.hi_open ? RM_ERR_ARGUMENT : RM_OK) << f.name;
        const double width = f.hi - f.lo;
        const double inf = HUGE_VAL;
        for (double bad : {f.lo - 0.01 * width, f.hi + 0.01 * width, -1.0, std::nan(""), inf, -inf}) {
            const rm_synth_cells_imaging im = imaging_with(f.field, bad);
            EXPECT_EQ(rm_synth_cells_imaging_validate(ctx, &im), RM_ERR_ARGUMENT) << f.name << " = " << bad;
            rm_synth_cells_result *r = nullptr;
            EXPECT_EQ(rm_synth_cells_imaged(ctx, 1, D, H, W, &im, &r), RM_ERR_ARGUMENT) << f.name << " = " << bad;
            EXPECT_EQ(r, nullptr);
            EXPECT_NE(std::string(rm_ctx_error(ctx)).find(std::string(f.name) + " = "), std::string::npos)
                << rm_ctx_error(ctx);
        }
    }
    rm_synth_cells_result *r = nullptr;
    EXPECT_EQ(rm_synth_cells_imaged(ctx, 1, D, H, W, nullptr, &r), RM_ERR_ARGUMENT);
    EXPECT_EQ(r, nullptr);
}

// ---- scroll ------------------------------------------------------------------------------------------------------

TEST(SynthScroll, ShapesAndSpacing)
{
    const Scroll s = make_scroll(1);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->layers, D);
    EXPECT_EQ(s->h, H);
    EXPECT_EQ(s->w, W);
    EXPECT_GT(s->noise_std, 0.0);
    EXPECT_EQ(s->spacing[0], s->spacing[1]);
    EXPECT_EQ(s->spacing[1], s->spacing[2]);
}

TEST(SynthScroll, SameSeedIsBitIdenticalOnOneAndTwoThreads)
{
    const Scroll a = make_scroll(5, 1), b = make_scroll(5, 2), c = make_scroll(5, 2);
    ASSERT_TRUE(a && b && c);
    EXPECT_TRUE(same_bytes(a->volume, b->volume, D * H * W));
    EXPECT_TRUE(same_bytes(b->volume, c->volume, D * H * W));
    EXPECT_TRUE(same_bytes(a->ink, b->ink, H * W));
    EXPECT_TRUE(same_bytes(a->mask, b->mask, H * W));
    EXPECT_EQ(a->ink_layer_first, b->ink_layer_first);
    EXPECT_EQ(a->ink_layer_last, b->ink_layer_last);
}

TEST(SynthScroll, DifferentSeedsDiffer)
{
    const Scroll a = make_scroll(1);
    for (uint64_t other : {UINT64_C(2), UINT64_C(0), ~UINT64_C(0)}) {
        const Scroll b = make_scroll(other);
        ASSERT_TRUE(a && b);
        EXPECT_GT(fraction_different(a->volume, b->volume, D * H * W), 0.95) << "seed " << other;
        EXPECT_GT(fraction_different(a->ink, b->ink, H * W), 0.05) << "seed " << other;
        EXPECT_GT(fraction_different(a->mask, b->mask, H * W), 0.01) << "seed " << other;
    }
}

TEST(SynthScroll, ValueRangesAndBackgroundOutsideTheFragment)
{
    for (uint64_t seed : {1, 2, 3}) {
        const Scroll s = make_scroll(seed);
        ASSERT_TRUE(s);
        const int64_t plane = H * W;
        for (int64_t i = 0; i < plane; i++) {
            ASSERT_LE(s->ink[i], 1);
            ASSERT_LE(s->mask[i], 1);
        }
        int64_t clipped = 0;
        double out_s = 0, out_q = 0, out_n = 0, in_s = 0, in_n = 0;
        for (int64_t z = 0; z < D; z++)
            for (int64_t i = 0; i < plane; i++) {
                const uint16_t v = s->volume[z * plane + i];
                clipped += v == 0 || v == 65535;
                // Outside the fragment, away from its edge (the scanner's blur reaches a pixel or two).
                bool far = !s->mask[i];
                for (int64_t dy = -3; dy <= 3 && far; dy++)
                    for (int64_t dx = -3; dx <= 3 && far; dx++) {
                        const int64_t y = i / W + dy, x = i % W + dx;
                        if (y >= 0 && y < H && x >= 0 && x < W && s->mask[y * W + x])
                            far = false;
                    }
                if (far) {
                    out_s += v, out_q += static_cast<double>(v) * v, out_n++;
                } else if (s->mask[i] && z >= s->ink_layer_first - 3 && z < s->ink_layer_first) {
                    in_s += v, in_n++; // papyrus just under the surface
                }
            }
        EXPECT_LT(static_cast<double>(clipped) / static_cast<double>(D * plane), 1e-3) << "seed " << seed;
        ASSERT_GT(out_n, 0) << "seed " << seed;
        const double out_mean = out_s / out_n, out_sd = std::sqrt(out_q / out_n - out_mean * out_mean);
        // Air and noise only: the noise's standard deviation and nothing more.
        EXPECT_NEAR(out_sd / s->noise_std, 1.0, 0.05) << "seed " << seed;
        // Papyrus is much denser than air.
        EXPECT_GT(in_s / in_n - out_mean, 3.0 * s->noise_std) << "seed " << seed;
    }
}

// Largest 4-connected component of a binary map, and whether every 0 is connected to the border.
void components(const uint8_t *m, int64_t h, int64_t w, int64_t *largest, int64_t *total, bool *holes)
{
    std::vector<int> label(static_cast<size_t>(h * w), 0);
    std::vector<int64_t> stack;
    *largest = 0, *total = 0;
    auto flood = [&](int64_t s, uint8_t value, int id) {
        int64_t size = 0;
        stack.assign(1, s);
        label[static_cast<size_t>(s)] = id;
        while (!stack.empty()) {
            const int64_t i = stack.back();
            stack.pop_back();
            size++;
            const int64_t y = i / w, x = i % w;
            const int64_t nb[4][2] = {{y - 1, x}, {y + 1, x}, {y, x - 1}, {y, x + 1}};
            for (const auto &p : nb)
                if (p[0] >= 0 && p[0] < h && p[1] >= 0 && p[1] < w) {
                    const int64_t j = p[0] * w + p[1];
                    if (m[j] == value && !label[static_cast<size_t>(j)]) {
                        label[static_cast<size_t>(j)] = id;
                        stack.push_back(j);
                    }
                }
        }
        return size;
    };
    int id = 0;
    for (int64_t i = 0; i < h * w; i++)
        if (m[i] && !label[static_cast<size_t>(i)]) {
            const int64_t size = flood(i, 1, ++id);
            *largest = std::max(*largest, size);
            *total += size;
        }
    // Background reachable from the border.
    for (int64_t i = 0; i < h * w; i++) {
        const int64_t y = i / w, x = i % w;
        if ((y == 0 || y == h - 1 || x == 0 || x == w - 1) && !m[i] && !label[static_cast<size_t>(i)])
            flood(i, 0, ++id);
    }
    *holes = false;
    for (int64_t i = 0; i < h * w; i++)
        if (!m[i] && !label[static_cast<size_t>(i)])
            *holes = true;
}

TEST(SynthScroll, FragmentIsOneLargeRegionWithoutHoles)
{
    for (uint64_t seed : {1, 2, 3, 4, 5}) {
        for (int64_t size : {int64_t{64}, int64_t{160}}) {
            const Scroll s = make_scroll(seed, 2, 8, size, size);
            ASSERT_TRUE(s);
            int64_t largest = 0, total = 0;
            bool holes = true;
            components(s->mask, size, size, &largest, &total, &holes);
            EXPECT_EQ(largest, total) << "seed " << seed << ", size " << size;
            EXPECT_FALSE(holes) << "seed " << seed << ", size " << size;
            const double f = static_cast<double>(total) / static_cast<double>(size * size);
            EXPECT_GT(f, 0.3) << "seed " << seed << ", size " << size;
            EXPECT_LT(f, 0.9) << "seed " << seed << ", size " << size; // background around it
        }
    }
}

TEST(SynthScroll, InkOnlyInsideTheFragmentCoveringTwoToThirtyPercent)
{
    for (uint64_t seed : {1, 2, 3, 4, 5, 6}) {
        const Scroll s = make_scroll(seed);
        ASSERT_TRUE(s);
        int64_t ink = 0, outside = 0, frag = 0;
        for (int64_t i = 0; i < H * W; i++) {
            ink += s->ink[i];
            outside += s->ink[i] && !s->mask[i];
            frag += s->mask[i];
        }
        EXPECT_EQ(outside, 0) << "seed " << seed;
        const double f = static_cast<double>(ink) / static_cast<double>(frag);
        EXPECT_GT(f, 0.02) << "seed " << seed;
        EXPECT_LT(f, 0.30) << "seed " << seed;
    }
}

TEST(SynthScroll, InkLayersAreAFewMiddleLayers)
{
    for (int64_t layers : {int64_t{8}, int64_t{16}, int64_t{32}, int64_t{65}}) {
        const Scroll s = make_scroll(1, 2, layers, 64, 64);
        ASSERT_TRUE(s);
        EXPECT_GE(s->ink_layer_first, 1) << layers << " layers";
        EXPECT_LE(s->ink_layer_last, layers - 2) << layers << " layers";
        EXPECT_LE(s->ink_layer_first, layers / 2) << layers << " layers";
        EXPECT_GE(s->ink_layer_last, layers / 2 - 1) << layers << " layers";
        EXPECT_LE(s->ink_layer_last - s->ink_layer_first + 1, std::max<int64_t>(5, layers / 3)) << layers
                                                                                               << " layers";
    }
}

// Mean intensity over the given layers of ink pixels minus that of the other fragment pixels, in noise standard
// deviations.
double ink_contrast(const rm_synth_scroll_result *s, int64_t first, int64_t last)
{
    const int64_t plane = s->h * s->w;
    double a = 0, na = 0, b = 0, nb = 0;
    for (int64_t z = first; z <= last; z++)
        for (int64_t i = 0; i < plane; i++) {
            if (!s->mask[i])
                continue;
            const double v = s->volume[z * plane + i];
            if (s->ink[i])
                a += v, na++;
            else
                b += v, nb++;
        }
    return (a / na - b / nb) / s->noise_std;
}

TEST(SynthScroll, InkChangesTheDensityOfTheInkLayersSubtly)
{
    // One sample's papyrus (fibres running along the lines of text, the surface's height) can by chance be denser or
    // lighter where the text is; averaged over a few samples that cancels and the ink's effect remains.
    double sum = 0, above = 0;
    const int n = 4;
    for (uint64_t seed = 1; seed <= n; seed++) {
        const Scroll s = make_scroll(seed, 2, 16, 128, 128);
        ASSERT_TRUE(s);
        sum += ink_contrast(s.get(), s->ink_layer_first, s->ink_layer_last);
        // Air above the surface: the ink makes no difference there.
        above += std::fabs(ink_contrast(s.get(), s->ink_layer_last + 2, s->layers - 1));
    }
    const double mean = sum / n;
    EXPECT_GT(mean, 0.1) << "ink is invisible";
    EXPECT_LT(mean, 1.0) << "ink is too obvious";
    EXPECT_LT(above / n, 0.05);
}

TEST(SynthScroll, RejectsBadSizesWithAMessage)
{
    Ctx ctx(1);
    rm_synth_scroll_result *r = nullptr;
    EXPECT_EQ(rm_synth_scroll(ctx, 1, 4, 64, 64, &r), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("layers = 4"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_synth_scroll(ctx, 1, 16, 7, 64, &r), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("H = 7"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_synth_scroll(ctx, 1, 65, 8192, 8192, &r), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("voxels"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(r, nullptr);
    EXPECT_EQ(rm_synth_scroll(ctx, 1, 16, 64, 64, nullptr), RM_ERR_ARGUMENT);
    rm_synth_scroll_free(nullptr);
}

} // namespace
