// rm_json_parsable (core/base/json_syntax.c), which tells text cJSON refuses from cJSON running out of memory: it
// must never pass text that cJSON refuses (else malformed files would be reported as a lack of memory), checked on
// every truncation, deletion and replacement of every byte of JSON texts the core reads, and on cJSON's limits.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include <string>
#include <vector>

#include "repmode/model.h"
#include "repmode/normalize.h"

extern "C" int rm_json_parsable(const char *text, size_t n, int whole);

namespace {

bool cjson_parses(const std::string &text, bool whole)
{
    const char *end = nullptr;
    cJSON *root = whole ? cJSON_ParseWithOpts(text.c_str(), &end, 1)
                        : cJSON_ParseWithLengthOpts(text.data(), text.size(), &end, 0);
    cJSON_Delete(root);
    return root != nullptr;
}

// Texts as the core meets them: a configuration and task list as model files hold them, a normalization, and one
// with every kind of token.
std::vector<std::string> texts()
{
    std::vector<rm_task> tasks{rm_task_make("nuclei", RM_TASK_REGRESSION), rm_task_make("ink", RM_TASK_BINARY)};
    tasks[1].threshold = 0.4f;
    tasks[1].has_color = 1;
    tasks[1].color[0] = 1.0f;
    const rm_config cfg = rm_config_lite(tasks.data(), 2);
    std::vector<std::string> out;
    for (char *json : {rm_config_json(&cfg), rm_tasks_json(&cfg)}) {
        out.emplace_back(json);
        rm_free(json);
    }
    const rm_normalization n = rm_normalization_percentile(0.5, 99.5);
    char *json = rm_normalization_json(&n);
    out.emplace_back(json);
    rm_free(json);
    out.emplace_back(" {\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\": [true, false, null, -0.5e+3, 0, 12E-1, \"\\u00e9\\ud83d\\ude00\"],"
                     "\r\n\t\"\": {}, \"x\": [[], [{}]], \"\xc3\xa9\": -1} ");
    return out;
}

TEST(JsonSyntax, TheTextsThemselvesPassWholeAndAsAPrefix)
{
    for (const std::string &t : texts()) {
        EXPECT_TRUE(rm_json_parsable(t.data(), t.size(), 1)) << t;
        EXPECT_TRUE(rm_json_parsable((t + "]x").data(), t.size() + 2, 0)) << t;
        EXPECT_FALSE(rm_json_parsable((t + "]x").data(), t.size() + 2, 1)) << t;
    }
}

TEST(JsonSyntax, NoCutDeletionOrReplacementThatCJsonRefusesPasses)
{
    const std::string replacements = "\"\\,:[]{}0e.-+ xu\x01\xff";
    int64_t checked = 0, refused_by_both = 0;
    for (const std::string &t : texts()) {
        std::vector<std::string> variants;
        for (size_t i = 0; i < t.size(); i++) {
            variants.push_back(t.substr(0, i));
            variants.push_back(t.substr(0, i) + t.substr(i + 1));
            for (char r : replacements)
                variants.push_back(t.substr(0, i) + r + t.substr(i + 1));
        }
        for (const std::string &v : variants) {
            for (const bool whole : {false, true}) {
                const bool ours = rm_json_parsable(v.data(), v.size(), whole);
                const bool theirs = cjson_parses(v, whole);
                EXPECT_TRUE(!ours || theirs) << (whole ? "whole: " : "prefix: ") << v;
                refused_by_both += !ours && !theirs;
                checked++;
            }
        }
    }
    EXPECT_GT(refused_by_both, checked / 10); // the variants do reach malformed text
}

// Nesting and surrogate pairs as cJSON refuses them; numbers longer than upstream cJSON 1.7.15 reads (63 characters:
// Debian's build reads them, so only ours is checked).
TEST(JsonSyntax, CJsonsLimitsAreKept)
{
    auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
    struct Case {
        std::string text;
        bool ok, cjson_agrees;
    };
    for (const Case &c : std::vector<Case>{
             {nested(1000), true, true},
             {nested(1001), false, true},
             {std::string(63, '1'), true, true},
             {std::string(64, '1'), false, false},
             {"\"\\ud83d\\ude00\"", true, true},
             {"\"\\ud83d\"", false, true},
             {"\"\\ude00\"", false, true},
             {"\"\\ud83d\\u0041\"", false, true},
         }) {
        EXPECT_EQ(rm_json_parsable(c.text.data(), c.text.size(), 1), c.ok) << c.text.substr(0, 80);
        if (c.cjson_agrees) {
            EXPECT_EQ(cjson_parses(c.text, true), c.ok) << c.text.substr(0, 80);
        }
    }
}

}  // namespace
