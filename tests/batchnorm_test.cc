// BatchNorm3d: the fast operator against the double reference (outputs, saved and running statistics), the
// backwards against finite differences, hand-computed cases, argument checks and thread-count independence.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::DTensor;
using rmtest::Shape;
using rmtest::Tensor;

std::string name(const Shape &s)
{
    std::string out = "shape=";
    for (int64_t d : s)
        out += std::to_string(d) + " ";
    return out;
}

// Non-trivial per-channel parameters and running statistics, in float (fast) and double (reference).
struct Params {
    std::vector<float> w, b, rm, rv;

    Params(int64_t c, uint32_t seed) : w(c), b(c), rm(c), rv(c)
    {
        rmtest::fill_uniform(w, seed, 0.5f, 1.5f);
        rmtest::fill_uniform(b, seed + 1, -0.5f, 0.5f);
        rmtest::fill_uniform(rm, seed + 2, -0.3f, 0.3f);
        rmtest::fill_uniform(rv, seed + 3, 0.5f, 2.0f);
    }
};

// Odd sizes, a single channel, C = 13, M = 2 (the smallest batch training accepts), spatial 1×1×1.
const Shape kAwkward[] = {
    {2, 3, 7, 6, 5}, {3, 1, 2, 3, 4}, {2, 13, 3, 2, 5}, {1, 2, 1, 1, 2}, {4, 8, 1, 1, 1}, {1, 1, 9, 1, 7},
};

const float kMomentum = 0.1f;
const float kEps = 1e-5f;

const double *data_or_null(const std::vector<double> &v, bool use) { return use ? v.data() : nullptr; }
float *data_or_null(std::vector<float> &v, bool use) { return use ? v.data() : nullptr; }

TEST(BatchNorm, MakeUsesPyTorchDefaults)
{
    float w = 1, b = 0, rm = 0, rv = 1;
    const rm_batchnorm3d bn = rm_batchnorm3d_make(&w, &b, &rm, &rv);
    EXPECT_EQ(bn.weight, &w);
    EXPECT_EQ(bn.bias, &b);
    EXPECT_EQ(bn.running_mean, &rm);
    EXPECT_EQ(bn.running_var, &rv);
    EXPECT_FLOAT_EQ(bn.momentum, 0.1f);
    EXPECT_FLOAT_EQ(bn.eps, 1e-5f);
}

TEST(BatchNorm, TrainForwardMatchesReferenceOnOddShapes)
{
    rmtest::Ctx ctx(2);
    uint32_t seed = 1;
    for (const Shape &shape : kAwkward) {
        for (bool affine : {true, false}) {
            for (float offset : {1.0f, 10.0f}) { // a large mean relative to the spread tests the variance's stability
                SCOPED_TRACE(name(shape) + (affine ? "affine" : "no affine") + " offset " + std::to_string(offset));
                const int64_t c = shape[1];
                Params p(c, seed);
                Tensor x(shape), y(shape);
                rmtest::fill_uniform(x.data, seed++, offset - 2.0f, offset + 2.0f);
                std::vector<float> sm(c), si(c), rm = p.rm, rv = p.rv;
                rm_batchnorm3d bn = rm_batchnorm3d_make(data_or_null(p.w, affine), data_or_null(p.b, affine),
                                                        rm.data(), rv.data());
                ASSERT_EQ(rm_batchnorm3d_forward_train(ctx, &bn, x.p(), y.p(), sm.data(), si.data()), RM_OK)
                    << rm_ctx_error(ctx);

                DTensor xd(x), yd(shape);
                std::vector<double> w = rmtest::to_double(p.w), b = rmtest::to_double(p.b);
                std::vector<double> rmd = rmtest::to_double(p.rm), rvd = rmtest::to_double(p.rv), smd(c), sid(c);
                rm_ref_batchnorm3d_forward_train(xd.p(), data_or_null(w, affine), data_or_null(b, affine),
                                                 rmd.data(), rvd.data(), kMomentum, kEps, yd.p(), smd.data(),
                                                 sid.data());
                EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
                EXPECT_LT(rmtest::max_rel_error(sm, smd), 1e-5);
                EXPECT_LT(rmtest::max_rel_error(si, sid), 1e-5);
                EXPECT_LT(rmtest::max_rel_error(rm, rmd), 1e-5);
                EXPECT_LT(rmtest::max_rel_error(rv, rvd), 1e-5);
            }
        }
    }
}

TEST(BatchNorm, InferForwardMatchesReferenceOnOddShapes)
{
    rmtest::Ctx ctx(2);
    uint32_t seed = 50;
    for (const Shape &shape : kAwkward) {
        for (bool affine : {true, false}) {
            SCOPED_TRACE(name(shape) + (affine ? "affine" : "no affine"));
            const int64_t c = shape[1];
            Params p(c, seed);
            Tensor x(shape), y(shape);
            rmtest::fill_uniform(x.data, seed++, -1.0f, 3.0f);
            const std::vector<float> rm0 = p.rm, rv0 = p.rv;
            rm_batchnorm3d bn = rm_batchnorm3d_make(data_or_null(p.w, affine), data_or_null(p.b, affine),
                                                    p.rm.data(), p.rv.data());
            ASSERT_EQ(rm_batchnorm3d_forward_infer(ctx, &bn, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
            EXPECT_TRUE(rmtest::bit_identical(p.rm, rm0) && rmtest::bit_identical(p.rv, rv0))
                << "inference must leave the running statistics alone";

            DTensor xd(x), yd(shape);
            std::vector<double> w = rmtest::to_double(p.w), b = rmtest::to_double(p.b);
            std::vector<double> rmd = rmtest::to_double(p.rm), rvd = rmtest::to_double(p.rv);
            rm_ref_batchnorm3d_forward_infer(xd.p(), data_or_null(w, affine), data_or_null(b, affine), rmd.data(),
                                             rvd.data(), kEps, yd.p());
            EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
        }
    }
}

TEST(BatchNorm, BackwardsMatchReferenceOnOddShapes)
{
    rmtest::Ctx ctx(2);
    uint32_t seed = 200;
    for (const Shape &shape : kAwkward) {
        SCOPED_TRACE(name(shape));
        const int64_t c = shape[1];
        Params p(c, seed);
        Tensor x(shape), dy(shape), y(shape), dx(shape);
        rmtest::fill_uniform(x.data, seed++, -1.0f, 3.0f);
        rmtest::fill_uniform(dy.data, seed++);
        DTensor xd(x), dyd(dy), dxd(shape), yd(shape);
        std::vector<double> w = rmtest::to_double(p.w), rmd = rmtest::to_double(p.rm), rvd = rmtest::to_double(p.rv);
        std::vector<float> dw(c), db(c), sm(c), si(c);
        std::vector<double> dwd(c), dbd(c), smd(c), sid(c);

        // Training mode, each from its own forward's saved statistics.
        std::vector<float> rm = p.rm, rv = p.rv;
        rm_batchnorm3d bn = rm_batchnorm3d_make(p.w.data(), p.b.data(), rm.data(), rv.data());
        ASSERT_EQ(rm_batchnorm3d_forward_train(ctx, &bn, x.p(), y.p(), sm.data(), si.data()), RM_OK);
        ASSERT_EQ(rm_batchnorm3d_backward_train(ctx, &bn, x.p(), sm.data(), si.data(), dy.p(), dx.p(), dw.data(),
                                                db.data()),
                  RM_OK)
            << rm_ctx_error(ctx);
        rm_ref_batchnorm3d_forward_train(xd.p(), w.data(), nullptr, rmd.data(), rvd.data(), kMomentum, kEps, yd.p(),
                                         smd.data(), sid.data());
        rm_ref_batchnorm3d_backward_train(xd.p(), w.data(), smd.data(), sid.data(), dyd.p(), dxd.p(), dwd.data(),
                                          dbd.data());
        if (shape[0] * shape[2] * shape[3] * shape[4] == 2) {
            // With M = 2 each x̂ is ±1 whatever x is, so the true dx is only O(eps) of its terms, and the float
            // rounding of the saved statistics swamps any error relative to dx itself: measure it against the
            // size of the terms, γ·invstd·|dy|, instead.
            double err = 0.0, scale = 0.0;
            for (size_t i = 0; i < dx.data.size(); i++) {
                const size_t ch = i / static_cast<size_t>(shape[2] * shape[3] * shape[4]) % static_cast<size_t>(c);
                err = std::max(err, std::fabs(dx.data[i] - dxd.data[i]));
                scale = std::max(scale, std::fabs(w[ch] * sid[ch] * dyd.data[i]));
            }
            EXPECT_LT(err / scale, 1e-5) << "train dx, M = 2";
        } else {
            EXPECT_LT(rmtest::max_rel_error(dx.data, dxd.data), 1e-5) << "train dx";
        }
        EXPECT_LT(rmtest::max_rel_error(dw, dwd), 1e-5) << "train dweight";
        EXPECT_LT(rmtest::max_rel_error(db, dbd), 1e-5) << "train dbias";

        // Inference mode, with the untouched running statistics.
        bn = rm_batchnorm3d_make(p.w.data(), p.b.data(), p.rm.data(), p.rv.data());
        rmd = rmtest::to_double(p.rm);
        rvd = rmtest::to_double(p.rv);
        ASSERT_EQ(rm_batchnorm3d_backward_infer(ctx, &bn, x.p(), dy.p(), dx.p(), dw.data(), db.data()), RM_OK)
            << rm_ctx_error(ctx);
        rm_ref_batchnorm3d_backward_infer(xd.p(), w.data(), rmd.data(), rvd.data(), kEps, dyd.p(), dxd.p(),
                                          dwd.data(), dbd.data());
        EXPECT_LT(rmtest::max_rel_error(dx.data, dxd.data), 1e-5) << "infer dx";
        EXPECT_LT(rmtest::max_rel_error(dw, dwd), 1e-5) << "infer dweight";
        EXPECT_LT(rmtest::max_rel_error(db, dbd), 1e-5) << "infer dbias";
    }
}

// Gradients of loss = <r, y> with respect to x, weight and bias, by central differences of a reference forward.
struct FiniteDifferences {
    std::vector<double> dx, dw, db;
};

FiniteDifferences numeric_grads(const Shape &shape, DTensor &x, std::vector<double> &w, std::vector<double> &b,
                                const std::function<void(DTensor &y)> &forward, const std::vector<double> &r)
{
    auto loss = [&]() {
        DTensor y(shape);
        forward(y);
        return rmtest::dot(r, y.data);
    };
    FiniteDifferences fd;
    fd.dx = rmtest::numeric_grad(x.data, loss);
    fd.dw = rmtest::numeric_grad(w, loss);
    fd.db = rmtest::numeric_grad(b, loss);
    return fd;
}

TEST(BatchNorm, TrainBackwardsMatchFiniteDifferences)
{
    rmtest::Ctx ctx(2);
    const Shape shape{2, 3, 3, 2, 4};
    const int64_t c = shape[1];
    Params p(c, 300);
    Tensor x(shape), r(shape);
    rmtest::fill_uniform(x.data, 301, -1.0f, 3.0f);
    rmtest::fill_uniform(r.data, 302);
    DTensor xd(x), rd(r);
    std::vector<double> w = rmtest::to_double(p.w), b = rmtest::to_double(p.b);
    const std::vector<double> rm0 = rmtest::to_double(p.rm), rv0 = rmtest::to_double(p.rv);

    // The forward updates the running statistics, so every evaluation starts from fresh copies.
    const FiniteDifferences fd = numeric_grads(
        shape, xd, w, b,
        [&](DTensor &y) {
            std::vector<double> rm = rm0, rv = rv0, sm(c), si(c);
            rm_ref_batchnorm3d_forward_train(xd.p(), w.data(), b.data(), rm.data(), rv.data(), kMomentum, kEps,
                                             y.p(), sm.data(), si.data());
        },
        rd.data);

    {
        std::vector<double> rm = rm0, rv = rv0, sm(c), si(c), dw(c), db(c);
        DTensor y(shape), dx(shape);
        rm_ref_batchnorm3d_forward_train(xd.p(), w.data(), b.data(), rm.data(), rv.data(), kMomentum, kEps, y.p(),
                                         sm.data(), si.data());
        rm_ref_batchnorm3d_backward_train(xd.p(), w.data(), sm.data(), si.data(), rd.p(), dx.p(), dw.data(),
                                          db.data());
        EXPECT_LT(rmtest::max_rel_error(dx.data, fd.dx), 1e-6) << "reference dx";
        EXPECT_LT(rmtest::max_rel_error(dw, fd.dw), 1e-6) << "reference dweight";
        EXPECT_LT(rmtest::max_rel_error(db, fd.db), 1e-6) << "reference dbias";
    }
    {
        std::vector<float> rm = p.rm, rv = p.rv, sm(c), si(c), dw(c), db(c);
        Tensor y(shape), dx(shape);
        rm_batchnorm3d bn = rm_batchnorm3d_make(p.w.data(), p.b.data(), rm.data(), rv.data());
        ASSERT_EQ(rm_batchnorm3d_forward_train(ctx, &bn, x.p(), y.p(), sm.data(), si.data()), RM_OK);
        ASSERT_EQ(rm_batchnorm3d_backward_train(ctx, &bn, x.p(), sm.data(), si.data(), r.p(), dx.p(), dw.data(),
                                                db.data()),
                  RM_OK);
        EXPECT_LT(rmtest::max_rel_error(dx.data, fd.dx), 1e-5) << "fast dx";
        EXPECT_LT(rmtest::max_rel_error(dw, fd.dw), 1e-5) << "fast dweight";
        EXPECT_LT(rmtest::max_rel_error(db, fd.db), 1e-5) << "fast dbias";

        // Each gradient output is optional and does not change the others.
        std::vector<float> dw2(c, -7.0f);
        Tensor dx2(shape, -7.0f);
        ASSERT_EQ(rm_batchnorm3d_backward_train(ctx, &bn, x.p(), sm.data(), si.data(), r.p(), nullptr, dw2.data(),
                                                nullptr),
                  RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(dw2, dw));
        ASSERT_EQ(rm_batchnorm3d_backward_train(ctx, &bn, x.p(), sm.data(), si.data(), r.p(), dx2.p(), nullptr,
                                                nullptr),
                  RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(dx2.data, dx.data));
    }
}

TEST(BatchNorm, InferBackwardsMatchFiniteDifferences)
{
    rmtest::Ctx ctx(2);
    const Shape shape{2, 3, 3, 2, 4};
    const int64_t c = shape[1];
    Params p(c, 400);
    Tensor x(shape), r(shape);
    rmtest::fill_uniform(x.data, 401, -1.0f, 3.0f);
    rmtest::fill_uniform(r.data, 402);
    DTensor xd(x), rd(r);
    std::vector<double> w = rmtest::to_double(p.w), b = rmtest::to_double(p.b);
    const std::vector<double> rm = rmtest::to_double(p.rm), rv = rmtest::to_double(p.rv);

    const FiniteDifferences fd = numeric_grads(
        shape, xd, w, b,
        [&](DTensor &y) {
            rm_ref_batchnorm3d_forward_infer(xd.p(), w.data(), b.data(), rm.data(), rv.data(), kEps, y.p());
        },
        rd.data);

    {
        std::vector<double> dw(c), db(c);
        DTensor dx(shape);
        rm_ref_batchnorm3d_backward_infer(xd.p(), w.data(), rm.data(), rv.data(), kEps, rd.p(), dx.p(), dw.data(),
                                          db.data());
        EXPECT_LT(rmtest::max_rel_error(dx.data, fd.dx), 1e-6) << "reference dx";
        EXPECT_LT(rmtest::max_rel_error(dw, fd.dw), 1e-6) << "reference dweight";
        EXPECT_LT(rmtest::max_rel_error(db, fd.db), 1e-6) << "reference dbias";
    }
    {
        std::vector<float> dw(c), db(c);
        Tensor dx(shape);
        rm_batchnorm3d bn = rm_batchnorm3d_make(p.w.data(), p.b.data(), p.rm.data(), p.rv.data());
        ASSERT_EQ(rm_batchnorm3d_backward_infer(ctx, &bn, x.p(), r.p(), dx.p(), dw.data(), db.data()), RM_OK);
        EXPECT_LT(rmtest::max_rel_error(dx.data, fd.dx), 1e-5) << "fast dx";
        EXPECT_LT(rmtest::max_rel_error(dw, fd.dw), 1e-5) << "fast dweight";
        EXPECT_LT(rmtest::max_rel_error(db, fd.db), 1e-5) << "fast dbias";

        std::vector<float> db2(c, -7.0f);
        ASSERT_EQ(rm_batchnorm3d_backward_infer(ctx, &bn, x.p(), r.p(), nullptr, nullptr, db2.data()), RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(db2, db));
    }
}

TEST(BatchNorm, TwoSampleChannelHandComputed)
{
    // x = {1, 3}: mean 2, biased variance 1, unbiased 2. With eps = 0, x̂ = {-1, 1} exactly.
    rmtest::Ctx ctx(1);
    const Shape shape{2, 1, 1, 1, 1};
    Tensor x(shape), y(shape), dy(shape), dx(shape, -7.0f);
    x.data = {1.0f, 3.0f};
    float w = 2.0f, b = 0.5f, rm = 0.0f, rv = 1.0f, sm = -7.0f, si = -7.0f, dw = -7.0f, db = -7.0f;
    rm_batchnorm3d bn = rm_batchnorm3d_make(&w, &b, &rm, &rv);
    bn.eps = 0.0f;
    ASSERT_EQ(rm_batchnorm3d_forward_train(ctx, &bn, x.p(), y.p(), &sm, &si), RM_OK) << rm_ctx_error(ctx);
    EXPECT_FLOAT_EQ(y.data[0], -1.5f); // 2·(-1) + 0.5
    EXPECT_FLOAT_EQ(y.data[1], 2.5f);  // 2·(+1) + 0.5
    EXPECT_FLOAT_EQ(sm, 2.0f);
    EXPECT_FLOAT_EQ(si, 1.0f);
    EXPECT_FLOAT_EQ(rm, 0.2f); // 0.9·0 + 0.1·2
    EXPECT_FLOAT_EQ(rv, 1.1f); // 0.9·1 + 0.1·2 (unbiased)

    // dy = {1, 2}: Σdy = 3, Σdy·x̂ = 1, and with two samples x̂ cannot move, so dx = 0.
    dy.data = {1.0f, 2.0f};
    ASSERT_EQ(rm_batchnorm3d_backward_train(ctx, &bn, x.p(), &sm, &si, dy.p(), dx.p(), &dw, &db), RM_OK)
        << rm_ctx_error(ctx);
    EXPECT_FLOAT_EQ(dw, 1.0f);
    EXPECT_FLOAT_EQ(db, 3.0f);
    EXPECT_NEAR(dx.data[0], 0.0f, 1e-6f);
    EXPECT_NEAR(dx.data[1], 0.0f, 1e-6f);
}

TEST(BatchNorm, InferenceHandComputed)
{
    // running mean 1, running variance 4 (eps = 0): x̂ = (x - 1) / 2; γ = 2, β = 1.
    rmtest::Ctx ctx(1);
    const Shape shape{1, 1, 1, 1, 2};
    Tensor x(shape), y(shape), dy(shape), dx(shape);
    x.data = {3.0f, -1.0f};
    float w = 2.0f, b = 1.0f, rm = 1.0f, rv = 4.0f, dw = -7.0f, db = -7.0f;
    rm_batchnorm3d bn = rm_batchnorm3d_make(&w, &b, &rm, &rv);
    bn.eps = 0.0f;
    ASSERT_EQ(rm_batchnorm3d_forward_infer(ctx, &bn, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_FLOAT_EQ(y.data[0], 3.0f);  // 2·1 + 1
    EXPECT_FLOAT_EQ(y.data[1], -1.0f); // 2·(-1) + 1
    dy.data = {1.0f, 0.5f};
    ASSERT_EQ(rm_batchnorm3d_backward_infer(ctx, &bn, x.p(), dy.p(), dx.p(), &dw, &db), RM_OK) << rm_ctx_error(ctx);
    EXPECT_FLOAT_EQ(dx.data[0], 1.0f); // dy·γ/2
    EXPECT_FLOAT_EQ(dx.data[1], 0.5f);
    EXPECT_FLOAT_EQ(dw, 0.5f); // 1·1 + 0.5·(-1)
    EXPECT_FLOAT_EQ(db, 1.5f);
}

// Buffers for the argument checks: outputs start at a sentinel, and every one must still hold it after a failure.
struct Buffers {
    static constexpr float kSentinel = 42.0f;
    Shape shape{2, 3, 2, 2, 2};
    Tensor x, dy, y, dx;
    std::vector<float> w, b, rm, rv, rm0, rv0, sm, si, dw, db;
    rm_batchnorm3d bn;

    Buffers()
        : x(shape), dy(shape), y(shape, kSentinel), dx(shape, kSentinel), w(3, 1.5f), b(3, 0.25f), rm(3, 0.1f),
          rv(3, 2.0f), rm0(rm), rv0(rv), sm(3, kSentinel), si(3, kSentinel), dw(3, kSentinel), db(3, kSentinel),
          bn(rm_batchnorm3d_make(w.data(), b.data(), rm.data(), rv.data()))
    {
        rmtest::fill_uniform(x.data, 1);
        rmtest::fill_uniform(dy.data, 2);
    }

    static bool all(const std::vector<float> &v, float value)
    {
        for (float e : v)
            if (e != value)
                return false;
        return true;
    }

    bool untouched() const
    {
        return all(y.data, kSentinel) && all(dx.data, kSentinel) && all(sm, kSentinel) && all(si, kSentinel) &&
               all(dw, kSentinel) && all(db, kSentinel) && rmtest::bit_identical(rm, rm0) &&
               rmtest::bit_identical(rv, rv0);
    }
};

// Ways to spoil one argument of otherwise valid buffers. A smaller view keeps pointing at valid storage.
void no_running_mean(Buffers &u) { u.bn.running_mean = nullptr; }
void no_running_var(Buffers &u) { u.bn.running_var = nullptr; }
void shrink_y(Buffers &u) { u.y.p()->ne[2] = 1; }
void shrink_dy(Buffers &u) { u.dy.p()->ne[2] = 1; }
void shrink_dx(Buffers &u) { u.dx.p()->ne[2] = 1; }

TEST(BatchNorm, RejectsBadArgumentsAndLeavesOutputsUntouched)
{
    using Call = std::function<rm_status(rm_ctx *, Buffers &)>;
    auto train_fwd = [](rm_ctx *c, Buffers &u) {
        return rm_batchnorm3d_forward_train(c, &u.bn, u.x.p(), u.y.p(), u.sm.data(), u.si.data());
    };
    auto train_bwd = [](rm_ctx *c, Buffers &u) {
        // Saved statistics that are valid values; the outputs are what must stay untouched.
        static const float mean[3] = {0, 0, 0}, invstd[3] = {1, 1, 1};
        return rm_batchnorm3d_backward_train(c, &u.bn, u.x.p(), mean, invstd, u.dy.p(), u.dx.p(), u.dw.data(),
                                             u.db.data());
    };
    auto infer_fwd = [](rm_ctx *c, Buffers &u) { return rm_batchnorm3d_forward_infer(c, &u.bn, u.x.p(), u.y.p()); };
    auto infer_bwd = [](rm_ctx *c, Buffers &u) {
        return rm_batchnorm3d_backward_infer(c, &u.bn, u.x.p(), u.dy.p(), u.dx.p(), u.dw.data(), u.db.data());
    };
    // Runs `call` after `spoil` has broken one argument.
    auto with = [](std::function<void(Buffers &)> spoil, Call call) -> Call {
        return [spoil, call](rm_ctx *c, Buffers &u) {
            spoil(u);
            return call(c, u);
        };
    };
    struct Bad {
        const char *what;
        rm_status want;
        Call call;
    };
    const std::vector<Bad> cases = {
        {"train fwd: bn NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_forward_train(c, nullptr, u.x.p(), u.y.p(), u.sm.data(), u.si.data());
         }},
        {"train fwd: running_mean NULL", RM_ERR_ARGUMENT, with(no_running_mean, train_fwd)},
        {"train fwd: running_var NULL", RM_ERR_ARGUMENT, with(no_running_var, train_fwd)},
        {"train fwd: eps < 0", RM_ERR_ARGUMENT, with([](Buffers &u) { u.bn.eps = -1e-5f; }, train_fwd)},
        {"train fwd: eps NaN", RM_ERR_ARGUMENT, with([](Buffers &u) { u.bn.eps = NAN; }, train_fwd)},
        {"train fwd: momentum 1.5", RM_ERR_ARGUMENT, with([](Buffers &u) { u.bn.momentum = 1.5f; }, train_fwd)},
        {"train fwd: x NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_forward_train(c, &u.bn, nullptr, u.y.p(), u.sm.data(), u.si.data());
         }},
        {"train fwd: x without data", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             rm_tensor t = *u.x.p();
             t.data = nullptr;
             return rm_batchnorm3d_forward_train(c, &u.bn, &t, u.y.p(), u.sm.data(), u.si.data());
         }},
        {"train fwd: y NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_forward_train(c, &u.bn, u.x.p(), nullptr, u.sm.data(), u.si.data());
         }},
        {"train fwd: y wrong shape", RM_ERR_SHAPE, with(shrink_y, train_fwd)},
        {"train fwd: save_mean NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_forward_train(c, &u.bn, u.x.p(), u.y.p(), nullptr, u.si.data());
         }},
        {"train fwd: save_invstd NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_forward_train(c, &u.bn, u.x.p(), u.y.p(), u.sm.data(), nullptr);
         }},
        {"train fwd: one value per channel", RM_ERR_SHAPE,
         [](rm_ctx *c, Buffers &u) {
             rm_tensor tx = *u.x.p(), ty = *u.y.p();
             tx.ne[0] = ty.ne[0] = 1;
             tx.ne[2] = tx.ne[3] = tx.ne[4] = ty.ne[2] = ty.ne[3] = ty.ne[4] = 1;
             return rm_batchnorm3d_forward_train(c, &u.bn, &tx, &ty, u.sm.data(), u.si.data());
         }},
        {"train bwd: bn NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_backward_train(c, nullptr, u.x.p(), u.sm.data(), u.si.data(), u.dy.p(), u.dx.p(),
                                                  u.dw.data(), u.db.data());
         }},
        {"train bwd: save_mean NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_backward_train(c, &u.bn, u.x.p(), nullptr, u.si.data(), u.dy.p(), u.dx.p(),
                                                  u.dw.data(), u.db.data());
         }},
        {"train bwd: save_invstd NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_backward_train(c, &u.bn, u.x.p(), u.sm.data(), nullptr, u.dy.p(), u.dx.p(),
                                                  u.dw.data(), u.db.data());
         }},
        {"train bwd: x NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_backward_train(c, &u.bn, nullptr, u.sm.data(), u.si.data(), u.dy.p(), u.dx.p(),
                                                  u.dw.data(), u.db.data());
         }},
        {"train bwd: dy NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_backward_train(c, &u.bn, u.x.p(), u.sm.data(), u.si.data(), nullptr, u.dx.p(),
                                                  u.dw.data(), u.db.data());
         }},
        {"train bwd: dy wrong shape", RM_ERR_SHAPE, with(shrink_dy, train_bwd)},
        {"train bwd: dx wrong shape", RM_ERR_SHAPE, with(shrink_dx, train_bwd)},
        {"infer fwd: bn NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) { return rm_batchnorm3d_forward_infer(c, nullptr, u.x.p(), u.y.p()); }},
        {"infer fwd: running_mean NULL", RM_ERR_ARGUMENT, with(no_running_mean, infer_fwd)},
        {"infer fwd: running_var NULL", RM_ERR_ARGUMENT, with(no_running_var, infer_fwd)},
        {"infer fwd: eps < 0", RM_ERR_ARGUMENT, with([](Buffers &u) { u.bn.eps = -1.0f; }, infer_fwd)},
        {"infer fwd: x NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) { return rm_batchnorm3d_forward_infer(c, &u.bn, nullptr, u.y.p()); }},
        {"infer fwd: x empty", RM_ERR_SHAPE, with([](Buffers &u) { u.x.p()->ne[1] = 0; }, infer_fwd)},
        {"infer fwd: y wrong shape", RM_ERR_SHAPE, with(shrink_y, infer_fwd)},
        {"infer bwd: running_var NULL", RM_ERR_ARGUMENT, with(no_running_var, infer_bwd)},
        {"infer bwd: dy NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Buffers &u) {
             return rm_batchnorm3d_backward_infer(c, &u.bn, u.x.p(), nullptr, u.dx.p(), u.dw.data(), u.db.data());
         }},
        {"infer bwd: dy wrong shape", RM_ERR_SHAPE, with(shrink_dy, infer_bwd)},
        {"infer bwd: dx wrong shape", RM_ERR_SHAPE, with(shrink_dx, infer_bwd)},
    };
    for (const Bad &bad : cases) {
        SCOPED_TRACE(bad.what);
        rmtest::Ctx ctx(2);
        Buffers u;
        EXPECT_EQ(bad.call(ctx, u), bad.want);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_NE(msg.find("batchnorm3d: "), std::string::npos) << msg;
        EXPECT_TRUE(u.untouched());
    }
    // The same calls with nothing spoiled succeed, so the failures above come from the spoiled argument.
    for (const Call &ok : {Call(train_fwd), Call(train_bwd), Call(infer_fwd), Call(infer_bwd)}) {
        rmtest::Ctx ctx(2);
        Buffers u;
        EXPECT_EQ(ok(ctx, u), RM_OK) << rm_ctx_error(ctx);
    }
}

TEST(BatchNorm, BitIdenticalAcrossThreadCountsAndRuns)
{
    const Shape shape{2, 5, 17, 19, 23};
    const int64_t c = shape[1];
    Params p(c, 500);
    Tensor x(shape), dy(shape);
    rmtest::fill_uniform(x.data, 501, -1.0f, 3.0f);
    rmtest::fill_uniform(dy.data, 502);

    // Every output of all four calls, concatenated, for one context.
    auto run = [&](rm_ctx *ctx) {
        std::vector<float> out;
        auto append = [&out](const std::vector<float> &v) { out.insert(out.end(), v.begin(), v.end()); };
        std::vector<float> rm = p.rm, rv = p.rv, sm(c), si(c), dw(c), db(c);
        Tensor y(shape), dx(shape);
        rm_batchnorm3d bn = rm_batchnorm3d_make(p.w.data(), p.b.data(), rm.data(), rv.data());
        EXPECT_EQ(rm_batchnorm3d_forward_train(ctx, &bn, x.p(), y.p(), sm.data(), si.data()), RM_OK);
        EXPECT_EQ(rm_batchnorm3d_backward_train(ctx, &bn, x.p(), sm.data(), si.data(), dy.p(), dx.p(), dw.data(),
                                                db.data()),
                  RM_OK);
        for (const auto *v : {&y.data, &dx.data, &rm, &rv, &sm, &si, &dw, &db})
            append(*v);
        EXPECT_EQ(rm_batchnorm3d_forward_infer(ctx, &bn, x.p(), y.p()), RM_OK);
        EXPECT_EQ(rm_batchnorm3d_backward_infer(ctx, &bn, x.p(), dy.p(), dx.p(), dw.data(), db.data()), RM_OK);
        for (const auto *v : {&y.data, &dx.data, &dw, &db})
            append(*v);
        return out;
    };
    rmtest::Ctx one(1), two(2);
    const std::vector<float> a = run(one), b = run(two), again = run(two);
    EXPECT_TRUE(rmtest::bit_identical(a, b)) << "1 thread vs 2 threads";
    EXPECT_TRUE(rmtest::bit_identical(b, again)) << "two runs";
}

} // namespace
