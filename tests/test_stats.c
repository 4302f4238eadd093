/* Tests for the per-epoch signals, descriptive statistics, calibration, stability score and
 * archetypes (core/stats.c, core/archetype.c). Every expected value is worked out by hand from
 * the SPEC formula on small literal inputs. */
#include "tests/testutil.h"

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
