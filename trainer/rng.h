/* The trainer's one random number generator: xoshiro256** seeded by splitmix64. Small state
 * that goes into checkpoints, so a resumed run draws the same numbers. */
#ifndef TR_RNG_H
#define TR_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} tr_rng;

static inline uint64_t tr_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Streams for different purposes (init, shuffling, augmentation, dropout) come from the same
 * seed and a stream number, so adding draws to one never shifts another. */
static inline void tr_rng_seed(tr_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL ^ (stream + 1) * 0xd1b54a32d192ed03ULL;
    for (int i = 0; i < 4; i++) r->s[i] = tr_splitmix64(&x);
}

static inline uint64_t tr_rng_u64(tr_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5, result = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, 1) with 53 bits. */
static inline double tr_rng_uniform(tr_rng *r) { return (double)(tr_rng_u64(r) >> 11) * 0x1.0p-53; }

/* Uniform integer in [0, n), n > 0 (Lemire's multiply-shift, bias below 2^-32 for n < 2^32). */
static inline uint32_t tr_rng_below(tr_rng *r, uint32_t n)
{
    return (uint32_t)(((tr_rng_u64(r) >> 32) * (uint64_t)n) >> 32);
}

/* Standard normal by Box-Muller (one value per call; simple and reproducible). */
static inline double tr_rng_normal(tr_rng *r)
{
    double u1 = tr_rng_uniform(r), u2 = tr_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Fisher-Yates shuffle of idx[0..n-1]. */
static inline void tr_rng_shuffle(tr_rng *r, int *idx, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)tr_rng_below(r, (uint32_t)i + 1);
        int t = idx[i]; idx[i] = idx[j]; idx[j] = t;
    }
}

#endif
