// Training on in-memory volumes: the loss falls, runs are reproducible on any thread count, a resumed run equals
// the uninterrupted one bit for bit, mixed regression/binary batches, small volumes, and bad input; and surface
// volumes with 2D labels (extensions.md §4): the loss of the depth mean and its gradient against an independent
// double-precision reference, the label's crop against the signal's, mixed 2D/3D batches.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
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
        for (size_t i = 0; i < n; i++)
            surface[i] = signal[i % plane] + 0.3f * signal[i];
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

    // surface: tasks {blur, ink (2D labels)} on Data::surface_volumes(); else {blur, sign} on Data::volumes().
    TrainingRun(rm_ctx *ctx, const Data &data, uint64_t init_seed = 3, int n_volumes = 2, bool surface = false)
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
        o.rotations = 1;
        o.intensity_jitter = 0.05f;
        o.noise = 0.01f;
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

class Resume : public ::testing::TestWithParam<bool> {}; // surface: a 2D-labelled volume in the batches

TEST_P(Resume, AResumedRunEqualsTheUninterruptedOneBitForBit)
{
    rmtest::Ctx ctx(2);
    Data data;
    const bool surface = GetParam();
    TrainingRun whole(ctx, data, 3, 2, surface);
    const std::vector<float> all = whole.steps(ctx, 6);

    char dir[] = "/tmp/repmode-trainer-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/checkpoint.safetensors";
    std::vector<float> halves, saved;
    {
        TrainingRun first(ctx, data, 3, 2, surface);
        halves = first.steps(ctx, 3);
        ASSERT_EQ(rm_trainer_save_checkpoint(ctx, first.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
        saved = first.weights();
    }
    TrainingRun second(ctx, data, /*init_seed=*/99, 2, surface); // other initial weights: the checkpoint replaces them
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

// The reference: the loss of the task's kind (core/ref, double) on the depth mean written out here, times dloss.
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
    const std::vector<float> l = run.steps(ctx, 60);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++) {
        first += l[(size_t)i];
        last += l[l.size() - 1 - (size_t)i];
    }
    for (float v : l)
        ASSERT_TRUE(std::isfinite(v));
    // The smoothed BCE and the Dice term keep a floor well above 0: a clear fall, not a collapse.
    EXPECT_LT(last, 0.8 * first) << "first ten " << first / 10 << ", last ten " << last / 10;
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
    o.rotations = 1;
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

} // namespace
