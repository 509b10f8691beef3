// RFC 4180 text tables read as repmode reads its CSVs (docs/cli.md §4.2): UTF-8 after an optional byte-order mark,
// quoted fields ("" inside them, commas and line breaks inside quotes), LF, CRLF or CR line ends, fields trimmed of
// surrounding white space, blank records left out. The data CSVs of train and the manifests of batch.
#pragma once

#include <string>
#include <vector>

namespace repmode::cli {

// One record: where it starts (line, from 1) and its fields.
struct CsvRecord {
    int line = 0;
    std::vector<std::string> fields;
};

// The records of `text`, the content of the CSV at `csv`, its header first. A Failure (exit 1) whose message names
// `csv` and the line: text that is not UTF-8 or holds a NUL byte, a quoted field never closed, a stray quote (inside
// an unquoted field, or after a closing quote).
std::vector<CsvRecord> read_csv_records(const std::string &text, const std::string &csv);

// A path the CSV at `csv` gives: relative to the CSV's folder unless absolute; empty when not given.
std::string resolve_csv_path(const std::string &csv, const std::string &path);

} // namespace repmode::cli
