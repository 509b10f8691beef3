// Output paths checked before any work (docs/cli.md §1.5), so that a run that cannot write one of its outputs
// fails at once and leaves nothing, instead of failing after hours of prediction with other outputs written.
#pragma once

#include <string>
#include <vector>

namespace repmode::cli {

// A path given on the command line, with the option that named it (for messages).
struct NamedPath {
    std::string path, option;
};

// Fails when `path` is a folder or another file that is not regular (a device, FIFO or socket), or its folder does
// not exist or cannot be written.
void check_output_path(const std::string &path, const std::string &option);

// Fails when two outputs, or an output and an input, name the same file (by their canonical paths, so that
// "out.mha" and "./dir/../out.mha" or a symbolic link meet). Empty paths are options not given.
void check_distinct(const std::vector<NamedPath> &outputs, const std::vector<NamedPath> &inputs);

} // namespace repmode::cli
