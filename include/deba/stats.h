/* DEBA's per-step and per-epoch signals (SPEC §2) and the statistics used by calibration,
 * profiling and the report (SPEC §4-§6). Plain functions over arrays of doubles. */
#ifndef DEBA_STATS_H
#define DEBA_STATS_H

#include <stddef.h>
#include <stdint.h>
#include "deba/error.h"

#define DEBA_EPS 1e-8

/* ---- gradient statistics (SPEC §2) ---- */

/* One reduction over a flat gradient: Σg and Σg², OpenMP-parallel on the host, the same bits
 * whatever the thread count. Summed in double across blocks of 1024 values; each block sums in
 * float lanes of at most 64 values (about 1e-6 relative to an all-double sum on real gradients;
 * docs/formats.md, "How grad_var and grad_norm are summed"). The C trainer's fused update pass
 * gets the same bits. */
void deba_grad_moments(const float *g, int64_t d, double *sum, double *sumsq);
/* The same two sums over n separate float arrays (a framework's per-parameter gradients, read in
 * place): one read of each value, the same blocks and order within each array, so n = 1 gives
 * deba_grad_moments' bits; no block straddles two arrays, so other splits of the same values may
 * differ in the last bits. */
void deba_grad_moments_many(const float *const *g, const int64_t *d, int n, double *sum, double *sumsq);

/* ---- the SGD step with the moments fused in (deba.torch.SGD) ---- */

/* torch.optim.SGD's settings for one parameter group. Doubles, as Python holds them: the step rounds
 * each to float where torch's kernels do (1 − dampening is taken in double first). */
typedef struct {
    double lr, momentum, dampening, weight_decay;
    int nesterov, maximize;
    int first;   /* the momentum buffers hold nothing yet: buf = d_p, as PyTorch's first step */
} deba_sgd;

/* One SGD step over n parameter arrays p[i] with gradients g[i] and momentum buffers buf[i], each
 * d[i] floats, with PyTorch 1.13's torch.optim.SGD semantics (_single_tensor_sgd), per element:
 *     d = maximize ? −g : g;   if (weight_decay ≠ 0) d = d + weight_decay·p;
 *     if (momentum ≠ 0) { buf = first ? d : momentum·buf + (1 − dampening)·d;
 *                         d = nesterov ? d + momentum·buf : buf; }
 *     p = p − lr·d
 * with torch's float roundings and fused multiply-adds, so p and buf come out bit-equal to
 * torch's CPU kernels. Each gradient is read from memory once: when sum and sumsq are not NULL,
 * the pass ADDS Σg and Σg² of the raw gradients (before the update, not negated by maximize, no
 * weight decay) to them, in deba_grad_moments_many's order, so one call per parameter group, in
 * order, gives the same bits as one deba_grad_moments_many over all the arrays. The same bits
 * at any OpenMP thread count. buf may be NULL when momentum is 0; p[i], g[i], buf[i] may be NULL
 * where d[i] is 0. Settings torch refuses (lr, momentum or weight_decay < 0, nesterov without
 * momentum > 0 and dampening 0), non-finite settings, n < 0, d[i] < 0 and missing arrays are
 * DEBA_E_INPUT naming the argument, before anything is written. */
deba_status deba_sgd_moments_many(float *const *p, const float *const *g, float *const *buf, const int64_t *d,
                                  int n, const deba_sgd *c, double *sum, double *sumsq, deba_err *e);

/* var_k = Σg²/d − (Σg/d)²  (never negative: clamped at 0 against rounding). */
double deba_step_var(double sum, double sumsq, int64_t d);
/* norm_k = sqrt(Σg²) */
double deba_step_norm(double sumsq);

/* Accumulates the per-step statistics over one epoch. */
typedef struct {
    double var_sum;   /* Σ_k var_k */
    double norm_sum;  /* Σ_k norm_k */
    int64_t steps;    /* K_t */
} deba_gradacc;

void deba_gradacc_reset(deba_gradacc *a);
void deba_gradacc_add(deba_gradacc *a, double sum, double sumsq, int64_t d);
double deba_gradacc_var(const deba_gradacc *a);  /* mean_k var_k, 0 with no steps */
double deba_gradacc_norm(const deba_gradacc *a); /* mean_k norm_k, 0 with no steps */

/* |cur − prev| / (prev + ε): norm_var (eq. 2) and loss_var (eq. 3). */
double deba_rel_change(double cur, double prev);

/* Mean of the previous W values of hist[0..n-1] (hist[n-1] is the newest); W = 0 means all n.
 * Returns 0 and sets *count = 0 when n = 0. */
double deba_window_mean(const double *hist, size_t n, int W, size_t *count);
/* confidence = grad_var / mean(window of previous grad_var) (eq. 4); 1 when the window is
 * empty, and when the window mean is 0. */
double deba_confidence(double grad_var, const double *prev, size_t n, int W);

/* ---- descriptive statistics ---- */
double deba_mean(const double *x, size_t n);          /* 0 for n = 0 */
double deba_std_pop(const double *x, size_t n);       /* population std, 0 for n < 1 */
double deba_std_sample(const double *x, size_t n);    /* n − 1 denominator, 0 for n < 2 */
/* Percentile p ∈ [0, 100], linear interpolation between closest ranks (numpy default, type 7).
 * x is not modified. n must be ≥ 1 (returns NAN for n = 0). */
double deba_percentile(const double *x, size_t n, double p);
double deba_median(const double *x, size_t n);

/* ---- confidence intervals (the report's comparisons, SPEC §6) ---- */

/* Regularized incomplete beta I_x(a, b) (a, b > 0, x in [0, 1]; NAN otherwise). */
double deba_betainc(double a, double b, double x);
/* Student's t with df > 0 degrees of freedom: CDF, and quantile at p in (0, 1) (NAN outside);
 * deba_t_quantile(0.975, 2) = 4.303. */
double deba_t_cdf(double t, double df);
double deba_t_quantile(double p, double df);

/* A mean with its confidence interval; lo = hi = NAN when there is none (n < 2). */
typedef struct {
    double mean, lo, hi;
    int n;
} deba_interval;

/* mean ± t_{(1+level)/2, n−1} · s / √n (s: sample std). n = 1 gives the mean and no interval. */
deba_interval deba_ci_mean_t(const double *x, size_t n, double level);
/* Percentile bootstrap of the mean: `resamples` means of n values drawn with replacement by a
 * generator seeded with `seed` (same inputs, same interval), their (1−level)/2 and (1+level)/2
 * percentiles. n = 1 gives the mean and no interval. Bad level or resamples: DEBA_E_INPUT. */
deba_status deba_ci_mean_bootstrap(const double *x, size_t n, double level, int resamples, uint64_t seed,
                                   deba_interval *out, deba_err *e);

/* ---- calibration (SPEC §4) ---- */
typedef struct {
    double tau;     /* 75th percentile of norm_var */
    double theta;   /* median of confidence */
    double lambda;  /* 75th percentile of loss_var */
    int epochs_used;
} deba_thresholds;

/* The pooled per-epoch values (already restricted to epochs t ≥ 2 by the caller), n of each.
 * n = 0 is an input error. */
deba_status deba_calibrate(const double *norm_var, const double *confidence, const double *loss_var,
                           size_t n, deba_thresholds *out, deba_err *e);

/* ---- stability profile (SPEC §5) ---- */
typedef struct {
    double S;
    double cv_grad_var;    /* std_pop / mean of grad_var over t ≥ 2 */
    double mean_norm_var;  /* over t ≥ 2 */
    double mean_loss_var;  /* over t ≥ 2 */
    int epochs_used;
} deba_stability;

/* Arrays hold epochs t = 1..n at indices 0..n-1; only t ≥ 2 (indices ≥ 1) are used.
 * n < 2 is an input error (nothing to measure). A zero mean grad_var gives CV = 0. */
deba_status deba_stability_score(const double *grad_var, const double *norm_var, const double *loss_var,
                                 size_t n, deba_stability *out, deba_err *e);

typedef enum {
    DEBA_ARCHETYPE_NATURALLY_UNSTABLE,
    DEBA_ARCHETYPE_DYNAMICALLY_STABLE,
    DEBA_ARCHETYPE_OVERLY_STABLE,
    DEBA_ARCHETYPE_MODERATELY_STABLE,
    DEBA_ARCHETYPE_COUNT
} deba_archetype;

#define DEBA_ARCH_S_UNSTABLE   0.26  /* S̄ below: Naturally Unstable */
#define DEBA_ARCH_SIGMA_DYN    0.10  /* σ_S at or above: Dynamically Stable */
#define DEBA_ARCH_S_OVERLY     0.54  /* S̄ at or above: Overly Stable */

deba_archetype deba_archetype_classify(double s_mean, double s_std);
const char *deba_archetype_name(deba_archetype a);  /* "Naturally Unstable", ... */
/* What the archetype means for DEBA, one sentence for the profile verdict. */
const char *deba_archetype_advice(deba_archetype a);
/* Exact (case-insensitive) name to enum; returns -1 when unknown. */
int deba_archetype_parse(const char *s);

#endif
