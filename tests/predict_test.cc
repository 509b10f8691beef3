// Sliding-window prediction: the official window grid, the blending weights' closed form, sub-regions equal to
// the whole run bit for bit, a window cache that follows the weights, volumes smaller than the patch, progress and
// abort, and bad arguments; Monte Carlo dropout's passes, seeds, regions and one layer's closed forms.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "repmode/predict.h"
#include "test_util.h"

namespace {

using rmtest::Tensor;

TEST(Windows, StartsFollowTheOfficialGridWithTheLastPulledBack)
{
    // docs/network.md §6.1: L = (60, 232, 344), P = (32, 128, 128) → 3 × 3 × 5 windows; L = 65 → 4 along Z.
    std::vector<int64_t> s(8);
    ASSERT_EQ(rm_window_starts(60, 32, 0.5, s.data(), 8), 3);
    EXPECT_EQ(std::vector<int64_t>(s.begin(), s.begin() + 3), (std::vector<int64_t>{0, 16, 28}));
    ASSERT_EQ(rm_window_starts(232, 128, 0.5, s.data(), 8), 3);
    EXPECT_EQ(std::vector<int64_t>(s.begin(), s.begin() + 3), (std::vector<int64_t>{0, 64, 104}));
    ASSERT_EQ(rm_window_starts(344, 128, 0.5, s.data(), 8), 5);
    EXPECT_EQ(std::vector<int64_t>(s.begin(), s.begin() + 5), (std::vector<int64_t>{0, 64, 128, 192, 216}));
    ASSERT_EQ(rm_window_starts(65, 32, 0.5, s.data(), 8), 4);
    EXPECT_EQ(std::vector<int64_t>(s.begin(), s.begin() + 4), (std::vector<int64_t>{0, 16, 32, 33}));
    EXPECT_EQ(rm_window_starts(32, 32, 0.5, s.data(), 8), 1);
    EXPECT_EQ(rm_window_starts(64, 16, 0.0, s.data(), 8), 4); // no overlap: tiles
    EXPECT_EQ(s[3], 48);
}

TEST(Windows, GaussianWeightsAreTheClosedFormWithSigmaAnEighthOfThePatch)
{
    const int64_t patch[3] = {32, 128, 128};
    std::vector<float> w(32 * 128 * 128);
    rm_window_weights(RM_BLEND_GAUSSIAN, patch, w.data());
    auto at = [&](int z, int y, int x) { return w[((size_t)z * 128 + y) * 128 + x]; };
    EXPECT_EQ(at(16, 64, 64), 1.0f);
    // exp(-((z-16)²/(2·4²) + (y-64)²/(2·16²) + (x-64)²/(2·16²)))
    EXPECT_FLOAT_EQ(at(20, 64, 64), (float)std::exp(-16.0 / 32.0));
    EXPECT_FLOAT_EQ(at(16, 80, 48), (float)std::exp(-256.0 / 512.0 * 2));
    EXPECT_FLOAT_EQ(at(0, 0, 0), (float)std::exp(-(256.0 / 32.0 + 4096.0 / 512.0 * 2)));
    EXPECT_GT(at(0, 0, 0), 0.0f); // e^-24: no zeros to divide by
    std::vector<float> c(32 * 128 * 128);
    rm_window_weights(RM_BLEND_CONSTANT, patch, c.data());
    EXPECT_EQ(c.front(), 1.0f);
    EXPECT_EQ(c.back(), 1.0f);
}

// A volume held in memory, read through the callback.
struct Volume {
    int64_t size[3];
    std::vector<float> data;
    int reads = 0;
};

int read_volume(void *user, const int64_t start[3], const int64_t size[3], float *buf)
{
    auto *v = static_cast<Volume *>(user);
    v->reads++;
    for (int64_t z = 0; z < size[0]; z++)
        for (int64_t y = 0; y < size[1]; y++)
            for (int64_t x = 0; x < size[2]; x++)
                buf[(z * size[1] + y) * size[2] + x] =
                    v->data[((start[0] + z) * v->size[1] + start[1] + y) * v->size[2] + start[2] + x];
    return 0;
}

struct Net {
    std::vector<rm_task> tasks{rm_task_make("a", RM_TASK_REGRESSION)};
    rmtest::Ctx ctx{2};
    rm_model *model = nullptr;
    rm_deploy *deploy = nullptr;
    explicit Net(uint64_t seed = 5)
    {
        rm_config cfg = rm_config_lite(tasks.data(), 1);
        cfg.base_channels = 2;
        cfg.levels = 1;
        EXPECT_EQ(rm_model_create(ctx, &cfg, seed, &model), RM_OK);
        EXPECT_EQ(rm_deploy_create(ctx, model, 0, &deploy), RM_OK);
    }
    ~Net()
    {
        rm_deploy_free(deploy);
        rm_model_free(model);
    }
};

Volume random_volume(int64_t d, int64_t h, int64_t w, uint32_t seed)
{
    Volume v{{d, h, w}, std::vector<float>((size_t)(d * h * w)), 0};
    rmtest::fill_uniform(v.data, seed);
    return v;
}

// The whole volume's prediction with the window parameters `p`.
std::vector<float> predict_with(Net &net, Volume &v, const rm_window_params &p)
{
    const int64_t start[3] = {0, 0, 0};
    std::vector<float> out(v.data.size(), NAN);
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, out.data(), nullptr,
                                nullptr),
              RM_OK)
        << rm_ctx_error(net.ctx);
    return out;
}

// The whole volume's plain prediction with 8³ windows and the official overlap and blending.
std::vector<float> predict_whole(Net &net, Volume &v)
{
    const int64_t patch[3] = {8, 8, 8};
    return predict_with(net, v, rm_window_params_make(patch));
}

// Every voxel of `part`, the region [start, start + size), has the bits of the same voxel of `whole`, a volume of `dims`.
void expect_region_of(const std::vector<float> &whole, const int64_t dims[3], const std::vector<float> &part,
                      const int64_t start[3], const int64_t size[3])
{
    for (int64_t z = 0; z < size[0]; z++)
        for (int64_t y = 0; y < size[1]; y++)
            for (int64_t x = 0; x < size[2]; x++) {
                const float a = part[(size_t)((z * size[1] + y) * size[2] + x)];
                const float b = whole[(size_t)(((start[0] + z) * dims[1] + start[1] + y) * dims[2] + start[2] + x)];
                ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << z << "," << y << "," << x;
            }
}

TEST(Predict, AnySubRegionEqualsTheSameRegionOfTheWholeRunBitForBit)
{
    Net net;
    Volume v = random_volume(13, 20, 17, 1);
    const int64_t patch[3] = {8, 8, 8};
    const rm_window_params p = rm_window_params_make(patch);
    const std::vector<float> whole = predict_whole(net, v);
    const int64_t regions[][6] = {{0, 0, 0, 13, 20, 17}, {3, 5, 2, 6, 9, 11}, {12, 19, 16, 1, 1, 1}, {0, 10, 0, 13, 10, 17}};
    for (const auto &r : regions) {
        const int64_t start[3] = {r[0], r[1], r[2]}, size[3] = {r[3], r[4], r[5]};
        std::vector<float> part((size_t)(size[0] * size[1] * size[2]), NAN);
        ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, size, part.data(),
                                    nullptr, nullptr),
                  RM_OK);
        expect_region_of(whole, v.size, part, start, size);
    }
}

// Records the bounding box of every read.
struct Box {
    Volume *v;
    int64_t lo[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, hi[3] = {0, 0, 0};
};

int read_and_record(void *user, const int64_t start[3], const int64_t size[3], float *buf)
{
    auto *b = static_cast<Box *>(user);
    for (int a = 0; a < 3; a++) {
        b->lo[a] = std::min(b->lo[a], start[a]);
        b->hi[a] = std::max(b->hi[a], start[a] + size[a]);
    }
    return read_volume(b->v, start, size, buf);
}

TEST(Predict, InputRegionIsTheBoundingBoxOfTheWindowsReadForTheOutput)
{
    Net net;
    Volume v = random_volume(40, 20, 6, 3);
    const int64_t patch[3] = {16, 8, 8};
    const rm_window_params p = rm_window_params_make(patch);
    // By hand: Z windows start at 0, 8, 16, 24 (stride 8), so output [10, 12) needs those at 0 and 8: [0, 24);
    // Y starts 0, 4, 8, 12, output [19, 20) needs 12: [12, 20); X is shorter than the patch: the whole axis.
    const int64_t start[3] = {10, 19, 2}, size[3] = {2, 1, 3};
    int64_t in_start[3], in_size[3];
    ASSERT_EQ(rm_predict_input_region(net.ctx, net.deploy, &p, v.size, start, size, in_start, in_size), RM_OK);
    const int64_t want_start[3] = {0, 12, 0}, want_size[3] = {24, 8, 6};
    Box box{&v};
    std::vector<float> out((size_t)(size[0] * size[1] * size[2]));
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_and_record, &box, start, size, out.data(),
                                nullptr, nullptr),
              RM_OK);
    for (int a = 0; a < 3; a++) {
        EXPECT_EQ(in_start[a], want_start[a]) << a;
        EXPECT_EQ(in_size[a], want_size[a]) << a;
        EXPECT_EQ(box.lo[a], in_start[a]) << a;
        EXPECT_EQ(box.hi[a], in_start[a] + in_size[a]) << a;
    }
    const int64_t outside[3] = {40, 0, 0};
    EXPECT_EQ(rm_predict_input_region(net.ctx, net.deploy, &p, v.size, outside, size, in_start, in_size),
              RM_ERR_SHAPE);
}

TEST(Predict, CachedSlabsComputeEveryWindowOnceAndEqualTheWholeRun)
{
    Net net;
    Volume v = random_volume(40, 20, 17, 6);
    const int64_t patch[3] = {8, 8, 8}, whole_start[3] = {0, 0, 0};
    const rm_window_params p = rm_window_params_make(patch);
    const std::vector<float> whole = predict_whole(net, v);
    const int windows = v.reads; // the whole run computes each window once
    // Slabs along Z, as a streamed writer asks for them, thinner and thicker than the window.
    const int64_t cuts[] = {0, 5, 13, 27, 30, 40};
    rm_window_cache *cache = rm_window_cache_create(SIZE_MAX);
    ASSERT_NE(cache, nullptr);
    for (bool cached : {false, true}) {
        v.reads = 0;
        std::vector<float> slabs;
        for (size_t i = 0; i + 1 < sizeof cuts / sizeof cuts[0]; i++) {
            const int64_t start[3] = {cuts[i], 0, 0}, size[3] = {cuts[i + 1] - cuts[i], 20, 17};
            std::vector<float> part((size_t)(size[0] * size[1] * size[2]));
            ASSERT_EQ(rm_predict_region_cached(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, size,
                                               part.data(), nullptr, nullptr, cached ? cache : nullptr),
                      RM_OK);
            slabs.insert(slabs.end(), part.begin(), part.end());
        }
        EXPECT_TRUE(rmtest::bit_identical(slabs, whole)) << (cached ? "cached" : "uncached");
        if (cached)
            EXPECT_EQ(v.reads, windows) << "a window was computed twice";
        else
            EXPECT_GT(v.reads, windows);
    }
    // What stays: windows reaching below the last slab, a few layers, not the volume.
    const size_t window_bytes = 8 * 8 * 8 * sizeof(float);
    EXPECT_GT(rm_window_cache_bytes(cache), 0u);
    EXPECT_LT(rm_window_cache_bytes(cache), (size_t)windows * window_bytes / 2);
    // Other windows (another overlap) empty the cache rather than mixing with it.
    rm_window_params q = p;
    q.overlap = 0.25;
    std::vector<float> plain(v.data.size()), again(v.data.size());
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &q, v.size, read_volume, &v, whole_start, v.size, plain.data(),
                                nullptr, nullptr),
              RM_OK);
    ASSERT_EQ(rm_predict_region_cached(net.ctx, net.deploy, &q, v.size, read_volume, &v, whole_start, v.size,
                                       again.data(), nullptr, nullptr, cache),
              RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(again, plain));
    rm_window_cache_clear(cache);
    EXPECT_EQ(rm_window_cache_bytes(cache), 0u);
    rm_window_cache_free(cache);
    // A budget of two windows: still the same result, fewer windows kept.
    rm_window_cache *small = rm_window_cache_create(2 * window_bytes);
    std::vector<float> slabs;
    for (size_t i = 0; i + 1 < sizeof cuts / sizeof cuts[0]; i++) {
        const int64_t start[3] = {cuts[i], 0, 0}, size[3] = {cuts[i + 1] - cuts[i], 20, 17};
        std::vector<float> part((size_t)(size[0] * size[1] * size[2]));
        ASSERT_EQ(rm_predict_region_cached(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, size, part.data(),
                                           nullptr, nullptr, small),
                  RM_OK);
        EXPECT_LE(rm_window_cache_bytes(small), 2 * window_bytes);
        slabs.insert(slabs.end(), part.begin(), part.end());
    }
    EXPECT_TRUE(rmtest::bit_identical(slabs, whole));
    rm_window_cache_free(small);
}

// Regions A then B of one volume, as a streamed writer asks for them: B shares windows with A.
struct TwoRegions {
    Volume v = random_volume(24, 16, 16, 8);
    rm_window_params p = rm_window_params_make(std::array<int64_t, 3>{8, 8, 8}.data());
    int64_t a_start[3] = {0, 0, 0}, b_start[3] = {12, 0, 0}, size[3] = {12, 16, 16};
    std::vector<float> predict(rm_ctx *ctx, rm_deploy *d, const int64_t start[3], rm_window_cache *cache)
    {
        std::vector<float> out((size_t)(size[0] * size[1] * size[2]));
        EXPECT_EQ(rm_predict_region_cached(ctx, d, &p, v.size, read_volume, &v, start, size, out.data(), nullptr,
                                           nullptr, cache),
                  RM_OK)
            << rm_ctx_error(ctx);
        return out;
    }
};

TEST(Predict, CacheIsEmptiedWhenTheSameTaskOfAnotherModelIsMergedIn)
{
    Net net, other(6); // same network and task index, other weights
    TwoRegions r;
    const std::vector<float> want = r.predict(other.ctx, other.deploy, r.b_start, nullptr);
    rm_window_cache *cache = rm_window_cache_create(SIZE_MAX);
    r.predict(net.ctx, net.deploy, r.a_start, cache);
    ASSERT_GT(rm_window_cache_bytes(cache), 0u);
    ASSERT_EQ(rm_deploy_set_task(net.ctx, net.deploy, other.model, 0), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(r.predict(net.ctx, net.deploy, r.b_start, cache), want))
        << "windows of the old weights served the new ones";
    rm_window_cache_free(cache);
}

// glibc keeps a few freed blocks of each small size in per-thread lists that malloc, but not calloc, serves from;
// filling them makes the small blocks freed next (the deploy form's own among them) those that calloc hands out.
void fill_small_free_lists()
{
    std::vector<void *> blocks;
    for (size_t bytes = 8; bytes <= 1024; bytes += 8)
        for (int i = 0; i < 8; i++)
            blocks.push_back(malloc(bytes));
    for (void *b : blocks)
        free(b);
}

TEST(Predict, CacheIsEmptiedWhenANewDeployFormLandsAtTheFreedOnesAddress)
{
    Net net, other(6);
    TwoRegions r;
    const std::vector<float> want = r.predict(other.ctx, other.deploy, r.b_start, nullptr);
    rm_window_cache *cache = rm_window_cache_create(SIZE_MAX);
    r.predict(net.ctx, net.deploy, r.a_start, cache);
    ASSERT_GT(rm_window_cache_bytes(cache), 0u);
    const uintptr_t old_address = (uintptr_t)net.deploy;
    fill_small_free_lists();
    rm_deploy_free(net.deploy);
    // New deploy forms, each kept while the next is made, until one lands at the freed address (glibc hands it back
    // within the first few; which one depends on the other blocks a deploy form allocates).
    net.deploy = nullptr;
    std::vector<rm_deploy *> elsewhere;
    for (int i = 0; i < 16 && !net.deploy; i++) {
        rm_deploy *d = nullptr;
        ASSERT_EQ(rm_deploy_create(net.ctx, other.model, 0, &d), RM_OK);
        ((uintptr_t)d == old_address ? net.deploy : elsewhere.emplace_back()) = d;
    }
    for (rm_deploy *d : elsewhere)
        rm_deploy_free(d);
    ASSERT_NE(net.deploy, nullptr) << "the allocator did not hand the freed address back (the arrangement above is glibc's)";
    EXPECT_TRUE(rmtest::bit_identical(r.predict(net.ctx, net.deploy, r.b_start, cache), want))
        << "windows of the freed deploy form served the new one";
    rm_window_cache_free(cache);
}

TEST(Predict, RegionBuffersAreTheContextsAndTheNextCallReusesThem)
{
    Net net;
    Volume v = random_volume(16, 32, 32, 9);
    const int64_t patch[3] = {8, 8, 8}, start[3] = {0, 0, 0};
    const rm_window_params p = rm_window_params_make(patch);
    // What the network alone keeps in the context: one window through it.
    Tensor x({1, 1, 8, 8, 8}), y({1, 1, 8, 8, 8});
    ASSERT_EQ(rm_deploy_forward(net.ctx, net.deploy, x.p(), y.p()), RM_OK);
    const size_t network = rm_ctx_workspace_bytes(net.ctx);
    std::vector<float> first(v.data.size()), second(v.data.size());
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, first.data(), nullptr,
                                nullptr),
              RM_OK);
    const size_t held = rm_ctx_workspace_bytes(net.ctx);
    // At least the region's two accumulators (weighted sums and weights, a double per voxel each) stay.
    EXPECT_GE(held, network + 2 * v.data.size() * sizeof(double));
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, second.data(),
                                nullptr, nullptr),
              RM_OK);
    EXPECT_EQ(rm_ctx_workspace_bytes(net.ctx), held) << "the second call grew the working memory";
    EXPECT_TRUE(rmtest::bit_identical(second, first)) << "the accumulators kept something of the first call";
}

TEST(Predict, NonOverlappingConstantWindowsReproduceEachPatchsPrediction)
{
    Net net;
    Volume v = random_volume(8, 16, 16, 2);
    const int64_t start[3] = {0, 0, 0};
    const rm_window_params p = {{8, 8, 8}, 0.0, RM_BLEND_CONSTANT, 0};
    std::vector<float> out(v.data.size());
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, out.data(), nullptr,
                                nullptr),
              RM_OK);
    EXPECT_EQ(v.reads, 4);
    // The window at (0, 8, 0), run alone through the network.
    Tensor x({1, 1, 8, 8, 8}), y({1, 1, 8, 8, 8});
    for (int z = 0; z < 8; z++)
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < 8; c++)
                x.data[(size_t)((z * 8 + r) * 8 + c)] = v.data[(size_t)((z * 16 + 8 + r) * 16 + c)];
    ASSERT_EQ(rm_deploy_forward(net.ctx, net.deploy, x.p(), y.p()), RM_OK);
    for (int z = 0; z < 8; z++)
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < 8; c++)
                ASSERT_EQ(out[(size_t)((z * 16 + 8 + r) * 16 + c)], y.data[(size_t)((z * 8 + r) * 8 + c)]);
}

// Test-time augmentation (docs/network.md §6.4), against whole volumes transformed here one step at a time: the flip
// x → W - 1 - x, and the quarter turn of numpy's rot90 over (Y, X), b[y][x] = a[x][W - 1 - y].
Volume flip_x(const Volume &a)
{
    Volume b = a;
    for (int64_t z = 0; z < a.size[0]; z++)
        for (int64_t y = 0; y < a.size[1]; y++)
            for (int64_t x = 0; x < a.size[2]; x++)
                b.data[(size_t)((z * a.size[1] + y) * a.size[2] + x)] =
                    a.data[(size_t)((z * a.size[1] + y) * a.size[2] + a.size[2] - 1 - x)];
    return b;
}

Volume quarter_turn(const Volume &a)
{
    Volume b{{a.size[0], a.size[2], a.size[1]}, std::vector<float>(a.data.size()), 0};
    for (int64_t z = 0; z < b.size[0]; z++)
        for (int64_t y = 0; y < b.size[1]; y++)
            for (int64_t x = 0; x < b.size[2]; x++)
                b.data[(size_t)((z * b.size[1] + y) * b.size[2] + x)] =
                    a.data[(size_t)((z * a.size[1] + x) * a.size[2] + a.size[2] - 1 - y)];
    return b;
}

// Transform k: a flip when k >= 4, then k % 4 quarter turns; its inverse: the turns that complete four, the flip.
Volume transformed(Volume v, int k)
{
    if (k >= 4)
        v = flip_x(v);
    for (int r = 0; r < k % 4; r++)
        v = quarter_turn(v);
    return v;
}

Volume untransformed(Volume v, int k)
{
    for (int r = 0; r < (4 - k % 4) % 4; r++)
        v = quarter_turn(v);
    return k >= 4 ? flip_x(v) : v;
}

// One window covering the volume, with or without test-time augmentation.
std::vector<float> predict_one_window(Net &net, Volume &v, int tta)
{
    rm_window_params p = rm_window_params_make(v.size);
    p.tta = tta;
    return predict_with(net, v, p);
}

TEST(Tta, AWindowIsTheMeanOfTheNetworkOverTheEightFlipsAndRotations)
{
    Net net;
    Volume v = random_volume(8, 16, 8, 11); // Y != X: four of the transforms turn the window into 8 x 8 x 16
    const std::vector<float> got = predict_one_window(net, v, 1);
    std::vector<double> want(v.data.size(), 0.0);
    for (int k = 0; k < 8; k++) {
        Volume t = transformed(v, k);
        Volume back = untransformed(Volume{{t.size[0], t.size[1], t.size[2]}, predict_one_window(net, t, 0), 0}, k);
        ASSERT_EQ(std::vector<int64_t>(back.size, back.size + 3), std::vector<int64_t>(v.size, v.size + 3));
        for (size_t i = 0; i < want.size(); i++)
            want[i] += back.data[i] / 8.0;
    }
    const std::vector<float> plain = predict_one_window(net, v, 0);
    double largest = 0.0, error = 0.0, change = 0.0;
    for (size_t i = 0; i < want.size(); i++) {
        largest = std::max(largest, std::fabs(want[i]));
        error = std::max(error, std::fabs(got[i] - want[i]));
        change = std::max(change, std::fabs(got[i] - (double)plain[i]));
    }
    EXPECT_LE(error, 1e-6 * largest);
    EXPECT_GT(change, 1e-3 * largest); // the transforms change the prediction: the test can tell them apart
}

TEST(Tta, RegionsEqualTheWholeRunBitForBitOnAnyThreadCount)
{
    Net net;
    Volume v = random_volume(13, 20, 17, 12);
    const int64_t patch[3] = {8, 8, 8}, origin[3] = {0, 0, 0};
    rm_window_params p = rm_window_params_make(patch);
    p.tta = 1;
    std::vector<float> whole(v.data.size()), single(v.data.size());
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, origin, v.size, whole.data(),
                                nullptr, nullptr),
              RM_OK);
    rmtest::Ctx one(1);
    ASSERT_EQ(rm_predict_region(one, net.deploy, &p, v.size, read_volume, &v, origin, v.size, single.data(), nullptr,
                                nullptr),
              RM_OK);
    EXPECT_EQ(std::memcmp(whole.data(), single.data(), whole.size() * sizeof(float)), 0);
    const int64_t start[3] = {3, 5, 2}, size[3] = {6, 9, 11};
    std::vector<float> part((size_t)(size[0] * size[1] * size[2]));
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, size, part.data(), nullptr,
                                nullptr),
              RM_OK);
    expect_region_of(whole, v.size, part, start, size);
    p.tta = 2;
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, origin, v.size, whole.data(),
                                nullptr, nullptr),
              RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(net.ctx)).find("tta"), std::string::npos);
}

TEST(Predict, AVolumeSmallerThanThePatchIsPaddedAndCroppedBack)
{
    Net net;
    Volume v = random_volume(5, 6, 3, 3);
    const int64_t patch[3] = {16, 16, 16}, start[3] = {0, 0, 0};
    const rm_window_params p = rm_window_params_make(patch);
    std::vector<float> out(v.data.size());
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, out.data(), nullptr,
                                nullptr),
              RM_OK)
        << rm_ctx_error(net.ctx);
    // One window of the volume rounded up to the network's multiple (2): 6 × 6 × 4, zeros beyond the volume.
    Tensor x({1, 1, 6, 6, 4}), y({1, 1, 6, 6, 4});
    for (int z = 0; z < 5; z++)
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 3; c++)
                x.data[(size_t)((z * 6 + r) * 4 + c)] = v.data[(size_t)((z * 6 + r) * 3 + c)];
    ASSERT_EQ(rm_deploy_forward(net.ctx, net.deploy, x.p(), y.p()), RM_OK);
    for (int z = 0; z < 5; z++)
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 3; c++)
                EXPECT_NEAR(out[(size_t)((z * 6 + r) * 3 + c)], y.data[(size_t)((z * 6 + r) * 4 + c)],
                            1e-6 * (1.0 + std::fabs(y.data[(size_t)((z * 6 + r) * 4 + c)])));
}

struct Progress {
    std::vector<double> seen;
    int stop_after = -1;
};

int record_progress(void *user, double fraction)
{
    auto *p = static_cast<Progress *>(user);
    p->seen.push_back(fraction);
    return p->stop_after >= 0 && (int)p->seen.size() >= p->stop_after;
}

TEST(Predict, ProgressReachesOneAndAbortStopsEarly)
{
    Net net;
    Volume v = random_volume(16, 16, 24, 4);
    const int64_t patch[3] = {8, 8, 8}, start[3] = {0, 0, 0};
    const rm_window_params p = rm_window_params_make(patch);
    std::vector<float> out(v.data.size());
    Progress all;
    ASSERT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, out.data(),
                                record_progress, &all),
              RM_OK);
    ASSERT_EQ(all.seen.size(), 3u * 3u * 5u);
    EXPECT_EQ(all.seen.back(), 1.0);
    for (size_t i = 1; i < all.seen.size(); i++)
        EXPECT_GT(all.seen[i], all.seen[i - 1]);
    Progress stop;
    stop.stop_after = 2;
    v.reads = 0;
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, out.data(),
                                record_progress, &stop),
              RM_ERR_CANCELLED);
    EXPECT_NE(std::string(rm_ctx_error(net.ctx)).find("cancelled"), std::string::npos);
    EXPECT_EQ(v.reads, 2);
}

int failing_read(void *, const int64_t *, const int64_t *, float *) { return -1; }

TEST(Predict, BadArgumentsAreRejectedByName)
{
    Net net;
    Volume v = random_volume(8, 8, 8, 5);
    const int64_t start[3] = {0, 0, 0}, big[3] = {8, 8, 9};
    std::vector<float> out(v.data.size());
    rm_window_params p = {{8, 8, 7}, 0.5, RM_BLEND_GAUSSIAN, 0};
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, out.data(), nullptr,
                                nullptr),
              RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(net.ctx)).find("patch size 7"), std::string::npos);
    p.patch[2] = 8;
    p.overlap = 1.0;
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, v.size, out.data(), nullptr,
                                nullptr),
              RM_ERR_ARGUMENT);
    p.overlap = 0.5;
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, big, out.data(), nullptr,
                                nullptr),
              RM_ERR_SHAPE);
    EXPECT_NE(std::string(rm_ctx_error(net.ctx)).find("outside the volume"), std::string::npos);
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, read_volume, &v, start, nullptr, out.data(), nullptr,
                                nullptr),
              RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy, &p, v.size, failing_read, &v, start, v.size, out.data(), nullptr,
                                nullptr),
              RM_ERR_IO);
}

// ---- Monte Carlo dropout --------------------------------------------------------------------------------------

struct McRun {
    std::vector<float> mean, std;
};

McRun predict_mc(Net &net, Volume &v, const rm_mc_params &mc, const int64_t start[3], const int64_t size[3],
                 bool with_model = true)
{
    const int64_t patch[3] = {8, 8, 8};
    const rm_window_params p = rm_window_params_make(patch);
    const size_t n = (size_t)(size[0] * size[1] * size[2]);
    McRun r{std::vector<float>(n, NAN), std::vector<float>(n, NAN)};
    EXPECT_EQ(rm_predict_region_mc(net.ctx, net.deploy, with_model ? net.model : nullptr, 0, &p, &mc, v.size,
                                   read_volume, &v, start, size, r.mean.data(), r.std.data(), nullptr, nullptr),
              RM_OK)
        << rm_ctx_error(net.ctx);
    return r;
}

double mean_of(const std::vector<float> &v)
{
    double s = 0;
    for (float x : v)
        s += x;
    return s / static_cast<double>(v.size());
}

TEST(McDropout, WithoutDropoutAndNoiseEveryPassIsThePlainPrediction)
{
    Net net;
    Volume v = random_volume(12, 16, 20, 21);
    const int64_t patch[3] = {8, 8, 8}, start[3] = {0, 0, 0};
    const rm_window_params p = rm_window_params_make(patch);
    std::vector<float> plain = predict_whole(net, v);
    for (int64_t samples : {1, 3}) {
        const McRun r = predict_mc(net, v, {samples, 7, 0.0f, 0.0f, 0, 0}, start, v.size);
        EXPECT_TRUE(rmtest::bit_identical(r.mean, plain)) << samples << " passes";
        EXPECT_EQ(*std::max_element(r.std.begin(), r.std.end()), 0.0f);
    }
    // A task with 2D labels: each pass averaged over depth first; one plain pass is the plain prediction's mean.
    std::vector<float> layer(16 * 20), mean2d(layer.size()), std2d(layer.size());
    const rm_tensor all = rm_tensor_5d(plain.data(), 1, 1, 12, 16, 20);
    rm_tensor flat = rm_tensor_5d(layer.data(), 1, 1, 1, 16, 20);
    ASSERT_EQ(rm_depth_mean_forward(net.ctx, &all, &flat), RM_OK);
    const rm_mc_params depth_mean{1, 7, 0.0f, 0.0f, 0, 1};
    ASSERT_EQ(rm_predict_region_mc(net.ctx, net.deploy, net.model, 0, &p, &depth_mean, v.size, read_volume, &v, start,
                                   v.size, mean2d.data(), std2d.data(), nullptr, nullptr),
              RM_OK)
        << rm_ctx_error(net.ctx);
    EXPECT_TRUE(rmtest::bit_identical(mean2d, layer));
    EXPECT_EQ(*std::max_element(std2d.begin(), std2d.end()), 0.0f);
    // The deploy form is left plain: the next ordinary prediction is unchanged.
    const McRun noisy = predict_mc(net, v, {2, 7, 0.3f, 0.5f, 0, 0}, start, v.size);
    EXPECT_TRUE(rmtest::bit_identical(predict_whole(net, v), plain));
    EXPECT_FALSE(rmtest::bit_identical(noisy.mean, plain));
}

TEST(McDropout, SameSeedSameBytesOnAnyThreadCountAndAnotherSeedDiffers)
{
    Volume v = random_volume(12, 16, 20, 22);
    const int64_t start[3] = {0, 0, 0};
    const rm_mc_params mc{3, 11, 0.2f, 0.4f, 0, 0};
    Net one, two;
    rm_ctx_set_threads(one.ctx, 1);
    const McRun a = predict_mc(one, v, mc, start, v.size), b = predict_mc(two, v, mc, start, v.size);
    EXPECT_TRUE(rmtest::bit_identical(a.mean, b.mean));
    EXPECT_TRUE(rmtest::bit_identical(a.std, b.std));
    rm_mc_params other = mc;
    other.seed = 12;
    const McRun c = predict_mc(two, v, other, start, v.size);
    EXPECT_FALSE(rmtest::bit_identical(a.mean, c.mean));
    EXPECT_GT(mean_of(a.std), 0.0);
}

TEST(McDropout, ARegionEqualsTheSameRegionOfTheWholeRunBitForBit)
{
    Net net;
    Volume v = random_volume(13, 20, 17, 23);
    const int64_t whole_start[3] = {0, 0, 0};
    const rm_mc_params mc{2, 5, 0.25f, 0.3f, 1, 0};
    const McRun whole = predict_mc(net, v, mc, whole_start, v.size);
    const int64_t start[3] = {3, 5, 2}, size[3] = {6, 9, 11};
    const McRun part = predict_mc(net, v, mc, start, size);
    for (int64_t z = 0; z < size[0]; z++)
        for (int64_t y = 0; y < size[1]; y++)
            for (int64_t x = 0; x < size[2]; x++) {
                const size_t i = (size_t)((z * size[1] + y) * size[2] + x);
                const size_t j = (size_t)(((start[0] + z) * 20 + start[1] + y) * 17 + start[2] + x);
                ASSERT_EQ(std::memcmp(&part.mean[i], &whole.mean[j], sizeof(float)), 0);
                ASSERT_EQ(std::memcmp(&part.std[i], &whole.std[j], sizeof(float)), 0);
            }
    // Probabilities: each pass's sigmoid is averaged, so the mean lies in (0, 1).
    EXPECT_GT(*std::min_element(whole.mean.begin(), whole.mean.end()), 0.0f);
    EXPECT_LT(*std::max_element(whole.mean.begin(), whole.mean.end()), 1.0f);
}

TEST(McDropout, TheSpreadIsZeroWithoutNoiseAndGrowsWithTheGateNoise)
{
    Net net;
    Volume v = random_volume(8, 16, 16, 24);
    const int64_t start[3] = {0, 0, 0};
    double previous = -1.0;
    for (float sigma : {0.0f, 0.2f, 1.0f}) {
        const McRun r = predict_mc(net, v, {6, 3, 0.0f, sigma, 0, 0}, start, v.size);
        const double spread = mean_of(r.std);
        if (sigma == 0.0f) {
            EXPECT_EQ(spread, 0.0);
        }
        EXPECT_GT(spread, previous) << "sigma " << sigma;
        previous = spread;
    }
}

TEST(McDropout, ADeployFormFileTakesDropoutButNotGateNoise)
{
    Net net;
    Volume v = random_volume(8, 8, 8, 25);
    const int64_t start[3] = {0, 0, 0};
    const McRun r = predict_mc(net, v, {2, 3, 0.3f, 0.0f, 0, 0}, start, v.size, false);
    EXPECT_GT(mean_of(r.std), 0.0);
    const int64_t patch[3] = {8, 8, 8};
    const rm_window_params p = rm_window_params_make(patch);
    std::vector<float> mean(v.data.size()), std(v.data.size());
    const rm_mc_params noisy{2, 3, 0.0f, 0.5f, 0, 0}, none{0, 3, 0.0f, 0.0f, 0, 0}, bad{1, 3, 1.0f, 0.0f, 0, 0};
    EXPECT_EQ(rm_predict_region_mc(net.ctx, net.deploy, nullptr, 0, &p, &noisy, v.size, read_volume, &v, start, v.size,
                                   mean.data(), std.data(), nullptr, nullptr),
              RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(net.ctx)).find("gate noise needs"), std::string::npos) << rm_ctx_error(net.ctx);
    EXPECT_EQ(rm_predict_region_mc(net.ctx, net.deploy, net.model, 0, &p, &none, v.size, read_volume, &v, start,
                                   v.size, mean.data(), std.data(), nullptr, nullptr),
              RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(net.ctx)).find("samples"), std::string::npos);
    EXPECT_EQ(rm_predict_region_mc(net.ctx, net.deploy, net.model, 0, &p, &bad, v.size, read_volume, &v, start,
                                   v.size, mean.data(), std.data(), nullptr, nullptr),
              RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(net.ctx)).find("dropout"), std::string::npos);
}

// One layer, y = conv(dropout_p(x), w): over many seeds the mean is conv(x, w) and the variance
// p / (1 − p) · Σ w² x² (independent Bernoulli masks scaled by 1 / (1 − p)), within their sampling error.
TEST(McDropout, OneLayerMeanAndVarianceMatchTheirClosedForms)
{
    rmtest::Ctx ctx(2);
    const float p = 0.3f;
    Tensor x({1, 2, 3, 3, 3}), w({1, 2, 3, 3, 3}), xd({1, 2, 3, 3, 3}), y({1, 1, 3, 3, 3});
    rmtest::fill_uniform(x.data, 31, 0.5f, 1.5f);
    rmtest::fill_uniform(w.data, 32, -1.0f, 1.0f);
    const rm_conv3d_params same = rm_conv3d_same(3);
    const int samples = 20000;
    std::vector<double> sum(27), sq(27);
    for (int k = 0; k < samples; k++) {
        ASSERT_EQ(rm_dropout_forward(ctx, p, 1000 + static_cast<uint64_t>(k), x.p(), xd.p()), RM_OK);
        ASSERT_EQ(rm_conv3d_forward(ctx, &same, xd.p(), w.p(), nullptr, y.p()), RM_OK);
        for (size_t i = 0; i < 27; i++)
            sum[i] += y.data[i], sq[i] += (double)y.data[i] * y.data[i];
    }
    // The centre voxel: all 54 taps inside.
    double mu = 0, var = 0;
    for (size_t i = 0; i < 54; i++)
        mu += (double)w.data[i] * x.data[i], var += (double)w.data[i] * w.data[i] * x.data[i] * x.data[i];
    var *= p / (1.0 - p);
    const double mean = sum[13] / samples, got_var = sq[13] / samples - mean * mean;
    EXPECT_NEAR(mean, mu, 4.0 * std::sqrt(var / samples));
    // The variance of a sample variance of a near-normal sum: about 2·σ⁴ / n.
    EXPECT_NEAR(got_var, var, 4.0 * std::sqrt(2.0 / samples) * var);
}

} // namespace
