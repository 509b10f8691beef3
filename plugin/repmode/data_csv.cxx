#include "data_csv.h"

#include <cstddef>

#include "cli.h"

namespace repmode::cli {

namespace {

// The length of the well-formed UTF-8 sequence at s[i] (overlong forms, surrogates and code points above U+10FFFF
// are not), or 0: the bytes Python's strict 'utf-8' decoder accepts.
size_t utf8_length(const std::string &s, size_t i)
{
    const auto at = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
    const unsigned c = at(0);
    const auto cont = [&](size_t k, unsigned lo, unsigned hi) { return at(k) >= lo && at(k) <= hi; };
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return cont(1, 0x80, 0xBF) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        const unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return cont(1, lo, hi) && cont(2, 0x80, 0xBF) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        const unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return cont(1, lo, hi) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    }
    return 0;
}

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

struct Record {
    int line;
    std::vector<std::string> fields;
};

// The RFC 4180 records of text[begin..], blank ones (a single field, empty once trimmed) left out. Spaces may come
// before an opening quote, as Python's csv.reader(skipinitialspace=True) allows.
std::vector<Record> read_records(const std::string &text, size_t begin, const std::string &csv)
{
    std::vector<Record> records;
    const size_t n = text.size();
    int line = 1;
    size_t i = begin;
    const auto is_end = [&](size_t k) { return k == n || text[k] == ',' || text[k] == '\r' || text[k] == '\n'; };
    while (i < n) {
        Record r{line, {}};
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

// A path of the CSV as train reads it: relative to the CSV's folder unless absolute; empty when not given.
std::string resolve(const std::string &csv, const std::string &path)
{
    const size_t slash = csv.find_last_of('/');
    const std::string folder = slash == std::string::npos ? std::string(".") : csv.substr(0, slash);
    return path.empty() || path[0] == '/' ? path : folder + "/" + path;
}

} // namespace

std::vector<DataRow> parse_data_csv(const std::string &text, const std::string &csv)
{
    const size_t begin = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
    check_text(text, begin, csv);
    const std::vector<Record> records = read_records(text, begin, csv);
    if (records.empty())
        throw Failure(csv + " is empty: it needs a header 'signal,target,task[,mask]' and at least one row",
                      kBadInput);
    const std::vector<std::string> &header = records[0].fields;
    const char *const names[] = {"signal", "target", "task", "mask"};
    int column[4] = {-1, -1, -1, -1};
    for (size_t i = 0; i < header.size(); i++) {
        size_t k = 0;
        while (k < 4 && header[i] != names[k])
            k++;
        if (k == 4)
            throw Failure(csv + ": unknown column '" + header[i] + "' (the columns are signal,target,task[,mask])",
                          kBadInput);
        if (column[k] >= 0)
            throw Failure(csv + ": the column '" + header[i] + "' is named twice", kBadInput);
        column[k] = static_cast<int>(i);
    }
    if (column[0] < 0 || column[1] < 0 || column[2] < 0)
        throw Failure(csv + ": the header must csv the columns signal,target,task (and optionally mask)", kBadInput);

    std::vector<DataRow> rows;
    for (size_t r = 1; r < records.size(); r++) {
        const Record &rec = records[r];
        if (rec.fields.size() != header.size())
            throw Failure(csv + " line " + std::to_string(rec.line) + " has " + std::to_string(rec.fields.size()) +
                              " fields, the header " + std::to_string(header.size()),
                          kBadInput);
        const auto field = [&](int k) { return column[k] < 0 ? std::string() : rec.fields[column[k]]; };
        rows.push_back(DataRow{rec.line, resolve(csv, field(0)), resolve(csv, field(1)), field(2),
                               resolve(csv, field(3))});
    }
    if (rows.empty())
        throw Failure(csv + " has no rows: it needs at least one signal,target,task row", kBadInput);
    return rows;
}

} // namespace repmode::cli
