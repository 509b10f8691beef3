// An X display for VTK's off-screen rendering (docs/cli.md §3.7). Debian's VTK renders through GLX only (no EGL, no
// OSMesa), so render needs an X server even off-screen: the one $DISPLAY names when it can be opened, else a private
// Xvfb started for the run (-displayfd picks a free display, so parallel runs do not collide) and stopped with it.
#pragma once

#include <string>

#include <sys/types.h>

namespace repmode::cli {

class XDisplay {
  public:
    // A Failure (exit 1) saying why when no display can be had; `purpose` names what it is for.
    explicit XDisplay(const std::string &purpose);
    ~XDisplay();
    XDisplay(const XDisplay &) = delete;
    XDisplay &operator=(const XDisplay &) = delete;
    // The Xlib Display*, for vtkRenderWindow::SetDisplayId.
    void *id() const { return display_; }
    // Its name (":1"), for DISPLAY in the environment of processes that draw on it too.
    std::string name() const;

  private:
    void start_xvfb(const std::string &purpose);
    void stop_xvfb();
    void *display_ = nullptr;
    pid_t server_ = -1;
};

} // namespace repmode::cli
