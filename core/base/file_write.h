/* The core's file creations and writes, through wrappers for the same reason as its allocations (base/internal.h):
 * the test build (REPMODE_FAULT_INJECTION, base/fault.h) can make any one of them fail. Include it after defining
 * _POSIX_C_SOURCE. */
#ifndef REPMODE_FILE_WRITE_H
#define REPMODE_FILE_WRITE_H

#include <fcntl.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef REPMODE_FAULT_INJECTION
int rm_open(const char *path, int flags, mode_t mode);
FILE *rm_fdopen(int fd, const char *mode);
size_t rm_fwrite(const void *p, size_t size, size_t n, FILE *fp);
int rm_fflush(FILE *fp);
int rm_fsync(int fd);
int rm_fclose(FILE *fp);
int rm_rename(const char *from, const char *to);
#else
static inline int rm_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }
static inline FILE *rm_fdopen(int fd, const char *mode) { return fdopen(fd, mode); }
static inline size_t rm_fwrite(const void *p, size_t size, size_t n, FILE *fp) { return fwrite(p, size, n, fp); }
static inline int rm_fflush(FILE *fp) { return fflush(fp); }
static inline int rm_fsync(int fd) { return fsync(fd); }
static inline int rm_fclose(FILE *fp) { return fclose(fp); }
static inline int rm_rename(const char *from, const char *to) { return rename(from, to); }
#endif

#endif /* REPMODE_FILE_WRITE_H */
