/* The SPEC §2 gradient moments Σg and Σg², summed in one fixed order whatever the thread count,
 * shared by every pass that reports them (deba_grad_moments, deba_grad_moments_many, the fused
 * SGD step of libdeba and the CPU backend's), which therefore agree bit for bit:
 *   - the arrays are cut into units of at most DEBA_MOMENT_UNIT values that never straddle two
 *     arrays; units run in parallel, their sums add in unit order, in double (moment_units);
 *   - a unit sums blocks of DEBA_MOMENT_FOLD values one after the other into its double sums;
 *   - a block sums in DEBA_MOMENT_FLANES float lanes (so the loop vectorises at any width and a
 *     lane adds no more than 64 values), combined in lane order (deba_moment_fold).
 * Float only inside a block of 1024: within about 1e-6 relative of an all-double sum on real
 * gradients (docs/formats.md), and cheaper than double lanes inside the update pass
 * (docs/performance.md, "DEBA signals fused into the update"). This header is private to the
 * library: moment_units is a global of libdeba.a that the trainer's CPU backend calls, and not
 * exported from libdeba.so (its name does not start with deba_). */
#ifndef DEBA_CORE_MOMENTS_H
#define DEBA_CORE_MOMENTS_H

#include <stdint.h>

#define DEBA_MOMENT_UNIT   16384
#define DEBA_MOMENT_FOLD   1024
#define DEBA_MOMENT_FLANES 16

/* A block's lanes: adds x[0..DEBA_MOMENT_FLANES) to the lane sums ls and lq. */
static inline __attribute__((always_inline)) void deba_moment_lanes(float *ls, float *lq, const float *x)
{
#pragma omp simd
    for (int k = 0; k < DEBA_MOMENT_FLANES; k++) {
        ls[k] += x[k];
        lq[k] += x[k] * x[k];
    }
}

/* Ends a block: adds its last n < DEBA_MOMENT_FLANES values x[0..n) to lanes 0..n-1, sums the lanes
 * in lane order and adds the block's sums to *s and *q. */
static inline __attribute__((always_inline)) void deba_moment_block_end(float *ls, float *lq, const float *x,
                                                                         int64_t n, double *s, double *q)
{
    for (int64_t k = 0; k < n; k++) {
        ls[k] += x[k];
        lq[k] += x[k] * x[k];
    }
    float ts = 0.f, tq = 0.f;
    for (int k = 0; k < DEBA_MOMENT_FLANES; k++) {
        ts += ls[k];
        tq += lq[k];
    }
    *s += ts;
    *q += tq;
}

/* Adds Σx and Σx² of one block x[0..m), m <= DEBA_MOMENT_FOLD, to *s and *q. A pass that does
 * more with each value (a fused update) calls deba_moment_lanes and deba_moment_block_end in the
 * same pattern, with its own work between, and gets the same bits. */
static inline __attribute__((always_inline)) void deba_moment_fold(const float *x, int64_t m, double *s, double *q)
{
    float ls[DEBA_MOMENT_FLANES] = {0}, lq[DEBA_MOMENT_FLANES] = {0};
    int64_t i = 0;
    for (; i + DEBA_MOMENT_FLANES <= m; i += DEBA_MOMENT_FLANES) deba_moment_lanes(ls, lq, x + i);
    deba_moment_block_end(ls, lq, x + i, m - i, s, q);
}

/* unit(ctx, t, off, n, s, q): array t's values [off, off + n), n <= DEBA_MOMENT_UNIT; stores their
 * moments (blocks of DEBA_MOMENT_FOLD through deba_moment_fold from 0.0) in *s and *q. */
typedef void (*moment_unit_fn)(const void *ctx, int t, int64_t off, int64_t n, double *s, double *q);

/* Runs unit over n arrays of d[t] values, in parallel, and ADDS the unit sums in unit order onto
 * *sum and *sumsq: the result depends only on the lengths, never on the thread count, and
 * splitting the arrays over several calls (in order) changes no bit. */
void moment_units(const int64_t *d, int n, moment_unit_fn unit, const void *ctx, double *sum, double *sumsq);

#endif
