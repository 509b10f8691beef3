// A training run's options as its model's provenance records them (rm_train_options_json, docs/model-file.md §2.6):
// every field read back with cJSON and compared with the struct it came from; the recorded augmentation given back
// to the configuration reader as a file's "augment" (a separate path) reads as the same recipe.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include <memory>
#include <string>

#include "test_util.h"

namespace
{

using Json = std::unique_ptr<cJSON, void (*)(cJSON *)>;

std::string options_json(const rm_train_options &opt)
{
    char *text = rm_train_options_json(&opt);
    EXPECT_NE(text, nullptr);
    std::string s = text ? text : "";
    rm_free(text);
    return s;
}

const cJSON *at(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    EXPECT_NE(v, nullptr) << "no '" << key << "'";
    static const cJSON missing{};
    return v ? v : &missing;
}

// Every float field reads back as the float it was written from.
void expect_float(const cJSON *obj, const char *key, float v)
{
    const cJSON *n = at(obj, key);
    ASSERT_TRUE(cJSON_IsNumber(n)) << key;
    EXPECT_EQ((float)n->valuedouble, v) << key;
}

rm_train_options unusual_options()
{
    const int64_t patch[3] = {16, 32, 48};
    rm_train_options o = rm_train_options_official(patch);
    o.batch = 3;
    o.seed = 99;
    o.optim = rm_optim_adamw_default();
    o.optim.lr = 3e-4f;
    o.optim.beta1 = 0.8f;
    o.optim.beta2 = 0.99f;
    o.optim.eps = 1e-7f;
    o.optim.weight_decay = 0.05f;
    o.schedule = rm_schedule_warmup_cosine(5, 100, 0.1f);
    o.smoothing = 0.05f;
    o.sampling = RM_SAMPLING_BUCKETS;
    o.bucket_low = 0.2f;
    o.augment = {1, 1, 0.1f, 1.0f, 0.3f, 0.25f, 0.7f, 0.2f, 0.07f, 2};
    o.ema = 0.99f;
    return o;
}

TEST(TrainOptionsJson, EveryOptionIsRecordedUnderItsName)
{
    const rm_train_options o = unusual_options();
    const std::string text = options_json(o);
    const Json j(cJSON_Parse(text.c_str()), cJSON_Delete);
    ASSERT_TRUE(j) << text;
    const cJSON *patch = at(j.get(), "patch");
    ASSERT_EQ(cJSON_GetArraySize(patch), 3);
    for (int k = 0; k < 3; k++)
        EXPECT_EQ(cJSON_GetArrayItem(patch, k)->valuedouble, (double)o.patch[k]);
    EXPECT_EQ(at(j.get(), "batch")->valuedouble, 3.0);
    EXPECT_EQ(cJSON_GetObjectItemCaseSensitive(j.get(), "seed"), nullptr) << "the seed is the provenance's own";
    const cJSON *optim = at(j.get(), "optimizer");
    EXPECT_STREQ(cJSON_GetStringValue(at(optim, "kind")), "adamw");
    expect_float(optim, "lr", o.optim.lr);
    expect_float(optim, "beta1", o.optim.beta1);
    expect_float(optim, "beta2", o.optim.beta2);
    expect_float(optim, "eps", o.optim.eps);
    expect_float(optim, "weight_decay", o.optim.weight_decay);
    const cJSON *sched = at(j.get(), "schedule");
    EXPECT_STREQ(cJSON_GetStringValue(at(sched, "kind")), "cosine");
    EXPECT_EQ(at(sched, "warmup")->valuedouble, 5.0);
    EXPECT_EQ(at(sched, "total_steps")->valuedouble, 100.0);
    expect_float(sched, "floor", 0.1f);
    expect_float(j.get(), "smoothing", o.smoothing);
    EXPECT_STREQ(cJSON_GetStringValue(at(j.get(), "sampling")), "buckets");
    expect_float(j.get(), "bucket_low", o.bucket_low);
    expect_float(j.get(), "ema", o.ema);
    const cJSON *aug = at(j.get(), "augment");
    EXPECT_TRUE(cJSON_IsTrue(at(aug, "flips")));
    EXPECT_TRUE(cJSON_IsTrue(at(aug, "rotations")));
    expect_float(aug, "jitter", o.augment.jitter);
    expect_float(aug, "blur", o.augment.blur);
    expect_float(aug, "gamma", o.augment.gamma);
    expect_float(aug, "contrast", o.augment.contrast);
    expect_float(aug, "illumination", o.augment.illumination);
    expect_float(aug, "brightness", o.augment.brightness);
    expect_float(aug, "noise", o.augment.noise);
    EXPECT_EQ(at(aug, "depth_shift")->valuedouble, 2.0);
    // The shortest decimals, as a person would write them.
    EXPECT_NE(text.find("\"lr\":0.0003,"), std::string::npos) << text;
    EXPECT_NE(text.find("\"eps\":1e-07,"), std::string::npos) << text;
    EXPECT_NE(text.find("\"ema\":0.99}"), std::string::npos) << text;
}

TEST(TrainOptionsJson, TheOfficialRecipeIsAConstantScheduleWithRandomCrops)
{
    const int64_t patch[3] = {32, 64, 64};
    const std::string text = options_json(rm_train_options_official(patch));
    const Json j(cJSON_Parse(text.c_str()), cJSON_Delete);
    ASSERT_TRUE(j) << text;
    EXPECT_STREQ(cJSON_GetStringValue(at(j.get(), "optimizer")->child), "adam");
    EXPECT_EQ(cJSON_GetArraySize(at(j.get(), "schedule")), 1) << text;
    EXPECT_STREQ(cJSON_GetStringValue(at(at(j.get(), "schedule"), "kind")), "constant");
    EXPECT_STREQ(cJSON_GetStringValue(at(j.get(), "sampling")), "random");
    EXPECT_EQ(cJSON_GetObjectItemCaseSensitive(j.get(), "bucket_low"), nullptr) << text;
    EXPECT_EQ(rm_train_options_json(nullptr), nullptr);
}

TEST(TrainOptionsJson, TheRecordedAugmentationIsAConfigurationsAugment)
{
    rmtest::Ctx ctx(1);
    const rm_train_options o = unusual_options();
    const Json j(cJSON_Parse(options_json(o).c_str()), cJSON_Delete);
    ASSERT_TRUE(j);
    char *augment = cJSON_PrintUnformatted(at(j.get(), "augment"));
    const std::string config = std::string("{\"tasks\": [{\"name\": \"dna\"}], \"augment\": ") + augment + "}";
    cJSON_free(augment);
    rm_train_config c;
    ASSERT_EQ(rm_train_config_parse(ctx, config.c_str(), &c), RM_OK) << rm_ctx_error(ctx) << "\n" << config;
    const rm_augment &a = c.augment, &b = o.augment;
    EXPECT_TRUE(a.flips == b.flips && a.rotations == b.rotations && a.jitter == b.jitter && a.blur == b.blur &&
                a.gamma == b.gamma && a.contrast == b.contrast && a.illumination == b.illumination &&
                a.brightness == b.brightness && a.noise == b.noise && a.depth_shift == b.depth_shift)
        << config;
    rm_train_config_free(&c);
}

} // namespace
