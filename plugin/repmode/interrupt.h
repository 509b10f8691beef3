// SIGINT and SIGTERM as a request to stop (docs/cli.md §1.5): the handler only records the signal; long work polls
// interrupted() where it can stop cleanly (the prediction through the core's cancellation, training between steps),
// and the failure that follows removes the run's temporary files like any other. A second signal kills at once.
#pragma once

namespace repmode::cli {

// Installs the handlers (once per process).
void catch_interrupts();

// The signal that asked the run to stop, or 0.
int interrupted();

// Throws the Failure of an interrupted run when a signal asked it to stop.
void stop_if_interrupted();

} // namespace repmode::cli
