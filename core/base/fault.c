/* The test build's allocation and file-write wrappers (base/fault.h): each numbered, the chosen one failing. */
#define _POSIX_C_SOURCE 200809L

#include "base/fault.h"

#include "base/file_write.h"
#include "base/internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>

static atomic_int_fast64_t fault_calls, fault_at, fault_live;

void rm_fault_fail_at(int64_t k)
{
    atomic_store(&fault_calls, 0);
    atomic_store(&fault_at, k > 0 ? k : 0);
}

int64_t rm_fault_calls(void) { return atomic_load(&fault_calls); }

int64_t rm_fault_live(void) { return atomic_load(&fault_live); }

/* Numbers one call; 1 when it is the one to fail, with errno set to err. */
static int fault_hit(int err)
{
    if (atomic_fetch_add(&fault_calls, 1) + 1 != atomic_load(&fault_at))
        return 0;
    errno = err;
    return 1;
}

static void *fault_count(void *p)
{
    if (p)
        atomic_fetch_add(&fault_live, 1);
    return p;
}

void *rm_malloc(size_t bytes) { return fault_hit(ENOMEM) ? NULL : fault_count(malloc(bytes)); }

void *rm_calloc(size_t n, size_t size) { return fault_hit(ENOMEM) ? NULL : fault_count(calloc(n, size)); }

void *rm_realloc(void *p, size_t bytes)
{
    if (fault_hit(ENOMEM))
        return NULL;
    void *q = realloc(p, bytes);
    return p ? q : fault_count(q);
}

void *rm_aligned_alloc(size_t align, size_t bytes)
{
    return fault_hit(ENOMEM) ? NULL : fault_count(aligned_alloc(align, bytes));
}

void rm_dealloc(void *p)
{
    if (p)
        atomic_fetch_sub(&fault_live, 1);
    free(p);
}

int rm_open(const char *path, int flags, mode_t mode) { return fault_hit(ENOSPC) ? -1 : open(path, flags, mode); }

FILE *rm_fdopen(int fd, const char *mode) { return fault_hit(ENOMEM) ? NULL : fdopen(fd, mode); }

/* A write of nothing cannot fail for want of space: it is not numbered. */
size_t rm_fwrite(const void *p, size_t size, size_t n, FILE *fp)
{
    return size && n && fault_hit(ENOSPC) ? 0 : fwrite(p, size, n, fp);
}

int rm_fflush(FILE *fp) { return fault_hit(ENOSPC) ? EOF : fflush(fp); }

int rm_fsync(int fd) { return fault_hit(ENOSPC) ? -1 : fsync(fd); }

int rm_fclose(FILE *fp)
{
    if (!fault_hit(ENOSPC))
        return fclose(fp);
    fclose(fp);
    errno = ENOSPC;
    return EOF;
}

int rm_rename(const char *from, const char *to) { return fault_hit(ENOSPC) ? -1 : rename(from, to); }

/* cJSON allocates for the core too (parsing and printing JSON): its allocations are numbered with the core's. */
__attribute__((constructor)) static void fault_hook_json(void)
{
    cJSON_Hooks hooks = {rm_malloc, rm_dealloc};
    cJSON_InitHooks(&hooks);
}
