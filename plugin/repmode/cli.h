// What every repmode subcommand shares: errors and exit codes, the context, the common options.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <tclap/CmdLine.h>

#include "repmode/repmode.h"

namespace repmode::cli {

// Exit codes of docs/cli.md §1.2: 1 for bad usage or bad input, 2 for an internal failure.
constexpr int kBadInput = 1;
constexpr int kInternal = 2;

// A failure with its message and exit code; main prints "repmode: <message>".
class Failure : public std::runtime_error {
  public:
    Failure(const std::string &message, int code) : std::runtime_error(message), code_(code) {}
    int code() const { return code_; }

  private:
    int code_;
};

// A context that frees itself, made with the --threads option's value.
class Context {
  public:
    explicit Context(int threads);
    ~Context();
    Context(const Context &) = delete;
    Context &operator=(const Context &) = delete;
    operator rm_ctx *() const { return ctx_; }
    // Throws a Failure carrying the context's message when `status` is not RM_OK, after "<where>: " if given.
    void check(rm_status status, const std::string &where = "") const;

  private:
    rm_ctx *ctx_;
};

// A subcommand's command line: "repmode <name>" with --help, --version and --threads.
class CommandLine : public TCLAP::CmdLine {
  public:
    CommandLine(const std::string &name, const std::string &description);
    int threads() const { return threads_.getValue(); }
    // Parses argv (argv[0] is the subcommand); usage errors become Failures with exit code 1.
    void parse_or_fail(int argc, char **argv);

  private:
    std::string name_;
    TCLAP::ValueArg<int> threads_;
};

// What long work reports on stderr (docs/cli.md §1.3): one line per stage when stderr is not a terminal, a progress bar
// that redraws itself when it is.
// Virtual so that the Slicer module reports the same work in Slicer's own progress lines.
class Progress {
  public:
    explicit Progress(std::string command);
    virtual ~Progress() = default;
    // "repmode: <command>: <what>" on its own line (not on a terminal).
    virtual void stage(const std::string &what) const;
    // "[####    ] 42% <what>" redrawn in place (on a terminal only); fraction 1 ends the line.
    virtual void bar(double fraction, const std::string &what) const;
    // rm_progress_fn of the core's sliding window: the bar of `user`, a Progress.
    static int report(void *user, double fraction);

  private:
    std::string command_;
    bool tty_;
};

// --non-finite refuse|zero|mean (docs/cli.md §3.5), the option of predict and eval.
class NonFiniteOption {
  public:
    explicit NonFiniteOption(TCLAP::CmdLine &cmd);
    const std::string &value() const { return arg_.getValue(); }

  private:
    std::vector<std::string> policies_{"refuse", "zero", "mean"};
    TCLAP::ValuesConstraint<std::string> constraint_{policies_};
    TCLAP::ValueArg<std::string> arg_;
};

// Runs a program's body and turns what it throws into the exit codes of docs/cli.md, the message on stderr as
// "<program>: <message>": TCLAP's exit (--help, --version) its status, a Failure its code, anything else 2.
int run_reporting_failures(const char *program, int (*body)(int, char **), int argc, char **argv);

// "Z,Y,X" as three positive sizes; `option` names the flag in the message.
std::array<int64_t, 3> parse_sizes(const std::string &spec, const std::string &option);

int run_info(int argc, char **argv);
int run_reparam(int argc, char **argv);
int run_synth(int argc, char **argv);
int run_train(int argc, char **argv);
int run_add_task(int argc, char **argv);
int run_predict(int argc, char **argv);
int run_eval(int argc, char **argv);
int run_render(int argc, char **argv);
int run_surfaces(int argc, char **argv);
int run_verify(int argc, char **argv);
int run_batch(int argc, char **argv);

} // namespace repmode::cli
