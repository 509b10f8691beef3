// What made an output image (docs/cli.md §1.6): a JSON record of the software and its engine, the model (its SHA-256
// and its own provenance), the tasks, every prediction parameter, the input (its SHA-256) and the date. predict
// writes it into every image it makes, `repmode info` prints it, `repmode verify` runs the prediction it describes
// again, and `repmode batch` compares it to a row's before running the row again.
#pragma once

#include <array>
#include <memory>
#include <string>

#include <cjson/cJSON.h>

#include "predict.h"

namespace repmode::cli {

// The SHA-256 of a file's bytes, as 64 lowercase hex digits; of a folder of 2D TIFF layers, the SHA-256 of the
// layers' bytes one after another in the order they are read (sorted by name). A Failure naming `path` when it
// cannot be read.
std::string sha256_of(const std::string &path);

// The date of a record, ISO 8601 in UTC to the second: now, or SOURCE_DATE_EPOCH's when that is set (reproducible
// builds' convention), so that two runs can write the same bytes.
std::string record_date();

using Json = std::unique_ptr<cJSON, void (*)(cJSON *)>;

// Parses a record's text; a Failure naming `where` when it is not a JSON object.
Json parse_record(const std::string &text, const std::string &where);

// The facts of one prediction that its record holds, gathered before it runs (the normalization's parameters are
// added once they are computed).
class PredictionRecord {
  public:
    // Hashes the model, the input and the mask of `request`; `engine` is the instruction set the core runs.
    PredictionRecord(const PredictRequest &request, const std::string &model_provenance,
                     const std::array<int64_t, 3> &patch, const std::string &engine);
    // The normalization of the input as computed: the model's method and its offset, scale and clipping.
    void set_normalization(const rm_normalization &method, const rm_norm_params &params);
    // The record of the output `role` ("prediction", "uncertainty", "labels", "segmentation") as one line of JSON.
    std::string text(const std::string &role) const;
    // The record without the fields a rerun changes (the date, the output's role, the normalization computed from
    // the input), to decide whether an existing output was made by the same request.
    Json request_part() const;

  private:
    Json root_;
};

// A record's fields that a rerun of the same request gives again: the record without "date", "output" and
// "normalization".
Json request_part(const cJSON *record);

// The dotted name of the first field where two records differ ("parameters.overlap: 0.5 against 0.25"), or empty
// when they are equal.
std::string first_difference(const cJSON *a, const cJSON *b);

// The request that a record of `repmode predict` describes, its files taken from the record unless `input`, `model`
// or `mask` names another place for them. A Failure naming the field when the record is not one of predict's.
PredictRequest request_of(const cJSON *record, const std::string &input, const std::string &model,
                          const std::string &mask);

} // namespace repmode::cli
