/* Tests for the per-epoch signals, descriptive statistics, calibration, stability score and
 * archetypes (core/stats.c, core/archetype.c). Every expected value is worked out by hand from
 * the SPEC formula on small literal inputs. */
#include "tests/testutil.h"

#include <float.h>
#include <math.h>
#include <omp.h>

#include "deba/stats.h"

#define TOL 1e-12

/* This cmocka (1.1) has no assert_double_equal; |a − b| ≤ tol, printing both on failure. */
#define assert_near(a, b, tol) do { \
        double a_ = (a), b_ = (b); \
        if (!(fabs(a_ - b_) <= (tol))) fail_msg("%s = %.17g, expected %.17g", #a, a_, b_); \
    } while (0)

static void test_grad_moments_small(void **state)
{
    (void)state;
    const float g[4] = {1, 2, 3, 4};
    double s, q;
    deba_grad_moments(g, 4, &s, &q);
    assert_near(s, 1 + 2 + 3 + 4, 0);
    assert_near(q, 1 + 4 + 9 + 16, 0);
    deba_grad_moments(g, 0, &s, &q);
    assert_near(s, 0, 0);
    assert_near(q, 0, 0);
}

/* Large enough to be split over many blocks and threads: g_i = (i mod 7) − 3. */
static void test_grad_moments_large(void **state)
{
    (void)state;
    const int64_t d = 1000003; /* 7·142857 + 4 */
    float *g = malloc((size_t)d * sizeof *g);
    assert_non_null(g);
    for (int64_t i = 0; i < d; i++) g[i] = (float)(i % 7 - 3);
    double s, q;
    deba_grad_moments(g, d, &s, &q);
    /* A full cycle −3..3 sums to 0 and its squares to 9+4+1+0+1+4+9 = 28; the 4 left over are
     * −3, −2, −1, 0: sum −6, squares 14. */
    assert_near(s, -6.0, 0);
    assert_near(q, 28.0 * 142857 + 14, 0);
    free(g);
}

/* SPEC §8 wants identical traces for a seed: the sums must not depend on the thread count. */
static void test_grad_moments_thread_independent(void **state)
{
    (void)state;
    const int64_t d = 300001;
    float *g = malloc((size_t)d * sizeof *g);
    assert_non_null(g);
    uint32_t x = 12345;
    for (int64_t i = 0; i < d; i++) {
        x = x * 1664525u + 1013904223u;
        g[i] = (float)((double)x / 4294967296.0 - 0.5) * 1e-3f;
    }
    int saved = omp_get_max_threads();
    double s1, q1, s7, q7;
    omp_set_num_threads(1);
    deba_grad_moments(g, d, &s1, &q1);
    omp_set_num_threads(7);
    deba_grad_moments(g, d, &s7, &q7);
    omp_set_num_threads(saved);
    assert_memory_equal(&s1, &s7, sizeof s1);
    assert_memory_equal(&q1, &q7, sizeof q1);
    free(g);
}

/* deba_grad_moments_many over arrays of awkward lengths (empty ones between, units of 16384 cut
 * inside an array, more units than one round of 1024): integer values give exact sums to check
 * against the closed form; random ones are checked against a long-double sum, and for the same
 * bits at 1 and 7 threads. */
static void test_grad_moments_many(void **state)
{
    (void)state;
    const int64_t len[] = {0, 1, 17, 16384, 16385, 0, 300001, 5, 17000000};
    enum { N = sizeof len / sizeof len[0] };
    float *g[N];
    int64_t total = 0;
    for (int t = 0; t < N; t++) {
        g[t] = malloc((size_t)(len[t] ? len[t] : 1) * sizeof(float));
        assert_non_null(g[t]);
        total += len[t];
    }
    /* g = (i mod 7) − 3 over the concatenation, i counting across arrays */
    int64_t i = 0;
    for (int t = 0; t < N; t++)
        for (int64_t k = 0; k < len[t]; k++, i++) g[t][k] = (float)(i % 7 - 3);
    double s, q, es = 0, eq = 0;
    for (int64_t r = total - total % 7; r < total; r++) es += (double)(r % 7 - 3), eq += (double)((r % 7 - 3) * (r % 7 - 3));
    eq += 28.0 * (double)(total / 7);
    deba_grad_moments_many((const float *const *)g, len, N, &s, &q);
    assert_near(s, es, 0);
    assert_near(q, eq, 0);

    uint32_t x = 777;
    long double ls = 0, lq = 0, la = 0;
    for (int t = 0; t < N; t++)
        for (int64_t k = 0; k < len[t]; k++) {
            x = x * 1664525u + 1013904223u;
            g[t][k] = (float)((double)x / 4294967296.0 - 0.3) * 1e-3f;
            ls += g[t][k], lq += (long double)g[t][k] * g[t][k], la += fabsl((long double)g[t][k]);
        }
    int saved = omp_get_max_threads();
    double s1, q1, s7, q7;
    omp_set_num_threads(1);
    deba_grad_moments_many((const float *const *)g, len, N, &s1, &q1);
    omp_set_num_threads(7);
    deba_grad_moments_many((const float *const *)g, len, N, &s7, &q7);
    omp_set_num_threads(saved);
    assert_memory_equal(&s1, &s7, sizeof s1);
    assert_memory_equal(&q1, &q7, sizeof q1);
    assert_near(s1, (double)ls, 1e-6 * (double)la);   /* float lanes of at most 64 values each */
    assert_near(q1, (double)lq, 1e-6 * (double)lq);
    deba_grad_moments_many(NULL, NULL, 0, &s, &q);
    assert_near(s, 0, 0);
    assert_near(q, 0, 0);
    for (int t = 0; t < N; t++) free(g[t]);
}

/* ---- deba_sgd_moments_many: the fused SGD step ---- */

/* Arrays of awkward lengths: empty, one value, shorter than a lane row, one short of and one past a
 * 16384-value unit, and one of several units. */
static const int64_t SGD_LEN[] = {0, 1, 7, 16383, 16385, 3, 50001};
enum { SGD_N = sizeof SGD_LEN / sizeof SGD_LEN[0] };

typedef struct {
    float *p[SGD_N], *g[SGD_N], *b[SGD_N];
} sgd_arrays;

static float lcg(uint32_t *x, double centre, float scale)
{
    *x = *x * 1664525u + 1013904223u;
    return (float)((double)*x / 4294967296.0 - centre) * scale;
}

static void sgd_fill(sgd_arrays *a, uint32_t seed)
{
    for (int t = 0; t < SGD_N; t++) {
        size_t n = (size_t)(SGD_LEN[t] ? SGD_LEN[t] : 1);
        a->p[t] = malloc(n * sizeof(float));
        a->g[t] = malloc(n * sizeof(float));
        a->b[t] = malloc(n * sizeof(float));
        assert_true(a->p[t] && a->g[t] && a->b[t]);
        for (int64_t k = 0; k < SGD_LEN[t]; k++) {
            a->p[t][k] = lcg(&seed, 0.5, 2.0f);
            a->g[t][k] = lcg(&seed, 0.3, 1e-2f);
            a->b[t][k] = lcg(&seed, 0.5, 1e-2f);
        }
    }
}

static void sgd_copy(sgd_arrays *dst, const sgd_arrays *src)
{
    for (int t = 0; t < SGD_N; t++) {
        size_t n = (size_t)(SGD_LEN[t] ? SGD_LEN[t] : 1);
        dst->p[t] = malloc(n * sizeof(float));
        dst->g[t] = malloc(n * sizeof(float));
        dst->b[t] = malloc(n * sizeof(float));
        assert_true(dst->p[t] && dst->g[t] && dst->b[t]);
        memcpy(dst->p[t], src->p[t], n * sizeof(float));
        memcpy(dst->g[t], src->g[t], n * sizeof(float));
        memcpy(dst->b[t], src->b[t], n * sizeof(float));
    }
}

static void sgd_free(sgd_arrays *a)
{
    for (int t = 0; t < SGD_N; t++) free(a->p[t]), free(a->g[t]), free(a->b[t]);
}

static int sgd_equal(const sgd_arrays *a, const sgd_arrays *b)
{
    for (int t = 0; t < SGD_N; t++)
        if (memcmp(a->p[t], b->p[t], (size_t)SGD_LEN[t] * sizeof(float)) ||
            memcmp(a->b[t], b->b[t], (size_t)SGD_LEN[t] * sizeof(float)))
            return 0;
    return 1;
}

/* torch 1.13's _single_tensor_sgd spelled out one element at a time in float, each of its
 * tensor ops as ATen's CPU kernel computes it: neg is exact, mul rounds once, and add(x, alpha=a)
 * is fmaf(x, (float)a, self) (ATen's vectorised add and its scalar tail both fuse; measured
 * against torch in python/tests/test_deba.py). */
static void sgd_torch_ref(float *p, float g, float *buf, const deba_sgd *c)
{
    float d = c->maximize ? -g : g;
    if (c->weight_decay != 0) d = fmaf(*p, (float)c->weight_decay, d);
    if (c->momentum != 0) {
        *buf = c->first ? d : fmaf(d, (float)(1.0 - c->dampening), *buf * (float)c->momentum);
        d = c->nesterov ? fmaf(*buf, (float)c->momentum, d) : *buf;
    }
    *p = fmaf(d, (float)-c->lr, *p);
}

/* The same step in double from the formula alone (no roundings to mimic): the float result must
 * lie within a few float ulps of it. */
static void sgd_double_ref(double *p, double g, double *buf, const deba_sgd *c)
{
    double d = c->maximize ? -g : g;
    if (c->weight_decay != 0) d += c->weight_decay * *p;
    if (c->momentum != 0) {
        *buf = c->first ? d : c->momentum * *buf + (1.0 - c->dampening) * d;
        d = c->nesterov ? d + c->momentum * *buf : *buf;
    }
    *p -= c->lr * d;
}

/* Every option combination torch accepts, first step and later, against both references; the
 * moments bit-equal to deba_grad_moments_many over the same gradients and within float-lane
 * rounding of a long-double sum; no sums asked (NULL) changes nothing in the update. */
static void test_sgd_moments_reference(void **state)
{
    (void)state;
    sgd_arrays in;
    sgd_fill(&in, 4242);
    double want_s, want_q;
    deba_grad_moments_many((const float *const *)in.g, SGD_LEN, SGD_N, &want_s, &want_q);
    long double ls = 0, lq = 0, la = 0;
    for (int t = 0; t < SGD_N; t++)
        for (int64_t k = 0; k < SGD_LEN[t]; k++)
            ls += in.g[t][k], lq += (long double)in.g[t][k] * in.g[t][k], la += fabsl((long double)in.g[t][k]);
    int combos = 0;
    for (int mom = 0; mom < 2; mom++)
        for (int damp = 0; damp < 2; damp++)
            for (int nest = 0; nest < 2; nest++)
                for (int wd = 0; wd < 2; wd++)
                    for (int max = 0; max < 2; max++)
                        for (int first = 0; first < 2; first++) {
                            if ((!mom && (damp || nest)) || (nest && damp)) continue;   /* torch refuses or ignores */
                            deba_sgd c = {.lr = 0.1, .momentum = mom ? 0.9 : 0.0, .dampening = damp ? 0.1 : 0.0,
                                          .weight_decay = wd ? 5e-4 : 0.0, .nesterov = nest, .maximize = max,
                                          .first = first};
                            sgd_arrays got, ref;
                            sgd_copy(&got, &in);
                            sgd_copy(&ref, &in);
                            double s = 0.0, q = 0.0;
                            deba_err e = {0};
                            assert_int_equal(deba_sgd_moments_many(got.p, (const float *const *)got.g, got.b, SGD_LEN,
                                                                   SGD_N, &c, &s, &q, &e), DEBA_OK);
                            assert_memory_equal(&s, &want_s, sizeof s);
                            assert_memory_equal(&q, &want_q, sizeof q);
                            for (int t = 0; t < SGD_N; t++)
                                for (int64_t k = 0; k < SGD_LEN[t]; k++) {
                                    double dp = in.p[t][k], db = in.b[t][k];
                                    sgd_torch_ref(&ref.p[t][k], in.g[t][k], &ref.b[t][k], &c);
                                    sgd_double_ref(&dp, in.g[t][k], &db, &c);
                                    /* a few float roundings of the operands: p ~ 1, g and buf < 1e-2 */
                                    assert_near(got.p[t][k], dp, 4 * FLT_EPSILON * (fabs(dp) + 2e-2));
                                    if (mom) assert_near(got.b[t][k], db, 4 * FLT_EPSILON * (fabs(db) + 2e-2));
                                }
                            assert_true(sgd_equal(&got, &ref));
                            if (!mom)   /* without momentum the buffers are not touched */
                                for (int t = 0; t < SGD_N; t++)
                                    assert_memory_equal(got.b[t], in.b[t], (size_t)SGD_LEN[t] * sizeof(float));
                            sgd_arrays nos;
                            sgd_copy(&nos, &in);
                            assert_int_equal(deba_sgd_moments_many(nos.p, (const float *const *)nos.g,
                                                                   mom ? nos.b : NULL, SGD_LEN, SGD_N, &c, NULL, NULL,
                                                                   &e), DEBA_OK);
                            if (!mom)
                                for (int t = 0; t < SGD_N; t++) memcpy(nos.b[t], got.b[t], (size_t)SGD_LEN[t] * 4);
                            assert_true(sgd_equal(&nos, &got));
                            sgd_free(&nos);
                            sgd_free(&got);
                            sgd_free(&ref);
                            combos++;
                        }
    assert_int_equal(combos, 32);   /* (wd × maximize × first) × (no momentum, momentum, + dampening, nesterov) */
    assert_near(want_s, (double)ls, 1e-6 * (double)la);
    assert_near(want_q, (double)lq, 1e-6 * (double)lq);
    sgd_free(&in);
}

/* The same bits at 1 and 3 threads, and per parameter group: the arrays split over two calls (in
 * order) add up to the one call's sums bit for bit, which equal deba_grad_moments_many's. */
static void test_sgd_moments_threads_and_groups(void **state)
{
    (void)state;
    sgd_arrays in, one, three, split;
    sgd_fill(&in, 99);
    sgd_copy(&one, &in);
    sgd_copy(&three, &in);
    sgd_copy(&split, &in);
    deba_sgd c = {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4, .nesterov = 1};
    double s1 = 0, q1 = 0, s3 = 0, q3 = 0, ss = 0, qs = 0, want_s, want_q;
    deba_err e = {0};
    deba_grad_moments_many((const float *const *)in.g, SGD_LEN, SGD_N, &want_s, &want_q);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(deba_sgd_moments_many(one.p, (const float *const *)one.g, one.b, SGD_LEN, SGD_N, &c, &s1, &q1,
                                           &e), DEBA_OK);
    omp_set_num_threads(3);
    assert_int_equal(deba_sgd_moments_many(three.p, (const float *const *)three.g, three.b, SGD_LEN, SGD_N, &c, &s3,
                                           &q3, &e), DEBA_OK);
    for (int cut = 0; cut <= SGD_N; cut += SGD_N / 2 + 1) {   /* groups [0, cut) and [cut, N), cut = 0, 4 */
        sgd_arrays grp;
        sgd_copy(&grp, &in);
        ss = qs = 0;
        assert_int_equal(deba_sgd_moments_many(grp.p, (const float *const *)grp.g, grp.b, SGD_LEN, cut, &c, &ss,
                                               &qs, &e), DEBA_OK);
        assert_int_equal(deba_sgd_moments_many(grp.p + cut, (const float *const *)grp.g + cut, grp.b + cut,
                                               SGD_LEN + cut, SGD_N - cut, &c, &ss, &qs, &e), DEBA_OK);
        assert_memory_equal(&ss, &want_s, sizeof ss);
        assert_memory_equal(&qs, &want_q, sizeof qs);
        assert_true(sgd_equal(&grp, &one));
        sgd_free(&grp);
    }
    /* the cut inside the run of units: after the 16383-value array (index 3) */
    assert_int_equal(deba_sgd_moments_many(split.p, (const float *const *)split.g, split.b, SGD_LEN, 4, &c, &ss, &qs,
                                           &e), DEBA_OK);
    omp_set_num_threads(saved);
    assert_memory_equal(&s1, &want_s, sizeof s1);
    assert_memory_equal(&q1, &want_q, sizeof q1);
    assert_memory_equal(&s3, &want_s, sizeof s3);
    assert_memory_equal(&q3, &want_q, sizeof q3);
    assert_true(sgd_equal(&one, &three));
    /* "adds to": each unit's sums go onto the running total one after the other, starting from what
     * *sum held: the 50001-value array is units of 16384, 16384, 16384 and 849 values, whose sums
     * deba_grad_moments_many gives one unit at a time; folded onto 1e13 in that order. */
    enum { BIG = SGD_N - 1 };
    double start = 1e13, fs = start, fq = start, us[4], uq[4];
    for (int u = 0; u < 4; u++) {
        const float *ug = in.g[BIG] + 16384 * u;
        int64_t un = u < 3 ? 16384 : SGD_LEN[BIG] - 3 * 16384;
        deba_grad_moments_many(&ug, &un, 1, &us[u], &uq[u]);
        fs += us[u], fq += uq[u];
    }
    /* the order matters at this magnitude: adding the call's own total once would differ */
    assert_true(fs != start + (((us[0] + us[1]) + us[2]) + us[3]) || fq != start + (((uq[0] + uq[1]) + uq[2]) + uq[3]));
    sgd_arrays x;
    sgd_copy(&x, &in);
    double sa = start, qa = start;
    assert_int_equal(deba_sgd_moments_many(x.p + BIG, (const float *const *)x.g + BIG, x.b + BIG, SGD_LEN + BIG, 1, &c,
                                           &sa, &qa, &e), DEBA_OK);
    assert_memory_equal(&sa, &fs, sizeof sa);
    assert_memory_equal(&qa, &fq, sizeof qa);
    sgd_free(&x);
    sgd_free(&in), sgd_free(&one), sgd_free(&three), sgd_free(&split);
}

/* Settings torch refuses, non-finite ones and malformed arrays: DEBA_E_INPUT naming the argument,
 * and nothing written. */
static void test_sgd_moments_bad_args(void **state)
{
    (void)state;
    float p[3] = {1, 2, 3}, g[3] = {1, 1, 1}, b[3] = {4, 5, 6};
    float *pp[2] = {p, p + 1}, *bb[2] = {b, b + 1}, *bnull[2] = {b, NULL}, *pnull[2] = {NULL, p};
    const float *gg[2] = {g, g + 1};
    int64_t d[2] = {1, 2}, dneg[2] = {1, -1}, dzero[2] = {1, 0};
    const deba_sgd ok = {.lr = 0.1, .momentum = 0.9};
    struct {
        deba_sgd c;
        const char *msg;
    } bad[] = {
        {{.lr = -0.1}, "lr must be finite and >= 0 (got -0.1)"},
        {{.lr = NAN}, "lr must be finite"},
        {{.lr = 0.1, .momentum = -0.5}, "momentum must be finite and >= 0 (got -0.5)"},
        {{.lr = 0.1, .momentum = INFINITY}, "momentum must be finite"},
        {{.lr = 0.1, .dampening = NAN}, "dampening must be finite"},
        {{.lr = 0.1, .weight_decay = -1e-4}, "weight_decay must be finite and >= 0"},
        {{.lr = 0.1, .nesterov = 1}, "nesterov needs momentum > 0 and dampening 0 (got momentum 0,"},
        {{.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = 1}, "dampening 0.1)"},
    };
    deba_err e = {0};
    double s = 7, q = 8;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(deba_sgd_moments_many(pp, gg, bb, d, 2, &bad[i].c, &s, &q, &e), DEBA_E_INPUT);
        if (!strstr(e.msg, bad[i].msg)) fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, bad[i].msg);
    }
    struct {
        float *const *p;
        float *const *b;
        const int64_t *d;
        int n;
        const char *msg;
    } arr[] = {
        {pp, bb, d, -1, "n must be >= 0 (got -1)"},
        {pp, bb, dneg, 2, "d[1] must be >= 0 (got -1)"},
        {pp, bnull, d, 2, "buf[1] is NULL for an array of 2 values"},
        {pnull, bb, d, 2, "p[0] is NULL for an array of 1 values"},
        {pp, NULL, d, 2, "buf is NULL with momentum 0.9"},
        {NULL, bb, d, 2, "p is NULL with n = 2"},
    };
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++) {
        assert_int_equal(deba_sgd_moments_many(arr[i].p, gg, arr[i].b, arr[i].d, arr[i].n, &ok, &s, &q, &e),
                         DEBA_E_INPUT);
        if (!strstr(e.msg, arr[i].msg)) fail_msg("array case %zu: '%s' lacks '%s'", i, e.msg, arr[i].msg);
    }
    assert_int_equal(deba_sgd_moments_many(pp, gg, bb, d, 2, NULL, &s, &q, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "c (the SGD settings) is NULL"));
    assert_int_equal(deba_sgd_moments_many(pp, gg, bb, d, 2, &ok, &s, NULL, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "sum and sumsq"));
    /* nothing was written by any refused call */
    const float p0[3] = {1, 2, 3}, b0[3] = {4, 5, 6};
    assert_memory_equal(p, p0, sizeof p);
    assert_memory_equal(b, b0, sizeof b);
    assert_near(s, 7, 0);
    assert_near(q, 8, 0);
    /* an empty array may be NULL; momentum 0 needs no buffers: p -= 0.5·g, sums 1 and 1 */
    float *pz[2] = {p, NULL};
    const deba_sgd plain = {.lr = 0.5};
    s = q = 0;
    assert_int_equal(deba_sgd_moments_many(pz, gg, NULL, dzero, 2, &plain, &s, &q, &e), DEBA_OK);
    assert_near(p[0], 0.5, 0);
    assert_near(p[1], 2, 0);
    assert_near(s, 1, 0);
    assert_near(q, 1, 0);
    /* n = 0 only checks the settings and leaves the sums as they were */
    s = 3;
    assert_int_equal(deba_sgd_moments_many(NULL, NULL, NULL, NULL, 0, &ok, &s, &q, &e), DEBA_OK);
    assert_near(s, 3, 0);
}

static void test_step_var_norm(void **state)
{
    (void)state;
    /* g = {1,2,3,4}: Σg = 10, Σg² = 30, d = 4 → 30/4 − (10/4)² = 7.5 − 6.25 */
    assert_near(deba_step_var(10, 30, 4), 1.25, TOL);
    assert_near(deba_step_norm(30), sqrt(30.0), TOL);
    /* g = {1,1,1}: 3/3 − 1² = 0 */
    assert_near(deba_step_var(3, 3, 3), 0.0, 0);
    /* An inconsistent pair that would give 1/2 − 1 = −0.5 is clamped to 0. */
    assert_near(deba_step_var(2, 1, 2), 0.0, 0);
    assert_near(deba_step_var(1, 1, 0), 0.0, 0);
}

static void test_gradacc(void **state)
{
    (void)state;
    deba_gradacc a;
    deba_gradacc_reset(&a);
    assert_near(deba_gradacc_var(&a), 0, 0);
    assert_near(deba_gradacc_norm(&a), 0, 0);
    deba_gradacc_add(&a, 10, 30, 4); /* {1,2,3,4}: var 1.25, norm √30 */
    deba_gradacc_add(&a, 4, 16, 4);  /* {0,0,0,4}: var 16/4 − 1² = 3, norm 4 */
    assert_int_equal(a.steps, 2);
    assert_near(deba_gradacc_var(&a), (1.25 + 3) / 2, TOL);
    assert_near(deba_gradacc_norm(&a), (sqrt(30.0) + 4) / 2, TOL);
    deba_gradacc_reset(&a);
    assert_int_equal(a.steps, 0);
    assert_near(deba_gradacc_var(&a), 0, 0);
}

static void test_rel_change(void **state)
{
    (void)state;
    assert_near(deba_rel_change(1.2, 1.0), 0.2 / (1.0 + 1e-8), TOL);
    assert_near(deba_rel_change(0.8, 1.0), 0.2 / (1.0 + 1e-8), TOL);
    assert_near(deba_rel_change(3.0, 3.0), 0.0, 0);
    assert_near(deba_rel_change(5.0, 0.0), 5.0 / 1e-8, 1e-3);
}

static void test_window_mean(void **state)
{
    (void)state;
    const double h[5] = {1, 2, 3, 4, 10};
    size_t k = 99;
    assert_near(deba_window_mean(h, 5, 2, &k), (4 + 10) / 2.0, TOL);
    assert_int_equal(k, 2);
    assert_near(deba_window_mean(h, 5, 0, &k), 20 / 5.0, TOL);
    assert_int_equal(k, 5);
    assert_near(deba_window_mean(h, 5, 10, &k), 20 / 5.0, TOL); /* W > n: all of it */
    assert_int_equal(k, 5);
    assert_near(deba_window_mean(h, 5, 1, &k), 10.0, TOL);
    assert_int_equal(k, 1);
    assert_near(deba_window_mean(h, 0, 2, &k), 0.0, 0);
    assert_int_equal(k, 0);
    assert_near(deba_window_mean(NULL, 0, 0, NULL), 0.0, 0);
}

static void test_confidence(void **state)
{
    (void)state;
    const double h[5] = {1, 2, 3, 4, 10};
    assert_near(deba_confidence(14, h, 5, 2), 14 / 7.0, TOL); /* window {4,10} */
    assert_near(deba_confidence(14, h, 5, 0), 14 / 4.0, TOL); /* mean of all = 4 */
    assert_near(deba_confidence(14, h, 0, 2), 1.0, 0);        /* empty window */
    const double z[2] = {0, 0};
    assert_near(deba_confidence(3, z, 2, 0), 1.0, 0);         /* zero window mean */
}

static void test_mean_std(void **state)
{
    (void)state;
    const double x[8] = {2, 4, 4, 4, 5, 5, 7, 9};
    /* Σ = 40, mean 5; squared deviations 9+1+1+1+0+0+4+16 = 32 */
    assert_near(deba_mean(x, 8), 5.0, TOL);
    assert_near(deba_std_pop(x, 8), sqrt(32.0 / 8), TOL);
    assert_near(deba_std_sample(x, 8), sqrt(32.0 / 7), TOL);
    assert_near(deba_mean(x, 0), 0.0, 0);
    assert_near(deba_std_pop(x, 0), 0.0, 0);
    assert_near(deba_std_pop(x, 1), 0.0, 0);
    assert_near(deba_std_sample(x, 1), 0.0, 0);
    /* A large offset must not swamp the spread: {1e9+1, 1e9+3} → pop std 1 */
    const double y[2] = {1e9 + 1, 1e9 + 3};
    assert_near(deba_std_pop(y, 2), 1.0, 1e-6);
}

static void test_percentile(void **state)
{
    (void)state;
    const double a[4] = {1, 2, 3, 4};
    /* numpy.percentile([1,2,3,4], 75): h = 3·0.75 = 2.25 → 3 + 0.25·(4 − 3) */
    assert_near(deba_percentile(a, 4, 75), 3.25, TOL);
    assert_near(deba_percentile(a, 4, 50), 2.5, TOL);   /* h = 1.5 */
    assert_near(deba_percentile(a, 4, 25), 1.75, TOL);  /* h = 0.75 */
    assert_near(deba_percentile(a, 4, 0), 1.0, 0);
    assert_near(deba_percentile(a, 4, 100), 4.0, 0);

    const double one[1] = {7};
    assert_near(deba_percentile(one, 1, 0), 7.0, 0);
    assert_near(deba_percentile(one, 1, 33), 7.0, 0);
    assert_near(deba_percentile(one, 1, 100), 7.0, 0);

    const double two[2] = {20, 10};
    assert_near(deba_percentile(two, 2, 25), 12.5, TOL); /* h = 0.25 → 10 + 0.25·10 */
    assert_near(deba_percentile(two, 2, 90), 19.0, TOL); /* h = 0.9 */

    const double ties[5] = {2, 5, 2, 1, 2};                       /* sorted 1 2 2 2 5 */
    assert_near(deba_percentile(ties, 5, 50), 2.0, 0);    /* h = 2 */
    assert_near(deba_percentile(ties, 5, 40), 2.0, 0);    /* h = 1.6, between 2 and 2 */
    assert_near(deba_percentile(ties, 5, 90), 3.8, TOL);  /* h = 3.6 → 2 + 0.6·3 */

    double unsorted[4] = {4, 1, 3, 2};
    assert_near(deba_percentile(unsorted, 4, 75), 3.25, TOL);
    assert_near(unsorted[0], 4, 0);
    assert_near(unsorted[1], 1, 0);
    assert_near(unsorted[2], 3, 0);
    assert_near(unsorted[3], 2, 0);

    assert_true(isnan(deba_percentile(a, 0, 50)));
    assert_true(isnan(deba_percentile(a, 4, 101)));
    assert_true(isnan(deba_percentile(a, 4, -1)));
}

static void test_median(void **state)
{
    (void)state;
    const double odd[3] = {3, 1, 2}, even[4] = {4, 1, 3, 2};
    assert_near(deba_median(odd, 3), 2.0, 0);
    assert_near(deba_median(even, 4), 2.5, TOL);
}

static void test_calibrate(void **state)
{
    (void)state;
    const double nv[4] = {0.4, 0.1, 0.3, 0.2};
    const double conf[3] = {0.5, 1.5, 1.0};
    const double lv[4] = {0.04, 0.01, 0.03, 0.02};
    deba_thresholds t;
    deba_err e;
    deba_err_clear(&e);
    /* n = 3: the first three values of each array. */
    assert_int_equal(deba_calibrate(nv, conf, lv, 3, &t, &e), DEBA_OK);
    /* norm_var {0.4,0.1,0.3} sorted 0.1 0.3 0.4, h = 2·0.75 = 1.5 → 0.3 + 0.5·0.1 */
    assert_near(t.tau, 0.35, TOL);
    assert_near(t.theta, 1.0, TOL);              /* median of 0.5, 1.0, 1.5 */
    /* loss_var {0.04,0.01,0.03} sorted .01 .03 .04, h = 1.5 → 0.03 + 0.5·0.01 */
    assert_near(t.lambda, 0.035, TOL);
    assert_int_equal(t.epochs_used, 3);

    const double c4[4] = {1, 2, 3, 4};
    assert_int_equal(deba_calibrate(nv, c4, lv, 4, &t, &e), DEBA_OK);
    assert_near(t.tau, 0.325, TOL);    /* h = 2.25 → 0.3 + 0.25·0.1 */
    assert_near(t.theta, 2.5, TOL);
    assert_near(t.lambda, 0.0325, TOL);
    assert_int_equal(t.epochs_used, 4);

    assert_int_equal(deba_calibrate(nv, c4, lv, 0, &t, &e), DEBA_E_INPUT);
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_true(strlen(e.msg) > 0);
}

static void test_stability_score(void **state)
{
    (void)state;
    /* Epoch 1 (index 0) is ignored: its huge grad_var must not count. */
    const double gv[4] = {100, 1, 2, 3};
    const double nv[4] = {0, 0.1, 0.2, 0.3};
    const double lv[4] = {0, 0.05, 0.10, 0.15};
    deba_stability st;
    deba_err e;
    assert_int_equal(deba_stability_score(gv, nv, lv, 4, &st, &e), DEBA_OK);
    /* grad_var over t ≥ 2: {1,2,3}, mean 2, pop var (1+0+1)/3 → CV = √(2/3) / 2 */
    double cv = sqrt(2.0 / 3.0) / 2.0;
    assert_near(st.cv_grad_var, cv, TOL);
    assert_near(st.mean_norm_var, 0.2, TOL);
    assert_near(st.mean_loss_var, 0.1, TOL);
    assert_near(st.S, 1.0 / (1.0 + cv + 0.2 + 0.1), TOL); /* ≈ 0.5854 */
    assert_int_equal(st.epochs_used, 3);

    const double zero[3] = {5, 0, 0};
    const double nz[3] = {0, 0.5, 0.5};
    assert_int_equal(deba_stability_score(zero, nz, nz, 3, &st, &e), DEBA_OK);
    assert_near(st.cv_grad_var, 0.0, 0);
    assert_near(st.S, 1.0 / (1.0 + 0 + 0.5 + 0.5), TOL);

    assert_int_equal(deba_stability_score(gv, nv, lv, 1, &st, &e), DEBA_E_INPUT);
    assert_true(strlen(e.msg) > 0);
}

static void test_archetype_boundaries(void **state)
{
    (void)state;
    assert_int_equal(deba_archetype_classify(0.2599, 0.0), DEBA_ARCHETYPE_NATURALLY_UNSTABLE);
    assert_int_equal(deba_archetype_classify(0.26, 0.0), DEBA_ARCHETYPE_MODERATELY_STABLE);
    /* Rule 1 comes first: unstable even when seed-sensitive. */
    assert_int_equal(deba_archetype_classify(0.2, 0.5), DEBA_ARCHETYPE_NATURALLY_UNSTABLE);
    assert_int_equal(deba_archetype_classify(0.3, 0.10), DEBA_ARCHETYPE_DYNAMICALLY_STABLE);
    assert_int_equal(deba_archetype_classify(0.3, 0.0999), DEBA_ARCHETYPE_MODERATELY_STABLE);
    assert_int_equal(deba_archetype_classify(0.26, 0.10), DEBA_ARCHETYPE_DYNAMICALLY_STABLE);
    /* Rule 2 before rule 3 */
    assert_int_equal(deba_archetype_classify(0.7, 0.10), DEBA_ARCHETYPE_DYNAMICALLY_STABLE);
    assert_int_equal(deba_archetype_classify(0.54, 0.0), DEBA_ARCHETYPE_OVERLY_STABLE);
    assert_int_equal(deba_archetype_classify(0.5399, 0.0), DEBA_ARCHETYPE_MODERATELY_STABLE);
    assert_int_equal(deba_archetype_classify(0.54, 0.0999), DEBA_ARCHETYPE_OVERLY_STABLE);
}

/* The paper's Table 2, from its own (S̄, σ_S) columns. */
static void test_archetype_paper_table2(void **state)
{
    (void)state;
    static const struct { const char *arch; double s, sd; const char *cls; } rows[] = {
        {"MobileNet-V3", 0.590, 0.028, "Overly Stable"},
        {"ViT-B-16", 0.546, 0.012, "Overly Stable"},
        {"DenseNet-121", 0.495, 0.019, "Moderately Stable"},
        {"ResNet-18", 0.487, 0.015, "Moderately Stable"},
        {"EfficientNet-B0", 0.331, 0.182, "Dynamically Stable"},
        {"ResNet-50", 0.185, 0.079, "Naturally Unstable"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *got = deba_archetype_name(deba_archetype_classify(rows[i].s, rows[i].sd));
        if (strcmp(got, rows[i].cls) != 0) fail_msg("%s: got %s, paper says %s", rows[i].arch, got, rows[i].cls);
    }
}

static void test_archetype_names(void **state)
{
    (void)state;
    assert_string_equal(deba_archetype_name(DEBA_ARCHETYPE_NATURALLY_UNSTABLE), "Naturally Unstable");
    assert_string_equal(deba_archetype_name(DEBA_ARCHETYPE_DYNAMICALLY_STABLE), "Dynamically Stable");
    assert_string_equal(deba_archetype_name(DEBA_ARCHETYPE_OVERLY_STABLE), "Overly Stable");
    assert_string_equal(deba_archetype_name(DEBA_ARCHETYPE_MODERATELY_STABLE), "Moderately Stable");
    for (int a = 0; a < DEBA_ARCHETYPE_COUNT; a++) {
        assert_int_equal(deba_archetype_parse(deba_archetype_name((deba_archetype)a)), a);
        const char *adv = deba_archetype_advice((deba_archetype)a);
        assert_non_null(adv);
        assert_true(strlen(adv) > 20);
    }
    assert_int_equal(deba_archetype_parse("overly STABLE"), DEBA_ARCHETYPE_OVERLY_STABLE);
    assert_int_equal(deba_archetype_parse("Overly"), -1);
    assert_int_equal(deba_archetype_parse(""), -1);
    assert_int_equal(deba_archetype_parse(NULL), -1);
    assert_string_equal(deba_archetype_name(DEBA_ARCHETYPE_COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_moments_small),
        cmocka_unit_test(test_grad_moments_large),
        cmocka_unit_test(test_grad_moments_thread_independent),
        cmocka_unit_test(test_grad_moments_many),
        cmocka_unit_test(test_sgd_moments_reference),
        cmocka_unit_test(test_sgd_moments_threads_and_groups),
        cmocka_unit_test(test_sgd_moments_bad_args),
        cmocka_unit_test(test_step_var_norm),
        cmocka_unit_test(test_gradacc),
        cmocka_unit_test(test_rel_change),
        cmocka_unit_test(test_window_mean),
        cmocka_unit_test(test_confidence),
        cmocka_unit_test(test_mean_std),
        cmocka_unit_test(test_percentile),
        cmocka_unit_test(test_median),
        cmocka_unit_test(test_calibrate),
        cmocka_unit_test(test_stability_score),
        cmocka_unit_test(test_archetype_boundaries),
        cmocka_unit_test(test_archetype_paper_table2),
        cmocka_unit_test(test_archetype_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
