#include "output_paths.h"

#include <filesystem>
#include <system_error>

#include <unistd.h>

#include "cli.h"

namespace fs = std::filesystem;

namespace repmode::cli {

void check_output_path(const std::string &path, const std::string &option)
{
    std::error_code ec;
    if (fs::is_directory(path, ec))
        throw Failure(option + ": " + path + " is a folder, not a file", kBadInput);
    // A device, FIFO or socket would be replaced by the renamed output (/dev/null by a regular file, as root).
    if (fs::exists(path, ec) && !fs::is_regular_file(path, ec))
        throw Failure(option + ": " + path + " is a device, FIFO or socket; an output must be a regular file",
                      kBadInput);
    const fs::path folder = fs::path(path).parent_path();
    const fs::path where = folder.empty() ? fs::path(".") : folder;
    if (!fs::is_directory(where, ec))
        throw Failure(option + ": cannot write " + path + ": the folder " + where.string() + " does not exist",
                      kBadInput);
    if (access(where.c_str(), W_OK | X_OK) != 0)
        throw Failure(option + ": cannot write " + path + ": the folder " + where.string() + " is not writable",
                      kBadInput);
}

void check_distinct(const std::vector<NamedPath> &outputs, const std::vector<NamedPath> &inputs)
{
    const auto key = [](const std::string &path) {
        std::error_code ec;
        const fs::path canonical = fs::weakly_canonical(fs::absolute(path), ec);
        return ec ? fs::absolute(path).lexically_normal() : canonical;
    };
    for (size_t i = 0; i < outputs.size(); i++) {
        if (outputs[i].path.empty())
            continue;
        const fs::path mine = key(outputs[i].path);
        for (size_t j = 0; j < i; j++)
            if (!outputs[j].path.empty() && key(outputs[j].path) == mine)
                throw Failure(outputs[j].option + " and " + outputs[i].option + " name the same file " +
                                  outputs[i].path + ": one would overwrite the other",
                              kBadInput);
        for (const NamedPath &in : inputs)
            if (!in.path.empty() && key(in.path) == mine)
                throw Failure(outputs[i].option + " names the input of " + in.option + ", " + in.path +
                                  ": it would be overwritten",
                              kBadInput);
    }
}

} // namespace repmode::cli
