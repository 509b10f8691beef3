// An X display for VTK's off-screen rendering (display.h).
#include "display.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <X11/Xlib.h>

#include "cli.h"

namespace repmode::cli {

namespace {

// Xvfb answers within a second or two; a server that says nothing for this long is given up.
constexpr int kStartMilliseconds = 20000;

} // namespace

XDisplay::XDisplay(const std::string &purpose)
{
    const char *name = std::getenv("DISPLAY");
    if (name && *name)
        display_ = XOpenDisplay(name);
    if (!display_)
        start_xvfb(purpose);
}

XDisplay::~XDisplay()
{
    if (display_)
        XCloseDisplay(static_cast<Display *>(display_));
    stop_xvfb();
}

std::string XDisplay::name() const { return DisplayString(static_cast<Display *>(display_)); }

void XDisplay::start_xvfb(const std::string &purpose)
{
    const char *name = std::getenv("DISPLAY");
    const std::string why = purpose + " needs an X display: " +
                            (name && *name ? "DISPLAY=" + std::string(name) + " cannot be opened"
                                           : std::string("DISPLAY is not set"));
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0)
        throw Failure(why + ", and Xvfb cannot be started", kBadInput);
    const std::string fd = std::to_string(pipe_fds[1]); // made before fork: the child only execs
    const pid_t pid = fork();
    if (pid == 0) {
        // The server: quiet, and ended with us even if we die without stopping it.
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        close(pipe_fds[0]);
        const int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        execlp("Xvfb", "Xvfb", "-displayfd", fd.c_str(), "-screen", "0", "640x480x24", "-nolisten", "tcp",
               static_cast<char *>(nullptr));
        _exit(127);
    }
    close(pipe_fds[1]);
    if (pid < 0) {
        close(pipe_fds[0]);
        throw Failure(why + ", and Xvfb cannot be started", kBadInput);
    }
    server_ = pid;
    // Xvfb writes its display number and a newline once it accepts connections.
    std::string number;
    pollfd p{pipe_fds[0], POLLIN, 0};
    for (char c = 0; number.find('\n') == std::string::npos;) {
        if (poll(&p, 1, kStartMilliseconds) <= 0 || read(pipe_fds[0], &c, 1) != 1)
            break;
        number += c;
    }
    close(pipe_fds[0]);
    if (number.find('\n') != std::string::npos)
        display_ = XOpenDisplay((":" + number.substr(0, number.find('\n'))).c_str());
    if (display_)
        return;
    // Reaped here rather than in stop_xvfb, for its exit status: 127 is the child's failed exec.
    int status = 0;
    kill(pid, SIGTERM);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    server_ = -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        throw Failure(why + ", and Xvfb is not installed (apt-get install xvfb)", kBadInput);
    throw Failure(why + ", and Xvfb did not start", kBadInput);
}

void XDisplay::stop_xvfb()
{
    if (server_ <= 0)
        return;
    kill(server_, SIGTERM);
    while (waitpid(server_, nullptr, 0) < 0 && errno == EINTR) {
    }
    server_ = -1;
}

} // namespace repmode::cli
