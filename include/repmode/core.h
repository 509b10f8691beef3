/* repmode core types: status codes, the context, and 5-D tensors.
 *
 * Tensors are views: the caller owns the memory a tensor points at, and an operator never allocates or frees it.
 * Data is float32, contiguous, row-major over (N, C, D, H, W); the last index (W) varies fastest.
 *
 * The context owns everything else an operator needs: the thread count, the working memory (grown on demand and
 * then reused, never freed between calls), and the message of the last error. One context is not thread safe:
 * use one per calling thread. There is no global state but one atomic counter that numbers the states of deploy
 * forms' weights.
 *
 * Conventions of every public header; each function's comment adds only what is its own.
 * - Statuses: a function returning rm_status returns RM_OK or one of the statuses its comment names, and on
 *   failure writes a message into the context (a success leaves the last one there). RM_ERR_ARGUMENT is a NULL
 *   pointer the function needs (the context excepted: it must be valid and is never checked) or a value outside
 *   its range; RM_ERR_SHAPE a tensor or volume whose sizes do not fit; RM_ERR_NOMEM a failed allocation, of the
 *   context's working memory too. Where a comment says a pointer must not be NULL, NULL is not checked.
 *   RM_ERR_INTERNAL is kept for bugs in repmode: no function names it.
 * - Ownership: pointers passed in are borrowed for the call, unless the comment says the callee keeps them. What
 *   a *_create, *_load or *_read call returns through `out` is the caller's, released with the matching *_free
 *   (each takes NULL); on failure nothing is left to free (*out is NULL, or unchanged where the comment says so).
 *   A pointer a getter returns is owned by the object it came from and valid until that object is freed.
 * - Threads: a context, and any object (model, deploy form, optimizer, trainer, window cache), is used by one
 *   thread at a time. Calls with different contexts on different objects may run at once; so may calls that
 *   only read an object (a `const` argument) while no call changes it. Inside, a call runs on its context's
 *   thread count (OpenMP).
 */
#ifndef REPMODE_CORE_H
#define REPMODE_CORE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(REPMODE_SHARED)
#  ifdef REPMODE_BUILD
#    define RM_API __declspec(dllexport)
#  else
#    define RM_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define RM_API __attribute__((visibility("default")))
#else
#  define RM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Every fallible call returns a status; rm_ctx_error() tells what went wrong. Append only: values are stable. */
typedef enum rm_status {
    RM_OK = 0,
    RM_ERR_ARGUMENT = 1, /* a bad argument: NULL pointer, out-of-range parameter */
    RM_ERR_SHAPE = 2,    /* tensor shapes that do not fit together */
    RM_ERR_NOMEM = 3,    /* an allocation failed */
    RM_ERR_IO = 4,       /* a file could not be read or written */
    RM_ERR_FORMAT = 5,   /* a file's contents are malformed */
    RM_ERR_INTERNAL = 6, /* a bug in repmode */
    RM_ERR_CANCELLED = 7, /* a callback asked the call to stop */
} rm_status;

/* A short English name of a status ("unknown status" for a value outside the enum): a static string, never freed.
 * Thread safe. */
RM_API const char *rm_status_string(rm_status status);

#define RM_MAX_DIMS 5

/* A 5-D float32 view (N, C, D, H, W). Lower-rank data uses trailing 1s, e.g. a (batch, features) matrix is
 * {batch, features, 1, 1, 1}. */
typedef struct rm_tensor {
    float *data;
    int64_t ne[RM_MAX_DIMS];
} rm_tensor;

/* A view of `data` (borrowed: the tensor does not own it), and its sizes. Pure functions; t must not be NULL. */
RM_API rm_tensor rm_tensor_5d(float *data, int64_t n, int64_t c, int64_t d, int64_t h, int64_t w);
RM_API int64_t rm_tensor_numel(const rm_tensor *t);
/* Elements per sample: C·D·H·W. */
RM_API int64_t rm_tensor_sample_numel(const rm_tensor *t);
/* Voxels per channel of one sample: D·H·W. */
RM_API int64_t rm_tensor_spatial_numel(const rm_tensor *t);
RM_API int rm_tensor_same_shape(const rm_tensor *a, const rm_tensor *b);

typedef struct rm_ctx rm_ctx;

/* The most worker threads a context takes: far above any machine's cores, and low enough that OpenMP can always
 * start them (tens of thousands crash or abort inside the OpenMP runtime, where no error can be returned). */
#define RM_MAX_THREADS 1024

/* n_threads <= 0 means one thread per core. Returns NULL when out of memory or when n_threads > RM_MAX_THREADS
 * (check the count first to tell the two apart). Every call that takes a context requires a valid one (never
 * NULL). The context is the caller's: free it with rm_ctx_free (NULL allowed), which frees its working memory. */
RM_API rm_ctx *rm_ctx_create(int n_threads);
RM_API void rm_ctx_free(rm_ctx *ctx);
/* The thread count calls on this context use. */
RM_API int rm_ctx_threads(const rm_ctx *ctx);
/* 0 means one thread per core. RM_ERR_ARGUMENT for a count below 0 or above RM_MAX_THREADS; the context is
 * unchanged then. */
RM_API rm_status rm_ctx_set_threads(rm_ctx *ctx, int n_threads);
/* The message of the most recent failed call on this context ("" if none). Owned by the context: the pointer is
 * valid until rm_ctx_free, and the text is replaced by the next failure on this context. */
RM_API const char *rm_ctx_error(const rm_ctx *ctx);
/* Bytes of working memory the context holds for reuse. */
RM_API size_t rm_ctx_workspace_bytes(const rm_ctx *ctx);

/* The instruction sets the convolution engine's kernels are built for, lowest first. AVX2 (with FMA) and AVX-512
 * compute every value in the same order and give the same bits; the portable path (OpenBLAS) rounds differently. */
typedef enum rm_isa { RM_ISA_PORTABLE = 0, RM_ISA_AVX2 = 1, RM_ISA_AVX512 = 2 } rm_isa;

/* The best instruction set this processor and its operating system offer. */
RM_API rm_isa rm_isa_available(void);
/* "portable", "avx2" or "avx512"; "unknown" for a value outside rm_isa. A static string: never freed. */
RM_API const char *rm_isa_name(rm_isa isa);
/* The instruction set named `name` (as rm_isa_name spells it), or -1 when no set has that name. */
RM_API int rm_isa_from_name(const char *name);
/* The instruction set calls on this context use. A new context takes rm_isa_available(), lowered to the one the
 * environment variable REPMODE_ISA names when it names one (a higher one, or an unknown name, is ignored). */
RM_API rm_isa rm_ctx_isa(const rm_ctx *ctx);
/* Makes calls on this context use `isa`. RM_ERR_ARGUMENT when it is not an rm_isa or above rm_isa_available();
 * the context is unchanged then. */
RM_API rm_status rm_ctx_set_isa(rm_ctx *ctx, rm_isa isa);
/* The kernels OpenBLAS chose for this processor at load time ("Haswell", "SkylakeX", …; the environment variable
 * OPENBLAS_CORETYPE picks them): the stride-2 and transposed convolutions and the portable path run on them, and
 * other kernels round differently, so a result's provenance names them. A static string: never freed. */
RM_API const char *rm_blas_core(void);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_CORE_H */
