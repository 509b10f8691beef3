#include "interrupt.h"

#include <csignal>
#include <cstring>
#include <string>

#include "cli.h"

namespace repmode::cli {

namespace {

volatile std::sig_atomic_t g_signal = 0;

extern "C" void record_signal(int signo) { g_signal = signo; }

} // namespace

void catch_interrupts()
{
    struct sigaction action;
    std::memset(&action, 0, sizeof action);
    action.sa_handler = record_signal;
    action.sa_flags = SA_RESETHAND; // the next signal takes the default action: Ctrl-C twice means it
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
}

int interrupted() { return static_cast<int>(g_signal); }

void stop_if_interrupted()
{
    if (const int signo = interrupted())
        throw Failure(std::string("interrupted by ") + (signo == SIGINT ? "SIGINT" : "SIGTERM") +
                          ": stopped, and no output was left behind",
                      128 + signo);
}

} // namespace repmode::cli
