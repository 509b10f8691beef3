/* The direct convolution's kernels for AVX-512: 32 zmm registers, up to 24 of them accumulators. */
#include "ops/direct/conv_direct.h"

#if RM_HAVE_DIRECT
#include <immintrin.h>

#define RK_TARGET __attribute__((target("avx512f")))
#define RK_VEC __m512
#define RK_LANES 16
#define RK_ZERO() _mm512_setzero_ps()
#define RK_LOAD(p) _mm512_loadu_ps(p)
#define RK_SET1(v) _mm512_set1_ps(v)
#define RK_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define RK_STORE(p, v) _mm512_store_ps(p, v)
#define RK_STOREU(p, v) _mm512_storeu_ps(p, v)
#define RK_ISA RM_ISA_AVX512
#define RK_RW1 16
#define RK_RW2 12
#define RK_RW5_1 22
#define RK_RW5_2 9
#define RK_VG5 2
#define RK_NB 2
#define RK_NAME rm_direct_row_avx512
_Static_assert(RK_RW5_1 == RM_DIRECT_AVX512_RW5_1 && RK_RW5_2 == RM_DIRECT_AVX512_RW5_2 &&
                   RK_RW1 == RM_DIRECT_AVX512_RW1 && RK_RW2 == RM_DIRECT_AVX512_RW2 && RK_NB == RM_DIRECT_AVX512_NB,
               "the kernel's limits as declared");
#include "ops/direct/row_kernel.inc"

#define WK_NAME rm_direct_wgrad_row_avx512
#include "ops/direct/wgrad_kernel.inc"

#define RD_NAME rm_direct_reduce_row_avx512
#define RD_RW 24
_Static_assert(RD_RW == RM_DIRECT_AVX512_REDUCE_RW, "the kernel's limit as declared");
#include "ops/direct/reduce_kernel.inc"
#endif
