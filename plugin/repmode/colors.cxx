// Label colours and names (colors.h, docs/cli.md §4.4).
#include "colors.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "cli.h"
#include "itkRepModeLabelMapFilter.h"
#include "text_file.h"

namespace repmode::cli {

namespace {

bool integer(const std::string &s, long &v)
{
    char *end = nullptr;
    v = std::strtol(s.c_str(), &end, 10);
    return !s.empty() && *end == '\0';
}

} // namespace

ColorTable::ColorTable(const std::string &path)
{
    std::istringstream in(read_text_file(path, "colour table"));
    int number = 0;
    for (std::string line; std::getline(in, line);) {
        number++;
        line = line.substr(0, line.find('#'));
        std::istringstream fields(line);
        std::vector<std::string> f;
        for (std::string s; fields >> s;)
            f.push_back(s);
        if (f.empty())
            continue;
        auto fail = [&](const std::string &why) {
            throw Failure("the colour table " + path + ", line " + std::to_string(number) + ": " + why +
                              " (expected 'index name r g b a', colours 0 to 255)",
                          kBadInput);
        };
        if (f.size() != 5 && f.size() != 6)
            fail("has " + std::to_string(f.size()) + " fields");
        long index = 0;
        if (!integer(f[0], index) || index < 0)
            fail("'" + f[0] + "' is not a label index");
        int channel[4] = {0, 0, 0, 255};
        for (size_t c = 2; c < f.size(); c++) {
            long v = 0;
            if (!integer(f[c], v) || v < 0 || v > 255)
                fail("'" + f[c] + "' is not a colour value");
            channel[c - 2] = static_cast<int>(v);
        }
        table_[index] = {f[1], {channel[0], channel[1], channel[2], channel[3]}};
    }
    if (in.bad())
        throw Failure("cannot read the colour table " + path, kBadInput);
}

Rgba ColorTable::operator()(float value) const
{
    const long label = std::isfinite(value) ? std::lround(value) : 0;
    if (label <= 0)
        return {0, 0, 0, 0};
    const auto it = table_.find(label);
    if (it != table_.end())
        return it->second.colour;
    const auto c = itk::RepModeLabelMapFilter<>::DefaultColor(static_cast<unsigned>(label));
    return {c[0], c[1], c[2], 255};
}

std::string ColorTable::name(long label) const
{
    const auto it = table_.find(label);
    return it != table_.end() ? it->second.name : "label-" + std::to_string(label);
}

} // namespace repmode::cli
