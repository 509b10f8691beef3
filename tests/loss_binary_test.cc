// Masked MSE and the binary loss ½·(soft BCE + Dice): the fast losses against the double references, the gradients
// against finite differences of the reference losses, hand-computed values, extreme logits, masks that select
// nothing, bad arguments and thread-count independence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::Ctx;
using rmtest::DTensor;
using rmtest::Shape;
using rmtest::Tensor;

// The last shape spans several reduction chunks (2^16 elements each) and ends in a partial one.
const std::vector<Shape> kShapes = {Shape{2, 3, 7, 6, 5}, Shape{1, 13, 3, 4, 5}, Shape{1, 1, 1, 1, 1},
                                    Shape{3, 1, 41, 43, 47}};

// A random mask: uniform values in [0, 1), so about half the voxels count; element 0 is exactly 0.5 (not counted).
Tensor random_mask(const Shape &s, uint32_t seed)
{
    Tensor m(s);
    rmtest::fill_uniform(m.data, seed, 0.0f, 1.0f);
    m.data[0] = 0.5f;
    return m;
}

// Binary targets, with a few soft values among them.
Tensor binary_target(const Shape &s, uint32_t seed)
{
    Tensor t(s);
    rmtest::fill_uniform(t.data, seed, 0.0f, 1.0f);
    for (size_t i = 0; i < t.data.size(); i++)
        t.data[i] = i % 17 == 3 ? t.data[i] : (t.data[i] > 0.6f ? 1.0f : 0.0f);
    return t;
}

double rel(double got, double want) { return std::fabs(got - want) / std::max(std::fabs(want), 1e-300); }

// ---- masked MSE ----------------------------------------------------------------------------------------------

TEST(MaskedMse, ForwardMatchesReference)
{
    Ctx ctx(2);
    for (const Shape &s : kShapes) {
        for (bool masked : {false, true}) {
            SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)) + (masked ? " masked" : ""));
            Tensor p(s), t(s), m = random_mask(s, 301);
            rmtest::fill_uniform(p.data, 302, -2.0f, 2.0f);
            rmtest::fill_uniform(t.data, 303, -2.0f, 2.0f);
            if (rmtest::numel(s) == 1)
                m.data[0] = 1.0f; // one voxel: keep it
            float loss = -1.0f;
            ASSERT_EQ(rm_masked_mse_forward(ctx, p.p(), t.p(), masked ? m.p() : nullptr, &loss), RM_OK)
                << rm_ctx_error(ctx);
            DTensor pd(p), td(t), md(m);
            const double want = rm_ref_masked_mse_forward(pd.p(), td.p(), masked ? md.p() : nullptr);
            EXPECT_LT(rel(loss, want), 1e-6);
        }
    }
}

TEST(MaskedMse, BackwardMatchesFiniteDifferences)
{
    Ctx ctx(2);
    for (const Shape &s : {Shape{2, 3, 4, 3, 5}, Shape{1, 1, 1, 1, 3}, Shape{1, 13, 2, 3, 2}}) {
        SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)));
        const float dloss = 0.75f;
        Tensor p(s), t(s), m = random_mask(s, 311);
        m.data.back() = 1.0f; // at least one selected voxel
        rmtest::fill_uniform(p.data, 312, -2.0f, 2.0f);
        rmtest::fill_uniform(t.data, 313, -2.0f, 2.0f);
        DTensor pd(p), td(t), md(m);
        const std::vector<double> fd = rmtest::numeric_grad(
            pd.data, [&] { return dloss * rm_ref_masked_mse_forward(pd.p(), td.p(), md.p()); });

        DTensor dp_ref(s);
        rm_ref_masked_mse_backward(pd.p(), td.p(), md.p(), dloss, dp_ref.p());
        EXPECT_LT(rmtest::max_rel_error(dp_ref.data, fd), 1e-6);

        Tensor dp(s, 42.0f);
        ASSERT_EQ(rm_masked_mse_backward(ctx, p.p(), t.p(), m.p(), dloss, dp.p()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_LT(rmtest::max_rel_error(dp.data, fd), 1e-5);
        for (size_t i = 0; i < m.data.size(); i++) {
            if (!(m.data[i] > 0.5f)) {
                EXPECT_EQ(dp.data[i], 0.0f) << i;
            }
        }
    }
}

// Without a mask (or with one that selects everything) the masked MSE is rm_mse, bit for bit.
TEST(MaskedMse, WithoutMaskIsMseBitForBit)
{
    Ctx ctx(2);
    const Shape s{3, 1, 41, 43, 47};
    Tensor p(s), t(s), ones(s, 1.0f), g0(s), g1(s), g2(s);
    rmtest::fill_uniform(p.data, 321, -3.0f, 3.0f);
    rmtest::fill_uniform(t.data, 322, -3.0f, 3.0f);
    float l0 = 0.0f, l1 = 0.0f, l2 = 0.0f;
    ASSERT_EQ(rm_mse_forward(ctx, p.p(), t.p(), &l0), RM_OK);
    ASSERT_EQ(rm_masked_mse_forward(ctx, p.p(), t.p(), nullptr, &l1), RM_OK);
    ASSERT_EQ(rm_masked_mse_forward(ctx, p.p(), t.p(), ones.p(), &l2), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical({l0}, {l1}));
    EXPECT_TRUE(rmtest::bit_identical({l0}, {l2}));
    ASSERT_EQ(rm_mse_backward(ctx, p.p(), t.p(), 0.5f, g0.p()), RM_OK);
    ASSERT_EQ(rm_masked_mse_backward(ctx, p.p(), t.p(), nullptr, 0.5f, g1.p()), RM_OK);
    ASSERT_EQ(rm_masked_mse_backward(ctx, p.p(), t.p(), ones.p(), 0.5f, g2.p()), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(g0.data, g1.data));
    EXPECT_TRUE(rmtest::bit_identical(g0.data, g2.data));
}

// pred (1, 2, 3, 4), target (0, 2, 5, 4), mask (1, 0, 1, 0): squared errors 1 and 4 count, mean 5/2; gradient
// 2·(p − t)/2 on the selected voxels. A mask that selects nothing: loss 0, gradient 0.
TEST(MaskedMse, ExactSmallCaseAndEmptyMask)
{
    Ctx ctx(1);
    const Shape s{1, 1, 1, 2, 2};
    Tensor p(s), t(s), m(s), none(s, 0.0f), g(s, 42.0f);
    p.data = {1, 2, 3, 4};
    t.data = {0, 2, 5, 4};
    m.data = {1, 0, 0.75f, 0.5f};
    float loss = 0.0f;
    ASSERT_EQ(rm_masked_mse_forward(ctx, p.p(), t.p(), m.p(), &loss), RM_OK);
    EXPECT_EQ(loss, 2.5f);
    ASSERT_EQ(rm_masked_mse_backward(ctx, p.p(), t.p(), m.p(), 1.0f, g.p()), RM_OK);
    EXPECT_EQ(g.data, (std::vector<float>{1.0f, 0.0f, -2.0f, 0.0f}));

    loss = 42.0f;
    ASSERT_EQ(rm_masked_mse_forward(ctx, p.p(), t.p(), none.p(), &loss), RM_OK);
    EXPECT_EQ(loss, 0.0f);
    ASSERT_EQ(rm_masked_mse_backward(ctx, p.p(), t.p(), none.p(), 3.0f, g.p()), RM_OK);
    EXPECT_EQ(g.data, std::vector<float>(4, 0.0f));
    // A NaN mask value does not select; NaN outside the mask does not reach the loss.
    m.data = {1, NAN, 1, 0};
    p.data[3] = NAN;
    ASSERT_EQ(rm_masked_mse_forward(ctx, p.p(), t.p(), m.p(), &loss), RM_OK);
    EXPECT_EQ(loss, 2.5f);
}

TEST(MaskedMse, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    const Shape s{1, 2, 3, 3, 3};
    Tensor p(s, 1.0f), t(s, 0.0f), m(s, 1.0f), g(s, 42.0f), wrong({1, 2, 3, 3, 1}, 42.0f);
    float loss = 42.0f;
    auto expect_fail = [&](rm_status got, rm_status want, const char *names) {
        EXPECT_EQ(got, want);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind("masked mse: ", 0), 0u) << msg;
        EXPECT_NE(msg.find(names), std::string::npos) << msg;
        EXPECT_EQ(loss, 42.0f);
        EXPECT_EQ(g.data, std::vector<float>(g.data.size(), 42.0f));
        EXPECT_EQ(wrong.data, std::vector<float>(wrong.data.size(), 42.0f));
    };
    expect_fail(rm_masked_mse_forward(ctx, nullptr, t.p(), m.p(), &loss), RM_ERR_ARGUMENT, "pred");
    expect_fail(rm_masked_mse_forward(ctx, p.p(), nullptr, m.p(), &loss), RM_ERR_ARGUMENT, "target");
    expect_fail(rm_masked_mse_forward(ctx, p.p(), t.p(), m.p(), nullptr), RM_ERR_ARGUMENT, "loss");
    expect_fail(rm_masked_mse_forward(ctx, p.p(), wrong.p(), m.p(), &loss), RM_ERR_SHAPE, "target");
    expect_fail(rm_masked_mse_forward(ctx, p.p(), t.p(), wrong.p(), &loss), RM_ERR_SHAPE, "mask");
    expect_fail(rm_masked_mse_backward(ctx, nullptr, t.p(), m.p(), 1.0f, g.p()), RM_ERR_ARGUMENT, "pred");
    expect_fail(rm_masked_mse_backward(ctx, p.p(), t.p(), wrong.p(), 1.0f, g.p()), RM_ERR_SHAPE, "mask");
    expect_fail(rm_masked_mse_backward(ctx, p.p(), t.p(), m.p(), 1.0f, wrong.p()), RM_ERR_SHAPE, "dpred");
    EXPECT_EQ(rm_masked_mse_backward(ctx, p.p(), t.p(), m.p(), 1.0f, nullptr), RM_OK);
}

TEST(MaskedMse, BitIdenticalOnOneAndTwoThreads)
{
    const Shape s{2, 5, 17, 19, 23}; // 74290 elements: two chunks
    Tensor p(s), t(s), m = random_mask(s, 331);
    rmtest::fill_uniform(p.data, 332, -3.0f, 3.0f);
    rmtest::fill_uniform(t.data, 333, -3.0f, 3.0f);
    float loss_ref = 0.0f;
    std::vector<float> g_ref;
    for (int run = 0; run < 3; run++) {
        Ctx ctx(run == 0 ? 1 : 2);
        Tensor g(s);
        float loss = 0.0f;
        ASSERT_EQ(rm_masked_mse_forward(ctx, p.p(), t.p(), m.p(), &loss), RM_OK);
        ASSERT_EQ(rm_masked_mse_backward(ctx, p.p(), t.p(), m.p(), 0.5f, g.p()), RM_OK);
        if (run == 0) {
            loss_ref = loss, g_ref = g.data;
            continue;
        }
        EXPECT_TRUE(rmtest::bit_identical({loss}, {loss_ref}));
        EXPECT_TRUE(rmtest::bit_identical(g.data, g_ref));
    }
}

// ---- binary loss ---------------------------------------------------------------------------------------------

TEST(BinaryLoss, ForwardMatchesReference)
{
    Ctx ctx(2);
    for (const Shape &s : kShapes) {
        for (bool masked : {false, true}) {
            for (float smoothing : {0.0f, RM_BINARY_LOSS_SMOOTHING, 0.5f}) {
                SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)) + (masked ? " masked" : "") +
                             " s=" + std::to_string(smoothing));
                Tensor x(s), t = binary_target(s, 342), m = random_mask(s, 343);
                rmtest::fill_uniform(x.data, 341, -6.0f, 6.0f);
                if (rmtest::numel(s) == 1)
                    m.data[0] = 1.0f;
                float loss = -1.0f, bce = -1.0f, dice = -1.0f;
                ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), masked ? m.p() : nullptr, smoothing, &loss, &bce,
                                                 &dice),
                          RM_OK)
                    << rm_ctx_error(ctx);
                DTensor xd(x), td(t), md(m);
                double bce_ref = 0.0, dice_ref = 0.0;
                rm_dtensor *mp = masked ? md.p() : nullptr;
                const double want = rm_ref_binary_loss_forward(xd.p(), td.p(), mp, smoothing, &bce_ref, &dice_ref);
                EXPECT_LT(rel(loss, want), 1e-5);
                EXPECT_LT(rel(bce, bce_ref), 1e-5);
                EXPECT_LT(std::fabs(dice - dice_ref), 1e-6);
                EXPECT_NEAR(0.5 * (bce_ref + dice_ref), want, 1e-15);
                // The parts are optional.
                float loss2 = -1.0f;
                ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), masked ? m.p() : nullptr, smoothing, &loss2,
                                                 nullptr, nullptr),
                          RM_OK);
                EXPECT_EQ(loss2, loss);
            }
        }
    }
}

TEST(BinaryLoss, BackwardMatchesFiniteDifferences)
{
    Ctx ctx(2);
    for (const Shape &s : {Shape{2, 3, 4, 3, 5}, Shape{1, 1, 1, 1, 3}, Shape{1, 13, 2, 3, 2}}) {
        for (bool masked : {false, true}) {
            SCOPED_TRACE("numel=" + std::to_string(rmtest::numel(s)) + (masked ? " masked" : ""));
            const float dloss = 0.75f, smoothing = 0.1f;
            Tensor x(s), t = binary_target(s, 352), m = random_mask(s, 353);
            m.data.back() = 1.0f;
            rmtest::fill_uniform(x.data, 351, -4.0f, 4.0f);
            DTensor xd(x), td(t), md(m);
            rm_dtensor *mp = masked ? md.p() : nullptr;
            const std::vector<double> fd = rmtest::numeric_grad(xd.data, [&] {
                return dloss * rm_ref_binary_loss_forward(xd.p(), td.p(), mp, smoothing, nullptr, nullptr);
            });

            DTensor dx_ref(s);
            rm_ref_binary_loss_backward(xd.p(), td.p(), mp, smoothing, dloss, dx_ref.p());
            EXPECT_LT(rmtest::max_rel_error(dx_ref.data, fd), 1e-6);

            Tensor dx(s, 42.0f);
            ASSERT_EQ(rm_binary_loss_backward(ctx, x.p(), t.p(), masked ? m.p() : nullptr, smoothing, dloss, dx.p()),
                      RM_OK)
                << rm_ctx_error(ctx);
            EXPECT_LT(rmtest::max_rel_error(dx.data, fd), 1e-5);
            for (size_t i = 0; masked && i < m.data.size(); i++) {
                if (!(m.data[i] > 0.5f)) {
                    EXPECT_EQ(dx.data[i], 0.0f) << i;
                }
            }
        }
    }
}

// The fast gradient on a large tensor (several chunks, masked) against the reference gradient.
TEST(BinaryLoss, BackwardMatchesReferenceOnLargeTensor)
{
    Ctx ctx(2);
    const Shape s{3, 1, 41, 43, 47};
    Tensor x(s), t = binary_target(s, 362), m = random_mask(s, 363), dx(s);
    rmtest::fill_uniform(x.data, 361, -8.0f, 8.0f);
    DTensor xd(x), td(t), md(m), dx_ref(s);
    rm_ref_binary_loss_backward(xd.p(), td.p(), md.p(), 0.1, 2.0, dx_ref.p());
    ASSERT_EQ(rm_binary_loss_backward(ctx, x.p(), t.p(), m.p(), 0.1f, 2.0f, dx.p()), RM_OK);
    EXPECT_LT(rmtest::max_rel_error(dx.data, dx_ref.data), 1e-5);
}

TEST(BinaryLoss, ExactValues)
{
    Ctx ctx(1);
    const Shape s{1, 1, 2, 3, 4}; // n = 24
    const double n = 24.0, lambda = RM_DICE_LAMBDA;
    Tensor zero(s, 0.0f), one(s, 1.0f), g(s);
    float loss = 0.0f, bce = 0.0f, dice = 0.0f;

    // Logits 0 (p = ½) against target 1, no smoothing: BCE = log 2; Dice = 1 − (n + λ)/(1.5·n + λ).
    ASSERT_EQ(rm_binary_loss_forward(ctx, zero.p(), one.p(), nullptr, 0.0f, &loss, &bce, &dice), RM_OK);
    EXPECT_NEAR(bce, std::log(2.0), 1e-7);
    EXPECT_NEAR(dice, 1.0 - (n + lambda) / (1.5 * n + lambda), 1e-7);
    EXPECT_NEAR(loss, 0.5 * (std::log(2.0) + 1.0 - (n + lambda) / (1.5 * n + lambda)), 1e-7);
    // Gradient: ½·[(½ − 1)/n + ((n + λ)/(1.5n + λ)² − 2/(1.5n + λ))·¼].
    ASSERT_EQ(rm_binary_loss_backward(ctx, zero.p(), one.p(), nullptr, 0.0f, 1.0f, g.p()), RM_OK);
    const double den = 1.5 * n + lambda;
    const double gw = 0.5 * (-0.5 / n + ((n + lambda) / (den * den) - 2.0 / den) * 0.25);
    for (float v : g.data)
        EXPECT_NEAR(v, gw, 1e-8);

    // Target 0, p = ½: no overlap, Dice = 1 − λ/(Σp + λ).
    ASSERT_EQ(rm_binary_loss_forward(ctx, zero.p(), zero.p(), nullptr, 0.0f, &loss, &bce, &dice), RM_OK);
    EXPECT_NEAR(dice, 1.0 - lambda / (0.5 * n + lambda), 1e-7);
    EXPECT_NEAR(bce, std::log(2.0), 1e-7);

    // Perfect, confident predictions: logits ±1e4 on targets 1/0. BCE = 0 exactly without smoothing, Dice =
    // 1 − (2k + λ)/(2k + λ) = 0 (k positives); with smoothing 0.1 each voxel costs |x|·0.1 = 1000.
    Tensor x(s), t(s);
    for (size_t i = 0; i < x.data.size(); i++) {
        t.data[i] = i % 3 == 0 ? 1.0f : 0.0f;
        x.data[i] = t.data[i] > 0.5f ? 1e4f : -1e4f;
    }
    ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), nullptr, 0.0f, &loss, &bce, &dice), RM_OK);
    EXPECT_EQ(bce, 0.0f);
    EXPECT_EQ(dice, 0.0f);
    EXPECT_EQ(loss, 0.0f);
    ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), nullptr, 0.1f, &loss, &bce, &dice), RM_OK);
    EXPECT_NEAR(bce, 1000.0, 1e-3);
    EXPECT_EQ(dice, 0.0f);
    // Perfect and empty: target 0, p = 0 everywhere: Dice = 1 − λ/λ = 0.
    Tensor neg(s, -1e4f);
    ASSERT_EQ(rm_binary_loss_forward(ctx, neg.p(), zero.p(), nullptr, 0.0f, &loss, &bce, &dice), RM_OK);
    EXPECT_EQ(dice, 0.0f);
    EXPECT_EQ(loss, 0.0f);

    // One voxel, x = 2, t = 1, s = 0.1: t' = 0.9, BCE = 2 − 1.8 + log1p(e⁻²); Dice = 1 − (2p + 1)/(p + 2).
    Tensor x1({1, 1, 1, 1, 1}, 2.0f), t1({1, 1, 1, 1, 1}, 1.0f), g1({1, 1, 1, 1, 1});
    ASSERT_EQ(rm_binary_loss_forward(ctx, x1.p(), t1.p(), nullptr, 0.1f, &loss, &bce, &dice), RM_OK);
    const double p = 1.0 / (1.0 + std::exp(-2.0));
    EXPECT_NEAR(bce, 2.0 - 2.0 * (1.0 - (double)0.1f) + std::log1p(std::exp(-2.0)), 1e-6);
    EXPECT_NEAR(dice, 1.0 - (2.0 * p + 1.0) / (p + 2.0), 1e-7);
    ASSERT_EQ(rm_binary_loss_backward(ctx, x1.p(), t1.p(), nullptr, 0.1f, 1.0f, g1.p()), RM_OK);
    // d/dp [1 − (2p + 1)/(p + 2)] = −3/(p + 2)².
    EXPECT_NEAR(g1.data[0], 0.5 * ((p - 0.9) + (-3.0 / ((p + 2.0) * (p + 2.0))) * p * (1.0 - p)), 1e-7);
}

// Large logits neither overflow nor lose the loss: everything stays finite and matches the reference.
TEST(BinaryLoss, ExtremeLogitsStayFinite)
{
    Ctx ctx(2);
    const Shape s{1, 2, 3, 5, 7};
    for (float big : {100.0f, 1e4f, 3e38f}) {
        for (float smoothing : {0.0f, 0.1f}) {
            SCOPED_TRACE("big=" + std::to_string(big) + " s=" + std::to_string(smoothing));
            Tensor x(s), t = binary_target(s, 371), g(s);
            for (size_t i = 0; i < x.data.size(); i++)
                x.data[i] = (i % 4 < 2 ? big : -big) * (i % 5 == 0 ? 0.5f : 1.0f);
            float loss = NAN, bce = NAN, dice = NAN;
            ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), nullptr, smoothing, &loss, &bce, &dice), RM_OK);
            EXPECT_TRUE(std::isfinite(loss) && std::isfinite(bce) && std::isfinite(dice));
            ASSERT_EQ(rm_binary_loss_backward(ctx, x.p(), t.p(), nullptr, smoothing, 1.0f, g.p()), RM_OK);
            for (float v : g.data)
                ASSERT_TRUE(std::isfinite(v));
            if (big > 1e5f)
                continue; // beyond float's product range for the reference's comparisons; finiteness is the point
            DTensor xd(x), td(t), gd(s);
            const double want = rm_ref_binary_loss_forward(xd.p(), td.p(), nullptr, smoothing, nullptr, nullptr);
            EXPECT_LT(rel(loss, want), 1e-5);
            rm_ref_binary_loss_backward(xd.p(), td.p(), nullptr, smoothing, 1.0, gd.p());
            EXPECT_LT(rmtest::max_rel_error(g.data, gd.data), 1e-5);
        }
    }
}

TEST(BinaryLoss, MaskExcludingEverythingGivesZero)
{
    Ctx ctx(2);
    const Shape s{2, 1, 9, 8, 7};
    Tensor x(s), t = binary_target(s, 381), none(s, 0.0f), half(s, 0.5f), g(s, 42.0f);
    rmtest::fill_uniform(x.data, 382, -5.0f, 5.0f);
    for (Tensor *m : {&none, &half}) {
        float loss = 42.0f, bce = 42.0f, dice = 42.0f;
        ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), m->p(), 0.1f, &loss, &bce, &dice), RM_OK);
        EXPECT_EQ(loss, 0.0f);
        EXPECT_EQ(bce, 0.0f);
        EXPECT_EQ(dice, 0.0f);
        ASSERT_EQ(rm_binary_loss_backward(ctx, x.p(), t.p(), m->p(), 0.1f, 5.0f, g.p()), RM_OK);
        EXPECT_EQ(g.data, std::vector<float>(g.data.size(), 0.0f));
        DTensor xd(x), td(t), md(*m);
        EXPECT_EQ(rm_ref_binary_loss_forward(xd.p(), td.p(), md.p(), 0.1, nullptr, nullptr), 0.0);
    }
}

// Voxels outside the mask do not count: changing them changes nothing, and the loss equals the loss of the
// selected voxels alone.
TEST(BinaryLoss, MaskedVoxelsDoNotCount)
{
    Ctx ctx(1);
    const Shape s{2, 1, 5, 6, 7};
    Tensor x(s), t = binary_target(s, 391), m = random_mask(s, 392);
    rmtest::fill_uniform(x.data, 393, -3.0f, 3.0f);
    std::vector<float> xs, ts;
    for (size_t i = 0; i < m.data.size(); i++)
        if (m.data[i] > 0.5f)
            xs.push_back(x.data[i]), ts.push_back(t.data[i]);
    Tensor xc({1, 1, 1, 1, static_cast<int64_t>(xs.size())}), tc(xc.shape());
    xc.data = xs, tc.data = ts;
    float loss = 0.0f, loss_c = 0.0f, loss_changed = 0.0f;
    ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), m.p(), 0.1f, &loss, nullptr, nullptr), RM_OK);
    ASSERT_EQ(rm_binary_loss_forward(ctx, xc.p(), tc.p(), nullptr, 0.1f, &loss_c, nullptr, nullptr), RM_OK);
    EXPECT_EQ(loss, loss_c);
    for (size_t i = 0; i < m.data.size(); i++)
        if (!(m.data[i] > 0.5f))
            x.data[i] = 50.0f, t.data[i] = i % 2 ? NAN : 1.0f;
    ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), m.p(), 0.1f, &loss_changed, nullptr, nullptr), RM_OK);
    EXPECT_EQ(loss, loss_changed);
}

// The Dice runs over the whole tensor: a batch of two samples has the loss of one sample holding both.
TEST(BinaryLoss, OneDiceOverTheBatch)
{
    Ctx ctx(1);
    const Shape s{2, 1, 4, 5, 6};
    Tensor x(s), t = binary_target(s, 401);
    rmtest::fill_uniform(x.data, 402, -3.0f, 3.0f);
    Tensor x1({1, 2, 4, 5, 6}), t1({1, 2, 4, 5, 6});
    x1.data = x.data, t1.data = t.data;
    float a = 0.0f, b = 0.0f, da = 0.0f;
    ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), nullptr, 0.1f, &a, nullptr, &da), RM_OK);
    ASSERT_EQ(rm_binary_loss_forward(ctx, x1.p(), t1.p(), nullptr, 0.1f, &b, nullptr, nullptr), RM_OK);
    EXPECT_EQ(a, b);
    // …and not the mean of the two samples' Dice losses.
    Tensor xa({1, 1, 4, 5, 6}), ta({1, 1, 4, 5, 6}), xb({1, 1, 4, 5, 6}), tb({1, 1, 4, 5, 6});
    const size_t half = x.data.size() / 2;
    xa.data.assign(x.data.begin(), x.data.begin() + half), ta.data.assign(t.data.begin(), t.data.begin() + half);
    xb.data.assign(x.data.begin() + half, x.data.end()), tb.data.assign(t.data.begin() + half, t.data.end());
    float d0 = 0.0f, d1 = 0.0f, unused = 0.0f;
    ASSERT_EQ(rm_binary_loss_forward(ctx, xa.p(), ta.p(), nullptr, 0.1f, &unused, nullptr, &d0), RM_OK);
    ASSERT_EQ(rm_binary_loss_forward(ctx, xb.p(), tb.p(), nullptr, 0.1f, &unused, nullptr, &d1), RM_OK);
    EXPECT_GT(std::fabs(da - 0.5f * (d0 + d1)), 1e-6);
}

TEST(BinaryLoss, GradientMayOverwriteItsInputs)
{
    Ctx ctx(2);
    const Shape s{2, 3, 7, 6, 5};
    Tensor x(s), t = binary_target(s, 411), m = random_mask(s, 412), g(s);
    rmtest::fill_uniform(x.data, 413, -3.0f, 3.0f);
    ASSERT_EQ(rm_binary_loss_backward(ctx, x.p(), t.p(), m.p(), 0.1f, 1.0f, g.p()), RM_OK);
    Tensor q = x;
    ASSERT_EQ(rm_binary_loss_backward(ctx, q.p(), t.p(), m.p(), 0.1f, 1.0f, q.p()), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(q.data, g.data));
    Tensor u = t;
    ASSERT_EQ(rm_binary_loss_backward(ctx, x.p(), u.p(), m.p(), 0.1f, 1.0f, u.p()), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(u.data, g.data));
}

TEST(BinaryLoss, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    const Shape s{1, 2, 3, 3, 3};
    Tensor x(s, 1.0f), t(s, 0.0f), m(s, 1.0f), g(s, 42.0f), wrong({1, 2, 3, 3, 1}, 42.0f);
    float loss = 42.0f, bce = 42.0f, dice = 42.0f;
    auto expect_fail = [&](rm_status got, rm_status want, const char *names) {
        EXPECT_EQ(got, want);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind("binary loss: ", 0), 0u) << msg;
        EXPECT_NE(msg.find(names), std::string::npos) << msg;
        EXPECT_EQ(loss, 42.0f);
        EXPECT_EQ(bce, 42.0f);
        EXPECT_EQ(dice, 42.0f);
        EXPECT_EQ(g.data, std::vector<float>(g.data.size(), 42.0f));
        EXPECT_EQ(wrong.data, std::vector<float>(wrong.data.size(), 42.0f));
    };
    expect_fail(rm_binary_loss_forward(ctx, nullptr, t.p(), m.p(), 0.1f, &loss, &bce, &dice), RM_ERR_ARGUMENT,
                "logits");
    expect_fail(rm_binary_loss_forward(ctx, x.p(), nullptr, m.p(), 0.1f, &loss, &bce, &dice), RM_ERR_ARGUMENT,
                "target");
    expect_fail(rm_binary_loss_forward(ctx, x.p(), t.p(), m.p(), 0.1f, nullptr, &bce, &dice), RM_ERR_ARGUMENT,
                "loss");
    expect_fail(rm_binary_loss_forward(ctx, x.p(), wrong.p(), m.p(), 0.1f, &loss, &bce, &dice), RM_ERR_SHAPE,
                "target");
    expect_fail(rm_binary_loss_forward(ctx, x.p(), t.p(), wrong.p(), 0.1f, &loss, &bce, &dice), RM_ERR_SHAPE, "mask");
    for (float bad : {-0.01f, 0.51f, NAN, INFINITY})
        expect_fail(rm_binary_loss_forward(ctx, x.p(), t.p(), m.p(), bad, &loss, &bce, &dice), RM_ERR_ARGUMENT,
                    "smoothing");
    rm_tensor nodata = *m.p();
    nodata.data = nullptr;
    expect_fail(rm_binary_loss_forward(ctx, x.p(), t.p(), &nodata, 0.1f, &loss, &bce, &dice), RM_ERR_ARGUMENT,
                "mask");
    expect_fail(rm_binary_loss_backward(ctx, nullptr, t.p(), m.p(), 0.1f, 1.0f, g.p()), RM_ERR_ARGUMENT, "logits");
    expect_fail(rm_binary_loss_backward(ctx, x.p(), t.p(), wrong.p(), 0.1f, 1.0f, g.p()), RM_ERR_SHAPE, "mask");
    expect_fail(rm_binary_loss_backward(ctx, x.p(), t.p(), m.p(), 0.1f, 1.0f, wrong.p()), RM_ERR_SHAPE, "dlogits");
    expect_fail(rm_binary_loss_backward(ctx, x.p(), t.p(), m.p(), -1.0f, 1.0f, g.p()), RM_ERR_ARGUMENT, "smoothing");
    EXPECT_EQ(rm_binary_loss_backward(ctx, x.p(), t.p(), m.p(), 0.1f, 1.0f, nullptr), RM_OK);
}

TEST(BinaryLoss, BitIdenticalOnOneAndTwoThreads)
{
    const Shape s{2, 5, 17, 19, 23}; // 74290 elements: two chunks
    Tensor x(s), t = binary_target(s, 421), m = random_mask(s, 422);
    rmtest::fill_uniform(x.data, 423, -6.0f, 6.0f);
    for (bool masked : {false, true}) {
        std::vector<float> out_ref, g_ref;
        for (int run = 0; run < 3; run++) {
            Ctx ctx(run == 0 ? 1 : 2);
            Tensor g(s);
            float loss = 0.0f, bce = 0.0f, dice = 0.0f;
            rm_tensor *mp = masked ? m.p() : nullptr;
            ASSERT_EQ(rm_binary_loss_forward(ctx, x.p(), t.p(), mp, 0.1f, &loss, &bce, &dice), RM_OK);
            ASSERT_EQ(rm_binary_loss_backward(ctx, x.p(), t.p(), mp, 0.1f, 0.5f, g.p()), RM_OK);
            if (run == 0) {
                out_ref = {loss, bce, dice}, g_ref = g.data;
                continue;
            }
            EXPECT_TRUE(rmtest::bit_identical({loss, bce, dice}, out_ref));
            EXPECT_TRUE(rmtest::bit_identical(g.data, g_ref));
        }
    }
}

} // namespace
