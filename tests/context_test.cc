// The context: thread counts, error messages, status names.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

TEST(Context, DefaultUsesEveryCore)
{
    rmtest::Ctx ctx(0);
    EXPECT_GE(rm_ctx_threads(ctx), 1);
    EXPECT_STREQ(rm_ctx_error(ctx), "");
    EXPECT_EQ(rm_ctx_workspace_bytes(ctx), 0u);
}

TEST(Context, ThreadCountCanChangeAndRejectsCountsOutOfRange)
{
    rmtest::Ctx ctx(1);
    EXPECT_EQ(rm_ctx_threads(ctx), 1);
    EXPECT_EQ(rm_ctx_set_threads(ctx, 3), RM_OK);
    EXPECT_EQ(rm_ctx_threads(ctx), 3);
    EXPECT_EQ(rm_ctx_set_threads(ctx, -2), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("-2"), std::string::npos);
    EXPECT_EQ(rm_ctx_threads(ctx), 3);
    EXPECT_EQ(rm_ctx_set_threads(ctx, RM_MAX_THREADS + 1), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find(std::to_string(RM_MAX_THREADS + 1)), std::string::npos);
    EXPECT_EQ(rm_ctx_threads(ctx), 3);
    EXPECT_EQ(rm_ctx_create(RM_MAX_THREADS + 1), nullptr);
    EXPECT_EQ(rm_ctx_create(100000), nullptr);
}

// The limit is one OpenMP can honour: a parallel operator runs on RM_MAX_THREADS threads and gives the one-thread
// result.
TEST(Context, TheMostThreadsAllowedRunAnOperator)
{
    rmtest::Ctx one(1), most(RM_MAX_THREADS);
    ASSERT_EQ(rm_ctx_threads(most), RM_MAX_THREADS);
    std::vector<float> x(4 * 16 * 16 * 16), a(x.size()), b(x.size());
    for (size_t i = 0; i < x.size(); i++)
        x[i] = static_cast<float>(i % 97) - 48.0f;
    rm_tensor in = rm_tensor_5d(x.data(), 1, 4, 16, 16, 16);
    rm_tensor out_a = rm_tensor_5d(a.data(), 1, 4, 16, 16, 16), out_b = rm_tensor_5d(b.data(), 1, 4, 16, 16, 16);
    ASSERT_EQ(rm_activation_forward(one, RM_ACT_MISH, &in, nullptr, &out_a), RM_OK) << rm_ctx_error(one);
    ASSERT_EQ(rm_activation_forward(most, RM_ACT_MISH, &in, nullptr, &out_b), RM_OK) << rm_ctx_error(most);
    EXPECT_TRUE(rmtest::bit_identical(a, b));
}

// The processor's features, read independently of the library: /proc/cpuinfo's flags.
rm_isa isa_from_cpuinfo()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("flags", 0) != 0)
            continue;
        std::istringstream words(line);
        std::set<std::string> flags{std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()};
        if (flags.count("avx512f"))
            return RM_ISA_AVX512;
        if (flags.count("avx2") && flags.count("fma"))
            return RM_ISA_AVX2;
        return RM_ISA_PORTABLE;
    }
    return RM_ISA_PORTABLE;
}

TEST(Context, InstructionSetIsTheProcessorsBestUnlessTheEnvironmentLowersIt)
{
#if defined(__x86_64__)
    EXPECT_EQ(rm_isa_available(), isa_from_cpuinfo());
#endif
    const char *before = getenv("REPMODE_ISA");
    const std::string saved = before ? before : "";
    unsetenv("REPMODE_ISA");
    EXPECT_EQ(rm_ctx_isa(rmtest::Ctx(1)), rm_isa_available());
    for (int isa = RM_ISA_PORTABLE; isa <= RM_ISA_AVX512; isa++) {
        const rm_isa named = static_cast<rm_isa>(isa);
        EXPECT_EQ(rm_isa_from_name(rm_isa_name(named)), isa);
        setenv("REPMODE_ISA", rm_isa_name(named), 1);
        // Lowered to the named set; a set above the processor's is not taken.
        EXPECT_EQ(rm_ctx_isa(rmtest::Ctx(1)), std::min(named, rm_isa_available())) << rm_isa_name(named);
    }
    setenv("REPMODE_ISA", "sse9", 1);
    EXPECT_EQ(rm_ctx_isa(rmtest::Ctx(1)), rm_isa_available());
    EXPECT_EQ(rm_isa_from_name("sse9"), -1);
    EXPECT_EQ(rm_isa_from_name(nullptr), -1);
    EXPECT_STREQ(rm_isa_name(static_cast<rm_isa>(7)), "unknown");
    if (before)
        setenv("REPMODE_ISA", saved.c_str(), 1);
    else
        unsetenv("REPMODE_ISA");
}

TEST(Context, InstructionSetCanBeLoweredButNotRaisedAboveTheProcessors)
{
    rmtest::Ctx ctx(1);
    ASSERT_EQ(rm_ctx_set_isa(ctx, RM_ISA_PORTABLE), RM_OK);
    EXPECT_EQ(rm_ctx_isa(ctx), RM_ISA_PORTABLE);
    ASSERT_EQ(rm_ctx_set_isa(ctx, rm_isa_available()), RM_OK);
    EXPECT_EQ(rm_ctx_isa(ctx), rm_isa_available());
    EXPECT_EQ(rm_ctx_set_isa(ctx, static_cast<rm_isa>(RM_ISA_AVX512 + 1)), RM_ERR_ARGUMENT);
    EXPECT_NE(std::string(rm_ctx_error(ctx)).find("not available"), std::string::npos) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_ctx_set_isa(ctx, static_cast<rm_isa>(-1)), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_ctx_isa(ctx), rm_isa_available());
}

TEST(Context, EveryStatusHasADistinctName)
{
    const rm_status all[] = {RM_OK,     RM_ERR_ARGUMENT, RM_ERR_SHAPE,    RM_ERR_NOMEM,
                             RM_ERR_IO, RM_ERR_FORMAT,   RM_ERR_INTERNAL, RM_ERR_CANCELLED};
    for (rm_status a : all) {
        for (rm_status b : all) {
            if (a != b) {
                EXPECT_STRNE(rm_status_string(a), rm_status_string(b));
            }
        }
    }
    EXPECT_STREQ(rm_status_string(RM_ERR_CANCELLED), "cancelled");
    EXPECT_STREQ(rm_status_string(static_cast<rm_status>(1000)), "unknown status");
}

TEST(Context, TensorSizesMultiplyOut)
{
    float x = 0.0f;
    rm_tensor t = rm_tensor_5d(&x, 2, 3, 4, 5, 6);
    EXPECT_EQ(rm_tensor_numel(&t), 720);
    EXPECT_EQ(rm_tensor_sample_numel(&t), 360);
    EXPECT_EQ(rm_tensor_spatial_numel(&t), 120);
    rm_tensor u = rm_tensor_5d(&x, 2, 3, 4, 5, 6);
    EXPECT_TRUE(rm_tensor_same_shape(&t, &u));
    u.ne[4] = 7;
    EXPECT_FALSE(rm_tensor_same_shape(&t, &u));
}

} // namespace
