#include "text_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "cli.h"

namespace fs = std::filesystem;

namespace repmode::cli {

std::string read_text_file(const std::string &path, const std::string &what)
{
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec)
        throw Failure("cannot read the " + what + " " + path + ": " + ec.message(), kBadInput);
    if (!fs::is_regular_file(status))
        throw Failure("the " + what + " " + path + " is not a regular file", kBadInput);
    const std::uintmax_t bytes = fs::file_size(path, ec);
    if (!ec && bytes > kMaxTextBytes)
        throw Failure("the " + what + " " + path + " holds " + std::to_string(bytes) + " bytes; at most " +
                          std::to_string(kMaxTextBytes >> 20) + " MiB are read",
                      kBadInput);
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Failure("cannot read the " + what + " " + path + ": " + std::strerror(errno), kBadInput);
    std::stringstream s;
    s << in.rdbuf();
    if (in.bad())
        throw Failure("cannot read the " + what + " " + path, kBadInput);
    return s.str();
}

} // namespace repmode::cli
