// Small text inputs (configurations, data CSVs, colour tables) read whole, within a stated limit: a device or a
// fifo (/dev/zero) would otherwise be read without end, and a huge file held in memory before any check.
#pragma once

#include <cstdint>
#include <string>

namespace repmode::cli {

// The most bytes a text input may hold.
constexpr std::uintmax_t kMaxTextBytes = 16u << 20;

// The whole of `path`, a regular file of at most kMaxTextBytes; otherwise a Failure naming `what` and the file.
std::string read_text_file(const std::string &path, const std::string &what);

} // namespace repmode::cli
