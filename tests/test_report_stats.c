/* The report's statistics and what it says with them: t quantiles and confidence intervals against
 * printed tables and hand arithmetic, comparable-group checks, each reading template with one, two
 * and many rows, LaTeX table structure, paper mode's root causes, deba-profile's verdict columns. */
#include "tests/testutil.h"

#include <math.h>
#include "deba/deba.h"
#include "analyze/analyze.h"
#include "report/report.h"

/* ---- Student t and intervals ---- */

static void test_t_quantile_table(void **state)
{
    (void)state;
    /* two-sided 95% critical values t(0.975, df) as printed in every statistics table */
    static const double tab[30] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                   2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                   2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
    for (int df = 1; df <= 30; df++) {
        double q = deba_t_quantile(0.975, df);
        if (fabs(q - tab[df - 1]) > 0.0005) fail_msg("t(0.975, %d) = %.6f, table %.3f", df, q, tab[df - 1]);
    }
    assert_float_equal(deba_t_quantile(0.975, 60), 2.000, 0.0005);
    assert_float_equal(deba_t_quantile(0.975, 120), 1.980, 0.0005);
    /* closed forms: df = 1 is Cauchy, tan(π(p − ½)); df = 2 is (2p − 1)/√(2p(1 − p)) */
    assert_float_equal(deba_t_quantile(0.9, 1), tan(M_PI * 0.4), 1e-9);
    assert_float_equal(deba_t_quantile(0.975, 1), tan(M_PI * 0.475), 1e-9);
    assert_float_equal(deba_t_quantile(0.9, 2), 0.8 / sqrt(0.18), 1e-9);
    assert_float_equal(deba_t_quantile(0.1, 2), -0.8 / sqrt(0.18), 1e-9);
    assert_float_equal(deba_t_quantile(0.5, 7), 0.0, 0);
    assert_float_equal(deba_t_cdf(0.0, 5), 0.5, 1e-15);
    assert_true(isnan(deba_t_quantile(1.0, 3)));
    assert_true(isnan(deba_t_quantile(0.5, 0)));
    /* I_x(1, 1) = x; I_x(a, 1) = x^a */
    assert_float_equal(deba_betainc(1, 1, 0.3), 0.3, 1e-14);
    assert_float_equal(deba_betainc(3, 1, 0.5), 0.125, 1e-14);
}

static void test_ci_t(void **state)
{
    (void)state;
    /* {1, 2, 3}: mean 2, s = 1, half-width t(0.975, 2)/√3 = 4.302652730/1.732050808 */
    const double x[3] = {1, 2, 3};
    deba_interval ci = deba_ci_mean_t(x, 3, 0.95);
    assert_int_equal(ci.n, 3);
    assert_float_equal(ci.mean, 2.0, 1e-12);
    assert_float_equal(ci.lo, 2.0 - 2.484137712, 1e-8);
    assert_float_equal(ci.hi, 2.0 + 2.484137712, 1e-8);
    /* {3, 2}: mean 2.5, s = √0.5, half-width 12.70620474 · √0.5/√2 */
    const double y[2] = {3, 2};
    ci = deba_ci_mean_t(y, 2, 0.95);
    assert_float_equal(ci.lo, 2.5 - 6.353102368, 1e-8);
    assert_float_equal(ci.hi, 2.5 + 6.353102368, 1e-8);
    /* one value: a mean, no interval */
    ci = deba_ci_mean_t(y, 1, 0.95);
    assert_float_equal(ci.mean, 3.0, 0);
    assert_true(isnan(ci.lo) && isnan(ci.hi));
    ci = deba_ci_mean_t(y, 0, 0.95);
    assert_true(isnan(ci.mean));
}

static void test_ci_bootstrap(void **state)
{
    (void)state;
    deba_err e = {0};
    deba_interval a, b;
    /* {0, 1}: a resample's mean is 0, ½ or 1 with probability ¼, ½, ¼; with 4000 resamples the
     * 2.5th percentile is 0 and the 97.5th is 1 unless fewer than 2.5% are 0s (or 1s), which has
     * probability below 1e-30 */
    const double x[2] = {0, 1};
    assert_int_equal(deba_ci_mean_bootstrap(x, 2, 0.95, 4000, 7, &a, &e), DEBA_OK);
    assert_float_equal(a.mean, 0.5, 0);
    assert_float_equal(a.lo, 0.0, 0);
    assert_float_equal(a.hi, 1.0, 0);
    /* constant data: every resample's mean is the constant */
    const double c[4] = {2.5, 2.5, 2.5, 2.5};
    assert_int_equal(deba_ci_mean_bootstrap(c, 4, 0.95, 500, 1, &a, &e), DEBA_OK);
    assert_float_equal(a.lo, 2.5, 0);
    assert_float_equal(a.hi, 2.5, 0);
    /* reproducible from the seed, and another seed gives another (still bracketing) interval */
    const double z[6] = {1.1, 4.37, 2.9, 8.05, 5.3, 7.71};   /* mean 4.905 */
    assert_int_equal(deba_ci_mean_bootstrap(z, 6, 0.95, 2000, 42, &a, &e), DEBA_OK);
    assert_int_equal(deba_ci_mean_bootstrap(z, 6, 0.95, 2000, 42, &b, &e), DEBA_OK);
    assert_true(a.mean == b.mean && a.lo == b.lo && a.hi == b.hi && a.n == b.n);
    assert_true(a.lo < 4.905 && a.hi > 4.905 && a.lo >= 1.1 && a.hi <= 8.05);
    assert_int_equal(deba_ci_mean_bootstrap(z, 6, 0.95, 2000, 43, &b, &e), DEBA_OK);
    assert_true(a.lo != b.lo || a.hi != b.hi);
    /* one value: no interval; bad arguments name themselves */
    assert_int_equal(deba_ci_mean_bootstrap(z, 1, 0.95, 100, 1, &a, &e), DEBA_OK);
    assert_true(isnan(a.lo));
    assert_int_equal(deba_ci_mean_bootstrap(z, 6, 1.5, 100, 1, &a, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "level"));
    assert_int_equal(deba_ci_mean_bootstrap(z, 6, 0.95, 0, 1, &a, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "resamples"));
}

/* ---- run directories ---- */

static const char *HDR =
    "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm,norm_var,loss_var,"
    "confidence,decision,epoch_time_s,compute_time_s,data_time_s,signal_time_s,eval_time_s,samples_per_s\n";

/* <root>/<arch>/d/<label>/seed<seed>: 3 epochs of t seconds, final accuracy acc; meta.csv gets
 * `extra` (lines "key,value\n") after the usual keys. */
static void write_run(const char *root, const char *arch, const char *label, int seed, double t, double acc,
                      const char *extra)
{
    char dir[2000], cmd[2200];
    snprintf(dir, sizeof dir, "%s/%s/d/%s/seed%d", root, arch, label, seed);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(tu_run(cmd), 0);
    char trace[4096];
    size_t l = (size_t)snprintf(trace, sizeof trace, "%s", HDR);
    for (int i = 0; i < 3; i++)
        l += (size_t)snprintf(trace + l, sizeof trace - l, "%d,64,10,0.01,%g,50,1.0,%g,0.001,1.0,0.1,0.1,1.0,%s,%g,%g,"
                              "0.1,0.01,0.5,%g\n", i + 1, 1.0 / (i + 1), i == 2 ? acc : 50.0,
                              strcmp(label, "fixed") ? "hold" : "fixed", t, 0.8 * t, 1000.0 / t);
    free(tu_write(dir, "trace.csv", trace));
    char meta[4096];
    snprintf(meta, sizeof meta,
             "key,value\nformat_version,1\narch,%s\ndataset,d\nlabel,%s\nmethod,%s\nseed,%d\nepochs,3\n"
             "batch0,64\ntau,0.5\ntheta,0.6\nlambda,0.1\nstatus,completed\nfinal_test_acc,%g\nbest_test_acc,%g\n%s",
             arch, label, strcmp(label, "fixed") ? "deba" : "fixed", seed, acc, acc, extra ? extra : "");
    free(tu_write(dir, "meta.csv", meta));
}

static char *slurp(const char *dir, const char *name)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t r = fread(s, 1, (size_t)n, f);
    s[r] = '\0';
    fclose(f);
    return s;
}

static int has(const char *dir, const char *name, const char *needle)
{
    char *s = slurp(dir, name);
    int ok = s && strstr(s, needle);
    if (!ok) fprintf(stderr, "%s/%s does not contain '%s'\n", dir, name, needle);
    free(s);
    return ok;
}

static int lacks(const char *dir, const char *name, const char *needle)
{
    char *s = slurp(dir, name);
    int ok = s && !strstr(s, needle);
    if (!ok) fprintf(stderr, "%s/%s contains '%s'\n", dir, name, needle);
    free(s);
    return ok;
}

static int report(const char *tmp, const char *args)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%s/deba-report' --no-figures %s >'%s/stdout' 2>'%s/stderr'", tu_bindir(), args, tmp, tmp);
    return tu_run(cmd);
}

static deba_status analyse(const char *root, deba_run **runs, size_t *n, deba_analysis *a)
{
    const char *roots[1] = {root};
    deba_err e = {0};
    deba_status s = deba_runs_load(roots, 1, runs, n, &e);
    if (!s) s = deba_analysis_run(*runs, *n, a, &e);
    if (s) fprintf(stderr, "%s\n", e.msg);
    return s;
}

/* ---- comparable groups ---- */

static void test_grouping_mismatch(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char runs[2000], out[2000], args[6000];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    /* the case: a full-dataset DEBA seed beside 5k-subset ones */
    write_run(runs, "a", "fixed", 1, 10, 80, "subset,5000\n");
    write_run(runs, "a", "fixed", 2, 12, 82, "subset,5000\n");
    write_run(runs, "a", "deba", 1, 6, 83, "subset,5000\n");
    write_run(runs, "a", "deba", 2, 7, 84, "subset,5000\n");
    write_run(runs, "a", "deba", 3, 5, 60, "subset,0\n");
    deba_run *r;
    size_t n;
    deba_analysis a;
    assert_int_equal(analyse(runs, &r, &n, &a), DEBA_OK);
    /* fixed, deba [subset=5000], deba [subset=0] */
    assert_int_equal(a.ngroups, 3);
    int pooled = 0, alone = 0;
    for (size_t i = 0; i < a.ngroups; i++) {
        const deba_group *g = &a.groups[i];
        if (strcmp(g->label, "deba")) continue;
        assert_non_null(g->config);
        if (!strcmp(g->config, "subset=5000")) {
            pooled = 1;
            assert_int_equal(g->nseeds, 2);
            assert_true(g->has_baseline);
            assert_float_equal(g->dacc.mean, 2.5, 1e-12);   /* seeds 1, 2 only: 3 and 2 points */
        } else {
            assert_string_equal(g->config, "subset=0");
            alone = 1;
            assert_int_equal(g->nseeds, 1);
            assert_false(g->has_baseline);             /* fixed ran subset 5000: not comparable */
        }
    }
    assert_true(pooled && alone);
    int named = 0, nobase = 0;
    for (size_t i = 0; i < a.nwarnings; i++) {
        if (strstr(a.warnings[i], "not pooled: the runs of a/d/deba differ in subset;") &&
            strstr(a.warnings[i], "/a/d/deba/seed3"))
            named = 1;
        if (strstr(a.warnings[i], "no comparable baseline: a/d/deba subset=0") &&
            strstr(a.warnings[i], "differ in subset (deba 0, fixed 5000)"))
            nobase = 1;
    }
    assert_true(named && nobase);
    deba_analysis_free(&a);
    deba_runs_free(r, n);
    /* the tool: warnings name the key; --strict exits 2 and writes nothing */
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(args, sizeof args, "--strict --out '%s' '%s'", out, runs);
    assert_int_equal(report(tmp, args), 2);
    assert_true(has(tmp, "stderr", "deba-report: error: not pooled: the runs of a/d/deba differ in subset"));
    assert_false(tu_exists(out));
    snprintf(args, sizeof args, "--out '%s' '%s'", out, runs);
    assert_int_equal(report(tmp, args), 0);
    assert_true(has(tmp, "stderr", "deba-report: warning: not pooled"));
    assert_true(has(out, "tables/table4.md", "| a \\[subset=5000\\] | d |"));
    assert_true(has(out, "tables/table4.md", "| a \\[subset=0\\] | d |"));
    tu_rmtree(tmp);
}

static void test_grouping_keys(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char runs[2000];
    deba_run *r;
    size_t n;
    deba_analysis a;
    /* an old meta.csv without test_subset is "(absent)", equal only to itself; numbers compare by
     * value (0.01 = 1e-2); the device by kind (cuda:0 = cuda:1); the scheduler's keys (tau,
     * window, thresholds_source) do not separate a DEBA group from its fixed baseline */
    snprintf(runs, sizeof runs, "%s/r1", tmp);
    write_run(runs, "a", "fixed", 1, 10, 80, "lr,0.01\ndevice,cuda:0\nwindow,15\nthresholds_source,command line\n");
    write_run(runs, "a", "deba", 1, 6, 83, "lr,1e-2\ndevice,cuda:1\nwindow,3\nthresholds_source,t.csv\n");
    write_run(runs, "a", "deba", 2, 6, 83, "lr,1e-2\ndevice,cuda:0\nwindow,3\nthresholds_source,t.csv\n"
                                            "test_subset,1000\n");
    assert_int_equal(analyse(runs, &r, &n, &a), DEBA_OK);
    assert_int_equal(a.ngroups, 3);
    int found = 0;
    for (size_t i = 0; i < a.nwarnings; i++)
        found |= strstr(a.warnings[i], "differ in test_subset;") != NULL;
    assert_true(found);
    int paired = 0;
    for (size_t i = 0; i < a.ngroups; i++)
        if (a.groups[i].config && !strcmp(a.groups[i].config, "test_subset=(absent)")) {
            paired = 1;
            assert_true(a.groups[i].has_baseline);
            assert_int_equal(a.groups[i].dacc.n, 1);
        }
    assert_true(paired);
    deba_analysis_free(&a);
    deba_runs_free(r, n);
    /* a different learning rate or batch0 leaves DEBA without a baseline, naming the key */
    snprintf(runs, sizeof runs, "%s/r2", tmp);
    write_run(runs, "a", "fixed", 1, 10, 80, "lr,0.01\n");
    write_run(runs, "a", "deba", 1, 6, 83, "lr,0.1\n");
    assert_int_equal(analyse(runs, &r, &n, &a), DEBA_OK);
    assert_int_equal(a.nwarnings, 1);
    assert_non_null(strstr(a.warnings[0], "differ in lr (deba 0.1, fixed 0.01)"));
    assert_false(a.groups[1].has_baseline);
    deba_analysis_free(&a);
    deba_runs_free(r, n);
    tu_rmtree(tmp);
}

static void test_unpaired_seeds(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char runs[2000];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    /* fixed seeds 1, 2, 4; DEBA seeds 1, 2, 3: only 1 and 2 count */
    write_run(runs, "a", "fixed", 1, 10, 80, NULL);
    write_run(runs, "a", "fixed", 2, 10, 81, NULL);
    write_run(runs, "a", "fixed", 4, 10, 99, NULL);
    write_run(runs, "a", "deba", 1, 5, 81, NULL);
    write_run(runs, "a", "deba", 2, 8, 83, NULL);
    write_run(runs, "a", "deba", 3, 1, 10, NULL);
    deba_run *r;
    size_t n;
    deba_analysis a;
    assert_int_equal(analyse(runs, &r, &n, &a), DEBA_OK);
    const deba_group *g = &a.groups[deba_analysis_find(&a, "a", "d", "deba")];
    assert_int_equal(g->dacc.n, 2);
    assert_int_equal(g->unpaired, 1);
    assert_int_equal(g->baseline_unpaired, 1);
    /* ΔAcc 1 and 2; speedup (30 − 15)/30 = 50 % and (30 − 24)/30 = 20 % */
    assert_float_equal(g->dacc.mean, 1.5, 1e-12);
    assert_float_equal(g->speedup_pct.mean, 35.0, 1e-9);
    assert_float_equal(g->speedup_pct.lo, 35.0 - 12.7062047362 * 15.0, 1e-6);  /* s = 15√2, /√2 */
    assert_float_equal(g->speedup_x, 60.0 / 39.0, 1e-12);
    assert_int_equal(a.nwarnings, 1);
    assert_non_null(strstr(a.warnings[0], "unpaired seeds: a/d/deba is compared with fixed on the 2 seed(s) both ran; "
                                          "seeds only in deba: 3; only in fixed: 4"));
    deba_analysis_free(&a);
    deba_runs_free(r, n);
    /* one DEBA seed against three fixed ones (the "0 warning(s)"): n = 1, said so */
    snprintf(runs, sizeof runs, "%s/one", tmp);
    write_run(runs, "a", "fixed", 1, 10, 80, NULL);
    write_run(runs, "a", "fixed", 2, 10, 81, NULL);
    write_run(runs, "a", "fixed", 3, 10, 82, NULL);
    write_run(runs, "a", "deba", 5, 5, 81, NULL);
    assert_int_equal(analyse(runs, &r, &n, &a), DEBA_OK);
    g = &a.groups[deba_analysis_find(&a, "a", "d", "deba")];
    assert_int_equal(g->dacc.n, 0);
    assert_true(isnan(g->dacc.mean));
    assert_non_null(strstr(a.warnings[0], "share no seed (deba: 5; fixed: 1, 2, 3)"));
    deba_analysis_free(&a);
    deba_runs_free(r, n);
    tu_rmtree(tmp);
}

/* ---- readings: every template with one, two and many rows ---- */

static deba_pd pd(double mean, double lo, double hi, int n)
{
    return (deba_pd){mean, NAN, lo, hi, n};
}

static void build(const deba_report_data *d, rp_table t[4])
{
    deba_err e = {0};
    deba_status s = rp_build_tables(d, t, &e);
    if (s) fail_msg("%s", e.msg);
}

static void free_tables(rp_table t[4])
{
    for (int i = 0; i < 4; i++) rp_table_free(&t[i]);
}

static void expect(const char *reading, const char *want)
{
    if (!strstr(reading, want)) fail_msg("reading\n  %s\nlacks\n  %s", reading, want);
}

static void expect_not(const char *reading, const char *bad)
{
    if (strstr(reading, bad)) fail_msg("reading\n  %s\nholds\n  %s", reading, bad);
}

static void test_pd_phrase(void **state)
{
    (void)state;
    char b[256];
    deba_err e = {0};
    assert_int_equal(rp_pd_phrase(b, sizeof b, &e, pd(0.55, -3.1, 4.2, 3), 1, "points"), DEBA_OK);
    assert_string_equal(b, "no measurable difference (95% CI −3.1 to +4.2 points, n = 3)");
    assert_int_equal(rp_pd_phrase(b, sizeof b, &e, pd(-2.5, -3.8, -1.2, 4), 1, "points"), DEBA_OK);
    assert_string_equal(b, "−2.5 points (95% CI −3.8 to −1.2, n = 4)");
    assert_int_equal(rp_pd_phrase(b, sizeof b, &e, pd(40.83, 30.24, 51.42, 2), 1, "%"), DEBA_OK);
    assert_string_equal(b, "+40.8% (95% CI +30.2 to +51.4, n = 2)");
    assert_int_equal(rp_pd_phrase(b, sizeof b, &e, pd(-1.27, NAN, NAN, 1), 2, "points"), DEBA_OK);
    assert_string_equal(b, "−1.27 points, one seed: no uncertainty estimate");
    assert_int_equal(rp_pd_phrase(b, sizeof b, &e, pd(6.98, NAN, NAN, 0), 2, "points"), DEBA_OK);
    assert_string_equal(b, "+6.98 points (as printed, no interval)");
    assert_int_equal(rp_pd_phrase(b, sizeof b, &e, DEBA_PD_NONE, 2, "points"), DEBA_OK);
    assert_string_equal(b, "no seed ran both");
    /* the universal-threshold runs that never adapted: every seed identical to fixed */
    assert_int_equal(rp_pd_phrase(b, sizeof b, &e, pd(0, 0, 0, 3), 2, "points"), DEBA_OK);
    assert_string_equal(b, "no difference in any of the 3 seeds");
    /* an interval touching 0 spans it: no direction */
    assert_int_equal(rp_pd_sign(pd(1, 0, 2, 3)), 0);
    assert_int_equal(rp_pd_sign(pd(1, 0.001, 2, 3)), 1);
    assert_int_equal(rp_pd_sign(pd(-1, -2, -0.5, 3)), -1);
    assert_int_equal(rp_pd_sign(pd(5, NAN, NAN, 1)), 0);
    /* cells */
    assert_int_equal(rp_fmt_pd(b, sizeof b, pd(2.5, -3.853, 8.853, 2), 2, 1), 0);
    assert_string_equal(b, "+2.50 [-3.85, +8.85]");
    assert_int_equal(rp_fmt_pd(b, sizeof b, pd(2.5, NAN, NAN, 1), 2, 1), 0);
    assert_string_equal(b, "+2.50 (n=1)");
    assert_int_equal(rp_fmt_pd(b, sizeof b, pd(8.3, NAN, NAN, 0), 1, 0), 0);
    assert_string_equal(b, "8.3");
    assert_int_equal(rp_fmt_pd(b, sizeof b, DEBA_PD_NONE, 1, 0), 0);
    assert_string_equal(b, "—");
}

static void t1_row(deba_t1_row *r, const char *arch, double tau)
{
    memset(r, 0, sizeof *r);
    snprintf(r->arch, sizeof r->arch, "%s", arch);
    snprintf(r->dataset, sizeof r->dataset, "d");
    r->tau = tau;
    r->theta = 0.5;
    r->lambda = 0.1;
}

static void test_reading_t1(void **state)
{
    (void)state;
    deba_t1_row rows[3];
    t1_row(&rows[0], "a", 0.1432);
    t1_row(&rows[1], "b", 0.25);
    t1_row(&rows[2], "c", 12.0);
    deba_report_data d = {.t1 = rows, .n1 = 1};
    rp_table t[4];
    /* one row: its values, nothing comparative (the "τ spans 0.1432 to 0.1432, a 1× range") */
    build(&d, t);
    assert_string_equal(t[0].reading, "One row: τ = 0.1432, θ = 0.5, λ = 0.1 for a/d; no other architecture to "
                                      "compare with.");
    free_tables(t);
    /* two rows */
    d.n1 = 2;
    build(&d, t);
    expect(t[0].reading, "τ spans 0.1432 (a/d) to 0.25 (b/d), a 1.75× range over 2 rows.");
    free_tables(t);
    /* two equal rows: no "1× range" */
    t1_row(&rows[1], "b", 0.1432);
    build(&d, t);
    assert_string_equal(t[0].reading, "τ is 0.1432 in all 2 rows.");
    free_tables(t);
    /* many rows: 12/0.1432 = 83.8 */
    d.n1 = 3;
    build(&d, t);
    expect(t[0].reading, "τ spans 0.1432 (a/d) to 12 (c/d), a 83.8× range over 3 rows.");
    free_tables(t);
}

static void t2_row(deba_t2_row *r, const char *arch, double S, double sd, deba_pd dacc)
{
    memset(r, 0, sizeof *r);
    snprintf(r->arch, sizeof r->arch, "%s", arch);
    snprintf(r->dataset, sizeof r->dataset, "d");
    r->seeds = 3;
    r->S_mean = S;
    r->S_std = sd;
    r->archetype = deba_archetype_classify(S, sd);
    r->dacc = dacc;
}

static void test_reading_t2(void **state)
{
    (void)state;
    deba_t2_row rows[3];
    t2_row(&rows[0], "a", 0.40, 0.02, pd(2.0, 1.0, 3.0, 3));
    t2_row(&rows[1], "b", 0.60, 0.01, pd(0.5, -1.0, 2.0, 3));
    t2_row(&rows[2], "c", 0.20, 0.05, DEBA_PD_NONE);
    deba_report_data d = {.t2 = rows, .n2 = 1};
    rp_table t[4];
    build(&d, t);
    assert_string_equal(t[1].reading, "One profile: a/d, S̄ = 0.400 (σ_S = 0.020, 3 seeds): Moderately Stable. DEBA's "
                                      "ΔAcc: +2.00 points (95% CI +1.00 to +3.00, n = 3).");
    /* its cell shows the interval */
    assert_string_equal(t[1].cells[6], "+2.00 [+1.00, +3.00]");
    free_tables(t);
    d.n2 = 2;
    build(&d, t);
    assert_string_equal(t[1].reading, "Most stable: b (S̄ = 0.600, Overly Stable); least: a (S̄ = 0.400, Moderately "
                                      "Stable). Archetypes: 1 Overly Stable, 1 Moderately Stable.");
    free_tables(t);
    /* two rows closer than one σ_S: no ordering */
    t2_row(&rows[1], "b", 0.43, 0.05, DEBA_PD_NONE);
    build(&d, t);
    expect(t[1].reading, "S̄ ranges from 0.400 to 0.430 over 2 rows, no more than one seed standard deviation "
                         "(σ_S up to 0.050): no ordering by stability.");
    expect_not(t[1].reading, "Most stable");
    free_tables(t);
    d.n2 = 3;
    build(&d, t);
    assert_string_equal(t[1].reading, "Most stable: b (S̄ = 0.430, Moderately Stable); least: c (S̄ = 0.200, Naturally "
                                      "Unstable). Archetypes: 1 Naturally Unstable, 2 Moderately Stable.");
    free_tables(t);
}

static void t3_row(deba_t3_row *r, const char *arch, const char *label, deba_pd dacc, deba_pd sp)
{
    memset(r, 0, sizeof *r);
    snprintf(r->arch, sizeof r->arch, "%s", arch);
    snprintf(r->dataset, sizeof r->dataset, "d");
    snprintf(r->label, sizeof r->label, "%s", label);
    r->dacc = dacc;
    r->speedup = sp;
}

static void test_reading_t3(void **state)
{
    (void)state;
    deba_t3_row rows[5];
    t3_row(&rows[0], "a", "deba", pd(0.5, -3.1, 4.1, 3), pd(20, 10, 30, 3));
    t3_row(&rows[1], "b", "deba", pd(-2.0, -3.0, -1.0, 3), pd(-5, -12, 2, 3));
    t3_row(&rows[2], "c", "deba", pd(-2.0, -4.0, 0.0, 3), pd(3, NAN, NAN, 1));
    t3_row(&rows[3], "d", "deba", pd(-5.0, NAN, NAN, 1), pd(30, 25, 35, 2));
    t3_row(&rows[4], "a", "deba-universal", pd(1.0, 0.5, 1.5, 3), pd(1, -2, 4, 3));
    deba_report_data d = {.t3 = rows, .n3 = 1};
    rp_table t[4];
    build(&d, t);
    assert_string_equal(t[2].reading, "Baseline on a/d: ΔAcc no measurable difference (95% CI −3.10 to +4.10 points, "
                                      "n = 3); speedup +20.0% (95% CI +10.0 to +30.0, n = 3). Cells: mean [95% CI] of "
                                      "per-seed paired differences; Degraded counts an architecture only when its whole "
                                      "CI of ΔAcc lies at or below −1 point.");
    free_tables(t);
    d.n3 = 2;
    build(&d, t);
    expect(t[2].reading, "Baseline over 2 architectures: ΔAcc higher on 0, lower on 1, no measurable difference on 1; "
                         "training time shorter on 1, longer on 0, no measurable difference on 1.");
    free_tables(t);
    /* many rows and two conditions; Degraded: b's CI [−3, −1] counts; c's [−4, 0] and d's single
     * seed (−5) do not */
    d.n3 = 5;
    build(&d, t);
    expect(t[2].reading, "Baseline over 4 architectures: ΔAcc higher on 0, lower on 1, no measurable difference on 2, "
                         "one seed (no uncertainty estimate) on 1; training time shorter on 2, longer on 0, no measurable "
                         "difference on 1, one seed (no uncertainty estimate) on 1.");
    expect(t[2].reading, "Universal Thresh. on a/d: ΔAcc +1.00 points (95% CI +0.50 to +1.50, n = 3); speedup no "
                         "measurable difference (95% CI −2.0 to +4.0%, n = 3).");
    size_t deg = t[2].nrows - 2;   /* the Degraded row */
    assert_string_equal(t[2].cells[deg * (size_t)t[2].ncols + 0], "Degraded (≥1pt)");
    assert_string_equal(t[2].cells[deg * (size_t)t[2].ncols + 1], "1/4");
    assert_string_equal(t[2].cells[deg * (size_t)t[2].ncols + 3], "0/1");
    free_tables(t);
}

static void t4_row(deba_t4_row *r, const char *arch, deba_pd dacc, deba_pd sp)
{
    deba_ms none = {NAN, NAN, 0};
    memset(r, 0, sizeof *r);
    snprintf(r->arch, sizeof r->arch, "%s", arch);
    snprintf(r->dataset, sizeof r->dataset, "d");
    r->acc_fixed = r->acc_deba = r->time_fixed = r->time_deba = none;
    r->dacc = dacc;
    r->speedup = sp;
    r->speedup_x = r->throughput_x = NAN;
}

static void test_reading_t4(void **state)
{
    (void)state;
    deba_t4_row rows[6];
    /* the Table 4: speedup 6.8 with a CI far across 0 must not read "DEBA is fastest" */
    t4_row(&rows[0], "a", pd(-1.27, -5.0, 2.5, 3), pd(6.8, -93.0, 106.6, 3));
    t4_row(&rows[1], "b", pd(2.0, 1.0, 3.0, 3), pd(40, 30, 50, 3));
    t4_row(&rows[2], "c", pd(-3.0, -5.0, -1.0, 3), pd(-20, -30, -10, 3));
    t4_row(&rows[3], "e", pd(1.0, NAN, NAN, 1), pd(10, NAN, NAN, 1));
    t4_row(&rows[4], "f", pd(1.0, 0.2, 1.8, 3), pd(12, 2, 22, 3));
    t4_row(&rows[5], "g", pd(1.0, 0.2, 1.8, 3), pd(12, 2, 22, 3));
    deba_report_data d = {.t4 = rows, .n4 = 1};
    rp_table t[4];
    build(&d, t);
    assert_string_equal(t[3].reading, "a/d: speedup no measurable difference (95% CI −93.0 to +106.6%, n = 3); ΔAcc no "
                                      "measurable difference (95% CI −5.00 to +2.50 points, n = 3).");
    free_tables(t);
    d.n4 = 2;
    build(&d, t);
    assert_string_equal(t[3].reading, "Over 2 fixed/DEBA pairs: DEBA is measurably faster on b/d; measurably slower on "
                                      "none; no measurable speedup difference on 1; measurably more accurate on b/d; "
                                      "measurably less accurate on none; no measurable ΔAcc difference on 1 (95% CI of "
                                      "per-seed paired differences).");
    free_tables(t);
    d.n4 = 6;
    build(&d, t);
    assert_string_equal(t[3].reading, "Over 6 fixed/DEBA pairs: DEBA is measurably faster on b/d, f/d and g/d; measurably "
                                      "slower on c/d; no measurable speedup difference on 1, one seed (no uncertainty "
                                      "estimate) on 1; measurably more accurate on b/d, f/d and g/d; measurably less "
                                      "accurate on c/d; no measurable ΔAcc difference on 1, one seed (no uncertainty "
                                      "estimate) on 1 (95% CI of per-seed paired differences).");
    expect_not(t[3].reading, "fastest");
    expect_not(t[3].reading, "Largest");
    free_tables(t);
    /* no pair at all */
    t4_row(&rows[0], "a", DEBA_PD_NONE, DEBA_PD_NONE);
    d.n4 = 1;
    build(&d, t);
    assert_string_equal(t[3].reading, "No fixed/DEBA pair to compare.");
    free_tables(t);
}

/* ---- LaTeX ---- */

static void test_latex(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char runs[2000], out[2000], args[6000];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    write_run(runs, "a", "fixed", 1, 10, 80, NULL);
    write_run(runs, "a", "fixed", 2, 12, 82, NULL);
    write_run(runs, "a", "deba", 1, 6, 83, NULL);
    write_run(runs, "a", "deba", 2, 7, 84, NULL);
    snprintf(args, sizeof args, "--out '%s' '%s'", out, runs);
    assert_int_equal(report(tmp, args), 0);
    static const char *const name[4] = {"tables/table1.tex", "tables/table2.tex", "tables/table3.tex",
                                        "tables/table4.tex"};
    /* 5, 7, 3 and 10 columns: more than 6 spans both columns of a two-column paper */
    static const char *const env[4] = {"\\begin{table}[t]", "\\begin{table*}[t]", "\\begin{table}[t]",
                                       "\\begin{table*}[t]"};
    static const char *const end[4] = {"\\end{table}\n", "\\end{table*}\n", "\\end{table}\n", "\\end{table*}\n"};
    static const char *const label[4] = {"\\label{tab:table1}", "\\label{tab:table2}", "\\label{tab:table3}",
                                         "\\label{tab:table4}"};
    for (int i = 0; i < 4; i++) {
        assert_true(has(out, name[i], env[i]));
        assert_true(has(out, name[i], end[i]));
        assert_true(has(out, name[i], label[i]));
        assert_true(has(out, name[i], "\\toprule"));
        assert_true(has(out, name[i], "\\midrule"));
        assert_true(has(out, name[i], "\\bottomrule"));
        assert_true(lacks(out, name[i], "\\caption{Table"));
        assert_true(lacks(out, name[i], "\\hline"));
    }
    assert_true(has(out, "tables/table4.tex", "\\caption{Fixed batch vs DEBA per architecture and dataset"));
    /* Markdown keeps its numbered heading; CSV keeps its columns (new ones only after them) */
    assert_true(has(out, "tables/table4.md", "## Table 4: Fixed batch vs DEBA"));
    assert_true(has(out, "tables/table4.csv", "arch,dataset,acc_fixed,acc_fixed_std,acc_deba,acc_deba_std,dacc,dacc_std,"
                                              "time_fixed_s,time_fixed_std,time_deba_s,time_deba_std,speedup_pct,"
                                              "speedup_pct_std,speedup_x,throughput_x,seeds_fixed,seeds_deba,"));
    tu_rmtree(tmp);
}

/* ---- paper mode ---- */

static void test_paper_causes(void **state)
{
    (void)state;
    const char *src = getenv("DEBA_SRC");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data/paper", src && *src ? src : ".");
    deba_report_data d;
    deba_err e = {0};
    assert_int_equal(deba_report_from_paper(dir, &d, &e), DEBA_OK);
    /* 27 places from 19 root causes (4 derived checks, 15 in causes.csv) */
    assert_int_equal(d.nnotes, 27);
    assert_int_equal(d.ncauses, 19);
    /* ResNet-18's 34.2 % shows up in the abstract, §4.3 and §5.3: one cause, three places */
    int c34 = -1;
    for (size_t i = 0; i < d.ncauses; i++)
        if (strstr(d.causes[i], "ResNet-18's Baseline speedup is 34.2%")) c34 = (int)i;
    assert_true(c34 >= 0);
    int n34 = 0;
    for (size_t i = 0; i < d.nnotes; i++) n34 += d.note_cause[i] == c34;
    assert_int_equal(n34, 3);
    /* Cooldown=5's 52 % and 67 % quoted as the Baseline's: §6.3.3 twice and §6.4 */
    int c67 = -1, n67 = 0;
    for (size_t i = 0; i < d.ncauses; i++)
        if (strstr(d.causes[i], "quote Cooldown=5's speedups")) c67 = (int)i;
    for (size_t i = 0; i < d.nnotes; i++) n67 += d.note_cause[i] == c67;
    assert_int_equal(n67, 3);
    /* the tool's remarks stand outside the quotation marks: the quote closes, then the remark */
    int outside = 0, inside = 0;
    for (size_t i = 0; i < d.nnotes; i++) {
        outside |= strstr(d.notes[i], "\"The speedup ranges from 8% to 62%\" (over Table 4's twelve pairs;") != NULL;
        inside |= strstr(d.notes[i], "62% (over Table 4") != NULL || strstr(d.notes[i], "is Cooldown=5's speedup\"") != NULL;
    }
    assert_true(outside);
    assert_false(inside);
    deba_report_data_free(&d);
    /* the tool reports root causes with the place count beside them */
    char *tmp = tu_mkdtemp();
    if (!tmp) {
        fail_msg("no temporary directory");
        return;
    }
    char args[9000], out[4300];
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(args, sizeof args, "--paper '%s' --out '%s'", dir, out);
    assert_int_equal(report(tmp, args), 0);
    assert_true(has(tmp, "stdout", "the paper disagrees with itself in 27 places from 19 root causes"));
    assert_true(has(out, "index.md", "19 root causes, 27 places"));
    assert_true(has(out, "inconsistencies.md", "ResNet-18's Baseline speedup is 34.2% (Table 3, CIFAR-10), below the "
                                               "36–43% range the text gives it wherever it is quoted (3 places):\n"));
    tu_rmtree(tmp);
}

/* ---- deba-profile's verdict in the report ---- */

static void test_verdict_columns(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char runs[2000], out[2000], args[6000];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    write_run(runs, "a", "fixed", 1, 10, 80, NULL);
    write_run(runs, "a", "fixed", 2, 12, 82, NULL);
    char sdir[2100];
    snprintf(sdir, sizeof sdir, "%s/a/d", runs);
    /* whatever verdict columns the file carries, in any order, after SPEC §7's */
    free(tu_write(sdir, "profile_summary.csv",
                  "arch,dataset,seeds,S_mean,S_std,archetype,enough_epochs,share_overly_stable,recommendation\n"
                  "a,d,2,0.5,0.01,Moderately Stable,0,0.62,\"Too short for the paper's cut-offs (8 of 30 epochs); "
                  "use DEBA with tau 0.2, theta 0.8\"\n"));
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(args, sizeof args, "--out '%s' '%s'", out, runs);
    assert_int_equal(report(tmp, args), 0);
    assert_true(has(out, "index.md", "## Profile verdicts (deba-profile)"));
    assert_true(has(out, "index.md", "**Recommendation:** Too short for the paper's cut-offs (8 of 30 epochs); use DEBA "
                                     "with tau 0.2, theta 0.8"));
    assert_true(has(out, "index.md", "- enough_epochs: 0\n- share_overly_stable: 0.62\n"));
    assert_true(has(out, "index.html", "<b>Recommendation:</b> Too short"));
    /* an older file without them: no section */
    free(tu_write(sdir, "profile_summary.csv", "arch,dataset,seeds,S_mean,S_std,archetype\na,d,2,0.5,0.01,Moderately Stable\n"));
    snprintf(args, sizeof args, "--force --out '%s' '%s'", out, runs);
    assert_int_equal(report(tmp, args), 0);
    assert_true(lacks(out, "index.md", "Profile verdicts"));
    tu_rmtree(tmp);
}

static void test_ci_option(void **state)
{
    (void)state;
    char *tmp = tu_mkdtemp();
    char runs[2000], out[2000], args[6000];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    write_run(runs, "a", "fixed", 1, 10, 80, NULL);
    write_run(runs, "a", "fixed", 2, 10, 80, NULL);
    write_run(runs, "a", "deba", 1, 5, 83, NULL);
    write_run(runs, "a", "deba", 2, 5, 83, NULL);
    snprintf(out, sizeof out, "%s/out", tmp);
    /* both seeds +3 points, 50 %: the bootstrap interval is the point itself */
    snprintf(args, sizeof args, "--ci bootstrap --out '%s' '%s'", out, runs);
    assert_int_equal(report(tmp, args), 0);
    assert_true(has(out, "tables/table4.md", "+3.00 \\[+3.00, +3.00\\]"));
    assert_true(has(out, "index.md", "(percentile bootstrap)"));
    snprintf(args, sizeof args, "--ci normal --out '%s/o2' '%s'", tmp, runs);
    assert_int_equal(report(tmp, args), 2);
    assert_true(has(tmp, "stderr", "--ci: 'normal' is not t or bootstrap"));
    tu_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_t_quantile_table), cmocka_unit_test(test_ci_t),
        cmocka_unit_test(test_ci_bootstrap),     cmocka_unit_test(test_grouping_mismatch),
        cmocka_unit_test(test_grouping_keys),    cmocka_unit_test(test_unpaired_seeds),
        cmocka_unit_test(test_pd_phrase),        cmocka_unit_test(test_reading_t1),
        cmocka_unit_test(test_reading_t2),       cmocka_unit_test(test_reading_t3),
        cmocka_unit_test(test_reading_t4),       cmocka_unit_test(test_latex),
        cmocka_unit_test(test_paper_causes),     cmocka_unit_test(test_verdict_columns),
        cmocka_unit_test(test_ci_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
