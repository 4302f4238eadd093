/* deba-profile's verdict: bootstrap archetype shares on hand-built traces whose answer is known
 * (certain, and a split worked out by hand), reproducibility, the 29/30-epoch and 2/3-seed
 * boundaries, what a sweep supports (intervals that overlap or not), and the optional columns of
 * profile_summary.csv and sweep.csv (files written before them still read). */
#include "tests/testutil.h"

#include <math.h>

#include "deba/deba.h"
#include "profiler/profile.h"

#define HEADER "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm," \
               "norm_var,loss_var,confidence,decision,epoch_time_s,compute_time_s,data_time_s," \
               "signal_time_s,eval_time_s,samples_per_s\n"

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

static void assert_lacks(const char *hay, const char *needle)
{
    if (hay && strstr(hay, needle)) fail_msg("'%s' contains '%s'", hay, needle);
}

/* A completed fixed-batch run of `epochs` epochs whose epochs t >= 2 all have grad_var 1 and the
 * given norm_var and loss_var: S = 1 / (1 + 0 + nv + lv) whatever epochs a resample draws.
 * jitter != 0 alternates grad_var 1 ± jitter, so resamples of epochs do move S. */
static void make_run(const char *root, int seed, int epochs, double nv, double lv, double jitter)
{
    char dir[2048], p[2200];
    deba_err e;
    assert_int_equal(deba_run_dir(dir, sizeof dir, root, "net", "data", "fixed", seed, &e), DEBA_OK);
    assert_int_equal(deba_mkdirs(dir, &e), DEBA_OK);
    snprintf(p, sizeof p, "%s/meta.csv", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "key,value\nformat_version,1\narch,net\ndataset,data\nlabel,fixed\nmethod,fixed\nseed,%d\n"
               "epochs,%d\nbatch0,64\nlr,0.01\nmomentum,0.9\nweight_decay,0.0005\nstatus,completed\n",
            seed, epochs);
    fclose(f);
    snprintf(p, sizeof p, "%s/trace.csv", dir);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(HEADER, f);
    for (int t = 1; t <= epochs; t++) {
        double gv = 1 + (t % 2 ? jitter : -jitter);
        fprintf(f, "%d,64,10,0.01,1,50,1,50,%.17g,1,%.17g,%.17g,1,fixed,1,1,0,0,0,100\n", t, gv, t == 1 ? 0 : nv,
                t == 1 ? 0 : lv);
    }
    fclose(f);
}

static void compute(const char *root, deba_profile *p)
{
    deba_err e = {0};
    if (deba_profile_compute(root, "net", "data", NULL, 0, p, &e)) fail_msg("%s", e.msg);
}

static void root_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

/* Three seeds, S = 1/1.2 in every resample: Overly Stable in 100% of them. */
static void test_bootstrap_certain(void **state)
{
    (void)state;
    char root[4200];
    root_in(root, sizeof root, "runs");
    for (int s = 1; s <= 3; s++) make_run(root, s, 30, 0.1, 0.1, 0);
    deba_profile p;
    compute(root, &p);
    assert_int_equal(p.summary.archetype, DEBA_ARCHETYPE_OVERLY_STABLE);
    assert_int_equal(p.summary.bootstrap, DEBA_BOOTSTRAP_B);
    assert_float_equal(p.summary.share[DEBA_ARCHETYPE_OVERLY_STABLE], 1.0, 0);
    assert_float_equal(p.summary.share[DEBA_ARCHETYPE_MODERATELY_STABLE], 0.0, 0);
    assert_contains(p.summary.recommendation, "Overly Stable in 100% of 1000 bootstrap resamples");
    deba_profile_free(&p);
}

/* Two seeds, S_A = 1/1.4 = 0.714 and S_B = 1/2.2 = 0.455, each constant over its epochs. A
 * resample draws two seeds with replacement: AA (1/4) gives S̄ 0.714, σ 0: Overly Stable; BB
 * (1/4) gives 0.455, σ 0: Moderately Stable; AB or BA (1/2) gives σ = 0.259/√2 = 0.18 >= 0.10:
 * Dynamically Stable. With 4000 resamples each share is within 4 binomial std (<= 0.032). */
static void test_bootstrap_split(void **state)
{
    (void)state;
    char root[4200];
    root_in(root, sizeof root, "runs");
    make_run(root, 1, 30, 0.2, 0.2, 0);
    make_run(root, 2, 30, 0.6, 0.6, 0);
    deba_profile p;
    compute(root, &p);
    double share[DEBA_ARCHETYPE_COUNT], again[DEBA_ARCHETYPE_COUNT], other[DEBA_ARCHETYPE_COUNT];
    deba_err e;
    assert_int_equal(deba_profile_bootstrap(&p, 4000, 7, share, &e), DEBA_OK);
    assert_float_equal(share[DEBA_ARCHETYPE_OVERLY_STABLE], 0.25, 0.032);
    assert_float_equal(share[DEBA_ARCHETYPE_MODERATELY_STABLE], 0.25, 0.032);
    assert_float_equal(share[DEBA_ARCHETYPE_DYNAMICALLY_STABLE], 0.50, 0.032);
    assert_float_equal(share[DEBA_ARCHETYPE_NATURALLY_UNSTABLE], 0.0, 0);
    /* reproducible: the same seed, the same shares; another seed, other draws */
    assert_int_equal(deba_profile_bootstrap(&p, 4000, 7, again, &e), DEBA_OK);
    assert_memory_equal(share, again, sizeof share);
    assert_int_equal(deba_profile_bootstrap(&p, 4000, 8, other, &e), DEBA_OK);
    assert_true(memcmp(share, other, sizeof share) != 0);
    assert_int_equal(deba_profile_bootstrap(&p, 0, 7, other, &e), DEBA_E_INPUT);
    /* the point archetype (σ_S = 0.18) with its share and the runner-up */
    assert_int_equal(p.summary.archetype, DEBA_ARCHETYPE_DYNAMICALLY_STABLE);
    assert_contains(p.summary.recommendation, "Dynamically Stable in ");
    assert_contains(p.summary.recommendation, "Cooldown: 10 epochs, as the paper recommends for seed-sensitive");
    deba_profile_free(&p);
}

/* Epochs resampled within a seed: grad_var alternating 0.5 / 1.5 has CV 0.5 over an even count
 * of epochs, but a resample drawing more of one value has a smaller CV, so S moves; the shares
 * still sum to 1 and the same seed repeats them. */
static void test_bootstrap_epochs(void **state)
{
    (void)state;
    char root[4200];
    root_in(root, sizeof root, "runs");
    /* S = 1/(1 + CV + 0.4): CV 0.5 gives 0.526 (Moderately), CV < 0.452 gives >= 0.54 (Overly) */
    make_run(root, 1, 31, 0.2, 0.2, 0.5);
    deba_profile p;
    compute(root, &p);
    assert_float_equal(p.rows[0].cv_grad_var, 0.5, 1e-12);
    assert_int_equal(p.summary.archetype, DEBA_ARCHETYPE_MODERATELY_STABLE);
    double sum = 0;
    for (int a = 0; a < DEBA_ARCHETYPE_COUNT; a++) sum += p.summary.share[a];
    assert_float_equal(sum, 1.0, 1e-12);
    assert_true(p.summary.share[DEBA_ARCHETYPE_OVERLY_STABLE] > 0.05);
    assert_true(p.summary.share[DEBA_ARCHETYPE_MODERATELY_STABLE] > 0.3);
    deba_profile_free(&p);
}

/* 29 epochs or 2 seeds: the warning; 30 epochs and 3 seeds: none. */
static void test_verdict_boundaries(void **state)
{
    (void)state;
    static const struct { int epochs, seeds, enough_epochs, enough_seeds; const char *hint; } cases[] = {
        {29, 3, 0, 1, "profile again with --epochs 30 or more."},
        {30, 3, 1, 1, NULL},
        {30, 2, 1, 0, "profile again with 3 or more --seeds."},
        {29, 2, 0, 0, "profile again with --epochs 30 or more and 3 or more --seeds."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char root[4200], name[32];
        snprintf(name, sizeof name, "runs%zu", i);
        root_in(root, sizeof root, name);
        for (int s = 1; s <= cases[i].seeds; s++) make_run(root, s, cases[i].epochs, 0.1, 0.1, 0);
        deba_profile p;
        compute(root, &p);
        assert_int_equal(p.summary.epochs, cases[i].epochs);
        assert_int_equal(p.summary.enough_epochs, cases[i].enough_epochs);
        assert_int_equal(p.summary.enough_seeds, cases[i].enough_seeds);
        if (cases[i].hint) {
            assert_contains(p.summary.recommendation, "the paper's cut-offs");
            assert_contains(p.summary.recommendation, cases[i].hint);
        } else
            assert_lacks(p.summary.recommendation, "Warning");
        /* the thresholds to use are thresholds.csv's */
        assert_float_equal(p.summary.tau, p.thresholds.tau, 0);
        assert_float_equal(p.summary.lambda, p.thresholds.lambda, 0);
        assert_contains(p.summary.recommendation, "Cooldown: at least 5 epochs");
        assert_contains(p.summary.recommendation, "no batch sweep for net/data yet");
        assert_int_equal(p.summary.throughput_gain, -1);
        deba_profile_free(&p);
    }
}

static deba_sweep_row srow(int B, int repeats, double med, double lo, double hi)
{
    deba_sweep_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.arch, sizeof r.arch, "net");
    snprintf(r.dataset, sizeof r.dataset, "data");
    r.batch_size = B;
    r.steps = repeats ? 10 : 0;
    r.repeats = repeats;
    r.samples_per_s = med;
    r.samples_per_s_min = lo;
    r.samples_per_s_max = hi;
    r.epoch_time_s = med > 0 ? 1000 / med : 0;
    return r;
}

static void test_sweep_compare(void **state)
{
    (void)state;
    deba_sweep_cmp c;
    char buf[512];
    /* B = 8: 90..110; B = 16: 105..130 overlaps; B = 32: 111..140 lies above: a gain at 32 */
    deba_sweep_row gain[] = {srow(16, 3, 120, 105, 130), srow(8, 3, 100, 90, 110), srow(32, 3, 125, 111, 140)};
    deba_sweep_compare(gain, 3, "net", "data", &c);
    assert_int_equal(c.gain, 1);
    assert_int_equal(c.ref_batch, 8);
    assert_int_equal(c.best_batch, 32);
    assert_float_equal(c.ratio, 1.25, 1e-12);
    assert_int_equal(deba_sweep_reading(buf, sizeof buf, &c), 0);
    assert_contains(buf, "B = 32 gives 1.25x the samples/s of B = 8");
    /* 110 vs 110: touching intervals overlap: no gain; a size that did not fit is no evidence */
    deba_sweep_row none[] = {srow(8, 3, 100, 90, 110), srow(16, 3, 120, 110, 130), srow(1 << 20, 0, 0, 0, 0)};
    deba_sweep_compare(none, 3, "net", "data", &c);
    assert_int_equal(c.gain, 0);
    assert_int_equal(c.largest_batch, 16);
    assert_int_equal(deba_sweep_reading(buf, sizeof buf, &c), 0);
    assert_contains(buf, "No measurable throughput gain from larger batches");
    /* one measurement per size (an older file): no claim, even with a 4x median */
    deba_sweep_row once[] = {srow(8, 1, 100, 100, 100), srow(64, 1, 400, 400, 400)};
    deba_sweep_compare(once, 2, "net", "data", &c);
    assert_int_equal(c.gain, -1);
    assert_string_equal(c.why, "one measurement");
    /* other arch's rows are not this sweep; one size is nothing to compare */
    deba_sweep_compare(once, 2, "other", "data", &c);
    assert_string_equal(c.why, "no sweep");
    deba_sweep_compare(once, 1, "net", "data", &c);
    assert_string_equal(c.why, "one size");
    assert_int_equal(deba_sweep_reading(buf, sizeof buf, &c), 0);
    assert_contains(buf, "Only one batch size was measured (B = 8)");
    assert_int_equal(deba_sweep_reading(buf, 10, &c), -1);
}

/* The verdict with a sweep: no gain says DEBA cannot speed this device up; a gain says so. */
static void test_verdict_sweep(void **state)
{
    (void)state;
    char root[4200];
    root_in(root, sizeof root, "runs");
    for (int s = 1; s <= 3; s++) make_run(root, s, 30, 0.1, 0.1, 0);
    deba_profile p;
    compute(root, &p);
    deba_err e;
    deba_sweep_row none[] = {srow(8, 3, 100, 90, 110), srow(64, 3, 105, 95, 112)};
    assert_int_equal(deba_profile_verdict(&p, none, 2, 200, 3, &e), DEBA_OK);
    assert_int_equal(p.summary.throughput_gain, 0);
    assert_int_equal(p.summary.bootstrap, 200);
    assert_int_equal(p.summary.bootstrap_seed, 3);
    assert_contains(p.summary.recommendation, "DEBA cannot speed training up on this device");
    assert_contains(p.summary.recommendation, "judge it by accuracy, not time");
    deba_sweep_row gain[] = {srow(8, 3, 100, 90, 110), srow(64, 3, 300, 280, 320)};
    assert_int_equal(deba_profile_verdict(&p, gain, 2, 200, 3, &e), DEBA_OK);
    assert_int_equal(p.summary.throughput_gain, 1);
    assert_contains(p.summary.recommendation, "B = 64 gives 3.00x the samples/s of B = 8");
    assert_lacks(p.summary.recommendation, "cannot speed");
    /* the block on stdout: one topic a line */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    deba_profile_print(f, &p);
    fclose(f);
    assert_contains(buf, "recommendation (should I use DEBA on this network, and with which thresholds?):\n"
                         "  Overly Stable in 100% of 200 bootstrap resamples");
    assert_contains(buf, "\n  Thresholds: tau = ");
    assert_contains(buf, "\n  Cooldown: at least 5 epochs");
    assert_contains(buf, "\n  Device: Throughput rises");
    free(buf);
    /* the sweep.csv beside the profile is read by deba_profile_compute */
    char path[4400];
    snprintf(path, sizeof path, "%s/net/data/sweep.csv", root);
    assert_int_equal(deba_sweep_write(path, none, 2, &e), DEBA_OK);
    deba_profile_free(&p);
    compute(root, &p);
    assert_int_equal(p.summary.throughput_gain, 0);
    deba_profile_free(&p);
}

/* The verdict columns survive a write and a read (a recommendation with commas and quotes);
 * files written before them still read, with the documented defaults. */
static void test_optional_columns(void **state)
{
    (void)state;
    char root[4200], path[4400];
    root_in(root, sizeof root, "runs");
    for (int s = 1; s <= 2; s++) make_run(root, s, 12, 0.1, 0.1, 0);
    deba_profile p;
    compute(root, &p);
    snprintf(p.summary.recommendation, sizeof p.summary.recommendation, "Use it, \"carefully\", 100%%");
    deba_err e;
    snprintf(path, sizeof path, "%s/out", g_dir);
    assert_int_equal(deba_profile_save(path, &p, &e), DEBA_OK);
    snprintf(path, sizeof path, "%s/out/profile_summary.csv", g_dir);
    deba_summary_row *back;
    size_t n;
    assert_int_equal(deba_summary_read(path, &back, &n, &e), DEBA_OK);
    assert_int_equal(n, 1);
    assert_int_equal(back[0].epochs, 12);
    assert_int_equal(back[0].enough_epochs, 0);
    assert_int_equal(back[0].enough_seeds, 0);
    assert_int_equal(back[0].bootstrap, DEBA_BOOTSTRAP_B);
    assert_float_equal(back[0].share[DEBA_ARCHETYPE_OVERLY_STABLE], 1.0, 0);
    assert_float_equal(back[0].theta, p.thresholds.theta, 0);
    assert_string_equal(back[0].recommendation, "Use it, \"carefully\", 100%");
    free(back);
    char *old = tu_write(g_dir, "old_summary.csv", "arch,dataset,seeds,S_mean,S_std,archetype\nnet,data,3,0.5,0.01,"
                                                   "Moderately Stable\n");
    assert_int_equal(deba_summary_read(old, &back, &n, &e), DEBA_OK);
    assert_int_equal(back[0].bootstrap, 0);
    assert_int_equal(back[0].throughput_gain, -1);
    assert_string_equal(back[0].recommendation, "");
    free(back);
    free(old);
    old = tu_write(g_dir, "old_sweep.csv", "arch,dataset,batch_size,steps,samples_per_s,epoch_time_s,grad_var,"
                                           "compute_util\nnet,data,8,10,100,1,0.1,0.5\n");
    deba_sweep_row *sw;
    assert_int_equal(deba_sweep_read(old, &sw, &n, &e), DEBA_OK);
    assert_int_equal(sw[0].repeats, 1);
    assert_float_equal(sw[0].samples_per_s_min, 0, 0);
    free(sw);
    free(old);
    /* an optional column that is there is checked like any other */
    old = tu_write(g_dir, "bad_sweep.csv", "arch,dataset,batch_size,steps,samples_per_s,epoch_time_s,grad_var,"
                                           "compute_util,repeats\nnet,data,8,10,100,1,0.1,0.5,-2\n");
    assert_int_equal(deba_sweep_read(old, &sw, &n, &e), DEBA_E_INPUT);
    assert_contains(e.msg, "column 'repeats'");
    free(old);
    deba_profile_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bootstrap_certain, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap_split, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_bootstrap_epochs, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_verdict_boundaries, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test(test_sweep_compare),
        cmocka_unit_test_setup_teardown(test_verdict_sweep, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_optional_columns, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
