// Fine-tuning (docs/network.md §5.6): a model initialized from a trained one (every tensor compared by name with the
// source's, gate columns mapped by task name), the encoder frozen (bit-identical after training steps; the rest's
// gradients against finite differences of the frozen forward) or stepped at a scaled learning rate (one Adam step
// against the update computed in double from the gradient).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::deploy_predict;
using rmtest::Tensor;

bool in_encoder(const std::string &name) { return name.rfind("encoder_block", 0) == 0; }

// A tensor's values (its counter for num_batches_tracked).
std::vector<float> values_of(const rm_param *p)
{
    return p->data ? std::vector<float>(p->data, p->data + p->numel) : std::vector<float>{(float)*p->count};
}

// A trained-looking model of the given tasks: every float tensor and counter away from its initial value.
rm_model *trained_model(rm_ctx *ctx, const std::vector<rm_task> &tasks, rm_activation act = RM_ACT_FRELU)
{
    rm_config cfg = rm_config_lite(const_cast<rm_task *>(tasks.data()), (int)tasks.size());
    cfg.base_channels = 4;
    cfg.levels = 2;
    cfg.activation = act;
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_create(ctx, &cfg, 5, &m), RM_OK) << rm_ctx_error(ctx);
    uint32_t seed = 300;
    for (size_t i = 0; i < rm_model_n_params(m); i++) {
        rm_param *p = rm_model_param(m, i);
        if (!p->data) {
            *p->count = 17 + (int64_t)i;
            continue;
        }
        std::vector<float> v((size_t)p->numel);
        const bool var = std::string(p->name).find("running_var") != std::string::npos;
        rmtest::fill_uniform(v, seed++, var ? 0.5f : -0.5f, var ? 1.5f : 0.5f);
        std::copy(v.begin(), v.end(), p->data);
    }
    EXPECT_EQ(rm_model_set_provenance(ctx, m, "{\"software\":\"a test\",\"steps\":7}"), RM_OK);
    const rm_normalization percentile = rm_normalization_percentile(2.0, 98.0);
    EXPECT_EQ(rm_model_set_normalization(ctx, m, &percentile), RM_OK);
    return m;
}

TEST(InitFrom, CopiesEveryTensorAndMapsGateColumnsByTaskName)
{
    rmtest::Ctx ctx(2);
    const std::vector<rm_task> old_tasks{rm_task_make("a", RM_TASK_REGRESSION), rm_task_make("b", RM_TASK_BINARY),
                                         rm_task_make("c", RM_TASK_BINARY)};
    rm_model *source = trained_model(ctx, old_tasks);
    std::vector<rm_task> tasks{rm_task_make("c", RM_TASK_BINARY), rm_task_make("a", RM_TASK_REGRESSION),
                               rm_task_make("new", RM_TASK_REGRESSION)};
    tasks[0].threshold = 0.25f;
    rm_config cfg = *rm_model_config(source);
    cfg.tasks = tasks.data();
    cfg.n_tasks = 3;
    cfg.dropout = 0.2f; // not part of the network: the configuration's
    cfg.patch[0] = 8;
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_init_from(ctx, source, &cfg, &m), RM_OK) << rm_ctx_error(ctx);

    const int from[3] = {2, 0, -1}; // c, a, new
    int gates = 0;
    ASSERT_EQ(rm_model_n_params(m), rm_model_n_params(source));
    for (size_t i = 0; i < rm_model_n_params(m); i++) {
        const rm_param *p = rm_model_param(m, i);
        const rm_param *q = rm_model_find_param(source, p->name);
        ASSERT_NE(q, nullptr) << p->name;
        const std::string name = p->name;
        if (name.size() >= 11 && name.compare(name.size() - 11, 11, "gate.weight") == 0) {
            gates++;
            ASSERT_EQ(p->shape[0], q->shape[0]) << name;
            ASSERT_EQ(p->shape[1], 3) << name;
            for (int64_t row = 0; row < p->shape[0]; row++)
                for (int t = 0; t < 3; t++) {
                    const float want = from[t] < 0 ? 0.0f : q->data[row * 3 + from[t]];
                    ASSERT_EQ(std::memcmp(&p->data[row * 3 + t], &want, sizeof want), 0)
                        << name << " row " << row << " column " << t;
                }
        } else {
            EXPECT_TRUE(rmtest::bit_identical(values_of(p), values_of(q))) << name;
        }
    }
    EXPECT_EQ(gates, 2 * 2 + 2 + 2 * 2 + 1) << "every MoDE layer's gate";
    const rm_config *got = rm_model_config(m);
    EXPECT_STREQ(got->tasks[0].name, "c");
    EXPECT_EQ(got->tasks[0].threshold, 0.25f);
    EXPECT_EQ(got->dropout, 0.2f);
    EXPECT_EQ(got->patch[0], 8);
    EXPECT_STREQ(rm_model_provenance(m), rm_model_provenance(source));
    rm_normalization norm;
    ASSERT_EQ(rm_model_normalization(ctx, m, &norm), RM_OK);
    EXPECT_EQ(norm.method, RM_NORM_PERCENTILE);
    EXPECT_EQ(norm.high, 98.0);

    // A mapped task predicts the same bytes as in the source.
    Tensor x({1, 1, 8, 8, 8});
    rmtest::fill_uniform(x.data, 4);
    EXPECT_TRUE(rmtest::bit_identical(deploy_predict(ctx, m, 0, x), deploy_predict(ctx, source, 2, x)));
    EXPECT_TRUE(rmtest::bit_identical(deploy_predict(ctx, m, 1, x), deploy_predict(ctx, source, 0, x)));
    rm_model_free(m);
    rm_model_free(source);
}

TEST(InitFrom, RefusesAnotherKindOrAnotherNetworkNamingIt)
{
    rmtest::Ctx ctx(1);
    const std::vector<rm_task> old_tasks{rm_task_make("a", RM_TASK_REGRESSION)};
    rm_model *source = trained_model(ctx, old_tasks), *m = nullptr;
    rm_task binary_a = rm_task_make("a", RM_TASK_BINARY);
    rm_config cfg = *rm_model_config(source);
    cfg.tasks = &binary_a;
    EXPECT_EQ(rm_model_init_from(ctx, source, &cfg, &m), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("task 'a' is binary in the configuration but regression"),
              std::string::npos)
        << rm_ctx_error(ctx);
    EXPECT_EQ(m, nullptr);

    rm_task a = rm_task_make("a", RM_TASK_REGRESSION);
    const auto refused = [&](const char *field, auto change) {
        rm_config c = *rm_model_config(source);
        c.tasks = &a;
        change(c);
        EXPECT_EQ(rm_model_init_from(ctx, source, &c, &m), RM_ERR_ARGUMENT) << field;
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find("'" + std::string(field) + "' differs"), std::string::npos)
            << rm_ctx_error(ctx);
        EXPECT_EQ(m, nullptr);
    };
    refused("base_channels", [](rm_config &c) { c.base_channels = 8; });
    refused("levels", [](rm_config &c) { c.levels = 3; });
    refused("activation", [](rm_config &c) { c.activation = RM_ACT_RELU; });
    refused("decoder", [&a](rm_config &c) {
        c.decoder_2d = 1;
        a.output_2d = 1; // a 2D decoder's tasks have 2D labels
    });
    a.output_2d = 0;
    EXPECT_EQ(rm_model_init_from(ctx, source, nullptr, &m), RM_ERR_ARGUMENT);
    rm_model_free(source);
}

// Every tensor's values (counters as floats), in rm_model_param order.
std::vector<std::vector<float>> snapshot(const rm_model *m)
{
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < rm_model_n_params(m); i++)
        out.push_back(values_of(rm_model_param(const_cast<rm_model *>(m), i)));
    return out;
}

// Three training steps (forward, backward, AdamW with weight decay) on mixed-task batches.
void train_steps(rm_ctx *ctx, rm_model *m, int steps)
{
    rm_optim_config oc = rm_optim_adamw_default();
    oc.weight_decay = 0.1f; // a frozen convolution must not decay either
    rm_optim *opt = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, m, &oc, &opt), RM_OK) << rm_ctx_error(ctx);
    Tensor x({2, 1, 8, 8, 8}), y({2, 1, 8, 8, 8}), dy({2, 1, 8, 8, 8});
    const int tasks[2] = {0, 1};
    for (int step = 0; step < steps; step++) {
        rmtest::fill_uniform(x.data, 10 + step);
        rmtest::fill_uniform(dy.data, 20 + step);
        ASSERT_EQ(rm_model_forward_train(ctx, m, x.p(), tasks, (uint64_t)step, y.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_model_backward(ctx, m, dy.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_optim_step(ctx, opt, 1e-2f), RM_OK) << rm_ctx_error(ctx);
    }
    rm_optim_free(opt);
}

TEST(FreezeEncoder, EncoderStaysBitIdenticalWhileTheRestTrains)
{
    rmtest::Ctx ctx(2);
    const std::vector<rm_task> tasks{rm_task_make("a", RM_TASK_REGRESSION), rm_task_make("b", RM_TASK_BINARY)};
    rm_model *m = trained_model(ctx, tasks);
    ASSERT_EQ(rm_model_freeze_encoder(ctx, m), RM_OK);
    const std::vector<std::vector<float>> before = snapshot(m);
    train_steps(ctx, m, 3);
    int encoder = 0, rest = 0;
    for (size_t i = 0; i < rm_model_n_params(m); i++) {
        const rm_param *p = rm_model_param(m, i);
        const std::string name = p->name;
        const bool same = rmtest::bit_identical(values_of(p), before[i]);
        if (in_encoder(name)) { // weights, biases, gates, BatchNorm statistics and counters
            encoder++;
            EXPECT_TRUE(same) << name;
            EXPECT_EQ(p->trainable, 0) << name;
            EXPECT_EQ(p->grad, nullptr) << name;
        } else if (p->trainable || name.find("running_") != std::string::npos ||
                   name.find("num_batches_tracked") != std::string::npos) {
            rest++;
            EXPECT_FALSE(same) << name << " did not train";
        }
    }
    EXPECT_GT(encoder, 4 * 15); // four MoDE layers of 15 tensors, and two down-sampling blocks
    EXPECT_GT(rest, encoder);
    rm_model_free(m);
}


// The backward stops at the bottleneck and skips the gradient of its input: the gradients it does compute must still
// be those of the frozen forward, in particular of the bottleneck's first layer and of the decoder layers that read
// the (frozen) encoder's skips.
TEST(FreezeEncoder, GradientsOfTheRestMatchFiniteDifferencesOfTheFrozenForward)
{
    rmtest::Ctx ctx(1);
    const std::vector<rm_task> tasks{rm_task_make("a", RM_TASK_REGRESSION), rm_task_make("b", RM_TASK_REGRESSION)};
    rm_model *m = trained_model(ctx, tasks, RM_ACT_MISH); // smooth: finite differences hold
    ASSERT_EQ(rm_model_freeze_encoder(ctx, m), RM_OK);
    Tensor x({2, 1, 8, 8, 8}), dy({2, 1, 8, 8, 8});
    rmtest::fill_uniform(x.data, 7);
    std::vector<float> r(dy.data.size());
    rmtest::fill_uniform(r, 8);
    dy.data = r;
    const int task_of[2] = {0, 1};
    rmtest::train_forward_dot(ctx, m, x, task_of, r);
    ASSERT_EQ(rm_model_backward(ctx, m, dy.p()), RM_OK) << rm_ctx_error(ctx);
    const char *names[] = {"bottle_block.conv1.expert_conv3x3_conv", "bottle_block.conv1.gate.weight",
                           "bottle_block.conv1.subsequent_layer.0.weight", "decoder_block2.convt.0.weight",
                           "decoder_block1.conv_less.conv1.expert_conv5x5_conv", "conv_out.gate.bias"};
    for (const char *name : names) {
        rm_param *p = rm_model_find_param(m, name);
        ASSERT_NE(p, nullptr) << name;
        ASSERT_NE(p->grad, nullptr) << name;
        rmtest::expect_gradient_matches(p, 0, std::max<int64_t>(1, p->numel / 6),
                                        [&] { return rmtest::train_forward_dot(ctx, m, x, task_of, r); });
    }
    rm_model_free(m);
}

// One Adam(W) step of a model whose encoder has lr_scale F: every element of an encoder weight moves as the step
// computed in double from its gradient at lr·F, a decoder weight's at lr.
TEST(EncoderLr, OneStepMovesTheEncoderAtTheScaledRate)
{
    for (const rm_optim_kind kind : {RM_OPTIM_ADAM, RM_OPTIM_ADAMW}) {
        rmtest::Ctx ctx(2);
        const std::vector<rm_task> tasks{rm_task_make("a", RM_TASK_REGRESSION)};
        rm_model *m = trained_model(ctx, tasks);
        const float F = 0.25f, lr = 1e-2f;
        ASSERT_EQ(rm_model_set_encoder_lr_scale(ctx, m, F), RM_OK);
        rm_optim_config oc = kind == RM_OPTIM_ADAM ? rm_optim_adam_official() : rm_optim_adamw_default();
        rm_optim *opt = nullptr;
        ASSERT_EQ(rm_optim_create(ctx, m, &oc, &opt), RM_OK) << rm_ctx_error(ctx);
        Tensor x({2, 1, 8, 8, 8}), y({2, 1, 8, 8, 8}), dy({2, 1, 8, 8, 8});
        rmtest::fill_uniform(x.data, 1);
        rmtest::fill_uniform(dy.data, 2);
        const int task_of[2] = {0, 0};
        ASSERT_EQ(rm_model_forward_train(ctx, m, x.p(), task_of, 0, y.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_model_backward(ctx, m, dy.p()), RM_OK) << rm_ctx_error(ctx);
        const char *names[] = {"encoder_block1.conv_more.conv2.expert_conv5x5_conv",
                               "encoder_block2.conv_down.0.weight",
                               "decoder_block1.conv_less.conv1.expert_conv5x5_conv"};
        std::vector<std::vector<float>> theta, grad;
        for (const char *name : names) {
            const rm_param *p = rm_model_find_param(m, name);
            ASSERT_NE(p, nullptr) << name;
            theta.emplace_back(p->data, p->data + p->numel);
            grad.emplace_back(p->grad, p->grad + p->numel);
        }
        ASSERT_EQ(rm_optim_step(ctx, opt, lr), RM_OK) << rm_ctx_error(ctx);
        for (size_t k = 0; k < 3; k++) {
            const rm_param *p = rm_model_find_param(m, names[k]);
            EXPECT_EQ(p->lr_scale, in_encoder(names[k]) ? F : 1.0f) << names[k];
            const double rate = (double)lr * (in_encoder(names[k]) ? F : 1.0);
            const double b1 = oc.beta1, b2 = oc.beta2, eps = oc.eps, wd = oc.weight_decay;
            for (size_t j = 0; j < theta[k].size(); j++) {
                const double t0 = theta[k][j], g = grad[k][j] + (kind == RM_OPTIM_ADAM ? wd * t0 : 0.0);
                const double m_hat = (1 - b1) * g / (1 - b1), v_hat = (1 - b2) * g * g / (1 - b2);
                const double shrunk = kind == RM_OPTIM_ADAMW ? t0 * (1 - rate * wd) : t0;
                const double want = shrunk - rate * m_hat / (std::sqrt(v_hat) + eps);
                const double got = p->data[j];
                // float arithmetic: a few roundings of the step (1e-5 of it) and of θ (4 ulps)
                const double tol = 1e-5 * std::fabs(want - t0) + 4.0 * std::ldexp(1.0, std::ilogb(t0) - 23);
                ASSERT_NEAR(got, want, tol) << names[k] << "[" << j << "] kind " << kind;
            }
        }
        rm_optim_free(opt);
        EXPECT_EQ(rm_model_set_encoder_lr_scale(ctx, m, 0.0f), RM_ERR_ARGUMENT);
        EXPECT_EQ(rm_model_set_encoder_lr_scale(ctx, m, 1.5f), RM_ERR_ARGUMENT);
        EXPECT_EQ(rm_model_set_encoder_lr_scale(ctx, m, NAN), RM_ERR_ARGUMENT);
        rm_model_free(m);
    }
}

} // namespace
