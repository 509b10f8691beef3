// Activations (ReLU, FReLU, Mish): the fast operators against the double reference, the reference and fast
// backwards against finite differences, exact small cases, Mish at extreme inputs, in-place use, bad arguments,
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

const rm_activation kActs[] = {RM_ACT_RELU, RM_ACT_FRELU, RM_ACT_MISH};
// Awkward sizes: odd spatial extents, a single channel, many channels.
const Shape kShapes[] = {{2, 3, 7, 6, 5}, {2, 1, 7, 6, 5}, {1, 13, 3, 4, 5}};

const char *act_name(rm_activation act)
{
    switch (act) {
    case RM_ACT_RELU: return "relu";
    case RM_ACT_FRELU: return "frelu";
    case RM_ACT_MISH: return "mish";
    }
    return "?";
}

// Uniform in [-4, 4). With near_zero, a few entries sit right at and next to 0; without it, every |x| > 1e-3 so
// that finite differences never straddle the ReLU kink.
Tensor make_input(const Shape &s, uint32_t seed, bool near_zero)
{
    Tensor x(s);
    rmtest::fill_uniform(x.data, seed, -4.0f, 4.0f);
    for (size_t i = 0; i < x.data.size(); i++) {
        if (near_zero && i % 17 == 0)
            x.data[i] = (i % 2 ? 1.0f : -1.0f) * 1e-4f * static_cast<float>(i % 5);
        if (!near_zero && std::fabs(x.data[i]) < 1e-3f)
            x.data[i] = 0.5f;
    }
    return x;
}

std::vector<float> make_bias(int64_t c, uint32_t seed)
{
    std::vector<float> b(static_cast<size_t>(c));
    rmtest::fill_uniform(b, seed, -1.0f, 1.0f);
    return b;
}

// The bias argument each activation takes: FReLU's (C,), NULL otherwise.
const float *bias_arg(rm_activation act, const std::vector<float> &b)
{
    return act == RM_ACT_FRELU ? b.data() : nullptr;
}
const double *bias_arg(rm_activation act, const std::vector<double> &b)
{
    return act == RM_ACT_FRELU ? b.data() : nullptr;
}

TEST(Activation, ForwardMatchesReference)
{
    Ctx ctx(2);
    for (rm_activation act : kActs) {
        for (const Shape &s : kShapes) {
            SCOPED_TRACE(std::string(act_name(act)) + " C=" + std::to_string(s[1]));
            Tensor x = make_input(s, 11, true), y(s);
            std::vector<float> b = make_bias(s[1], 12);
            ASSERT_EQ(rm_activation_forward(ctx, act, x.p(), bias_arg(act, b), y.p()), RM_OK) << rm_ctx_error(ctx);

            DTensor xd(x), yd(s);
            std::vector<double> bd = rmtest::to_double(b);
            rm_ref_activation_forward(act, xd.p(), bias_arg(act, bd), yd.p());
            EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
        }
    }
}

// Reference backward and fast backward against central differences of the reference forward, for
// loss = dot(r, act(x)), for the gradients of x and (FReLU) of the bias.
TEST(Activation, BackwardMatchesFiniteDifferences)
{
    Ctx ctx(2);
    for (rm_activation act : kActs) {
        for (const Shape &s : {Shape{2, 3, 4, 3, 5}, Shape{1, 1, 3, 4, 5}, Shape{1, 13, 2, 3, 2}}) {
            SCOPED_TRACE(std::string(act_name(act)) + " C=" + std::to_string(s[1]));
            Tensor x = make_input(s, 21, false), r(s);
            rmtest::fill_uniform(r.data, 22);
            std::vector<float> b = make_bias(s[1], 23);

            DTensor xd(x), rd(r), yd(s);
            std::vector<double> bd = rmtest::to_double(b);
            auto loss = [&] {
                rm_ref_activation_forward(act, xd.p(), bias_arg(act, bd), yd.p());
                return rmtest::dot(rd.data, yd.data);
            };
            const std::vector<double> fd_x = rmtest::numeric_grad(xd.data, loss);
            const std::vector<double> fd_b = rmtest::numeric_grad(bd, loss);

            DTensor dx_ref(s);
            std::vector<double> db_ref(static_cast<size_t>(s[1]), -7.0);
            rm_ref_activation_backward(act, xd.p(), rd.p(), dx_ref.p(), db_ref.data());
            EXPECT_LT(rmtest::max_rel_error(dx_ref.data, fd_x), 1e-6);

            Tensor dx(s);
            std::vector<float> db(static_cast<size_t>(s[1]), -7.0f);
            ASSERT_EQ(rm_activation_backward(ctx, act, x.p(), r.p(), dx.p(), db.data()), RM_OK) << rm_ctx_error(ctx);
            EXPECT_LT(rmtest::max_rel_error(dx.data, fd_x), 1e-5);

            if (act == RM_ACT_FRELU) {
                EXPECT_LT(rmtest::max_rel_error(db_ref, fd_b), 1e-6);
                EXPECT_LT(rmtest::max_rel_error(db, fd_b), 1e-5);
            } else {
                // No bias: the bias gradient is not written.
                for (float v : db)
                    EXPECT_EQ(v, -7.0f);
            }
        }
    }
}

TEST(Relu, ExactSmallCaseAndZeroGradientAtZero)
{
    Ctx ctx(1);
    Tensor x({1, 1, 1, 1, 6}), y({1, 1, 1, 1, 6}), dy({1, 1, 1, 1, 6}, 1.0f), dx({1, 1, 1, 1, 6});
    x.data = {-2.0f, -0.5f, 0.0f, 1e-30f, 0.5f, 3.0f};
    ASSERT_EQ(rm_activation_forward(ctx, RM_ACT_RELU, x.p(), nullptr, y.p()), RM_OK);
    EXPECT_EQ(y.data, (std::vector<float>{0.0f, 0.0f, 0.0f, 1e-30f, 0.5f, 3.0f}));
    ASSERT_EQ(rm_activation_backward(ctx, RM_ACT_RELU, x.p(), dy.p(), dx.p(), nullptr), RM_OK);
    // PyTorch's convention: the gradient at exactly 0 is 0.
    EXPECT_EQ(dx.data, (std::vector<float>{0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f}));
}

TEST(FRelu, ExactSmallCase)
{
    Ctx ctx(1);
    const Shape s{2, 2, 1, 1, 2};
    Tensor x(s), y(s), dy(s), dx(s);
    x.data = {-1.0f, 2.0f, 0.0f, 3.0f, /* n = 1 */ 4.0f, -5.0f, 1.0f, -1.0f};
    dy.data = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f};
    const float bias[2] = {0.5f, -1.0f};
    ASSERT_EQ(rm_activation_forward(ctx, RM_ACT_FRELU, x.p(), bias, y.p()), RM_OK);
    EXPECT_EQ(y.data, (std::vector<float>{0.5f, 2.5f, -1.0f, 2.0f, 4.5f, 0.5f, 0.0f, -1.0f}));
    float dbias[2] = {99.0f, 99.0f};
    ASSERT_EQ(rm_activation_backward(ctx, RM_ACT_FRELU, x.p(), dy.p(), dx.p(), dbias), RM_OK);
    EXPECT_EQ(dx.data, (std::vector<float>{0.0f, 2.0f, 0.0f, 4.0f, 5.0f, 0.0f, 7.0f, 0.0f}));
    // Channel 0: 1 + 2 + 5 + 6; channel 1: 3 + 4 + 7 + 8, whatever x is.
    EXPECT_EQ(dbias[0], 14.0f);
    EXPECT_EQ(dbias[1], 22.0f);
}

TEST(Mish, ExactValuesAtZeroAndOne)
{
    Ctx ctx(1);
    Tensor x({1, 1, 1, 1, 2}), y({1, 1, 1, 1, 2}), dy({1, 1, 1, 1, 2}, 1.0f), dx({1, 1, 1, 1, 2});
    x.data = {0.0f, 1.0f};
    ASSERT_EQ(rm_activation_forward(ctx, RM_ACT_MISH, x.p(), nullptr, y.p()), RM_OK);
    ASSERT_EQ(rm_activation_backward(ctx, RM_ACT_MISH, x.p(), dy.p(), dx.p(), nullptr), RM_OK);
    EXPECT_EQ(y.data[0], 0.0f);
    // Mish'(0) = tanh(log 2) = 3/5.
    EXPECT_NEAR(dx.data[0], 0.6, 1e-7);
    // Mish(1) = tanh(log(1 + e)) = 0.8650983882673103...
    EXPECT_NEAR(y.data[1], 0.8650983882673103, 1e-7);
    EXPECT_NEAR(dx.data[1], 1.0490362200997922, 1e-6);
}

// Far out in both tails nothing overflows: Mish(x) -> x and Mish'(x) -> 1 for large x, both -> 0 for very negative x.
TEST(Mish, FiniteWithCorrectLimitsAtExtremeInputs)
{
    Ctx ctx(1);
    const std::vector<float> xs = {100.0f, -100.0f, 1e4f, -1e4f, 3e38f, -3e38f, 30.0f, -30.0f};
    const Shape s{1, 1, 1, 1, static_cast<int64_t>(xs.size())};
    Tensor x(s), y(s), dy(s, 1.0f), dx(s);
    x.data = xs;
    ASSERT_EQ(rm_activation_forward(ctx, RM_ACT_MISH, x.p(), nullptr, y.p()), RM_OK);
    ASSERT_EQ(rm_activation_backward(ctx, RM_ACT_MISH, x.p(), dy.p(), dx.p(), nullptr), RM_OK);
    DTensor xd(x), yd(s), dyd(s, 1.0), dxd(s);
    rm_ref_activation_forward(RM_ACT_MISH, xd.p(), nullptr, yd.p());
    rm_ref_activation_backward(RM_ACT_MISH, xd.p(), dyd.p(), dxd.p(), nullptr);

    for (size_t i = 0; i < xs.size(); i++) {
        SCOPED_TRACE("x = " + std::to_string(xs[i]));
        ASSERT_TRUE(std::isfinite(y.data[i]) && std::isfinite(dx.data[i]));
        ASSERT_TRUE(std::isfinite(yd.data[i]) && std::isfinite(dxd.data[i]));
        if (xs[i] > 0) {
            EXPECT_EQ(y.data[i], xs[i]);
            EXPECT_EQ(dx.data[i], 1.0f);
            EXPECT_EQ(yd.data[i], static_cast<double>(xs[i]));
            EXPECT_NEAR(dxd.data[i], 1.0, 1e-12);
        } else {
            // x·e^x: at most 30·e^-30 ≈ 3e-12 here.
            EXPECT_LE(y.data[i], 0.0f);
            EXPECT_LT(std::fabs(y.data[i]), 1e-11f);
            EXPECT_LT(std::fabs(dx.data[i]), 1e-11f);
            EXPECT_LT(std::fabs(yd.data[i]), 1e-11);
            EXPECT_LT(std::fabs(dxd.data[i]), 1e-11);
        }
    }
    // At -30 the values are small but not zero; fast and reference agree there too.
    EXPECT_NEAR(y.data[7], yd.data[7], 1e-6 * std::fabs(yd.data[7]));
    EXPECT_NEAR(dx.data[7], dxd.data[7], 1e-5 * std::fabs(dxd.data[7]));
}

TEST(Activation, InPlaceGivesTheSameResult)
{
    Ctx ctx(2);
    const Shape s{2, 3, 7, 6, 5};
    for (rm_activation act : kActs) {
        SCOPED_TRACE(act_name(act));
        Tensor x = make_input(s, 31, true), y(s), dy(s), dx(s);
        rmtest::fill_uniform(dy.data, 32);
        std::vector<float> b = make_bias(s[1], 33), db(3), db2(3);
        ASSERT_EQ(rm_activation_forward(ctx, act, x.p(), bias_arg(act, b), y.p()), RM_OK);
        ASSERT_EQ(rm_activation_backward(ctx, act, x.p(), dy.p(), dx.p(), db.data()), RM_OK);

        Tensor g = dy; // backward with dx == dy
        ASSERT_EQ(rm_activation_backward(ctx, act, x.p(), g.p(), g.p(), db2.data()), RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(g.data, dx.data));
        if (act == RM_ACT_FRELU) {
            EXPECT_TRUE(rmtest::bit_identical(db2, db));
        }
        Tensor z = x; // forward with y == x
        ASSERT_EQ(rm_activation_forward(ctx, act, z.p(), bias_arg(act, b), z.p()), RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(z.data, y.data));
    }
}

TEST(Activation, NullGradientOutputsAreSkipped)
{
    Ctx ctx(1);
    const Shape s{1, 2, 3, 3, 3};
    Tensor x = make_input(s, 41, false), dy(s, 1.0f), dx(s);
    std::vector<float> db(2, 5.0f);
    // Only the bias gradient.
    ASSERT_EQ(rm_activation_backward(ctx, RM_ACT_FRELU, x.p(), dy.p(), nullptr, db.data()), RM_OK);
    EXPECT_EQ(db, (std::vector<float>{27.0f, 27.0f}));
    // Nothing wanted at all.
    EXPECT_EQ(rm_activation_backward(ctx, RM_ACT_FRELU, x.p(), dy.p(), nullptr, nullptr), RM_OK);
    EXPECT_EQ(rm_activation_backward(ctx, RM_ACT_MISH, x.p(), dy.p(), dx.p(), nullptr), RM_OK);
}

// Every failure: the right status, a message naming the operator, and the output left as it was.
TEST(Activation, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    const Shape s{1, 2, 3, 3, 3};
    Tensor x = make_input(s, 51, false), y(s, 42.0f), dy(s, 1.0f), dx(s, 42.0f), wrong({1, 2, 3, 3, 4}, 42.0f);
    std::vector<float> b(2, 0.5f), db(2, 42.0f);
    const std::vector<float> y0 = y.data;

    auto expect_fail = [&](rm_status got, rm_status want) {
        EXPECT_EQ(got, want);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find("activation"), std::string::npos) << rm_ctx_error(ctx);
        EXPECT_EQ(y.data, y0);
        EXPECT_EQ(dx.data, y0);
        EXPECT_EQ(wrong.data, std::vector<float>(wrong.data.size(), 42.0f));
        EXPECT_EQ(db, (std::vector<float>{42.0f, 42.0f}));
    };
    expect_fail(rm_activation_forward(ctx, static_cast<rm_activation>(3), x.p(), nullptr, y.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_activation_forward(ctx, RM_ACT_FRELU, x.p(), nullptr, y.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_activation_forward(ctx, RM_ACT_RELU, nullptr, nullptr, y.p()), RM_ERR_ARGUMENT);
    expect_fail(rm_activation_forward(ctx, RM_ACT_RELU, x.p(), nullptr, nullptr), RM_ERR_ARGUMENT);
    expect_fail(rm_activation_forward(ctx, RM_ACT_MISH, x.p(), nullptr, wrong.p()), RM_ERR_SHAPE);
    expect_fail(rm_activation_backward(ctx, static_cast<rm_activation>(3), x.p(), dy.p(), dx.p(), db.data()),
                RM_ERR_ARGUMENT);
    expect_fail(rm_activation_backward(ctx, RM_ACT_FRELU, x.p(), nullptr, dx.p(), db.data()), RM_ERR_ARGUMENT);
    expect_fail(rm_activation_backward(ctx, RM_ACT_FRELU, x.p(), wrong.p(), dx.p(), db.data()), RM_ERR_SHAPE);
    expect_fail(rm_activation_backward(ctx, RM_ACT_FRELU, x.p(), dy.p(), wrong.p(), db.data()), RM_ERR_SHAPE);
    rm_tensor empty = rm_tensor_5d(x.data.data(), 1, 0, 3, 3, 3);
    expect_fail(rm_activation_forward(ctx, RM_ACT_RELU, &empty, nullptr, y.p()), RM_ERR_SHAPE);
    rm_tensor no_data = rm_tensor_5d(nullptr, 1, 2, 3, 3, 3);
    expect_fail(rm_activation_forward(ctx, RM_ACT_RELU, &no_data, nullptr, y.p()), RM_ERR_ARGUMENT);
}

// One (n, c) plane of the second shape spans two reduction chunks, so the FReLU bias gradient's chunked sum is
// exercised too.
TEST(Activation, BitIdenticalOnOneAndTwoThreads)
{
    for (const Shape &s : {Shape{2, 5, 17, 19, 23}, Shape{1, 2, 33, 45, 47}}) {
        Tensor x = make_input(s, 61, true), dy(s);
        rmtest::fill_uniform(dy.data, 62);
        std::vector<float> b = make_bias(s[1], 63);
        for (rm_activation act : kActs) {
            SCOPED_TRACE(act_name(act));
            std::vector<float> y_ref, dx_ref, db_ref;
            for (int run = 0; run < 3; run++) {
                Ctx ctx(run == 0 ? 1 : 2);
                Tensor y(s), dx(s);
                std::vector<float> db(static_cast<size_t>(s[1]));
                ASSERT_EQ(rm_activation_forward(ctx, act, x.p(), bias_arg(act, b), y.p()), RM_OK);
                ASSERT_EQ(rm_activation_backward(ctx, act, x.p(), dy.p(), dx.p(), db.data()), RM_OK);
                if (run == 0) {
                    y_ref = y.data, dx_ref = dx.data, db_ref = db;
                    continue;
                }
                EXPECT_TRUE(rmtest::bit_identical(y.data, y_ref));
                EXPECT_TRUE(rmtest::bit_identical(dx.data, dx_ref));
                EXPECT_TRUE(rmtest::bit_identical(db, db_ref));
            }
        }
        // The chunked bias gradient is also accurate.
        DTensor dyd(dy), xd(x);
        std::vector<double> db_d(static_cast<size_t>(s[1]));
        std::vector<float> db(static_cast<size_t>(s[1]));
        Ctx ctx(2);
        ASSERT_EQ(rm_activation_backward(ctx, RM_ACT_FRELU, x.p(), dy.p(), nullptr, db.data()), RM_OK);
        rm_ref_activation_backward(RM_ACT_FRELU, xd.p(), dyd.p(), nullptr, db_d.data());
        EXPECT_LT(rmtest::max_rel_error(db, db_d), 1e-5);
    }
}

} // namespace
