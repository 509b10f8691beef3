// Augmentation and weight averaging in training (docs/network.md §5.4): every intensity augmentation against a
// direct double-precision implementation of its formula, fed with the values the trainer reports it drew; the depth
// shift against the volume's layers; the draws' ranges; batches reproducible across runs and thread counts; the
// configuration file's "augment"; and the weight average against a sequence computed here in double precision, with
// checkpoints that resume it bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "test_util.h"

namespace
{

constexpr int64_t kP[3] = {8, 16, 16}; // the patch

// rm_augment_none() with the fields `set` sets.
template <class F> rm_augment with(F set)
{
    rm_augment a = rm_augment_none();
    set(a);
    return a;
}

// A trainer of a small two-task model (regression "a", regression "b" with 2D labels) on `volumes`; no flips or
// rotations unless `augment` asks for them, so a patch voxel is the volume's voxel at the same place.
struct Training {
    std::vector<rm_task> tasks;
    rm_model *model = nullptr;
    rm_trainer *trainer = nullptr;

    Training(rm_ctx *ctx, const rm_augment &augment, const std::vector<rm_train_volume> &volumes, uint64_t seed = 5,
             float ema = 0.0f, int batch = 4)
    {
        tasks = {rm_task_make("a", RM_TASK_REGRESSION), rm_task_make("b", RM_TASK_REGRESSION)};
        tasks[1].output_2d = 1;
        rm_config cfg = rm_config_lite(tasks.data(), 2);
        cfg.base_channels = 4;
        cfg.levels = 1;
        EXPECT_EQ(rm_model_create(ctx, &cfg, 3, &model), RM_OK);
        rm_train_options o = rm_train_options_official(kP);
        o.batch = batch;
        o.seed = seed;
        o.augment = augment;
        o.ema = ema;
        o.optim = rm_optim_adamw_default();
        EXPECT_EQ(rm_trainer_create(ctx, model, &o, volumes.data(), (int)volumes.size(), &trainer), RM_OK)
            << rm_ctx_error(ctx);
    }
    ~Training()
    {
        rm_trainer_free(trainer);
        rm_model_free(model);
    }
    Training(const Training &) = delete;
    Training &operator=(const Training &) = delete;
    void step(rm_ctx *ctx)
    {
        float loss = 0.0f;
        ASSERT_EQ(rm_trainer_step(ctx, trainer, &loss), RM_OK) << rm_ctx_error(ctx);
    }
};

// A 3D-labelled volume exactly the patch's size, and one 4 layers shallower and 5 rows narrower (its patch is
// padded: the augmentations must leave the padding at 0 and not let it in).
struct Volumes {
    int64_t full[3] = {kP[0], kP[1], kP[2]}, small[3] = {kP[0] - 4, kP[1] - 5, kP[2]};
    std::vector<float> a, b, label_a, label_b, label_2d;
    Volumes()
    {
        a.resize((size_t)(full[0] * full[1] * full[2]));
        b.resize((size_t)(small[0] * small[1] * small[2]));
        rmtest::fill_uniform(a, 21, -2.0f, 3.0f);
        rmtest::fill_uniform(b, 22, -1.0f, 1.0f);
        label_a.assign(a.size(), 0.5f);
        label_b.assign(b.size(), 0.5f);
        label_2d.assign((size_t)(full[1] * full[2]), 0.5f);
    }
    std::vector<rm_train_volume> three_d() const
    {
        return {{a.data(), label_a.data(), nullptr, {full[0], full[1], full[2]}, 0, 0},
                {b.data(), label_b.data(), nullptr, {small[0], small[1], small[2]}, 0, 0}};
    }
    std::vector<rm_train_volume> surface() const // `a` as a surface volume with a 2D label
    {
        return {{a.data(), label_2d.data(), nullptr, {full[0], full[1], full[2]}, 1, 1}};
    }
    // The volume sample b was cut from (its size tells which: the trainer reports no index).
    const std::vector<float> &of(const rm_train_batch &batch, int64_t sample, const int64_t **size) const
    {
        const float *x = batch.x + sample * kP[0] * kP[1] * kP[2];
        const bool padded = x[(kP[0] - 1) * kP[1] * kP[2]] == 0.0f && x[kP[0] * kP[1] * kP[2] - 1] == 0.0f;
        *size = padded ? small : full;
        return padded ? b : a;
    }
};

// The formulas of docs/network.md §5.4, in double precision, one sample at a time, written directly from the
// definitions (the blur as a 2D sum over the inside neighbours, not as separable passes).
std::vector<double> direct_augment(const std::vector<float> &v, const int64_t size[3], const rm_augment_draw &d)
{
    const int64_t n = kP[0] * kP[1] * kP[2];
    std::vector<double> x((size_t)n, 0.0);
    std::vector<char> in((size_t)n, 0);
    for (int64_t z = 0; z < kP[0]; z++)
        for (int64_t y = 0; y < kP[1]; y++)
            for (int64_t c = 0; c < kP[2]; c++) {
                const int64_t i = (z * kP[1] + y) * kP[2] + c;
                in[(size_t)i] = z < size[0] && y < size[1] && c < size[2];
                if (in[(size_t)i])
                    x[(size_t)i] = (double)v[(size_t)((z * size[1] + y) * size[2] + c)] * d.scale + d.shift;
            }
    if (d.blur > 0.0f) {
        const int64_t r = (int64_t)std::ceil(3.0 * d.blur);
        const std::vector<double> before = x;
        for (int64_t z = 0; z < kP[0]; z++)
            for (int64_t y = 0; y < kP[1]; y++)
                for (int64_t c = 0; c < kP[2]; c++) {
                    const int64_t i = (z * kP[1] + y) * kP[2] + c;
                    if (!in[(size_t)i])
                        continue;
                    double num = 0.0, den = 0.0;
                    for (int64_t dy = -r; dy <= r; dy++)
                        for (int64_t dx = -r; dx <= r; dx++) {
                            const int64_t yy = y + dy, xx = c + dx, j = (z * kP[1] + yy) * kP[2] + xx;
                            if (yy < 0 || yy >= kP[1] || xx < 0 || xx >= kP[2] || !in[(size_t)j])
                                continue;
                            const double w = std::exp(-(double)(dy * dy + dx * dx) / (2.0 * d.blur * d.blur));
                            num += w * before[(size_t)j];
                            den += w;
                        }
                    x[(size_t)i] = num / den;
                }
    }
    double lo = INFINITY, hi = -INFINITY, sum = 0.0, count = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (in[(size_t)i]) {
            lo = std::min(lo, x[(size_t)i]);
            hi = std::max(hi, x[(size_t)i]);
        }
    for (int64_t i = 0; i < n; i++)
        if (in[(size_t)i])
            x[(size_t)i] = lo + (hi - lo) * std::pow((x[(size_t)i] - lo) / (hi - lo), (double)d.gamma);
    for (int64_t i = 0; i < n; i++)
        if (in[(size_t)i]) {
            sum += x[(size_t)i];
            count += 1.0;
        }
    for (int64_t z = 0; z < kP[0]; z++)
        for (int64_t y = 0; y < kP[1]; y++)
            for (int64_t c = 0; c < kP[2]; c++) {
                const size_t i = (size_t)((z * kP[1] + y) * kP[2] + c);
                const double v = 2.0 * y / (kP[1] - 1) - 1.0, u = 2.0 * c / (kP[2] - 1) - 1.0;
                if (in[i])
                    x[i] = sum / count + d.contrast * (x[i] - sum / count) +
                           d.illumination * (std::cos(d.angle) * v + std::sin(d.angle) * u) + d.brightness;
            }
    return x;
}

struct Case {
    const char *name;
    rm_augment augment;
};

// Named, not dumped as bytes: gtest would read the struct's padding.
void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

class Intensity : public ::testing::TestWithParam<Case>
{
};

TEST_P(Intensity, EveryAugmentationIsItsFormulaWithTheDrawnValues)
{
    rmtest::Ctx ctx(2);
    const Volumes vols;
    Training run(ctx, GetParam().augment, vols.three_d(), 5, 0.0f, 6);
    int checked = 0;
    for (int s = 0; s < 3; s++) {
        run.step(ctx);
        const rm_train_batch batch = rm_trainer_last_batch(run.trainer);
        ASSERT_NE(batch.augment, nullptr);
        for (int64_t b = 0; b < 6; b++) {
            const rm_augment_draw &d = batch.augment[b];
            const int64_t *size = nullptr;
            const std::vector<float> &v = vols.of(batch, b, &size);
            const std::vector<double> want = direct_augment(v, size, d);
            const float *x = batch.x + b * kP[0] * kP[1] * kP[2];
            double worst = 0.0, scale = 1e-12;
            for (size_t i = 0; i < want.size(); i++) {
                worst = std::max(worst, std::fabs(x[i] - want[i]));
                scale = std::max(scale, std::fabs(want[i]));
            }
            EXPECT_LE(worst / scale, 2e-5)
                << GetParam().name << " step " << s << " sample " << b << ": blur " << d.blur << ", gamma " << d.gamma
                << ", contrast " << d.contrast << ", brightness " << d.brightness;
            checked++;
        }
    }
    EXPECT_EQ(checked, 18);
}

INSTANTIATE_TEST_SUITE_P(Augment, Intensity,
                         ::testing::Values(Case{"jitter", with([](rm_augment &a) { a.jitter = 0.3f; })},
                                           Case{"blur", with([](rm_augment &a) { a.blur = 2.0f; })},
                                           Case{"gamma", with([](rm_augment &a) { a.gamma = 0.8f; })},
                                           Case{"contrast", with([](rm_augment &a) { a.contrast = 0.5f; })},
                                           Case{"illumination", with([](rm_augment &a) { a.illumination = 1.5f; })},
                                           Case{"brightness", with([](rm_augment &a) { a.brightness = 0.7f; })},
                                           Case{"all", with([](rm_augment &a) {
                                                    a.jitter = 0.1f;
                                                    a.blur = 1.5f;
                                                    a.gamma = 0.5f;
                                                    a.contrast = 0.4f;
                                                    a.illumination = 0.8f;
                                                    a.brightness = 0.3f;
                                                })}),
                         [](const ::testing::TestParamInfo<Case> &info) { return std::string(info.param.name); });

// The noise is the one augmentation without a drawn parameter: its difference to the noiseless batch (same seed, so
// the same crops and draws) must be a standard normal times the given deviation, independent between voxels.
TEST(Augment, NoiseIsGaussianOfTheGivenDeviationOnTheInsideVoxelsOnly)
{
    rmtest::Ctx ctx(1);
    const Volumes vols;
    Training quiet(ctx, with([](rm_augment &a) { a.contrast = 0.2f; }), vols.three_d(), 9, 0.0f, 8),
        noisy(ctx, with([](rm_augment &a) {
                  a.contrast = 0.2f;
                  a.noise = 0.5f;
              }),
              vols.three_d(), 9, 0.0f, 8);
    quiet.step(ctx);
    noisy.step(ctx);
    const rm_train_batch a = rm_trainer_last_batch(quiet.trainer), b = rm_trainer_last_batch(noisy.trainer);
    double sum = 0.0, sq = 0.0, lag = 0.0, n = 0.0;
    for (int64_t i = 0; i < 8 * kP[0] * kP[1] * kP[2]; i++) {
        if (a.x[i] == 0.0f) { // padding: nothing added
            EXPECT_EQ(b.x[i], 0.0f);
            continue;
        }
        const double e = (b.x[i] - a.x[i]) / 0.5,
                     next = i + 1 < 8 * kP[0] * kP[1] * kP[2] ? (b.x[i + 1] - a.x[i + 1]) / 0.5 : 0.0;
        sum += e;
        sq += e * e;
        lag += e * next;
        n += 1.0;
    }
    EXPECT_NEAR(sum / n, 0.0, 4.0 / std::sqrt(n));
    EXPECT_NEAR(sq / n, 1.0, 0.03);
    EXPECT_NEAR(lag / n, 0.0, 0.03);
}

TEST(Augment, DepthShiftReadsASurfaceVolumeDeeperAndLeavesItsLabel)
{
    rmtest::Ctx ctx(1);
    const Volumes vols;
    Training run(ctx, with([](rm_augment &a) { a.depth_shift = 3; }), vols.surface(), 7, 0.0f, 6);
    std::vector<int> seen(7, 0);
    for (int s = 0; s < 8; s++) {
        run.step(ctx);
        const rm_train_batch batch = rm_trainer_last_batch(run.trainer);
        for (int64_t b = 0; b < 6; b++) {
            const int64_t shift = batch.augment[b].depth_shift;
            ASSERT_TRUE(shift >= -3 && shift <= 3) << shift;
            seen[(size_t)(shift + 3)]++;
            const float *x = batch.x + b * kP[0] * kP[1] * kP[2];
            for (int64_t z = 0; z < kP[0]; z++) {
                const int64_t from = std::clamp<int64_t>(z - shift, 0, kP[0] - 1);
                for (int64_t i = 0; i < kP[1] * kP[2]; i++)
                    ASSERT_EQ(x[z * kP[1] * kP[2] + i], vols.a[(size_t)(from * kP[1] * kP[2] + i)])
                        << "shift " << shift << " layer " << z;
            }
            for (int64_t i = 0; i < kP[1] * kP[2]; i++)
                ASSERT_EQ(batch.target[b * kP[0] * kP[1] * kP[2] + i], 0.5f);
        }
    }
    for (int k = 0; k < 7; k++)
        EXPECT_GT(seen[(size_t)k], 0) << "shift " << k - 3 << " never drawn in 48 samples";
    // A volume with 3D labels is never shifted: its label would have to move with it.
    Training three_d(ctx, with([](rm_augment &a) { a.depth_shift = 3; }), vols.three_d(), 7, 0.0f, 6);
    three_d.step(ctx);
    for (int64_t b = 0; b < 6; b++)
        EXPECT_EQ(rm_trainer_last_batch(three_d.trainer).augment[b].depth_shift, 0);
}

TEST(Augment, DrawsCoverTheirRangesAndNothingElse)
{
    rmtest::Ctx ctx(1);
    const Volumes vols;
    const rm_augment a = with([](rm_augment &a) {
        a.jitter = 0.2f;
        a.blur = 2.0f;
        a.gamma = 0.5f;
        a.contrast = 0.3f;
        a.brightness = 0.4f;
    });
    Training run(ctx, a, vols.three_d(), 11, 0.0f, 8);
    double lo[5] = {INFINITY, INFINITY, INFINITY, INFINITY, INFINITY},
           hi[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int s = 0; s < 25; s++) {
        run.step(ctx);
        const rm_train_batch batch = rm_trainer_last_batch(run.trainer);
        for (int64_t b = 0; b < 8; b++) {
            const rm_augment_draw &d = batch.augment[b];
            const double v[5] = {d.scale, d.blur, std::log(d.gamma) / std::log(1.5), d.contrast, d.brightness};
            for (int k = 0; k < 5; k++) {
                lo[k] = std::min(lo[k], v[k]);
                hi[k] = std::max(hi[k], v[k]);
            }
            EXPECT_EQ(d.flips[0] + d.flips[1] + d.flips[2] + d.turns, 0);
        }
    }
    // 200 uniform draws: the extremes lie within 5% of the range's ends (a miss has probability < 1e-4).
    const double want_lo[5] = {0.8, 0.0, -1.0, 0.7, -0.4}, want_hi[5] = {1.2, 2.0, 1.0, 1.3, 0.4};
    for (int k = 0; k < 5; k++) {
        const double tol = 0.05 * (want_hi[k] - want_lo[k]);
        EXPECT_GE(lo[k], want_lo[k] - 1e-6) << k;
        EXPECT_LE(hi[k], want_hi[k] + 1e-6) << k;
        EXPECT_LT(lo[k], want_lo[k] + tol) << k;
        EXPECT_GT(hi[k], want_hi[k] - tol) << k;
    }
}

TEST(Augment, BatchesAreTheSameOnEveryRunAndThreadCount)
{
    const Volumes vols;
    rm_augment a;
    rmtest::Ctx one(1), two(2);
    ASSERT_EQ(rm_augment_preset(one, "label-free", &a), RM_OK);
    a.jitter = 0.1f;
    std::vector<float> first;
    for (rm_ctx *ctx : {(rm_ctx *)one, (rm_ctx *)two, (rm_ctx *)one}) {
        Training run(ctx, a, vols.three_d(), 13);
        std::vector<float> xs;
        for (int s = 0; s < 3; s++) {
            run.step(ctx);
            const rm_train_batch batch = rm_trainer_last_batch(run.trainer);
            xs.insert(xs.end(), batch.x, batch.x + 4 * kP[0] * kP[1] * kP[2]);
        }
        if (first.empty())
            first = xs;
        else
            EXPECT_EQ(std::memcmp(xs.data(), first.data(), xs.size() * sizeof(float)), 0);
    }
    Training other(one, a, vols.three_d(), 14);
    other.step(one);
    EXPECT_NE(std::memcmp(rm_trainer_last_batch(other.trainer).x, first.data(), 4 * kP[0] * kP[1] * kP[2] * 4), 0);
}

TEST(Augment, RecipesAndRangesAreChecked)
{
    rmtest::Ctx ctx(1);
    rm_augment a;
    for (const char *name : {"none", "official", "label-free", "ink"}) {
        ASSERT_EQ(rm_augment_preset(ctx, name, &a), RM_OK) << name;
        EXPECT_EQ(rm_augment_validate(ctx, &a), RM_OK) << name;
    }
    EXPECT_EQ(rm_augment_preset(ctx, "strong", &a), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("label-free"), std::string::npos);
    const struct {
        rm_augment a;
        const char *field;
    } bad[] = {{with([](rm_augment &a) { a.jitter = 1.0f; }), "'jitter'"},
               {with([](rm_augment &a) { a.blur = -1.0f; }), "'blur'"},
               {with([](rm_augment &a) { a.blur = 17.0f; }), "'blur'"},
               {with([](rm_augment &a) { a.gamma = NAN; }), "'gamma'"},
               {with([](rm_augment &a) { a.contrast = 1.0f; }), "'contrast'"},
               {with([](rm_augment &a) { a.brightness = INFINITY; }), "'brightness'"},
               {with([](rm_augment &a) { a.noise = -0.1f; }), "'noise'"},
               {with([](rm_augment &a) { a.illumination = NAN; }), "'illumination'"},
               {with([](rm_augment &a) { a.depth_shift = -1; }), "'depth_shift'"},
               {with([](rm_augment &a) { a.flips = 2; }), "'flips'"}};
    for (const auto &b : bad) {
        EXPECT_EQ(rm_augment_validate(ctx, &b.a), RM_ERR_ARGUMENT) << b.field;
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find(b.field), std::string::npos) << rm_ctx_error(ctx);
    }
}

TEST(Augment, TheConfigurationFileGivesARecipeOrItsValues)
{
    rmtest::Ctx ctx(1);
    rm_train_config c;
    const std::string tasks = "\"tasks\": [{\"name\": \"t\"}]";
    ASSERT_EQ(rm_train_config_parse(ctx, ("{" + tasks + "}").c_str(), &c), RM_OK);
    EXPECT_EQ(c.augment.flips, 1); // absent: the official flips, as before the field existed
    EXPECT_EQ(c.augment.rotations + c.augment.gamma + c.augment.noise, 0.0f);
    rm_train_config_free(&c);
    rm_augment ink;
    ASSERT_EQ(rm_augment_preset(ctx, "ink", &ink), RM_OK);
    ASSERT_EQ(rm_train_config_parse(ctx, ("{" + tasks + ", \"augment\": \"ink\"}").c_str(), &c), RM_OK);
    EXPECT_EQ(std::memcmp(&c.augment, &ink, sizeof ink), 0);
    rm_train_config_free(&c);
    ASSERT_EQ(
        rm_train_config_parse(
            ctx, ("{" + tasks + ", \"augment\": {\"preset\": \"ink\", \"gamma\": 0.5, \"flips\": false}}").c_str(), &c),
        RM_OK)
        << rm_ctx_error(ctx);
    EXPECT_EQ(c.augment.gamma, 0.5f);
    EXPECT_EQ(c.augment.flips, 0);
    EXPECT_EQ(c.augment.depth_shift, ink.depth_shift);
    rm_train_config_free(&c);
    const char *bad[][2] = {{"\"strong\"", "not a recipe"},
                            {"{\"gama\": 0.5}", "augment.gama"},
                            {"{\"gamma\": \"0.5\"}", "augment.gamma"},
                            {"{\"flips\": 1}", "augment.flips"},
                            {"{\"depth_shift\": 1.5}", "augment.depth_shift"},
                            {"{\"noise\": -1}", "'noise'"},
                            {"{\"noise\": 0.1, \"noise\": 0.2}", "twice"},
                            {"[1]", "'augment'"}};
    for (const auto &b : bad) {
        EXPECT_NE(rm_train_config_parse(ctx, ("{" + tasks + ", \"augment\": " + b[0] + "}").c_str(), &c), RM_OK)
            << b[0];
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find(b[1]), std::string::npos) << rm_ctx_error(ctx);
    }
}

// ---- the weight average ----------------------------------------------------------------------------------------

std::vector<double> float_tensors(rm_model *m)
{
    std::vector<double> v;
    for (size_t i = 0; i < rm_model_n_params(m); i++) {
        const rm_param *p = rm_model_param(m, i);
        if (p->data)
            v.insert(v.end(), p->data, p->data + p->numel);
    }
    return v;
}

TEST(WeightAverage, FollowsTheHandComputedSequenceAndSwapsBackExactly)
{
    rmtest::Ctx ctx(2);
    const Volumes vols;
    const float decay = 0.9f;
    Training run(ctx, with([](rm_augment &a) { a.flips = 1; }), vols.three_d(), 5, decay);
    std::vector<double> average = float_tensors(run.model);
    for (int n = 1; n <= 15; n++) {
        run.step(ctx);
        const std::vector<double> theta = float_tensors(run.model);
        const double d = std::min((double)decay, (1.0 + n) / (10.0 + n)); // 2/11, 3/12, … up to 0.9 at n = 80
        for (size_t j = 0; j < theta.size(); j++)
            average[j] = average[j] + (1.0 - d) * (theta[j] - average[j]);
    }
    const std::vector<double> trained = float_tensors(run.model);
    EXPECT_EQ(rm_trainer_average_swapped(run.trainer), 0);
    ASSERT_EQ(rm_trainer_swap_average(ctx, run.trainer), RM_OK);
    EXPECT_EQ(rm_trainer_average_swapped(run.trainer), 1);
    const std::vector<double> got = float_tensors(run.model);
    double worst = 0.0, moved = 0.0;
    for (size_t j = 0; j < got.size(); j++) {
        worst = std::max(worst, std::fabs(got[j] - average[j]) / (1.0 + std::fabs(average[j])));
        moved = std::max(moved, std::fabs(got[j] - trained[j]));
    }
    EXPECT_LT(worst, 1e-6);
    EXPECT_GT(moved, 1e-4); // the average is not the last weights
    float loss;
    EXPECT_EQ(rm_trainer_step(ctx, run.trainer, &loss), RM_ERR_ARGUMENT); // the model holds the average
    EXPECT_EQ(rm_trainer_save_checkpoint(ctx, run.trainer, "unused.ckpt"), RM_ERR_ARGUMENT);
    ASSERT_EQ(rm_trainer_swap_average(ctx, run.trainer), RM_OK);
    EXPECT_EQ(float_tensors(run.model), trained);
}

TEST(WeightAverage, ACheckpointResumesTheAverageBitForBit)
{
    rmtest::Ctx ctx(1);
    const Volumes vols;
    const std::string path = ::testing::TempDir() + "average.ckpt";
    Training whole(ctx, with([](rm_augment &a) { a.flips = 1; }), vols.three_d(), 5, 0.95f);
    for (int s = 0; s < 6; s++) {
        whole.step(ctx);
        if (s == 2) {
            ASSERT_EQ(rm_trainer_save_checkpoint(ctx, whole.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
        }
    }
    Training resumed(ctx, with([](rm_augment &a) { a.flips = 1; }), vols.three_d(), 5, 0.95f);
    ASSERT_EQ(rm_trainer_load_checkpoint(ctx, resumed.trainer, path.c_str()), RM_OK) << rm_ctx_error(ctx);
    for (int s = 3; s < 6; s++)
        resumed.step(ctx);
    ASSERT_EQ(rm_trainer_swap_average(ctx, whole.trainer), RM_OK);
    ASSERT_EQ(rm_trainer_swap_average(ctx, resumed.trainer), RM_OK);
    EXPECT_EQ(float_tensors(resumed.model), float_tensors(whole.model));
    // A run without an average cannot resume one that kept it, and the other way round.
    Training plain(ctx, with([](rm_augment &a) { a.flips = 1; }), vols.three_d(), 5, 0.0f);
    EXPECT_EQ(rm_trainer_load_checkpoint(ctx, plain.trainer, path.c_str()), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("weight average"), std::string::npos);
    EXPECT_EQ(rm_trainer_swap_average(ctx, plain.trainer), RM_ERR_ARGUMENT);
    std::remove(path.c_str());
}

} // namespace
