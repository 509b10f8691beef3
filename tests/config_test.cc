// Configurations as text: the configuration file (rm_train_config_parse) read to known values, every bad field
// refused by name, a model file's metadata held to the same checks at load, and the writers read back unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" {
#include "io/safetensors.h"
}
#include "test_util.h"

namespace {

using rmtest::Ctx;

// rm_train_config_parse of `json`, freed at the end of the test.
struct Parsed {
    rm_train_config c{};
    rm_status status;
    Parsed(rm_ctx *ctx, const std::string &json) : status(rm_train_config_parse(ctx, json.c_str(), &c)) {}
    ~Parsed() { rm_train_config_free(&c); }
};

TEST(ConfigFile, AFullConfigurationIsReadToItsValues)
{
    Ctx ctx(1);
    const char *json = R"({
        "base_channels": 8, "levels": 3, "in_channels": 1, "out_channels": 1,
        "experts": ["conv5", "conv3", "conv1", "avg3", "avg5"], "norm": "batch", "activation": "mish",
        "dropout": 0.25, "decoder": "3d", "patch": [16, 32, 48],
        "normalization": {"method": "percentile", "low": 2, "high": 98},
        "tasks": [
            {"name": "nuclei", "kind": "regression"},
            {"name": "ink", "kind": "binary", "threshold": 0.75, "color": [1, 0.5, 0], "output": "2d"},
            {"name": "mito", "output": "3d"}
        ]
    })";
    Parsed p(ctx, json);
    ASSERT_EQ(p.status, RM_OK) << rm_ctx_error(ctx);
    const rm_config &cfg = p.c.cfg;
    EXPECT_EQ(cfg.base_channels, 8);
    EXPECT_EQ(cfg.levels, 3);
    EXPECT_EQ(cfg.in_channels, 1);
    EXPECT_EQ(cfg.out_channels, 1);
    EXPECT_EQ(cfg.activation, RM_ACT_MISH);
    EXPECT_EQ(cfg.dropout, 0.25f);
    EXPECT_EQ(cfg.patch[0], 16);
    EXPECT_EQ(cfg.patch[1], 32);
    EXPECT_EQ(cfg.patch[2], 48);
    EXPECT_EQ(p.c.normalization.method, RM_NORM_PERCENTILE);
    EXPECT_EQ(p.c.normalization.low, 2.0);
    EXPECT_EQ(p.c.normalization.high, 98.0);
    ASSERT_EQ(cfg.n_tasks, 3);
    ASSERT_EQ(cfg.tasks, p.c.tasks);
    EXPECT_STREQ(cfg.tasks[0].name, "nuclei");
    EXPECT_EQ(cfg.tasks[0].kind, RM_TASK_REGRESSION);
    EXPECT_TRUE(std::isnan(cfg.tasks[0].threshold));
    EXPECT_EQ(cfg.tasks[0].has_color, 0);
    EXPECT_EQ(cfg.tasks[0].output_2d, 0);
    EXPECT_STREQ(cfg.tasks[1].name, "ink");
    EXPECT_EQ(cfg.tasks[1].kind, RM_TASK_BINARY);
    EXPECT_EQ(cfg.tasks[1].threshold, 0.75f);
    EXPECT_EQ(cfg.tasks[1].has_color, 1);
    EXPECT_EQ(cfg.tasks[1].color[0], 1.0f);
    EXPECT_EQ(cfg.tasks[1].color[1], 0.5f);
    EXPECT_EQ(cfg.tasks[1].color[2], 0.0f);
    EXPECT_EQ(cfg.tasks[1].output_2d, 1);
    EXPECT_STREQ(cfg.tasks[2].name, "mito");
    EXPECT_EQ(cfg.tasks[2].kind, RM_TASK_REGRESSION); // "kind" absent: regression
    EXPECT_EQ(cfg.tasks[2].output_2d, 0);
}

TEST(ConfigFile, AbsentFieldsTakeTheLiteDefaults)
{
    Ctx ctx(1);
    Parsed p(ctx, R"({"tasks": [{"name": "a", "kind": "binary"}]})");
    ASSERT_EQ(p.status, RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(p.c.cfg.base_channels, 16);
    EXPECT_EQ(p.c.cfg.levels, 4);
    EXPECT_EQ(p.c.cfg.in_channels, 1);
    EXPECT_EQ(p.c.cfg.out_channels, 1);
    EXPECT_EQ(p.c.cfg.activation, RM_ACT_RELU);
    EXPECT_EQ(p.c.cfg.dropout, 0.0f);
    EXPECT_EQ(p.c.cfg.patch[0], 64);
    EXPECT_EQ(p.c.cfg.patch[1], 64);
    EXPECT_EQ(p.c.cfg.patch[2], 64);
    EXPECT_EQ(p.c.normalization.method, RM_NORM_ZSCORE);
    ASSERT_EQ(p.c.cfg.n_tasks, 1);
    EXPECT_EQ(p.c.cfg.tasks[0].kind, RM_TASK_BINARY);
}

TEST(ConfigFile, TheNormalizationShorthandsTakeTheMethodsDefaults)
{
    Ctx ctx(1);
    Parsed p(ctx, R"({"normalization": "percentile", "tasks": [{"name": "a"}]})");
    ASSERT_EQ(p.status, RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(p.c.normalization.method, RM_NORM_PERCENTILE);
    EXPECT_EQ(p.c.normalization.low, 1.0);
    EXPECT_EQ(p.c.normalization.high, 99.0);
    Parsed z(ctx, R"({"normalization": "zscore", "tasks": [{"name": "a"}]})");
    ASSERT_EQ(z.status, RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(z.c.normalization.method, RM_NORM_ZSCORE);
}

// Each case: the configuration's fields (without braces) and the words its message must hold.
struct BadCase {
    std::string fields;
    std::vector<const char *> words;
};

TEST(ConfigFile, EachBadFieldIsRefusedWithItsName)
{
    const std::string task = R"("tasks": [{"name": "ink", "kind": "binary"}])";
    const std::vector<BadCase> cases = {
        // wrong types
        {R"("base_channels": "8")", {"'base_channels'", "whole number"}},
        {R"("levels": 2.5)", {"'levels'", "whole number"}},
        {R"("levels": 1e12)", {"'levels'", "whole number"}},
        {R"("in_channels": null)", {"'in_channels'"}},
        {R"("activation": "swish")", {"'activation'", "\"relu\", \"frelu\" or \"mish\""}},
        {R"("dropout": "0.1")", {"'dropout'", "number"}},
        {R"("patch": [16, 32])", {"'patch'", "three"}},
        {R"("patch": [16, 32, 32.5])", {"'patch'", "whole"}},
        {R"("experts": ["conv3", "conv5", "conv1", "avg3", "avg5"])", {"'experts'"}},
        {R"("norm": "instance")", {"'norm'", "\"batch\""}},
        {R"("decoder": "4d")", {"'decoder'", "\"3d\"", "\"2d\""}},
        {R"("added_expert": {"kernel": 3})", {"'added_expert'", "first_task"}},
        // out of range
        {R"("levels": 0)", {"levels = 0", "1..8"}},
        {R"("levels": 9)", {"levels = 9", "1..8"}},
        {R"("base_channels": 0)", {"base_channels = 0", "1..4096"}},
        {R"("base_channels": 5000)", {"base_channels = 5000", "1..4096"}},
        {R"("base_channels": 4096, "levels": 8)", {"base_channels = 4096", "levels = 8", "bottleneck"}},
        {R"("decoder": "2d")", {"task 'ink' needs 2D labels"}},
        {R"("block": "inception", "base_channels": 6)", {"base_channels = 6", "multiple of 4"}},
        {R"("block": "resnet")", {"'block'", "\"inception\""}},
        {R"("added_expert": {"kernel": 2, "first_task": 0})", {"added_expert kernel = 2", "1, 3 or 5"}},
        {R"("added_expert": {"kernel": 3, "first_task": 1})", {"first_task = 1", "0..0"}},
        {R"("dropout": 1)", {"dropout = 1", "[0, 1)"}},
        {R"("dropout": -0.1)", {"dropout = -0.1", "[0, 1)"}},
        {R"("levels": 2, "patch": [16, 30, 32])", {"patch", "30", "2^levels = 4"}},
        // unknown and repeated fields, bad JSON
        {R"("colour": [1, 0, 0])", {"unknown field 'colour'"}},
        {R"("levels": 2, "levels": 3)", {"'levels' is given twice"}},
        // normalization
        {R"("normalization": "minmax")", {"'normalization' must be"}},
        {R"("normalization": {"method": "percentile", "low": 99, "high": 1})", {"'normalization'", "'low'"}},
        {R"("normalization": {"method": "percentile", "lo": 1})", {"'normalization'", "unknown field 'lo'"}},
    };
    const std::vector<BadCase> task_cases = {
        {R"("tasks": [{"name": "ink", "threshold": 1.5}])", {"'ink'", "threshold = 1.5", "[0, 1]"}},
        {R"("tasks": [{"name": "ink", "threshold": -0.25}])", {"'ink'", "threshold = -0.25", "[0, 1]"}},
        {R"("tasks": [{"name": "ink", "threshold": "0.5"}])", {"tasks[0] ('ink')", "'threshold' must be a number"}},
        {R"("tasks": [{"name": "ink", "color": [1, 2, 0]}])", {"'ink'", "'color' must be [r, g, b], each in [0, 1]"}},
        {R"("tasks": [{"name": "ink", "color": [0.5, -0.5, 0]}])", {"'ink'", "'color' must be"}},
        {R"("tasks": [{"name": "ink", "color": [0.5, 0.5]}])", {"tasks[0] ('ink')", "'color' must be [r, g, b]"}},
        {R"("tasks": [{"name": "ink", "color": "red"}])", {"tasks[0] ('ink')", "'color' must be [r, g, b]"}},
        {R"("tasks": [{"name": "ink", "color": [0, null, 1]}])", {"tasks[0] ('ink')", "'color' must be [r, g, b]"}},
        {R"("tasks": [{"name": "ink", "kind": "probability"}])", {"tasks[0] ('ink')", "'kind' must be"}},
        {R"("tasks": [{"name": "ink", "output": "2.5d"}])", {"tasks[0] ('ink')", "'output' must be"}},
        {R"("tasks": [{"name": "ink", "colour": [1, 0, 0]}])", {"tasks[0] ('ink')", "unknown field 'colour'"}},
        {R"("tasks": [{"name": "ink", "kind": "binary", "kind": "regression"}])",
         {"tasks[0]", "'kind' is given twice"}},
        {R"("tasks": [{"kind": "binary"}])", {"tasks[0]", "'name' must be a string"}},
        {R"("tasks": [{"name": 7}])", {"tasks[0]", "'name' must be a string"}},
        {R"("tasks": [{"name": "ink"}, {"name": ")" + std::string(64, 'x') + R"("}])",
         {"tasks[1]", "'name'", "shorter than 64"}},
        {R"("tasks": [{"name": "ink,dna"}])", {"task name 'ink,dna'", "letters, digits"}},
        {R"("tasks": [{"name": ""}])", {"task 0", "empty"}},
        {R"("tasks": [{"name": "ink"}, {"name": "dna"}, {"name": "ink", "kind": "binary"}])",
         {"'ink' appears twice in 'tasks'"}},
        {R"("block": "plain", "decoder": "2d", "tasks": [{"name": "ink", "output": "2d"}])",
         {"block \"plain\"", "one task, the 3D decoder"}},
        {R"("block": "inception", "tasks": [{"name": "a"}, {"name": "b"}])", {"single-task", "one task"}},
        {R"("tasks": [])", {"'tasks' must list at least one task"}},
        {R"("levels": 2)", {"'tasks' must list at least one task"}},
        {R"("tasks": {"name": "ink"})", {"tasks must be a list"}},
        {R"("tasks": ["ink"])", {"tasks[0] must be an object"}},
    };
    Ctx ctx(1);
    auto expect_refused = [&](const std::string &json, const std::vector<const char *> &words) {
        rm_train_config c;
        std::memset(&c, 0x5a, sizeof c); // whatever the caller had: the parser must not leave it owning anything
        EXPECT_NE(rm_train_config_parse(ctx, json.c_str(), &c), RM_OK) << json;
        EXPECT_EQ(c.tasks, nullptr) << json;
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind("config: ", 0), 0u) << msg;
        for (const char *w : words)
            EXPECT_NE(msg.find(w), std::string::npos) << json << "\n  message: " << msg << "\n  lacks: " << w;
    };
    for (const BadCase &b : cases)
        expect_refused("{" + b.fields + ", " + task + "}", b.words);
    for (const BadCase &b : task_cases)
        expect_refused("{" + b.fields + "}", b.words);
    expect_refused("{\"levels\": 2,\n " + task, {"not valid JSON", "line 2"});
    expect_refused("[" + task + "]", {"not valid JSON"});
    expect_refused("[{" + task + "}]", {"not a JSON object"});
    expect_refused("{" + task + "} trailing", {"not valid JSON"});
}

// A model file whose metadata says `key` = `value`, the rest of `model`'s file unchanged.
void write_with_metadata(rm_ctx *ctx, const std::string &model, const std::string &path, const char *key,
                         const char *value)
{
    rm_st_file *f = nullptr;
    ASSERT_EQ(rm_st_read(ctx, model.c_str(), &f), RM_OK) << rm_ctx_error(ctx);
    std::vector<rm_st_entry> entries;
    for (size_t i = 0; i < rm_st_count(f); i++)
        entries.push_back(*rm_st_at(f, i));
    std::vector<const char *> keys, values;
    for (size_t i = 0; i < rm_st_metadata_count(f); i++) {
        keys.push_back(rm_st_metadata_key(f, i));
        values.push_back(std::strcmp(keys.back(), key) == 0 ? value : rm_st_metadata(f, keys.back()));
    }
    ASSERT_EQ(rm_st_write(ctx, path.c_str(), entries.data(), entries.size(), keys.data(), values.data(), keys.size()),
              RM_OK)
        << rm_ctx_error(ctx);
    rm_st_free(f);
}

class ModelFileMetadata : public ::testing::Test {
  protected:
    void SetUp() override
    {
        dir = std::filesystem::temp_directory_path() / ("repmode-config-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
        rm_task tasks[2] = {rm_task_make("nuclei", RM_TASK_REGRESSION), rm_task_make("ink", RM_TASK_BINARY)};
        rm_config cfg = rm_config_lite(tasks, 2);
        cfg.base_channels = 2;
        cfg.levels = 1;
        cfg.patch[0] = cfg.patch[1] = cfg.patch[2] = 8;
        rm_model *m = nullptr;
        ASSERT_EQ(rm_model_create(ctx, &cfg, 1, &m), RM_OK) << rm_ctx_error(ctx);
        ASSERT_EQ(rm_model_save(ctx, m, good().c_str()), RM_OK) << rm_ctx_error(ctx);
        rm_model_free(m);
    }
    void TearDown() override { std::filesystem::remove_all(dir); }
    std::string good() const { return (dir / "good.safetensors").string(); }
    std::string bad() const { return (dir / "bad.safetensors").string(); }

    // Loading `bad()` fails, with every word in the message; the file's info is refused alike.
    void expect_refused(const std::vector<const char *> &words)
    {
        rm_model *m = nullptr;
        EXPECT_EQ(rm_model_load(ctx, bad().c_str(), &m), RM_ERR_FORMAT);
        EXPECT_EQ(m, nullptr);
        const std::string msg = rm_ctx_error(ctx);
        EXPECT_NE(msg.find(bad()), std::string::npos) << msg;
        for (const char *w : words)
            EXPECT_NE(msg.find(w), std::string::npos) << "message: " << msg << "\n  lacks: " << w;
        rm_model_info info{};
        EXPECT_EQ(rm_model_info_read(ctx, bad().c_str(), &info), RM_ERR_FORMAT);
    }

    Ctx ctx{1};
    std::filesystem::path dir;
};

// On main before the one parser, repmode.tasks' threshold was read without a range: a model loaded with 1.5, which
// rm_model_set_task_threshold refuses.
TEST_F(ModelFileMetadata, AThresholdOutsideTheUnitIntervalIsRefusedAtLoad)
{
    write_with_metadata(ctx, good(), bad(), "repmode.tasks",
                        R"([{"name":"nuclei","kind":"regression"},{"name":"ink","kind":"binary","threshold":1.5}])");
    expect_refused({"'ink'", "threshold = 1.5", "[0, 1]"});
}

TEST_F(ModelFileMetadata, TheTasksAndTheConfigurationPassTheConfigurationFilesChecks)
{
    write_with_metadata(ctx, good(), bad(), "repmode.tasks",
                        R"([{"name":"nuclei","kind":"regression"},{"name":"ink","kind":"binary","color":[0,2,0]}])");
    expect_refused({"'ink'", "'color' must be [r, g, b], each in [0, 1]"});
    write_with_metadata(ctx, good(), bad(), "repmode.tasks",
                        R"([{"name":"nuclei","kind":"regression"},{"name":"ink","kind":"binary","color":"red"}])");
    expect_refused({"repmode.tasks[1] ('ink')", "'color' must be [r, g, b]"});
    write_with_metadata(ctx, good(), bad(), "repmode.tasks",
                        R"([{"name":"nuclei","kind":"regression"},{"name":"ink","kind":"binary","output":"2.5d"}])");
    expect_refused({"repmode.tasks[1] ('ink')", "'output' must be \"3d\""});
    write_with_metadata(ctx, good(), bad(), "repmode.tasks",
                        R"([{"name":"nuclei","kind":"regression"},{"name":"ink","kind":"binary","colour":[0,1,0]}])");
    expect_refused({"repmode.tasks[1] ('ink')", "unknown field 'colour'"});
    write_with_metadata(ctx, good(), bad(), "repmode.tasks",
                        R"([{"name":"nuclei","kind":"regression"},{"name":"nuclei","kind":"binary"}])");
    expect_refused({"'nuclei' appears twice"});
    write_with_metadata(ctx, good(), bad(), "repmode.config",
                        R"({"base_channels":2,"levels":1,"in_channels":1,"out_channels":1,"dropout":"none"})");
    expect_refused({"repmode.config", "'dropout' must be a number"});
    write_with_metadata(ctx, good(), bad(), "repmode.config",
                        R"({"base_channels":2,"levels":1,"in_channels":1,"out_channels":1,"depth":3})");
    expect_refused({"repmode.config", "unknown field 'depth'"});
    write_with_metadata(ctx, good(), bad(), "repmode.config",
                        R"({"base_channels":2,"in_channels":1,"out_channels":1})");
    expect_refused({"repmode.config", "'levels'"});
}

// What rm_config_json and rm_tasks_json write, put together as a configuration file, reads back as the same
// configuration, bit for bit.
TEST(ConfigFile, TheWritersTextReadsBackAsTheSameConfiguration)
{
    Ctx ctx(1);
    rm_task tasks[3] = {rm_task_make("nuclei", RM_TASK_REGRESSION), rm_task_make("ink", RM_TASK_BINARY),
                        rm_task_make("mask", RM_TASK_BINARY)};
    tasks[1].threshold = 0.7734375f + 1e-7f; // not a short decimal
    tasks[1].has_color = 1;
    tasks[1].color[0] = 0.1f;
    tasks[1].color[1] = 1.0f / 3.0f;
    tasks[1].color[2] = 0.0f;
    tasks[1].output_2d = 1;
    tasks[2].threshold = 0.0f;
    rm_config cfg = rm_config_lite(tasks, 3);
    cfg.base_channels = 6;
    cfg.levels = 2;
    cfg.activation = RM_ACT_FRELU;
    cfg.dropout = 0.1f;
    cfg.patch[0] = 8;
    cfg.patch[1] = 20;
    cfg.patch[2] = 36;
    char *config_json = rm_config_json(&cfg), *tasks_json = rm_tasks_json(&cfg);
    ASSERT_TRUE(config_json && tasks_json);
    std::string file(config_json);
    ASSERT_EQ(file.back(), '}');
    file.pop_back();
    file += std::string(",\"tasks\":") + tasks_json + "}";
    rm_free(config_json);
    rm_free(tasks_json);

    Parsed p(ctx, file);
    ASSERT_EQ(p.status, RM_OK) << rm_ctx_error(ctx) << "\n" << file;
    const rm_config &got = p.c.cfg;
    EXPECT_EQ(got.base_channels, cfg.base_channels);
    EXPECT_EQ(got.levels, cfg.levels);
    EXPECT_EQ(got.in_channels, cfg.in_channels);
    EXPECT_EQ(got.out_channels, cfg.out_channels);
    EXPECT_EQ(got.activation, cfg.activation);
    EXPECT_EQ(got.dropout, cfg.dropout);
    for (int a = 0; a < 3; a++)
        EXPECT_EQ(got.patch[a], cfg.patch[a]);
    ASSERT_EQ(got.n_tasks, 3);
    for (int t = 0; t < 3; t++) {
        const rm_task &w = tasks[t], &g = got.tasks[t];
        EXPECT_STREQ(g.name, w.name);
        EXPECT_EQ(g.kind, w.kind);
        EXPECT_TRUE(g.threshold == w.threshold || (std::isnan(g.threshold) && std::isnan(w.threshold))) << w.name;
        EXPECT_EQ(g.has_color, w.has_color);
        for (int k = 0; k < 3; k++)
            EXPECT_EQ(g.color[k], w.color[k]) << w.name;
        EXPECT_EQ(g.output_2d, w.output_2d);
    }
}

TEST(ConfigFile, NullArgumentsAreRefused)
{
    Ctx ctx(1);
    rm_train_config c{};
    EXPECT_EQ(rm_train_config_parse(ctx, nullptr, &c), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_train_config_parse(ctx, "{}", nullptr), RM_ERR_ARGUMENT);
    rm_train_config_free(nullptr);
}

} // namespace

namespace {

// A JSON list of n regression tasks named t0, t1, ...
std::string task_list(int n)
{
    std::string list = "[";
    for (int i = 0; i < n; i++)
        list += std::string(i ? "," : "") + "{\"name\":\"t" + std::to_string(i) + "\",\"kind\":\"regression\"}";
    return list + "]";
}

// On main before the limit, a model listing 100,000 tasks took a minute and most of a gigabyte before failing.
TEST_F(ModelFileMetadata, MoreTasksThanTheLimitAreRefusedBeforeAnyIsRead)
{
    write_with_metadata(ctx, good(), bad(), "repmode.tasks", task_list(100000).c_str());
    expect_refused({"repmode.tasks", "lists 100000 tasks; a model has at most 1024"});
}

TEST(ConfigFile, TheTaskLimitHoldsForConfigurationsAndIsReachable)
{
    rmtest::Ctx ctx(1);
    const std::string fields = "\"base_channels\": 2, \"levels\": 1, \"patch\": [8, 8, 8], \"tasks\": ";
    rm_train_config c;
    EXPECT_EQ(rm_train_config_parse(ctx, ("{" + fields + task_list(RM_MAX_TASKS + 1) + "}").c_str(), &c),
              RM_ERR_FORMAT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("lists 1025 tasks; a model has at most 1024"), std::string::npos)
        << rm_ctx_error(ctx);
    ASSERT_EQ(rm_train_config_parse(ctx, ("{" + fields + task_list(RM_MAX_TASKS) + "}").c_str(), &c), RM_OK)
        << rm_ctx_error(ctx);
    EXPECT_EQ(c.cfg.n_tasks, RM_MAX_TASKS);
    c.cfg.n_tasks = RM_MAX_TASKS + 1; // a configuration built in code meets the same limit
    EXPECT_EQ(rm_config_validate(ctx, &c.cfg), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("1025 tasks; a model has at most 1024"), std::string::npos);
    c.cfg.n_tasks = RM_MAX_TASKS;
    rm_train_config_free(&c);
}

} // namespace
