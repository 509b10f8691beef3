#include "cli.h"
#include "interrupt.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <sstream>
#include <vector>

#include <unistd.h>

namespace repmode::cli {

Context::Context(int threads)
{
    // The library ignores a name it does not know; on the command line that is a mistake worth stopping for.
    const char *isa = std::getenv("REPMODE_ISA");
    if (isa && rm_isa_from_name(isa) < 0)
        throw Failure(std::string("REPMODE_ISA=") + isa + " names no instruction set: use portable, avx2 or avx512",
                      kBadInput);
    ctx_ = rm_ctx_create(threads);
    if (!ctx_)
        throw Failure("out of memory", kInternal);
}

Context::~Context() { rm_ctx_free(ctx_); }

void Context::check(rm_status status, const std::string &where) const
{
    if (status == RM_OK)
        return;
    const bool internal = status == RM_ERR_NOMEM || status == RM_ERR_INTERNAL;
    throw Failure((where.empty() ? "" : where + ": ") + rm_ctx_error(ctx_), internal ? kInternal : kBadInput);
}

CommandLine::CommandLine(const std::string &name, const std::string &description)
    : TCLAP::CmdLine(description, ' ', REPMODE_VERSION), name_(name),
      threads_("", "threads", "worker threads (default: all cores)", false, 0, "N", *this)
{
    setExceptionHandling(false);
}

void CommandLine::parse_or_fail(int argc, char **argv)
{
    // TCLAP names the program after argv[0]: make usage read "repmode <subcommand>".
    std::vector<std::string> args{"repmode " + name_};
    args.insert(args.end(), argv + 1, argv + argc);
    try {
        parse(args);
    } catch (const TCLAP::ArgException &e) {
        throw Failure(e.error(), kBadInput);
    }
    if (threads() < 0 || threads() > RM_MAX_THREADS)
        throw Failure("--threads " + std::to_string(threads()) + " is out of range: 0 (all cores) to " +
                          std::to_string(RM_MAX_THREADS),
                      kBadInput);
}

NonFiniteOption::NonFiniteOption(TCLAP::CmdLine &cmd)
    : arg_("", "non-finite", "non-finite input voxels (NaN, infinity): refused (default), or replaced by 0 or by the "
                             "mean of the finite voxels",
           false, "refuse", &constraint_, cmd)
{
}

int run_reporting_failures(const char *program, int (*body)(int, char **), int argc, char **argv)
{
    catch_interrupts();
    try {
        try {
            return body(argc, argv);
        } catch (const Failure &) {
            stop_if_interrupted(); // the failure a signal caused (e.g. an aborted write) is the interruption
            throw;
        }
    } catch (const TCLAP::ExitException &e) {
        return e.getExitStatus(); // --help, --version
    } catch (const Failure &e) {
        std::fprintf(stderr, "%s: %s\n", program, e.what());
        return e.code();
    } catch (const std::bad_alloc &) {
        std::fprintf(stderr, "%s: out of memory\n", program);
        return kInternal;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s: internal error: %s\n", program, e.what());
        return kInternal;
    }
}

Progress::Progress(std::string command) : command_(std::move(command)), tty_(isatty(STDERR_FILENO) != 0) {}

void Progress::stage(const std::string &what) const
{
    if (!tty_)
        std::fprintf(stderr, "repmode: %s: %s\n", command_.c_str(), what.c_str());
}

void Progress::bar(double fraction, const std::string &what) const
{
    if (!tty_)
        return;
    const int width = 40, done = static_cast<int>(fraction * width + 0.5);
    std::fprintf(stderr, "\rrepmode: %s [%.*s%*s] %3d%% %s", command_.c_str(), done,
                 "########################################", width - done, "", static_cast<int>(fraction * 100 + 0.5),
                 what.c_str());
    if (fraction >= 1.0)
        std::fputc('\n', stderr);
    std::fflush(stderr);
}

int Progress::report(void *user, double fraction)
{
    static_cast<const Progress *>(user)->bar(fraction, "predicting");
    return 0;
}

std::array<int64_t, 3> parse_sizes(const std::string &spec, const std::string &option)
{
    std::array<int64_t, 3> sizes{};
    std::stringstream list(spec);
    std::string item;
    int n = 0;
    while (std::getline(list, item, ',')) {
        char *end = nullptr;
        const long long value = std::strtoll(item.c_str(), &end, 10);
        if (n >= 3 || item.empty() || *end != '\0' || value <= 0)
            throw Failure(option + " takes three positive sizes Z,Y,X, not '" + spec + "'", kBadInput);
        sizes[static_cast<size_t>(n++)] = value;
    }
    if (n != 3)
        throw Failure(option + " takes three positive sizes Z,Y,X, not '" + spec + "'", kBadInput);
    return sizes;
}

} // namespace repmode::cli
