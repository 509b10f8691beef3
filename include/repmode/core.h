/* repmode core types: status codes, the context, and 5-D tensors.
 *
 * Tensors are views: the caller owns the memory a tensor points at, and an operator never allocates or frees it.
 * Data is float32, contiguous, row-major over (N, C, D, H, W); the last index (W) varies fastest.
 *
 * The context owns everything else an operator needs: the thread count, the working memory (grown on demand and
 * then reused, never freed between calls), and the message of the last error. One context is not thread safe:
 * use one per calling thread. There is no global state but one atomic counter that numbers the states of deploy
 * forms' weights.
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

RM_API const char *rm_status_string(rm_status status);

#define RM_MAX_DIMS 5

/* A 5-D float32 view (N, C, D, H, W). Lower-rank data uses trailing 1s, e.g. a (batch, features) matrix is
 * {batch, features, 1, 1, 1}. */
typedef struct rm_tensor {
    float *data;
    int64_t ne[RM_MAX_DIMS];
} rm_tensor;

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
 * NULL). */
RM_API rm_ctx *rm_ctx_create(int n_threads);
RM_API void rm_ctx_free(rm_ctx *ctx);
RM_API int rm_ctx_threads(const rm_ctx *ctx);
/* RM_ERR_ARGUMENT for a count below 0 or above RM_MAX_THREADS; the context is unchanged then. */
RM_API rm_status rm_ctx_set_threads(rm_ctx *ctx, int n_threads);
/* The message of the most recent failed call on this context ("" if none). Valid until the next call. */
RM_API const char *rm_ctx_error(const rm_ctx *ctx);
/* Bytes of working memory the context holds for reuse. */
RM_API size_t rm_ctx_workspace_bytes(const rm_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_CORE_H */
