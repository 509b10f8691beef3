/* Private helpers shared by the core's source files: the context's insides, error reporting, argument checks. */
#ifndef REPMODE_INTERNAL_H
#define REPMODE_INTERNAL_H

#include "repmode/core.h"

#include <stdarg.h>
#include <stdlib.h>

#define RM_ERROR_LEN 512

/* The context's working memory is a few independent buffers, each grown on demand, 64-byte aligned, kept from call
 * to call and freed with the context. There is one per user that holds its buffer while calling another user: an
 * operator holds its scratch for the length of one operator call, the sliding window holds its buffers across the
 * deploy form's forward calls (and so across their operators' scratch). */
typedef enum rm_work {
    RM_WORK_SCRATCH, /* an operator's: rm_ctx_workspace */
    RM_WORK_WINDOWS, /* rm_predict_region's windows and region accumulators */
    RM_WORK_ACTIVATIONS, /* a deploy form's forward pass: one sample's activations at every level */
    RM_WORK_UNPACKED, /* packed weights unpacked for an instruction set that reads them plain (conv_engine.h) */
    RM_WORK_COUNT
} rm_work;

#define RM_WORK_ALIGN 64

struct rm_ctx {
    int n_threads;
    rm_isa isa;
    struct {
        void *data;
        size_t bytes;
    } work[RM_WORK_COUNT];
    char error[RM_ERROR_LEN];
};

/* Every heap allocation of the core goes through these, and its memory back through rm_dealloc, so that the test
 * build (REPMODE_FAULT_INJECTION, base/fault.h) can make any one of them fail. Otherwise they are the C library's
 * calls themselves; either way the memory is the C library's, and free() releases it too. */
#ifdef REPMODE_FAULT_INJECTION
void *rm_malloc(size_t bytes);
void *rm_calloc(size_t n, size_t size);
void *rm_realloc(void *p, size_t bytes);
void *rm_aligned_alloc(size_t align, size_t bytes);
void rm_dealloc(void *p);
#else
static inline void *rm_malloc(size_t bytes) { return malloc(bytes); }
static inline void *rm_calloc(size_t n, size_t size) { return calloc(n, size); }
static inline void *rm_realloc(void *p, size_t bytes) { return realloc(p, bytes); }
static inline void *rm_aligned_alloc(size_t align, size_t bytes) { return aligned_alloc(align, bytes); }
static inline void rm_dealloc(void *p) { free(p); }
#endif

/* Whether text[0..n) starts with one JSON value (RFC 8259) that cJSON parses when memory allows, and when `whole`,
 * holds nothing else but white space. cJSON's parser returns NULL both for text it refuses and when out of memory;
 * after it failed, this tells the two apart without allocating. It is stricter than cJSON, never laxer: no text
 * cJSON refuses passes (base/json_syntax.c keeps cJSON's limits), so malformed text is never taken for a lack of
 * memory. */
int rm_json_parsable(const char *text, size_t n, int whole);

/* Records a printf-style message in the context and returns status, so failures read `return rm_fail(...)`. */
rm_status rm_fail(rm_ctx *ctx, rm_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* At least `bytes` of the context's working memory `which`, or NULL (with the error set) when it cannot grow. Its
 * content is unspecified; a later call for the same buffer may move it, one for another buffer leaves it alone. */
void *rm_ctx_work(rm_ctx *ctx, rm_work which, size_t bytes);

/* An operator's scratch: valid until the operator returns. */
static inline void *rm_ctx_workspace(rm_ctx *ctx, size_t bytes) { return rm_ctx_work(ctx, RM_WORK_SCRATCH, bytes); }

/* `bytes` rounded up to the working memory's alignment, to lay several arrays out in one buffer. */
static inline size_t rm_work_align(size_t bytes) { return (bytes + RM_WORK_ALIGN - 1) / RM_WORK_ALIGN * RM_WORK_ALIGN; }
/* The same for a count of floats: `floats` rounded up to whole RM_WORK_ALIGN-byte lines. */
static inline size_t rm_work_floats(int64_t floats)
{
    return rm_work_align((size_t)floats * sizeof(float)) / sizeof(float);
}

/* Small integer arithmetic of shapes and tiles. */
static inline int64_t rm_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t rm_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t rm_clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }
static inline int64_t rm_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Writes "(n, c, d, h, w)" into buf. */
const char *rm_shape_str(const int64_t ne[RM_MAX_DIMS], char *buf, size_t len);

/* Checks that `t` and its data are non-NULL and every dimension positive; `name` goes in the message. */
rm_status rm_check_tensor(rm_ctx *ctx, const rm_tensor *t, const char *name);
/* rm_check_tensor, then the shape must equal `ne`. */
rm_status rm_check_shape(rm_ctx *ctx, const rm_tensor *t, const char *name, const int64_t ne[RM_MAX_DIMS]);

/* Hot loops the compiler vectorizes are built for several instruction sets, the one this processor has chosen when
 * the library loads (GCC's and Clang's function multiversioning), so the default build runs on any x86-64 and still
 * uses AVX2+FMA or AVX-512 where present. Only for loops whose every element is computed the same way on each path
 * (no reassociated sums; fmaf is exact everywhere), so results do not depend on the path taken. Not under
 * ThreadSanitizer: it instruments the choosing functions (ifunc resolvers), which the dynamic loader runs before
 * TSan's runtime has started, and the program crashes on loading. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_THREAD__)
#define RM_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RM_MULTIVERSION
#endif

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
