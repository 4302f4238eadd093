/* The SPEC §2 gradient moments Σg and Σg², summed in one fixed order whatever the thread count:
 * the gradient is cut into blocks that depend only on its length, each block sums in 8 lanes
 * (so the loop vectorizes) combined in lane order, and block sums add in block order. Shared by
 * deba_grad_moments and the CPU backend's fused SGD pass, which must agree bit for bit. */
#ifndef DEBA_CORE_MOMENTS_H
#define DEBA_CORE_MOMENTS_H

#include <stdint.h>

#define DEBA_MOMENT_MAX_BLOCKS 256
#define DEBA_MOMENT_MIN_BLOCK  8192
#define DEBA_MOMENT_LANES      8

/* Number of blocks for d entries, and their length (the last one may be shorter). */
static inline int64_t deba_moment_blocks(int64_t d, int64_t *len)
{
    int64_t nblk = d > 0 ? (d + DEBA_MOMENT_MIN_BLOCK - 1) / DEBA_MOMENT_MIN_BLOCK : 0;
    if (nblk > DEBA_MOMENT_MAX_BLOCKS) nblk = DEBA_MOMENT_MAX_BLOCKS;
    *len = nblk ? (d + nblk - 1) / nblk : 0;
    return nblk;
}

/* Adds g[0..8) to the lane sums s and q (DEBA_MOMENT_LANES each). */
static inline void deba_moment_lanes(double *s, double *q, const float *g)
{
#pragma omp simd
    for (int k = 0; k < DEBA_MOMENT_LANES; k++) {
        double v = g[k];
        s[k] += v;
        q[k] += v * v;
    }
}

/* Adds the last n < 8 values to lanes 0..n-1 and sums the lanes in lane order. */
static inline void deba_moment_finish(double *s, double *q, const float *g, int64_t n, double *sum, double *sumsq)
{
    for (int64_t k = 0; k < n; k++) {
        double v = g[k];
        s[k] += v;
        q[k] += v * v;
    }
    double ts = 0.0, tq = 0.0;
    for (int k = 0; k < DEBA_MOMENT_LANES; k++) {
        ts += s[k];
        tq += q[k];
    }
    *sum = ts;
    *sumsq = tq;
}

/* Σg and Σg² of g[0..n) in double. A pass that does more with each value (the fused SGD update)
 * calls deba_moment_lanes and deba_moment_finish in the same pattern and gets the same bits. */
static inline void deba_moment_span(const float *g, int64_t n, double *sum, double *sumsq)
{
    double s[DEBA_MOMENT_LANES] = {0}, q[DEBA_MOMENT_LANES] = {0};
    int64_t i = 0;
    for (; i + DEBA_MOMENT_LANES <= n; i += DEBA_MOMENT_LANES) deba_moment_lanes(s, q, g + i);
    deba_moment_finish(s, q, g + i, n - i, sum, sumsq);
}

#endif
