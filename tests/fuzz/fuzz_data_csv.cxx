// libFuzzer harness: the data CSV of repmode train (plugin/repmode/data_csv.cxx). The rows it reads, written back
// with every field quoted, read again as the same rows.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli.h"
#include "data_csv.h"

namespace {

std::string quoted(const std::string &field)
{
    std::string q = "\"";
    for (char c : field)
        q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    using namespace repmode::cli;
    const std::string csv = "/data/fuzz.csv"; // absolute: resolved paths read back as themselves
    std::vector<DataRow> rows;
    try {
        rows = parse_data_csv(std::string(reinterpret_cast<const char *>(data), size), csv);
    } catch (const Failure &) {
        return 0;
    }
    std::string text = "signal,target,task,mask\r\n";
    for (const DataRow &r : rows)
        text += quoted(r.signal) + "," + quoted(r.target) + "," + quoted(r.task) + "," + quoted(r.mask) + "\n";
    const std::vector<DataRow> back = parse_data_csv(text, csv); // throws (a crash) if the rows do not read back
    if (back.size() != rows.size())
        std::abort();
    for (size_t i = 0; i < rows.size(); i++)
        if (back[i].signal != rows[i].signal || back[i].target != rows[i].target || back[i].task != rows[i].task ||
            back[i].mask != rows[i].mask || rows[i].line <= (i ? rows[i - 1].line : 1))
            std::abort();
    return 0;
}
