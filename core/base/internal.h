/* Private helpers shared by the core's source files: the context's insides, error reporting, argument checks. */
#ifndef REPMODE_INTERNAL_H
#define REPMODE_INTERNAL_H

#include "repmode/core.h"

#include <stdarg.h>

#define RM_ERROR_LEN 512

struct rm_ctx {
    int n_threads;
    void *work;        /* working memory, 64-byte aligned, grown on demand and kept */
    size_t work_bytes;
    char error[RM_ERROR_LEN];
};

/* Records a printf-style message in the context and returns status, so failures read `return rm_fail(...)`. */
rm_status rm_fail(rm_ctx *ctx, rm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* At least `bytes` of the context's working memory, or NULL (with the error set) when it cannot grow. Its content
 * is unspecified; a later call may move it. */
void *rm_ctx_workspace(rm_ctx *ctx, size_t bytes);

/* Writes "(n, c, d, h, w)" into buf. */
const char *rm_shape_str(const int64_t ne[RM_MAX_DIMS], char *buf, size_t len);

/* Checks that `t` and its data are non-NULL and every dimension positive; `name` goes in the message. */
rm_status rm_check_tensor(rm_ctx *ctx, const rm_tensor *t, const char *name);
/* rm_check_tensor, then the shape must equal `ne`. */
rm_status rm_check_shape(rm_ctx *ctx, const rm_tensor *t, const char *name, const int64_t ne[RM_MAX_DIMS]);

/* The size of the work items that element-wise loops and chunked reductions split tensors into. It is fixed, not
 * derived from the thread count, so every partial sum, and so every result, is the same on any number of threads. */
#define RM_CHUNK ((int64_t)1 << 16)

/* The half-open range [*begin, *end) of n items that part `ith` of `nth` equal parts takes. */
static inline void rm_split(int64_t n, int ith, int nth, int64_t *begin, int64_t *end)
{
    *begin = n * ith / nth;
    *end = n * (ith + 1) / nth;
}

#define RM_TRY(expr)                    \
    do {                                \
        rm_status rm_try_s_ = (expr);   \
        if (rm_try_s_ != RM_OK)         \
            return rm_try_s_;           \
    } while (0)

#endif /* REPMODE_INTERNAL_H */
