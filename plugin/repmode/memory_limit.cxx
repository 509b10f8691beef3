#include "memory_limit.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "cli.h"

namespace repmode::cli {

namespace {

// The first number of a file such as /sys/fs/cgroup/memory.max, or `otherwise` ("max", missing, unreadable).
uint64_t number_in(const std::string &path, uint64_t otherwise)
{
    std::ifstream in(path);
    uint64_t v = 0;
    return in >> v ? v : otherwise;
}

} // namespace

uint64_t available_memory()
{
    uint64_t available = std::numeric_limits<uint64_t>::max();
    std::ifstream meminfo("/proc/meminfo");
    for (std::string key; meminfo >> key;) {
        uint64_t kib = 0;
        if (key == "MemAvailable:" && meminfo >> kib) {
            available = kib * 1024;
            break;
        }
        meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    const uint64_t none = std::numeric_limits<uint64_t>::max();
    const uint64_t limit = number_in("/sys/fs/cgroup/memory.max", none);
    if (limit != none) {
        const uint64_t used = number_in("/sys/fs/cgroup/memory.current", 0);
        available = std::min(available, limit > used ? limit - used : 0);
    }
    return available;
}

std::string byte_string(uint64_t bytes)
{
    const char *units[] = {"bytes", "kB", "MB", "GB", "TB", "PB", "EB"};
    double v = static_cast<double>(bytes);
    size_t u = 0;
    while (v >= 1000.0 && u + 1 < sizeof units / sizeof *units) {
        v /= 1000.0;
        u++;
    }
    char text[32];
    std::snprintf(text, sizeof text, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return text;
}

void check_memory(uint64_t bytes, const std::string &path, const std::string &what)
{
    const uint64_t available = available_memory();
    if (bytes > available)
        throw Failure("cannot read " + path + ": " + what + " need " + byte_string(bytes) + ", more than the " +
                          byte_string(available) + " of memory available",
                      kBadInput);
}

} // namespace repmode::cli
