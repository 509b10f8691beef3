// The whole network: its tensor table against the official state_dict, the deploy form against the training
// form in inference mode, and the training form's gradients against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" {
#include "model/model_impl.h"
}
#include "test_util.h"

namespace {

using rmtest::Tensor;

std::string spec_file(const char *name) { return std::string(REPMODE_SPEC_DIR) + "/" + name; }

std::string shape_string(const rm_param *p)
{
    std::ostringstream s;
    s << "(";
    for (int d = 0; d < p->ndim; d++)
        s << (d ? ", " : "") << p->shape[d];
    s << (p->ndim == 1 ? ",)" : ")");
    return s.str();
}

TEST(Model, OfficialConfigurationHasTheOfficialStateDict)
{
    const std::string listing = spec_file("repmode-state-dict.txt");
    std::ifstream in(listing);
    ASSERT_TRUE(in) << listing << " is missing (the official state_dict listing, kept in the repository)";
    rmtest::Ctx ctx(2);
    rm_task tasks[12];
    const rm_config cfg = rm_config_official(tasks);
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK) << rm_ctx_error(ctx);
    size_t i = 0;
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#')
            continue;
        ASSERT_LT(i, rm_model_n_params(m)) << "missing " << line;
        const rm_param *p = rm_model_param(m, i++);
        const std::string dtype = p->count ? "int64" : "float32";
        EXPECT_EQ(line, std::string(p->name) + " " + shape_string(p) + " " + dtype);
    }
    EXPECT_EQ(i, rm_model_n_params(m));
    EXPECT_EQ(rm_model_n_params(m), 309u);
    EXPECT_EQ(rm_model_trainable_count(m), 123877633);
    EXPECT_EQ(rm_model_task_index(m, "dna"), 3);
    EXPECT_EQ(rm_model_task_index(m, "zo1"), 11);
    EXPECT_EQ(rm_model_task_index(m, "nucleus"), -1);
    rm_model_free(m);
}

TEST(Model, InitializationFollowsPyTorchDefaults)
{
    rmtest::Ctx ctx(2);
    rm_task tasks[12];
    rm_config cfg = rm_config_official(tasks);
    cfg.base_channels = 4;
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 3, &m), RM_OK);
    auto bound_of = [&](const char *name) {
        const rm_param *p = rm_model_find_param(m, name);
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t j = 0; j < p->numel; j++) {
            lo = std::min(lo, p->data[j]);
            hi = std::max(hi, p->data[j]);
        }
        return std::make_pair(lo, hi);
    };
    // conv2 of level 1: fan_in 4·125 → ±1/√500; a gate: ±1/√12; ConvTranspose fan_in from dim 1: 4·8 → ±1/√32.
    const auto k5 = bound_of("encoder_block1.conv_more.conv2.expert_conv5x5_conv");
    EXPECT_LE(k5.second, 1.0 / std::sqrt(500.0));
    EXPECT_GT(k5.second, 0.9 / std::sqrt(500.0));
    EXPECT_GE(k5.first, -1.0 / std::sqrt(500.0));
    const auto gate = bound_of("conv_out.gate.weight");
    EXPECT_LE(gate.second, 1.0 / std::sqrt(12.0));
    const auto up = bound_of("decoder_block1.convt.0.weight");
    EXPECT_LE(up.second, 1.0 / std::sqrt(32.0));
    EXPECT_GT(up.second, 0.8 / std::sqrt(32.0));
    EXPECT_EQ(rm_model_find_param(m, "encoder_block2.conv_more.conv1.expert_avg3x3_pool")->data[13], 1.0f / 27.0f);
    EXPECT_EQ(rm_model_find_param(m, "bottle_block.conv1.subsequent_layer.0.running_var")->data[0], 1.0f);
    rm_model_free(m);
}

// A small network with non-trivial BatchNorm statistics and affine parameters.
struct Net {
    std::vector<rm_task> tasks{rm_task_make("dna", RM_TASK_REGRESSION), rm_task_make("membrane", RM_TASK_REGRESSION),
                               rm_task_make("ink", RM_TASK_BINARY)};
    rm_model *model = nullptr;

    // decoder_2d: the 2D decoder (docs/network.md §7.2), every task's labels 2D.
    Net(rm_ctx *ctx, int64_t base, int levels, rm_activation act, float dropout = 0.0f, bool decoder_2d = false)
    {
        for (rm_task &t : tasks)
            t.output_2d = decoder_2d;
        rm_config cfg = rm_config_lite(tasks.data(), 3);
        cfg.base_channels = base;
        cfg.levels = levels;
        cfg.activation = act;
        cfg.dropout = dropout;
        cfg.decoder_2d = decoder_2d;
        EXPECT_EQ(rm_model_create(ctx, &cfg, 17, &model), RM_OK) << rm_ctx_error(ctx);
        uint32_t seed = 100;
        for (size_t i = 0; i < rm_model_n_params(model); i++) {
            rm_param *p = rm_model_param(model, i);
            const std::string name = p->name;
            std::vector<float> v((size_t)p->numel);
            auto set = [&](float lo, float hi) {
                rmtest::fill_uniform(v, seed++, lo, hi);
                std::copy(v.begin(), v.end(), p->data);
            };
            if (name.find("running_mean") != std::string::npos)
                set(-0.2f, 0.2f);
            else if (name.find("running_var") != std::string::npos)
                set(0.5f, 1.5f);
            else if (name.find("subsequent_layer.0.weight") != std::string::npos || name.find(".1.weight") != std::string::npos)
                set(0.5f, 1.5f);
            else if (name.find("subsequent_layer.0.bias") != std::string::npos || name.find(".1.bias") != std::string::npos ||
                     name.find("activation.bias") != std::string::npos)
                set(-0.2f, 0.2f);
            else if (name.find("gate.weight") != std::string::npos)
                set(-2.0f, 2.0f); // spread the experts' weights apart
        }
    }
    ~Net() { rm_model_free(model); }
};

class DeployForm : public ::testing::TestWithParam<rm_activation> {};

TEST_P(DeployForm, EqualsTheTrainingFormInInferenceModeForEveryTask)
{
    rmtest::Ctx ctx(2);
    Net net(ctx, 4, 2, GetParam());
    Tensor x({2, 1, 8, 12, 16});
    rmtest::fill_uniform(x.data, 5);
    rm_deploy *d = nullptr;
    for (int t = 0; t < 3; t++) {
        const int tasks[2] = {t, t};
        Tensor want({2, 1, 8, 12, 16}), got({2, 1, 8, 12, 16}, NAN);
        ASSERT_EQ(rm_model_forward_eval(ctx, net.model, x.p(), tasks, want.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(d ? rm_deploy_set_task(ctx, d, net.model, t) : rm_deploy_create(ctx, net.model, t, &d), RM_OK)
            << rm_ctx_error(ctx);
        ASSERT_EQ(rm_deploy_forward(ctx, d, x.p(), got.p()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_LT(rmtest::max_rel_error(got.data, rmtest::to_double(want.data)), 1e-5) << "task " << t;
    }
    rm_deploy_free(d);
}

INSTANTIATE_TEST_SUITE_P(Activations, DeployForm, ::testing::Values(RM_ACT_RELU, RM_ACT_FRELU, RM_ACT_MISH));

std::string file_bytes(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

// 32 channels (two blocks of 16): the deploy form keeps its 5³ weights packed for the direct kernels when the
// context can run them, with the activation fused into the convolutions' stores. For every activation and on every
// instruction set it equals the training form; a packed form runs on a context of the portable path; and its file
// holds the plain weights: the bytes of a file saved where nothing is packed, and it loads back to the same
// outputs, bit for bit.
class PackedDeployForm : public ::testing::TestWithParam<rm_activation> {};

TEST_P(PackedDeployForm, GivesTheTrainingFormsResultsAndFiles)
{
    rmtest::Ctx best(2);
    Net net(best, 32, 1, GetParam());
    Tensor x({1, 1, 4, 6, 10});
    rmtest::fill_uniform(x.data, 9);
    const int tasks[1] = {1};
    Tensor want({1, 1, 4, 6, 10});
    ASSERT_EQ(rm_model_forward_eval(best, net.model, x.p(), tasks, want.p()), RM_OK) << rm_ctx_error(best);
    char dir[] = "/tmp/repmode-packed-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string portable_file = std::string(dir) + "/portable.safetensors";
    const std::string best_file = std::string(dir) + "/best.safetensors";
    rmtest::Ctx portable(2);
    ASSERT_EQ(rm_ctx_set_isa(portable, RM_ISA_PORTABLE), RM_OK);
    ASSERT_EQ(rm_model_save_deploy(portable, net.model, tasks, 1, portable_file.c_str()), RM_OK) << rm_ctx_error(portable);
    ASSERT_EQ(rm_model_save_deploy(best, net.model, tasks, 1, best_file.c_str()), RM_OK) << rm_ctx_error(best);
    EXPECT_EQ(file_bytes(best_file), file_bytes(portable_file));

    for (int isa = RM_ISA_PORTABLE; isa <= rm_isa_available(); isa++) {
        SCOPED_TRACE(rm_isa_name(static_cast<rm_isa>(isa)));
        rmtest::Ctx ctx(2);
        ASSERT_EQ(rm_ctx_set_isa(ctx, static_cast<rm_isa>(isa)), RM_OK);
        rm_deploy *made = nullptr, *loaded = nullptr;
        ASSERT_EQ(rm_deploy_create(ctx, net.model, 1, &made), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_deploy_load(ctx, best_file.c_str(), "membrane", &loaded), RM_OK) << rm_ctx_error(ctx);
        float *plain = nullptr; // non-NULL exactly when the unit's weight is kept packed
        ASSERT_EQ(rm_deploy_unit_plain_copy(ctx, made, 1, &plain), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(plain != nullptr, isa != RM_ISA_PORTABLE); // the 32 -> 32 convolution
        std::free(plain);
        Tensor got({1, 1, 4, 6, 10}, NAN), again({1, 1, 4, 6, 10}, NAN), elsewhere({1, 1, 4, 6, 10}, NAN);
        ASSERT_EQ(rm_deploy_forward(ctx, made, x.p(), got.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_deploy_forward(ctx, loaded, x.p(), again.p()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_LT(rmtest::max_rel_error(got.data, rmtest::to_double(want.data)), 1e-5);
        EXPECT_TRUE(rmtest::bit_identical(got.data, again.data));
        // The same packed form on the portable path: unpacked into working memory, the portable path's result.
        ASSERT_EQ(rm_deploy_forward(portable, made, x.p(), elsewhere.p()), RM_OK) << rm_ctx_error(portable);
        EXPECT_LT(rmtest::max_rel_error(elsewhere.data, rmtest::to_double(want.data)), 1e-5);
        rm_deploy_free(made);
        rm_deploy_free(loaded);
    }
    std::remove(portable_file.c_str());
    std::remove(best_file.c_str());
    rmdir(dir);
}

INSTANTIATE_TEST_SUITE_P(Activations, PackedDeployForm, ::testing::Values(RM_ACT_RELU, RM_ACT_FRELU, RM_ACT_MISH));

TEST(DeployForm, MixedTaskEvaluationGivesEachSampleItsOwnTask)
{
    rmtest::Ctx ctx(2);
    Net net(ctx, 4, 2, RM_ACT_RELU);
    Tensor x({2, 1, 8, 8, 8});
    rmtest::fill_uniform(x.data, 6);
    const int mixed[2] = {2, 0};
    Tensor y({2, 1, 8, 8, 8});
    ASSERT_EQ(rm_model_forward_eval(ctx, net.model, x.p(), mixed, y.p()), RM_OK);
    rm_deploy *d = nullptr;
    for (int n = 0; n < 2; n++) {
        ASSERT_EQ(d ? rm_deploy_set_task(ctx, d, net.model, mixed[n]) : rm_deploy_create(ctx, net.model, mixed[n], &d),
                  RM_OK);
        Tensor xn({1, 1, 8, 8, 8}), yn({1, 1, 8, 8, 8});
        std::copy(x.data.begin() + n * 512, x.data.begin() + (n + 1) * 512, xn.data.begin());
        ASSERT_EQ(rm_deploy_forward(ctx, d, xn.p(), yn.p()), RM_OK);
        EXPECT_LT(rmtest::max_rel_error(std::vector<float>(y.data.begin() + n * 512, y.data.begin() + (n + 1) * 512),
                                        rmtest::to_double(yn.data)),
                  1e-5);
    }
    rm_deploy_free(d);
}

// L = Σ r · y of the training forward (batch statistics), for a mixed-task batch of three.
double train_loss(rm_ctx *ctx, rm_model *m, Tensor &x, const int *tasks, const std::vector<float> &r, uint64_t seed)
{
    Tensor y({3, 1, 8, 8, 8});
    EXPECT_EQ(rm_model_forward_train(ctx, m, x.p(), tasks, seed, y.p()), RM_OK) << rm_ctx_error(ctx);
    double l = 0.0;
    for (size_t j = 0; j < r.size(); j++)
        l += (double)r[j] * y.data[j];
    return l;
}

// Central differences of the training loss at a few entries of each named tensor, against the backward's gradient.
void expect_gradients_match_finite_differences(rm_ctx *ctx, Net &net, const std::vector<const char *> &names)
{
    Tensor x({3, 1, 8, 8, 8}), dy({3, 1, 8, 8, 8});
    rmtest::fill_uniform(x.data, 7);
    std::vector<float> r(dy.data.size());
    rmtest::fill_uniform(r, 8);
    dy.data = r;
    const int tasks[3] = {0, 2, 0};
    const uint64_t seed = 99;
    train_loss(ctx, net.model, x, tasks, r, seed);
    ASSERT_EQ(rm_model_backward(ctx, net.model, dy.p()), RM_OK) << rm_ctx_error(ctx);
    for (const char *name : names) {
        rm_param *p = rm_model_find_param(net.model, name);
        ASSERT_NE(p, nullptr) << name;
        const std::vector<float> analytic(p->grad, p->grad + p->numel);
        double scale = 0.0;
        for (float g : analytic)
            scale = std::max(scale, (double)std::fabs(g));
        const int64_t step = std::max<int64_t>(1, p->numel / 7);
        for (int64_t j = 0; j < p->numel; j += step) {
            // Richardson extrapolation of two central differences cancels their h² error, which float32
            // arithmetic does not let us shrink by taking h smaller.
            const float saved = p->data[j];
            auto central = [&](float h) {
                p->data[j] = saved + h;
                const double up = train_loss(ctx, net.model, x, tasks, r, seed);
                p->data[j] = saved - h;
                const double down = train_loss(ctx, net.model, x, tasks, r, seed);
                p->data[j] = saved;
                return (up - down) / (2.0 * (double)h);
            };
            // The averaging experts reach the merged kernel divided by 27 or 125, so their gradients are that much
            // smaller: a step √27 or √125 times larger keeps rounding noise and the h² error both in bounds.
            const std::string n = name;
            const float reach = n.find("avg5x5") != n.npos ? 11.0f : n.find("avg3x3") != n.npos ? 5.0f : 1.0f;
            const float h = 1e-2f * reach * std::max(1.0f, std::fabs(saved));
            const double fd = (4.0 * central(h / 2) - central(h)) / 3.0;
            EXPECT_NEAR(analytic[(size_t)j], fd, 2e-3 * scale + 1e-4) << name << "[" << j << "]";
        }
    }
}

class TrainGradient : public ::testing::TestWithParam<float> {};

// Mish keeps the network smooth, so central differences are meaningful everywhere; with dropout the mask is fixed
// by the seed. Every tensor kind is checked at a few entries: each expert, the gate, BatchNorm, down, up, final.
TEST_P(TrainGradient, MatchesFiniteDifferencesForEveryKindOfParameter)
{
    rmtest::Ctx ctx(1); // hundreds of tiny forwards: one thread avoids OpenMP's start-up cost
    Net net(ctx, 2, 2, RM_ACT_MISH, GetParam());
    expect_gradients_match_finite_differences(
        ctx, net,
        {"encoder_block1.conv_more.conv1.expert_conv5x5_conv", "encoder_block1.conv_more.conv1.expert_conv3x3_conv",
         "encoder_block1.conv_more.conv2.expert_conv1x1_conv", "encoder_block2.conv_more.conv1.expert_avg3x3_conv",
         "bottle_block.conv2.expert_avg5x5_conv", "decoder_block2.conv_less.conv1.gate.weight",
         "encoder_block1.conv_more.conv1.gate.bias", "decoder_block1.conv_less.conv2.subsequent_layer.0.weight",
         "bottle_block.conv1.subsequent_layer.0.bias", "encoder_block1.conv_down.0.weight",
         "decoder_block2.convt.0.weight", "decoder_block1.convt.1.bias", "conv_out.expert_conv5x5_conv",
         "conv_out.gate.weight"});
}

// The 2D decoder: its 2D experts, gates, BatchNorm and up-sampling, and the encoder through the depth means.
TEST_P(TrainGradient, OfThe2dDecoderMatchFiniteDifferences)
{
    rmtest::Ctx ctx(1);
    Net net(ctx, 2, 2, RM_ACT_MISH, GetParam(), true);
    expect_gradients_match_finite_differences(
        ctx, net,
        {"encoder_block1.conv_more.conv2.expert_conv5x5_conv", "bottle_block.conv2.expert_conv3x3_conv",
         "decoder_block2.convt.0.weight", "decoder_block2.conv_less.conv1.expert_conv5x5_conv",
         "decoder_block1.conv_less.conv1.expert_conv3x3_conv", "decoder_block1.conv_less.conv2.expert_avg3x3_conv",
         "decoder_block1.conv_less.conv2.expert_avg5x5_conv", "decoder_block1.conv_less.conv1.gate.weight",
         "decoder_block1.conv_less.conv2.subsequent_layer.0.weight", "decoder_block1.convt.1.bias",
         "conv_out.expert_conv5x5_conv", "conv_out.expert_conv1x1_conv", "conv_out.gate.bias"});
}

INSTANTIATE_TEST_SUITE_P(Dropout, TrainGradient, ::testing::Values(0.0f, 0.25f));

// The multiply-adds of a forward pass: docs/network.md §8's figures for `official`, and for the 2D decoder a count by
// hand (the encoder and bottleneck as in 3D; each decoder level k a 2×2 transposed convolution per input pixel of
// level k+1, then 5² MoDE layers 2c→c and c→c per pixel of level k; conv_out c→1 per pixel).
TEST(Model, ForwardMultiplyAddsAreTheSpecificationsAndTheHandCountOfThe2dDecoder)
{
    rmtest::Ctx ctx(1);
    rm_task tasks[12];
    rm_config cfg = rm_config_official(tasks);
    double macs = 0.0;
    const int64_t small[3] = {32, 64, 64}, cube[3] = {64, 64, 64};
    ASSERT_EQ(rm_config_forward_macs(ctx, &cfg, small, &macs), RM_OK) << rm_ctx_error(ctx);
    EXPECT_NEAR(macs / 136.55e9, 1.0, 1e-4);
    ASSERT_EQ(rm_config_forward_macs(ctx, &cfg, cube, &macs), RM_OK);
    EXPECT_NEAR(macs / 273.1e9, 1.0, 2e-4);

    rm_task ink = rm_task_make("ink", RM_TASK_BINARY);
    ink.output_2d = 1;
    cfg = rm_config_lite(&ink, 1);
    cfg.base_channels = 8;
    cfg.levels = 2;
    cfg.decoder_2d = 1;
    const int64_t d = 16, h = 64, w = 64;
    const int64_t size[3] = {d, h, w};
    double want = 0.0;
    for (int k = 1; k <= 2; k++) {
        const double c = 8 << (k - 1), cin = k == 1 ? 1 : 8 << (k - 2), v = (double)(d * h * w) / (1 << (3 * (k - 1)));
        const double pixels = (double)(h * w) / (1 << (2 * (k - 1)));
        want += (cin * c + c * c) * 125 * v + c * c * 8 * v / 8;       // encoder and its down-sampling
        want += 2 * c * c * 4 * pixels / 4 + (2 * c * c + c * c) * 25 * pixels; // 2D up-sampling and MoDE layers
    }
    want += (16.0 * 32 + 32.0 * 32) * 125 * (double)(d * h * w) / 64; // bottleneck 16 -> 32 at level 3
    want += 8.0 * 1 * 25 * (double)(h * w);                            // conv_out
    ASSERT_EQ(rm_config_forward_macs(ctx, &cfg, size, &macs), RM_OK) << rm_ctx_error(ctx);
    EXPECT_NEAR(macs, want, 1e-9 * want);
    const int64_t odd[3] = {16, 64, 62};
    EXPECT_EQ(rm_config_forward_macs(ctx, &cfg, odd, &macs), RM_ERR_ARGUMENT);
}

TEST(Model, BadInputsAreRejected)
{
    rmtest::Ctx ctx(1);
    Net net(ctx, 2, 2, RM_ACT_RELU);
    Tensor x({1, 1, 6, 8, 8}), y({1, 1, 6, 8, 8});
    const int task0[1] = {0}, task9[1] = {9};
    EXPECT_EQ(rm_model_forward_eval(ctx, net.model, x.p(), task0, y.p()), RM_ERR_SHAPE);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("multiples of 4"), std::string::npos) << rm_ctx_error(ctx);
    Tensor x8({1, 1, 8, 8, 8}), y8({1, 1, 8, 8, 8}), x2({1, 2, 8, 8, 8});
    EXPECT_EQ(rm_model_forward_eval(ctx, net.model, x8.p(), task9, y8.p()), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("task 9"), std::string::npos);
    EXPECT_EQ(rm_model_forward_eval(ctx, net.model, x2.p(), task0, y8.p()), RM_ERR_SHAPE);
    EXPECT_EQ(rm_model_backward(ctx, net.model, y8.p()), RM_ERR_ARGUMENT);
    rm_deploy *d = nullptr;
    EXPECT_EQ(rm_deploy_create(ctx, net.model, 3, &d), RM_ERR_ARGUMENT);
    EXPECT_EQ(d, nullptr);
}

TEST(Model, ConfigurationErrorsNameTheField)
{
    rmtest::Ctx ctx(1);
    rm_task tasks[2] = {rm_task_make("a", RM_TASK_REGRESSION), rm_task_make("a", RM_TASK_BINARY)};
    rm_config cfg = rm_config_lite(tasks, 2);
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("appears twice"), std::string::npos);
    tasks[1] = rm_task_make("b c", RM_TASK_BINARY);
    EXPECT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_ERR_ARGUMENT);
    tasks[1] = rm_task_make("b", RM_TASK_BINARY);
    cfg.patch[1] = 40;
    EXPECT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("patch"), std::string::npos);
    EXPECT_EQ(m, nullptr);
}

} // namespace
