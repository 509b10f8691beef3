// Training on in-memory volumes: the loss falls, runs are reproducible on any thread count, a resumed run equals
// the uninterrupted one bit for bit, mixed regression/binary batches, small volumes, and bad input; surface
// volumes with 2D labels (docs/network.md §7): the loss of the depth mean and its gradient against an independent
// double-precision reference, the label's crop against the signal's, mixed 2D/3D batches; bucketed sampling
// (docs/network.md §5.4) against buckets recomputed from the batches' labels; the best score kept in checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

// Two volumes with targets a network can learn: a blur of the signal (regression) and its sign (binary); and a
// surface volume, the first layer's pattern repeated over the layers with a little of the signal added, with a 2D
// label, the sign of its blur's mean over depth, inside a disc (its fragment mask).
struct Data {
    int64_t size[3] = {12, 16, 16};
    std::vector<float> signal, blurred, positive, surface, ink, fragment;
    Data()
    {
        const size_t n = (size_t)(size[0] * size[1] * size[2]), plane = (size_t)(size[1] * size[2]);
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
        surface.resize(n);
        // One fused multiply-add, written out: the value must not depend on whether the compiler contracts it.
        for (size_t i = 0; i < n; i++)
            surface[i] = std::fmaf(0.3f, signal[i], signal[i % plane]);
        std::vector<float> surface_blurred(n);
        rm_tensor sf = rm_tensor_5d(surface.data(), 1, 1, size[0], size[1], size[2]);
        rm_tensor sb = rm_tensor_5d(surface_blurred.data(), 1, 1, size[0], size[1], size[2]);
        EXPECT_EQ(rm_avgpool3d_forward(ctx, 3, &sf, &sb), RM_OK);
        ink.assign(plane, 0.0f);
        fragment.assign(plane, 0.0f);
        for (size_t i = 0; i < plane; i++) {
            double mean = 0.0;
            for (int64_t z = 0; z < size[0]; z++)
                mean += surface_blurred[(size_t)z * plane + i];
            ink[i] = mean > 0.0 ? 1.0f : 0.0f;
            const double y = (double)(i / (size_t)size[2]) - 7.5, x = (double)(i % (size_t)size[2]) - 7.5;
            fragment[i] = y * y + x * x < 49.0 ? 1.0f : 0.0f;
        }
    }
    std::vector<rm_train_volume> volumes() const
    {
        return {{signal.data(), blurred.data(), nullptr, {size[0], size[1], size[2]}, 0, 0},
                {signal.data(), positive.data(), nullptr, {size[0], size[1], size[2]}, 1, 0}};
    }
    // The 2D-labelled surface volume (task 1, "ink", output 2d) first, then the 3D regression volume (task 0).
    std::vector<rm_train_volume> surface_volumes() const
    {
        return {{surface.data(), ink.data(), fragment.data(), {size[0], size[1], size[2]}, 1, 1},
                {signal.data(), blurred.data(), nullptr, {size[0], size[1], size[2]}, 0, 0}};
    }
};

rm_task ink_task()
{
    rm_task t = rm_task_make("ink", RM_TASK_BINARY);
    t.output_2d = 1;
    return t;
}

struct TrainingRun {
    std::vector<rm_task> tasks;
    rm_model *model = nullptr;
    rm_trainer *trainer = nullptr;
    int64_t bucketed = 0; // samples whose crop came from a bucket, over the steps taken

    // surface: tasks {blur, ink (2D labels)} on Data::surface_volumes(); else {blur, sign} on Data::volumes().
    TrainingRun(rm_ctx *ctx, const Data &data, uint64_t init_seed = 3, int n_volumes = 2, bool surface = false,
                rm_sampling sampling = RM_SAMPLING_RANDOM)
    {
        tasks = {rm_task_make("blur", RM_TASK_REGRESSION),
                 surface ? ink_task() : rm_task_make("sign", RM_TASK_BINARY)};
        rm_config cfg = rm_config_lite(tasks.data(), 2);
        cfg.base_channels = 4;
        cfg.levels = 1;
        EXPECT_EQ(rm_model_create(ctx, &cfg, init_seed, &model), RM_OK);
        const int64_t patch[3] = {8, 8, 8};
        rm_train_options o = rm_train_options_official(patch);
        o.batch = 3;
        o.seed = 42;
        o.optim.lr = 3e-3f;
        o.augment.rotations = 1;
        o.augment.jitter = 0.05f;
        o.augment.noise = 0.01f;
        o.sampling = sampling;
        const std::vector<rm_train_volume> v = surface ? data.surface_volumes() : data.volumes();
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
            const rm_train_batch b = rm_trainer_last_batch(trainer);
            for (int k = 0; b.buckets && k < 3; k++)
                bucketed += b.buckets[k] >= 0;
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

// Every loss is finite, and the mean of the last ten is below `factor` times the mean of the first ten.
void ExpectLossFalls(const std::vector<float> &l, double factor)
{
    ASSERT_GE(l.size(), 20u);
    double first = 0, last = 0;
    for (size_t i = 0; i < 10; i++) {
        first += l[i];
        last += l[l.size() - 1 - i];
    }
    for (float v : l)
        ASSERT_TRUE(std::isfinite(v));
    EXPECT_LT(last, factor * first) << "first ten " << first / 10 << ", last ten " << last / 10;
}

TEST(Trainer, LossFallsOnALearnableProblem)
{
    rmtest::Ctx ctx(2);
    Data data;
    TrainingRun run(ctx, data, 3, /*volumes=*/1); // the regression volume alone: every step's loss is comparable
    ExpectLossFalls(run.steps(ctx, 60), 0.5);
    EXPECT_EQ(rm_trainer_steps_done(run.trainer), 60);
}

TEST(Trainer, SameSeedGivesBitIdenticalWeightsOnOneAndTwoThreads)
{
    Data data;
    rmtest::Ctx one(1), two(2);
    // Mixed batches: regression and binary 3D labels, then a 2D-labelled surface volume and a 3D regression one.
    for (bool surface : {false, true}) {
        SCOPED_TRACE(surface ? "2D and 3D labels" : "3D labels");
        TrainingRun a(one, data, 3, 2, surface), b(two, data, 3, 2, surface);
        const std::vector<float> la = a.steps(one, 4), lb = b.steps(two, 4);
        EXPECT_TRUE(rmtest::bit_identical(la, lb));
        EXPECT_TRUE(rmtest::bit_identical(a.weights(), b.weights()));
        for (float l : la)
            EXPECT_TRUE(std::isfinite(l));
    }
}

// Six steps in one run, and three, a checkpoint, and three more in a run of other initial weights: the same losses
// and weights bit for bit. surface: a 2D-labelled volume in the batches.
void expect_resume_bit_identical(bool surface, rm_sampling sampling)
{
    rmtest::Ctx ctx(2);
    Data data;
    TrainingRun whole(ctx, data, 3, 2, surface, sampling);
    const std::vector<float> all = whole.steps(ctx, 6);

    char dir[] = "/tmp/repmode-trainer-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/checkpoint.safetensors";
    std::vector<float> halves, saved;
    {
        TrainingRun first(ctx, data, 3, 2, surface, sampling);
        halves = first.steps(ctx, 3);
        ASSERT_EQ(rm_trainer_save_checkpoint(ctx, first.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
        saved = first.weights();
    }
    // Other initial weights: the checkpoint replaces them.
    TrainingRun second(ctx, data, /*init_seed=*/99, 2, surface, sampling);
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
    EXPECT_EQ(rm_model_config(loaded)->tasks[1].output_2d, surface ? 1 : 0);
    rm_model_free(loaded);
    std::system(("rm -rf '" + std::string(dir) + "'").c_str());
    EXPECT_EQ(whole.bucketed > 0, sampling == RM_SAMPLING_BUCKETS);
}

class Resume : public ::testing::TestWithParam<bool> {}; // surface: a 2D-labelled volume in the batches

TEST_P(Resume, AResumedRunEqualsTheUninterruptedOneBitForBit)
{
    expect_resume_bit_identical(GetParam(), RM_SAMPLING_RANDOM);
}

INSTANTIATE_TEST_SUITE_P(Trainer, Resume, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool> &i) { return i.param ? "Labels2D" : "Labels3D"; });

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
    const rm_train_volume v = {data.signal.data(), data.blurred.data(), nullptr, {5, 6, 7}, 0, 0};
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
    rm_train_volume v = {data.signal.data(), data.blurred.data(), nullptr, {12, 16, 16}, 0, 0};
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
    const int64_t smallest[3] = {4, 4, 4}; // 2^levels: one voxel at the bottleneck
    o = rm_train_options_official(smallest);
    o.batch = 1;
    expect(o, &v, 1, "leaves one value per channel at the bottleneck");
    o.batch = 2; // two values per channel: trains
    ASSERT_EQ(rm_trainer_create(ctx, m, &o, &v, 1, &t), RM_OK) << rm_ctx_error(ctx);
    rm_trainer_free(t);
    t = nullptr;
    o = rm_train_options_official(patch);
    expect(o, &v, 0, "no training volumes");
    v.task = 4;
    expect(o, &v, 1, "task 4");
    v.task = 0;
    v.target = nullptr;
    expect(o, &v, 1, "no target");
    v.target = data.blurred.data();
    v.target_2d = 1; // a 2D label for a task with 3D labels
    expect(o, &v, 1, "volume 0 has a 2D target but task 'blur' has 3D labels");
    v.target_2d = 2;
    expect(o, &v, 1, "target_2d 2");
    rm_model_free(m);

    std::vector<rm_task> ink{ink_task()};
    cfg = rm_config_lite(ink.data(), 1);
    cfg.base_channels = 2;
    cfg.levels = 2;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK);
    v.target_2d = 0; // a 3D label for a task with 2D labels
    expect(o, &v, 1, "volume 0 has a 3D target but task 'ink' has 2D labels");
    rm_model_free(m);
}

// ---- 2D labels of surface volumes ----

// The reference: the loss of the task's kind (core/ops/ref, double) on the depth mean written out here, times dloss.
double reference_2d_loss(rm_task_kind kind, double smoothing, const rmtest::DTensor &logits,
                         const rmtest::DTensor &target, const rmtest::DTensor &mask, double dloss)
{
    const int64_t d = logits.view.ne[2], h = logits.view.ne[3], w = logits.view.ne[4];
    rmtest::DTensor map(rmtest::Shape{1, 1, 1, h, w});
    for (int64_t i = 0; i < h * w; i++) {
        double sum = 0.0;
        for (int64_t z = 0; z < d; z++)
            sum += logits.data[(size_t)(z * h * w + i)];
        map.data[(size_t)i] = sum / (double)d;
    }
    rmtest::DTensor &tg = const_cast<rmtest::DTensor &>(target), &mk = const_cast<rmtest::DTensor &>(mask);
    return dloss * (kind == RM_TASK_BINARY ? rm_ref_binary_loss_forward(map.p(), tg.p(), mk.p(), smoothing, nullptr,
                                                                        nullptr)
                                           : rm_ref_masked_mse_forward(map.p(), tg.p(), mk.p()));
}

TEST(TrainerLoss, A2DLabelTakesTheLossOfTheDepthMeanAndSpreadsItsGradientOverDepth)
{
    rmtest::Ctx one(1), two(2);
    const float dloss = 0.8f, smoothing = 0.1f;
    for (rm_task_kind kind : {RM_TASK_BINARY, RM_TASK_REGRESSION}) {
        for (const rmtest::Shape &shape : {rmtest::Shape{1, 1, 5, 4, 3}, rmtest::Shape{1, 1, 2, 1, 6}}) {
            SCOPED_TRACE(std::string(kind == RM_TASK_BINARY ? "binary" : "regression") + " depth " +
                         std::to_string(shape[2]));
            const rmtest::Shape flat{1, 1, 1, shape[3], shape[4]};
            rmtest::Tensor logits(shape), target(flat), mask(flat), g1(shape), g2(shape);
            rmtest::fill_uniform(logits.data, 501, -2.0f, 2.0f);
            rmtest::fill_uniform(target.data, 502, 0.0f, 1.0f);
            rmtest::fill_uniform(mask.data, 503, 0.0f, 1.0f);
            mask.data[0] = 1.0f; // at least one pixel counts
            if (kind == RM_TASK_BINARY)
                for (float &t : target.data)
                    t = t > 0.5f ? 1.0f : 0.0f;
            float l1 = NAN, l2 = NAN;
            ASSERT_EQ(rm_train_sample_loss(one, kind, smoothing, logits.p(), target.p(), mask.p(), dloss, &l1, g1.p()),
                      RM_OK)
                << rm_ctx_error(one);
            ASSERT_EQ(rm_train_sample_loss(two, kind, smoothing, logits.p(), target.p(), mask.p(), dloss, &l2, g2.p()),
                      RM_OK)
                << rm_ctx_error(two);
            EXPECT_EQ(l1, l2);
            EXPECT_TRUE(rmtest::bit_identical(g1.data, g2.data));

            rmtest::DTensor ld(logits), td(target), md(mask);
            const double want = reference_2d_loss(kind, smoothing, ld, td, md, 1.0);
            EXPECT_LT(std::fabs(l1 - want), 1e-6 * std::max(1.0, std::fabs(want))) << l1 << " vs " << want;
            const std::vector<double> fd =
                rmtest::numeric_grad(ld.data, [&] { return reference_2d_loss(kind, smoothing, ld, td, md, dloss); });
            EXPECT_LT(rmtest::max_rel_error(g1.data, fd), 1e-5);
            // Every layer of a column gets the same share.
            const int64_t plane = shape[3] * shape[4];
            for (int64_t z = 1; z < shape[2]; z++)
                for (int64_t i = 0; i < plane; i++)
                    EXPECT_EQ(g1.data[(size_t)(z * plane + i)], g1.data[(size_t)i]);
            // The loss alone, without the gradient.
            float l3 = NAN;
            ASSERT_EQ(rm_train_sample_loss(one, kind, smoothing, logits.p(), target.p(), mask.p(), dloss, &l3, nullptr),
                      RM_OK);
            EXPECT_EQ(l3, l1);
        }
    }
}

TEST(TrainerLoss, A3DLabelIsThePlainLossAndBadShapesAreRefused)
{
    rmtest::Ctx ctx(2);
    const rmtest::Shape shape{1, 1, 4, 3, 5};
    rmtest::Tensor logits(shape), target(shape), g(shape), want_g(shape), bad(rmtest::Shape{1, 1, 2, 3, 5});
    rmtest::fill_uniform(logits.data, 511, -2.0f, 2.0f);
    rmtest::fill_uniform(target.data, 512, 0.0f, 1.0f);
    float l = NAN, want = NAN;
    ASSERT_EQ(rm_train_sample_loss(ctx, RM_TASK_BINARY, 0.1f, logits.p(), target.p(), nullptr, 0.5f, &l, g.p()), RM_OK)
        << rm_ctx_error(ctx);
    ASSERT_EQ(rm_binary_loss_forward(ctx, logits.p(), target.p(), nullptr, 0.1f, &want, nullptr, nullptr), RM_OK);
    ASSERT_EQ(rm_binary_loss_backward(ctx, logits.p(), target.p(), nullptr, 0.1f, 0.5f, want_g.p()), RM_OK);
    EXPECT_EQ(l, want);
    EXPECT_TRUE(rmtest::bit_identical(g.data, want_g.data));

    EXPECT_NE(rm_train_sample_loss(ctx, RM_TASK_BINARY, 0.1f, logits.p(), bad.p(), nullptr, 1.0f, &l, nullptr), RM_OK);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("target"), std::string::npos) << rm_ctx_error(ctx);
    rmtest::Tensor flat(rmtest::Shape{1, 1, 1, 3, 5}), flat_bad_mask(rmtest::Shape{1, 1, 1, 3, 4});
    EXPECT_NE(rm_train_sample_loss(ctx, RM_TASK_REGRESSION, 0.1f, logits.p(), flat.p(), flat_bad_mask.p(), 1.0f, &l,
                                   g.p()),
              RM_OK);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("mask"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_NE(rm_train_sample_loss(ctx, RM_TASK_REGRESSION, 0.1f, logits.p(), flat.p(), nullptr, 1.0f, &l, bad.p()),
              RM_OK);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("dlogits"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_NE(rm_train_sample_loss(ctx, RM_TASK_REGRESSION, 0.1f, logits.p(), flat.p(), nullptr, 1.0f, nullptr,
                                   nullptr),
              RM_OK);
}

TEST(Trainer, LossFallsOnA2DLabel)
{
    rmtest::Ctx ctx(2);
    Data data;
    TrainingRun run(ctx, data, 3, /*volumes=*/1, /*surface=*/true); // the 2D-labelled volume alone
    // The smoothed BCE and the Dice term keep a floor well above 0: a clear fall, not a collapse.
    ExpectLossFalls(run.steps(ctx, 60), 0.8);
}

// Every patch voxel of a surface volume whose signal codes its own position (volume, layer, row, column) shows
// where the crop, flips and rotation took it from; the 2D label and mask at that pixel must be the label's at the
// same row and column, whatever the layer, and the step's loss the mean of each sample's loss on the depth mean of
// the logits over the layers inside the volume (the padding layers of a shallow volume left out).
TEST(Trainer, A2DLabelFollowsTheSignalsCropFlipsAndRotationsAndSkipsPaddingLayers)
{
    rmtest::Ctx ctx(2);
    struct Surface {
        int64_t size[3];
        std::vector<float> signal, label, mask;
    };
    // Shallower than the patch (padding layers), deeper than it (a random depth window), narrower than it in Y.
    std::vector<Surface> vols{{{6, 12, 10}, {}, {}, {}}, {{11, 7, 12}, {}, {}, {}}};
    auto code = [](int64_t v, int64_t z, int64_t y, int64_t x) { return (float)(1 + v * 100000 + z * 1000 + y * 20 + x); };
    auto label = [](int64_t v, int64_t y, int64_t x) { return (float)(v * 1000 + y * 20 + x) + 0.25f; };
    auto fragment = [](int64_t v, int64_t y, int64_t x) { return (y + x + v) % 3 != 0 ? 1.0f : 0.0f; };
    std::vector<rm_train_volume> volumes;
    for (size_t k = 0; k < vols.size(); k++) {
        Surface &s = vols[k];
        const int64_t v = (int64_t)k;
        for (int64_t z = 0; z < s.size[0]; z++)
            for (int64_t y = 0; y < s.size[1]; y++)
                for (int64_t x = 0; x < s.size[2]; x++)
                    s.signal.push_back(code(v, z, y, x));
        for (int64_t y = 0; y < s.size[1]; y++)
            for (int64_t x = 0; x < s.size[2]; x++) {
                s.label.push_back(label(v, y, x));
                s.mask.push_back(fragment(v, y, x));
            }
        volumes.push_back({s.signal.data(), s.label.data(), s.mask.data(), {s.size[0], s.size[1], s.size[2]}, 0, 1});
    }
    rm_task task = rm_task_make("height", RM_TASK_REGRESSION); // regression: the label is taken as it is
    task.output_2d = 1;
    rm_config cfg = rm_config_lite(&task, 1);
    cfg.base_channels = 2;
    cfg.levels = 1;
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK);
    const int64_t P[3] = {8, 8, 8}, plane = P[1] * P[2], pvol = P[0] * plane;
    rm_train_options o = rm_train_options_official(P);
    o.batch = 8;
    o.augment.rotations = 1;
    o.optim.lr = 1e-6f; // the logits must stay finite against these large targets
    rm_trainer *t = nullptr;
    ASSERT_EQ(rm_trainer_create(ctx, m, &o, volumes.data(), 2, &t), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_trainer_last_batch(t).x, nullptr);
    int transposed = 0, straight = 0, padded = 0, windows = 0;
    for (int step = 0; step < 4; step++) {
        float loss = NAN;
        ASSERT_EQ(rm_trainer_step(ctx, t, &loss), RM_OK) << rm_ctx_error(ctx);
        const rm_train_batch batch = rm_trainer_last_batch(t);
        ASSERT_NE(batch.x, nullptr);
        double losses = 0.0;
        for (int64_t b = 0; b < o.batch; b++) {
            SCOPED_TRACE("step " + std::to_string(step) + " sample " + std::to_string(b));
            const float *x = batch.x + b * pvol, *tg = batch.target + b * pvol, *mk = batch.mask + b * pvol;
            int64_t first = -1, last = -1, vol = -1;
            for (int64_t y = 0; y < P[1]; y++)
                for (int64_t xx = 0; xx < P[2]; xx++) {
                    int64_t sy = -1, sx = -1, prev_z = -1, column_first = -1, column_last = -1;
                    for (int64_t z = 0; z < P[0]; z++) {
                        const float c = x[(z * P[1] + y) * P[2] + xx];
                        if (c == 0.0f)
                            continue;
                        const int64_t i = (int64_t)c - 1, v = i / 100000, vz = i % 100000 / 1000;
                        const int64_t vy = i % 1000 / 20, vx = i % 20;
                        ASSERT_TRUE(vol < 0 || vol == v);
                        vol = v;
                        // One pixel of the volume down the column, its layers in order (one way or the other).
                        ASSERT_TRUE(sy < 0 || (sy == vy && sx == vx)) << sy << "," << sx << " then " << vy << "," << vx;
                        sy = vy;
                        sx = vx;
                        ASSERT_TRUE(prev_z < 0 || std::llabs(vz - prev_z) == 1);
                        prev_z = vz;
                        column_last = z;
                        if (column_first < 0)
                            column_first = z;
                    }
                    const int64_t j = y * P[2] + xx;
                    if (sy < 0) { // outside the volume in plane
                        EXPECT_EQ(tg[j], 0.0f);
                        EXPECT_EQ(mk[j], 0.0f);
                        continue;
                    }
                    EXPECT_EQ(tg[j], label(vol, sy, sx));
                    EXPECT_EQ(mk[j], fragment(vol, sy, sx));
                    // Every column covers the same layers.
                    ASSERT_TRUE(first < 0 || (first == column_first && last == column_last));
                    first = column_first;
                    last = column_last;
                    if (xx + 1 < P[2] && sx >= 0) {
                        const float right = x[(first * P[1] + y) * P[2] + xx + 1];
                        if (right != 0.0f)
                            ((int64_t)right - 1) % 1000 / 20 == sy ? straight++ : transposed++;
                    }
                }
            ASSERT_GE(vol, 0);
            const int64_t depth = last - first + 1;
            EXPECT_EQ(depth, std::min<int64_t>(vols[(size_t)vol].size[0], P[0]));
            padded += depth < P[0];
            windows += vols[(size_t)vol].size[0] > P[0];
            rm_tensor logits = rm_tensor_5d(const_cast<float *>(batch.logits) + b * pvol + first * plane, 1, 1, depth,
                                            P[1], P[2]);
            rm_tensor target = rm_tensor_5d(const_cast<float *>(tg), 1, 1, 1, P[1], P[2]);
            rm_tensor mask = rm_tensor_5d(const_cast<float *>(mk), 1, 1, 1, P[1], P[2]);
            float l = NAN;
            ASSERT_EQ(rm_train_sample_loss(ctx, RM_TASK_REGRESSION, 0.0f, &logits, &target, &mask, 1.0f, &l, nullptr),
                      RM_OK);
            losses += l;
        }
        EXPECT_NEAR(loss, losses / o.batch, 1e-6 * losses / o.batch);
    }
    EXPECT_GT(transposed, 0);
    EXPECT_GT(straight, 0);
    EXPECT_GT(padded, 0);
    EXPECT_GT(windows, 0);
    rm_trainer_free(t);
    rm_model_free(m);
}

// ---- bucketed sampling (docs/network.md §5.4) ----

uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = static_cast<const unsigned char *>(p);
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * UINT64_C(0x100000001b3);
    return h;
}

// Random crops are the very draws they were before bucketed sampling existed: these hashes of four steps' inputs,
// labels, masks and tasks were recorded with the trainer of then. No jitter or noise, so the inputs are the signal
// exactly and the hashes do not depend on the floating-point contraction of the compiler.
TEST(Trainer, RandomCropsAreTheDrawsTheyWereBeforeBucketedSampling)
{
    rmtest::Ctx ctx(1);
    Data data;
    for (bool surface : {false, true}) {
        SCOPED_TRACE(surface ? "2D and 3D labels" : "3D labels");
        std::vector<rm_task> tasks{rm_task_make("blur", RM_TASK_REGRESSION),
                                   surface ? ink_task() : rm_task_make("sign", RM_TASK_BINARY)};
        rm_config cfg = rm_config_lite(tasks.data(), 2);
        cfg.base_channels = 2;
        cfg.levels = 1;
        rm_model *m = nullptr;
        ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK);
        const int64_t P[3] = {8, 8, 8}, pvol = P[0] * P[1] * P[2];
        rm_train_options o = rm_train_options_official(P);
        o.batch = 6;
        o.seed = 7;
        o.augment.rotations = 1;
        const std::vector<rm_train_volume> v = surface ? data.surface_volumes() : data.volumes();
        rm_trainer *t = nullptr;
        ASSERT_EQ(rm_trainer_create(ctx, m, &o, v.data(), 2, &t), RM_OK) << rm_ctx_error(ctx);
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        for (int step = 0; step < 4; step++) {
            float l = NAN;
            ASSERT_EQ(rm_trainer_step(ctx, t, &l), RM_OK) << rm_ctx_error(ctx);
            const rm_train_batch b = rm_trainer_last_batch(t);
            for (int64_t k = 0; k < o.batch; k++) {
                // A 2D label fills only the first plane of its block: the rest is not part of the batch.
                const size_t label = (size_t)(tasks[(size_t)b.tasks[k]].output_2d ? P[1] * P[2] : pvol) * sizeof(float);
                h = fnv1a(h, b.x + k * pvol, (size_t)pvol * sizeof(float));
                h = fnv1a(fnv1a(h, b.target + k * pvol, label), b.mask + k * pvol, label);
                h = fnv1a(h, &b.tasks[k], sizeof(int));
                EXPECT_EQ(b.buckets[k], -1);
            }
        }
        EXPECT_EQ(h, surface ? UINT64_C(0xa894ae2218724c8) : UINT64_C(0x10a22ab1908d7c65));
        rm_trainer_free(t);
        rm_model_free(m);
    }
}

// How the binary samples of some steps fall into the buckets, each sample's bucket recomputed from its label and
// mask in the batch (the padding beyond the volume is masked out there, so the batch holds exactly the crop's
// counted voxels), and checked against the bucket the trainer says it drew the crop from.
struct Tally {
    int64_t bucket[RM_N_BUCKETS] = {0, 0, 0};
    int64_t binary = 0;
    int64_t hidden_ink = 0; // "none" samples with label > 0.5 under the mask's zeros: the mask did matter
};

Tally tally_buckets(rm_ctx *ctx, rm_trainer *t, const std::vector<rm_task> &tasks, const rm_train_options &o,
                    int steps)
{
    Tally tally;
    const int64_t *P = o.patch, pvol = P[0] * P[1] * P[2];
    for (int step = 0; step < steps; step++) {
        float l = NAN;
        EXPECT_EQ(rm_trainer_step(ctx, t, &l), RM_OK) << rm_ctx_error(ctx);
        const rm_train_batch b = rm_trainer_last_batch(t);
        for (int64_t k = 0; k < o.batch; k++) {
            const rm_task &task = tasks[(size_t)b.tasks[k]];
            if (task.kind != RM_TASK_BINARY || o.sampling == RM_SAMPLING_RANDOM) {
                EXPECT_EQ(b.buckets[k], -1);
                if (task.kind != RM_TASK_BINARY)
                    continue;
            }
            const int64_t n = task.output_2d ? P[1] * P[2] : pvol;
            int64_t counted = 0, positive = 0, hidden = 0;
            for (int64_t i = 0; i < n; i++) {
                const bool in = b.mask[k * pvol + i] > 0.5f, ink = b.target[k * pvol + i] > 0.5f;
                counted += in;
                positive += in && ink;
                hidden += !in && ink;
            }
            const int want = positive == 0 ? RM_BUCKET_NONE
                             : (double)positive <= (double)o.bucket_low * (double)counted ? RM_BUCKET_LOW
                                                                                         : RM_BUCKET_HIGH;
            if (o.sampling == RM_SAMPLING_BUCKETS) {
                EXPECT_EQ(b.buckets[k], want) << positive << " positive of " << counted;
            }
            tally.bucket[want]++;
            tally.binary++;
            tally.hidden_ink += want == RM_BUCKET_NONE && hidden > 0;
        }
    }
    return tally;
}

// Trains a small model of `tasks` on `volumes` in steps of 16 samples with bucketed, then random, sampling: the
// buckets hold a third of the binary samples each (within 4.5 binomial standard deviations), random crops mostly
// "none", the ink being rare. Returns the two tallies.
std::vector<Tally> compare_samplings(rm_ctx *ctx, std::vector<rm_task> tasks,
                                     const std::vector<rm_train_volume> &volumes, uint64_t seed, int steps)
{
    rm_config cfg = rm_config_lite(tasks.data(), (int)tasks.size());
    cfg.base_channels = 2;
    cfg.levels = 1;
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK);
    const int64_t P[3] = {8, 8, 8};
    rm_train_options o = rm_train_options_official(P);
    o.batch = 16;
    o.seed = seed;
    o.augment.rotations = 1;
    std::vector<Tally> tallies;
    for (rm_sampling sampling : {RM_SAMPLING_BUCKETS, RM_SAMPLING_RANDOM}) {
        SCOPED_TRACE(sampling == RM_SAMPLING_BUCKETS ? "buckets" : "random");
        o.sampling = sampling;
        rm_trainer *t = nullptr;
        EXPECT_EQ(rm_trainer_create(ctx, m, &o, volumes.data(), (int)volumes.size(), &t), RM_OK) << rm_ctx_error(ctx);
        const Tally tally = tally_buckets(ctx, t, tasks, o, steps);
        const double n = (double)tally.binary, sd = std::sqrt(n * (1.0 / 3.0) * (2.0 / 3.0));
        for (int k = 0; sampling == RM_SAMPLING_BUCKETS && k < RM_N_BUCKETS; k++)
            EXPECT_NEAR((double)tally.bucket[k], n / 3.0, 4.5 * sd) << "bucket " << k << " of " << n << " samples";
        if (sampling == RM_SAMPLING_RANDOM) {
            EXPECT_GT(tally.bucket[RM_BUCKET_NONE], 0.75 * n);
        }
        tallies.push_back(tally);
        rm_trainer_free(t);
    }
    rm_model_free(m);
    return tallies;
}

// A binary 3D volume whose ink is a 5x5x5 cube (13% of the 8^3 crops touch it), trained beside a regression
// volume.
TEST(Trainer, BucketedSamplingDrawsEvenlyFromTheBucketsOfA3DLabel)
{
    rmtest::Ctx ctx(2);
    Data data;
    const int64_t size[3] = {16, 40, 40};
    std::vector<float> signal((size_t)(size[0] * size[1] * size[2])), ink(signal.size(), 0.0f);
    rmtest::fill_uniform(signal, 21);
    for (int64_t z = 5; z < 10; z++)
        for (int64_t y = 17; y < 22; y++)
            for (int64_t x = 17; x < 22; x++)
                ink[(size_t)((z * size[1] + y) * size[2] + x)] = 1.0f;
    const std::vector<rm_train_volume> volumes{
        {signal.data(), ink.data(), nullptr, {size[0], size[1], size[2]}, 1, 0},
        {data.signal.data(), data.blurred.data(), nullptr, {data.size[0], data.size[1], data.size[2]}, 0, 0}};
    const std::vector<Tally> t = compare_samplings(
        ctx, {rm_task_make("blur", RM_TASK_REGRESSION), rm_task_make("ink", RM_TASK_BINARY)}, volumes, 5, 25);
    EXPECT_GT(t[0].binary, 150);
}

// A surface volume with a 2D label and a fragment mask: ink under the mask's zeros (a strip and the rows above the
// fragment) must not count, and a crop's fraction is of its counted pixels only (the fragment's edge cuts crops).
TEST(Trainer, BucketedSamplingCountsOnlyMaskedInPixelsOf2DLabels)
{
    rmtest::Ctx ctx(2);
    const int64_t size[3] = {10, 40, 40}; // deeper than the patch: a random depth window too
    std::vector<float> signal((size_t)(size[0] * size[1] * size[2])), ink((size_t)(size[1] * size[2]), 0.0f),
        fragment(ink.size(), 0.0f);
    rmtest::fill_uniform(signal, 22);
    for (int64_t y = 0; y < size[1]; y++)
        for (int64_t x = 0; x < size[2]; x++) {
            const size_t i = (size_t)(y * size[2] + x);
            fragment[i] = y >= 10 && x >= 6 ? 1.0f : 0.0f;
            const bool blob = y >= 10 && y < 13 && x >= 18 && x < 21; // 3x3, on the fragment's edge
            ink[i] = x < 6 || (y < 10 && x % 4 == 0) || blob ? 1.0f : 0.0f;
        }
    const std::vector<rm_train_volume> volume{
        {signal.data(), ink.data(), fragment.data(), {size[0], size[1], size[2]}, 0, 1}};
    const std::vector<Tally> t = compare_samplings(ctx, {ink_task()}, volume, 6, 20);
    EXPECT_GT(t[0].hidden_ink, 0);
    EXPECT_GT(t[1].hidden_ink, 0);
}

TEST(Trainer, BucketedSamplingResumesBitForBit)
{
    for (bool surface : {false, true}) {
        SCOPED_TRACE(surface ? "2D labels" : "3D labels");
        expect_resume_bit_identical(surface, RM_SAMPLING_BUCKETS);
    }
}

TEST(Trainer, BadBucketedSamplingIsRefusedByName)
{
    rmtest::Ctx ctx(1);
    Data data;
    std::vector<rm_task> tasks{rm_task_make("blur", RM_TASK_REGRESSION), rm_task_make("sign", RM_TASK_BINARY)};
    rm_config cfg = rm_config_lite(tasks.data(), 2);
    cfg.base_channels = 2;
    cfg.levels = 1;
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK);
    const int64_t patch[3] = {8, 8, 8};
    const std::vector<rm_train_volume> v = data.volumes(); // regression first, then binary
    auto expect = [&](const rm_train_options &o, int n, const char *needle) {
        rm_trainer *t = nullptr;
        EXPECT_NE(rm_trainer_create(ctx, m, &o, v.data(), n, &t), RM_OK);
        EXPECT_EQ(t, nullptr);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find(needle), std::string::npos) << rm_ctx_error(ctx);
    };
    rm_train_options o = rm_train_options_official(patch);
    EXPECT_EQ(o.sampling, RM_SAMPLING_RANDOM);
    EXPECT_EQ(o.bucket_low, RM_BUCKET_LOW_DEFAULT);
    o.sampling = RM_SAMPLING_BUCKETS;
    expect(o, 1, "bucketed sampling needs a volume of a binary task");
    o.bucket_low = 0.0f;
    expect(o, 2, "low bucket's bound 0 is outside (0, 1)");
    o.bucket_low = 1.0f;
    expect(o, 2, "outside (0, 1)");
    o.sampling = static_cast<rm_sampling>(7);
    expect(o, 2, "unknown sampling 7");
    rm_model_free(m);
}

// ---- the best score in checkpoints ----

std::string file_text(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(Trainer, TheBestScoreGoesIntoTheCheckpointAndComesBack)
{
    rmtest::Ctx ctx(1);
    Data data;
    char dir[] = "/tmp/repmode-trainer-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/checkpoint.safetensors";
    TrainingRun saver(ctx, data), loader(ctx, data, /*init_seed=*/99);
    EXPECT_TRUE(std::isnan(rm_trainer_best_score(saver.trainer))); // none yet
    for (double score : {1.0 / 3.0, -2.5e-300, 7.0, 1.7976931348623157e308}) {
        SCOPED_TRACE(score);
        rm_trainer_set_best_score(saver.trainer, score);
        EXPECT_EQ(rm_trainer_best_score(saver.trainer), score);
        ASSERT_EQ(rm_trainer_save_checkpoint(ctx, saver.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_trainer_load_checkpoint(ctx, loader.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(rm_trainer_best_score(loader.trainer), score); // exactly
    }
    // A value that is not finite clears the score.
    for (double none : {(double)INFINITY, -(double)INFINITY, (double)NAN}) {
        rm_trainer_set_best_score(loader.trainer, 1.0);
        rm_trainer_set_best_score(loader.trainer, none);
        EXPECT_TRUE(std::isnan(rm_trainer_best_score(loader.trainer)));
    }
    // Without a score the checkpoint's metadata is what older checkpoints have; loading one clears a score.
    rm_trainer_set_best_score(saver.trainer, NAN);
    saver.steps(ctx, 1);
    ASSERT_EQ(rm_trainer_save_checkpoint(ctx, saver.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_NE(file_text(path).find(R"("repmode.checkpoint":"{\"step\":1,\"seed\":42}")"), std::string::npos);
    rm_trainer_set_best_score(loader.trainer, 2.0);
    ASSERT_EQ(rm_trainer_load_checkpoint(ctx, loader.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
    EXPECT_TRUE(std::isnan(rm_trainer_best_score(loader.trainer)));
    EXPECT_EQ(rm_trainer_steps_done(loader.trainer), 1);
    std::system(("rm -rf '" + std::string(dir) + "'").c_str());
}

} // namespace
