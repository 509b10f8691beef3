// Non-finite voxels (repmode/nonfinite.h): the census counts and locates them the same way whole or region by
// region, each policy gives its value (the mean against a direct sum in long double), and the refusal names the
// count and the first voxel's (x, y, z).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// A (Z, Y, X) = (6, 5, 4) volume of varied finite values with non-finite voxels at the given flat indices.
std::vector<float> volume_with(const std::vector<std::pair<int64_t, float>> &bad)
{
    std::vector<float> v(6 * 5 * 4);
    for (size_t i = 0; i < v.size(); i++)
        v[i] = 0.37f * static_cast<float>(i % 13) - 1.5f + 1e-3f * static_cast<float>(i);
    for (const auto &[i, value] : bad)
        v[static_cast<size_t>(i)] = value;
    return v;
}

TEST(NonFinite, TheCensusIsTheSameWholeOrRegionByRegion)
{
    const std::vector<float> v = volume_with({{57, kNaN}, {58, kInf}, {101, -kInf}});
    rm_nonfinite_census whole = rm_nonfinite_census_init();
    rm_nonfinite_census_add(&whole, v.data(), static_cast<int64_t>(v.size()));
    EXPECT_EQ(whole.seen, 120);
    EXPECT_EQ(whole.nonfinite, 3);
    EXPECT_EQ(whole.first, 57);
    long double sum = 0.0L;
    for (float x : v)
        if (std::isfinite(x))
            sum += x;
    EXPECT_NEAR(whole.finite_sum, static_cast<double>(sum), 1e-12);
    for (int64_t cut : {1, 7, 20, 57, 58, 119}) {
        rm_nonfinite_census parts = rm_nonfinite_census_init();
        rm_nonfinite_census_add(&parts, v.data(), cut);
        rm_nonfinite_census_add(&parts, v.data() + cut, static_cast<int64_t>(v.size()) - cut);
        EXPECT_EQ(parts.nonfinite, whole.nonfinite) << cut;
        EXPECT_EQ(parts.first, whole.first) << cut;
        EXPECT_EQ(parts.finite_sum, whole.finite_sum) << cut; // the same additions in the same order
    }
}

TEST(NonFinite, RefusalNamesTheCountAndTheFirstVoxelsPosition)
{
    // Flat index 57 of (6, 5, 4): z = 57 / 20 = 2, y = (57 % 20) / 4 = 4, x = 57 % 4 = 1.
    const std::vector<float> v = volume_with({{57, kNaN}, {101, kInf}});
    rm_nonfinite_census c = rm_nonfinite_census_init();
    rm_nonfinite_census_add(&c, v.data(), static_cast<int64_t>(v.size()));
    rmtest::Ctx ctx(1);
    const int64_t size[3] = {6, 5, 4};
    float value = -1.0f;
    ASSERT_EQ(rm_nonfinite_resolve(ctx, &c, RM_NONFINITE_REFUSE, size, &value), RM_ERR_ARGUMENT);
    const std::string msg = rm_ctx_error(ctx);
    EXPECT_NE(msg.find("2 of 120 voxels are not finite"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(x, y, z) = (1, 4, 2)"), std::string::npos) << msg;
    ASSERT_EQ(rm_nonfinite_resolve(ctx, &c, RM_NONFINITE_REFUSE, nullptr, &value), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("flat index 57"), std::string::npos) << rm_ctx_error(ctx);

    const std::vector<float> clean = volume_with({});
    rm_nonfinite_census ok = rm_nonfinite_census_init();
    rm_nonfinite_census_add(&ok, clean.data(), static_cast<int64_t>(clean.size()));
    EXPECT_EQ(ok.first, -1);
    EXPECT_EQ(rm_nonfinite_resolve(ctx, &ok, RM_NONFINITE_REFUSE, size, &value), RM_OK);
}

TEST(NonFinite, ZeroAndMeanReplaceEveryNonFiniteVoxelAndNothingElse)
{
    const std::vector<float> v = volume_with({{0, kNaN}, {33, -kInf}, {119, kInf}});
    rm_nonfinite_census c = rm_nonfinite_census_init();
    rm_nonfinite_census_add(&c, v.data(), static_cast<int64_t>(v.size()));
    rmtest::Ctx ctx(1);
    long double sum = 0.0L;
    for (float x : v)
        if (std::isfinite(x))
            sum += x;
    const float mean = static_cast<float>(sum / 117.0L);
    for (rm_nonfinite_policy policy : {RM_NONFINITE_ZERO, RM_NONFINITE_MEAN}) {
        float value = kNaN;
        ASSERT_EQ(rm_nonfinite_resolve(ctx, &c, policy, nullptr, &value), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(value, policy == RM_NONFINITE_ZERO ? 0.0f : mean);
        std::vector<float> w = v;
        EXPECT_EQ(rm_nonfinite_replace(w.data(), static_cast<int64_t>(w.size()), value), 3);
        for (size_t i = 0; i < w.size(); i++)
            EXPECT_EQ(w[i], std::isfinite(v[i]) ? v[i] : value) << i;
    }
    // No finite voxel at all: the mean policy falls back to 0.
    std::vector<float> all(5, kNaN);
    rm_nonfinite_census none = rm_nonfinite_census_init();
    rm_nonfinite_census_add(&none, all.data(), 5);
    float value = kNaN;
    ASSERT_EQ(rm_nonfinite_resolve(ctx, &none, RM_NONFINITE_MEAN, nullptr, &value), RM_OK);
    EXPECT_EQ(value, 0.0f);
}

TEST(NonFinite, PoliciesParseByNameAndUnknownNamesAreRefused)
{
    rmtest::Ctx ctx(1);
    rm_nonfinite_policy p = RM_NONFINITE_REFUSE;
    for (rm_nonfinite_policy q : {RM_NONFINITE_REFUSE, RM_NONFINITE_ZERO, RM_NONFINITE_MEAN}) {
        ASSERT_EQ(rm_nonfinite_policy_parse(ctx, rm_nonfinite_policy_name(q), &p), RM_OK);
        EXPECT_EQ(p, q);
    }
    EXPECT_EQ(rm_nonfinite_policy_parse(ctx, "median", &p), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("'median' is not a policy (refuse, zero or mean)"),
              std::string::npos)
        << rm_ctx_error(ctx);
}

} // namespace
