// RFC 4180 text tables (docs/cli.md §4.2): the data CSVs of train and the manifests of batch.
#include "csv_table.h"

#include <cstddef>

#include "cli.h"
#include "utf8.h"

namespace repmode::cli {

namespace {


// 1 when s[i] ends a line: LF, CR not followed by LF (CRLF ends at its LF).
bool ends_line(const std::string &s, size_t i)
{
    return s[i] == '\n' || (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n'));
}

// Refuses text that is not UTF-8 or holds a NUL byte, naming the line.
void check_text(const std::string &text, size_t begin, const std::string &csv)
{
    int line = 1;
    for (size_t i = begin; i < text.size();) {
        const size_t n = utf8_length(text, i);
        if (n == 0)
            throw Failure(csv + " line " + std::to_string(line) + ": not UTF-8 text (save the CSV as UTF-8)",
                          kBadInput);
        if (text[i] == '\0')
            throw Failure(csv + " line " + std::to_string(line) + ": a NUL byte (the CSV must be text)", kBadInput);
        line += ends_line(text, i);
        i += n;
    }
}

std::string trim(const std::string &s)
{
    const char *space = " \t\r\n";
    const size_t a = s.find_first_not_of(space);
    return a == std::string::npos ? std::string() : s.substr(a, s.find_last_not_of(space) - a + 1);
}

const char *const kStrayQuote = "a stray quote (quote the whole field, and double the quotes inside it)";

} // namespace

std::vector<CsvRecord> read_csv_records(const std::string &text, const std::string &csv)
{
    const size_t begin = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
    check_text(text, begin, csv);
    std::vector<CsvRecord> records;
    const size_t n = text.size();
    int line = 1;
    size_t i = begin;
    const auto is_end = [&](size_t k) { return k == n || text[k] == ',' || text[k] == '\r' || text[k] == '\n'; };
    while (i < n) {
        CsvRecord r{line, {}};
        const auto fail = [&](const std::string &why) {
            throw Failure(csv + " line " + std::to_string(r.line) + ": " + why, kBadInput);
        };
        for (;;) {
            std::string field;
            size_t j = i;
            while (j < n && text[j] == ' ')
                j++;
            if (j < n && text[j] == '"') {
                for (i = j + 1;; i++) {
                    if (i == n)
                        fail("a quoted field is not closed");
                    if (text[i] == '"' && (i + 1 == n || text[i + 1] != '"'))
                        break;
                    line += ends_line(text, i);
                    field += text[i];
                    i += text[i] == '"'; // "" is one quote
                }
                if (!is_end(++i))
                    fail(kStrayQuote);
            } else {
                for (; !is_end(i); i++) {
                    if (text[i] == '"')
                        fail(kStrayQuote);
                    field += text[i];
                }
            }
            r.fields.push_back(trim(field));
            if (i == n || text[i] != ',')
                break;
            i++;
        }
        if (i < n) { // the line end: LF, CRLF or CR
            i += text[i] == '\r' && i + 1 < n && text[i + 1] == '\n' ? 2 : 1;
            line++;
        }
        if (r.fields.size() > 1 || !r.fields[0].empty())
            records.push_back(std::move(r));
    }
    return records;
}

std::string resolve_csv_path(const std::string &csv, const std::string &path)
{
    const size_t slash = csv.find_last_of('/');
    const std::string folder = slash == std::string::npos ? std::string(".") : csv.substr(0, slash);
    return path.empty() || path[0] == '/' ? path : folder + "/" + path;
}


} // namespace repmode::cli
