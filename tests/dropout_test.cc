// Dropout: the counter-based mask generator on its own (keep rate, seeds), then the fast operator against the
// reference given the same mask, the backwards against finite differences, exact cases, bad arguments, in-place use
// and bit-identical results on 1 and 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::Ctx;
using rmtest::DTensor;
using rmtest::Shape;
using rmtest::Tensor;

std::vector<unsigned char> mask_of(float p, uint64_t seed, int64_t n)
{
    std::vector<unsigned char> keep(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++)
        keep[static_cast<size_t>(i)] = static_cast<unsigned char>(rm_dropout_kept(p, seed, i));
    return keep;
}

TEST(Dropout, KeepFractionMatchesProbability)
{
    const int64_t n = 1000000;
    for (float p : {0.1f, 0.5f, 0.9f}) {
        for (uint64_t seed : {UINT64_C(0), UINT64_C(12345), ~UINT64_C(0)}) {
            int64_t kept = 0;
            for (int64_t i = 0; i < n; i++)
                kept += rm_dropout_kept(p, seed, i);
            const double expected = n * (1.0 - p);
            const double sigma = std::sqrt(n * p * (1.0 - p));
            EXPECT_LT(std::fabs(kept - expected), 5.0 * sigma) << "p = " << p << ", seed = " << seed;
        }
    }
}

TEST(Dropout, KeepsEverythingAtZeroProbability)
{
    for (int64_t i = 0; i < 100000; i++)
        ASSERT_TRUE(rm_dropout_kept(0.0f, 7, i));
}

TEST(Dropout, SameSeedSameMaskDifferentSeedsDifferentMasks)
{
    const int64_t n = 100000;
    const float p = 0.5f;
    EXPECT_EQ(mask_of(p, 1, n), mask_of(p, 1, n));
    // Nearby and distant seeds: independent masks agree on about half the elements (p² + (1-p)² = 1/2).
    for (uint64_t other : {UINT64_C(2), UINT64_C(0), UINT64_C(1) << 32, UINT64_C(0x9e3779b97f4a7c15)}) {
        const std::vector<unsigned char> a = mask_of(p, 1, n), b = mask_of(p, other, n);
        int64_t agree = 0;
        for (size_t i = 0; i < a.size(); i++)
            agree += a[i] == b[i];
        EXPECT_NEAR(static_cast<double>(agree) / n, 0.5, 0.01) << "seed " << other;
    }
    // Neighbouring elements are not correlated either: the mask is not a run of blocks.
    const std::vector<unsigned char> a = mask_of(p, 3, n);
    int64_t same_as_next = 0;
    for (size_t i = 0; i + 1 < a.size(); i++)
        same_as_next += a[i] == a[i + 1];
    EXPECT_NEAR(static_cast<double>(same_as_next) / (n - 1), 0.5, 0.01);
}

TEST(Dropout, ForwardMatchesReference)
{
    Ctx ctx(2);
    for (const Shape &s : {Shape{2, 3, 7, 6, 5}, Shape{2, 1, 7, 6, 5}, Shape{1, 13, 3, 4, 5}}) {
        for (float p : {0.0f, 0.2f, 0.7f}) {
            SCOPED_TRACE("C=" + std::to_string(s[1]) + " p=" + std::to_string(p));
            Tensor x(s), y(s);
            rmtest::fill_uniform(x.data, 71);
            ASSERT_EQ(rm_dropout_forward(ctx, p, 99, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
            const std::vector<unsigned char> keep = mask_of(p, 99, rmtest::numel(s));
            DTensor xd(x), yd(s);
            rm_ref_dropout_forward(p, keep.data(), xd.p(), yd.p());
            EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
        }
    }
}

TEST(Dropout, BackwardMatchesFiniteDifferences)
{
    Ctx ctx(2);
    const Shape s{2, 3, 4, 3, 5};
    const float p = 0.3f;
    const uint64_t seed = 5;
    const std::vector<unsigned char> keep = mask_of(p, seed, rmtest::numel(s));
    Tensor x(s), r(s);
    rmtest::fill_uniform(x.data, 81);
    rmtest::fill_uniform(r.data, 82);
    DTensor xd(x), rd(r), yd(s);
    auto loss = [&] {
        rm_ref_dropout_forward(p, keep.data(), xd.p(), yd.p());
        return rmtest::dot(rd.data, yd.data);
    };
    const std::vector<double> fd = rmtest::numeric_grad(xd.data, loss);

    DTensor dx_ref(s);
    rm_ref_dropout_backward(p, keep.data(), rd.p(), dx_ref.p());
    EXPECT_LT(rmtest::max_rel_error(dx_ref.data, fd), 1e-6);

    Tensor dx(s);
    ASSERT_EQ(rm_dropout_backward(ctx, p, seed, r.p(), dx.p()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_LT(rmtest::max_rel_error(dx.data, fd), 1e-5);
}

// Ones in: every output is 0 or exactly 1/(1-p) = 2, and it is 2 exactly where the generator keeps the element;
// the backward applies the same mask.
TEST(Dropout, ExactSmallCase)
{
    Ctx ctx(1);
    const Shape s{1, 2, 2, 3, 4};
    Tensor x(s, 1.0f), y(s), dx(s);
    ASSERT_EQ(rm_dropout_forward(ctx, 0.5f, 42, x.p(), y.p()), RM_OK);
    ASSERT_EQ(rm_dropout_backward(ctx, 0.5f, 42, x.p(), dx.p()), RM_OK);
    int kept = 0;
    for (size_t i = 0; i < y.data.size(); i++) {
        const bool k = rm_dropout_kept(0.5f, 42, static_cast<int64_t>(i));
        EXPECT_EQ(y.data[i], k ? 2.0f : 0.0f);
        kept += k;
    }
    EXPECT_EQ(dx.data, y.data);
    EXPECT_GT(kept, 0);
    EXPECT_LT(kept, 48);
}

TEST(Dropout, ZeroProbabilityIsIdentity)
{
    Ctx ctx(2);
    const Shape s{2, 3, 7, 6, 5};
    Tensor x(s), y(s, 42.0f), dx(s, 42.0f);
    rmtest::fill_uniform(x.data, 91);
    x.data[3] = -0.0f;
    ASSERT_EQ(rm_dropout_forward(ctx, 0.0f, 1, x.p(), y.p()), RM_OK);
    ASSERT_EQ(rm_dropout_backward(ctx, 0.0f, 1, x.p(), dx.p()), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(y.data, x.data));
    EXPECT_TRUE(rmtest::bit_identical(dx.data, x.data));
}

TEST(Dropout, InPlaceGivesTheSameResult)
{
    Ctx ctx(2);
    const Shape s{2, 3, 7, 6, 5};
    for (float p : {0.0f, 0.4f}) {
        Tensor x(s), y(s), dx(s);
        rmtest::fill_uniform(x.data, 101);
        ASSERT_EQ(rm_dropout_forward(ctx, p, 3, x.p(), y.p()), RM_OK);
        ASSERT_EQ(rm_dropout_backward(ctx, p, 3, x.p(), dx.p()), RM_OK);
        Tensor z = x;
        ASSERT_EQ(rm_dropout_forward(ctx, p, 3, z.p(), z.p()), RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(z.data, y.data));
        Tensor g = x;
        ASSERT_EQ(rm_dropout_backward(ctx, p, 3, g.p(), g.p()), RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(g.data, dx.data));
    }
}

TEST(Dropout, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    const Shape s{1, 2, 3, 3, 3};
    Tensor x(s, 1.0f), y(s, 42.0f), wrong({1, 2, 3, 3, 2}, 42.0f);
    auto expect_fail = [&](rm_status got, rm_status want) {
        EXPECT_EQ(got, want);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find("dropout"), std::string::npos) << rm_ctx_error(ctx);
        EXPECT_EQ(y.data, std::vector<float>(y.data.size(), 42.0f));
        EXPECT_EQ(wrong.data, std::vector<float>(wrong.data.size(), 42.0f));
    };
    for (float p : {1.0f, -0.1f, 1.5f, NAN, INFINITY}) {
        expect_fail(rm_dropout_forward(ctx, p, 0, x.p(), y.p()), RM_ERR_ARGUMENT);
        expect_fail(rm_dropout_backward(ctx, p, 0, x.p(), y.p()), RM_ERR_ARGUMENT);
    }
    expect_fail(rm_dropout_forward(ctx, 0.5f, 0, nullptr, y.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_dropout_forward(ctx, 0.5f, 0, x.p(), nullptr), RM_ERR_ARGUMENT);
    expect_fail(rm_dropout_forward(ctx, 0.5f, 0, x.p(), wrong.p()), RM_ERR_SHAPE);
    expect_fail(rm_dropout_backward(ctx, 0.5f, 0, nullptr, y.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_dropout_backward(ctx, 0.5f, 0, x.p(), wrong.p()), RM_ERR_SHAPE);
    // A NULL gradient is allowed: nothing to compute.
    EXPECT_EQ(rm_dropout_backward(ctx, 0.5f, 0, x.p(), nullptr), RM_OK);
}

TEST(Dropout, BitIdenticalOnOneAndTwoThreads)
{
    const Shape s{2, 5, 17, 19, 23};
    Tensor x(s);
    rmtest::fill_uniform(x.data, 111);
    std::vector<float> y_ref, dx_ref;
    for (int run = 0; run < 3; run++) {
        Ctx ctx(run == 0 ? 1 : 2);
        Tensor y(s), dx(s);
        ASSERT_EQ(rm_dropout_forward(ctx, 0.25f, 2024, x.p(), y.p()), RM_OK);
        ASSERT_EQ(rm_dropout_backward(ctx, 0.25f, 2024, x.p(), dx.p()), RM_OK);
        if (run == 0) {
            y_ref = y.data, dx_ref = dx.data;
            continue;
        }
        EXPECT_TRUE(rmtest::bit_identical(y.data, y_ref));
        EXPECT_TRUE(rmtest::bit_identical(dx.data, dx_ref));
    }
    // And the large tensor follows the generator element by element.
    for (size_t i = 0; i < x.data.size(); i += 997)
        EXPECT_EQ(y_ref[i] != 0.0f, rm_dropout_kept(0.25f, 2024, static_cast<int64_t>(i)) != 0) << i;
}

} // namespace
