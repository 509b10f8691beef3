// Per-volume normalization (repmode/normalize.h): percentiles against a full sort and numpy's 'linear' formula
// written out here, and against values numpy printed; the z-score against a naive double loop, bit for bit; the JSON
// of repmode.normalization both ways and its refusals; a model's method through its files in both forms.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using rmtest::Ctx;

// numpy.percentile(x, p) with the default method, in double: sort, virtual index (n - 1)·p/100, and numpy's lerp
// (from the upper neighbour when the fraction is at least one half).
double numpy_percentile(std::vector<float> x, double p)
{
    std::sort(x.begin(), x.end());
    const double h = static_cast<double>(x.size() - 1) * (p / 100.0);
    const double below = std::floor(h);
    const size_t i = static_cast<size_t>(below), j = std::min(i + 1, x.size() - 1);
    const double a = x[i], b = x[j], t = h - below, d = b - a;
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

std::vector<float> random_volume(size_t n, uint32_t seed, int levels)
{
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal(100.0f, 30.0f);
    std::uniform_int_distribution<int> level(-levels, levels);
    std::vector<float> v(n);
    for (float &x : v)
        x = levels > 0 ? static_cast<float>(level(gen)) * 0.25f : normal(gen); // levels: many duplicates
    return v;
}

rm_norm_params compute(const rm_normalization &method, const std::vector<float> &x)
{
    Ctx ctx;
    rm_norm_params p{};
    EXPECT_EQ(rm_normalization_compute(ctx, &method, x.data(), static_cast<int64_t>(x.size()), &p), RM_OK)
        << rm_ctx_error(ctx);
    return p;
}

void expect_percentiles(const std::vector<float> &x, double low, double high, const std::string &what)
{
    const rm_normalization method = rm_normalization_percentile(low, high);
    const std::vector<float> before = x;
    const rm_norm_params p = compute(method, x);
    const double lo = numpy_percentile(x, low), hi = numpy_percentile(x, high);
    EXPECT_EQ(p.offset, lo) << what;
    EXPECT_EQ(p.scale, hi > lo ? 1.0 / (hi - lo) : 0.0) << what;
    EXPECT_EQ(p.clip, 1) << what;
    EXPECT_TRUE(rmtest::bit_identical(x, before)) << what << ": the input changed";
}

TEST(Normalization, PercentilesEqualAFullSortWithNumpysLinearMethod)
{
    const double bounds[][2] = {{1, 99}, {0, 100}, {25, 75}, {0.5, 99.5}, {49.9, 50.1}, {10, 10.000001}};
    for (size_t n : {1, 2, 3, 5, 8, 101, 1000, 4097})
        for (int levels : {0, 1, 3, 40}) // continuous values, then fewer and fewer distinct ones
            for (const auto &b : bounds)
                expect_percentiles(random_volume(n, static_cast<uint32_t>(n * 7 + levels), levels), b[0], b[1],
                                   std::to_string(n) + " voxels, " + std::to_string(levels) + " levels, p" +
                                       std::to_string(b[0]) + "-p" + std::to_string(b[1]));
}

TEST(Normalization, PercentilesEqualWhatNumpyPrinted)
{
    // numpy 1.24: np.percentile(np.array([3.5, -1, 7, 7, 2, 0.25, 10, -4]), [p_low, p_high])
    const std::vector<float> x{3.5f, -1.0f, 7.0f, 7.0f, 2.0f, 0.25f, 10.0f, -4.0f};
    const struct {
        double low, high, lo, hi;
    } cases[] = {{1, 99, -3.79, 9.79},
                 {10, 90, -1.9, 7.8999999999999995},
                 {33.3, 66.6, 0.8292499999999992, 5.816999999999997},
                 {0, 100, -4.0, 10.0}};
    for (const auto &c : cases) {
        const rm_norm_params p = compute(rm_normalization_percentile(c.low, c.high), x);
        EXPECT_EQ(p.offset, c.lo) << c.low;
        EXPECT_EQ(p.scale, 1.0 / (c.hi - c.lo)) << c.high;
    }
    // Fractions of at least one half, where numpy's lerp works from the upper neighbour and a + (b - a)·t would
    // differ in the last bit: rng = np.random.default_rng(1); rng.normal(100, 30, 9) as float32.
    const std::vector<float> y{110.36752319335938f, 124.64854431152344f, 109.9131088256836f,
                               60.9052848815918f,   127.16067504882812f, 113.3912353515625f,
                               83.89140319824219f,  117.43354034423828f, 110.93717193603516f};
    const struct {
        double low, high, lo, hi;
    } upper[] = {{10.1, 11.0, 79.4780684814453, 81.13306900024413}, {10.8, 11.1, 80.76529110717773, 81.31695794677735}};
    for (const auto &c : upper) {
        const rm_norm_params p = compute(rm_normalization_percentile(c.low, c.high), y);
        EXPECT_EQ(p.offset, c.lo) << c.low;
        EXPECT_EQ(p.scale, 1.0 / (c.hi - c.lo)) << c.high;
    }
    // np.percentile(np.arange(1, 11), [1, 99]) with the defaults
    std::vector<float> ten(10);
    for (size_t i = 0; i < 10; i++)
        ten[i] = static_cast<float>(10 - i);
    const rm_norm_params p = compute(rm_normalization_percentile(1, 99), ten);
    EXPECT_EQ(p.offset, 1.09);
    EXPECT_EQ(p.scale, 1.0 / (9.91 - 1.09));
}

TEST(Normalization, OrdersThatDefeatANaivePivotStayExact)
{
    const size_t n = 100003;
    std::vector<std::vector<float>> orders(5, std::vector<float>(n));
    for (size_t i = 0; i < n; i++) {
        orders[0][i] = static_cast<float>(i);                                       // sorted
        orders[1][i] = static_cast<float>(n - i);                                   // reversed
        orders[2][i] = 5.0f;                                                        // constant
        orders[3][i] = static_cast<float>(i < n / 2 ? i : n - i);                   // organ pipe
        orders[4][i] = static_cast<float>(i % 2 ? static_cast<double>(i) : -0.0);   // half zeros, both signs
    }
    orders[4][7] = 0.0f;
    for (size_t k = 0; k < orders.size(); k++)
        expect_percentiles(orders[k], 1, 99, "order " + std::to_string(k));
}

TEST(Normalization, OneVoxelAndAConstantVolumeBecomeZero)
{
    for (const std::vector<float> &x : {std::vector<float>{42.0f}, std::vector<float>(50, -3.5f)}) {
        const rm_norm_params p = compute(rm_normalization_percentile(1, 99), x);
        EXPECT_EQ(p.offset, x[0]);
        EXPECT_EQ(p.scale, 0.0); // hi == lo: no spread between the bounds
        std::vector<float> y(x.size(), 7.0f);
        rm_normalize(&p, x.data(), y.data(), static_cast<int64_t>(x.size()));
        for (float v : y) {
            EXPECT_EQ(v, 0.0f);
            EXPECT_FALSE(std::signbit(v));
        }
        const rm_norm_params z = compute(rm_normalization_zscore(), x); // centred only
        EXPECT_EQ(z.offset, x[0]);
        EXPECT_EQ(z.scale, 1.0);
        EXPECT_EQ(z.clip, 0);
    }
}

TEST(Normalization, PercentileTransformClipsToTheUnitInterval)
{
    std::vector<float> x(1000);
    for (size_t i = 0; i < x.size(); i++)
        x[i] = static_cast<float>(std::sin(static_cast<double>(i)) * 50.0 + 10.0);
    const rm_norm_params p = compute(rm_normalization_percentile(5, 95), x);
    const double lo = numpy_percentile(x, 5), hi = numpy_percentile(x, 95);
    std::vector<float> y(x.size());
    rm_normalize(&p, x.data(), y.data(), static_cast<int64_t>(x.size()));
    size_t low = 0, high = 0;
    for (size_t i = 0; i < x.size(); i++) {
        const double want = std::min(1.0, std::max(0.0, (x[i] - lo) / (hi - lo))); // numpy's np.clip((x-lo)/(hi-lo))
        EXPECT_NEAR(y[i], want, 1e-7) << i;
        EXPECT_TRUE(y[i] >= 0.0f && y[i] <= 1.0f && !std::signbit(y[i])) << i;
        low += y[i] == 0.0f;
        high += y[i] == 1.0f;
    }
    EXPECT_GE(low, 50u); // 5% of the voxels lie at or below p5
    EXPECT_GE(high, 50u);
}

TEST(Normalization, ZScoreIsTheNaiveDoubleLoopBitForBit)
{
    std::vector<float> x = random_volume(12345, 9, 0);
    double sum = 0.0;
    for (float v : x)
        sum += v;
    const double mean = sum / static_cast<double>(x.size());
    double ss = 0.0;
    for (float v : x)
        ss += (v - mean) * (v - mean);
    const double sd = std::sqrt(ss / static_cast<double>(x.size()));
    const rm_norm_params p = compute(rm_normalization_zscore(), x);
    EXPECT_EQ(p.offset, mean);
    EXPECT_EQ(p.scale, 1.0 / sd);
    EXPECT_EQ(p.clip, 0);
    std::vector<float> want(x.size()), got(x.size());
    for (size_t i = 0; i < x.size(); i++)
        want[i] = static_cast<float>((x[i] - mean) * (1.0 / sd));
    rm_normalize(&p, x.data(), got.data(), static_cast<int64_t>(x.size()));
    EXPECT_TRUE(rmtest::bit_identical(got, want));
    rm_normalize(&p, x.data(), x.data(), static_cast<int64_t>(x.size())); // in place
    EXPECT_TRUE(rmtest::bit_identical(x, want));
}

TEST(Normalization, NonFiniteVoxelsAreRefusedByPercentiles)
{
    Ctx ctx;
    const rm_normalization method = rm_normalization_percentile(1, 99);
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        std::vector<float> x(20, 1.0f);
        x[13] = bad;
        rm_norm_params p;
        EXPECT_EQ(rm_normalization_compute(ctx, &method, x.data(), 20, &p), RM_ERR_ARGUMENT);
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find("voxel 13"), std::string::npos) << rm_ctx_error(ctx);
    }
    rm_norm_params p;
    const float one = 1.0f;
    EXPECT_EQ(rm_normalization_compute(ctx, &method, &one, 0, &p), RM_ERR_ARGUMENT);
}

TEST(Normalization, KeysOrderFloatsAsTheirValues)
{
    const float values[] = {-std::numeric_limits<float>::infinity(), -1e30f, -2.5f, -1e-40f, -0.0f, 0.0f, 1e-40f,
                            1.0f, 3e38f, std::numeric_limits<float>::infinity()};
    for (size_t i = 0; i + 1 < std::size(values); i++) {
        EXPECT_LT(rm_norm_key(values[i]), rm_norm_key(values[i + 1])) << values[i];
        const float back = rm_norm_key_value(rm_norm_key(values[i]));
        EXPECT_EQ(std::memcmp(&back, &values[i], sizeof back), 0) << values[i];
    }
    EXPECT_FALSE(rm_norm_key_finite(rm_norm_key(values[0])));
    EXPECT_TRUE(rm_norm_key_finite(rm_norm_key(3e38f)));
    EXPECT_FALSE(rm_norm_key_finite(rm_norm_key(std::numeric_limits<float>::quiet_NaN())));
}

std::string json_of(const rm_normalization &n)
{
    char *text = rm_normalization_json(&n);
    std::string s = text ? text : "";
    rm_free(text);
    return s;
}

TEST(Normalization, JsonRoundTrip)
{
    Ctx ctx;
    EXPECT_EQ(json_of(rm_normalization_zscore()), "{\"method\":\"zscore\"}");
    EXPECT_EQ(json_of(rm_normalization_percentile(1, 99)), "{\"method\":\"percentile\",\"low\":1,\"high\":99}");
    for (const rm_normalization &n : {rm_normalization_zscore(), rm_normalization_percentile(1, 99),
                                      rm_normalization_percentile(0.1, 99.9), rm_normalization_percentile(0, 100),
                                      rm_normalization_percentile(1.0 / 3.0, 2.0 / 3.0 * 100)}) {
        rm_normalization back{};
        ASSERT_EQ(rm_normalization_parse(ctx, json_of(n).c_str(), &back), RM_OK) << rm_ctx_error(ctx);
        EXPECT_EQ(back.method, n.method);
        if (n.method == RM_NORM_PERCENTILE) {
            EXPECT_EQ(back.low, n.low);
            EXPECT_EQ(back.high, n.high);
        }
    }
    rm_normalization d{};
    ASSERT_EQ(rm_normalization_parse(ctx, "{\"method\": \"percentile\"}", &d), RM_OK);
    EXPECT_EQ(d.method, RM_NORM_PERCENTILE);
    EXPECT_EQ(d.low, 1.0);
    EXPECT_EQ(d.high, 99.0);
    ASSERT_EQ(rm_normalization_parse(ctx, " { \"high\": 98, \"method\": \"percentile\" } ", &d), RM_OK);
    EXPECT_EQ(d.low, 1.0);
    EXPECT_EQ(d.high, 98.0);
}

TEST(Normalization, BadJsonIsRefusedByName)
{
    Ctx ctx;
    const struct {
        const char *json, *words;
    } cases[] = {
        {"zscore", "not a JSON object"},
        {"[\"zscore\"]", "not a JSON object"},
        {"{}", "'method'"},
        {"{\"method\": \"minmax\"}", "'method'"},
        {"{\"method\": 3}", "'method'"},
        {"{\"method\": \"zscore\", \"low\": 1}", "unknown field 'low'"},
        {"{\"method\": \"percentile\", \"lower\": 1}", "unknown field 'lower'"},
        {"{\"method\": \"percentile\", \"low\": \"1\"}", "'low' must be a number"},
        {"{\"method\": \"percentile\", \"low\": -1}", "'low'"},
        {"{\"method\": \"percentile\", \"high\": 100.5}", "'high'"},
        {"{\"method\": \"percentile\", \"low\": 99, \"high\": 1}", "below 'high'"},
        {"{\"method\": \"percentile\", \"low\": 50, \"high\": 50}", "below 'high'"},
        {"{\"method\": \"percentile\", \"low\": 1, \"low\": 2}", "'low' is given twice"},
    };
    for (const auto &c : cases) {
        rm_normalization n = rm_normalization_zscore();
        EXPECT_EQ(rm_normalization_parse(ctx, c.json, &n), RM_ERR_ARGUMENT) << c.json;
        EXPECT_NE(std::string(rm_ctx_error(ctx)).find(c.words), std::string::npos) << c.json << ": "
                                                                                   << rm_ctx_error(ctx);
        EXPECT_EQ(n.method, RM_NORM_ZSCORE) << c.json << ": changed on failure";
    }
    rm_normalization nan = rm_normalization_percentile(std::nan(""), 99);
    EXPECT_EQ(rm_normalization_validate(ctx, &nan), RM_ERR_ARGUMENT);
    rm_model *none = nullptr;
    EXPECT_EQ(rm_model_set_normalization(ctx, none, &nan), RM_ERR_ARGUMENT);
}

// A tiny model, its files in both forms in a scratch folder.
struct Files {
    Ctx ctx;
    std::vector<rm_task> tasks{rm_task_make("a", RM_TASK_REGRESSION), rm_task_make("b", RM_TASK_BINARY)};
    rm_model *model = nullptr;
    std::filesystem::path dir;
    Files()
    {
        rm_config cfg = rm_config_lite(tasks.data(), 2);
        cfg.base_channels = 2;
        cfg.levels = 1;
        EXPECT_EQ(rm_model_create(ctx, &cfg, 1, &model), RM_OK);
        dir = std::filesystem::temp_directory_path() / ("repmode-normalize-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
    }
    ~Files()
    {
        rm_model_free(model);
        std::filesystem::remove_all(dir);
    }
    std::string path(const char *name) const { return (dir / name).string(); }
};

TEST(Normalization, AModelCarriesItsMethodThroughBothFileForms)
{
    Files f;
    rm_normalization n{};
    ASSERT_EQ(rm_model_normalization(f.ctx, f.model, &n), RM_OK);
    EXPECT_EQ(n.method, RM_NORM_ZSCORE); // the default, official

    const rm_normalization set = rm_normalization_percentile(2, 98);
    ASSERT_EQ(rm_model_set_normalization(f.ctx, f.model, &set), RM_OK);
    ASSERT_EQ(rm_model_save(f.ctx, f.model, f.path("m.safetensors").c_str()), RM_OK) << rm_ctx_error(f.ctx);
    ASSERT_EQ(rm_model_save_deploy(f.ctx, f.model, nullptr, 0, f.path("d.safetensors").c_str()), RM_OK);

    rm_model *loaded = nullptr;
    ASSERT_EQ(rm_model_load(f.ctx, f.path("m.safetensors").c_str(), &loaded), RM_OK) << rm_ctx_error(f.ctx);
    n = rm_normalization_zscore();
    ASSERT_EQ(rm_model_normalization(f.ctx, loaded, &n), RM_OK);
    EXPECT_EQ(n.method, RM_NORM_PERCENTILE);
    EXPECT_EQ(n.low, 2.0);
    EXPECT_EQ(n.high, 98.0);
    rm_model_free(loaded);

    for (const char *file : {"m.safetensors", "d.safetensors"}) {
        rm_deploy *d = nullptr;
        ASSERT_EQ(rm_deploy_load(f.ctx, f.path(file).c_str(), "b", &d), RM_OK) << rm_ctx_error(f.ctx);
        n = rm_normalization_zscore();
        ASSERT_EQ(rm_deploy_normalization(f.ctx, d, &n), RM_OK);
        EXPECT_EQ(n.method, RM_NORM_PERCENTILE) << file;
        EXPECT_EQ(n.low, 2.0) << file;
        rm_deploy_free(d);
    }
    rm_deploy *d = nullptr;
    ASSERT_EQ(rm_deploy_create(f.ctx, f.model, 0, &d), RM_OK);
    n = rm_normalization_zscore();
    ASSERT_EQ(rm_deploy_normalization(f.ctx, d, &n), RM_OK);
    EXPECT_EQ(n.method, RM_NORM_PERCENTILE);
    rm_deploy_free(d);
}

TEST(Normalization, AFileWithAnUnknownMethodIsRefusedWhenRead)
{
    Files f;
    const rm_normalization set = rm_normalization_percentile(1, 99);
    ASSERT_EQ(rm_model_set_normalization(f.ctx, f.model, &set), RM_OK);
    const std::string path = f.path("bad.safetensors");
    ASSERT_EQ(rm_model_save(f.ctx, f.model, path.c_str()), RM_OK);
    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    const size_t at = bytes.find("percentile");
    ASSERT_NE(at, std::string::npos);
    bytes.replace(at, 10, "percentiel"); // same length: the header stays valid JSON
    std::ofstream(path, std::ios::binary) << bytes;
    rm_model *m = nullptr;
    EXPECT_EQ(rm_model_load(f.ctx, path.c_str(), &m), RM_ERR_FORMAT);
    EXPECT_NE(std::string(rm_ctx_error(f.ctx)).find("repmode.normalization: 'method'"), std::string::npos)
        << rm_ctx_error(f.ctx);
    rm_deploy *d = nullptr;
    EXPECT_EQ(rm_deploy_load(f.ctx, path.c_str(), "a", &d), RM_ERR_FORMAT);
    rm_model_info info;
    EXPECT_EQ(rm_model_info_read(f.ctx, path.c_str(), &info), RM_ERR_FORMAT);
}

} // namespace
