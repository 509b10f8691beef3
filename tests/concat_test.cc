// Channel concatenation: the fast operator against the reference, the backwards against finite differences, the
// exact layout, skipped gradients (entries with NULL data), bad arguments and thread-count independence.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::Ctx;
using rmtest::DTensor;
using rmtest::Shape;
using rmtest::Tensor;

Shape with_channels(Shape s, int64_t c)
{
    s[1] = c;
    return s;
}

// Inputs with the given channel counts and the spatial shape of s, filled with distinct random values.
std::vector<Tensor> make_inputs(const Shape &s, const std::vector<int64_t> &channels, uint32_t seed)
{
    std::vector<Tensor> xs;
    for (size_t i = 0; i < channels.size(); i++) {
        xs.emplace_back(with_channels(s, channels[i]));
        rmtest::fill_uniform(xs.back().data, seed + static_cast<uint32_t>(i));
    }
    return xs;
}

std::vector<const rm_tensor *> views(std::vector<Tensor> &ts)
{
    std::vector<const rm_tensor *> v;
    for (Tensor &t : ts)
        v.push_back(t.p());
    return v;
}

std::vector<rm_tensor *> mut_views(std::vector<Tensor> &ts)
{
    std::vector<rm_tensor *> v;
    for (Tensor &t : ts)
        v.push_back(t.p());
    return v;
}

int64_t sum(const std::vector<int64_t> &v)
{
    int64_t s = 0;
    for (int64_t x : v)
        s += x;
    return s;
}

const std::vector<int64_t> kChannelSets[] = {{3, 1, 13}, {1}, {2, 3}, {1, 1, 1, 1}};

TEST(Concat, ForwardMatchesReference)
{
    Ctx ctx(2);
    const Shape s{2, 0, 7, 6, 5};
    for (const std::vector<int64_t> &chans : kChannelSets) {
        SCOPED_TRACE("inputs " + std::to_string(chans.size()));
        std::vector<Tensor> xs = make_inputs(s, chans, 121);
        Tensor y(with_channels(s, sum(chans)));
        std::vector<const rm_tensor *> xv = views(xs);
        ASSERT_EQ(rm_concat_forward(ctx, xv.data(), static_cast<int>(xv.size()), y.p()), RM_OK) << rm_ctx_error(ctx);

        std::vector<DTensor> xds;
        for (const Tensor &x : xs)
            xds.emplace_back(x);
        std::vector<const rm_dtensor *> xdv;
        for (DTensor &d : xds)
            xdv.push_back(d.p());
        DTensor yd(y.shape());
        rm_ref_concat_forward(xdv.data(), static_cast<int>(xdv.size()), yd.p());
        EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
        // A pure copy: exact.
        EXPECT_EQ(rmtest::max_rel_error(y.data, yd.data), 0.0);
    }
}

TEST(Concat, BackwardMatchesFiniteDifferences)
{
    Ctx ctx(2);
    const Shape s{2, 0, 3, 2, 5};
    const std::vector<int64_t> chans = {3, 1, 2};
    std::vector<Tensor> xs = make_inputs(s, chans, 131);
    const Shape ys = with_channels(s, sum(chans));
    Tensor r(ys);
    rmtest::fill_uniform(r.data, 132);

    std::vector<DTensor> xds;
    for (const Tensor &x : xs)
        xds.emplace_back(x);
    DTensor rd(r), yd(ys);
    auto loss = [&] {
        std::vector<const rm_dtensor *> xdv;
        for (DTensor &d : xds)
            xdv.push_back(d.p());
        rm_ref_concat_forward(xdv.data(), 3, yd.p());
        return rmtest::dot(rd.data, yd.data);
    };

    std::vector<DTensor> dx_ref;
    std::vector<Tensor> dx;
    for (int64_t c : chans) {
        dx_ref.emplace_back(with_channels(s, c));
        dx.emplace_back(with_channels(s, c));
    }
    std::vector<rm_dtensor *> dx_ref_v;
    for (DTensor &d : dx_ref)
        dx_ref_v.push_back(d.p());
    rm_ref_concat_backward(rd.p(), dx_ref_v.data(), 3);
    std::vector<rm_tensor *> dxv = mut_views(dx);
    ASSERT_EQ(rm_concat_backward(ctx, r.p(), dxv.data(), 3), RM_OK) << rm_ctx_error(ctx);

    for (size_t i = 0; i < chans.size(); i++) {
        SCOPED_TRACE("input " + std::to_string(i));
        const std::vector<double> fd = rmtest::numeric_grad(xds[i].data, loss);
        EXPECT_LT(rmtest::max_rel_error(dx_ref[i].data, fd), 1e-6);
        EXPECT_LT(rmtest::max_rel_error(dx[i].data, fd), 1e-5);
    }
}

// Two samples, inputs of 1 and 2 channels, two voxels each: y[n] = (a[n], b[n]) channel after channel.
TEST(Concat, ExactLayoutAndSplitSkippingNullGradients)
{
    Ctx ctx(1);
    Tensor a({2, 1, 1, 1, 2}), b({2, 2, 1, 1, 2}), y({2, 3, 1, 1, 2});
    a.data = {1, 2, /* n = 1 */ 3, 4};
    b.data = {10, 11, 12, 13, /* n = 1 */ 14, 15, 16, 17};
    const rm_tensor *xs[] = {a.p(), b.p()};
    ASSERT_EQ(rm_concat_forward(ctx, xs, 2, y.p()), RM_OK);
    EXPECT_EQ(y.data, (std::vector<float>{1, 2, 10, 11, 12, 13, /* n = 1 */ 3, 4, 14, 15, 16, 17}));

    // The backward is the inverse split.
    Tensor da({2, 1, 1, 1, 2}, -1.0f), db({2, 2, 1, 1, 2}, -1.0f);
    rm_tensor *dxs[] = {da.p(), db.p()};
    ASSERT_EQ(rm_concat_backward(ctx, y.p(), dxs, 2), RM_OK);
    EXPECT_EQ(da.data, a.data);
    EXPECT_EQ(db.data, b.data);

    // Skipped entries keep their shape and have no data: the others still land at their own channels.
    Tensor db2({2, 2, 1, 1, 2}, -1.0f);
    rm_tensor skipped_a = *da.p();
    skipped_a.data = nullptr;
    rm_tensor *skip_first[] = {&skipped_a, db2.p()};
    ASSERT_EQ(rm_concat_backward(ctx, y.p(), skip_first, 2), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(db2.data, b.data);
}

// Three inputs of 2, 1 and 3 channels with one gradient skipped anywhere: the others land at their own channels.
TEST(Concat, BackwardPlacesGradientsAroundASkippedEntry)
{
    Ctx ctx(2);
    const Shape s{2, 0, 3, 4, 5};
    const std::vector<int64_t> chans = {2, 1, 3};
    std::vector<Tensor> xs = make_inputs(s, chans, 141);
    Tensor y(with_channels(s, 6));
    std::vector<const rm_tensor *> xv = views(xs);
    ASSERT_EQ(rm_concat_forward(ctx, xv.data(), 3, y.p()), RM_OK);
    for (int skip = 0; skip < 3; skip++) {
        SCOPED_TRACE("skip " + std::to_string(skip));
        std::vector<Tensor> dx;
        for (int64_t c : chans)
            dx.emplace_back(with_channels(s, c), -1.0f);
        std::vector<rm_tensor *> dxv = mut_views(dx);
        dxv[static_cast<size_t>(skip)]->data = nullptr;
        ASSERT_EQ(rm_concat_backward(ctx, y.p(), dxv.data(), 3), RM_OK) << rm_ctx_error(ctx);
        for (size_t i = 0; i < 3; i++) {
            if (i == static_cast<size_t>(skip)) {
                EXPECT_EQ(dx[i].data, std::vector<float>(dx[i].data.size(), -1.0f));
            } else {
                EXPECT_EQ(dx[i].data, xs[i].data);
            }
        }
    }
}

TEST(Concat, SingleInputIsACopy)
{
    Ctx ctx(2);
    Tensor x({2, 3, 7, 6, 5}), y({2, 3, 7, 6, 5}), dx({2, 3, 7, 6, 5});
    rmtest::fill_uniform(x.data, 151);
    const rm_tensor *xs[] = {x.p()};
    ASSERT_EQ(rm_concat_forward(ctx, xs, 1, y.p()), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(y.data, x.data));
    rm_tensor *dxs[] = {dx.p()};
    ASSERT_EQ(rm_concat_backward(ctx, y.p(), dxs, 1), RM_OK);
    EXPECT_TRUE(rmtest::bit_identical(dx.data, x.data));
}

TEST(Concat, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    Ctx ctx(1);
    Tensor a({2, 1, 3, 3, 3}, 1.0f), b({2, 2, 3, 3, 3}, 2.0f), y({2, 3, 3, 3, 3}, 42.0f);
    Tensor bad_d({2, 2, 4, 3, 3}, 2.0f), bad_n({1, 2, 3, 3, 3}, 2.0f), y4({2, 4, 3, 3, 3}, 42.0f);
    Tensor da({2, 1, 3, 3, 3}, 42.0f), db({2, 2, 3, 3, 3}, 42.0f), dc({2, 1, 3, 3, 3}, 42.0f);

    auto untouched = [](const Tensor &t) { return t.data == std::vector<float>(t.data.size(), 42.0f); };
    auto expect_fail = [&](rm_status got, rm_status want, const char *needle) {
        EXPECT_EQ(got, want);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind("concat: ", 0), 0u) << msg;
        EXPECT_NE(msg.find(needle), std::string::npos) << msg;
        EXPECT_TRUE(untouched(y) && untouched(y4) && untouched(da) && untouched(db) && untouched(dc));
    };

    const rm_tensor *good[] = {a.p(), b.p()};
    const rm_tensor *with_null[] = {a.p(), nullptr};
    const rm_tensor *wrong_d[] = {a.p(), bad_d.p()};
    const rm_tensor *wrong_n[] = {a.p(), bad_n.p()};
    expect_fail(rm_concat_forward(ctx, nullptr, 2, y.p()), RM_ERR_ARGUMENT, "xs");
    expect_fail(rm_concat_forward(ctx, good, 0, y.p()), RM_ERR_ARGUMENT, "n = 0");
    expect_fail(rm_concat_forward(ctx, good, -1, y.p()), RM_ERR_ARGUMENT, "n = -1");
    expect_fail(rm_concat_forward(ctx, good, 2, nullptr), RM_ERR_ARGUMENT, "y");
    expect_fail(rm_concat_forward(ctx, with_null, 2, y.p()), RM_ERR_ARGUMENT, "xs[1]");
    expect_fail(rm_concat_forward(ctx, wrong_d, 2, y.p()), RM_ERR_SHAPE, "xs[1] has shape (2, 2, 4, 3, 3)");
    expect_fail(rm_concat_forward(ctx, wrong_n, 2, y.p()), RM_ERR_SHAPE, "xs[1]");
    expect_fail(rm_concat_forward(ctx, good, 2, y4.p()), RM_ERR_SHAPE, "channels");

    rm_tensor *dgood[] = {da.p(), db.p()};
    rm_tensor *dwrong[] = {da.p(), bad_d.p()};
    expect_fail(rm_concat_backward(ctx, y.p(), nullptr, 2), RM_ERR_ARGUMENT, "dxs");
    expect_fail(rm_concat_backward(ctx, y.p(), dgood, 0), RM_ERR_ARGUMENT, "n = 0");
    expect_fail(rm_concat_backward(ctx, nullptr, dgood, 2), RM_ERR_ARGUMENT, "dy");
    expect_fail(rm_concat_backward(ctx, y.p(), dwrong, 2), RM_ERR_SHAPE, "dxs[1]");
    expect_fail(rm_concat_backward(ctx, y4.p(), dgood, 2), RM_ERR_SHAPE, "channels");
    // Every entry is needed for its shape, even a skipped one.
    rm_tensor *with_null_entry[] = {da.p(), nullptr};
    expect_fail(rm_concat_backward(ctx, y.p(), with_null_entry, 2), RM_ERR_ARGUMENT, "dxs[1] is NULL");
    // A skipped entry's channels still count.
    rm_tensor skipped_c = *dc.p();
    skipped_c.data = nullptr;
    rm_tensor *too_many[] = {da.p(), db.p(), &skipped_c};
    expect_fail(rm_concat_backward(ctx, y.p(), too_many, 3), RM_ERR_SHAPE, "channels");
}

TEST(Concat, BitIdenticalOnOneAndTwoThreads)
{
    const Shape s{2, 0, 17, 19, 23};
    const std::vector<int64_t> chans = {5, 2, 7};
    std::vector<Tensor> xs = make_inputs(s, chans, 161);
    std::vector<const rm_tensor *> xv = views(xs);
    std::vector<float> y_ref;
    std::vector<std::vector<float>> dx_ref;
    for (int run = 0; run < 3; run++) {
        Ctx ctx(run == 0 ? 1 : 2);
        Tensor y(with_channels(s, 14));
        ASSERT_EQ(rm_concat_forward(ctx, xv.data(), 3, y.p()), RM_OK);
        std::vector<Tensor> dx;
        for (int64_t c : chans)
            dx.emplace_back(with_channels(s, c));
        std::vector<rm_tensor *> dxv = mut_views(dx);
        ASSERT_EQ(rm_concat_backward(ctx, y.p(), dxv.data(), 3), RM_OK);
        if (run == 0) {
            y_ref = y.data;
            for (const Tensor &d : dx)
                dx_ref.push_back(d.data);
            continue;
        }
        EXPECT_TRUE(rmtest::bit_identical(y.data, y_ref));
        for (size_t i = 0; i < dx.size(); i++)
            EXPECT_TRUE(rmtest::bit_identical(dx[i].data, dx_ref[i]));
    }
    for (size_t i = 0; i < xs.size(); i++)
        EXPECT_TRUE(rmtest::bit_identical(dx_ref[i], xs[i].data));
}

} // namespace
