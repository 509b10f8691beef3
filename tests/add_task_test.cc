// Task-incremental learning (docs/network.md §5.5): a model gains a task, optionally with an added expert, and trains
// it alone. The old tasks' predictions are compared byte for byte with those made before; the new task's gradients
// with the frozen network against finite differences of its forward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" {
#include "model/model_impl.h"
}
#include "test_util.h"

namespace {

using rmtest::deploy_predict;
using rmtest::Tensor;

// A small trained-looking model of two tasks: spread gates, BatchNorm statistics away from their initial values.
rm_model *old_model(rm_ctx *ctx, rm_activation act, float dropout)
{
    std::vector<rm_task> tasks{rm_task_make("dna", RM_TASK_REGRESSION), rm_task_make("membrane", RM_TASK_REGRESSION)};
    rm_config cfg = rm_config_lite(tasks.data(), 2);
    cfg.base_channels = 4;
    cfg.levels = 2;
    cfg.activation = act;
    cfg.dropout = dropout;
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_create(ctx, &cfg, 5, &m), RM_OK) << rm_ctx_error(ctx);
    uint32_t seed = 200;
    for (size_t i = 0; i < rm_model_n_params(m); i++) {
        rm_param *p = rm_model_param(m, i);
        const std::string name = p->name;
        if (!p->data)
            continue;
        std::vector<float> v((size_t)p->numel);
        const bool var = name.find("running_var") != name.npos, gate = name.find("gate.weight") != name.npos;
        const bool bn = name.find("running_mean") != name.npos || name.find("activation.bias") != name.npos;
        if (var || gate || bn) {
            rmtest::fill_uniform(v, seed++, var ? 0.5f : gate ? -2.0f : -0.2f, var ? 1.5f : gate ? 2.0f : 0.2f);
            std::copy(v.begin(), v.end(), p->data);
        }
    }
    return m;
}

struct Case {
    int added_kernel;
    rm_activation act;
    float dropout;
};

class AddTask : public ::testing::TestWithParam<Case> {};

// Old tasks: the same bytes before adding, after adding and after training the new task; only the new task's gate
// column and its added expert moved; BatchNorm's statistics and counters did not.
TEST_P(AddTask, OldTasksPredictTheSameBytesAfterTheNewTaskTrains)
{
    rmtest::Ctx ctx(2);
    const Case c = GetParam();
    rm_model *old = old_model(ctx, c.act, c.dropout);
    Tensor x({1, 1, 8, 12, 8});
    rmtest::fill_uniform(x.data, 4);
    const std::vector<float> before0 = deploy_predict(ctx, old, 0, x), before1 = deploy_predict(ctx, old, 1, x);

    const rm_task ink = rm_task_make("ink", RM_TASK_BINARY);
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_add_task(ctx, old, &ink, c.added_kernel, 9, &m), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(rm_model_config(m)->n_tasks, 3);
    EXPECT_TRUE(rmtest::bit_identical(deploy_predict(ctx, m, 0, x), before0));
    EXPECT_TRUE(rmtest::bit_identical(deploy_predict(ctx, m, 1, x), before1));

    ASSERT_EQ(rm_model_train_only_task(ctx, m, 2), RM_OK);
    std::vector<std::vector<float>> saved;
    for (size_t i = 0; i < rm_model_n_params(m); i++) {
        const rm_param *p = rm_model_param(m, i);
        saved.emplace_back(p->data ? std::vector<float>(p->data, p->data + p->numel)
                                   : std::vector<float>{(float)*p->count});
    }
    const std::vector<float> new_before = deploy_predict(ctx, m, 2, x);
    rm_optim_config oc = rm_optim_adamw_default();
    oc.weight_decay = 0.1f; // decays the convolutions it trains; a frozen one must not move
    rm_optim *opt = nullptr;
    ASSERT_EQ(rm_optim_create(ctx, m, &oc, &opt), RM_OK) << rm_ctx_error(ctx);
    Tensor xb({2, 1, 8, 8, 8}), y({2, 1, 8, 8, 8}), dy({2, 1, 8, 8, 8});
    const int tasks[2] = {2, 2};
    for (int step = 0; step < 3; step++) {
        rmtest::fill_uniform(xb.data, 10 + step);
        rmtest::fill_uniform(dy.data, 20 + step);
        ASSERT_EQ(rm_model_forward_train(ctx, m, xb.p(), tasks, (uint64_t)step, y.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_model_backward(ctx, m, dy.p()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_optim_step(ctx, opt, 1e-2f), RM_OK) << rm_ctx_error(ctx);
    }
    rm_optim_free(opt);

    EXPECT_TRUE(rmtest::bit_identical(deploy_predict(ctx, m, 0, x), before0));
    EXPECT_TRUE(rmtest::bit_identical(deploy_predict(ctx, m, 1, x), before1));
    EXPECT_FALSE(rmtest::bit_identical(deploy_predict(ctx, m, 2, x), new_before)) << "the new task did not train";
    for (size_t i = 0; i < rm_model_n_params(m); i++) {
        const rm_param *p = rm_model_param(m, i);
        const std::string name = p->name;
        const std::vector<float> now =
            p->data ? std::vector<float>(p->data, p->data + p->numel) : std::vector<float>{(float)*p->count};
        if (name.find("expert_added_conv") != name.npos) {
            EXPECT_FALSE(rmtest::bit_identical(now, saved[i])) << name;
        } else if (name.find("gate.weight") != name.npos) {
            for (int64_t j = 0; j < p->numel; j++) {
                if (j % 3 != 2) { // the old tasks' columns
                    ASSERT_EQ(now[(size_t)j], saved[i][(size_t)j]) << name << "[" << j << "]";
                }
            }
        } else {
            EXPECT_TRUE(rmtest::bit_identical(now, saved[i])) << name;
        }
    }
    rm_model_free(m);
    rm_model_free(old);
}

INSTANTIATE_TEST_SUITE_P(Variants, AddTask,
                         ::testing::Values(Case{0, RM_ACT_RELU, 0.0f}, Case{3, RM_ACT_RELU, 0.0f},
                                           Case{3, RM_ACT_FRELU, 0.2f}, Case{5, RM_ACT_MISH, 0.0f}));


TEST(AddTask, NewTaskGradientThroughTheFrozenNetworkMatchesFiniteDifferences)
{
    rmtest::Ctx ctx(1);
    rm_model *old = old_model(ctx, RM_ACT_MISH, 0.0f), *m = nullptr;
    const rm_task ink = rm_task_make("ink", RM_TASK_REGRESSION);
    ASSERT_EQ(rm_model_add_task(ctx, old, &ink, 3, 9, &m), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(rm_model_train_only_task(ctx, m, 2), RM_OK);
    // Give the new task's column and the added expert's rows values, so every expert weighs differently.
    for (size_t i = 0; i < rm_model_n_params(m); i++) {
        rm_param *p = rm_model_param(m, i);
        if (std::string(p->name).find("gate.weight") != std::string::npos)
            for (int64_t row = 0; row < p->shape[0]; row++)
                p->data[row * 3 + 2] = (float)std::sin(0.7 * (double)row);
    }
    Tensor x({2, 1, 8, 8, 8}), dy({2, 1, 8, 8, 8});
    rmtest::fill_uniform(x.data, 7);
    std::vector<float> r(dy.data.size());
    rmtest::fill_uniform(r, 8);
    dy.data = r;
    const int tasks[2] = {2, 2};
    rmtest::train_forward_dot(ctx, m, x, tasks, r);
    ASSERT_EQ(rm_model_backward(ctx, m, dy.p()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_model_find_param(m, "encoder_block1.conv_more.conv1.expert_conv5x5_conv")->grad, nullptr);
    EXPECT_EQ(rm_model_find_param(m, "encoder_block1.conv_down.1.weight")->grad, nullptr);
    EXPECT_EQ(rm_model_find_param(m, "conv_out.gate.bias")->grad, nullptr);

    const char *names[] = {"encoder_block1.conv_more.conv1.expert_added_conv",
                           "bottle_block.conv2.expert_added_conv",
                           "decoder_block1.conv_less.conv1.gate.weight",
                           "encoder_block2.conv_more.conv2.gate.weight",
                           "conv_out.expert_added_conv",
                           "conv_out.gate.weight"};
    for (const char *name : names) {
        rm_param *p = rm_model_find_param(m, name);
        ASSERT_NE(p, nullptr) << name;
        ASSERT_NE(p->grad, nullptr) << name;
        // A gate's new column is its third (every third element from 2); elsewhere about seven elements.
        const bool gate = std::string(name).find("gate") != std::string::npos;
        const int64_t step = std::max<int64_t>(1, p->numel / 7);
        rmtest::expect_gradient_matches(p, gate ? 2 : 0, gate ? 3 * std::max<int64_t>(1, step / 3) : step,
                                        [&] { return rmtest::train_forward_dot(ctx, m, x, tasks, r); });
    }
    // Training forwards leave BatchNorm as it was, and refuse another task's samples.
    EXPECT_EQ(*rm_model_find_param(m, "bottle_block.conv1.subsequent_layer.0.num_batches_tracked")->count,
              *rm_model_find_param(old, "bottle_block.conv1.subsequent_layer.0.num_batches_tracked")->count);
    const int mixed[2] = {2, 0};
    Tensor y({2, 1, 8, 8, 8});
    EXPECT_EQ(rm_model_forward_train(ctx, m, x.p(), mixed, 3, y.p()), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("trains only 'ink'"), std::string::npos) << rm_ctx_error(ctx);
    rm_model_free(m);
    rm_model_free(old);
}

// A model with an added expert is a model file like any other: it reads back with the same configuration, tensors
// and predictions.
TEST(AddTask, ModelWithAnAddedExpertRoundTripsThroughItsFile)
{
    rmtest::Ctx ctx(2);
    rm_model *old = old_model(ctx, RM_ACT_RELU, 0.0f), *m = nullptr, *back = nullptr;
    const rm_task ink = rm_task_make("ink", RM_TASK_BINARY);
    ASSERT_EQ(rm_model_add_task(ctx, old, &ink, 3, 9, &m), RM_OK) << rm_ctx_error(ctx);
    char path[] = "/tmp/repmode_add_task_XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    ASSERT_EQ(rm_model_save(ctx, m, path), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(rm_model_load(ctx, path, &back), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_model_config(back)->added_expert_kernel, 3);
    EXPECT_EQ(rm_model_config(back)->added_expert_task, 2);
    const rm_param *p = rm_model_find_param(back, "decoder_block1.conv_less.conv2.expert_added_conv");
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->shape[2], 3);
    EXPECT_EQ(rm_model_find_param(back, "decoder_block1.conv_less.conv2.gate.weight")->shape[0], 6 * 4);
    Tensor x({1, 1, 8, 8, 8});
    rmtest::fill_uniform(x.data, 4);
    for (int t = 0; t < 3; t++)
        EXPECT_TRUE(rmtest::bit_identical(deploy_predict(ctx, back, t, x), deploy_predict(ctx, m, t, x)))
            << "task " << t;
    std::remove(path);
    rm_model_free(back);
    rm_model_free(m);
    rm_model_free(old);
}

TEST(AddTask, BadRequestsAreRefusedWithAMessage)
{
    rmtest::Ctx ctx(2);
    rm_model *old = old_model(ctx, RM_ACT_RELU, 0.0f), *m = nullptr, *again = nullptr;
    const rm_task dna = rm_task_make("dna", RM_TASK_REGRESSION), ink = rm_task_make("ink", RM_TASK_BINARY);
    EXPECT_EQ(rm_model_add_task(ctx, old, &dna, 0, 1, &m), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("'dna' appears twice"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_model_add_task(ctx, old, &ink, 2, 1, &m), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("kernel = 2"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(m, nullptr);
    ASSERT_EQ(rm_model_add_task(ctx, old, &ink, 3, 1, &m), RM_OK);
    const rm_task cells = rm_task_make("cells", RM_TASK_BINARY);
    EXPECT_EQ(rm_model_add_task(ctx, m, &cells, 3, 1, &again), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("already has an added expert"), std::string::npos);
    // Without a new expert, a later task uses the one there is.
    ASSERT_EQ(rm_model_add_task(ctx, m, &cells, 0, 1, &again), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_model_config(again)->added_expert_task, 2);
    EXPECT_EQ(rm_model_train_only_task(ctx, again, 4), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_model_add_task(ctx, nullptr, &cells, 0, 1, &m), RM_ERR_ARGUMENT);
    // A network without gates cannot take a task.
    rm_task one = rm_task_make("dna", RM_TASK_REGRESSION);
    rm_config cfg = rm_config_lite(&one, 1);
    cfg.base_channels = 4;
    cfg.levels = 1;
    cfg.block = RM_BLOCK_INCEPTION;
    rm_model *inception = nullptr, *grown = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &inception), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_model_add_task(ctx, inception, &cells, 0, 1, &grown), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("without task gates"), std::string::npos) << rm_ctx_error(ctx);
    rm_model_free(inception);
    rm_model_free(again);
    rm_model_free(m);
    rm_model_free(old);
}

} // namespace
