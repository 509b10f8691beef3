// Average pooling: the fast operator against the double reference, the backwards against finite differences,
// hand-computed cases, argument checks and thread-count independence.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::DTensor;
using rmtest::Shape;
using rmtest::Tensor;

struct PoolCase {
    Shape shape;
    int kernel;
};

// Odd sizes, C not a multiple of 8, volumes thinner than the kernel, a W longer than the D pass's chunk and a
// plane larger than it (so the D pass runs in several chunks).
const PoolCase kAwkward[] = {
    {{2, 3, 7, 6, 5}, 3},   {{2, 3, 7, 6, 5}, 5},  {{1, 1, 4, 5, 6}, 3}, {{1, 13, 3, 4, 9}, 5},
    {{1, 13, 3, 4, 9}, 3},  {{2, 2, 2, 1, 3}, 5},  {{1, 1, 1, 1, 1}, 3}, {{1, 1, 1, 1, 1}, 5},
    {{1, 2, 3, 2, 1100}, 3}, {{1, 1, 4, 40, 30}, 5}, {{3, 1, 6, 1, 1}, 5},
};

std::string name(const PoolCase &c)
{
    std::string s = "k=" + std::to_string(c.kernel) + " shape=";
    for (int64_t d : c.shape)
        s += std::to_string(d) + " ";
    return s;
}

TEST(AvgPool, ForwardMatchesReferenceOnOddShapes)
{
    rmtest::Ctx ctx(2);
    uint32_t seed = 1;
    for (const PoolCase &pc : kAwkward) {
        SCOPED_TRACE(name(pc));
        Tensor x(pc.shape), y(pc.shape);
        rmtest::fill_uniform(x.data, seed++);
        ASSERT_EQ(rm_avgpool3d_forward(ctx, pc.kernel, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
        DTensor xd(x), yd(pc.shape);
        rm_ref_avgpool3d_forward(pc.kernel, xd.p(), yd.p());
        EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
    }
}

TEST(AvgPool, BackwardMatchesReferenceOnOddShapes)
{
    rmtest::Ctx ctx(2);
    uint32_t seed = 100;
    for (const PoolCase &pc : kAwkward) {
        SCOPED_TRACE(name(pc));
        Tensor dy(pc.shape), dx(pc.shape);
        rmtest::fill_uniform(dy.data, seed++);
        ASSERT_EQ(rm_avgpool3d_backward(ctx, pc.kernel, dy.p(), dx.p()), RM_OK) << rm_ctx_error(ctx);
        DTensor dyd(dy), dxd(pc.shape);
        rm_ref_avgpool3d_backward(pc.kernel, dyd.p(), dxd.p());
        EXPECT_LT(rmtest::max_rel_error(dx.data, dxd.data), 1e-5);
    }
}

TEST(AvgPool, BackwardsMatchFiniteDifferences)
{
    rmtest::Ctx ctx(2);
    const Shape shape{2, 2, 3, 4, 5};
    for (int kernel : {3, 5}) {
        SCOPED_TRACE("k=" + std::to_string(kernel));
        Tensor x(shape), r(shape);
        rmtest::fill_uniform(x.data, 7);
        rmtest::fill_uniform(r.data, 8);
        DTensor xd(x), rd(r);
        // loss(x) = <r, pool(x)>, so d loss / dx = pool backward of r.
        auto loss = [&]() {
            DTensor y(shape);
            rm_ref_avgpool3d_forward(kernel, xd.p(), y.p());
            return rmtest::dot(rd.data, y.data);
        };
        const std::vector<double> fd = rmtest::numeric_grad(xd.data, loss);

        DTensor dx_ref(shape);
        rm_ref_avgpool3d_backward(kernel, rd.p(), dx_ref.p());
        EXPECT_LT(rmtest::max_rel_error(dx_ref.data, fd), 1e-6);

        Tensor dx(shape);
        ASSERT_EQ(rm_avgpool3d_backward(ctx, kernel, r.p(), dx.p()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_LT(rmtest::max_rel_error(dx.data, fd), 1e-5);
    }
}

TEST(AvgPool, CentredImpulseSpreadsOneOverKCubedEverywhere)
{
    rmtest::Ctx ctx(1);
    const Shape shape{1, 1, 3, 3, 3};
    Tensor x(shape), y(shape, -1.0f), dx(shape, -1.0f);
    x.data[13] = 1.0f; // (1, 1, 1)
    ASSERT_EQ(rm_avgpool3d_forward(ctx, 3, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
    for (float v : y.data)
        EXPECT_FLOAT_EQ(v, 1.0f / 27.0f);
    ASSERT_EQ(rm_avgpool3d_backward(ctx, 3, x.p(), dx.p()), RM_OK) << rm_ctx_error(ctx);
    for (float v : dx.data)
        EXPECT_FLOAT_EQ(v, 1.0f / 27.0f);

    // Reference too: the exact case pins down both implementations.
    DTensor xd(x), yd(shape);
    rm_ref_avgpool3d_forward(3, xd.p(), yd.p());
    for (double v : yd.data)
        EXPECT_DOUBLE_EQ(v, 1.0 / 27.0);
}

TEST(AvgPool, ConstantInputCountsInRangeNeighboursOverKCubed)
{
    // All ones, k = 3 on 3×3×3: a voxel sees 2 or 3 in-range neighbours per axis, always divided by 27.
    rmtest::Ctx ctx(1);
    const Shape shape{1, 1, 3, 3, 3};
    Tensor x(shape, 1.0f), y(shape);
    ASSERT_EQ(rm_avgpool3d_forward(ctx, 3, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
    for (int d = 0; d < 3; d++)
        for (int h = 0; h < 3; h++)
            for (int w = 0; w < 3; w++) {
                const int count = (d == 1 ? 3 : 2) * (h == 1 ? 3 : 2) * (w == 1 ? 3 : 2);
                EXPECT_NEAR(y.data[(d * 3 + h) * 3 + w], count / 27.0, 1e-6) << d << " " << h << " " << w;
            }
}

TEST(AvgPool, RejectsBadArgumentsAndLeavesOutputUntouched)
{
    const Shape shape{2, 3, 4, 5, 6};
    const float sentinel = 42.0f;
    struct Bad {
        const char *what;
        rm_status want;
        std::function<rm_status(rm_ctx *, Tensor &, Tensor &)> call; // (ctx, input, output)
    };
    using Call = std::function<rm_status(rm_ctx *, Tensor &, Tensor &)>;
    auto fwd = [](int k) -> Call {
        return [k](rm_ctx *c, Tensor &in, Tensor &out) { return rm_avgpool3d_forward(c, k, in.p(), out.p()); };
    };
    auto bwd = [](int k) -> Call {
        return [k](rm_ctx *c, Tensor &in, Tensor &out) { return rm_avgpool3d_backward(c, k, in.p(), out.p()); };
    };
    const std::vector<Bad> cases = {
        {"fwd kernel 4", RM_ERR_ARGUMENT, fwd(4)},
        {"fwd kernel 1", RM_ERR_ARGUMENT, fwd(1)},
        {"fwd kernel 0", RM_ERR_ARGUMENT, fwd(0)},
        {"fwd kernel -3", RM_ERR_ARGUMENT, fwd(-3)},
        {"fwd kernel 7", RM_ERR_ARGUMENT, fwd(7)},
        {"fwd kernel 9", RM_ERR_ARGUMENT, fwd(9)},
        {"bwd kernel 2", RM_ERR_ARGUMENT, bwd(2)},
        {"fwd x NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Tensor &, Tensor &out) { return rm_avgpool3d_forward(c, 3, nullptr, out.p()); }},
        {"fwd y NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Tensor &in, Tensor &) { return rm_avgpool3d_forward(c, 3, in.p(), nullptr); }},
        {"bwd dy NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Tensor &, Tensor &out) { return rm_avgpool3d_backward(c, 3, nullptr, out.p()); }},
        {"bwd dx NULL", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Tensor &in, Tensor &) { return rm_avgpool3d_backward(c, 5, in.p(), nullptr); }},
        {"fwd x without data", RM_ERR_ARGUMENT,
         [](rm_ctx *c, Tensor &in, Tensor &out) {
             rm_tensor t = *in.p();
             t.data = nullptr;
             return rm_avgpool3d_forward(c, 3, &t, out.p());
         }},
        {"fwd x empty", RM_ERR_SHAPE,
         [](rm_ctx *c, Tensor &in, Tensor &out) {
             rm_tensor t = *in.p();
             t.ne[3] = 0;
             return rm_avgpool3d_forward(c, 3, &t, out.p());
         }},
        {"fwd y wrong shape", RM_ERR_SHAPE,
         [](rm_ctx *c, Tensor &in, Tensor &out) {
             rm_tensor t = *out.p();
             t.ne[4] = 5; // a smaller view of the same storage
             return rm_avgpool3d_forward(c, 3, in.p(), &t);
         }},
        {"bwd dx wrong shape", RM_ERR_SHAPE,
         [](rm_ctx *c, Tensor &in, Tensor &out) {
             rm_tensor t = *out.p();
             t.ne[0] = 1;
             return rm_avgpool3d_backward(c, 3, in.p(), &t);
         }},
    };
    for (const Bad &bad : cases) {
        SCOPED_TRACE(bad.what);
        rmtest::Ctx ctx(2);
        Tensor in(shape), out(shape, sentinel);
        rmtest::fill_uniform(in.data, 3);
        EXPECT_EQ(bad.call(ctx, in, out), bad.want);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_NE(msg.find("avgpool3d: "), std::string::npos) << msg;
        for (float v : out.data)
            ASSERT_EQ(v, sentinel);
    }
    rmtest::Ctx ctx(1);
    Tensor in(shape), out(shape);
    EXPECT_EQ(rm_avgpool3d_forward(ctx, 3, in.p(), out.p()), RM_OK); // the harness itself is sound
}

TEST(AvgPool, BitIdenticalAcrossThreadCountsAndRuns)
{
    const Shape shape{2, 5, 17, 19, 23};
    Tensor x(shape);
    rmtest::fill_uniform(x.data, 11);
    rmtest::Ctx one(1), two(2);
    for (int kernel : {3, 5}) {
        SCOPED_TRACE("k=" + std::to_string(kernel));
        Tensor y1(shape), y2(shape), y3(shape), d1(shape), d2(shape), d3(shape);
        ASSERT_EQ(rm_avgpool3d_forward(one, kernel, x.p(), y1.p()), RM_OK);
        ASSERT_EQ(rm_avgpool3d_forward(two, kernel, x.p(), y2.p()), RM_OK);
        const size_t bytes = rm_ctx_workspace_bytes(two);
        ASSERT_EQ(rm_avgpool3d_forward(two, kernel, x.p(), y3.p()), RM_OK);
        EXPECT_EQ(rm_ctx_workspace_bytes(two), bytes) << "the same call should reuse the working memory";
        EXPECT_TRUE(rmtest::bit_identical(y1.data, y2.data));
        EXPECT_TRUE(rmtest::bit_identical(y2.data, y3.data));

        ASSERT_EQ(rm_avgpool3d_backward(one, kernel, x.p(), d1.p()), RM_OK);
        ASSERT_EQ(rm_avgpool3d_backward(two, kernel, x.p(), d2.p()), RM_OK);
        ASSERT_EQ(rm_avgpool3d_backward(two, kernel, x.p(), d3.p()), RM_OK);
        EXPECT_TRUE(rmtest::bit_identical(d1.data, d2.data));
        EXPECT_TRUE(rmtest::bit_identical(d2.data, d3.data));
    }
}

// ---- mean over depth ----

TEST(DepthMean, MatchesReferenceAndFiniteDifferencesOnOddShapes)
{
    rmtest::Ctx one(1), two(2);
    uint32_t seed = 200;
    // One layer (the identity), odd sizes, and a map large enough for a thread team.
    for (const Shape &shape : {Shape{2, 3, 7, 6, 5}, Shape{1, 1, 1, 4, 3}, Shape{1, 2, 13, 1, 1}, Shape{1, 1, 5, 70, 90}}) {
        SCOPED_TRACE(name({shape, 0}).substr(4)); // the shape; no kernel here
        const Shape flat{shape[0], shape[1], 1, shape[3], shape[4]};
        Tensor x(shape), y1(flat), y2(flat), r(flat), dx1(shape), dx2(shape);
        rmtest::fill_uniform(x.data, seed++);
        rmtest::fill_uniform(r.data, seed++);
        ASSERT_EQ(rm_depth_mean_forward(one, x.p(), y1.p()), RM_OK) << rm_ctx_error(one);
        ASSERT_EQ(rm_depth_mean_forward(two, x.p(), y2.p()), RM_OK) << rm_ctx_error(two);
        ASSERT_EQ(rm_depth_mean_backward(one, r.p(), dx1.p()), RM_OK) << rm_ctx_error(one);
        ASSERT_EQ(rm_depth_mean_backward(two, r.p(), dx2.p()), RM_OK) << rm_ctx_error(two);
        EXPECT_TRUE(rmtest::bit_identical(y1.data, y2.data));
        EXPECT_TRUE(rmtest::bit_identical(dx1.data, dx2.data));
        DTensor xd(x), yd(flat), rd(r), dxd(shape);
        rm_ref_depth_mean_forward(xd.p(), yd.p());
        rm_ref_depth_mean_backward(rd.p(), dxd.p());
        EXPECT_LT(rmtest::max_rel_error(y1.data, yd.data), 1e-6);
        EXPECT_LT(rmtest::max_rel_error(dx1.data, dxd.data), 1e-6);
        if (rmtest::numel(shape) > 1000)
            continue;
        // loss(x) = <r, mean(x)>, so d loss / dx = the backward of r.
        const std::vector<double> fd = rmtest::numeric_grad(xd.data, [&] {
            DTensor y(flat);
            rm_ref_depth_mean_forward(xd.p(), y.p());
            return rmtest::dot(rd.data, y.data);
        });
        EXPECT_LT(rmtest::max_rel_error(dxd.data, fd), 1e-6);
        EXPECT_LT(rmtest::max_rel_error(dx1.data, fd), 1e-5);
    }
}

TEST(DepthMean, HandComputedAndBadShapes)
{
    rmtest::Ctx ctx(1);
    Tensor x(Shape{1, 1, 4, 1, 2}), y(Shape{1, 1, 1, 1, 2}), dx(Shape{1, 1, 4, 1, 2});
    x.data = {1, 10, 2, 20, 3, 30, 6, 60};
    ASSERT_EQ(rm_depth_mean_forward(ctx, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(y.data, (std::vector<float>{3.0f, 30.0f}));
    ASSERT_EQ(rm_depth_mean_backward(ctx, y.p(), dx.p()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(dx.data, (std::vector<float>{0.75f, 7.5f, 0.75f, 7.5f, 0.75f, 7.5f, 0.75f, 7.5f}));

    Tensor wrong(Shape{1, 1, 2, 1, 2}, 42.0f);
    EXPECT_EQ(rm_depth_mean_forward(ctx, x.p(), wrong.p()), RM_ERR_SHAPE);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("depth mean: y"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_depth_mean_backward(ctx, wrong.p(), dx.p()), RM_ERR_SHAPE);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("depth mean: dy"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_depth_mean_forward(ctx, nullptr, y.p()), RM_ERR_ARGUMENT);
    for (float v : wrong.data)
        EXPECT_EQ(v, 42.0f);
}

// Max pooling by its definition: every window scanned in (depth, height, width) order, out-of-range positions
// skipped, the first strict maximum taken; the backward sends each dy to that element.
void naive_maxpool(int k, const Tensor &x, std::vector<double> &y, std::vector<double> &dx, const std::vector<float> &dy)
{
    const int64_t D = x.view.ne[2], H = x.view.ne[3], W = x.view.ne[4], vol = D * H * W, r = k / 2;
    y.assign(x.data.size(), 0.0);
    dx.assign(x.data.size(), 0.0);
    for (int64_t sl = 0; sl < x.view.ne[0] * x.view.ne[1]; sl++)
        for (int64_t z = 0; z < D; z++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++) {
                    int64_t at = -1;
                    for (int64_t a = std::max<int64_t>(0, z - r); a <= std::min(D - 1, z + r); a++)
                        for (int64_t b = std::max<int64_t>(0, h - r); b <= std::min(H - 1, h + r); b++)
                            for (int64_t c = std::max<int64_t>(0, w - r); c <= std::min(W - 1, w + r); c++) {
                                const int64_t i = sl * vol + (a * H + b) * W + c;
                                if (at < 0 || x.data[(size_t)i] > x.data[(size_t)at])
                                    at = i;
                            }
                    const int64_t o = sl * vol + (z * H + h) * W + w;
                    y[(size_t)o] = x.data[(size_t)at];
                    dx[(size_t)at] += dy[(size_t)o];
                }
}

TEST(MaxPool, ForwardAndBackwardEqualTheirDefinitionOnOddSizes)
{
    for (int k : {3, 5}) {
        rmtest::Ctx ctx(2);
        const Shape s{2, 3, 5, 7, 4};
        Tensor x(s), y(s, NAN), dy(s), dx(s, NAN);
        rmtest::fill_uniform(x.data, 11 + k);
        rmtest::fill_uniform(dy.data, 12 + k);
        ASSERT_EQ(rm_maxpool3d_forward(ctx, k, x.p(), y.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_maxpool3d_backward(ctx, k, x.p(), dy.p(), dx.p()), RM_OK) << rm_ctx_error(ctx);
        std::vector<double> want_y, want_dx;
        naive_maxpool(k, x, want_y, want_dx, dy.data);
        EXPECT_EQ(rmtest::to_double(y.data), want_y) << "kernel " << k;
        EXPECT_LT(rmtest::max_rel_error(dx.data, want_dx), 1e-6) << "kernel " << k;
    }
}

TEST(MaxPool, TiesGoToTheFirstElementOfTheWindowAndBadArgumentsAreRefused)
{
    rmtest::Ctx ctx(1);
    const Shape s{1, 1, 1, 1, 3};
    Tensor x(s, 2.0f), y(s), dy(s, 1.0f), dx(s);
    ASSERT_EQ(rm_maxpool3d_forward(ctx, 3, x.p(), y.p()), RM_OK);
    ASSERT_EQ(rm_maxpool3d_backward(ctx, 3, x.p(), dy.p(), dx.p()), RM_OK);
    // windows {0, 1}, {0, 1, 2}, {1, 2}: the first of each wins
    EXPECT_EQ(dx.data, (std::vector<float>{2.0f, 1.0f, 0.0f}));
    EXPECT_EQ(rm_maxpool3d_forward(ctx, 2, x.p(), y.p()), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("kernel 2"), std::string::npos);
    Tensor small(Shape{1, 1, 1, 1, 2});
    EXPECT_EQ(rm_maxpool3d_forward(ctx, 3, x.p(), small.p()), RM_ERR_SHAPE);
    EXPECT_EQ(rm_maxpool3d_backward(ctx, 3, x.p(), dy.p(), small.p()), RM_ERR_SHAPE);
}

} // namespace
