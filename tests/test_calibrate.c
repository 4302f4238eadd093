/* deba-calibrate end to end: hand-made run directories, the built tool run as a user would, and
 * thresholds compared with values worked out by hand from the SPEC §4 rule. */
#include "tests/testutil.h"

#include <math.h>

#include "deba/deba.h"


#define HEADER "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm," \
               "norm_var,loss_var,confidence,decision,epoch_time_s,compute_time_s,data_time_s," \
               "signal_time_s,eval_time_s,samples_per_s\n"

/* One trace row; only norm_var, loss_var and confidence matter to calibration. */
static void row(FILE *f, int epoch, double norm_var, double loss_var, double confidence, const char *decision)
{
    fprintf(f, "%d,64,100,0.01,%g,50,1.5,48,0.02,3.5,%.17g,%.17g,%.17g,%s,12.5,11,1,0.05,0.8,5120\n", epoch,
            2.0 / epoch, norm_var, loss_var, confidence, decision);
}

/* <root>/<arch>/<dataset>/<label>/seed<seed>/{meta,trace}.csv with the given epochs. */
static void make_run(const char *root, const char *arch, const char *dataset, const char *label, int seed,
                     const char *status, int n, const double *nv, const double *lv, const double *conf)
{
    char dir[2048], p[2200];
    deba_err e;
    assert_int_equal(deba_run_dir(dir, sizeof dir, root, arch, dataset, label, seed, &e), DEBA_OK);
    assert_int_equal(deba_mkdirs(dir, &e), DEBA_OK);
    snprintf(p, sizeof p, "%s/meta.csv", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "key,value\nformat_version,1\narch,%s\ndataset,%s\nlabel,%s\nmethod,%s\nseed,%d\nstatus,%s\n",
            arch, dataset, label, strcmp(label, "fixed") == 0 ? "fixed" : "deba", seed, status);
    fclose(f);
    snprintf(p, sizeof p, "%s/trace.csv", dir);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(HEADER, f);
    for (int t = 0; t < n; t++) row(f, t + 1, nv[t], lv[t], conf[t], strcmp(label, "fixed") == 0 ? "fixed" : "hold");
    fclose(f);
}

/* The fixture: two usable groups and two runs that must be ignored.
 *
 * resnet18/cifar10, fixed, completed, epochs 1..4 (epoch 1 carries wild values that must be
 * dropped by the t >= 2 rule):
 *   seed 1: norm_var 0.10 0.30 0.20   loss_var 0.05 0.15 0.10   confidence 0.80 1.20 0.90
 *   seed 2: norm_var 0.40 0.60 0.50   loss_var 0.25 0.20 0.30   confidence 1.00 0.70 1.10
 * cnn_small/fashion, fixed, completed, epochs 1..3:
 *   seed 1: norm_var 0.20 0.40        loss_var 0.10 0.30        confidence 0.50 1.50
 * resnet18/cifar10, deba, completed, and a fixed run still running: extreme values, ignored. */
static void make_fixture(const char *root)
{
    const double nv1[] = { 9, 0.10, 0.30, 0.20 }, lv1[] = { 9, 0.05, 0.15, 0.10 }, c1[] = { 9, 0.80, 1.20, 0.90 };
    const double nv2[] = { 9, 0.40, 0.60, 0.50 }, lv2[] = { 9, 0.25, 0.20, 0.30 }, c2[] = { 9, 1.00, 0.70, 1.10 };
    const double nv3[] = { 9, 0.20, 0.40 }, lv3[] = { 9, 0.10, 0.30 }, c3[] = { 9, 0.50, 1.50 };
    const double big[] = { 50, 60, 70, 80, 90 };
    make_run(root, "resnet18", "cifar10", "fixed", 1, "completed", 4, nv1, lv1, c1);
    make_run(root, "resnet18", "cifar10", "fixed", 2, "completed", 4, nv2, lv2, c2);
    make_run(root, "cnn_small", "fashion", "fixed", 1, "completed", 3, nv3, lv3, c3);
    make_run(root, "resnet18", "cifar10", "deba", 1, "completed", 5, big, big, big);
    make_run(root, "resnet18", "cifar10", "fixed", 3, "running", 5, big, big, big);
}

/* Runs deba-calibrate with args, stdout and stderr to files in g_dir; returns the exit status. */
static int calibrate(const char *args)
{
    char cmd[8192], cwd[2048] = "";
    const char *bin = tu_bindir();
    if (bin[0] != '/' && !getcwd(cwd, sizeof cwd)) return -1;   /* the command runs in g_dir */
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s%s%s/deba-calibrate' %s >out.txt 2>err.txt", g_dir, cwd,
             *cwd ? "/" : "", bin, args);
    return tu_run(cmd);
}

static char *slurp_in(const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int exists_in(const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return tu_exists(p);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

static void test_thresholds_by_hand(void **state)
{
    (void)state;
    char root[4200];
    snprintf(root, sizeof root, "%s/runs", g_dir);
    make_fixture(root);
    assert_int_equal(calibrate("runs"), 0);

    char p[4200];
    snprintf(p, sizeof p, "%s/thresholds.csv", g_dir);
    deba_thresholds_row *rows;
    size_t n;
    deba_err e;
    assert_int_equal(deba_thresholds_read(p, &rows, &n, &e), DEBA_OK);
    assert_int_equal(n, 2);

    /* Rows sorted by arch: cnn_small first. Two pooled epochs, type-7 percentiles, h = (n−1)·p:
     *   norm_var   [0.20, 0.40]: P75 → h = 0.75 → 0.20 + 0.75·(0.40 − 0.20) = 0.35
     *   confidence [0.50, 1.50]: P50 → h = 0.5  → 0.50 + 0.5·(1.50 − 0.50)  = 1.00
     *   loss_var   [0.10, 0.30]: P75 → h = 0.75 → 0.10 + 0.75·(0.30 − 0.10) = 0.25 */
    assert_string_equal(rows[0].arch, "cnn_small");
    assert_string_equal(rows[0].dataset, "fashion");
    assert_float_equal(rows[0].tau, 0.35, 1e-12);
    assert_float_equal(rows[0].theta, 1.00, 1e-12);
    assert_float_equal(rows[0].lambda, 0.25, 1e-12);
    assert_int_equal(rows[0].epochs_used, 2);
    assert_int_equal(rows[0].runs_used, 1);

    /* resnet18/cifar10: seeds 1 and 2, epochs 2..4, six values each (epoch 1's 9s excluded;
     * the deba run and the running run, all ≥ 50, excluded).
     *   norm_var sorted   [0.10 0.20 0.30 0.40 0.50 0.60]: h = 5·0.75 = 3.75
     *                     → x3 + 0.75·(x4 − x3) = 0.40 + 0.75·0.10 = 0.475
     *   confidence sorted [0.70 0.80 0.90 1.00 1.10 1.20]: h = 5·0.5 = 2.5
     *                     → x2 + 0.5·(x3 − x2)  = 0.90 + 0.5·0.10  = 0.95
     *   loss_var sorted   [0.05 0.10 0.15 0.20 0.25 0.30]: h = 3.75
     *                     → 0.20 + 0.75·0.05 = 0.2375 */
    assert_string_equal(rows[1].arch, "resnet18");
    assert_string_equal(rows[1].dataset, "cifar10");
    assert_float_equal(rows[1].tau, 0.475, 1e-12);
    assert_float_equal(rows[1].theta, 0.95, 1e-12);
    assert_float_equal(rows[1].lambda, 0.2375, 1e-12);
    assert_int_equal(rows[1].epochs_used, 6);
    assert_int_equal(rows[1].runs_used, 2);
    free(rows);

    /* The table went to stdout. */
    char *out = slurp_in("out.txt");
    assert_contains(out, "resnet18");
    assert_contains(out, "0.475");
    assert_contains(out, "0.2375");
    free(out);

    /* --quiet prints nothing; --force replaces; --out names the file. */
    assert_int_equal(calibrate("--quiet --force --out th2.csv runs/resnet18"), 0);
    out = slurp_in("out.txt");
    assert_string_equal(out, "");
    free(out);
    snprintf(p, sizeof p, "%s/th2.csv", g_dir);
    assert_int_equal(deba_thresholds_read(p, &rows, &n, &e), DEBA_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].arch, "resnet18");
    free(rows);
}

static void test_no_usable_runs(void **state)
{
    (void)state;
    const double big[] = { 50, 60, 70 };
    char root[4200];
    snprintf(root, sizeof root, "%s/runs", g_dir);
    make_run(root, "resnet18", "cifar10", "deba", 1, "completed", 3, big, big, big);
    make_run(root, "resnet18", "cifar10", "deba", 2, "completed", 3, big, big, big);
    make_run(root, "resnet18", "cifar10", "fixed", 1, "running", 3, big, big, big);
    assert_int_equal(calibrate("runs"), 2);
    assert_false(exists_in("thresholds.csv"));
    char *err = slurp_in("err.txt");
    assert_contains(err, "deba-calibrate: error: no completed fixed-batch runs under runs");
    assert_contains(err, "3 runs: 2 deba, 1 running");
    free(err);

    /* A directory with no runs at all. */
    snprintf(root, sizeof root, "%s/empty", g_dir);
    deba_err e;
    assert_int_equal(deba_mkdirs(root, &e), DEBA_OK);
    assert_int_equal(calibrate("empty"), 2);
    assert_false(exists_in("thresholds.csv"));
    err = slurp_in("err.txt");
    assert_contains(err, "no runs");
    free(err);

    /* A directory that does not exist. */
    assert_int_equal(calibrate("nowhere"), 2);
    assert_false(exists_in("thresholds.csv"));
}

static void test_corrupt_trace(void **state)
{
    (void)state;
    char root[4200];
    snprintf(root, sizeof root, "%s/runs", g_dir);
    make_fixture(root);
    /* Line 4 of seed 2's trace (epoch 3) gets a confidence with trailing junk. */
    char p[4300];
    snprintf(p, sizeof p, "%s/resnet18/cifar10/fixed/seed2/trace.csv", root);
    FILE *f = fopen(p, "w");
    fputs(HEADER, f);
    row(f, 1, 0, 0, 1, "fixed");
    row(f, 2, 0.4, 0.25, 1.0, "fixed");
    fputs("3,64,100,0.01,0.6,50,1.5,48,0.02,3.5,0.6,0.2,0.7abc,fixed,12.5,11,1,0.05,0.8,5120\n", f);
    fclose(f);
    assert_int_equal(calibrate("runs"), 2);
    assert_false(exists_in("thresholds.csv"));
    char *err = slurp_in("err.txt");
    assert_contains(err, "deba-calibrate: error: ");
    assert_contains(err, "runs/resnet18/cifar10/fixed/seed2/trace.csv:4:");
    assert_contains(err, "column 'confidence' (13)");
    assert_contains(err, "'0.7abc'");
    free(err);
    /* Nothing half-written either. */
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", g_dir);
    assert_int_not_equal(tu_run(cmd), 0);
}

/* A meta.csv cut to its header, or one without 'method': exit 2 naming it, as the man page
 * promises (the run used to be skipped silently, calibrating from fewer seeds than asked). */
static void test_truncated_meta(void **state)
{
    (void)state;
    char root[4200];
    snprintf(root, sizeof root, "%s/runs", g_dir);
    make_fixture(root);
    char p[4300];
    snprintf(p, sizeof p, "%s/resnet18/cifar10/fixed/seed2/meta.csv", root);
    FILE *f = fopen(p, "w");
    fputs("key,value\n", f);
    fclose(f);
    assert_int_equal(calibrate("runs"), 2);
    assert_false(exists_in("thresholds.csv"));
    char *err = slurp_in("err.txt");
    assert_contains(err, "runs/resnet18/cifar10/fixed/seed2/meta.csv:1: a header and no keys");
    free(err);

    f = fopen(p, "w");
    fputs("key,value\nformat_version,1\narch,resnet18\ndataset,cifar10\nseed,2\nstatus,completed\n", f);
    fclose(f);
    assert_int_equal(calibrate("runs"), 2);
    assert_false(exists_in("thresholds.csv"));
    err = slurp_in("err.txt");
    assert_contains(err, "runs/resnet18/cifar10/fixed/seed2/meta.csv: key 'method' missing");
    free(err);
}

/* A symlink loop under the runs: each run counted once, and the link that was not followed is
 * named on stderr (the walk used to follow it until a depth limit, counting runs many times). */
static void test_symlink_loop(void **state)
{
    (void)state;
    char root[4200], link[4300];
    snprintf(root, sizeof root, "%s/runs", g_dir);
    make_fixture(root);
    snprintf(link, sizeof link, "%s/loop", root);
    assert_int_equal(symlink(".", link), 0);
    assert_int_equal(calibrate("runs"), 0);
    char *err = slurp_in("err.txt");
    assert_contains(err, "deba-calibrate: warning: runs/loop");
    assert_contains(err, "not followed");
    free(err);
    char *out = slurp_in("thresholds.csv");
    assert_contains(out, "resnet18,cifar10,");
    assert_contains(out, ",2\n");   /* runs_used: the two completed fixed seeds, once each */
    free(out);
}

static void test_usage_errors(void **state)
{
    (void)state;
    char root[4200];
    snprintf(root, sizeof root, "%s/runs", g_dir);
    make_fixture(root);

    /* An existing output is kept without --force. */
    char *p = tu_write(g_dir, "thresholds.csv", "precious\n");
    assert_int_equal(calibrate("runs"), 2);
    char *text = slurp_in("thresholds.csv");
    assert_string_equal(text, "precious\n");
    free(text);
    char *err = slurp_in("err.txt");
    assert_contains(err, "deba-calibrate: error: thresholds.csv exists");
    assert_contains(err, "--force");
    free(err);
    free(p);

    assert_int_equal(calibrate("--frobnicate runs"), 2);
    err = slurp_in("err.txt");
    assert_contains(err, "deba-calibrate: error:");
    assert_contains(err, "--frobnicate");
    free(err);
    /* --out naming a directory: an input error (exit 2) even with --force, and no temporary
     * file left in it. */
    char od[4300];
    snprintf(od, sizeof od, "%s/outdir", g_dir);
    deba_err e;
    assert_int_equal(deba_mkdirs(od, &e), DEBA_OK);
    assert_int_equal(calibrate("--force --out outdir runs"), 2);
    err = slurp_in("err.txt");
    assert_contains(err, "deba-calibrate: error: --out outdir is a directory");
    free(err);
    assert_int_equal(rmdir(od), 0);   /* still empty */

    assert_int_equal(calibrate("--out"), 2);
    assert_int_equal(calibrate(""), 2);   /* no RUN_DIR */

    assert_int_equal(calibrate("--help"), 0);
    char *out = slurp_in("out.txt");
    const char *opts[] = { "--out", "--force", "--quiet", "--help", "--version", "RUN_DIR" };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) assert_contains(out, opts[i]);
    free(out);
    assert_int_equal(calibrate("--version"), 0);
    out = slurp_in("out.txt");
    assert_contains(out, "deba-calibrate ");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_thresholds_by_hand, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_no_usable_runs, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_trace, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_meta, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_symlink_loop, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
