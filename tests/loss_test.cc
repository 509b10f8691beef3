// Mean squared error: the fast loss against the reference, the gradients against finite differences of the loss,
// exact numbers, NaN propagation, bad arguments and thread-count independence of the chunked sum.
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

TEST(Mse, ForwardMatchesReference)
{
    Ctx ctx(2);
    // The last shape spans several reduction chunks (2^16 elements each) and ends in a partial one.
    for (const Shape &s : {Shape{2, 3, 7, 6, 5}, Shape{2, 1, 7, 6, 5}, Shape{1, 13, 3, 4, 5}, Shape{1, 1, 1, 1, 1},
                           Shape{3, 1, 41, 43, 47}}) {
        SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)));
        Tensor p(s), t(s);
        rmtest::fill_uniform(p.data, 251, -2.0f, 2.0f);
        rmtest::fill_uniform(t.data, 252, -2.0f, 2.0f);
        float loss = -1.0f;
        ASSERT_EQ(rm_mse_forward(ctx, p.p(), t.p(), &loss), RM_OK) << rm_ctx_error(ctx);
        DTensor pd(p), td(t);
        const double want = rm_ref_mse_forward(pd.p(), td.p());
        EXPECT_LT(std::fabs(loss - want) / want, 1e-6);
    }
}

// The loss itself is the function differentiated; dloss scales the gradient.
TEST(Mse, BackwardMatchesFiniteDifferences)
{
    Ctx ctx(2);
    for (const Shape &s : {Shape{2, 3, 4, 3, 5}, Shape{1, 1, 1, 1, 3}, Shape{1, 13, 2, 3, 2}}) {
        SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)));
        const float dloss = 0.75f;
        Tensor p(s), t(s);
        rmtest::fill_uniform(p.data, 261, -2.0f, 2.0f);
        rmtest::fill_uniform(t.data, 262, -2.0f, 2.0f);
        DTensor pd(p), td(t);
        const std::vector<double> fd =
            rmtest::numeric_grad(pd.data, [&] { return dloss * rm_ref_mse_forward(pd.p(), td.p()); });

        DTensor dp_ref(s);
        rm_ref_mse_backward(pd.p(), td.p(), dloss, dp_ref.p());
        EXPECT_LT(rmtest::max_rel_error(dp_ref.data, fd), 1e-6);

        Tensor dp(s);
        ASSERT_EQ(rm_mse_backward(ctx, p.p(), t.p(), dloss, dp.p()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_LT(rmtest::max_rel_error(dp.data, fd), 1e-5);
    }
}

// pred (1, 2, 3, 4), target (0, 2, 5, 4): squared errors 1, 0, 4, 0, mean 5/4; gradient 2·(p − t)/4.
TEST(Mse, ExactSmallCase)
{
    Ctx ctx(1);
    Tensor p({1, 1, 1, 2, 2}), t({1, 1, 1, 2, 2}), g({1, 1, 1, 2, 2});
    p.data = {1, 2, 3, 4};
    t.data = {0, 2, 5, 4};
    float loss = 0.0f;
    ASSERT_EQ(rm_mse_forward(ctx, p.p(), t.p(), &loss), RM_OK);
    EXPECT_EQ(loss, 1.25f);
    ASSERT_EQ(rm_mse_backward(ctx, p.p(), t.p(), 1.0f, g.p()), RM_OK);
    EXPECT_EQ(g.data, (std::vector<float>{0.5f, 0.0f, -1.0f, 0.0f}));
    ASSERT_EQ(rm_mse_backward(ctx, p.p(), t.p(), 2.0f, g.p()), RM_OK);
    EXPECT_EQ(g.data, (std::vector<float>{1.0f, 0.0f, -2.0f, 0.0f}));
    // Equal tensors: zero loss.
    ASSERT_EQ(rm_mse_forward(ctx, p.p(), p.p(), &loss), RM_OK);
    EXPECT_EQ(loss, 0.0f);
}

TEST(Mse, NanPropagates)
{
    Ctx ctx(2);
    const Shape s{1, 1, 70, 40, 30}; // several chunks; the NaN sits in the second
    Tensor p(s, 1.0f), t(s, 0.0f), g(s);
    p.data[70000] = NAN;
    float loss = 0.0f;
    ASSERT_EQ(rm_mse_forward(ctx, p.p(), t.p(), &loss), RM_OK);
    EXPECT_TRUE(std::isnan(loss));
    ASSERT_EQ(rm_mse_backward(ctx, p.p(), t.p(), 1.0f, g.p()), RM_OK);
    EXPECT_TRUE(std::isnan(g.data[70000]));
    EXPECT_FALSE(std::isnan(g.data[0]));
}

TEST(Mse, GradientMayOverwriteItsInputs)
{
    Ctx ctx(2);
    const Shape s{2, 3, 7, 6, 5};
    Tensor p(s), t(s), g(s);
    rmtest::fill_uniform(p.data, 265);
    rmtest::fill_uniform(t.data, 266);
    ASSERT_EQ(rm_mse_backward(ctx, p.p(), t.p(), 1.0f, g.p()), RM_OK);
    Tensor q = p;
    ASSERT_EQ(rm_mse_backward(ctx, q.p(), t.p(), 1.0f, q.p()), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(q.data, g.data));
}

TEST(Mse, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    const Shape s{1, 2, 3, 3, 3};
    Tensor p(s, 1.0f), t(s, 0.0f), g(s, 42.0f), wrong({1, 2, 3, 3, 1}, 42.0f);
    float loss = 42.0f;
    auto expect_fail = [&](rm_status got, rm_status want) {
        EXPECT_EQ(got, want);
        EXPECT_EQ(std::string(rm_ctx_error(ctx)).rfind("mse: ", 0), 0u) << rm_ctx_error(ctx);
        EXPECT_EQ(loss, 42.0f);
        EXPECT_EQ(g.data, std::vector<float>(g.data.size(), 42.0f));
        EXPECT_EQ(wrong.data, std::vector<float>(wrong.data.size(), 42.0f));
    };
    expect_fail(rm_mse_forward(ctx, nullptr, t.p(), &loss), RM_ERR_ARGUMENT);
    expect_fail(rm_mse_forward(ctx, p.p(), nullptr, &loss), RM_ERR_ARGUMENT);
    expect_fail(rm_mse_forward(ctx, p.p(), t.p(), nullptr), RM_ERR_ARGUMENT);
    expect_fail(rm_mse_forward(ctx, p.p(), wrong.p(), &loss), RM_ERR_SHAPE);
    expect_fail(rm_mse_backward(ctx, nullptr, t.p(), 1.0f, g.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_mse_backward(ctx, p.p(), wrong.p(), 1.0f, g.p()), RM_ERR_SHAPE);
    expect_fail(rm_mse_backward(ctx, p.p(), t.p(), 1.0f, wrong.p()), RM_ERR_SHAPE);
    EXPECT_EQ(rm_mse_backward(ctx, p.p(), t.p(), 1.0f, nullptr), RM_OK);
}

TEST(Mse, BitIdenticalOnOneAndTwoThreads)
{
    const Shape s{2, 5, 17, 19, 23}; // 74290 elements: two chunks
    Tensor p(s), t(s);
    rmtest::fill_uniform(p.data, 271, -3.0f, 3.0f);
    rmtest::fill_uniform(t.data, 272, -3.0f, 3.0f);
    float loss_ref = 0.0f;
    std::vector<float> g_ref;
    for (int run = 0; run < 3; run++) {
        Ctx ctx(run == 0 ? 1 : 2);
        Tensor g(s);
        float loss = 0.0f;
        ASSERT_EQ(rm_mse_forward(ctx, p.p(), t.p(), &loss), RM_OK);
        ASSERT_EQ(rm_mse_backward(ctx, p.p(), t.p(), 0.5f, g.p()), RM_OK);
        if (run == 0) {
            loss_ref = loss, g_ref = g.data;
            continue;
        }
        EXPECT_TRUE(rmtest::bit_identical({loss}, {loss_ref}));
        EXPECT_TRUE(rmtest::bit_identical(g.data, g_ref));
    }
}

} // namespace
