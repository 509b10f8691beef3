// Convolution and transposed convolution: the fast engine against the double reference, the reference against
// finite differences, exact hand-computed cases, and argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>

extern "C" {
#include "ops/conv_engine.h"
}
#include "test_util.h"

namespace {

using rmtest::DTensor;
using rmtest::Shape;
using rmtest::Tensor;

struct ConvCase {
    const char *name;
    bool transposed;
    rm_conv3d_params p;
    Shape x;    // input shape
    int64_t co; // output channels
    bool bias;
};

// gtest prints parameters in test names and failures: the case's name, not its bytes.
void PrintTo(const ConvCase &c, std::ostream *os) { *os << c.name; }

Shape weight_shape(const ConvCase &c)
{
    const int64_t k = c.p.kernel, kd = c.p.planar ? 1 : k;
    return c.transposed ? Shape{c.x[1], c.co, kd, k, k} : Shape{c.co, c.x[1], kd, k, k};
}

Shape output_shape(const ConvCase &c)
{
    Shape y{c.x[0], c.co, 0, 0, 0};
    for (int a = 2; a < 5; a++) {
        const bool depth_kept = a == 2 && c.p.planar;
        y[a] = !c.transposed ? rm_conv3d_out_size(&c.p, a - 2, c.x[a])
               : depth_kept  ? c.x[a]
                             : (c.x[a] - 1) * c.p.stride + c.p.kernel;
    }
    return y;
}

// The 2D layers: 1×k×k kernels, each depth slice alone.
rm_conv3d_params planar_same(int k) { return rm_conv3d_planar(rm_conv3d_same(k)); }
rm_conv3d_params planar_strided(int k, int s) { return rm_conv3d_planar(rm_conv3d_strided(k, s)); }

// Random inputs of one case, in float for the fast path and double for the reference.
struct ConvData {
    Tensor x, w, y, dy;
    std::vector<float> b;
    DTensor xd, wd, dyd;
    std::vector<double> bd;

    ConvData(const ConvCase &c, uint32_t seed)
        : x(c.x), w(weight_shape(c)), y(output_shape(c), NAN), dy(output_shape(c)), b(c.bias ? c.co : 0), xd(c.x),
          wd(weight_shape(c)), dyd(output_shape(c))
    {
        rmtest::fill_uniform(x.data, seed);
        rmtest::fill_uniform(w.data, seed + 1, -0.5f, 0.5f);
        rmtest::fill_uniform(dy.data, seed + 2);
        rmtest::fill_uniform(b, seed + 3);
        xd = DTensor(x);
        wd = DTensor(w);
        dyd = DTensor(dy);
        bd = rmtest::to_double(b);
    }
    const double *bias_d() const { return bd.empty() ? nullptr : bd.data(); }
    const float *bias() const { return b.empty() ? nullptr : b.data(); }
};

rm_status fast_forward(rm_ctx *ctx, const ConvCase &c, ConvData &d, Tensor &y)
{
    return c.transposed ? rm_conv_transpose3d_forward(ctx, &c.p, d.x.p(), d.w.p(), d.bias(), y.p())
                        : rm_conv3d_forward(ctx, &c.p, d.x.p(), d.w.p(), d.bias(), y.p());
}

rm_status fast_backward(rm_ctx *ctx, const ConvCase &c, ConvData &d, Tensor *dx, Tensor *dw, float *db)
{
    rm_tensor *dxp = dx ? dx->p() : nullptr, *dwp = dw ? dw->p() : nullptr;
    return c.transposed ? rm_conv_transpose3d_backward(ctx, &c.p, d.x.p(), d.w.p(), d.dy.p(), dxp, dwp, db)
                        : rm_conv3d_backward(ctx, &c.p, d.x.p(), d.w.p(), d.dy.p(), dxp, dwp, db);
}

void ref_forward(const ConvCase &c, DTensor &x, DTensor &w, const double *b, DTensor &y)
{
    if (c.transposed)
        rm_ref_conv_transpose3d_forward(&c.p, x.p(), w.p(), b, y.p());
    else
        rm_ref_conv3d_forward(&c.p, x.p(), w.p(), b, y.p());
}

void ref_backward(const ConvCase &c, ConvData &d, DTensor &dx, DTensor &dw, std::vector<double> &db)
{
    if (c.transposed)
        rm_ref_conv_transpose3d_backward(&c.p, d.xd.p(), d.wd.p(), d.dyd.p(), dx.p(), dw.p(), db.data());
    else
        rm_ref_conv3d_backward(&c.p, d.xd.p(), d.wd.p(), d.dyd.p(), dx.p(), dw.p(), db.data());
}

// Odd sizes, one channel, channel counts that are not multiples of 8, volumes smaller than the kernel, tiles
// and channel groups that do not divide evenly.
const ConvCase kCases[] = {
    {"k1_same", false, rm_conv3d_same(1), {2, 3, 7, 6, 5}, 5, true},
    {"k2_same", false, rm_conv3d_same(2), {2, 3, 7, 6, 5}, 4, false},
    {"k3_same", false, rm_conv3d_same(3), {2, 3, 7, 6, 5}, 5, true},
    {"k5_same", false, rm_conv3d_same(5), {2, 3, 7, 6, 5}, 5, false},
    {"k5_one_channel", false, rm_conv3d_same(5), {1, 1, 7, 6, 5}, 1, true},
    {"k5_smaller_than_kernel", false, rm_conv3d_same(5), {1, 2, 2, 1, 3}, 3, false},
    {"k5_many_channels_tiles", false, rm_conv3d_same(5), {1, 13, 9, 20, 31}, 11, true},
    // One or two output channels take the thin path (direct, not GEMM), as the network's final layer does.
    {"k5_one_output_channel", false, rm_conv3d_same(5), {2, 6, 7, 9, 13}, 1, true},
    {"k3_two_output_channels", false, rm_conv3d_same(3), {1, 4, 5, 8, 6}, 2, false},
    {"k3_long_volume", false, rm_conv3d_same(3), {2, 9, 6, 37, 29}, 7, false},
    {"k2_s2", false, rm_conv3d_strided(2, 2), {2, 3, 8, 7, 5}, 6, false},
    {"k3_s2", false, rm_conv3d_strided(3, 2), {2, 3, 7, 6, 5}, 5, true},
    {"k5_s2", false, rm_conv3d_strided(5, 2), {1, 10, 9, 8, 11}, 3, false},
    {"k2_s2_wide", false, rm_conv3d_strided(2, 2), {1, 17, 10, 24, 70}, 9, true},
    {"t_k2_s2", true, rm_conv3d_strided(2, 2), {2, 3, 4, 3, 5}, 6, true},
    {"t_k2_s2_one_channel", true, rm_conv3d_strided(2, 2), {1, 1, 3, 3, 3}, 1, false},
    {"t_k2_s2_wide", true, rm_conv3d_strided(2, 2), {1, 19, 5, 12, 35}, 13, false},
    {"t_k3_s2", true, rm_conv3d_strided(3, 2), {2, 3, 3, 4, 2}, 5, true},
    // Planar kernels on one plane and on several (each convolved alone), strided, transposed, one output channel.
    {"p5_same", false, planar_same(5), {2, 3, 4, 9, 11}, 5, true},
    {"p3_same_one_plane", false, planar_same(3), {2, 4, 1, 8, 7}, 3, false},
    {"p5_one_output_channel", false, planar_same(5), {1, 6, 3, 9, 13}, 1, true},
    {"p2_s2", false, planar_strided(2, 2), {2, 3, 3, 8, 6}, 4, true},
    {"t_p2_s2", true, planar_strided(2, 2), {2, 3, 2, 4, 5}, 6, true},
};

// Small enough for finite differences over every element.
const ConvCase kGradCases[] = {
    {"k1_same", false, rm_conv3d_same(1), {2, 2, 3, 4, 3}, 3, true},
    {"k2_same", false, rm_conv3d_same(2), {2, 2, 3, 4, 3}, 3, true},
    {"k3_same", false, rm_conv3d_same(3), {2, 2, 3, 4, 3}, 3, true},
    {"k5_same", false, rm_conv3d_same(5), {2, 2, 5, 4, 6}, 3, true},
    {"k2_s2", false, rm_conv3d_strided(2, 2), {2, 2, 4, 5, 4}, 3, true},
    {"k3_s2", false, rm_conv3d_strided(3, 2), {2, 2, 5, 4, 5}, 3, true},
    {"t_k2_s2", true, rm_conv3d_strided(2, 2), {2, 2, 2, 3, 2}, 3, true},
    {"t_k3_s2", true, rm_conv3d_strided(3, 2), {2, 2, 2, 2, 3}, 3, true},
    {"p5_same", false, planar_same(5), {2, 2, 2, 5, 6}, 3, true},
    {"p2_s2", false, planar_strided(2, 2), {2, 2, 2, 4, 4}, 3, true},
    {"t_p2_s2", true, planar_strided(2, 2), {2, 2, 2, 2, 3}, 3, true},
};

class ConvForward : public ::testing::TestWithParam<ConvCase> {};
class ConvBackward : public ::testing::TestWithParam<ConvCase> {};
class ConvGradient : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvForward, MatchesReference)
{
    const ConvCase &c = GetParam();
    ConvData d(c, 11); // d.y starts as NaN: every element must be written
    rmtest::Ctx ctx(2);
    ASSERT_EQ(fast_forward(ctx, c, d, d.y), RM_OK) << rm_ctx_error(ctx);
    DTensor yd(output_shape(c));
    ref_forward(c, d.xd, d.wd, d.bias_d(), yd);
    EXPECT_LT(rmtest::max_rel_error(d.y.data, yd.data), 1e-5);
}

TEST_P(ConvBackward, MatchesReference)
{
    const ConvCase &c = GetParam();
    ConvData d(c, 23);
    rmtest::Ctx ctx(2);
    // Outputs start as NaN: every element must be overwritten, never accumulated into.
    Tensor dx(c.x, NAN), dw(weight_shape(c), NAN);
    std::vector<float> db(c.co, NAN);
    ASSERT_EQ(fast_backward(ctx, c, d, &dx, &dw, db.data()), RM_OK) << rm_ctx_error(ctx);
    DTensor dxd(c.x), dwd(weight_shape(c));
    std::vector<double> dbd(c.co);
    ref_backward(c, d, dxd, dwd, dbd);
    EXPECT_LT(rmtest::max_rel_error(dx.data, dxd.data), 1e-5);
    EXPECT_LT(rmtest::max_rel_error(dw.data, dwd.data), 1e-5);
    EXPECT_LT(rmtest::max_rel_error(db, dbd), 1e-5);
}

// Both the reference backward and the fast backward against central differences of the reference forward of
// L = Σ dy · y, in double precision.
TEST_P(ConvGradient, MatchesFiniteDifferences)
{
    const ConvCase &c = GetParam();
    ConvData d(c, 37);
    auto loss = [&]() {
        DTensor y(output_shape(c));
        ref_forward(c, d.xd, d.wd, d.bias_d(), y);
        return rmtest::dot(y.data, d.dyd.data);
    };
    const std::vector<double> gx = rmtest::numeric_grad(d.xd.data, loss);
    const std::vector<double> gw = rmtest::numeric_grad(d.wd.data, loss);
    const std::vector<double> gb = rmtest::numeric_grad(d.bd, loss);

    DTensor dxd(c.x), dwd(weight_shape(c));
    std::vector<double> dbd(c.co);
    ref_backward(c, d, dxd, dwd, dbd);
    EXPECT_LT(rmtest::max_rel_error(dxd.data, gx), 1e-7);
    EXPECT_LT(rmtest::max_rel_error(dwd.data, gw), 1e-7);
    EXPECT_LT(rmtest::max_rel_error(dbd, gb), 1e-7);

    rmtest::Ctx ctx(2);
    // Outputs start as NaN: every element must be overwritten, never accumulated into.
    Tensor dx(c.x, NAN), dw(weight_shape(c), NAN);
    std::vector<float> db(c.co, NAN);
    ASSERT_EQ(fast_backward(ctx, c, d, &dx, &dw, db.data()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_LT(rmtest::max_rel_error(dx.data, gx), 1e-5);
    EXPECT_LT(rmtest::max_rel_error(dw.data, gw), 1e-5);
    EXPECT_LT(rmtest::max_rel_error(db, gb), 1e-5);
}

std::string case_name(const ::testing::TestParamInfo<ConvCase> &info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Shapes, ConvForward, ::testing::ValuesIn(kCases), case_name);
INSTANTIATE_TEST_SUITE_P(Shapes, ConvBackward, ::testing::ValuesIn(kCases), case_name);
INSTANTIATE_TEST_SUITE_P(Small, ConvGradient, ::testing::ValuesIn(kGradCases), case_name);

TEST(Conv, SameKernelThreeOnOnesCountsTheTapsInside)
{
    // All-ones 3×3×3 input and kernel: each output counts the taps that fall inside the volume.
    Tensor x({1, 1, 3, 3, 3}, 1.0f), w({1, 1, 3, 3, 3}, 1.0f), y({1, 1, 3, 3, 3});
    rmtest::Ctx ctx(1);
    rm_conv3d_params p = rm_conv3d_same(3);
    ASSERT_EQ(rm_conv3d_forward(ctx, &p, x.p(), w.p(), nullptr, y.p()), RM_OK);
    EXPECT_EQ(y.data[13], 27.0f); // centre
    EXPECT_EQ(y.data[0], 8.0f);   // corner
    EXPECT_EQ(y.data[1], 12.0f);  // edge
    EXPECT_EQ(y.data[4], 18.0f);  // face
}

TEST(Conv, PlanarKernelConvolvesEachSliceAlone)
{
    // All-ones 3×3×3 input, all-ones 1×3×3 kernel: each output counts the in-plane taps inside its own slice, the
    // same on every slice (a cubic kernel would count 27 at the centre).
    Tensor x({1, 1, 3, 3, 3}, 1.0f), w({1, 1, 1, 3, 3}, 1.0f), y({1, 1, 3, 3, 3});
    rmtest::Ctx ctx(1);
    const rm_conv3d_params p = planar_same(3);
    ASSERT_EQ(rm_conv3d_forward(ctx, &p, x.p(), w.p(), nullptr, y.p()), RM_OK) << rm_ctx_error(ctx);
    for (int z = 0; z < 3; z++) {
        EXPECT_EQ(y.data[z * 9 + 4], 9.0f); // centre
        EXPECT_EQ(y.data[z * 9 + 0], 4.0f); // corner
        EXPECT_EQ(y.data[z * 9 + 1], 6.0f); // edge
    }
    EXPECT_EQ(rm_conv3d_out_size(&p, 0, 3), 3);
    const rm_conv3d_params down = planar_strided(2, 2);
    EXPECT_EQ(rm_conv3d_out_size(&down, 0, 3), 3);
    EXPECT_EQ(rm_conv3d_out_size(&down, 1, 8), 4);
}

TEST(Conv, EvenSamePaddingPadsAfterAsPyTorchDoes)
{
    // k = 2, "same": PyTorch pads 0 before and 1 after, so y[i] = x[i] + x[i+1] along each axis, 0 past the end.
    const rm_conv3d_params p = rm_conv3d_same(2);
    EXPECT_EQ(p.pad_before, 0);
    EXPECT_EQ(p.pad_after, 1);
    Tensor x({1, 1, 1, 1, 4}), w({1, 1, 2, 2, 2}), y({1, 1, 1, 1, 4});
    x.data = {1, 2, 3, 4};
    w.data[0] = 1.0f; // tap (0,0,0)
    w.data[1] = 1.0f; // tap (0,0,1)
    rmtest::Ctx ctx(1);
    ASSERT_EQ(rm_conv3d_forward(ctx, &p, x.p(), w.p(), nullptr, y.p()), RM_OK);
    EXPECT_EQ(y.data, (std::vector<float>{3, 5, 7, 4}));
}

TEST(ConvTranspose, OneVoxelSpreadsTheKernel)
{
    Tensor x({1, 1, 1, 1, 1}, 2.0f), w({1, 1, 2, 2, 2}), y({1, 1, 2, 2, 2});
    for (int i = 0; i < 8; i++)
        w.data[i] = static_cast<float>(i + 1);
    const float b = 0.5f;
    rmtest::Ctx ctx(1);
    rm_conv3d_params p = rm_conv3d_strided(2, 2);
    ASSERT_EQ(rm_conv_transpose3d_forward(ctx, &p, x.p(), w.p(), &b, y.p()), RM_OK);
    for (int i = 0; i < 8; i++)
        EXPECT_EQ(y.data[i], 2.0f * (i + 1) + 0.5f);
}

TEST(Conv, WorkingMemoryIsReusedAcrossCalls)
{
    const ConvCase &c = kCases[6];
    ConvData d(c, 5);
    rmtest::Ctx ctx(2);
    ASSERT_EQ(fast_forward(ctx, c, d, d.y), RM_OK);
    const size_t held = rm_ctx_workspace_bytes(ctx);
    EXPECT_GT(held, 0u);
    ASSERT_EQ(fast_forward(ctx, c, d, d.y), RM_OK);
    EXPECT_EQ(rm_ctx_workspace_bytes(ctx), held);
}

// ---- bad arguments ----

class ConvErrors : public ::testing::Test {
  protected:
    rmtest::Ctx ctx{1};
    Tensor x{{1, 2, 4, 4, 4}}, w{{3, 2, 3, 3, 3}}, y{{1, 3, 4, 4, 4}, 7.0f};
    rm_conv3d_params p = rm_conv3d_same(3);

    void expect_failure(rm_status got, rm_status want, const char *needle)
    {
        EXPECT_EQ(got, want);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find(needle), std::string::npos) << rm_ctx_error(ctx);
        for (float v : y.data)
            ASSERT_EQ(v, 7.0f) << "output written on failure";
    }
};

TEST_F(ConvErrors, NullTensorIsRejected)
{
    expect_failure(rm_conv3d_forward(ctx, &p, nullptr, w.p(), nullptr, y.p()), RM_ERR_ARGUMENT, "x is NULL");
    expect_failure(rm_conv3d_forward(ctx, nullptr, x.p(), w.p(), nullptr, y.p()), RM_ERR_ARGUMENT, "params");
}

TEST_F(ConvErrors, WeightWithOtherInputChannelsIsRejected)
{
    Tensor w4({3, 4, 3, 3, 3});
    expect_failure(rm_conv3d_forward(ctx, &p, x.p(), w4.p(), nullptr, y.p()), RM_ERR_SHAPE, "w has shape");
}

TEST_F(ConvErrors, OutputOfWrongShapeIsRejected)
{
    Tensor y5({1, 3, 4, 4, 5}, 7.0f);
    EXPECT_EQ(rm_conv3d_forward(ctx, &p, x.p(), w.p(), nullptr, y5.p()), RM_ERR_SHAPE);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("y has shape"), std::string::npos);
    for (float v : y5.data)
        ASSERT_EQ(v, 7.0f);
}

TEST_F(ConvErrors, BadKernelStrideAndPaddingAreRejected)
{
    rm_conv3d_params bad = rm_conv3d_same(3);
    bad.kernel = 0;
    expect_failure(rm_conv3d_forward(ctx, &bad, x.p(), w.p(), nullptr, y.p()), RM_ERR_ARGUMENT, "kernel size 0");
    bad = rm_conv3d_same(3);
    bad.stride = 0;
    expect_failure(rm_conv3d_forward(ctx, &bad, x.p(), w.p(), nullptr, y.p()), RM_ERR_ARGUMENT, "stride 0");
    bad = rm_conv3d_same(3);
    bad.pad_before = 3;
    expect_failure(rm_conv3d_forward(ctx, &bad, x.p(), w.p(), nullptr, y.p()), RM_ERR_ARGUMENT, "padding");
    bad = rm_conv3d_same(3);
    bad.planar = 2;
    expect_failure(rm_conv3d_forward(ctx, &bad, x.p(), w.p(), nullptr, y.p()), RM_ERR_ARGUMENT, "planar is 2");
    bad = rm_conv3d_same(3);
    expect_failure(rm_conv_transpose3d_forward(ctx, &bad, x.p(), w.p(), nullptr, y.p()), RM_ERR_ARGUMENT,
                   "padding is not supported");
}

TEST_F(ConvErrors, CubicWeightForAPlanarKernelIsRejected)
{
    const rm_conv3d_params planar = planar_same(3);
    expect_failure(rm_conv3d_forward(ctx, &planar, x.p(), w.p(), nullptr, y.p()), RM_ERR_SHAPE, "w has shape");
}

TEST_F(ConvErrors, InputSmallerThanUnpaddedKernelIsRejected)
{
    Tensor small({1, 2, 4, 2, 4}), w5({3, 2, 5, 5, 5});
    rm_conv3d_params s2 = rm_conv3d_strided(5, 2);
    expect_failure(rm_conv3d_forward(ctx, &s2, small.p(), w5.p(), nullptr, y.p()), RM_ERR_SHAPE,
                   "smaller than the kernel");
}

TEST_F(ConvErrors, GradientOfWrongShapeIsRejected)
{
    Tensor dy({1, 3, 4, 4, 4}), dx({1, 2, 4, 4, 3}, 7.0f);
    EXPECT_EQ(rm_conv3d_backward(ctx, &p, x.p(), w.p(), dy.p(), dx.p(), nullptr, nullptr), RM_ERR_SHAPE);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("dx has shape"), std::string::npos);
    for (float v : dx.data)
        ASSERT_EQ(v, 7.0f);
}

} // namespace

namespace {

// ---- reproducibility: bit-identical with 1, 2 and 3 threads, and across runs ----

struct ConvOutputs {
    std::vector<float> y, dx, dw, db;
};

ConvOutputs run_all(const ConvCase &c, int threads)
{
    ConvData d(c, 99);
    rmtest::Ctx ctx(threads);
    Tensor dx(c.x), dw(weight_shape(c));
    std::vector<float> db(c.co);
    EXPECT_EQ(fast_forward(ctx, c, d, d.y), RM_OK);
    EXPECT_EQ(fast_backward(ctx, c, d, &dx, &dw, db.data()), RM_OK);
    return {d.y.data, dx.data, dw.data, db};
}

class ConvReproducible : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvReproducible, BitIdenticalAcrossThreadCountsAndRuns)
{
    const ConvOutputs one = run_all(GetParam(), 1), two = run_all(GetParam(), 2), three = run_all(GetParam(), 3),
                      again = run_all(GetParam(), 2);
    for (const ConvOutputs *o : {&two, &three, &again}) {
        EXPECT_TRUE(rmtest::bit_identical(one.y, o->y));
        EXPECT_TRUE(rmtest::bit_identical(one.dx, o->dx));
        EXPECT_TRUE(rmtest::bit_identical(one.dw, o->dw));
        EXPECT_TRUE(rmtest::bit_identical(one.db, o->db));
    }
}

const ConvCase kLargeCases[] = {
    {"k5_same", false, rm_conv3d_same(5), {2, 5, 17, 19, 23}, 6, true},
    {"k5_one_output_channel", false, rm_conv3d_same(5), {2, 7, 13, 15, 19}, 1, true},
    {"k2_s2", false, rm_conv3d_strided(2, 2), {2, 7, 18, 20, 22}, 5, true},
    {"t_k2_s2", true, rm_conv3d_strided(2, 2), {2, 7, 9, 10, 11}, 5, true},
    {"p5_same", false, planar_same(5), {2, 5, 4, 19, 23}, 6, true},
    {"t_p2_s2", true, planar_strided(2, 2), {2, 7, 3, 10, 11}, 5, true},
};

INSTANTIATE_TEST_SUITE_P(Large, ConvReproducible, ::testing::ValuesIn(kLargeCases), case_name);

} // namespace

namespace {

// ---- every instruction set: the direct kernels (AVX-512, AVX2) and the portable path ----

// Shapes the direct convolution computes (stride 1, at least 16 channels on the forward's or the data gradient's
// output side, or fewer output channels from at least 16 input channels): one input channel (lanes of 1), channel
// counts that are not multiples of 16 on either side, rows that do not split evenly into the kernels' tiles,
// volumes thinner than the kernel, kernels 1, 3 and 5.
const ConvCase kDirectCases[] = {
    {"k5_16_channels", false, rm_conv3d_same(5), {1, 16, 5, 7, 29}, 16, true},
    {"k5_odd_channels", false, rm_conv3d_same(5), {2, 17, 6, 5, 13}, 33, true},
    {"k5_one_input_channel", false, rm_conv3d_same(5), {1, 1, 4, 6, 19}, 20, false},
    // One input channel runs vectors over positions: rows longer than one call (their last vector partly stored), a
    // last pass of one output channel, other kernel sizes, and the data gradient of one output channel (whose weight
    // gradient splits even and odd positions, here over rows of odd length).
    {"k5_one_input_channel_long_rows", false, rm_conv3d_same(5), {1, 1, 3, 4, 150}, 33, true},
    {"k3_one_input_channel", false, rm_conv3d_same(3), {2, 1, 3, 5, 70}, 18, true},
    {"k5_one_output_channel", false, rm_conv3d_same(5), {1, 20, 3, 5, 41}, 1, true},
    {"k5_thinner_than_kernel", false, rm_conv3d_same(5), {1, 20, 2, 3, 1}, 18, true},
    {"k3_wide_rows", false, rm_conv3d_same(3), {1, 24, 3, 4, 40}, 32, false},
    {"k1_pointwise", false, rm_conv3d_same(1), {2, 19, 3, 5, 7}, 35, true},
    {"k2_even_same", false, rm_conv3d_same(2), {1, 16, 4, 5, 6}, 16, false},
    // More input channel blocks than one kernel call takes: the sums carried between calls.
    {"k5_input_channels_in_chunks", false, rm_conv3d_same(5), {1, 70, 3, 4, 9}, 70, true},
    // Deep layers (weights outweigh outputs) go by groups of output channels: chunks of input blocks, a last group
    // 16 wide, the data gradient's mirrored weights packed chunk by chunk; two samples, and more planes than taps.
    {"k5_deep_by_output_groups", false, rm_conv3d_same(5), {2, 130, 2, 5, 7}, 100, true},
    {"k5_deep_by_output_groups_many_planes", false, rm_conv3d_same(5), {1, 130, 7, 3, 5}, 100, true},
    // Few output channels: the forward on the few-output-channels kernel, the data gradient (19 channels) direct.
    {"k5_data_gradient_direct", false, rm_conv3d_same(5), {2, 19, 5, 6, 14}, 3, true},
    // The few-output-channels kernel: an input block of one lane, rows of several tiles, thinner than the kernel.
    {"k5_few_output_channels", false, rm_conv3d_same(5), {2, 33, 3, 4, 53}, 2, true},
    // Planar kernels: the 2D decoder's 5×5 and 3×3 on one plane and on several, and its few-output-channels head.
    {"p5_planar", false, planar_same(5), {2, 20, 3, 7, 19}, 33, true},
    {"p3_planar_one_plane", false, planar_same(3), {1, 17, 1, 6, 21}, 16, false},
    {"p5_planar_one_input_channel", false, planar_same(5), {1, 1, 2, 5, 37}, 16, true},
    {"p5_one_output_channel", false, planar_same(5), {2, 17, 2, 6, 33}, 1, true},
    {"p5_few_output_channels", false, planar_same(5), {2, 33, 2, 5, 30}, 2, true},
    // Tiling convolutions (kernel = stride, no padding) as 1³ convolutions space-to-depth, at 1024 outputs per
    // channel or more (fewer stay on SGEMM): the network's down- and up-sampling, sizes that leave the input's last
    // planes, rows and columns out of the windows, a planar one.
    {"k2_s2_tiling", false, rm_conv3d_strided(2, 2), {2, 16, 8, 16, 32}, 32, true},
    {"k2_s2_tiling_remainders", false, rm_conv3d_strided(2, 2), {1, 20, 9, 33, 35}, 24, true},
    {"k3_s3_tiling_few_channels", false, rm_conv3d_strided(3, 3), {1, 1, 24, 34, 38}, 17, false},
    {"t_k2_s2_tiling", true, rm_conv3d_strided(2, 2), {1, 24, 8, 12, 12}, 20, true},
    // One output channel: the data gradient, a 1³ convolution of one input channel, on the one-input-channel kernel.
    {"k2_s2_tiling_one_output_channel", false, rm_conv3d_strided(2, 2), {1, 8, 8, 32, 66}, 1, false},
    {"p2_s2_tiling", false, planar_strided(2, 2), {1, 16, 4, 32, 34}, 16, true},
};

std::vector<rm_isa> available_isas()
{
    std::vector<rm_isa> isas;
    for (int i = RM_ISA_PORTABLE; i <= rm_isa_available(); i++)
        isas.push_back(static_cast<rm_isa>(i));
    return isas;
}

class ConvEveryIsa : public ::testing::TestWithParam<ConvCase> {};

// Forward, data gradient and weight gradient of every available instruction set against the double reference, and
// AVX2 bit-identical to AVX-512 (they add every product in the same order).
TEST_P(ConvEveryIsa, MatchesReferenceAndVectorPathsAgreeBitForBit)
{
    const ConvCase &c = GetParam();
    ConvData d(c, 41);
    DTensor yd(output_shape(c)), dxd(c.x), dwd(weight_shape(c));
    std::vector<double> dbd(c.co);
    ref_forward(c, d.xd, d.wd, d.bias_d(), yd);
    ref_backward(c, d, dxd, dwd, dbd);
    std::vector<ConvOutputs> vector_paths;
    for (rm_isa isa : available_isas()) {
        SCOPED_TRACE(rm_isa_name(isa));
        rmtest::Ctx ctx(2);
        ASSERT_EQ(rm_ctx_set_isa(ctx, isa), RM_OK) << rm_ctx_error(ctx);
        Tensor y(output_shape(c), NAN), dx(c.x, NAN), dw(weight_shape(c), NAN);
        std::vector<float> db(c.co, NAN);
        ASSERT_EQ(fast_forward(ctx, c, d, y), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(fast_backward(ctx, c, d, &dx, &dw, db.data()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_LT(rmtest::max_rel_error(y.data, yd.data), 1e-5);
        EXPECT_LT(rmtest::max_rel_error(dx.data, dxd.data), 1e-5);
        EXPECT_LT(rmtest::max_rel_error(dw.data, dwd.data), 1e-5);
        if (isa != RM_ISA_PORTABLE)
            vector_paths.push_back({y.data, dx.data, dw.data, db});
    }
    for (size_t i = 1; i < vector_paths.size(); i++) {
        EXPECT_TRUE(rmtest::bit_identical(vector_paths[0].y, vector_paths[i].y));
        EXPECT_TRUE(rmtest::bit_identical(vector_paths[0].dx, vector_paths[i].dx));
        EXPECT_TRUE(rmtest::bit_identical(vector_paths[0].dw, vector_paths[i].dw));
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvEveryIsa, ::testing::ValuesIn(kDirectCases), case_name);
INSTANTIATE_TEST_SUITE_P(PortableShapes, ConvEveryIsa, ::testing::ValuesIn(kCases), case_name);

const ConvCase kLargeDirectCases[] = {
    {"k5_direct", false, rm_conv3d_same(5), {2, 20, 9, 11, 27}, 18, true},
    {"k5_few_output_channels", false, rm_conv3d_same(5), {2, 32, 9, 11, 30}, 1, true},
    {"k5_one_input_channel", false, rm_conv3d_same(5), {2, 1, 9, 70, 37}, 20, true},
    {"p5_direct", false, planar_same(5), {2, 20, 4, 11, 27}, 18, true},
    // By groups of output channels on 1 and 2 threads, by planes on 3 (too few groups for each thread twice).
    {"k5_deep_by_output_groups", false, rm_conv3d_same(5), {2, 130, 2, 5, 7}, 100, true},
    {"p5_few_output_channels", false, planar_same(5), {2, 32, 3, 11, 30}, 1, true},
    {"k2_s2_tiling", false, rm_conv3d_strided(2, 2), {2, 32, 8, 16, 32}, 32, true},
    {"t_k2_s2_tiling", true, rm_conv3d_strided(2, 2), {2, 32, 4, 16, 16}, 16, true},
};

INSTANTIATE_TEST_SUITE_P(LargeDirect, ConvReproducible, ::testing::ValuesIn(kLargeDirectCases), case_name);

} // namespace

namespace {

// Element (c, z, y, x) of sample 0.
float at(const Tensor &t, int64_t c, int64_t z, int64_t y, int64_t x)
{
    const Shape s = t.shape();
    return t.data[static_cast<size_t>(((c * s[2] + z) * s[3] + y) * s[4] + x)];
}

// Input channel i at tap (a, b, c) of the k³ window of output (z, y, w): space-to-depth channel
// i·k³ + (a·k + b)·k + c.
float space_to_depth(const Tensor &x, int64_t k, int64_t i, int64_t z, int64_t y, int64_t w, int64_t tap)
{
    const int64_t a = tap / (k * k), b = tap / k % k, c = tap % k;
    return at(x, i, z * k + a, y * k + b, w * k + c);
}

// A deep layer (weights far outweighing outputs) goes by groups of output channels: on packed weights, as a deploy
// form keeps them, the groups read them in place; on plain weights, each group packs its chunks as it goes. On 3
// threads there are too few groups (4 on AVX-512) and it goes by planes. Every way gives the same bits, near the
// double reference, on every vector instruction set.
TEST(Conv, DeepLayerGivesTheSameBitsOnPackedOrPlainWeightsOnAnyThreadCount)
{
    if (rm_isa_available() < RM_ISA_AVX2)
        GTEST_SKIP() << "no vector instruction set here: the direct convolution does not run";
    const ConvCase c = {"deep", false, rm_conv3d_same(5), {1, 128, 2, 5, 7}, 128, true};
    ConvData d(c, 17);
    DTensor yd(output_shape(c));
    ref_forward(c, d.xd, d.wd, d.bias_d(), yd);
    const rm_conv_geom g = rm_conv_geom_same(128, 128, 2, 5, 7, 5, 5);
    std::vector<float> first;
    for (int isa = RM_ISA_AVX2; isa <= rm_isa_available(); isa++)
        for (int threads = 1; threads <= 3; threads++) {
            SCOPED_TRACE(std::string(rm_isa_name(static_cast<rm_isa>(isa))) + " on " + std::to_string(threads));
            rmtest::Ctx ctx(threads);
            ASSERT_EQ(rm_ctx_set_isa(ctx, static_cast<rm_isa>(isa)), RM_OK);
            ASSERT_TRUE(rm_conv_engine_packs(ctx, &g));
            std::vector<float> packed(d.w.data.size());
            rm_conv_engine_pack(&g, threads, d.w.data.data(), packed.data());
            Tensor y_packed(output_shape(c), NAN), y_plain(output_shape(c), NAN);
            ASSERT_EQ(rm_conv_engine_forward_packed(ctx, &g, d.x.data.data(), packed.data(), d.bias(), nullptr,
                                                    y_packed.data.data()),
                      RM_OK);
            ASSERT_EQ(rm_conv_engine_forward(ctx, &g, d.x.data.data(), d.w.data.data(), d.bias(),
                                             y_plain.data.data()),
                      RM_OK);
            EXPECT_LT(rmtest::max_rel_error(y_packed.data, yd.data), 1e-5);
            if (first.empty())
                first = y_packed.data;
            EXPECT_TRUE(rmtest::bit_identical(first, y_packed.data));
            EXPECT_TRUE(rmtest::bit_identical(first, y_plain.data));
        }
}

// On the vector instruction sets a tiling convolution is the 1³ convolution of its input space-to-depth: each
// output starts at its bias and adds one fused multiply-add per space-to-depth channel, in channel order. The
// expected values are that chain in float, so the test fails if another path (im2col and SGEMM) or another order
// computes them.
TEST(Conv, TilingConvolutionIsThePointwiseConvolutionOfItsInputSpaceToDepth)
{
    if (rm_isa_available() < RM_ISA_AVX2)
        GTEST_SKIP() << "no vector instruction set here: the portable path computes tiling convolutions by GEMM";
    const int64_t ci = 3, co = 16, k = 2, taps = 8, D = 8, H = 16, W = 8; // outputs; the input has remainders
    Tensor x({1, ci, 2 * D + 1, 2 * H + 1, 2 * W + 1}), w({co, ci, k, k, k}), y({1, co, D, H, W}, NAN);
    std::vector<float> b(co);
    rmtest::fill_uniform(x.data, 3);
    rmtest::fill_uniform(w.data, 4, -0.5f, 0.5f);
    rmtest::fill_uniform(b, 5);
    rmtest::Ctx ctx(2);
    const rm_conv3d_params p = rm_conv3d_strided(2, 2);
    ASSERT_EQ(rm_conv3d_forward(ctx, &p, x.p(), w.p(), b.data(), y.p()), RM_OK) << rm_ctx_error(ctx);
    for (int64_t o = 0; o < co; o++)
        for (int64_t z = 0; z < D; z++)
            for (int64_t r = 0; r < H; r++)
                for (int64_t q = 0; q < W; q++) {
                    float acc = b[o];
                    for (int64_t i = 0; i < ci; i++)
                        for (int64_t tap = 0; tap < taps; tap++)
                            acc =
                                std::fma(space_to_depth(x, k, i, z, r, q, tap), w.data[(o * ci + i) * taps + tap], acc);
                    ASSERT_EQ(at(y, o, z, r, q), acc) << "o " << o << " at " << z << "," << r << "," << q;
                }
}

// Its data gradient, the transposed convolution's forward, puts the 1³ convolution into ci·k³ channels back
// depth-to-space: each input voxel of a window adds the output channels' products in order, from zero; voxels that
// no window covers get zero.
TEST(Conv, TilingDataGradientPutsThePointwiseResultBackDepthToSpace)
{
    if (rm_isa_available() < RM_ISA_AVX2)
        GTEST_SKIP() << "no vector instruction set here: the portable path computes tiling convolutions by GEMM";
    const int64_t ci = 3, co = 16, k = 2, taps = 8, D = 8, H = 16, W = 8; // outputs; the input has remainders
    Tensor x({1, ci, 2 * D + 1, 2 * H + 1, 2 * W + 1}), w({co, ci, k, k, k}), dy({1, co, D, H, W}), dx(x.shape(), NAN);
    rmtest::fill_uniform(x.data, 6);
    rmtest::fill_uniform(w.data, 7, -0.5f, 0.5f);
    rmtest::fill_uniform(dy.data, 8);
    rmtest::Ctx ctx(2);
    const rm_conv3d_params p = rm_conv3d_strided(2, 2);
    ASSERT_EQ(rm_conv3d_backward(ctx, &p, x.p(), w.p(), dy.p(), dx.p(), nullptr, nullptr), RM_OK) << rm_ctx_error(ctx);
    for (int64_t i = 0; i < ci; i++)
        for (int64_t z = 0; z <= 2 * D; z++)
            for (int64_t r = 0; r <= 2 * H; r++)
                for (int64_t q = 0; q <= 2 * W; q++) {
                    float expected = 0.0f;
                    if (z < 2 * D && r < 2 * H && q < 2 * W) {
                        const int64_t tap = ((z % k) * k + r % k) * k + q % k;
                        for (int64_t o = 0; o < co; o++)
                            expected =
                                std::fma(at(dy, o, z / k, r / k, q / k), w.data[(o * ci + i) * taps + tap], expected);
                    }
                    ASSERT_EQ(at(dx, i, z, r, q), expected) << "i " << i << " at " << z << "," << r << "," << q;
                }
}

} // namespace
