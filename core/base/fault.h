/* Fault injection, for tests only. In a library built with REPMODE_FAULT_INJECTION=ON, every heap allocation and
 * every file creation or write of the core (base/internal.h, base/file_write.h), cJSON's allocations included, is
 * numbered, and the one numbered k fails as the C library's would when memory or the disk is full: NULL with errno
 * ENOMEM, or -1 (EOF, a short write) with errno ENOSPC. A failing fclose still closes the stream.
 *
 * The counters, and cJSON's allocation hooks set when the library loads, are process-wide: only this test build
 * has them. Calls made on several threads at once
 * are numbered in the order they happen to take, so a test that wants the same k to hit the same call runs the
 * core on one thread. */
#ifndef REPMODE_FAULT_H
#define REPMODE_FAULT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Restarts the numbering at 1 and makes call k fail (k <= 0: none). */
void rm_fault_fail_at(int64_t k);
/* The calls numbered since the last rm_fault_fail_at, the failed one included. */
int64_t rm_fault_calls(void);
/* Allocations made and not yet given back through rm_dealloc, since the library loaded. */
int64_t rm_fault_live(void);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_FAULT_H */
