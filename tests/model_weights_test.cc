// Weights that would make every prediction NaN or meaningless are refused when a model file is loaded, naming the
// file, the tensor, the count and the first position: non-finite values, values beyond 1e10, negative BatchNorm
// variances (docs/model-file.md §4). Each case is a good file with one value changed by hand.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "repmode/model.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

class ModelWeights : public ::testing::Test {
  protected:
    void SetUp() override
    {
        dir = fs::temp_directory_path() / ("repmode-weights-" + std::to_string(::getpid()));
        fs::create_directories(dir);
        rm_task tasks[1] = {rm_task_make("nuclei", RM_TASK_REGRESSION)};
        rm_config cfg = rm_config_lite(tasks, 1);
        cfg.base_channels = 2;
        cfg.levels = 1;
        cfg.patch[0] = cfg.patch[1] = cfg.patch[2] = 8;
        rm_model *m = nullptr;
        ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_model_save(ctx, m, path("training").c_str()), RM_OK) << rm_ctx_error(ctx);
        const int task = 0;
        ASSERT_EQ(rm_model_save_deploy(ctx, m, &task, 1, path("deploy").c_str()), RM_OK) << rm_ctx_error(ctx);
        rm_model_free(m);
    }
    void TearDown() override { fs::remove_all(dir); }
    std::string path(const char *name) const { return (dir / (std::string(name) + ".safetensors")).string(); }

    // The file `form` with values[i] written over element `at + i` of the first F32 tensor, large enough, whose name
    // ends with `suffix`; returns that tensor's name.
    std::string write_altered(const char *form, const char *suffix, int64_t at, const std::vector<float> &values)
    {
        rm_st_file *f = nullptr;
        EXPECT_EQ(rm_st_read(ctx, path(form).c_str(), &f), RM_OK) << rm_ctx_error(ctx);
        std::vector<rm_st_entry> entries;
        std::vector<float> altered;
        std::string name;
        for (size_t i = 0; i < rm_st_count(f); i++) {
            rm_st_entry e = *rm_st_at(f, i);
            const size_t n = std::strlen(e.name), k = std::strlen(suffix);
            if (name.empty() && e.dtype == RM_ST_F32 && n >= k && std::strcmp(e.name + n - k, suffix) == 0 &&
                rm_st_numel(&e) >= at + static_cast<int64_t>(values.size())) {
                const float *data = static_cast<const float *>(e.data);
                altered.assign(data, data + rm_st_numel(&e));
                std::copy(values.begin(), values.end(), altered.begin() + at);
                e.data = altered.data();
                name = e.name;
            }
            entries.push_back(e);
        }
        EXPECT_FALSE(name.empty()) << "no tensor ends with " << suffix;
        std::vector<const char *> keys, vals;
        for (size_t i = 0; i < rm_st_metadata_count(f); i++) {
            keys.push_back(rm_st_metadata_key(f, i));
            vals.push_back(rm_st_metadata(f, keys.back()));
        }
        EXPECT_EQ(rm_st_write(ctx, path("bad").c_str(), entries.data(), entries.size(), keys.data(), vals.data(),
                              keys.size()),
                  RM_OK)
            << rm_ctx_error(ctx);
        rm_st_free(f);
        return name;
    }

    // Every way of loading path("bad"), a file of `form`, fails with a message holding each of `words`.
    void expect_refused(const char *form, const std::vector<std::string> &words)
    {
        const std::string bad = path("bad");
        std::vector<std::string> messages;
        if (std::strcmp(form, "training") == 0) {
            rm_model *m = nullptr;
            EXPECT_EQ(rm_model_load(ctx, bad.c_str(), &m), RM_ERR_FORMAT);
            EXPECT_EQ(m, nullptr);
            messages.push_back(rm_ctx_error(ctx));
        }
        rm_deploy *d = nullptr;
        EXPECT_EQ(rm_deploy_load(ctx, bad.c_str(), "nuclei", &d), RM_ERR_FORMAT);
        EXPECT_EQ(d, nullptr);
        messages.push_back(rm_ctx_error(ctx));
        rm_model_info info{};
        EXPECT_EQ(rm_model_info_read(ctx, bad.c_str(), &info), RM_ERR_FORMAT);
        messages.push_back(rm_ctx_error(ctx));
        for (const std::string &msg : messages) {
            EXPECT_NE(msg.find(bad), std::string::npos) << msg;
            for (const std::string &w : words)
                EXPECT_NE(msg.find(w), std::string::npos) << "message: " << msg << "\n  lacks: " << w;
        }
    }

    rmtest::Ctx ctx{1};
    fs::path dir;
};

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

TEST_F(ModelWeights, TheUnalteredFilesLoad)
{
    rm_model *m = nullptr;
    ASSERT_EQ(rm_model_load(ctx, path("training").c_str(), &m), RM_OK) << rm_ctx_error(ctx);
    rm_model_free(m);
    rm_deploy *d = nullptr;
    ASSERT_EQ(rm_deploy_load(ctx, path("deploy").c_str(), "nuclei", &d), RM_OK) << rm_ctx_error(ctx);
    rm_deploy_free(d);
}

TEST_F(ModelWeights, NonFiniteValuesAreRefusedWithTheirCountAndFirstPosition)
{
    std::string name = write_altered("training", ".weight", 3, {kNaN, 0.5f, kInf});
    expect_refused("training", {"'" + name + "'", "2 impossible values", "flat index 3", "non-finite"});
    name = write_altered("training", ".bias", 0, {-kInf});
    expect_refused("training", {"'" + name + "'", "1 impossible value;", "flat index 0", "non-finite"});
    name = write_altered("deploy", ".weight", 1, {kNaN});
    expect_refused("deploy", {"'" + name + "'", "flat index 1", "non-finite"});
}

TEST_F(ModelWeights, ValuesBeyondTheLimitAreRefusedAndValuesWithinItLoad)
{
    std::string name = write_altered("training", ".weight", 2, {-3e10f});
    expect_refused("training", {"'" + name + "'", "flat index 2", "beyond 1e10"});
    write_altered("training", ".weight", 2, {-9e9f});
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_load(ctx, path("bad").c_str(), &m), RM_OK) << rm_ctx_error(ctx);
    rm_model_free(m);
    name = write_altered("deploy", ".bias", 0, {1e20f});
    expect_refused("deploy", {"'" + name + "'", "beyond 1e10"});
}

TEST_F(ModelWeights, ANegativeBatchNormVarianceIsRefusedButANegativeMeanIsNot)
{
    const std::string name = write_altered("training", "running_var", 1, {-0.25f});
    expect_refused("training", {"'" + name + "'", "flat index 1", "negative BatchNorm variance", "(-0.25)"});
    write_altered("training", "running_mean", 1, {-0.25f});
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_load(ctx, path("bad").c_str(), &m), RM_OK) << rm_ctx_error(ctx);
    rm_model_free(m);
}

} // namespace
