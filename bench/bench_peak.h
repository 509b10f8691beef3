/* The machine's FMA peak, measured (bench_layers.c, bench_network.c, bench_train.c print their figures as a share
 * of it): every thread (one per core) runs a loop of independent FMAs on registers only, 16 zmm accumulators with
 * AVX-512 or 12 ymm ones with AVX2+FMA (chosen at run time), 2 flops per lane per FMA; the best of 20 short runs.
 * No convolution can go faster, so a share of it says how far a computation is from the machine. Built with
 * OpenMP; a process that forks afterwards must not use OpenMP in the child (libgomp's threads do not survive a
 * fork), so bench_common.h measures it in a child process of its own. */
#ifndef REPMODE_BENCH_PEAK_H
#define REPMODE_BENCH_PEAK_H

#include <immintrin.h>
#include <math.h>
#include <omp.h>

#include "bench_timing.h"

/* The body of an FMA loop for one vector type, leaving the accumulators' sum in `sum`. Each accumulator is its own
 * dependency chain: enough of them cover the FMA latency on every pipe. The loop runs on registers only; the sum,
 * returned, keeps the compiler from dropping it. */
#define FMA_LOOP_BODY(VEC, ACC, SET1, FMADD, ADD)                                                                      \
    VEC acc[ACC];                                                                                                      \
    for (int j = 0; j < ACC; j++)                                                                                      \
        acc[j] = SET1(seed + 0.01f * (float)j);                                                                        \
    const VEC m = SET1(0.999999f), c = SET1(1e-6f);                                                                    \
    for (long i = 0; i < iters; i++) {                                                                                 \
        _Pragma("GCC unroll 16") for (int j = 0; j < ACC; j++) acc[j] = FMADD(acc[j], m, c);                           \
    }                                                                                                                  \
    VEC sum = acc[0];                                                                                                  \
    for (int j = 1; j < ACC; j++) {                                                                                    \
        sum = ADD(sum, acc[j]);                                                                                        \
    }

__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters, float seed)
{
    FMA_LOOP_BODY(__m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps)
    return _mm512_reduce_add_ps(sum);
}

/* 12 of the 16 ymm registers: two more hold the factors. */
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters, float seed)
{
    FMA_LOOP_BODY(__m256, 12, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps)
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

/* GFLOP/s of `threads` threads each running the loop; *what names the instruction set. */
static double measure_fma_peak(int threads, const char **what)
{
    const int avx512 = __builtin_cpu_supports("avx512f");
    const double flop_per_iter = avx512 ? 16 * 16 * 2 : 12 * 8 * 2;
    const long iters = 12 * 1000 * 1000; /* ~30 ms per thread at 200 GFLOP/s */
    *what = avx512 ? "AVX-512, 16 zmm accumulators" : "AVX2+FMA, 12 ymm accumulators";
    /* Many short runs, the best: on a shared machine one of them will likely find the cores free. */
    double best = 0.0;
    for (int trial = -1; trial < 20; trial++) { /* the first run starts the threads and wakes the clocks up */
        float sink = 0.0f;
        const double t0 = bench_now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += avx512 ? fma_loop_avx512(iters, (float)omp_get_thread_num())
                       : fma_loop_avx2(iters, (float)omp_get_thread_num());
        const double gflops = flop_per_iter * (double)iters * threads / (bench_now() - t0) / 1e9;
        if (trial >= 0 && gflops > best && isfinite(sink))
            best = gflops;
    }
    return best;
}

#endif /* REPMODE_BENCH_PEAK_H */
