// Label colours and names: Slicer's colour-table text ("index name r g b [a]" lines, '#' comments, as predict
// --colors writes, docs/cli.md §4.4), else predict's default palette, so that render's overlay, its 3D view and the
// surfaces subcommand agree on what a label looks like and is called.
#pragma once

#include <map>
#include <string>

namespace repmode::cli {

struct Rgba {
    int r, g, b, a;
};

class ColorTable {
  public:
    ColorTable() = default;
    // Reads a table; a Failure (exit 1) naming the file and line for anything it cannot take.
    explicit ColorTable(const std::string &path);
    // The colour of a label value, rounded (alpha 0 for background: 0 and below, or not finite).
    Rgba operator()(float value) const;
    // The table's name of a label, else "label-<n>".
    std::string name(long label) const;

  private:
    struct Entry {
        std::string name;
        Rgba colour;
    };
    std::map<long, Entry> table_;
};

} // namespace repmode::cli
