// Fault injection (core/base/fault.h): loading a model, predicting a volume, one training step and saving a model,
// each run once to count its allocations and file writes, then once more for every one of them failing. Each
// failure must come back as RM_ERR_NOMEM or RM_ERR_IO with a message, give back every allocation, and leave the
// folder as it was: no output, no temporary file. ASan's leak check, when the tree is built with it, checks the same from outside.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/fault.h"
#include "repmode/metrics.h"
#include "repmode/model.h"
#include "repmode/normalize.h"
#include "repmode/predict.h"
#include "repmode/synth.h"
#include "repmode/trainer.h"

namespace {

namespace fs = std::filesystem;

// A folder of its own under the build tree, emptied at the start.
struct Folder {
    fs::path dir;
    explicit Folder(const std::string &name) : dir(fs::path(REPMODE_FAULT_DIR) / name)
    {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    std::string operator/(const std::string &file) const { return (dir / file).string(); }
    std::set<std::string> files() const
    {
        std::set<std::string> names;
        for (const auto &e : fs::directory_iterator(dir))
            names.insert(e.path().filename().string());
        return names;
    }
};

// A tiny network: lite, 2 base channels, one level, two tasks.
const std::vector<rm_task> kTasks{rm_task_make("a", RM_TASK_REGRESSION), rm_task_make("b", RM_TASK_BINARY)};

rm_config tiny_config()
{
    rm_config cfg = rm_config_lite(const_cast<rm_task *>(kTasks.data()), 2);
    cfg.base_channels = 2;
    cfg.levels = 1;
    return cfg;
}

rm_model *tiny_model(rm_ctx *ctx)
{
    const rm_config cfg = tiny_config();
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_create(ctx, &cfg, 7, &m), RM_OK) << rm_ctx_error(ctx);
    return m;
}

// One operation under test: setup and teardown run without faults, op with call k failing. op may leave objects
// for teardown to free; teardown must free everything setup and op made.
struct Operation {
    std::function<void(rm_ctx *)> setup = [](rm_ctx *) {};
    std::function<rm_status(rm_ctx *)> op;
    std::function<void()> teardown = [] {};
    // For an operation that may shrug a failure off (a window cache that cannot grow only computes again): true
    // when what op gave under the fault is what it gives without one. Unset: every failure must be an error.
    std::function<bool()> same_result;
};

// What one run of an operation gave.
struct Outcome {
    rm_status status;
    std::string error;
};

// Runs `o` in a fresh one-thread context (its working memory grows on first use, so a kept one would change the
// count) with call k failing (0: none).
Outcome run(const Operation &o, int64_t k)
{
    rm_fault_fail_at(0);
    rm_ctx *ctx = rm_ctx_create(1);
    EXPECT_NE(ctx, nullptr);
    o.setup(ctx);
    rm_fault_fail_at(k);
    const rm_status s = o.op(ctx);
    Outcome out{s, rm_ctx_error(ctx)};
    rm_fault_fail_at(0);
    o.teardown();
    rm_ctx_free(ctx);
    return out;
}

// The calls op made, numbered while it ran once without a fault.
int64_t count_calls(const Operation &o)
{
    rm_fault_fail_at(0);
    rm_ctx *ctx = rm_ctx_create(1);
    o.setup(ctx);
    rm_fault_fail_at(0);
    const rm_status s = o.op(ctx);
    const int64_t n = rm_fault_calls();
    EXPECT_EQ(s, RM_OK) << rm_ctx_error(ctx);
    o.teardown();
    rm_ctx_free(ctx);
    return n;
}

// Every failure of o's calls: an error, a message, nothing leaked, the folder as it was. Then, without a fault, o
// succeeds again with as many calls as before (the counter restarted, and the failures changed nothing).
void every_failure(const Operation &o, const Folder &folder, const std::set<std::string> &after_success)
{
    const int64_t live = rm_fault_live();
    const std::set<std::string> before = folder.files();
    auto remove_outputs = [&] {
        EXPECT_EQ(folder.files(), after_success);
        for (const auto &f : after_success)
            if (!before.count(f))
                fs::remove(folder.dir / f);
    };
    const int64_t n = count_calls(o);
    ASSERT_GT(n, 0);
    EXPECT_EQ(rm_fault_live(), live) << "a successful run leaked";
    remove_outputs();
    std::map<std::string, int64_t> seen; // what the failures came back as
    for (int64_t k = 1; k <= n; k++) {
        const Outcome r = run(o, k);
        seen[rm_status_string(r.status)]++;
        EXPECT_EQ(rm_fault_live(), live) << "call " << k << " failing leaked";
        EXPECT_EQ(folder.files(), before) << "call " << k << " failing left a file";
        if (r.status == RM_OK && o.same_result)
            EXPECT_TRUE(o.same_result()) << "call " << k << " failing changed the result";
        else
            EXPECT_TRUE(r.status == RM_ERR_NOMEM || r.status == RM_ERR_IO)
                << "call " << k << " of " << n << ": " << rm_status_string(r.status) << ": " << r.error;
        EXPECT_TRUE(r.status == RM_OK || !r.error.empty()) << "call " << k << ": no message";
        if (::testing::Test::HasFailure())
            return; // the first failure says it; thousands more would bury it
    }
    std::printf("%lld allocations and file writes failed in turn:", (long long)n);
    for (const auto &[what, count] : seen)
        std::printf(" %lld %s,", (long long)count, what.c_str());
    std::printf("\n");
    EXPECT_EQ(count_calls(o), n);
    remove_outputs();
}

}  // namespace

namespace {

// Writes a training-form and a deploy-form model file into the folder, without faults.
void write_models(const Folder &folder)
{
    rm_fault_fail_at(0);
    rm_ctx *ctx = rm_ctx_create(1);
    rm_model *m = tiny_model(ctx);
    ASSERT_EQ(rm_model_save(ctx, m, (folder / "train.safetensors").c_str()), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(rm_model_save_deploy(ctx, m, nullptr, 0, (folder / "deploy.safetensors").c_str()), RM_OK)
        << rm_ctx_error(ctx);
    rm_model_free(m);
    rm_ctx_free(ctx);
}

TEST(Fault, LoadingAModelAndReadingItsInfo)
{
    const Folder folder("load");
    write_models(folder);
    const std::string train = folder / "train.safetensors";
    rm_model *m = nullptr;
    Operation o;
    o.op = [&](rm_ctx *ctx) { return rm_model_load(ctx, train.c_str(), &m); };
    o.teardown = [&] { rm_model_free(m), m = nullptr; };
    every_failure(o, folder, folder.files());

    rm_model_info info{};
    Operation i;
    i.op = [&](rm_ctx *ctx) { return rm_model_info_read(ctx, train.c_str(), &info); };
    i.teardown = [&] { rm_model_info_free(&info), info = rm_model_info{}; };
    every_failure(i, folder, folder.files());
}

TEST(Fault, LoadingADeployFormFromEitherForm)
{
    const Folder folder("load-deploy");
    write_models(folder);
    for (const char *file : {"deploy.safetensors", "train.safetensors"}) {
        SCOPED_TRACE(file);
        const std::string path = folder / file;
        rm_deploy *d = nullptr;
        Operation o;
        o.op = [&](rm_ctx *ctx) { return rm_deploy_load(ctx, path.c_str(), "b", &d); };
        o.teardown = [&] { rm_deploy_free(d), d = nullptr; };
        every_failure(o, folder, folder.files());
    }
}

// A volume of 10 × 12 × 12 voxels predicted with 8³ windows: whole, and in two pieces through a window cache.
struct Volume {
    int64_t size[3] = {10, 12, 12};
    std::vector<float> voxels = std::vector<float>(10 * 12 * 12);
    Volume()
    {
        for (size_t i = 0; i < voxels.size(); i++)
            voxels[i] = std::sin(0.37f * (float)i);
    }
};

int read_volume(void *user, const int64_t start[3], const int64_t size[3], float *buf)
{
    const auto *v = static_cast<const Volume *>(user);
    for (int64_t z = 0; z < size[0]; z++)
        for (int64_t y = 0; y < size[1]; y++)
            for (int64_t x = 0; x < size[2]; x++)
                *buf++ = v->voxels[(size_t)(((start[0] + z) * v->size[1] + start[1] + y) * v->size[2] + start[2] + x)];
    return 0;
}

TEST(Fault, PredictingAVolume)
{
    const Folder folder("predict");
    Volume v;
    const int64_t patch[3] = {8, 8, 8}, zero[3] = {0, 0, 0}, half[3] = {5, 0, 0}, piece[3] = {5, 12, 12};
    const rm_window_params p = rm_window_params_make(patch);
    std::vector<float> out(v.voxels.size()), expected;
    for (const bool cached : {false, true}) {
        SCOPED_TRACE(cached ? "two pieces, through a window cache" : "the whole volume");
        rm_model *m = nullptr;
        rm_deploy *d = nullptr;
        rm_window_cache *cache = nullptr;
        Operation o;
        o.setup = [&](rm_ctx *ctx) {
            m = tiny_model(ctx);
            ASSERT_EQ(rm_deploy_create(ctx, m, 1, &d), RM_OK) << rm_ctx_error(ctx);
            cache = cached ? rm_window_cache_create(1 << 20) : nullptr;
        };
        o.op = [&](rm_ctx *ctx) {
            if (!cached)
                return rm_predict_region(ctx, d, &p, v.size, read_volume, &v, zero, v.size, out.data(), nullptr,
                                         nullptr);
            const rm_status s = rm_predict_region_cached(ctx, d, &p, v.size, read_volume, &v, zero, piece, out.data(),
                                                         nullptr, nullptr, cache);
            if (s != RM_OK)
                return s;
            return rm_predict_region_cached(ctx, d, &p, v.size, read_volume, &v, half, piece,
                                            out.data() + out.size() / 2, nullptr, nullptr, cache);
        };
        o.teardown = [&] {
            rm_window_cache_free(cache), cache = nullptr;
            rm_deploy_free(d), d = nullptr;
            rm_model_free(m), m = nullptr;
        };
        ASSERT_EQ(run(o, 0).status, RM_OK);
        expected = out;
        o.same_result = [&] { return out == expected; };
        every_failure(o, folder, {});
    }
}

// Two volumes, one per task: a regression target and a binary one.
struct TrainingData {
    std::vector<float> signal = std::vector<float>(10 * 12 * 12), blur, sign;
    TrainingData()
    {
        for (size_t i = 0; i < signal.size(); i++) {
            signal[i] = std::sin(0.37f * (float)i);
            blur.push_back(0.5f * signal[i]);
            sign.push_back(signal[i] > 0.0f ? 1.0f : 0.0f);
        }
    }
    std::vector<rm_train_volume> volumes() const
    {
        return {{signal.data(), blur.data(), nullptr, {10, 12, 12}, 0, 0},
                {signal.data(), sign.data(), nullptr, {10, 12, 12}, 1, 0}};
    }
};

// A tiny model and its trainer on TrainingData: setup makes them (create() for an op that makes them itself),
// teardown frees them.
struct Training : Operation {
    const TrainingData data;
    const std::vector<rm_train_volume> volumes = data.volumes();
    rm_train_options opt;
    rm_model *m = nullptr;
    rm_trainer *t = nullptr;

    explicit Training(rm_sampling sampling = RM_SAMPLING_RANDOM)
    {
        const int64_t patch[3] = {8, 8, 8};
        opt = rm_train_options_official(patch);
        opt.batch = 2;
        opt.sampling = sampling;
        setup = [this](rm_ctx *ctx) { ASSERT_EQ(create(ctx), RM_OK) << rm_ctx_error(ctx); };
        teardown = [this] {
            rm_trainer_free(t), t = nullptr;
            rm_model_free(m), m = nullptr;
        };
    }
    Training(const Training &) = delete;
    rm_status create(rm_ctx *ctx)
    {
        const rm_config cfg = tiny_config();
        const rm_status s = rm_model_create(ctx, &cfg, 7, &m);
        return s == RM_OK ? rm_trainer_create(ctx, m, &opt, volumes.data(), (int)volumes.size(), &t) : s;
    }
};

TEST(Fault, OneTrainingStep)
{
    const Folder folder("train");
    for (const rm_sampling sampling : {RM_SAMPLING_RANDOM, RM_SAMPLING_BUCKETS}) {
        SCOPED_TRACE(sampling == RM_SAMPLING_RANDOM ? "random crops" : "bucketed crops");
        Training o(sampling);
        o.setup = [](rm_ctx *) {};
        o.op = [&](rm_ctx *ctx) {
            const rm_status s = o.create(ctx);
            float loss = NAN;
            return s == RM_OK ? rm_trainer_step(ctx, o.t, &loss) : s;
        };
        every_failure(o, folder, {});
    }
}

TEST(Fault, SavingAModelInEitherFormAndACheckpoint)
{
    const Folder folder("save");
    const std::string path = folder / "model.safetensors";
    Training o;
    const std::vector<std::pair<const char *, std::function<rm_status(rm_ctx *)>>> saves{
        {"training form", [&](rm_ctx *ctx) { return rm_model_save(ctx, o.m, path.c_str()); }},
        {"deploy form", [&](rm_ctx *ctx) { return rm_model_save_deploy(ctx, o.m, nullptr, 0, path.c_str()); }},
        {"checkpoint", [&](rm_ctx *ctx) { return rm_trainer_save_checkpoint(ctx, o.t, path.c_str()); }},
    };
    for (const auto &[what, save] : saves) {
        SCOPED_TRACE(what);
        o.op = save;
        every_failure(o, folder, {"model.safetensors"});
    }
}

TEST(Fault, LoadingACheckpoint)
{
    const Folder folder("checkpoint");
    const std::string path = folder / "checkpoint.safetensors";
    Training o;
    rm_ctx *ctx = rm_ctx_create(1);
    o.setup(ctx);
    float loss = NAN;
    ASSERT_EQ(rm_trainer_step(ctx, o.t, &loss), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(rm_trainer_save_checkpoint(ctx, o.t, path.c_str()), RM_OK) << rm_ctx_error(ctx);
    o.teardown();
    rm_ctx_free(ctx);
    o.op = [&](rm_ctx *c) { return rm_trainer_load_checkpoint(c, o.t, path.c_str()); };
    every_failure(o, folder, folder.files());
}

// What the command line does around the network: synthetic data, normalization, metrics, a configuration file.
TEST(Fault, SynthMetricsNormalizationAndConfiguration)
{
    const Folder folder("rest");
    rm_synth_cells_result *cells = nullptr;
    rm_synth_scroll_result *scroll = nullptr;
    const int64_t S = RM_SYNTH_MIN_SIZE;
    std::vector<float> prob(4 * 8 * 8), target(prob.size()), mask(prob.size());
    for (size_t i = 0; i < prob.size(); i++) {
        prob[i] = 0.5f + 0.5f * std::sin(0.37f * (float)i);
        target[i] = prob[i] > 0.3f ? 1.0f : 0.0f;
        mask[i] = i % 3 ? 1.0f : 0.0f;
    }
    const rm_tensor p = rm_tensor_5d(prob.data(), 1, 1, 4, 8, 8), t = rm_tensor_5d(target.data(), 1, 1, 4, 8, 8),
                    k = rm_tensor_5d(mask.data(), 1, 1, 4, 8, 8);
    const rm_normalization percentile = rm_normalization_percentile(1, 99);
    rm_train_config config{};
    const std::vector<std::pair<const char *, std::function<rm_status(rm_ctx *)>>> ops{
        {"synthetic cells", [&](rm_ctx *ctx) { return rm_synth_cells(ctx, 1, S, S, S, &cells); }},
        {"synthetic scroll", [&](rm_ctx *ctx) { return rm_synth_scroll(ctx, 1, S, S, S, &scroll); }},
        {"regression metrics",
         [&](rm_ctx *ctx) {
             rm_regression_metrics m;
             return rm_regression_metrics_compute(ctx, &p, &t, &k, &m);
         }},
        {"binary metrics",
         [&](rm_ctx *ctx) {
             rm_binary_metrics m;
             return rm_binary_metrics_compute(ctx, &p, &t, &k, 0.5f, &m);
         }},
        {"best threshold",
         [&](rm_ctx *ctx) {
             rm_best_threshold b;
             return rm_binary_best_threshold(ctx, &p, &t, &k, &b);
         }},
        {"percentile normalization",
         [&](rm_ctx *ctx) {
             rm_norm_params n;
             return rm_normalization_compute(ctx, &percentile, prob.data(), (int64_t)prob.size(), &n);
         }},
        {"configuration file",
         [&](rm_ctx *ctx) {
             return rm_train_config_parse(ctx,
                                          "{\"base_channels\": 2, \"levels\": 1, \"normalization\": \"percentile\", "
                                          "\"tasks\": [{\"name\": \"a\"}, {\"name\": \"b\", \"kind\": \"binary\", "
                                          "\"color\": [1, 0, 0], \"threshold\": 0.4}]}",
                                          &config);
         }},
    };
    Operation o;
    o.teardown = [&] {
        rm_synth_cells_free(cells), cells = nullptr;
        rm_synth_scroll_free(scroll), scroll = nullptr;
        rm_train_config_free(&config), config = rm_train_config{};
    };
    for (const auto &[what, op] : ops) {
        SCOPED_TRACE(what);
        o.op = op;
        every_failure(o, folder, {});
    }
}

}  // namespace
