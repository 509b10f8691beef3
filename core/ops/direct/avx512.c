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
#define RK_MAX(a, b) _mm512_max_ps(a, b)
#define RK_ADD(a, b) _mm512_add_ps(a, b)
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

#define PK_O 4
#define PK_V 6
/* The mask of lanes [0, n). */
#define FIRST_LANES(n) ((__mmask16)((1u << (n)) - 1u))
#define PK_STORE_FIRST(p, v, n) _mm512_mask_storeu_ps(p, FIRST_LANES(n), v)
#define PK_NAME rm_direct_pos_row_avx512
_Static_assert(PK_V * RK_LANES == RM_DIRECT_AVX512_POS_RW, "the kernel's limit as declared");
#include "ops/direct/pos_kernel.inc"

#define WK_NAME rm_direct_wgrad_row_avx512
#include "ops/direct/wgrad_kernel.inc"

#define PW_LOADZ(p, n) _mm512_maskz_loadu_ps(FIRST_LANES(n), p)
#define PW_NAME rm_direct_pos_wgrad_row_avx512
#include "ops/direct/pos_wgrad_kernel.inc"

/* r[v] = lane v of every r[l]: a 16×16 transpose in four stages of shuffles (pairs, quads, 128-bit halves, 256-bit
 * halves). */
RK_TARGET static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xDD);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    }
}

RK_TARGET void rm_direct_interleave16_avx512(const float *const rows[16], int64_t n, int64_t stride, float *dst)
{
    for (int64_t x = 0; x < n; x += 16) {
        /* The last block's rows are loaded partly, masked; whole blocks are not: masked loads that miss the cache
         * made a level-5 data gradient's packing 1.2x slower. */
        const int m = n - x < 16 ? (int)(n - x) : 16;
        __m512 r[16];
        for (int l = 0; l < 16; l++)
            r[l] = m == 16 ? _mm512_loadu_ps(rows[l] + x) : _mm512_maskz_loadu_ps(FIRST_LANES(m), rows[l] + x);
        transpose16(r);
        for (int i = 0; i < m; i++)
            _mm512_storeu_ps(dst + (x + i) * stride, r[i]);
    }
}

RK_TARGET void rm_direct_deinterleave16_avx512(const float *const vecs[], int64_t n, float *const rows[16])
{
    for (int64_t x = 0; x < n; x += 16) {
        /* The last block: its missing vectors read as zeros, its rows stored masked (whole blocks are not: masked
         * stores to lines not in the cache made a level-5 weight gradient 1.2x slower). */
        const int m = n - x < 16 ? (int)(n - x) : 16;
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < m ? _mm512_loadu_ps(vecs[x + i]) : _mm512_setzero_ps();
        transpose16(r);
        for (int l = 0; l < 16; l++)
            if (m == 16)
                _mm512_storeu_ps(rows[l] + x, r[l]);
            else
                _mm512_mask_storeu_ps(rows[l] + x, FIRST_LANES(m), r[l]);
    }
}

#define RD_NAME rm_direct_reduce_row_avx512
#define RD_RW 24
_Static_assert(RD_RW == RM_DIRECT_AVX512_REDUCE_RW, "the kernel's limit as declared");
#include "ops/direct/reduce_kernel.inc"
#endif
