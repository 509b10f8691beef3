// The dense layer (torch.nn.Linear): the fast operator against the reference, every gradient against finite
// differences, an exact case, bad arguments and thread-count independence.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::Ctx;
using rmtest::DTensor;
using rmtest::Shape;
using rmtest::Tensor;

struct DenseCase {
    Shape x;     // features are everything after N
    int64_t out;
};

// A 3-D feature block, a plain matrix with one output, and more than one tile (256) of features.
const DenseCase kCases[] = {{{2, 3, 7, 6, 5}, 13}, {{5, 7, 1, 1, 1}, 1}, {{3, 13, 1, 4, 6}, 5}};

Shape weight_shape(const DenseCase &c) { return {c.out, rmtest::numel(c.x) / c.x[0], 1, 1, 1}; }
Shape output_shape(const DenseCase &c) { return {c.x[0], c.out, 1, 1, 1}; }

TEST(Dense, ForwardMatchesReference)
{
    Ctx ctx(2);
    for (const DenseCase &c : kCases) {
        for (bool with_bias : {true, false}) {
            SCOPED_TRACE("in=" + std::to_string(rmtest::numel(c.x) / c.x[0]) + " bias=" + std::to_string(with_bias));
            Tensor x(c.x), w(weight_shape(c)), y(output_shape(c));
            std::vector<float> b(static_cast<size_t>(c.out));
            rmtest::fill_uniform(x.data, 211);
            rmtest::fill_uniform(w.data, 212);
            rmtest::fill_uniform(b, 213);
            ASSERT_EQ(rm_dense_forward(ctx, x.p(), w.p(), with_bias ? b.data() : nullptr, y.p()), RM_OK)
                << rm_ctx_error(ctx);
            DTensor xd(x), wd(w), yd(output_shape(c));
            std::vector<double> bd = rmtest::to_double(b);
            rm_ref_dense_forward(xd.p(), wd.p(), with_bias ? bd.data() : nullptr, yd.p());
            EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
        }
    }
}

TEST(Dense, BackwardMatchesFiniteDifferences)
{
    Ctx ctx(2);
    const DenseCase small[] = {{{3, 2, 2, 1, 3}, 4}, {{1, 5, 1, 1, 1}, 1}, {{4, 1, 1, 1, 1}, 13}};
    for (const DenseCase &c : small) {
        SCOPED_TRACE("in=" + std::to_string(rmtest::numel(c.x) / c.x[0]) + " out=" + std::to_string(c.out));
        Tensor x(c.x), w(weight_shape(c)), r(output_shape(c));
        std::vector<float> b(static_cast<size_t>(c.out));
        rmtest::fill_uniform(x.data, 221);
        rmtest::fill_uniform(w.data, 222);
        rmtest::fill_uniform(b, 223);
        rmtest::fill_uniform(r.data, 224);

        DTensor xd(x), wd(w), rd(r), yd(output_shape(c));
        std::vector<double> bd = rmtest::to_double(b);
        auto loss = [&] {
            rm_ref_dense_forward(xd.p(), wd.p(), bd.data(), yd.p());
            return rmtest::dot(rd.data, yd.data);
        };
        const std::vector<double> fd_x = rmtest::numeric_grad(xd.data, loss);
        const std::vector<double> fd_w = rmtest::numeric_grad(wd.data, loss);
        const std::vector<double> fd_b = rmtest::numeric_grad(bd, loss);

        DTensor dx_ref(c.x), dw_ref(weight_shape(c));
        std::vector<double> db_ref(static_cast<size_t>(c.out));
        rm_ref_dense_backward(xd.p(), wd.p(), rd.p(), dx_ref.p(), dw_ref.p(), db_ref.data());
        EXPECT_LT(rmtest::max_rel_error(dx_ref.data, fd_x), 1e-6);
        EXPECT_LT(rmtest::max_rel_error(dw_ref.data, fd_w), 1e-6);
        EXPECT_LT(rmtest::max_rel_error(db_ref, fd_b), 1e-6);

        Tensor dx(c.x), dw(weight_shape(c));
        std::vector<float> db(static_cast<size_t>(c.out));
        ASSERT_EQ(rm_dense_backward(ctx, x.p(), w.p(), r.p(), dx.p(), dw.p(), db.data()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_LT(rmtest::max_rel_error(dx.data, fd_x), 1e-5);
        EXPECT_LT(rmtest::max_rel_error(dw.data, fd_w), 1e-5);
        EXPECT_LT(rmtest::max_rel_error(db, fd_b), 1e-5);
    }
}

// Also checks against the reference on the large feature blocks, with every gradient output but one NULL.
TEST(Dense, BackwardMatchesReferenceWithNullOutputs)
{
    Ctx ctx(2);
    for (const DenseCase &c : kCases) {
        Tensor x(c.x), w(weight_shape(c)), dy(output_shape(c));
        rmtest::fill_uniform(x.data, 231);
        rmtest::fill_uniform(w.data, 232);
        rmtest::fill_uniform(dy.data, 233);
        DTensor xd(x), wd(w), dyd(dy), dx_ref(c.x), dw_ref(weight_shape(c));
        std::vector<double> db_ref(static_cast<size_t>(c.out));
        rm_ref_dense_backward(xd.p(), wd.p(), dyd.p(), dx_ref.p(), dw_ref.p(), db_ref.data());

        Tensor dx(c.x), dw(weight_shape(c));
        std::vector<float> db(static_cast<size_t>(c.out));
        ASSERT_EQ(rm_dense_backward(ctx, x.p(), w.p(), dy.p(), dx.p(), nullptr, nullptr), RM_OK);
        ASSERT_EQ(rm_dense_backward(ctx, x.p(), w.p(), dy.p(), nullptr, dw.p(), nullptr), RM_OK);
        ASSERT_EQ(rm_dense_backward(ctx, x.p(), w.p(), dy.p(), nullptr, nullptr, db.data()), RM_OK);
        EXPECT_LT(rmtest::max_rel_error(dx.data, dx_ref.data), 1e-5);
        EXPECT_LT(rmtest::max_rel_error(dw.data, dw_ref.data), 1e-5);
        EXPECT_LT(rmtest::max_rel_error(db, db_ref), 1e-5);
    }
}

// y = x·wᵀ + b with x = [[1, 2], [3, -1]], w = [[1, 0], [0, 1], [1, 1]], b = [0.5, 0, -1].
TEST(Dense, ExactSmallCase)
{
    Ctx ctx(1);
    Tensor x({2, 2, 1, 1, 1}), w({3, 2, 1, 1, 1}), y({2, 3, 1, 1, 1});
    x.data = {1, 2, 3, -1};
    w.data = {1, 0, 0, 1, 1, 1};
    const float b[3] = {0.5f, 0.0f, -1.0f};
    ASSERT_EQ(rm_dense_forward(ctx, x.p(), w.p(), b, y.p()), RM_OK);
    EXPECT_EQ(y.data, (std::vector<float>{1.5f, 2.0f, 2.0f, 3.5f, -1.0f, 1.0f}));

    // dy = [[1, 0, 2], [0, 1, 0]]: dx = dy·w, dw = dyᵀ·x, db = Σ_n dy.
    Tensor dy({2, 3, 1, 1, 1}), dx({2, 2, 1, 1, 1}), dw({3, 2, 1, 1, 1});
    dy.data = {1, 0, 2, 0, 1, 0};
    float db[3];
    ASSERT_EQ(rm_dense_backward(ctx, x.p(), w.p(), dy.p(), dx.p(), dw.p(), db), RM_OK);
    EXPECT_EQ(dx.data, (std::vector<float>{3, 2, 0, 1}));
    EXPECT_EQ(dw.data, (std::vector<float>{1, 2, 3, -1, 2, 4}));
    EXPECT_EQ(std::vector<float>(db, db + 3), (std::vector<float>{1, 1, 2}));
}

TEST(Dense, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    Tensor x({2, 3, 1, 2, 1}, 1.0f), w({4, 6, 1, 1, 1}, 1.0f), y({2, 4, 1, 1, 1}, 42.0f);
    Tensor w_in({4, 5, 1, 1, 1}, 1.0f), w_3d({4, 3, 1, 2, 1}, 1.0f), y_out({2, 5, 1, 1, 1}, 42.0f);
    Tensor y_n({3, 4, 1, 1, 1}, 42.0f), dx({2, 3, 1, 2, 1}, 42.0f), dx_bad({2, 6, 1, 1, 1}, 42.0f);
    Tensor dw({4, 6, 1, 1, 1}, 42.0f), dw_bad({6, 4, 1, 1, 1}, 42.0f);
    std::vector<float> db(4, 42.0f);
    auto untouched = [](const Tensor &t) { return t.data == std::vector<float>(t.data.size(), 42.0f); };
    auto expect_fail = [&](rm_status got, rm_status want, const char *needle) {
        EXPECT_EQ(got, want);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind("dense: ", 0), 0u) << msg;
        EXPECT_NE(msg.find(needle), std::string::npos) << msg;
        EXPECT_TRUE(untouched(y) && untouched(y_out) && untouched(y_n) && untouched(dx) && untouched(dx_bad) &&
                    untouched(dw) && untouched(dw_bad));
        EXPECT_EQ(db, std::vector<float>(4, 42.0f));
    };
    expect_fail(rm_dense_forward(ctx, nullptr, w.p(), nullptr, y.p()), RM_ERR_ARGUMENT, "x");
    expect_fail(rm_dense_forward(ctx, x.p(), nullptr, nullptr, y.p()), RM_ERR_ARGUMENT, "w");
    expect_fail(rm_dense_forward(ctx, x.p(), w.p(), nullptr, nullptr), RM_ERR_ARGUMENT, "y");
    expect_fail(rm_dense_forward(ctx, x.p(), w_in.p(), nullptr, y.p()), RM_ERR_SHAPE, "w has shape (4, 5, 1, 1, 1)");
    // w must be a matrix even when its elements would match.
    expect_fail(rm_dense_forward(ctx, x.p(), w_3d.p(), nullptr, y.p()), RM_ERR_SHAPE, "w");
    expect_fail(rm_dense_forward(ctx, x.p(), w.p(), nullptr, y_out.p()), RM_ERR_SHAPE, "y");
    expect_fail(rm_dense_forward(ctx, x.p(), w.p(), nullptr, y_n.p()), RM_ERR_SHAPE, "y");
    expect_fail(rm_dense_backward(ctx, x.p(), w.p(), nullptr, dx.p(), dw.p(), db.data()), RM_ERR_ARGUMENT, "dy");
    expect_fail(rm_dense_backward(ctx, x.p(), w.p(), y_out.p(), dx.p(), dw.p(), db.data()), RM_ERR_SHAPE, "dy");
    expect_fail(rm_dense_backward(ctx, x.p(), w.p(), y.p(), dx_bad.p(), dw.p(), db.data()), RM_ERR_SHAPE, "dx");
    expect_fail(rm_dense_backward(ctx, x.p(), w.p(), y.p(), dx.p(), dw_bad.p(), db.data()), RM_ERR_SHAPE, "dw");
    expect_fail(rm_dense_backward(ctx, x.p(), w_in.p(), y.p(), dx.p(), dw.p(), db.data()), RM_ERR_SHAPE, "w");
}

TEST(Dense, BitIdenticalOnOneAndTwoThreads)
{
    const Shape xs{2, 5, 17, 19, 23};
    const int64_t in = 5 * 17 * 19 * 23, out = 7;
    Tensor x(xs), w({out, in, 1, 1, 1}), dy({2, out, 1, 1, 1});
    std::vector<float> b(out);
    rmtest::fill_uniform(x.data, 241);
    rmtest::fill_uniform(w.data, 242);
    rmtest::fill_uniform(dy.data, 243);
    rmtest::fill_uniform(b, 244);
    std::vector<float> y_ref, dx_ref, dw_ref, db_ref;
    for (int run = 0; run < 3; run++) {
        Ctx ctx(run == 0 ? 1 : 2);
        Tensor y({2, out, 1, 1, 1}), dx(xs), dw({out, in, 1, 1, 1});
        std::vector<float> db(out);
        ASSERT_EQ(rm_dense_forward(ctx, x.p(), w.p(), b.data(), y.p()), RM_OK);
        ASSERT_EQ(rm_dense_backward(ctx, x.p(), w.p(), dy.p(), dx.p(), dw.p(), db.data()), RM_OK);
        if (run == 0) {
            y_ref = y.data, dx_ref = dx.data, dw_ref = dw.data, db_ref = db;
            continue;
        }
        EXPECT_TRUE(rmtest::bit_identical(y.data, y_ref));
        EXPECT_TRUE(rmtest::bit_identical(dx.data, dx_ref));
        EXPECT_TRUE(rmtest::bit_identical(dw.data, dw_ref));
        EXPECT_TRUE(rmtest::bit_identical(db, db_ref));
    }
}

} // namespace
