// The provenance records of docs/cli.md §1.6.
#include "provenance.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <openssl/evp.h>

#include "image_io.h"

namespace repmode::cli {

namespace {

namespace fs = std::filesystem;

// Seeds are 64-bit; JSON numbers hold integers exactly up to 2^53, so larger seeds are recorded as decimal text.
constexpr unsigned long long kExactInteger = 1ull << 53;

Json make(cJSON *item)
{
    if (!item)
        throw std::bad_alloc();
    return Json(item, cJSON_Delete);
}

void hash_file(EVP_MD_CTX *md, const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Failure("cannot read " + path + " to hash it", kBadInput);
    std::vector<char> buffer(1 << 20);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        if (in.gcount() > 0 && EVP_DigestUpdate(md, buffer.data(), static_cast<size_t>(in.gcount())) != 1)
            throw Failure("SHA-256 failed on " + path, kInternal);
    }
    if (in.bad())
        throw Failure("cannot read " + path + " to hash it", kBadInput);
}

// A file as a record names it: its absolute path (lexically normal, symbolic links kept: the name the user gave).
std::string absolute_name(const std::string &path)
{
    std::error_code ec;
    const fs::path p = fs::absolute(path, ec);
    return ec ? path : p.lexically_normal().string();
}

cJSON *file_entry(const std::string &path, const std::string &recorded_name)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", (recorded_name.empty() ? absolute_name(path) : recorded_name).c_str());
    cJSON_AddStringToObject(o, "sha256", sha256_of(path).c_str());
    return o;
}

const cJSON *field(const cJSON *o, const char *name, const std::string &where)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!f)
        throw Failure("the provenance has no field '" + where + name + "'", kBadInput);
    return f;
}

std::string text_field(const cJSON *o, const char *name, const std::string &where)
{
    const cJSON *f = field(o, name, where);
    if (!cJSON_IsString(f))
        throw Failure("the provenance's field '" + where + name + "' is not text", kBadInput);
    return f->valuestring;
}

double number_field(const cJSON *o, const char *name, const std::string &where)
{
    const cJSON *f = field(o, name, where);
    if (!cJSON_IsNumber(f))
        throw Failure("the provenance's field '" + where + name + "' is not a number", kBadInput);
    return f->valuedouble;
}

// A number as repmode's options read it back exactly (17 significant digits).
std::string exact(double v)
{
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

std::string value_text(const cJSON *v)
{
    std::unique_ptr<char, void (*)(void *)> t(cJSON_PrintUnformatted(v), cJSON_free);
    return t ? std::string(t.get()) : std::string("?");
}

} // namespace

std::string sha256_of(const std::string &path)
{
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX *)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1)
        throw Failure("SHA-256 is not available", kInternal);
    std::error_code ec;
    if (fs::is_directory(path, ec))
        for (const std::string &layer : layer_files(path))
            hash_file(md.get(), layer);
    else
        hash_file(md.get(), path);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(md.get(), digest, &n) != 1)
        throw Failure("SHA-256 failed on " + path, kInternal);
    static const char *const hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < n; i++) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 15];
    }
    return out;
}

std::string record_date()
{
    std::time_t t = std::time(nullptr);
    if (const char *epoch = std::getenv("SOURCE_DATE_EPOCH")) {
        char *end = nullptr;
        const long long v = std::strtoll(epoch, &end, 10);
        if (*epoch == '\0' || *end != '\0' || v < 0)
            throw Failure(std::string("SOURCE_DATE_EPOCH=") + epoch + " is not a count of seconds since 1970",
                          kBadInput);
        t = static_cast<std::time_t>(v);
    }
    std::tm utc{};
    gmtime_r(&t, &utc);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return buf;
}

Json parse_record(const std::string &text, const std::string &where)
{
    Json root(cJSON_Parse(text.c_str()), cJSON_Delete);
    if (!root || !cJSON_IsObject(root.get()))
        throw Failure(where + ": the provenance is not a JSON object", kBadInput);
    return root;
}

PredictionRecord::PredictionRecord(const PredictRequest &request, const std::string &model_provenance,
                                   const std::array<int64_t, 3> &patch, const std::string &engine)
    : root_(make(cJSON_CreateObject()))
{
    cJSON *root = root_.get();
    cJSON *software = cJSON_AddObjectToObject(root, "software");
    cJSON_AddStringToObject(software, "name", "repmode");
    cJSON_AddStringToObject(software, "version", REPMODE_VERSION);
    cJSON_AddStringToObject(software, "engine", engine.c_str());
    cJSON_AddStringToObject(software, "blas", rm_blas_core());
    cJSON_AddStringToObject(root, "via", request.via.c_str());
    cJSON_AddStringToObject(root, "output", "");
    cJSON_AddStringToObject(root, "date", (request.date.empty() ? record_date() : request.date).c_str());

    cJSON *model = file_entry(request.model, request.model_name);
    cJSON *own = model_provenance.empty() ? cJSON_CreateNull() : cJSON_Parse(model_provenance.c_str());
    cJSON_AddItemToObject(model, "provenance", own ? own : cJSON_CreateString(model_provenance.c_str()));
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddItemToObject(root, "input", file_entry(request.input, request.input_name));
    cJSON_AddItemToObject(root, "mask",
                          request.mask.empty() ? cJSON_CreateNull() : file_entry(request.mask, request.mask_name));

    cJSON *tasks = cJSON_AddArrayToObject(root, "tasks");
    std::stringstream names(request.tasks);
    for (std::string name; std::getline(names, name, ',');)
        cJSON_AddItemToArray(tasks, cJSON_CreateString(name.c_str()));

    cJSON *p = cJSON_AddObjectToObject(root, "parameters");
    const double zyx[3] = {static_cast<double>(patch[0]), static_cast<double>(patch[1]),
                           static_cast<double>(patch[2])};
    cJSON_AddItemToObject(p, "patch", cJSON_CreateDoubleArray(zyx, 3));
    cJSON_AddNumberToObject(p, "overlap", request.overlap);
    cJSON_AddStringToObject(p, "blend", request.blend.c_str());
    cJSON_AddBoolToObject(p, "tta", request.tta);
    if (request.thresholds.empty()) {
        cJSON_AddNullToObject(p, "thresholds");
    } else {
        cJSON *t = cJSON_AddArrayToObject(p, "thresholds");
        std::stringstream list(request.thresholds);
        for (std::string item; std::getline(list, item, ',');)
            cJSON_AddItemToArray(t, cJSON_CreateNumber(std::strtod(item.c_str(), nullptr)));
    }
    cJSON_AddStringToObject(p, "non_finite", request.non_finite.c_str());
    cJSON_AddNumberToObject(p, "mc_samples", request.mc_samples);
    if (request.seed <= kExactInteger)
        cJSON_AddNumberToObject(p, "seed", static_cast<double>(request.seed));
    else
        cJSON_AddStringToObject(p, "seed", std::to_string(request.seed).c_str());
    cJSON_AddNumberToObject(p, "mc_dropout", request.mc_dropout);
    cJSON_AddNumberToObject(p, "gate_noise", request.gate_noise);
    cJSON_AddNumberToObject(p, "divisions", request.divisions);
    cJSON_AddNullToObject(root, "normalization");
}

void PredictionRecord::set_normalization(const rm_normalization &method, const rm_norm_params &params)
{
    cJSON *n = cJSON_CreateObject();
    if (!n)
        throw std::bad_alloc();
    cJSON_AddStringToObject(n, "method", method.method == RM_NORM_PERCENTILE ? "percentile" : "zscore");
    if (method.method == RM_NORM_PERCENTILE) {
        cJSON_AddNumberToObject(n, "low", method.low);
        cJSON_AddNumberToObject(n, "high", method.high);
    }
    cJSON_AddNumberToObject(n, "offset", params.offset);
    cJSON_AddNumberToObject(n, "scale", params.scale);
    cJSON_AddBoolToObject(n, "clip", params.clip != 0);
    cJSON_ReplaceItemInObjectCaseSensitive(root_.get(), "normalization", n);
}

std::string PredictionRecord::text(const std::string &role) const
{
    Json copy = make(cJSON_Duplicate(root_.get(), 1));
    cJSON_ReplaceItemInObjectCaseSensitive(copy.get(), "output", cJSON_CreateString(role.c_str()));
    return value_text(copy.get());
}

Json PredictionRecord::request_part() const { return cli::request_part(root_.get()); }

Json request_part(const cJSON *record)
{
    Json copy = make(cJSON_Duplicate(record, 1));
    for (const char *derived : {"date", "output", "normalization"})
        cJSON_DeleteItemFromObjectCaseSensitive(copy.get(), derived);
    return copy;
}

std::string first_difference(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        for (const cJSON *x = a->child; x; x = x->next) {
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            if (!y)
                return std::string(x->string) + ": " + value_text(x) + " against nothing";
            const std::string d = first_difference(x, y);
            if (!d.empty())
                return std::string(x->string) + (d[0] == ':' ? "" : ".") + d;
        }
        for (const cJSON *y = b->child; y; y = y->next)
            if (!cJSON_GetObjectItemCaseSensitive(a, y->string))
                return std::string(y->string) + ": nothing against " + value_text(y);
        return "";
    }
    if (cJSON_Compare(a, b, 1))
        return "";
    return ": " + value_text(a) + " against " + value_text(b);
}

PredictRequest request_of(const cJSON *record, const std::string &input, const std::string &model,
                          const std::string &mask)
{
    const std::string via = text_field(record, "via", "");
    if (via.rfind("repmode", 0) != 0 && via != "RepModeSegmentation")
        throw Failure("the provenance was written by '" + via + "', not by a repmode prediction", kBadInput);
    PredictRequest r;
    r.via = via;
    r.date = text_field(record, "date", "");
    const cJSON *m = field(record, "model", "");
    r.model_name = text_field(m, "file", "model.");
    r.model = model.empty() ? r.model_name : model;
    const cJSON *in = field(record, "input", "");
    r.input_name = text_field(in, "file", "input.");
    r.input = input.empty() ? r.input_name : input;
    const cJSON *k = field(record, "mask", "");
    if (!cJSON_IsNull(k)) {
        r.mask_name = text_field(k, "file", "mask.");
        r.mask = mask.empty() ? r.mask_name : mask;
    }
    const cJSON *tasks = field(record, "tasks", "");
    for (const cJSON *t = tasks->child; t; t = t->next) {
        if (!cJSON_IsString(t))
            throw Failure("the provenance's field 'tasks' holds something that is not a name", kBadInput);
        r.tasks += (r.tasks.empty() ? "" : ",") + std::string(t->valuestring);
    }
    const cJSON *p = field(record, "parameters", "");
    const std::string where = "parameters.";
    const cJSON *patch = field(p, "patch", where);
    if (cJSON_GetArraySize(patch) != 3)
        throw Failure("the provenance's field 'parameters.patch' is not three sizes", kBadInput);
    for (int a = 0; a < 3; a++)
        r.patch += (a ? "," : "") + std::to_string(static_cast<long long>(cJSON_GetArrayItem(patch, a)->valuedouble));
    r.overlap = number_field(p, "overlap", where);
    r.blend = text_field(p, "blend", where);
    const cJSON *tta = field(p, "tta", where);
    if (!cJSON_IsBool(tta))
        throw Failure("the provenance's field 'parameters.tta' is not true or false", kBadInput);
    r.tta = cJSON_IsTrue(tta);
    const cJSON *thresholds = field(p, "thresholds", where);
    for (const cJSON *t = thresholds->child; t; t = t->next)
        r.thresholds += (r.thresholds.empty() ? "" : ",") + exact(t->valuedouble);
    r.non_finite = text_field(p, "non_finite", where);
    r.mc_samples = static_cast<unsigned>(number_field(p, "mc_samples", where));
    const cJSON *seed = field(p, "seed", where);
    r.seed = cJSON_IsString(seed) ? std::strtoull(seed->valuestring, nullptr, 10)
                                  : static_cast<unsigned long long>(number_field(p, "seed", where));
    r.mc_dropout = number_field(p, "mc_dropout", where);
    r.gate_noise = number_field(p, "gate_noise", where);
    r.divisions = static_cast<unsigned>(number_field(p, "divisions", where));
    return r;
}

} // namespace repmode::cli
