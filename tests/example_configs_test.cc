// The example configurations (examples/configs/*.json, and any other JSON object with "tasks" under examples/: the
// files README.md and the examples' scripts give `repmode train --config`), found by globbing the source tree at run
// time: each read by rm_train_config_parse and accepted as train accepts it (rm_config_validate, single channels, a
// model built from it), its values against the same file read here with cJSON (the tasks' names, kinds, outputs,
// thresholds and colours, the network's fields or the `lite` defaults where absent, the normalization, and the
// augmentation against rm_augment_preset of the recipe it names with the file's overrides applied here); the glob
// against the files that exist today and every configuration file the README and the scripts name; and each file
// with one field corrupted (its own text, broken one way at a time) refused with a message that names the field.
//
// REPMODE_EXAMPLES_DIR in the environment replaces the examples folder compiled in: a broken copy of the tree must
// make these tests fail.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
// In sanitized builds GCC 12 warns that a std::function inside <regex>'s automaton may be used uninitialized: a
// false positive in libstdc++'s own code, silenced for this header alone.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace
{

namespace fs = std::filesystem;
using rmtest::Ctx;

using Json = std::unique_ptr<cJSON, void (*)(cJSON *)>;

fs::path examples_dir()
{
    const char *env = std::getenv("REPMODE_EXAMPLES_DIR");
    return fs::path(env && *env ? env : REPMODE_EXAMPLES_DIR);
}

std::string read_text(const fs::path &path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

Json parse_json(const std::string &text)
{
    return Json(cJSON_Parse(text.c_str()), cJSON_Delete);
}

std::string print_json(const cJSON *j)
{
    char *p = cJSON_PrintUnformatted(j);
    std::string s = p ? p : "";
    cJSON_free(p);
    return s;
}

// The example configurations: every *.json of examples/configs, and every other *.json under examples/ whose text is
// a JSON object with "tasks" (a training configuration kept elsewhere). Sorted, as canonical paths.
std::vector<fs::path> example_configs()
{
    std::vector<fs::path> found;
    const fs::path configs = fs::weakly_canonical(examples_dir() / "configs");
    std::error_code ec;
    for (fs::recursive_directory_iterator it(examples_dir(), ec), end; !ec && it != end; it.increment(ec)) {
        if (!it->is_regular_file() || it->path().extension() != ".json")
            continue;
        const fs::path p = fs::weakly_canonical(it->path());
        const Json j = parse_json(read_text(p));
        if (p.parent_path() == configs || cJSON_GetObjectItemCaseSensitive(j.get(), "tasks"))
            found.push_back(p);
    }
    std::sort(found.begin(), found.end());
    return found;
}

bool contains(const std::vector<fs::path> &v, const fs::path &p)
{
    return std::find(v.begin(), v.end(), fs::weakly_canonical(p)) != v.end();
}

// rm_train_config_parse of `text`, freed at the end of the scope.
struct Parsed {
    rm_train_config c{};
    rm_status status;
    Parsed(rm_ctx *ctx, const std::string &text) : status(rm_train_config_parse(ctx, text.c_str(), &c)) {}
    ~Parsed() { rm_train_config_free(&c); }
};

// ---- what the file says, read with cJSON ----------------------------------------------------------------------------

const cJSON *field(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

// The string `key` of o mapped through `names` (absent: `absent`; an unlisted string: -1).
int choice(const cJSON *o, const char *key, const std::vector<std::string> &names, int absent)
{
    const cJSON *v = field(o, key);
    if (!v)
        return absent;
    const char *s = cJSON_GetStringValue(v);
    for (size_t i = 0; s && i < names.size(); i++)
        if (names[i] == s)
            return (int)i;
    return -1;
}

// The augmentation the file's "augment" says (docs/cli.md §4.1): absent, the "official" recipe; a recipe's name,
// that recipe; an object, its "preset" (default "official") with each field it gives set to the file's value.
rm_augment expected_augment(rm_ctx *ctx, const cJSON *v)
{
    rm_augment a = rm_augment_none();
    const char *recipe = !v ? "official" : cJSON_IsString(v) ? v->valuestring : nullptr;
    if (!recipe) {
        const cJSON *preset = field(v, "preset");
        recipe = preset ? cJSON_GetStringValue(preset) : "official";
    }
    EXPECT_EQ(rm_augment_preset(ctx, recipe, &a), RM_OK) << rm_ctx_error(ctx);
    if (!cJSON_IsObject(v))
        return a;
    const std::pair<const char *, float *> numbers[] = {{"jitter", &a.jitter},
                                                        {"blur", &a.blur},
                                                        {"gamma", &a.gamma},
                                                        {"contrast", &a.contrast},
                                                        {"illumination", &a.illumination},
                                                        {"brightness", &a.brightness},
                                                        {"noise", &a.noise}};
    for (const auto &[key, value] : numbers)
        if (const cJSON *f = field(v, key))
            *value = (float)f->valuedouble;
    if (const cJSON *f = field(v, "flips"))
        a.flips = cJSON_IsTrue(f);
    if (const cJSON *f = field(v, "rotations"))
        a.rotations = cJSON_IsTrue(f);
    if (const cJSON *f = field(v, "depth_shift"))
        a.depth_shift = (int64_t)f->valuedouble;
    return a;
}

void expect_augment_eq(const rm_augment &got, const rm_augment &want)
{
    EXPECT_EQ(got.flips, want.flips) << "flips";
    EXPECT_EQ(got.rotations, want.rotations) << "rotations";
    EXPECT_EQ(got.jitter, want.jitter) << "jitter";
    EXPECT_EQ(got.blur, want.blur) << "blur";
    EXPECT_EQ(got.gamma, want.gamma) << "gamma";
    EXPECT_EQ(got.contrast, want.contrast) << "contrast";
    EXPECT_EQ(got.illumination, want.illumination) << "illumination";
    EXPECT_EQ(got.brightness, want.brightness) << "brightness";
    EXPECT_EQ(got.noise, want.noise) << "noise";
    EXPECT_EQ(got.depth_shift, want.depth_shift) << "depth_shift";
}

// ---- the tests ----------------------------------------------------------------------------------------------------

// The glob finds the five configurations of today, and every configuration the README, the Python bindings' README
// and the examples' scripts name (by examples/configs/NAME.json, ../configs/NAME.json or as `--config`'s argument)
// is one the glob found, so a renamed or moved example cannot leave its readers behind, nor the glob find nothing.
TEST(ExampleConfigs, TheGlobFindsEveryConfigurationTheDocsAndScriptsName)
{
    const fs::path examples = examples_dir(), root = examples.parent_path();
    const std::vector<fs::path> found = example_configs();
    EXPECT_GE(found.size(), 5u) << "under " << examples;
    for (const char *name : {"cells-small", "cells-three", "dna-few-volumes", "scroll-small", "scroll-small-2d"})
        EXPECT_TRUE(contains(found, examples / "configs" / (std::string(name) + ".json"))) << name;

    std::vector<fs::path> readers = {root / "README.md", root / "wrapping" / "README.md"};
    for (const auto &e : fs::recursive_directory_iterator(examples)) {
        const std::string ext = e.path().extension().string();
        if (e.is_regular_file() && (ext == ".sh" || ext == ".py" || ext == ".md"))
            readers.push_back(e.path());
    }
    const std::regex named(R"(configs/([A-Za-z0-9_.-]+\.json))"), option(R"(--config\s+"?([^"\s]+\.json))");
    int names = 0, options_in_readme = 0, options_in_scripts = 0;
    for (const fs::path &reader : readers) {
        SCOPED_TRACE(reader.string());
        const std::string text = read_text(reader);
        ASSERT_FALSE(text.empty());
        for (std::sregex_iterator m(text.begin(), text.end(), named), end; m != end; ++m, names++)
            EXPECT_TRUE(contains(found, examples / "configs" / (*m)[1].str())) << (*m)[0];
        if (reader.filename() == "README.md" && reader.parent_path() != root)
            continue; // wrapping/README.md's `--config C.json` is a placeholder
        for (std::sregex_iterator m(text.begin(), text.end(), option), end; m != end; ++m) {
            std::string arg = (*m)[1].str();
            const bool script = reader.extension() == ".sh";
            if (script && arg.rfind("$HERE/", 0) == 0)
                arg = (reader.parent_path() / arg.substr(6)).string();
            const fs::path path = script || fs::path(arg).is_absolute() ? fs::path(arg) : root / arg;
            EXPECT_TRUE(contains(found, path)) << (*m)[0] << " names " << path << ", not an example configuration";
            (script ? options_in_scripts : options_in_readme)++;
        }
    }
    // Today: 5 names in the README, 1 in wrapping/README.md, 2 in examples/models' scripts; `--config` 4 times in the
    // README and twice in the scripts.
    EXPECT_GE(names, 8);
    EXPECT_GE(options_in_readme, 4);
    EXPECT_GE(options_in_scripts, 2);
}

// Each file parses and is accepted as `repmode train` accepts it, to the values the same file says when read with
// cJSON, absent fields at the `lite` defaults.
TEST(ExampleConfigs, EachParsesIsAcceptedAndSaysWhatItsJsonSays)
{
    Ctx ctx(1);
    const std::vector<fs::path> files = example_configs();
    ASSERT_FALSE(files.empty()) << "no configuration under " << examples_dir();
    const rm_config lite = rm_config_lite(nullptr, 0);
    for (const fs::path &file : files) {
        SCOPED_TRACE(file.string());
        const std::string text = read_text(file);
        const Json json = parse_json(text);
        ASSERT_TRUE(cJSON_IsObject(json.get())) << "cJSON does not read the file as an object";

        Parsed p(ctx, text);
        ASSERT_EQ(p.status, RM_OK) << rm_ctx_error(ctx);
        const rm_config &cfg = p.c.cfg;
        EXPECT_EQ(rm_config_validate(ctx, &cfg), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(rm_normalization_validate(ctx, &p.c.normalization), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(rm_augment_validate(ctx, &p.c.augment), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(cfg.in_channels, 1) << "train reads single-channel volumes";
        EXPECT_EQ(cfg.out_channels, 1) << "train reads single-channel volumes";
        EXPECT_EQ(cfg.tasks, p.c.tasks);
        rm_model *model = nullptr;
        EXPECT_EQ(rm_model_create(ctx, &cfg, 1, &model), RM_OK) << rm_ctx_error(ctx);
        if (model) {
            EXPECT_EQ(rm_model_config(model)->n_tasks, cfg.n_tasks);
        }
        rm_model_free(model);

        // The tasks, in the file's order.
        const cJSON *tasks = field(json.get(), "tasks");
        ASSERT_TRUE(cJSON_IsArray(tasks));
        ASSERT_EQ(cfg.n_tasks, cJSON_GetArraySize(tasks));
        for (int t = 0; t < cfg.n_tasks; t++) {
            const cJSON *o = cJSON_GetArrayItem(tasks, t);
            const rm_task &task = cfg.tasks[t];
            ASSERT_NE(cJSON_GetStringValue(field(o, "name")), nullptr) << "task " << t;
            EXPECT_STREQ(task.name, cJSON_GetStringValue(field(o, "name"))) << "task " << t;
            EXPECT_EQ((int)task.kind, choice(o, "kind", {"regression", "binary"}, RM_TASK_REGRESSION)) << task.name;
            EXPECT_EQ(task.output_2d, choice(o, "output", {"3d", "2d"}, 0)) << task.name;
            if (const cJSON *th = field(o, "threshold"))
                EXPECT_EQ(task.threshold, (float)th->valuedouble) << task.name;
            else
                EXPECT_TRUE(std::isnan(task.threshold)) << task.name;
            const cJSON *color = field(o, "color");
            EXPECT_EQ(task.has_color, color ? 1 : 0) << task.name;
            for (int k = 0; color && k < 3; k++)
                EXPECT_EQ(task.color[k], (float)cJSON_GetArrayItem(color, k)->valuedouble) << task.name;
        }

        // The network: the file's value, else lite's.
        const cJSON *j = json.get();
        auto whole = [&](const char *key, int64_t fallback) {
            const cJSON *v = field(j, key);
            return v ? (int64_t)v->valuedouble : fallback;
        };
        EXPECT_EQ(cfg.base_channels, whole("base_channels", lite.base_channels));
        EXPECT_EQ(cfg.levels, whole("levels", lite.levels));
        EXPECT_EQ((int)cfg.activation, choice(j, "activation", {"relu", "frelu", "mish"}, lite.activation));
        EXPECT_EQ(cfg.dropout, field(j, "dropout") ? (float)field(j, "dropout")->valuedouble : lite.dropout);
        EXPECT_EQ(cfg.decoder_2d, choice(j, "decoder", {"3d", "2d"}, lite.decoder_2d));
        EXPECT_EQ((int)cfg.block, choice(j, "block", {"mode", "inception", "plain"}, lite.block));
        const cJSON *patch = field(j, "patch");
        for (int a = 0; a < 3; a++)
            EXPECT_EQ(cfg.patch[a], patch ? (int64_t)cJSON_GetArrayItem(patch, a)->valuedouble : lite.patch[a])
                << "patch axis " << a;

        // The normalization: z-score unless the file names percentile (p1-p99 unless its object gives bounds).
        const cJSON *norm = field(j, "normalization");
        const char *method = !norm                  ? "zscore"
                             : cJSON_IsString(norm) ? norm->valuestring
                                                    : cJSON_GetStringValue(field(norm, "method"));
        ASSERT_NE(method, nullptr);
        if (std::strcmp(method, "percentile") == 0) {
            EXPECT_EQ(p.c.normalization.method, RM_NORM_PERCENTILE);
            const cJSON *low = cJSON_IsObject(norm) ? field(norm, "low") : nullptr;
            const cJSON *high = cJSON_IsObject(norm) ? field(norm, "high") : nullptr;
            EXPECT_EQ(p.c.normalization.low, low ? low->valuedouble : 1.0);
            EXPECT_EQ(p.c.normalization.high, high ? high->valuedouble : 99.0);
        } else {
            EXPECT_STREQ(method, "zscore");
            EXPECT_EQ(p.c.normalization.method, RM_NORM_ZSCORE);
        }

        // The augmentation: the recipe the file names, with its overrides.
        expect_augment_eq(p.c.augment, expected_augment(ctx, field(j, "augment")));
    }
}

// dna-few-volumes.json names its recipe, "label-free", as the README says it does, and reads to that recipe, not to
// the default one: the augmentation compared above cannot pass by both sides falling back to "official".
TEST(ExampleConfigs, ANamedRecipeIsThatRecipe)
{
    Ctx ctx(1);
    const fs::path file = examples_dir() / "configs" / "dna-few-volumes.json";
    const Json json = parse_json(read_text(file));
    ASSERT_STREQ(cJSON_GetStringValue(field(json.get(), "augment")), "label-free") << file;
    Parsed p(ctx, read_text(file));
    ASSERT_EQ(p.status, RM_OK) << rm_ctx_error(ctx);
    rm_augment label_free, official;
    ASSERT_EQ(rm_augment_preset(ctx, "label-free", &label_free), RM_OK);
    ASSERT_EQ(rm_augment_preset(ctx, "official", &official), RM_OK);
    expect_augment_eq(p.c.augment, label_free);
    EXPECT_NE(std::memcmp(&label_free, &official, sizeof official), 0) << "the two recipes are the same";
}

// Each file, broken one way at a time from its own text, is refused: not JSON at all (RM_ERR_FORMAT), or a field
// made wrong (RM_ERR_FORMAT or RM_ERR_ARGUMENT) with a message starting "config: " that names it. The unbroken
// file, printed from the same tree, is accepted, so each refusal is the corruption's.
TEST(ExampleConfigs, EachWithAFieldCorruptedIsRefused)
{
    Ctx ctx(1);
    const std::vector<fs::path> files = example_configs();
    ASSERT_FALSE(files.empty()) << "no configuration under " << examples_dir();
    auto set = [](cJSON *o, const char *key, cJSON *value) {
        if (field(o, key))
            cJSON_ReplaceItemInObjectCaseSensitive(o, key, value);
        else
            cJSON_AddItemToObject(o, key, value);
    };
    auto first_task = [](cJSON *root) { return cJSON_GetArrayItem(field(root, "tasks"), 0); };
    struct Corruption {
        const char *what;
        std::function<void(cJSON *)> apply;
        std::string named; // in the message
    };
    const std::vector<Corruption> corruptions = {
        {"a misspelt field", [&](cJSON *r) { set(r, "base_channel", cJSON_CreateNumber(8)); }, "'base_channel'"},
        {"no channels", [&](cJSON *r) { set(r, "base_channels", cJSON_CreateNumber(0)); }, "base_channels"},
        {"too many levels", [&](cJSON *r) { set(r, "levels", cJSON_CreateNumber(RM_MAX_LEVELS + 1)); }, "levels"},
        {"a patch X not a multiple of 2^levels",
         [&](cJSON *r) {
             const rm_config lite = rm_config_lite(nullptr, 0);
             const cJSON *patch = field(r, "patch");
             const double x = patch ? cJSON_GetArrayItem(patch, 2)->valuedouble : (double)lite.patch[2];
             const double zyx[3] = {patch ? cJSON_GetArrayItem(patch, 0)->valuedouble : (double)lite.patch[0],
                                    patch ? cJSON_GetArrayItem(patch, 1)->valuedouble : (double)lite.patch[1], x + 1};
             set(r, "patch", cJSON_CreateDoubleArray(zyx, 3));
         },
         "patch"},
        {"dropout 1", [&](cJSON *r) { set(r, "dropout", cJSON_CreateNumber(1)); }, "dropout"},
        {"an unknown activation", [&](cJSON *r) { set(r, "activation", cJSON_CreateString("gelu")); }, "activation"},
        {"no tasks field", [&](cJSON *r) { cJSON_DeleteItemFromObjectCaseSensitive(r, "tasks"); }, "tasks"},
        {"an empty task list", [&](cJSON *r) { set(r, "tasks", cJSON_CreateArray()); }, "tasks"},
        {"a task name with a space", [&](cJSON *r) { set(first_task(r), "name", cJSON_CreateString("two words")); },
         "'two words'"},
        {"a task listed twice",
         [&](cJSON *r) {
             cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(r, "tasks"), cJSON_Duplicate(first_task(r), 1));
         },
         "twice"},
        {"an unknown task kind", [&](cJSON *r) { set(first_task(r), "kind", cJSON_CreateString("segmentation")); },
         "kind"},
        {"a 3D task under the 2D decoder",
         [&](cJSON *r) {
             set(r, "decoder", cJSON_CreateString("2d"));
             set(first_task(r), "output", cJSON_CreateString("3d"));
         },
         "output"},
        {"an unknown recipe", [&](cJSON *r) { set(r, "augment", cJSON_CreateString("strong")); }, "augment"},
        {"negative noise over the file's recipe",
         [&](cJSON *r) {
             const cJSON *a = field(r, "augment");
             cJSON *o = cJSON_IsObject(a) ? cJSON_Duplicate(a, 1) : cJSON_CreateObject();
             if (cJSON_IsString(a))
                 cJSON_AddStringToObject(o, "preset", a->valuestring);
             set(o, "noise", cJSON_CreateNumber(-1));
             set(r, "augment", o);
         },
         "noise"},
        {"an unknown normalization", [&](cJSON *r) { set(r, "normalization", cJSON_CreateString("minmax")); },
         "normalization"},
    };
    for (const fs::path &file : files) {
        SCOPED_TRACE(file.string());
        const std::string text = read_text(file);
        const Json json = parse_json(text);
        ASSERT_TRUE(cJSON_IsObject(json.get()));
        {
            Parsed control(ctx, print_json(json.get()));
            ASSERT_EQ(control.status, RM_OK) << rm_ctx_error(ctx);
        }
        {
            const std::string cut = text.substr(0, text.rfind('}')); // the closing brace gone
            Parsed p(ctx, cut);
            EXPECT_EQ(p.status, RM_ERR_FORMAT) << "the text without its last '}'";
            EXPECT_NE(std::strstr(rm_ctx_error(ctx), "not valid JSON"), nullptr) << rm_ctx_error(ctx);
            EXPECT_EQ(p.c.tasks, nullptr) << "on failure the result owns nothing";
        }
        for (const Corruption &c : corruptions) {
            const Json broken(cJSON_Duplicate(json.get(), 1), cJSON_Delete);
            c.apply(broken.get());
            const std::string bad = print_json(broken.get());
            Parsed p(ctx, bad);
            const std::string message = rm_ctx_error(ctx);
            EXPECT_TRUE(p.status == RM_ERR_FORMAT || p.status == RM_ERR_ARGUMENT)
                << c.what << ": status " << p.status << " for " << bad;
            EXPECT_EQ(message.rfind("config: ", 0), 0u) << c.what << ": " << message;
            EXPECT_NE(message.find(c.named), std::string::npos) << c.what << ": " << message;
            EXPECT_EQ(p.c.tasks, nullptr) << c.what << ": on failure the result owns nothing";
        }
    }
}

} // namespace
