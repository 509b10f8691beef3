#include "data_csv.h"

#include "cli.h"
#include "csv_table.h"

namespace repmode::cli {

std::vector<DataRow> parse_data_csv(const std::string &text, const std::string &csv)
{
    const std::vector<CsvRecord> records = read_csv_records(text, csv);
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
        throw Failure(csv + ": the header must name the columns signal,target,task (and optionally mask)", kBadInput);

    std::vector<DataRow> rows;
    for (size_t r = 1; r < records.size(); r++) {
        const CsvRecord &rec = records[r];
        if (rec.fields.size() != header.size())
            throw Failure(csv + " line " + std::to_string(rec.line) + " has " + std::to_string(rec.fields.size()) +
                              " fields, the header " + std::to_string(header.size()),
                          kBadInput);
        const auto field = [&](int k) { return column[k] < 0 ? std::string() : rec.fields[column[k]]; };
        rows.push_back(DataRow{rec.line, resolve_csv_path(csv, field(0)), resolve_csv_path(csv, field(1)), field(2),
                               resolve_csv_path(csv, field(3))});
    }
    if (rows.empty())
        throw Failure(csv + " has no rows: it needs at least one signal,target,task row", kBadInput);
    return rows;
}

} // namespace repmode::cli
