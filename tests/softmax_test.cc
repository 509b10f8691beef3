// Softmax over C: the fast operator against the reference, the backwards against finite differences, exact cases,
// huge logits, bad arguments and thread-count independence.
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

TEST(Softmax, ForwardMatchesReference)
{
    Ctx ctx(2);
    // The last one is a MoDE gate: 5 experts by 12 output channels, {1, E, co, 1, 1}.
    for (const Shape &s : {Shape{2, 3, 7, 6, 5}, Shape{2, 1, 7, 6, 5}, Shape{1, 13, 3, 4, 5}, Shape{1, 5, 12, 1, 1}}) {
        SCOPED_TRACE("C=" + std::to_string(s[1]));
        Tensor x(s), y(s);
        rmtest::fill_uniform(x.data, 171, -5.0f, 5.0f);
        ASSERT_EQ(rm_softmax_forward(ctx, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
        DTensor xd(x), yd(s);
        rm_ref_softmax_forward(xd.p(), yd.p());
        EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
    }
}

TEST(Softmax, BackwardMatchesFiniteDifferences)
{
    Ctx ctx(2);
    for (const Shape &s : {Shape{2, 3, 4, 3, 5}, Shape{1, 1, 3, 4, 5}, Shape{1, 13, 2, 3, 2}}) {
        SCOPED_TRACE("C=" + std::to_string(s[1]));
        Tensor x(s), r(s);
        rmtest::fill_uniform(x.data, 181, -3.0f, 3.0f);
        rmtest::fill_uniform(r.data, 182);
        DTensor xd(x), rd(r), yd(s);
        auto loss = [&] {
            rm_ref_softmax_forward(xd.p(), yd.p());
            return rmtest::dot(rd.data, yd.data);
        };
        const std::vector<double> fd = rmtest::numeric_grad(xd.data, loss);
        loss(); // yd = softmax(x) again after the perturbations

        DTensor dx_ref(s);
        rm_ref_softmax_backward(yd.p(), rd.p(), dx_ref.p());
        // With one channel the output is constant and every gradient is 0 (max_rel_error is then absolute).
        EXPECT_LT(rmtest::max_rel_error(dx_ref.data, fd), 1e-6);

        // The fast backward takes the fast forward's output.
        Tensor y(s), dx(s);
        ASSERT_EQ(rm_softmax_forward(ctx, x.p(), y.p()), RM_OK);
        ASSERT_EQ(rm_softmax_backward(ctx, y.p(), r.p(), dx.p()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_LT(rmtest::max_rel_error(dx.data, fd), 1e-5);
    }
}

TEST(Softmax, ExactSmallCases)
{
    Ctx ctx(1);
    // Equal logits: 1/C everywhere, whatever their value.
    Tensor x({1, 4, 1, 1, 3}), y({1, 4, 1, 1, 3});
    for (size_t i = 0; i < x.data.size(); i++)
        x.data[i] = static_cast<float>(i % 3) * 100.0f - 50.0f;
    ASSERT_EQ(rm_softmax_forward(ctx, x.p(), y.p()), RM_OK);
    for (float v : y.data)
        EXPECT_EQ(v, 0.25f);

    // Logits 0 and log 3 (per voxel, along C): 1/4 and 3/4.
    Tensor a({1, 2, 1, 1, 1}), b({1, 2, 1, 1, 1});
    a.data = {0.0f, std::log(3.0f)};
    ASSERT_EQ(rm_softmax_forward(ctx, a.p(), b.p()), RM_OK);
    EXPECT_NEAR(b.data[0], 0.25f, 1e-7);
    EXPECT_NEAR(b.data[1], 0.75f, 1e-7);

    // Backward from y = (1/4, 3/4), dy = (1, 0): Σ y·dy = 1/4, dx = y·(dy − 1/4) = (3/16, −3/16).
    Tensor yy({1, 2, 1, 1, 1}), dy({1, 2, 1, 1, 1}), dx({1, 2, 1, 1, 1});
    yy.data = {0.25f, 0.75f};
    dy.data = {1.0f, 0.0f};
    ASSERT_EQ(rm_softmax_backward(ctx, yy.p(), dy.p(), dx.p()), RM_OK);
    EXPECT_EQ(dx.data, (std::vector<float>{0.1875f, -0.1875f}));

    // One channel: always 1.
    Tensor one({2, 1, 2, 2, 2}), out({2, 1, 2, 2, 2});
    rmtest::fill_uniform(one.data, 191, -80.0f, 80.0f);
    ASSERT_EQ(rm_softmax_forward(ctx, one.p(), out.p()), RM_OK);
    EXPECT_EQ(out.data, std::vector<float>(out.data.size(), 1.0f));
}

// The maximum is subtracted first: huge logits neither overflow nor give NaN, and every voxel sums to 1.
TEST(Softmax, StableForHugeLogitsAndSumsToOne)
{
    Ctx ctx(1);
    const Shape s{1, 3, 1, 1, 4};
    Tensor x(s), y(s);
    x.data = {1000.0f, -1000.0f, 3e38f, 0.0f, /* c1 */ 1001.0f, -1001.0f, 3e38f, 1.0f,
              /* c2 */ 999.0f, -999.0f, -3e38f, 2.0f};
    ASSERT_EQ(rm_softmax_forward(ctx, x.p(), y.p()), RM_OK);
    DTensor xd(x), yd(s);
    rm_ref_softmax_forward(xd.p(), yd.p());
    for (int64_t w = 0; w < 4; w++) {
        double total = 0.0;
        for (int64_t c = 0; c < 3; c++) {
            const float v = y.data[static_cast<size_t>(c * 4 + w)];
            ASSERT_TRUE(std::isfinite(v));
            total += v;
        }
        EXPECT_NEAR(total, 1.0, 1e-6);
    }
    EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-6);
    EXPECT_EQ(y.data[2], 0.5f); // two equal maxima of 3e38
    EXPECT_EQ(y.data[10], 0.0f);
}

TEST(Softmax, InPlaceGivesTheSameResult)
{
    Ctx ctx(2);
    const Shape s{2, 3, 7, 6, 5};
    Tensor x(s), y(s), dy(s), dx(s);
    rmtest::fill_uniform(x.data, 195, -4.0f, 4.0f);
    rmtest::fill_uniform(dy.data, 196);
    ASSERT_EQ(rm_softmax_forward(ctx, x.p(), y.p()), RM_OK);
    ASSERT_EQ(rm_softmax_backward(ctx, y.p(), dy.p(), dx.p()), RM_OK);
    Tensor z = x;
    ASSERT_EQ(rm_softmax_forward(ctx, z.p(), z.p()), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(z.data, y.data));
    Tensor g = dy;
    ASSERT_EQ(rm_softmax_backward(ctx, y.p(), g.p(), g.p()), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(g.data, dx.data));
}

TEST(Softmax, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    const Shape s{1, 3, 2, 2, 2};
    Tensor x(s, 1.0f), y(s, 42.0f), dx(s, 42.0f), wrong({1, 4, 2, 2, 2}, 42.0f);
    auto expect_fail = [&](rm_status got, rm_status want) {
        EXPECT_EQ(got, want);
        EXPECT_EQ(std::string(rm_ctx_error(ctx)).rfind("softmax: ", 0), 0u) << rm_ctx_error(ctx);
        EXPECT_EQ(y.data, std::vector<float>(y.data.size(), 42.0f));
        EXPECT_EQ(dx.data, std::vector<float>(dx.data.size(), 42.0f));
        EXPECT_EQ(wrong.data, std::vector<float>(wrong.data.size(), 42.0f));
    };
    expect_fail(rm_softmax_forward(ctx, nullptr, y.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_softmax_forward(ctx, x.p(), nullptr), RM_ERR_ARGUMENT);
    expect_fail(rm_softmax_forward(ctx, x.p(), wrong.p()), RM_ERR_SHAPE);
    expect_fail(rm_softmax_backward(ctx, nullptr, x.p(), dx.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_softmax_backward(ctx, x.p(), nullptr, dx.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_softmax_backward(ctx, x.p(), wrong.p(), dx.p()), RM_ERR_SHAPE);
    expect_fail(rm_softmax_backward(ctx, x.p(), x.p(), wrong.p()), RM_ERR_SHAPE);
    EXPECT_EQ(rm_softmax_backward(ctx, x.p(), x.p(), nullptr), RM_OK);
}

TEST(Softmax, BitIdenticalOnOneAndTwoThreads)
{
    const Shape s{2, 5, 17, 19, 23};
    Tensor x(s), dy(s);
    rmtest::fill_uniform(x.data, 201, -6.0f, 6.0f);
    rmtest::fill_uniform(dy.data, 202);
    std::vector<float> y_ref, dx_ref;
    for (int run = 0; run < 3; run++) {
        Ctx ctx(run == 0 ? 1 : 2);
        Tensor y(s), dx(s);
        ASSERT_EQ(rm_softmax_forward(ctx, x.p(), y.p()), RM_OK);
        ASSERT_EQ(rm_softmax_backward(ctx, y.p(), dy.p(), dx.p()), RM_OK);
        if (run == 0) {
            y_ref = y.data, dx_ref = dx.data;
            continue;
        }
        EXPECT_TRUE(rmtest::bit_identical(y.data, y_ref));
        EXPECT_TRUE(rmtest::bit_identical(dx.data, dx_ref));
    }
}

} // namespace
