/* Counter-based random numbers: every draw is a hash of a key and a counter (a voxel index, a step, a lattice
 * point), so a value never depends on which thread computes it, in which order, or on call history. The same seed
 * gives the same numbers on every machine.
 */
#ifndef REPMODE_RNG_H
#define REPMODE_RNG_H

#include <math.h>
#include <stdint.h>

/* 2^64 / φ, splitmix64's increment: consecutive counters times it are spread over the whole word. */
#define RM_GOLDEN UINT64_C(0x9e3779b97f4a7c15)

/* splitmix64's finalizer (Steele, Lea & Flood 2014): a bijection of 64-bit words with good avalanche. */
static inline uint64_t rm_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The next word of the splitmix64 sequence whose state is *state. */
static inline uint64_t rm_splitmix64_next(uint64_t *state) { return rm_mix64(*state += RM_GOLDEN); }

/* Uniform in [0, 1) from the top 24 bits of a hash: exact in float. */
static inline float rm_u01f(uint64_t h) { return (float)(h >> 40) * 0x1p-24f; }

/* Uniform in [0, 1) from the top 53 bits of a hash: exact in double. */
static inline double rm_u01d(uint64_t h) { return (double)(h >> 11) * 0x1p-53; }

/* A standard normal from two uniforms (Box–Muller), u1 in (0, 1] and u2 in [0, 1). */
static inline double rm_box_muller(double u1, double u2)
{
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif /* REPMODE_RNG_H */
