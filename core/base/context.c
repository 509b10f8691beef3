/* The context: thread count, reusable working memory, and the last error message. */
#include "base/internal.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rm_status_string(rm_status status)
{
    switch (status) {
    case RM_OK: return "ok";
    case RM_ERR_ARGUMENT: return "bad argument";
    case RM_ERR_SHAPE: return "shape mismatch";
    case RM_ERR_NOMEM: return "out of memory";
    case RM_ERR_IO: return "input/output error";
    case RM_ERR_FORMAT: return "malformed file";
    case RM_ERR_INTERNAL: return "internal error";
    case RM_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

static int rm_default_threads(void)
{
    int n = omp_get_num_procs();
    return n > 0 ? n : 1;
}

rm_ctx *rm_ctx_create(int n_threads)
{
    if (n_threads > RM_MAX_THREADS)
        return NULL;
    rm_ctx *ctx = rm_calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->n_threads = n_threads > 0 ? n_threads : rm_default_threads();
    ctx->isa = rm_isa_available();
    const char *forced = getenv("REPMODE_ISA");
    const int isa = forced ? rm_isa_from_name(forced) : -1;
    if (isa >= 0 && isa < (int)ctx->isa)
        ctx->isa = (rm_isa)isa;
    return ctx;
}

void rm_ctx_free(rm_ctx *ctx)
{
    if (!ctx)
        return;
    for (int i = 0; i < RM_WORK_COUNT; i++)
        rm_dealloc(ctx->work[i].data);
    rm_dealloc(ctx);
}

int rm_ctx_threads(const rm_ctx *ctx) { return ctx->n_threads; }

rm_status rm_ctx_set_threads(rm_ctx *ctx, int n_threads)
{
    if (n_threads < 0 || n_threads > RM_MAX_THREADS)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "thread count %d is out of range: 0 (all cores) to %d", n_threads,
                       RM_MAX_THREADS);
    ctx->n_threads = n_threads > 0 ? n_threads : rm_default_threads();
    return RM_OK;
}

const char *rm_ctx_error(const rm_ctx *ctx) { return ctx->error; }

rm_isa rm_isa_available(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    /* GCC's and Clang's checks include the operating system's support for the wider registers (XGETBV). */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return RM_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return RM_ISA_AVX2;
#endif
    return RM_ISA_PORTABLE;
}

static const char *const rm_isa_names[] = {"portable", "avx2", "avx512"};

const char *rm_isa_name(rm_isa isa)
{
    return (int)isa >= 0 && (int)isa <= RM_ISA_AVX512 ? rm_isa_names[isa] : "unknown";
}

int rm_isa_from_name(const char *name)
{
    for (int i = 0; name && i <= RM_ISA_AVX512; i++)
        if (strcmp(name, rm_isa_names[i]) == 0)
            return i;
    return -1;
}

rm_isa rm_ctx_isa(const rm_ctx *ctx) { return ctx->isa; }

rm_status rm_ctx_set_isa(rm_ctx *ctx, rm_isa isa)
{
    const rm_isa available = rm_isa_available();
    if ((int)isa < 0 || (int)isa > (int)available)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "instruction set %s is not available on this processor (best: %s)",
                       rm_isa_name(isa), rm_isa_name(available));
    ctx->isa = isa;
    return RM_OK;
}

size_t rm_ctx_workspace_bytes(const rm_ctx *ctx)
{
    size_t bytes = 0;
    for (int i = 0; i < RM_WORK_COUNT; i++)
        bytes += ctx->work[i].bytes;
    return bytes;
}

rm_status rm_fail(rm_ctx *ctx, rm_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
    return status;
}

void *rm_ctx_work(rm_ctx *ctx, rm_work which, size_t bytes)
{
    if (bytes <= ctx->work[which].bytes)
        return ctx->work[which].data;
    /* Grow by half again so a sequence of slightly larger requests does not reallocate (and re-fault) each time. */
    const size_t want = rm_work_align(bytes + bytes / 2);
    void *p = rm_aligned_alloc(RM_WORK_ALIGN, want);
    if (!p) {
        rm_fail(ctx, RM_ERR_NOMEM, "cannot allocate %zu bytes of working memory", want);
        return NULL;
    }
    rm_dealloc(ctx->work[which].data);
    ctx->work[which].data = p;
    ctx->work[which].bytes = want;
    return p;
}
