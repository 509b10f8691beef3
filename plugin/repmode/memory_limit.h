// Sizes that come from files (an image header's dimensions) checked against the memory this machine can give before
// anything is allocated (docs/cli.md §1.5): a forged or mistaken header is a clear refusal naming the file, not an
// allocation failure deep inside ITK or the kernel's out-of-memory killer.
#pragma once

#include <cstdint>
#include <string>

namespace repmode::cli {

// Bytes of memory available now: the kernel's estimate (MemAvailable), lowered to what the control group's limit
// leaves (cgroup v2 memory.max less memory.current) where one is set.
uint64_t available_memory();

// "1.5 GB" for messages.
std::string byte_string(uint64_t bytes);

// A Failure "cannot read <path>: <what> need <bytes>, more than the <available> of memory available" when `bytes`
// exceed the available memory.
void check_memory(uint64_t bytes, const std::string &path, const std::string &what);

} // namespace repmode::cli
