/* DEBA's gradient and loss signals (SPEC §2), descriptive statistics and threshold calibration
 * (SPEC §4). Plain functions over arrays; nothing here allocates except the percentile copy. */
#include "deba/stats.h"
#include "core/moments.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bit-identical whatever the thread count or schedule (SPEC §8 wants identical traces for the same
 * seed, which a plain OpenMP reduction does not promise): see core/moments.h. */
void deba_grad_moments(const float *g, int64_t d, double *sum, double *sumsq)
{
    deba_grad_moments_many(&g, &d, 1, sum, sumsq);
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void span_f32(const float *g, int64_t n, double *sum, double *sumsq)
{
    double s = 0.0, q = 0.0;
    for (int64_t lo = 0; lo < n; lo += DEBA_MOMENT_FOLD)
        deba_moment_fold(g + lo, n - lo < DEBA_MOMENT_FOLD ? n - lo : DEBA_MOMENT_FOLD, &s, &q);
    *sum = s;
    *sumsq = q;
}

/* A round of at most MANY_ROUND units at a time: the units of a round run in parallel. */
#define MANY_ROUND 1024

void moment_units(const int64_t *d, int n, moment_unit_fn unit, const void *ctx, double *sum, double *sumsq)
{
    int ut[MANY_ROUND];
    int64_t uoff[MANY_ROUND], un[MANY_ROUND];
    double us[MANY_ROUND], uq[MANY_ROUND], s = *sum, q = *sumsq;
    int t = 0;
    int64_t off = 0;
    while (t < n) {
        int k = 0;
        for (; k < MANY_ROUND && t < n; k++) {   /* the next round's units, in order */
            int64_t left = d[t] > off ? d[t] - off : 0;
            if (left == 0) {
                t++, off = 0, k--;
                continue;
            }
            ut[k] = t;
            uoff[k] = off;
            un[k] = left < DEBA_MOMENT_UNIT ? left : DEBA_MOMENT_UNIT;
            off += un[k];
        }
        #pragma omp parallel for schedule(static) if (k > 1)
        for (int u = 0; u < k; u++) unit(ctx, ut[u], uoff[u], un[u], &us[u], &uq[u]);
        for (int u = 0; u < k; u++) {
            s += us[u];
            q += uq[u];
        }
    }
    *sum = s;
    *sumsq = q;
}

static void moments_unit(const void *ctx, int t, int64_t off, int64_t n, double *s, double *q)
{
    const float *const *g = ctx;
    span_f32(g[t] + off, n, s, q);
}

void deba_grad_moments_many(const float *const *g, const int64_t *d, int n, double *sum, double *sumsq)
{
    *sum = 0.0;
    *sumsq = 0.0;
    moment_units(d, n, moments_unit, g, sum, sumsq);
}

/* ---- the fused SGD step ---- */

/* torch.optim.SGD's scalars as its CPU kernels see them: each alpha is the Python double rounded
 * to float once (1 − dampening in double first), and every `a.add(b, alpha=x)` is one fused
 * multiply-add a + x·b (ATen's vectorised kernels and their scalar tails both use FMA on x86-64),
 * so fmaf here reproduces its bits. */
typedef struct {
    float *const *p;
    const float *const *g;
    float *const *buf;
    float sign, wd, mom, damp, nlr;   /* ±1 (maximize), wd, momentum, 1 − dampening, −lr */
    int mode;                         /* SGD_* flags */
    int moments;                      /* 0: sum and sumsq are NULL, skip the sums */
} sgd_ctx;

enum { SGD_WD = 1, SGD_MOM = 2, SGD_FIRST = 4, SGD_NEST = 8 };

/* One element loop per combination of options: called with constant flags, so each copy keeps
 * only its own arithmetic and vectorises. sign · g is exact (a negation or nothing). */
static inline __attribute__((always_inline)) void
sgd_loop(float *restrict p, const float *restrict g, float *restrict b, int64_t m, const sgd_ctx *c,
         int wd, int mom, int first, int nest)
{
    const float sign = c->sign, cw = c->wd, cm = c->mom, cd = c->damp, nlr = c->nlr;
#pragma omp simd
    for (int64_t i = 0; i < m; i++) {
        float d = sign * g[i];
        if (wd) d = fmaf(p[i], cw, d);
        if (mom) {
            float v = first ? d : fmaf(d, cd, b[i] * cm);
            b[i] = v;
            d = nest ? fmaf(v, cm, d) : v;
        }
        p[i] = fmaf(d, nlr, p[i]);
    }
}

#define SGD_CASE(M) \
    case M: sgd_loop(p, g, b, m, c, (M) & SGD_WD, (M) & SGD_MOM, (M) & SGD_FIRST, (M) & SGD_NEST); break
static inline __attribute__((always_inline)) void sgd_block(float *p, const float *g, float *b, int64_t m,
                                                            const sgd_ctx *c)
{
    switch (c->mode) {
        SGD_CASE(0);
        SGD_CASE(SGD_WD);
        SGD_CASE(SGD_MOM);
        SGD_CASE(SGD_MOM | SGD_WD);
        SGD_CASE(SGD_MOM | SGD_FIRST);
        SGD_CASE(SGD_MOM | SGD_FIRST | SGD_WD);
        SGD_CASE(SGD_MOM | SGD_NEST);
        SGD_CASE(SGD_MOM | SGD_NEST | SGD_WD);
        SGD_CASE(SGD_MOM | SGD_NEST | SGD_FIRST);
        SGD_CASE(SGD_MOM | SGD_NEST | SGD_FIRST | SGD_WD);
    }
}
#undef SGD_CASE

/* A unit's update, each block of DEBA_MOMENT_FOLD gradient values summed (deba_moment_fold, as
 * span_f32 does) then applied while it is still in L1: the gradient comes from memory once. The
 * clones give fmaf a hardware FMA; the default one calls libm's, slower but with the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void sgd_unit(const void *ctx, int t, int64_t off, int64_t n, double *sum, double *sumsq)
{
    const sgd_ctx *c = ctx;
    float *p = c->p[t] + off, *b = c->buf ? c->buf[t] + off : NULL;
    const float *g = c->g[t] + off;
    double s = 0.0, q = 0.0;
    for (int64_t lo = 0; lo < n; lo += DEBA_MOMENT_FOLD) {
        int64_t m = n - lo < DEBA_MOMENT_FOLD ? n - lo : DEBA_MOMENT_FOLD;
        if (c->moments) deba_moment_fold(g + lo, m, &s, &q);
        sgd_block(p + lo, g + lo, b ? b + lo : NULL, m, c);
    }
    *sum = s;
    *sumsq = q;
}

static int finite_ge0(double x)
{
    return isfinite(x) && x >= 0.0;
}

deba_status deba_sgd_moments_many(float *const *p, const float *const *g, float *const *buf, const int64_t *d,
                                  int n, const deba_sgd *c, double *sum, double *sumsq, deba_err *e)
{
    static const char fn[] = "deba_sgd_moments_many";
    if (!c) return deba_err_set(e, DEBA_E_INPUT, "%s: c (the SGD settings) is NULL", fn);
    if (!finite_ge0(c->lr)) return deba_err_set(e, DEBA_E_INPUT, "%s: lr must be finite and >= 0 (got %g)", fn, c->lr);
    if (!finite_ge0(c->momentum))
        return deba_err_set(e, DEBA_E_INPUT, "%s: momentum must be finite and >= 0 (got %g)", fn, c->momentum);
    if (!isfinite(c->dampening))
        return deba_err_set(e, DEBA_E_INPUT, "%s: dampening must be finite (got %g)", fn, c->dampening);
    if (!finite_ge0(c->weight_decay))
        return deba_err_set(e, DEBA_E_INPUT, "%s: weight_decay must be finite and >= 0 (got %g)", fn,
                            c->weight_decay);
    if (c->nesterov && (c->momentum <= 0.0 || c->dampening != 0.0))
        return deba_err_set(e, DEBA_E_INPUT, "%s: nesterov needs momentum > 0 and dampening 0 (got momentum %g, "
                            "dampening %g)", fn, c->momentum, c->dampening);
    if (n < 0) return deba_err_set(e, DEBA_E_INPUT, "%s: n must be >= 0 (got %d)", fn, n);
    if ((sum == NULL) != (sumsq == NULL))
        return deba_err_set(e, DEBA_E_INPUT, "%s: sum and sumsq must both be NULL or both be set", fn);
    if (n > 0 && (!p || !g || !d))
        return deba_err_set(e, DEBA_E_INPUT, "%s: %s is NULL with n = %d", fn, !p ? "p" : !g ? "g" : "d", n);
    if (n > 0 && c->momentum != 0.0 && !buf)
        return deba_err_set(e, DEBA_E_INPUT, "%s: buf is NULL with momentum %g (it holds the momentum buffers)",
                            fn, c->momentum);
    for (int i = 0; i < n; i++) {
        if (d[i] < 0) return deba_err_set(e, DEBA_E_INPUT, "%s: d[%d] must be >= 0 (got %lld)", fn, i, (long long)d[i]);
        if (d[i] > 0 && (!p[i] || !g[i] || (c->momentum != 0.0 && !buf[i])))
            return deba_err_set(e, DEBA_E_INPUT, "%s: %s[%d] is NULL for an array of %lld values", fn,
                                !p[i] ? "p" : !g[i] ? "g" : "buf", i, (long long)d[i]);
    }
    sgd_ctx x = {.p = p, .g = g, .buf = c->momentum != 0.0 ? buf : NULL, .sign = c->maximize ? -1.0f : 1.0f,
                 .wd = (float)c->weight_decay, .mom = (float)c->momentum, .damp = (float)(1.0 - c->dampening),
                 .nlr = (float)-c->lr, .moments = sum != NULL};
    x.mode = (c->weight_decay != 0.0 ? SGD_WD : 0) |
             (c->momentum != 0.0 ? SGD_MOM | (c->first ? SGD_FIRST : 0) | (c->nesterov ? SGD_NEST : 0) : 0);
    double s0 = 0.0, q0 = 0.0;
    moment_units(d, n, sgd_unit, &x, sum ? sum : &s0, sumsq ? sumsq : &q0);
    return DEBA_OK;
}

double deba_step_var(double sum, double sumsq, int64_t d)
{
    if (d <= 0) return 0.0;
    double m = sum / (double)d;
    double v = sumsq / (double)d - m * m;
    return v > 0.0 ? v : 0.0;
}

double deba_step_norm(double sumsq)
{
    return sqrt(sumsq > 0.0 ? sumsq : 0.0);
}

void deba_gradacc_reset(deba_gradacc *a)
{
    a->var_sum = 0.0;
    a->norm_sum = 0.0;
    a->steps = 0;
}

void deba_gradacc_add(deba_gradacc *a, double sum, double sumsq, int64_t d)
{
    a->var_sum += deba_step_var(sum, sumsq, d);
    a->norm_sum += deba_step_norm(sumsq);
    a->steps++;
}

double deba_gradacc_var(const deba_gradacc *a)
{
    return a->steps > 0 ? a->var_sum / (double)a->steps : 0.0;
}

double deba_gradacc_norm(const deba_gradacc *a)
{
    return a->steps > 0 ? a->norm_sum / (double)a->steps : 0.0;
}

double deba_rel_change(double cur, double prev)
{
    return fabs(cur - prev) / (prev + DEBA_EPS);
}

double deba_window_mean(const double *hist, size_t n, int W, size_t *count)
{
    size_t k = (W <= 0 || (size_t)W > n) ? n : (size_t)W;
    if (count) *count = k;
    return deba_mean(hist + (n - k), k);
}

double deba_confidence(double grad_var, const double *prev, size_t n, int W)
{
    size_t k;
    double m = deba_window_mean(prev, n, W, &k);
    /* Nothing to compare against yet, or a flat-zero history: report "as usual". */
    if (k == 0 || m == 0.0) return 1.0;
    return grad_var / m;
}

double deba_mean(const double *x, size_t n)
{
    if (n == 0) return 0.0;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s / (double)n;
}

/* Two passes (mean first) so a large common offset does not swamp the spread. */
static double sum_sq_dev(const double *x, size_t n)
{
    double m = deba_mean(x, n), s = 0.0;
    for (size_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return s;
}

double deba_std_pop(const double *x, size_t n)
{
    return n < 1 ? 0.0 : sqrt(sum_sq_dev(x, n) / (double)n);
}

double deba_std_sample(const double *x, size_t n)
{
    return n < 2 ? 0.0 : sqrt(sum_sq_dev(x, n) / (double)(n - 1));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double deba_percentile(const double *x, size_t n, double p)
{
    if (n == 0 || !(p >= 0.0 && p <= 100.0)) return NAN;
    double *v = malloc(n * sizeof *v);
    if (!v) return NAN;
    memcpy(v, x, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_double);
    double h = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)floor(h), hi = (size_t)ceil(h);
    if (hi > n - 1) hi = n - 1;
    double r = v[lo] + (h - (double)lo) * (v[hi] - v[lo]);
    free(v);
    return r;
}

double deba_median(const double *x, size_t n)
{
    return deba_percentile(x, n, 50.0);
}

deba_status deba_calibrate(const double *norm_var, const double *confidence, const double *loss_var,
                           size_t n, deba_thresholds *out, deba_err *e)
{
    if (n == 0)
        return deba_err_set(e, DEBA_E_INPUT,
                            "calibration needs at least one epoch t >= 2 in the traces (got none)");
    out->tau = deba_percentile(norm_var, n, 75.0);
    out->theta = deba_median(confidence, n);
    out->lambda = deba_percentile(loss_var, n, 75.0);
    out->epochs_used = (int)n;
    if (isnan(out->tau) || isnan(out->theta) || isnan(out->lambda))
        return deba_err_set(e, DEBA_E_NOMEM, "calibration: out of memory sorting %zu values", n);
    return DEBA_OK;
}

/* ---- confidence intervals (report comparisons, SPEC §6) ---- */

/* Continued fraction of the regularized incomplete beta (modified Lentz), valid for
 * x < (a + 1) / (a + b + 2); deba_betainc uses the symmetry I_x(a,b) = 1 − I_{1−x}(b,a) otherwise. */
static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0, d = 1.0 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 500; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < 1e-16) break;
    }
    return h;
}

double deba_betainc(double a, double b, double x)
{
    if (!(a > 0) || !(b > 0) || !(x >= 0) || !(x <= 1)) return NAN;
    if (x == 0 || x == 1) return x;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1.0) / (a + b + 2.0)) return exp(lbt) * betacf(a, b, x) / a;
    return 1.0 - exp(lbt) * betacf(b, a, 1.0 - x) / b;
}

double deba_t_cdf(double t, double df)
{
    if (!(df > 0) || isnan(t)) return NAN;
    if (isinf(t)) return t > 0 ? 1.0 : 0.0;
    double tail = 0.5 * deba_betainc(0.5 * df, 0.5, df / (df + t * t));   /* P(T > |t|) */
    return t >= 0 ? 1.0 - tail : tail;
}

double deba_t_quantile(double p, double df)
{
    if (!(p > 0 && p < 1) || !(df > 0)) return NAN;
    if (p == 0.5) return 0.0;
    if (p < 0.5) return -deba_t_quantile(1.0 - p, df);
    /* the CDF is increasing: bracket, then bisect to double precision (a few hundred CDF
     * evaluations, cheap next to anything the report does) */
    double lo = 0.0, hi = 1.0;
    while (deba_t_cdf(hi, df) < p && hi < 1e300) {
        lo = hi;
        hi *= 2.0;
    }
    for (int i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (deba_t_cdf(mid, df) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

deba_interval deba_ci_mean_t(const double *x, size_t n, double level)
{
    deba_interval ci = {NAN, NAN, NAN, (int)n};
    if (n == 0) return ci;
    ci.mean = deba_mean(x, n);
    if (n < 2 || !(level > 0 && level < 1)) return ci;
    double half = deba_t_quantile(0.5 + 0.5 * level, (double)(n - 1)) * deba_std_sample(x, n) / sqrt((double)n);
    ci.lo = ci.mean - half;
    ci.hi = ci.mean + half;
    return ci;
}

/* splitmix64: a small, well-mixed generator whose whole state is the seed, so a bootstrap is
 * reproducible from (data, B, seed) alone on every platform. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

deba_status deba_ci_mean_bootstrap(const double *x, size_t n, double level, int resamples, uint64_t seed,
                                   deba_interval *out, deba_err *e)
{
    *out = (deba_interval){NAN, NAN, NAN, (int)n};
    if (!(level > 0 && level < 1))
        return deba_err_set(e, DEBA_E_INPUT, "bootstrap: level %g is not in (0, 1)", level);
    if (resamples < 1) return deba_err_set(e, DEBA_E_INPUT, "bootstrap: %d resamples (need at least 1)", resamples);
    if (n == 0) return DEBA_OK;
    out->mean = deba_mean(x, n);
    if (n < 2) return DEBA_OK;
    double *m = malloc((size_t)resamples * sizeof *m);
    if (!m) return deba_err_set(e, DEBA_E_NOMEM, "bootstrap: out of memory for %d resamples", resamples);
    uint64_t s = seed;
    for (int b = 0; b < resamples; b++) {
        double sum = 0.0;
        for (size_t i = 0; i < n; i++) sum += x[splitmix64(&s) % n];
        m[b] = sum / (double)n;
    }
    out->lo = deba_percentile(m, (size_t)resamples, 50.0 * (1.0 - level));
    out->hi = deba_percentile(m, (size_t)resamples, 50.0 * (1.0 + level));
    free(m);
    if (isnan(out->lo) || isnan(out->hi))
        return deba_err_set(e, DEBA_E_NOMEM, "bootstrap: out of memory sorting %d resamples", resamples);
    return DEBA_OK;
}
