// The safetensors container: round trips, byte-exact rewriting, a file written by hand (F16 and BF16 widened),
// every malformed case refused with a clear message, truncated and corrupted files, and a writer that never leaves
// a partial or temporary file behind.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using rmtest::Ctx;

// A fresh directory under the system's temporary folder, removed with everything in it.
class TempDir {
  public:
    TempDir()
    {
        std::string tmpl = (fs::temp_directory_path() / "repmode-st-XXXXXX").string();
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        const char *made = mkdtemp(buf.data());
        EXPECT_NE(made, nullptr);
        path_ = made ? made : "";
    }
    ~TempDir()
    {
        std::error_code ec;
        if (!path_.empty())
            fs::remove_all(path_, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;

    std::string file(const std::string &name) const { return path_ + "/" + name; }
    // The names of the files in the directory.
    std::vector<std::string> list() const
    {
        std::vector<std::string> names;
        for (const auto &e : fs::directory_iterator(path_))
            names.push_back(e.path().filename().string());
        return names;
    }

  private:
    std::string path_;
};

std::string read_bytes(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string &path, const std::string &bytes)
{
    std::remove(path.c_str()); // a new file, not a truncated one: ext4 flushes those on close, which is slow
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good());
}

std::string le64(uint64_t v)
{
    std::string s(8, '\0');
    for (int i = 0; i < 8; i++)
        s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
    return s;
}

// A safetensors file made by hand: the length, the header text as given, the data bytes.
std::string craft(const std::string &header, const std::string &data = "")
{
    return le64(header.size()) + header + data;
}

template <class T> std::string bytes_of(const std::vector<T> &v)
{
    std::string s(v.size() * sizeof(T), '\0');
    if (!v.empty())
        std::memcpy(&s[0], v.data(), s.size());
    return s;
}

std::string u16le(const std::vector<uint16_t> &v)
{
    std::string s;
    for (uint16_t h : v) {
        s.push_back(static_cast<char>(h & 0xFF));
        s.push_back(static_cast<char>(h >> 8));
    }
    return s;
}

uint32_t bits_of(float f)
{
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

bool has(const std::string &haystack, const std::string &needle) { return haystack.find(needle) != std::string::npos; }

rm_st_entry make_entry(const char *name, rm_st_dtype dtype, std::vector<int64_t> shape, const void *data)
{
    rm_st_entry e{};
    e.name = name;
    e.dtype = dtype;
    e.ndim = static_cast<int>(shape.size());
    for (size_t i = 0; i < shape.size() && i < RM_ST_MAX_DIMS; i++)
        e.shape[i] = shape[i];
    e.data = data;
    return e;
}

// Frees the file when the test ends, whatever happens.
struct FileGuard {
    rm_st_file *f = nullptr;
    ~FileGuard() { rm_st_free(f); }
};

TEST(Safetensors, RoundTripKeepsOrderShapesValuesAndMetadata)
{
    TempDir dir;
    Ctx ctx(1);
    std::vector<float> w(2 * 3 * 4);
    rmtest::fill_uniform(w, 7);
    std::vector<int64_t> idx = {-3, 0, 5, int64_t(1) << 40};
    float scalar = 0.125f;
    std::vector<rm_st_entry> in = {
        make_entry("encoder.conv.weight", RM_ST_F32, {2, 3, 4}, w.data()),
        make_entry("steps", RM_ST_I64, {4}, idx.data()),
        make_entry("alpha", RM_ST_F32, {}, &scalar),
        make_entry("empty", RM_ST_F32, {0, 3}, nullptr), // no elements, so no data needed
        make_entry("a.b", RM_ST_F32, {1, 1, 1, 1, 1, 1, 1, 2}, w.data()),
    };
    const char *keys[] = {"repmode.format", "repmode.config", "zz"};
    const char *values[] = {"1", "{\"features\": [32, 64], \"name\": \"caf\xc3\xa9\"}", ""};
    std::string path = dir.file("model.safetensors");
    ASSERT_EQ(rm_st_write(ctx, path.c_str(), in.data(), in.size(), keys, values, 3), RM_OK) << rm_ctx_error(ctx);

    FileGuard g;
    ASSERT_EQ(rm_st_read(ctx, path.c_str(), &g.f), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(rm_st_count(g.f), in.size());
    for (size_t i = 0; i < in.size(); i++) {
        const rm_st_entry *e = rm_st_at(g.f, i);
        ASSERT_NE(e, nullptr);
        SCOPED_TRACE(in[i].name);
        EXPECT_STREQ(e->name, in[i].name);
        EXPECT_EQ(e->dtype, in[i].dtype);
        ASSERT_EQ(e->ndim, in[i].ndim);
        for (int k = 0; k < e->ndim; k++)
            EXPECT_EQ(e->shape[k], in[i].shape[k]);
        EXPECT_EQ(rm_st_numel(e), rm_st_numel(&in[i]));
        ASSERT_NE(e->data, nullptr);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(e->data) % (e->dtype == RM_ST_I64 ? 8 : 4), 0u);
        size_t bytes = static_cast<size_t>(rm_st_numel(e)) * (e->dtype == RM_ST_I64 ? 8 : 4);
        if (bytes) {
            EXPECT_EQ(std::memcmp(e->data, in[i].data, bytes), 0);
        }
        EXPECT_EQ(rm_st_find(g.f, in[i].name), e);
    }
    EXPECT_EQ(rm_st_at(g.f, in.size()), nullptr);
    EXPECT_EQ(rm_st_numel(rm_st_find(g.f, "alpha")), 1);
    EXPECT_EQ(*static_cast<const float *>(rm_st_find(g.f, "alpha")->data), 0.125f);
    EXPECT_EQ(static_cast<const int64_t *>(rm_st_find(g.f, "steps")->data)[3], int64_t(1) << 40);
    EXPECT_EQ(rm_st_find(g.f, "a"), nullptr);
    EXPECT_EQ(rm_st_find(g.f, "A.B"), nullptr);

    ASSERT_EQ(rm_st_metadata_count(g.f), 3u);
    for (size_t i = 0; i < 3; i++) {
        EXPECT_STREQ(rm_st_metadata_key(g.f, i), keys[i]);
        EXPECT_STREQ(rm_st_metadata(g.f, keys[i]), values[i]);
    }
    EXPECT_EQ(rm_st_metadata_key(g.f, 3), nullptr);
    EXPECT_EQ(rm_st_metadata(g.f, "repmode.form"), nullptr);
}

TEST(Safetensors, WriteReadWriteGivesIdenticalBytes)
{
    TempDir dir;
    Ctx ctx(1);
    std::vector<float> a(5 * 7);
    rmtest::fill_uniform(a, 3);
    std::vector<int64_t> b = {1, 2, 3};
    float s = -1.0f;
    std::vector<rm_st_entry> in = {make_entry("z.last", RM_ST_F32, {5, 7}, a.data()),
                                   make_entry("b", RM_ST_I64, {3}, b.data()), make_entry("s", RM_ST_F32, {}, &s)};
    const char *keys[] = {"repmode.form", "quote\"and\\slash\n"};
    const char *values[] = {"training", "\t\x01 tab and control"};
    std::string first = dir.file("first.safetensors"), second = dir.file("second.safetensors");
    ASSERT_EQ(rm_st_write(ctx, first.c_str(), in.data(), in.size(), keys, values, 2), RM_OK) << rm_ctx_error(ctx);

    FileGuard g;
    ASSERT_EQ(rm_st_read(ctx, first.c_str(), &g.f), RM_OK) << rm_ctx_error(ctx);
    std::vector<rm_st_entry> again;
    for (size_t i = 0; i < rm_st_count(g.f); i++)
        again.push_back(*rm_st_at(g.f, i));
    std::vector<const char *> k2, v2;
    for (size_t i = 0; i < rm_st_metadata_count(g.f); i++) {
        k2.push_back(rm_st_metadata_key(g.f, i));
        v2.push_back(rm_st_metadata(g.f, k2.back()));
    }
    ASSERT_EQ(rm_st_write(ctx, second.c_str(), again.data(), again.size(), k2.data(), v2.data(), k2.size()), RM_OK)
        << rm_ctx_error(ctx);
    std::string x = read_bytes(first), y = read_bytes(second);
    EXPECT_FALSE(x.empty());
    EXPECT_EQ(x, y);
}

TEST(Safetensors, WrittenBytesFollowTheReferenceLayout)
{
    TempDir dir;
    Ctx ctx(1);
    std::vector<float> a = {1.0f, 2.0f};
    std::vector<int64_t> b = {7};
    std::vector<rm_st_entry> in = {make_entry("a", RM_ST_F32, {2}, a.data()),
                                   make_entry("b", RM_ST_I64, {1, 1}, b.data())};
    const char *keys[] = {"k"};
    const char *values[] = {"v"};
    std::string path = dir.file("m.safetensors");
    ASSERT_EQ(rm_st_write(ctx, path.c_str(), in.data(), in.size(), keys, values, 1), RM_OK) << rm_ctx_error(ctx);

    std::string header = "{\"__metadata__\":{\"k\":\"v\"},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                         "\"b\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[8,16]}}";
    header.append((8 - header.size() % 8) % 8, ' ');
    EXPECT_EQ(read_bytes(path), craft(header, bytes_of(a) + bytes_of(b)));

    // Nothing at all: an empty object padded to 8 bytes.
    std::string none = dir.file("none.safetensors");
    ASSERT_EQ(rm_st_write(ctx, none.c_str(), nullptr, 0, nullptr, nullptr, 0), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(read_bytes(none), craft("{}      "));
    FileGuard g;
    ASSERT_EQ(rm_st_read(ctx, none.c_str(), &g.f), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_st_count(g.f), 0u);
    EXPECT_EQ(rm_st_metadata_count(g.f), 0u);
}

TEST(Safetensors, HandWrittenFileIsReadWithHalfAndBfloatWidened)
{
    TempDir dir;
    Ctx ctx(1);
    // JSON order differs from data order, metadata sits in the middle, fields come in any order, white space and
    // a \u escape appear; the F32 and I64 tensors start at offsets that are not multiples of 4.
    const std::string header = "{\"f\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [30, 38]},\n"
                               " \"h\": {\"dtype\": \"F16\", \"shape\": [9], \"data_offsets\": [0, 18]},\n"
                               " \"__metadata__\": {\"repmode.format\": \"1\", \"note\": \"caf\\u00e9 \\\"q\\\"\"},\n"
                               " \"b\": {\"shape\": [2, 3], \"data_offsets\": [18, 30], \"dtype\": \"BF16\"},\n"
                               " \"i\": {\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [38, 46]}}   ";
    const std::string data = u16le({0x3C00, 0xC100, 0x7BFF, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x7E00, 0x8000}) +
                             u16le({0x3F80, 0xC020, 0x477F, 0x0001, 0x7F80, 0xFFC0}) +
                             bytes_of(std::vector<float>{0.5f, -3.25f}) + bytes_of(std::vector<int64_t>{-5});
    ASSERT_EQ(data.size(), 46u);
    std::string path = dir.file("hand.safetensors");
    write_bytes(path, craft(header, data));

    FileGuard g;
    ASSERT_EQ(rm_st_read(ctx, path.c_str(), &g.f), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(rm_st_count(g.f), 4u);
    const char *order[] = {"f", "h", "b", "i"};
    for (size_t i = 0; i < 4; i++) {
        EXPECT_STREQ(rm_st_at(g.f, i)->name, order[i]);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(rm_st_at(g.f, i)->data) % (i == 3 ? 8 : 4), 0u);
    }
    ASSERT_EQ(rm_st_metadata_count(g.f), 2u);
    EXPECT_STREQ(rm_st_metadata_key(g.f, 0), "repmode.format");
    EXPECT_STREQ(rm_st_metadata(g.f, "note"), "caf\xc3\xa9 \"q\"");

    const rm_st_entry *h = rm_st_find(g.f, "h");
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->dtype, RM_ST_F32);
    ASSERT_EQ(h->ndim, 1);
    EXPECT_EQ(h->shape[0], 9);
    const float *hv = static_cast<const float *>(h->data);
    const float inf = std::numeric_limits<float>::infinity();
    EXPECT_EQ(hv[0], 1.0f);
    EXPECT_EQ(hv[1], -2.5f);
    EXPECT_EQ(hv[2], 65504.0f);
    EXPECT_EQ(hv[3], std::ldexp(1.0f, -24)); // the smallest subnormal
    EXPECT_EQ(hv[4], std::ldexp(1023.0f, -24)); // the largest subnormal
    EXPECT_EQ(hv[5], inf);
    EXPECT_EQ(hv[6], -inf);
    EXPECT_TRUE(std::isnan(hv[7]));
    EXPECT_EQ(bits_of(hv[8]), 0x80000000u); // -0

    const rm_st_entry *b = rm_st_find(g.f, "b");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->dtype, RM_ST_F32);
    ASSERT_EQ(b->ndim, 2);
    EXPECT_EQ(b->shape[0], 2);
    EXPECT_EQ(b->shape[1], 3);
    const float *bv = static_cast<const float *>(b->data);
    EXPECT_EQ(bv[0], 1.0f);
    EXPECT_EQ(bv[1], -2.5f);
    EXPECT_EQ(bv[2], 65280.0f); // the F16 maximum 65504 has no BF16; this is the nearest below
    EXPECT_EQ(bv[3], std::ldexp(1.0f, -133)); // a subnormal F32
    EXPECT_EQ(bv[4], inf);
    EXPECT_TRUE(std::isnan(bv[5]));

    const rm_st_entry *f = rm_st_find(g.f, "f");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(static_cast<const float *>(f->data)[0], 0.5f);
    EXPECT_EQ(static_cast<const float *>(f->data)[1], -3.25f);
    const rm_st_entry *i = rm_st_find(g.f, "i");
    ASSERT_NE(i, nullptr);
    EXPECT_EQ(i->dtype, RM_ST_I64);
    EXPECT_EQ(i->ndim, 0);
    EXPECT_EQ(rm_st_numel(i), 1);
    EXPECT_EQ(*static_cast<const int64_t *>(i->data), -5);
}

TEST(Safetensors, FileWithoutMetadataHasNone)
{
    TempDir dir;
    Ctx ctx(1);
    std::string path = dir.file("plain.safetensors");
    write_bytes(path, craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                            bytes_of(std::vector<float>{3.0f})));
    FileGuard g;
    ASSERT_EQ(rm_st_read(ctx, path.c_str(), &g.f), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(rm_st_metadata_count(g.f), 0u);
    EXPECT_EQ(rm_st_metadata_key(g.f, 0), nullptr);
    EXPECT_EQ(rm_st_metadata(g.f, "repmode.format"), nullptr);
    ASSERT_EQ(rm_st_count(g.f), 1u);
    EXPECT_EQ(*static_cast<const float *>(rm_st_at(g.f, 0)->data), 3.0f);
}

struct BadFile {
    const char *what;
    std::string bytes;
    std::vector<std::string> needles; // each must appear in the message
};

std::string f32_entry(const std::string &name, const std::string &shape, const std::string &offsets)
{
    return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

TEST(Safetensors, MalformedFilesAreRefusedWithAMessageNamingTheProblem)
{
    const std::string d4(4, '\0'), d8(8, '\0'), d12(12, '\0');
    const std::string ok_a = f32_entry("a", "[1]", "[0,4]");
    const std::vector<BadFile> cases = {
        {"shorter than 8 bytes", "abc", {"truncated", "3 bytes"}},
        {"header length beyond the file", le64(4000) + std::string(120, ' '),
         {"truncated: header says 4000 bytes, file has 120 after the length"}},
        {"invalid JSON", craft("{\"a\": {"), {"not valid JSON"}},
        {"empty header", craft(""), {"not valid JSON"}},
        {"not UTF-8", craft("{\"a\xff\":1}"), {"UTF-8", "byte 3"}},
        {"overlong UTF-8", craft("{\"a\xc0\xaf\":1}"), {"UTF-8"}},
        {"raw control character in a string", craft("{\"a\x01\":1}"), {"control character"}},
        {"control character outside strings", craft("{\x01}"), {"control character"}},
        {"escaped NUL", craft("{\"a\\u0000b\":1}"), {"\\u0000"}},
        {"content after the object", craft("{} x"), {"after the JSON value", "byte 3"}},
        {"header not an object", craft("[1, 2]"), {"not a JSON object"}},
        {"entry not an object", craft("{\"a\": 3}"), {"'a'", "not a JSON object"}},
        {"missing dtype", craft("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", d4), {"'a'", "missing \"dtype\""}},
        {"dtype not a string", craft("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", d4),
         {"'a'", "\"dtype\" is not a string"}},
        {"missing shape", craft("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", d4),
         {"'a'", "missing \"shape\""}},
        {"missing data_offsets", craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", d4),
         {"'a'", "missing \"data_offsets\""}},
        {"field twice", craft("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,4]}}", d4),
         {"'a'", "\"dtype\" appears twice"}},
        {"data_offsets not a pair", craft("{" + f32_entry("a", "[1]", "[0,4,8]") + "}", d4),
         {"'a'", "\"data_offsets\" is not an array [begin, end]"}},
        {"data_offsets negative", craft("{" + f32_entry("a", "[1]", "[-4,0]") + "}", d4),
         {"'a'", "begin (-4) is negative"}},
        {"data_offsets begin after end", craft("{" + f32_entry("a", "[0]", "[4,0]") + "}", d4),
         {"'a'", "[4, 0] end before they begin"}},
        {"offsets out of bounds", craft("{" + f32_entry("a", "[2]", "[0,8]") + "}", d4),
         {"'a'", "[0, 8] are out of bounds", "4 bytes"}},
        {"overlapping entries",
         craft("{" + f32_entry("a", "[2]", "[0,8]") + "," + f32_entry("b", "[2]", "[4,12]") + "}", d12),
         {"'a' [0, 8] and 'b' [4, 12] overlap"}},
        {"a gap in the buffer", craft("{" + ok_a + "," + f32_entry("b", "[1]", "[8,12]") + "}", d12),
         {"gap", "[4, 8)", "'b'"}},
        {"bytes after the last tensor", craft("{" + ok_a + "}", d8), {"gap", "[4, 8)"}},
        {"byte length not numel times size",
         craft("{" + f32_entry("gate.weight", "[5,12]", "[0,12]") + "}", d12),
         {"tensor 'gate.weight': data_offsets [0, 12] hold 12 bytes, shape (5, 12) of F32 needs 240"}},
        {"F64 dtype", craft("{\"x\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", d8),
         {"'x'", "dtype 'F64' is not supported"}},
        {"U8 dtype", craft("{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", d4),
         {"'x'", "dtype 'U8' is not supported"}},
        {"unknown dtype", craft("{\"x\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", d4),
         {"'x'", "dtype 'f32' is not supported"}},
        {"negative shape", craft("{" + f32_entry("a", "[2,-3]", "[0,4]") + "}", d4),
         {"'a'", "shape dimension 1 (-3) is negative"}},
        {"fractional shape", craft("{" + f32_entry("a", "[1.5]", "[0,4]") + "}", d4),
         {"'a'", "shape dimension 0 (1.5) is not an integer"}},
        {"shape of strings", craft("{" + f32_entry("a", "[\"1\"]", "[0,4]") + "}", d4),
         {"'a'", "shape dimension 0 is not a number"}},
        {"shape not an array", craft("{" + f32_entry("a", "1", "[0,4]") + "}", d4),
         {"'a'", "\"shape\" is not an array"}},
        {"shape beyond 2^53", craft("{" + f32_entry("a", "[9007199254740993]", "[0,4]") + "}", d4),
         {"'a'", "too large"}},
        {"element count overflows",
         craft("{" + f32_entry("a", "[4503599627370496,4503599627370496]", "[0,4]") + "}", d4),
         {"'a'", "too many elements"}},
        {"too many dimensions", craft("{" + f32_entry("a", "[1,1,1,1,1,1,1,1,1]", "[0,4]") + "}", d4),
         {"'a'", "9 dimensions"}},
        {"metadata not an object", craft("{\"__metadata__\":\"x\"}"), {"\"__metadata__\" is not a JSON object"}},
        {"metadata value not a string", craft("{\"__metadata__\":{\"ok\":\"1\",\"steps\":100}}"),
         {"metadata 'steps' is not a string"}},
        {"metadata twice", craft("{\"__metadata__\":{},\"__metadata__\":{}}"), {"\"__metadata__\" appears twice"}},
        {"duplicate metadata key", craft("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"),
         {"duplicate metadata key 'k'"}},
        {"duplicate name", craft("{" + ok_a + "," + f32_entry("a", "[1]", "[4,8]") + "}", d8),
         {"duplicate tensor name 'a'"}},
        {"empty name", craft("{" + f32_entry("", "[1]", "[0,4]") + "}", d4), {"empty name"}},
    };
    TempDir dir;
    Ctx ctx(1);
    std::string path = dir.file("model.safetensors");
    for (const BadFile &c : cases) {
        SCOPED_TRACE(c.what);
        write_bytes(path, c.bytes);
        rm_st_file *f = reinterpret_cast<rm_st_file *>(&ctx); // must be reset to NULL
        EXPECT_EQ(rm_st_read(ctx, path.c_str(), &f), RM_ERR_FORMAT);
        EXPECT_EQ(f, nullptr);
        std::string msg = rm_ctx_error(ctx);
        EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
        for (const std::string &needle : c.needles)
            EXPECT_TRUE(has(msg, needle)) << "message: " << msg << "\nexpected: " << needle;
    }
}

TEST(Safetensors, HeaderLongerThanTheLimitIsRefused)
{
    TempDir dir;
    Ctx ctx(1);
    std::string path = dir.file("huge.safetensors");
    const uint64_t n = uint64_t(RM_ST_MAX_HEADER_BYTES) + 8;
    write_bytes(path, le64(n));
    ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(8 + n)), 0); // sparse: the length fits the file
    rm_st_file *f = nullptr;
    EXPECT_EQ(rm_st_read(ctx, path.c_str(), &f), RM_ERR_FORMAT);
    EXPECT_EQ(f, nullptr);
    EXPECT_TRUE(has(rm_ctx_error(ctx), "exceeds the limit")) << rm_ctx_error(ctx);
}

TEST(Safetensors, MissingFileOrFolderIsAnIoError)
{
    TempDir dir;
    Ctx ctx(1);
    rm_st_file *f = nullptr;
    std::string missing = dir.file("absent.safetensors");
    EXPECT_EQ(rm_st_read(ctx, missing.c_str(), &f), RM_ERR_IO);
    EXPECT_EQ(f, nullptr);
    EXPECT_TRUE(has(rm_ctx_error(ctx), missing + ": cannot open")) << rm_ctx_error(ctx);

    std::string folder = dir.file("");
    EXPECT_EQ(rm_st_read(ctx, folder.c_str(), &f), RM_ERR_IO);
    EXPECT_TRUE(has(rm_ctx_error(ctx), "not a regular file")) << rm_ctx_error(ctx);

    EXPECT_EQ(rm_st_read(ctx, nullptr, &f), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_st_read(ctx, missing.c_str(), nullptr), RM_ERR_ARGUMENT);
}

// Every prefix of a good file is refused, and no single corrupted byte crashes the reader.
TEST(Safetensors, TruncatedOrCorruptedFilesFailCleanly)
{
    TempDir dir;
    Ctx ctx(1);
    std::vector<float> a = {1, 2, 3, 4, 5, 6};
    std::vector<int64_t> b = {9, 8};
    std::vector<rm_st_entry> in = {make_entry("a", RM_ST_F32, {2, 3}, a.data()),
                                   make_entry("b", RM_ST_I64, {2}, b.data())};
    const char *keys[] = {"k"};
    const char *values[] = {"v"};
    std::string good = dir.file("good.safetensors"), bad = dir.file("bad.safetensors");
    ASSERT_EQ(rm_st_write(ctx, good.c_str(), in.data(), in.size(), keys, values, 1), RM_OK) << rm_ctx_error(ctx);
    const std::string bytes = read_bytes(good);

    for (size_t len = 0; len < bytes.size(); len++) {
        SCOPED_TRACE("prefix of " + std::to_string(len) + " bytes");
        write_bytes(bad, bytes.substr(0, len));
        rm_st_file *f = nullptr;
        EXPECT_EQ(rm_st_read(ctx, bad.c_str(), &f), RM_ERR_FORMAT);
        EXPECT_EQ(f, nullptr);
    }

    const uint64_t header_end = 8 + (static_cast<unsigned char>(bytes[0]) | static_cast<unsigned char>(bytes[1]) << 8);
    const char replacements[] = {'\0', '\xff', '"', '}', '{', '[', ']', ',', ':', '9', '-', ' ', '\\', 'e'};
    for (size_t pos = 0; pos < header_end; pos++) {
        for (char r : replacements) {
            std::string copy = bytes;
            if (copy[pos] == r)
                continue;
            copy[pos] = r;
            write_bytes(bad, copy);
            rm_st_file *f = nullptr;
            rm_status s = rm_st_read(ctx, bad.c_str(), &f);
            EXPECT_TRUE(s == RM_OK || s == RM_ERR_FORMAT) << "byte " << pos << ": " << rm_ctx_error(ctx);
            if (s == RM_OK) {
                for (size_t i = 0; i < rm_st_count(f); i++) // whatever was accepted is consistent
                    EXPECT_NE(rm_st_at(f, i)->data, nullptr);
            }
            rm_st_free(f);
        }
    }
}

TEST(Safetensors, WriterRefusesBadInputAndWritesNothing)
{
    TempDir dir;
    Ctx ctx(1);
    std::vector<float> v = {1, 2};
    struct Case {
        const char *what;
        std::vector<rm_st_entry> entries;
        std::vector<const char *> keys, values;
        const char *needle;
    };
    rm_st_entry nine = make_entry("x", RM_ST_F32, {1}, v.data());
    nine.ndim = 9;
    rm_st_entry minus = make_entry("x", RM_ST_F32, {1}, v.data());
    minus.ndim = -1;
    rm_st_entry bad_dtype = make_entry("x", RM_ST_F32, {1}, v.data());
    bad_dtype.dtype = static_cast<rm_st_dtype>(7);
    const std::vector<Case> cases = {
        {"NULL name", {make_entry(nullptr, RM_ST_F32, {2}, v.data())}, {}, {}, "entry 0 has no name"},
        {"empty name", {make_entry("", RM_ST_F32, {2}, v.data())}, {}, {}, "entry 0 has an empty name"},
        {"reserved name", {make_entry("__metadata__", RM_ST_F32, {2}, v.data())}, {}, {}, "reserved"},
        {"name not UTF-8", {make_entry("bad\xff", RM_ST_F32, {2}, v.data())}, {}, {}, "UTF-8"},
        {"ndim 9", {nine}, {}, {}, "ndim 9"},
        {"ndim -1", {minus}, {}, {}, "ndim -1"},
        {"unknown dtype", {bad_dtype}, {}, {}, "unknown dtype 7"},
        {"negative dimension", {make_entry("x", RM_ST_F32, {2, -1}, v.data())}, {}, {}, "dimension 1 is -1"},
        {"dimension beyond 2^53", {make_entry("x", RM_ST_F32, {int64_t(1) << 53}, v.data())}, {}, {}, "dimension 0"},
        {"too many elements", {make_entry("x", RM_ST_F32, {int64_t(1) << 40, int64_t(1) << 40}, v.data())}, {}, {},
         "too many elements"},
        {"NULL data", {make_entry("x", RM_ST_F32, {2}, nullptr)}, {}, {}, "'x' has 2 elements but no data"},
        {"duplicate names",
         {make_entry("x", RM_ST_F32, {1}, v.data()), make_entry("y", RM_ST_F32, {1}, v.data()),
          make_entry("x", RM_ST_F32, {2}, v.data())},
         {},
         {},
         "duplicate tensor name 'x'"},
        {"duplicate metadata keys", {}, {"k", "j", "k"}, {"1", "2", "3"}, "duplicate metadata key 'k'"},
        {"NULL metadata value", {}, {"k"}, {nullptr}, "metadata pair 0 has no value"},
        {"metadata not UTF-8", {}, {"k"}, {"\xc3("}, "UTF-8"},
    };
    std::string path = dir.file("out.safetensors");
    for (const Case &c : cases) {
        SCOPED_TRACE(c.what);
        EXPECT_EQ(rm_st_write(ctx, path.c_str(), c.entries.data(), c.entries.size(), c.keys.data(), c.values.data(),
                              c.keys.size()),
                  RM_ERR_ARGUMENT);
        EXPECT_TRUE(has(rm_ctx_error(ctx), c.needle)) << rm_ctx_error(ctx);
        EXPECT_TRUE(dir.list().empty());
    }
    EXPECT_EQ(rm_st_write(ctx, path.c_str(), nullptr, 1, nullptr, nullptr, 0), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_st_write(ctx, path.c_str(), nullptr, 0, nullptr, nullptr, 1), RM_ERR_ARGUMENT);
    EXPECT_EQ(rm_st_write(ctx, nullptr, nullptr, 0, nullptr, nullptr, 0), RM_ERR_ARGUMENT);
    EXPECT_TRUE(dir.list().empty());
}

TEST(Safetensors, WriterLeavesNothingWhenTheFolderIsMissing)
{
    TempDir dir;
    Ctx ctx(1);
    std::vector<float> v = {1, 2};
    rm_st_entry e = make_entry("x", RM_ST_F32, {2}, v.data());
    std::string path = dir.file("missing/out.safetensors");
    EXPECT_EQ(rm_st_write(ctx, path.c_str(), &e, 1, nullptr, nullptr, 0), RM_ERR_IO);
    EXPECT_TRUE(has(rm_ctx_error(ctx), path + ": cannot create")) << rm_ctx_error(ctx);
    EXPECT_FALSE(fs::exists(path));
    EXPECT_TRUE(dir.list().empty());
}

TEST(Safetensors, WriterRemovesItsTemporaryFileWhenTheRenameFails)
{
    TempDir dir;
    Ctx ctx(1);
    std::vector<float> v = {1, 2};
    rm_st_entry e = make_entry("x", RM_ST_F32, {2}, v.data());
    std::string target = dir.file("occupied");
    fs::create_directory(target);
    write_bytes(target + "/keep", "k"); // a non-empty folder cannot be renamed over
    EXPECT_EQ(rm_st_write(ctx, target.c_str(), &e, 1, nullptr, nullptr, 0), RM_ERR_IO);
    EXPECT_TRUE(has(rm_ctx_error(ctx), "cannot rename")) << rm_ctx_error(ctx);
    EXPECT_EQ(dir.list(), std::vector<std::string>{"occupied"});
    EXPECT_TRUE(fs::is_directory(target));
}

TEST(Safetensors, WriterReplacesAFileAtomicallyWithUsualPermissions)
{
    TempDir dir;
    Ctx ctx(1);
    std::string path = dir.file("model.safetensors");
    write_bytes(path, "old contents");
    std::vector<float> v = {4, 5, 6};
    rm_st_entry e = make_entry("x", RM_ST_F32, {3}, v.data());
    ASSERT_EQ(rm_st_write(ctx, path.c_str(), &e, 1, nullptr, nullptr, 0), RM_OK) << rm_ctx_error(ctx);
    EXPECT_EQ(dir.list(), std::vector<std::string>{"model.safetensors"}); // no temporary file left

    FileGuard g;
    ASSERT_EQ(rm_st_read(ctx, path.c_str(), &g.f), RM_OK) << rm_ctx_error(ctx);
    ASSERT_EQ(rm_st_count(g.f), 1u);
    EXPECT_EQ(static_cast<const float *>(rm_st_at(g.f, 0)->data)[2], 6.0f);

    mode_t mask = umask(0);
    umask(mask);
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0666 & ~mask); // as a plain fopen would create it, not mkstemp's 0600
}

TEST(Safetensors, WriterRemovesTheTemporaryFilesOfDeadWritersOnly)
{
    // A writer killed outright leaves "<path>.tmp-<pid>-XXXXXX". The next write of the same path removes those of
    // processes that no longer exist (a child that has exited and been reaped), and leaves a live one's alone.
    TempDir dir;
    Ctx ctx(1);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0)
        _exit(0);
    ASSERT_EQ(waitpid(child, nullptr, 0), child);
    const std::string path = dir.file("model.safetensors");
    const std::string dead = path + ".tmp-" + std::to_string(child) + "-aB3dE9";
    const std::string live = path + ".tmp-" + std::to_string(getppid()) + "-zZ0yY1";
    const std::string other = dir.file("other.safetensors.tmp-" + std::to_string(child) + "-aB3dE9");
    for (const std::string &f : {dead, live, other})
        write_bytes(f, "half a model");
    std::vector<float> v = {1, 2};
    rm_st_entry e = make_entry("x", RM_ST_F32, {2}, v.data());
    ASSERT_EQ(rm_st_write(ctx, path.c_str(), &e, 1, nullptr, nullptr, 0), RM_OK) << rm_ctx_error(ctx);
    EXPECT_FALSE(fs::exists(dead));
    EXPECT_TRUE(fs::exists(live));  // the parent (the test's runner) is alive
    EXPECT_TRUE(fs::exists(other)); // another output's, for its own writer to judge
    EXPECT_TRUE(fs::exists(path));
}

} // namespace
