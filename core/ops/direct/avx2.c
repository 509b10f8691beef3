/* The direct convolution's kernels for AVX2 with FMA: 16 ymm registers, 12 of them accumulators. */
#include "ops/direct/conv_direct.h"

#if RM_HAVE_DIRECT
#include <immintrin.h>

#define RK_TARGET __attribute__((target("avx2,fma")))
#define RK_VEC __m256
#define RK_LANES 8
#define RK_ZERO() _mm256_setzero_ps()
#define RK_LOAD(p) _mm256_loadu_ps(p)
#define RK_SET1(v) _mm256_set1_ps(v)
#define RK_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define RK_STORE(p, v) _mm256_store_ps(p, v)
#define RK_STOREU(p, v) _mm256_storeu_ps(p, v)
#define RK_MAX(a, b) _mm256_max_ps(a, b)
#define RK_ADD(a, b) _mm256_add_ps(a, b)
#define RK_ISA RM_ISA_AVX2
#define RK_RW1 6
#define RK_RW5_1 10
#define RK_VG5 1
#define RK_NB 1
#define RK_NAME rm_direct_row_avx2
_Static_assert(RK_RW5_1 == RM_DIRECT_AVX2_RW5_1 &&
                   RK_RW1 == RM_DIRECT_AVX2_RW1 && RK_NB == RM_DIRECT_AVX2_NB, "the kernel's limits as declared");
#include "ops/direct/row_kernel.inc"

#define PK_O 4
#define PK_V 2
/* The mask of lanes [0, n). */
#define FIRST_LANES(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define PK_STORE_FIRST(p, v, n) _mm256_maskstore_ps(p, FIRST_LANES(n), v)
#define PK_NAME rm_direct_pos_row_avx2
_Static_assert(PK_V * RK_LANES == RM_DIRECT_AVX2_POS_RW, "the kernel's limit as declared");
#include "ops/direct/pos_kernel.inc"

#define WK_NAME rm_direct_wgrad_row_avx2
#include "ops/direct/wgrad_kernel.inc"

#define PW_LOADZ(p, n) _mm256_maskload_ps(p, FIRST_LANES(n))
#define PW_NAME rm_direct_pos_wgrad_row_avx2
#include "ops/direct/pos_wgrad_kernel.inc"

#define RD_NAME rm_direct_reduce_row_avx2
#define RD_RW 10
_Static_assert(RD_RW == RM_DIRECT_AVX2_REDUCE_RW, "the kernel's limit as declared");
#include "ops/direct/reduce_kernel.inc"
#endif
