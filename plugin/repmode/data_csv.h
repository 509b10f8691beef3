// The data CSV of `repmode train --data/--val` (docs/cli.md §4.2) as text: RFC 4180 records (quoted fields, ""
// inside them, commas and line breaks inside quotes, LF, CRLF or CR line ends) after an optional UTF-8 byte-order
// mark, its header mapped to the columns signal,target,task[,mask], relative paths made relative to the CSV's folder.
// Tasks and images are train's. wrapping/python/repmode/_train.py reads the same text the same way, with the same
// messages.
#pragma once

#include <string>
#include <vector>

namespace repmode::cli {

// One volume of the CSV: its fields trimmed of surrounding white space, the paths resolved; a path not given is
// empty (mask: none).
struct DataRow {
    int line = 0; // where its record starts, from 1
    std::string signal, target, task, mask;
};

// The rows of `text`, the content of the data CSV at `csv`. Throws a Failure (exit 1) whose message names `csv` and,
// for a problem in a record, its line: text that is not UTF-8 or holds a NUL byte, a quoted field never closed, a
// stray quote (inside an unquoted field, or after a closing quote), a header without signal,target,task or with
// another column, a record with another number of fields than the header, no rows.
std::vector<DataRow> parse_data_csv(const std::string &text, const std::string &csv);

} // namespace repmode::cli
