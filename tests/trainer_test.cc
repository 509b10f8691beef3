// Training on in-memory volumes: the loss falls, runs are reproducible on any thread count, a resumed run equals
// the uninterrupted one bit for bit, mixed regression/binary batches, small volumes, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

// Two volumes with targets a network can learn: a blur of the signal (regression) and its sign (binary).
struct Data {
    int64_t size[3] = {12, 16, 16};
    std::vector<float> signal, blurred, positive;
    Data()
    {
        const size_t n = (size_t)(size[0] * size[1] * size[2]);
        signal.resize(n);
        rmtest::fill_uniform(signal, 11);
        blurred.resize(n);
        positive.resize(n);
        rmtest::Ctx ctx(1);
        rm_tensor s = rm_tensor_5d(signal.data(), 1, 1, size[0], size[1], size[2]);
        rm_tensor b = rm_tensor_5d(blurred.data(), 1, 1, size[0], size[1], size[2]);
        EXPECT_EQ(rm_avgpool3d_forward(ctx, 3, &s, &b), RM_OK);
        for (size_t i = 0; i < n; i++)
            positive[i] = blurred[i] > 0.0f ? 1.0f : 0.0f;
    }
    std::vector<rm_train_volume> volumes() const
    {
        return {{signal.data(), blurred.data(), nullptr, {size[0], size[1], size[2]}, 0},
                {signal.data(), positive.data(), nullptr, {size[0], size[1], size[2]}, 1}};
    }
};

struct TrainingRun {
    std::vector<rm_task> tasks{rm_task_make("blur", RM_TASK_REGRESSION), rm_task_make("sign", RM_TASK_BINARY)};
    rm_model *model = nullptr;
    rm_trainer *trainer = nullptr;

    TrainingRun(rm_ctx *ctx, const Data &data, uint64_t init_seed = 3, int n_volumes = 2)
    {
        rm_config cfg = rm_config_lite(tasks.data(), 2);
        cfg.base_channels = 4;
        cfg.levels = 1;
        EXPECT_EQ(rm_model_create(ctx, &cfg, init_seed, &model), RM_OK);
        const int64_t patch[3] = {8, 8, 8};
        rm_train_options o = rm_train_options_official(patch);
        o.batch = 3;
        o.seed = 42;
        o.optim.lr = 3e-3f;
        o.rotations = 1;
        o.intensity_jitter = 0.05f;
        o.noise = 0.01f;
        const std::vector<rm_train_volume> v = data.volumes();
        EXPECT_EQ(rm_trainer_create(ctx, model, &o, v.data(), n_volumes, &trainer), RM_OK) << rm_ctx_error(ctx);
    }
    ~TrainingRun()
    {
        rm_trainer_free(trainer);
        rm_model_free(model);
    }
    std::vector<float> steps(rm_ctx *ctx, int n)
    {
        std::vector<float> losses;
        for (int i = 0; i < n; i++) {
            float l = NAN;
            EXPECT_EQ(rm_trainer_step(ctx, trainer, &l), RM_OK) << rm_ctx_error(ctx);
            losses.push_back(l);
        }
        return losses;
    }
    std::vector<float> weights()
    {
        std::vector<float> all;
        for (size_t i = 0; i < rm_model_n_params(model); i++) {
            const rm_param *p = rm_model_param(model, i);
            if (p->data)
                all.insert(all.end(), p->data, p->data + p->numel);
        }
        return all;
    }
};

TEST(Trainer, LossFallsOnALearnableProblem)
{
    rmtest::Ctx ctx(2);
    Data data;
    TrainingRun run(ctx, data, 3, /*volumes=*/1); // the regression volume alone: every step's loss is comparable
    const std::vector<float> l = run.steps(ctx, 60);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++) {
        first += l[(size_t)i];
        last += l[l.size() - 1 - (size_t)i];
    }
    for (float v : l)
        ASSERT_TRUE(std::isfinite(v));
    EXPECT_LT(last, 0.5 * first) << "first ten " << first / 10 << ", last ten " << last / 10;
    EXPECT_EQ(rm_trainer_steps_done(run.trainer), 60);
}

TEST(Trainer, SameSeedGivesBitIdenticalWeightsOnOneAndTwoThreads)
{
    Data data;
    rmtest::Ctx one(1), two(2);
    TrainingRun a(one, data), b(two, data);
    const std::vector<float> la = a.steps(one, 4), lb = b.steps(two, 4);
    EXPECT_TRUE(rmtest::bit_identical(la, lb));
    EXPECT_TRUE(rmtest::bit_identical(a.weights(), b.weights()));
}

TEST(Trainer, AResumedRunEqualsTheUninterruptedOneBitForBit)
{
    rmtest::Ctx ctx(2);
    Data data;
    TrainingRun whole(ctx, data);
    const std::vector<float> all = whole.steps(ctx, 6);

    char dir[] = "/tmp/repmode-trainer-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/checkpoint.safetensors";
    std::vector<float> halves, saved;
    {
        TrainingRun first(ctx, data);
        halves = first.steps(ctx, 3);
        ASSERT_EQ(rm_trainer_save_checkpoint(ctx, first.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
        saved = first.weights();
    }
    TrainingRun second(ctx, data, /*init_seed=*/99); // other initial weights: the checkpoint must replace them
    ASSERT_EQ(rm_trainer_load_checkpoint(ctx, second.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_trainer_steps_done(second.trainer), 3);
    const std::vector<float> rest = second.steps(ctx, 3);
    halves.insert(halves.end(), rest.begin(), rest.end());
    EXPECT_TRUE(rmtest::bit_identical(all, halves));
    EXPECT_TRUE(rmtest::bit_identical(whole.weights(), second.weights()));

    // The checkpoint is also a model file with the trained weights (its optimizer state set aside).
    rm_model *loaded = nullptr;
    ASSERT_EQ(rm_model_load(ctx, path.c_str(), &loaded), RM_OK) << rm_ctx_error(ctx);
    std::vector<float> at_three;
    for (size_t i = 0; i < rm_model_n_params(loaded); i++) {
        const rm_param *p = rm_model_param(loaded, i);
        if (p->data)
            at_three.insert(at_three.end(), p->data, p->data + p->numel);
    }
    EXPECT_TRUE(rmtest::bit_identical(at_three, saved));
    rm_model_free(loaded);
    std::system(("rm -rf '" + std::string(dir) + "'").c_str());
}

TEST(Trainer, VolumesSmallerThanThePatchArePaddedAndMaskedOut)
{
    rmtest::Ctx ctx(1);
    Data data;
    std::vector<rm_task> tasks{rm_task_make("blur", RM_TASK_REGRESSION)};
    rm_config cfg = rm_config_lite(tasks.data(), 1);
    cfg.base_channels = 2;
    cfg.levels = 1;
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK);
    const rm_train_volume v = {data.signal.data(), data.blurred.data(), nullptr, {5, 6, 7}, 0};
    const int64_t patch[3] = {8, 8, 8};
    rm_train_options o = rm_train_options_official(patch);
    o.batch = 2;
    rm_trainer *t = nullptr;
    ASSERT_EQ(rm_trainer_create(ctx, m, &o, &v, 1, &t), RM_OK) << rm_ctx_error(ctx);
    float loss = NAN;
    ASSERT_EQ(rm_trainer_step(ctx, t, &loss), RM_OK) << rm_ctx_error(ctx);
    EXPECT_TRUE(std::isfinite(loss));
    rm_trainer_free(t);
    rm_model_free(m);
}

TEST(Trainer, BadInputIsRefusedByName)
{
    rmtest::Ctx ctx(1);
    Data data;
    std::vector<rm_task> tasks{rm_task_make("blur", RM_TASK_REGRESSION)};
    rm_config cfg = rm_config_lite(tasks.data(), 1);
    cfg.base_channels = 2;
    cfg.levels = 2;
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK);
    const int64_t patch[3] = {8, 8, 8}, odd[3] = {8, 6, 8};
    rm_train_volume v = {data.signal.data(), data.blurred.data(), nullptr, {12, 16, 16}, 0};
    rm_trainer *t = nullptr;
    auto expect = [&](const rm_train_options &o, const rm_train_volume *vol, int n, const char *needle) {
        EXPECT_NE(rm_trainer_create(ctx, m, &o, vol, n, &t), RM_OK);
        EXPECT_EQ(t, nullptr);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find(needle), std::string::npos) << rm_ctx_error(ctx);
    };
    rm_train_options o = rm_train_options_official(odd);
    expect(o, &v, 1, "patch size 6");
    o = rm_train_options_official(patch);
    o.batch = 0;
    expect(o, &v, 1, "batch 0");
    o = rm_train_options_official(patch);
    expect(o, &v, 0, "no training volumes");
    v.task = 4;
    expect(o, &v, 1, "task 4");
    v.task = 0;
    v.target = nullptr;
    expect(o, &v, 1, "no target");
    rm_model_free(m);
}

} // namespace
