/* deba-profile: the stability profile from hand-made traces against S, S̄, σ_S and thresholds
 * worked out by hand (SPEC §4-§5), archetypes, reuse and resume of a killed profile, the batch
 * sweep on cnn_small, study plan errors and the exact job lines a small plan emits. */
#include "tests/testutil.h"

#include <math.h>

#include "deba/deba.h"
#include "profiler/profile.h"


#define FM_DIR "/usr/share/datasets/fashion-mnist"
#define HEADER "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm," \
               "norm_var,loss_var,confidence,decision,epoch_time_s,compute_time_s,data_time_s," \
               "signal_time_s,eval_time_s,samples_per_s\n"

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle)) fail_msg("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

static char *slurp_in(const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return tu_slurp(p);
}

/* Runs deba-profile with args in g_dir (env prepended, may be ""), output to out.txt/err.txt. */
static int profile_env(const char *env, const char *args)
{
    char cmd[16384], cwd[2048] = "";
    const char *bin = tu_bindir();
    if (bin[0] != '/' && !getcwd(cwd, sizeof cwd)) return -1;
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s%s%s/deba-profile' %s >out.txt 2>err.txt", g_dir, env, cwd,
             *cwd ? "/" : "", bin, args);
    return tu_run(cmd);
}

static int profile(const char *args) { return profile_env("", args); }

/* A hand-made run: meta.csv as the trainer writes it (the keys the profile checks) and trace.csv
 * with the given per-epoch grad_var, norm_var, loss_var, confidence; test_acc = 50 + epoch. */
static void make_run(const char *root, int seed, const char *status, int n, const double *gv, const double *nv,
                     const double *lv, const double *conf)
{
    char dir[2048], p[2200];
    deba_err e;
    assert_int_equal(deba_run_dir(dir, sizeof dir, root, "resnet18", "cifar10", "fixed", seed, &e), DEBA_OK);
    assert_int_equal(deba_mkdirs(dir, &e), DEBA_OK);
    snprintf(p, sizeof p, "%s/meta.csv", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "key,value\nformat_version,1\narch,resnet18\ndataset,cifar10\nlabel,fixed\nmethod,fixed\nseed,%d\n"
               "epochs,4\nbatch0,64\nlr,0.01\nmomentum,0.9\nweight_decay,0.0005\nstatus,%s\nimage_size,32\nsubset,0\n",
            seed, status);
    fclose(f);
    snprintf(p, sizeof p, "%s/trace.csv", dir);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(HEADER, f);
    for (int t = 0; t < n; t++)
        fprintf(f, "%d,64,782,0.01,%g,50,1.5,%d,%.17g,3.5,%.17g,%.17g,%.17g,fixed,12.5,11,1,0.05,0.8,4000\n", t + 1,
                2.0 / (t + 1), 50 + t + 1, gv[t], nv[t], lv[t], conf[t]);
    fclose(f);
}

/* Three completed seeds and one diverged (epoch 1 carries values the t >= 2 rule must drop):
 *   seed 1: grad_var 1 2 3   norm_var .1 .2 .3   loss_var .05 .10 .15   confidence .8 1.0 1.2
 *   seed 2: grad_var 2 2 2   norm_var .5 .5 .5   loss_var .3 .5 .7      confidence .5 .6 .7
 *   seed 3: grad_var 4 4 4   norm_var 1 1 1      loss_var .4 .5 .6      confidence 1.5 1.6 1.7
 *   seed 4: diverged after 2 epochs, values that would wreck every statistic. */
static void make_fixture(const char *root)
{
    const double gv1[] = { 99, 1, 2, 3 }, nv1[] = { 0, .1, .2, .3 }, lv1[] = { 0, .05, .10, .15 }, c1[] = { 1, .8, 1.0, 1.2 };
    const double gv2[] = { 99, 2, 2, 2 }, nv2[] = { 0, .5, .5, .5 }, lv2[] = { 0, .3, .5, .7 }, c2[] = { 1, .5, .6, .7 };
    const double gv3[] = { 99, 4, 4, 4 }, nv3[] = { 0, 1, 1, 1 }, lv3[] = { 0, .4, .5, .6 }, c3[] = { 1, 1.5, 1.6, 1.7 };
    const double big[] = { 1e6, 1e6 };
    make_run(root, 1, "completed", 4, gv1, nv1, lv1, c1);
    make_run(root, 2, "completed", 4, gv2, nv2, lv2, c2);
    make_run(root, 3, "completed", 4, gv3, nv3, lv3, c3);
    make_run(root, 4, "diverged", 2, big, big, big, big);
}

/* By hand, over epochs 2..4 (population std):
 *   seed 1: mean grad_var 2, std sqrt(2/3), CV = sqrt(2/3)/2; mean norm_var .2; mean loss_var .1
 *   seed 2: CV 0, .5, .5 -> S = 1/2       seed 3: CV 0, 1, .5 -> S = 1/2.5 = 0.4
 * Thresholds over the nine pooled epochs (type 7, h = 8p):
 *   norm_var sorted .1 .2 .3 .5 .5 .5 1 1 1, P75 at h = 6 -> 1
 *   confidence sorted .5 .6 .7 .8 1 1.2 1.5 1.6 1.7, median at h = 4 -> 1
 *   loss_var sorted .05 .1 .15 .3 .4 .5 .5 .6 .7, P75 at h = 6 -> .5 */
static const double S1_CV = 0.40824829046386302;   /* sqrt(2/3) / 2 */

static void check_profile_numbers(const deba_profile_row *rows, size_t n, const deba_summary_row *s,
                                  const deba_thresholds_row *t)
{
    double S1 = 1.0 / (1.0 + S1_CV + 0.2 + 0.1), S2 = 0.5, S3 = 0.4;
    assert_int_equal(n, 3);
    assert_int_equal(rows[0].seed, 1);
    assert_int_equal(rows[2].seed, 3);
    assert_int_equal(rows[0].epochs, 4);
    assert_float_equal(rows[0].cv_grad_var, S1_CV, 1e-12);
    assert_float_equal(rows[0].mean_norm_var, 0.2, 1e-12);
    assert_float_equal(rows[0].mean_loss_var, 0.1, 1e-12);
    assert_float_equal(rows[0].S, S1, 1e-12);
    assert_float_equal(rows[1].S, S2, 1e-12);
    assert_float_equal(rows[2].S, S3, 1e-12);
    assert_float_equal(rows[0].final_test_acc, 54, 1e-12);
    double mean = (S1 + S2 + S3) / 3;
    double sd = sqrt(((S1 - mean) * (S1 - mean) + (S2 - mean) * (S2 - mean) + (S3 - mean) * (S3 - mean)) / 2);
    assert_int_equal(s->seeds, 3);
    assert_float_equal(s->S_mean, mean, 1e-12);   /* 0.49513... */
    assert_float_equal(s->S_std, sd, 1e-12);      /* 0.0928 < 0.10 */
    assert_int_equal(s->archetype, DEBA_ARCHETYPE_MODERATELY_STABLE);
    assert_float_equal(t->tau, 1.0, 1e-12);
    assert_float_equal(t->theta, 1.0, 1e-12);
    assert_float_equal(t->lambda, 0.5, 1e-12);
    assert_int_equal(t->epochs_used, 9);
    assert_int_equal(t->runs_used, 3);
}

static void test_profile_by_hand(void **state)
{
    (void)state;
    char root[4200];
    snprintf(root, sizeof root, "%s/runs", g_dir);
    make_fixture(root);

    /* The library, from the run directories. */
    deba_profile p;
    deba_err e;
    const int seeds[] = { 1, 2, 3, 4 };
    assert_int_equal(deba_profile_compute(root, "resnet18", "cifar10", seeds, 4, &p, &e), DEBA_OK);
    assert_int_equal(p.n_seeds, 4);
    assert_false(p.seeds[3].used);
    assert_string_equal(p.seeds[3].status, "diverged");
    check_profile_numbers(p.rows, p.n_rows, &p.summary, &p.thresholds);
    deba_profile_free(&p);
    /* No seed list: every run under fixed/, in seed order. */
    assert_int_equal(deba_profile_compute(root, "resnet18", "cifar10", NULL, 0, &p, &e), DEBA_OK);
    assert_int_equal(p.n_seeds, 4);
    check_profile_numbers(p.rows, p.n_rows, &p.summary, &p.thresholds);
    deba_profile_free(&p);
    /* A seed without a run is an input error naming it. */
    const int missing[] = { 1, 9 };
    assert_int_equal(deba_profile_compute(root, "resnet18", "cifar10", missing, 2, &p, &e), DEBA_E_INPUT);
    assert_contains(e.msg, "no run for seed 9");

    /* The tool: every run is there, so nothing trains; the diverged seed is reported. */
    assert_int_equal(profile("--arch resnet18 --dataset cifar10 --seeds 1,2,3,4 --epochs 4 --out runs"), 0);
    char *err = slurp_in("err.txt"), *out = slurp_in("out.txt");
    assert_contains(err, "seed 1: reused completed run");
    assert_contains(err, "warning: seed 4 diverged after 2 epochs");
    assert_contains(out, "archetype: Moderately Stable");
    assert_contains(out, deba_archetype_advice(DEBA_ARCHETYPE_MODERATELY_STABLE));
    assert_contains(out, "tau = 1  theta = 1  lambda = 0.5");
    free(err);
    free(out);
    char path[4300];
    deba_profile_row *rows;
    deba_summary_row *sum;
    deba_thresholds_row *th;
    size_t n, ns, nt;
    snprintf(path, sizeof path, "%s/runs/resnet18/cifar10/profile.csv", g_dir);
    assert_int_equal(deba_profile_read(path, &rows, &n, &e), DEBA_OK);
    snprintf(path, sizeof path, "%s/runs/resnet18/cifar10/profile_summary.csv", g_dir);
    assert_int_equal(deba_summary_read(path, &sum, &ns, &e), DEBA_OK);
    snprintf(path, sizeof path, "%s/runs/resnet18/cifar10/thresholds.csv", g_dir);
    assert_int_equal(deba_thresholds_read(path, &th, &nt, &e), DEBA_OK);
    assert_int_equal(ns, 1);
    assert_int_equal(nt, 1);
    check_profile_numbers(rows, n, sum, th);
    free(rows);
    free(sum);
    free(th);

    /* Runs made with other settings are not silently reused. */
    assert_int_equal(profile("--arch resnet18 --dataset cifar10 --seeds 1,2,3 --epochs 4 --batch 128 --out runs"), 2);
    err = slurp_in("err.txt");
    assert_contains(err, "deba-profile: error: ");
    assert_contains(err, "started with --batch 64, not 128");
    free(err);
    /* Usage errors. */
    assert_int_equal(profile("--arch resnet18 --dataset cifar10 --seeds 1,1"), 2);
    assert_int_equal(profile("--arch resnet18 --dataset cifar10 --epochs 1"), 2);
    assert_int_equal(profile("--dataset cifar10"), 2);
}

static deba_summary_row summarize(const double *S, size_t n)
{
    deba_profile_row rows[8];
    memset(rows, 0, sizeof rows);
    for (size_t i = 0; i < n; i++) rows[i].S = S[i];
    deba_summary_row s;
    deba_profile_summarize(rows, n, &s);
    return s;
}

static void test_archetypes(void **state)
{
    (void)state;
    /* mean .22 < .26 */
    const double nu[] = { 0.20, 0.22, 0.24 };
    deba_summary_row s = summarize(nu, 3);
    assert_float_equal(s.S_mean, 0.22, 1e-12);
    assert_float_equal(s.S_std, 0.02, 1e-12);
    assert_int_equal(s.archetype, DEBA_ARCHETYPE_NATURALLY_UNSTABLE);
    /* mean .2 and std .1: unstable is checked before dynamic */
    const double nu2[] = { 0.10, 0.30, 0.20 };
    s = summarize(nu2, 3);
    assert_float_equal(s.S_std, 0.1, 1e-12);
    assert_int_equal(s.archetype, DEBA_ARCHETYPE_NATURALLY_UNSTABLE);
    /* mean 1/3, std sqrt(((1/30)² + (1/6)² + (2/15)²) / 2) = 0.1528 >= .10 */
    const double ds[] = { 0.30, 0.50, 0.20 };
    s = summarize(ds, 3);
    assert_float_equal(s.S_std, sqrt((1.0 / 900 + 1.0 / 36 + 4.0 / 225) / 2), 1e-12);
    assert_int_equal(s.archetype, DEBA_ARCHETYPE_DYNAMICALLY_STABLE);
    /* mean .75 but std .2121: dynamic is checked before overly */
    const double ds2[] = { 0.90, 0.60 };
    s = summarize(ds2, 2);
    assert_float_equal(s.S_std, sqrt(0.045), 1e-12);
    assert_int_equal(s.archetype, DEBA_ARCHETYPE_DYNAMICALLY_STABLE);
    /* mean .59, std .01 */
    const double os[] = { 0.58, 0.60, 0.59 };
    s = summarize(os, 3);
    assert_int_equal(s.archetype, DEBA_ARCHETYPE_OVERLY_STABLE);
    /* mean .49, std .01 */
    const double ms[] = { 0.48, 0.50, 0.49 };
    s = summarize(ms, 3);
    assert_int_equal(s.archetype, DEBA_ARCHETYPE_MODERATELY_STABLE);
    /* the paper's Table 2 rows (S̄, σ_S) through the same rule */
    assert_int_equal(deba_archetype_classify(0.590, 0.028), DEBA_ARCHETYPE_OVERLY_STABLE);
    assert_int_equal(deba_archetype_classify(0.331, 0.182), DEBA_ARCHETYPE_DYNAMICALLY_STABLE);
    assert_int_equal(deba_archetype_classify(0.185, 0.079), DEBA_ARCHETYPE_NATURALLY_UNSTABLE);
    /* one seed: no spread */
    s = summarize(ms, 1);
    assert_int_equal(s.seeds, 1);
    assert_float_equal(s.S_std, 0, 0);
}

static int have_fashion(void)
{
    return tu_exists(FM_DIR "/train-images-idx3-ubyte.gz") || tu_exists(FM_DIR "/train-images-idx3-ubyte");
}

static int mtime_equal(const char *a, const struct timespec *t)
{
    struct stat sb;
    return stat(a, &sb) == 0 && sb.st_mtim.tv_sec == t->tv_sec && sb.st_mtim.tv_nsec == t->tv_nsec;
}

#define TINY "--arch cnn_small --dataset fashion-mnist --subset 48 --test-subset 16 --epochs 2 --device cpu --quiet"

static void test_resume_killed_profile(void **state)
{
    (void)state;
    if (!have_fashion()) skip();
    /* Seed 1 alone, to completion. */
    assert_int_equal(profile(TINY " --seeds 1 --out runs"), 0);
    char s1_trace[4300], s1_meta[4300], s2[4300], p[4400];
    snprintf(s1_trace, sizeof s1_trace, "%s/runs/cnn_small/fashion-mnist/fixed/seed1/trace.csv", g_dir);
    snprintf(s1_meta, sizeof s1_meta, "%s/runs/cnn_small/fashion-mnist/fixed/seed1/meta.csv", g_dir);
    snprintf(s2, sizeof s2, "%s/runs/cnn_small/fashion-mnist/fixed/seed2", g_dir);
    struct stat sb;
    assert_int_equal(stat(s1_trace, &sb), 0);
    struct timespec t_trace = sb.st_mtim;
    assert_int_equal(stat(s1_meta, &sb), 0);
    struct timespec t_meta = sb.st_mtim;

    /* Seeds 1 and 2, killed right after seed 2's first checkpoint (the trainer _exit(137)s). */
    assert_int_equal(profile_env("DEBA_FAULT_KILL_AFTER_EPOCH=1", TINY " --seeds 1,2 --out runs"), 137);
    snprintf(p, sizeof p, "%s/checkpoint.bin", s2);
    assert_true(tu_exists(p));
    deba_meta m = { 0 };
    deba_err e;
    snprintf(p, sizeof p, "%s/meta.csv", s2);
    assert_int_equal(deba_meta_read(p, &m, &e), DEBA_OK);
    assert_string_equal(deba_meta_get(&m, "status"), "running");
    deba_meta_free(&m);

    /* The same command again: seed 1 untouched, seed 2 resumed and finished. */
    assert_int_equal(profile(TINY " --seeds 1,2 --out runs"), 0);
    char *err = slurp_in("err.txt");
    assert_contains(err, "seed 1: reused completed run");
    assert_contains(err, "seed 2: resumed completed run, 2 epochs");
    free(err);
    assert_true(mtime_equal(s1_trace, &t_trace));
    assert_true(mtime_equal(s1_meta, &t_meta));
    deba_trace t = { 0 }, ref = { 0 };
    snprintf(p, sizeof p, "%s/trace.csv", s2);
    assert_int_equal(deba_trace_read(p, &t, &e), DEBA_OK);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.rows[0].epoch, 1);
    assert_int_equal(t.rows[1].epoch, 2);
    deba_profile_row *rows;
    size_t n;
    snprintf(p, sizeof p, "%s/runs/cnn_small/fashion-mnist/profile.csv", g_dir);
    assert_int_equal(deba_profile_read(p, &rows, &n, &e), DEBA_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rows[1].seed, 2);
    free(rows);

    /* An uninterrupted seed 2 elsewhere gives the same signals (CPU is deterministic). */
    assert_int_equal(profile(TINY " --seeds 2 --out ref"), 0);
    snprintf(p, sizeof p, "%s/ref/cnn_small/fashion-mnist/fixed/seed2/trace.csv", g_dir);
    assert_int_equal(deba_trace_read(p, &ref, &e), DEBA_OK);
    assert_int_equal(ref.n, 2);
    for (int i = 0; i < 2; i++) {
        assert_float_equal(t.rows[i].train_loss, ref.rows[i].train_loss, 0);
        assert_float_equal(t.rows[i].grad_var, ref.rows[i].grad_var, 0);
        assert_float_equal(t.rows[i].norm_var, ref.rows[i].norm_var, 0);
        assert_float_equal(t.rows[i].test_acc, ref.rows[i].test_acc, 0);
    }
    deba_trace_free(&t);
    deba_trace_free(&ref);
}

static int overcommit_heuristic(void)
{
    char *s = tu_slurp("/proc/sys/vm/overcommit_memory");
    int ok = s && s[0] != '1';
    free(s);
    return ok;
}

static void test_sweep(void **state)
{
    (void)state;
    if (!have_fashion()) skip();
    /* 16 twice: both start from the same weights and data order, so their gradient variances
     * agree exactly. 1048576 needs terabytes: recorded as not fitting, and the sweep goes on
     * (only where the kernel refuses impossible allocations). */
    int oom = overcommit_heuristic();
    char args[512];
    snprintf(args, sizeof args, "--arch cnn_small --dataset fashion-mnist --subset 40 --device cpu --quiet --out runs "
                                "--sweep 8,16,%s16,24 --sweep-steps 2 --sweep-min-time 0 --repeats 2 --seed 3",
             oom ? "1048576," : "");
    /* under AddressSanitizer the impossible allocation must fail like malloc, not abort */
    assert_int_equal(profile_env("ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1", args), 0);
    char p[4300];
    snprintf(p, sizeof p, "%s/runs/cnn_small/fashion-mnist/sweep.csv", g_dir);
    deba_sweep_row *rows;
    size_t n;
    deba_err e;
    assert_int_equal(deba_sweep_read(p, &rows, &n, &e), DEBA_OK);
    assert_int_equal(n, oom ? 5 : 4);
    const int want_b[] = { 8, 16, 16, 24 };
    const int epoch_samples[] = { 40, 48, 48, 48 };   /* B * ceil(40 / B) */
    for (size_t i = 0, k = 0; i < n; i++) {
        assert_string_equal(rows[i].arch, "cnn_small");
        assert_string_equal(rows[i].dataset, "fashion-mnist");
        if (oom && i == 2) {
            assert_int_equal(rows[i].batch_size, 1048576);
            assert_int_equal(rows[i].steps, 0);
            assert_float_equal(rows[i].samples_per_s, 0, 0);
            continue;
        }
        assert_int_equal(rows[i].batch_size, want_b[k]);
        assert_int_equal(rows[i].steps, 2);
        assert_int_equal(rows[i].repeats, 2);
        /* with two repeats the median is the mean of the two per-step times: between them */
        assert_true(rows[i].samples_per_s_min <= rows[i].samples_per_s * (1 + 1e-12));
        assert_true(rows[i].samples_per_s <= rows[i].samples_per_s_max * (1 + 1e-12));
        assert_true(rows[i].samples_per_s > 0);
        assert_true(rows[i].grad_var > 0);
        assert_true(rows[i].compute_util > 0 && rows[i].compute_util <= 1);
        /* epoch time = time per step * ceil(N / B) and samples/s = B / time per step */
        assert_float_equal(rows[i].epoch_time_s * rows[i].samples_per_s, epoch_samples[k], 1e-6 * epoch_samples[k]);
        k++;
    }
    assert_float_equal(rows[1].grad_var, rows[oom ? 3 : 2].grad_var, 0);
    assert_true(rows[0].grad_var != rows[1].grad_var);
    free(rows);
    if (oom) {
        char *err = slurp_in("err.txt");
        assert_string_equal(err, "");   /* --quiet */
        free(err);
    }
    /* An existing sweep.csv is kept without --force. */
    assert_int_equal(profile("--arch cnn_small --dataset fashion-mnist --subset 40 --device cpu --quiet --out runs "
                             "--sweep 8 --sweep-steps 1"), 2);
    char *err = slurp_in("err.txt");
    assert_contains(err, "sweep.csv exists: use --force");
    free(err);
    /* A subset larger than the training set is refused, not shrunk silently to the set's size. */
    assert_int_equal(profile("--arch cnn_small --dataset fashion-mnist --subset 70000 --device cpu --quiet "
                             "--out runs2 --sweep 8 --sweep-steps 1"), 2);
    err = slurp_in("err.txt");
    assert_contains(err, "--subset 70000: the fashion-mnist training set in");
    assert_contains(err, "has only 60000 images");
    free(err);
    snprintf(p, sizeof p, "%s/runs2", g_dir);
    assert_false(tu_exists(p));
}

/* The sweep's timing logic under the test clock (DEBA_TEST_SWEEP_S_PER_SAMPLE: every step takes
 * 0.001 s per sample): at least 0.5 s measured in the first repeat means ceil(0.5 / (0.001 B))
 * steps (63 at B = 8: 62 steps are 0.496 s; 32 at B = 16), the same steps in every repeat,
 * 1000 samples/s at every size, and so no throughput gain to claim. */
static void test_sweep_fake_clock(void **state)
{
    (void)state;
    if (!have_fashion()) skip();
    assert_int_equal(profile_env("DEBA_TEST_SWEEP_S_PER_SAMPLE=0.001",
                                 "--arch cnn_small --dataset fashion-mnist --subset 40 --device cpu --quiet --out runs "
                                 "--sweep 8,16,64 --sweep-steps 2 --seed 3"),
                     0);
    char p[4300];
    snprintf(p, sizeof p, "%s/runs/cnn_small/fashion-mnist/sweep.csv", g_dir);
    deba_sweep_row *rows;
    size_t n;
    deba_err e;
    assert_int_equal(deba_sweep_read(p, &rows, &n, &e), DEBA_OK);
    assert_int_equal(n, 3);
    const int want_steps[] = { 63, 32, 8 };   /* B = 64: 8 steps of 0.064 s = 0.512 s */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rows[i].steps, want_steps[i]);
        assert_int_equal(rows[i].repeats, 3);
        assert_float_equal(rows[i].samples_per_s, 1000, 1e-9);
        assert_float_equal(rows[i].samples_per_s_min, 1000, 1e-9);
        assert_float_equal(rows[i].samples_per_s_max, 1000, 1e-9);
    }
    /* epoch time: 0.001 s per sample, ceil(40 / B) batches of B */
    assert_float_equal(rows[0].epoch_time_s, 0.040, 1e-12);
    assert_float_equal(rows[2].epoch_time_s, 0.064, 1e-12);
    free(rows);
    char *out = slurp_in("out.txt");
    assert_contains(out, "No measurable throughput gain from larger batches: the samples/s min-max intervals of B = 8 "
                         "to 64 overlap or lie below that of B = 8 (3 repeats each).");
    free(out);
    /* --repeats and --sweep-min-time belong to a sweep; --bootstrap to a profile */
    assert_int_equal(profile("--arch cnn_small --dataset fashion-mnist --repeats 3"), 2);
    char *err = slurp_in("err.txt");
    assert_contains(err, "--repeats and --sweep-min-time need --sweep LIST");
    free(err);
    assert_int_equal(profile("--arch cnn_small --dataset fashion-mnist --sweep 8 --bootstrap 10"), 2);
    assert_int_equal(profile("--arch cnn_small --dataset fashion-mnist --bootstrap 0"), 2);
    assert_int_equal(profile("--arch cnn_small --dataset fashion-mnist --sweep 8 --sweep-min-time -1"), 2);
}

/* ---- plans ---- */

static const char *plan_error(const char *text)
{
    static char msg[1100];
    char *path = tu_write(g_dir, "bad.ini", text);
    deba_err e = { 0 };
    deba_plan *p = deba_plan_load(path, &e);
    if (p) {
        deba_plan_free(p);
        free(path);
        return "(loaded)";
    }
    assert_int_equal(e.status, DEBA_E_INPUT);
    /* the message starts with the file's path; return the rest */
    size_t l = strlen(path);
    assert_memory_equal(e.msg, path, l);
    snprintf(msg, sizeof msg, "%s", e.msg + l);
    free(path);
    return msg;
}

#define STUDY "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1, 2\nepochs = 3\n"
#define FIXED "[condition fixed]\nmethod = fixed\n"

static void test_plan_errors(void **state)
{
    (void)state;
    assert_string_equal(plan_error(STUDY FIXED), "(loaded)");
    assert_string_equal(plan_error(STUDY "foo = 1\n" FIXED), ":6: unknown key 'foo' in [study]");
    assert_string_equal(plan_error("[study]\narchs = cnn_small\nepochs = ten\n"),
                        ":3: epochs: expected an integer in [1, 100000], got 'ten'");
    assert_string_equal(plan_error(STUDY "lr = 0.0x1\n" FIXED), ":6: lr: expected a number, got '0.0x1'");
    assert_string_equal(plan_error("[study]\nseeds =\n"), ":2: seeds: empty list");
    assert_string_equal(plan_error("[study]\nseeds = 1,,2\n"), ":2: seeds: empty item in list '1,,2'");
    assert_string_equal(plan_error("[study]\nseeds = 1, x\n"), ":2: seeds: expected an integer in [0, 2147483647], got 'x'");
    assert_string_equal(plan_error(STUDY FIXED "coldown = 2\n"),
                        ":8: unknown option 'coldown' in [condition fixed] (known: method, batch, bmin, bmax, thresholds, "
                        "tau, theta, lambda, window, cooldown, growth, rollback, lr, momentum, weight-decay, lr-scaling, "
                        "archs, datasets)");
    assert_string_equal(plan_error(STUDY "epochs = 4\n" FIXED), ":6: duplicate key 'epochs' (first at line 5)");
    assert_string_equal(plan_error(STUDY "[studdy]\n"), ":6: unknown section '[studdy]' (expected [study], [condition NAME] or [slurm])");
    assert_string_equal(plan_error(STUDY FIXED "[condition fixed]\n"), ":8: duplicate section [condition fixed] (first at line 6)");
    assert_string_equal(plan_error("[study]\narchs = resnet19\n"), ":2: archs: unknown architecture 'resnet19'");
    assert_string_equal(plan_error("[study]\narchs = cnn_small\nepochs 3\n"),
                        ":3: expected 'key = value' or a [section] header, got 'epochs 3'");
    assert_string_equal(plan_error("epochs = 3\n"), ":1: key 'epochs' before any [section]");
    assert_string_equal(plan_error("[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 1\n" FIXED),
                        ":1: [study] lacks the required key 'epochs'");
    assert_string_equal(plan_error(STUDY), ": no [condition NAME] section: nothing to run");
    assert_string_equal(plan_error(FIXED), ": no [study] section");
    assert_string_equal(plan_error(STUDY "[condition deba]\nmethod = deba\n"),
                        ":6: [condition deba]: method deba needs 'thresholds' (a file, or calibrate) or all of 'tau', "
                        "'theta', 'lambda'");
    assert_string_equal(plan_error(STUDY "[condition deba]\nmethod = deba\nthresholds = calibrate\n" FIXED),
                        ":8: thresholds = calibrate needs a [condition fixed] with method fixed, run before [condition deba]");
    assert_string_equal(plan_error(STUDY FIXED "[condition d]\nmethod = deba\ntau = 0.2\ntheta = 0.5\nlambda = -1\n"),
                        ":8: [condition d]: --lambda must be > 0 and finite (got -1)");
    assert_string_equal(plan_error(STUDY "conditions = fixed, deba\n" FIXED), ":6: conditions: no section [condition deba]");
    assert_string_equal(plan_error(STUDY "[condition a/b]\n"),
                        ":6: condition name 'a/b': use 1 to 63 letters, digits, '.', '_' or '-', not '.' or '..' (it "
                        "names run directories)");

    /* The tool: exit 2, the tool's prefix, file:line. */
    free(tu_write(g_dir, "bad.ini", STUDY "foo = 1\n" FIXED));
    assert_int_equal(profile("--plan bad.ini --emit-jobs jobs.txt"), 2);
    char *err = slurp_in("err.txt");
    assert_string_equal(err, "deba-profile: error: bad.ini:6: unknown key 'foo' in [study]\n");
    free(err);
    char jp[4200], cmd_ls[4400];
    snprintf(jp, sizeof jp, "%s/jobs.txt", g_dir);
    assert_false(tu_exists(jp));
    /* SGD settings out of range are plan errors with their line, not runs that train on them. */
    assert_string_equal(plan_error(STUDY FIXED "lr = -1\n"), ":8: [condition fixed]: lr must be > 0 (got -1)");
    assert_string_equal(plan_error(STUDY "momentum = 1.5\n" FIXED),
                        ":6: [condition fixed]: momentum must be in [0, 1) (got 1.5)");
    assert_string_equal(plan_error(STUDY FIXED "weight-decay = -0.1\n"),
                        ":8: [condition fixed]: weight-decay must be >= 0 (got -0.1)");
    /* A directory given as the plan, as the jobs file, or an empty jobs file name: exit 2 with
     * a message that says so, nothing written. */
    assert_int_equal(profile("--plan . --run"), 2);
    err = slurp_in("err.txt");
    assert_string_equal(err, "deba-profile: error: .: is a directory, not a plan file\n");
    free(err);
    free(tu_write(g_dir, "good.ini", STUDY FIXED));
    char jd[4200];
    snprintf(jd, sizeof jd, "%s/jobsdir", g_dir);
    deba_err e2;
    assert_int_equal(deba_mkdirs(jd, &e2), DEBA_OK);
    assert_int_equal(profile("--plan good.ini --emit-jobs jobsdir --force"), 2);
    err = slurp_in("err.txt");
    assert_string_equal(err, "deba-profile: error: jobsdir: is a directory, not a file\n");
    free(err);
    assert_int_equal(profile("--plan good.ini --emit-jobs ''"), 2);
    err = slurp_in("err.txt");
    assert_non_null(strstr(err, "--emit-jobs: empty file name"));
    free(err);
    snprintf(cmd_ls, sizeof cmd_ls, "ls -A '%s' | grep -q tmp", g_dir);
    assert_int_not_equal(tu_run(cmd_ls), 0);
    assert_int_equal(profile("--plan bad.ini"), 2);   /* neither --run nor --emit-jobs */
    assert_int_equal(profile("--plan bad.ini --run --arch cnn_small"), 2);
}

static const char *SMALL_PLAN =
    "# two seeds, three conditions\n"
    "[study]\n"
    "archs = cnn_small\n"
    "datasets = fashion-mnist\n"
    "seeds = 1, 2\n"
    "epochs = 3\n"
    "batch = 32\n"
    "subset = 100\n"
    "device = cpu\n"
    "out = my runs\n"
    "data.fashion-mnist = /data/fm\n"
    "\n"
    "[condition fixed]\n"
    "method = fixed\n"
    "\n"
    "[condition deba]\n"
    "method = deba\n"
    "thresholds = calibrate\n"
    "cooldown = 1\n"
    "\n"
    "[condition deba-universal]\n"
    "method = deba\n"
    "tau = 0.25\n"
    "theta = 0.5\n"
    "lambda = 0.10\n";

#define L0 "deba-train --arch cnn_small --dataset fashion-mnist --data /data/fm --subset 100 --epochs 3 --seed "

static void test_emit_jobs(void **state)
{
    (void)state;
    free(tu_write(g_dir, "study.ini", SMALL_PLAN));
    assert_int_equal(profile("--plan study.ini --emit-jobs out/jobs.txt"), 0);
    char *jobs = slurp_in("out/jobs.txt");
    /* Runs that need nothing first (arch, dataset, condition, seed), the calibrated ones last. */
    assert_string_equal(jobs,
        L0 "1 --device cpu --method fixed --batch 32 --label fixed --out 'my runs' --resume\n"
        L0 "2 --device cpu --method fixed --batch 32 --label fixed --out 'my runs' --resume\n"
        L0 "1 --device cpu --method deba --batch 32 --tau 0.25 --theta 0.5 --lambda 0.10 --label deba-universal --out 'my runs' --resume\n"
        L0 "2 --device cpu --method deba --batch 32 --tau 0.25 --theta 0.5 --lambda 0.10 --label deba-universal --out 'my runs' --resume\n"
        L0 "1 --device cpu --method deba --batch 32 --thresholds 'my runs/cnn_small/fashion-mnist/thresholds.csv' --cooldown 1 --label deba --out 'my runs' --resume\n"
        L0 "2 --device cpu --method deba --batch 32 --thresholds 'my runs/cnn_small/fashion-mnist/thresholds.csv' --cooldown 1 --label deba --out 'my runs' --resume\n");
    free(jobs);
    char *sb = slurp_in("out/study.sbatch");
    assert_contains(sb, "#!/bin/bash\n");
    /* no default array: each run phase gets its own range at submission (tests/test_slurm.c) */
    assert_true(strstr(sb, "#SBATCH --array") == NULL);
    assert_contains(sb, "line=$(sed -n \"${SLURM_ARRAY_TASK_ID}p\" out/jobs.txt)\n");
    assert_contains(sb, "a=$(sbatch --parsable --array=1-4 out/study.sbatch)");
    assert_contains(sb, "c=$(sbatch --parsable --dependency=afterany:$b --array=5-6 out/study.sbatch)");
    free(sb);
    char *prof = slurp_in("out/profiles.sh");
    assert_contains(prof, "\ndeba-profile --arch cnn_small --dataset fashion-mnist --data /data/fm --subset 100 --epochs 3 "
                          "--seeds 1,2 --device cpu --batch 32 --out 'my runs' --quiet\n");
    free(prof);
    char *out = slurp_in("out.txt");
    assert_contains(out, "wrote out/jobs.txt: 6 runs (lines 1-4 first; lines 5-6 need the thresholds out/profiles.sh writes)");
    free(out);
    /* Existing files are kept without --force. */
    assert_int_equal(profile("--plan study.ini --emit-jobs out/jobs.txt"), 2);
    assert_int_equal(profile("--plan study.ini --emit-jobs out/jobs.txt --force"), 0);

    /* The shipped plans parse; the paper's holds its whole study. */
    const char *src = getenv("DEBA_SRC");
    char p[4200];
    deba_err e;
    snprintf(p, sizeof p, "%s/data/studies/paper.ini", src && *src ? src : ".");
    deba_plan *plan = deba_plan_load(p, &e);
    if (!plan) fail_msg("%s", e.msg);
    /* fixed and deba: 6 archs x 2 datasets x 5 seeds; four ablations on CIFAR-10: 6 x 5 each */
    assert_int_equal(deba_plan_count(plan), 60 + 60 + 4 * 30);
    deba_plan_free(plan);
    snprintf(p, sizeof p, "%s/data/studies/demo.ini", src && *src ? src : ".");
    plan = deba_plan_load(p, &e);
    if (!plan) fail_msg("%s", e.msg);
    assert_int_equal(deba_plan_count(plan), 9);
    deba_plan_free(plan);
}

static void test_plan_run(void **state)
{
    (void)state;
    if (!have_fashion()) skip();
    free(tu_write(g_dir, "tiny.ini",
                  "[study]\narchs = cnn_small\ndatasets = fashion-mnist\nseeds = 5\nepochs = 2\nsubset = 32\n"
                  "test-subset = 16\ndevice = cpu\nout = runs\n"
                  "[condition fixed]\nmethod = fixed\n"
                  "[condition deba]\nmethod = deba\nthresholds = calibrate\ncooldown = 1\n"));
    assert_int_equal(profile("--plan tiny.ini --run --quiet"), 0);
    char *err = slurp_in("err.txt");
    assert_contains(err, "[1/2] cnn_small/fashion-mnist fixed seed 5: trained completed run");
    assert_contains(err, "[2/2] cnn_small/fashion-mnist deba seed 5: trained completed run");
    free(err);
    /* The deba run used the thresholds calibrated from the fixed run, by SPEC §4 from its trace:
     * with one seed and two epochs, the single epoch-2 values themselves. */
    char p[4300];
    deba_err e;
    deba_trace t = { 0 };
    snprintf(p, sizeof p, "%s/runs/cnn_small/fashion-mnist/fixed/seed5/trace.csv", g_dir);
    assert_int_equal(deba_trace_read(p, &t, &e), DEBA_OK);
    assert_int_equal(t.n, 2);
    deba_meta m = { 0 };
    snprintf(p, sizeof p, "%s/runs/cnn_small/fashion-mnist/deba/seed5/meta.csv", g_dir);
    assert_int_equal(deba_meta_read(p, &m, &e), DEBA_OK);
    double tau, theta, lambda;
    assert_int_equal(deba_meta_get_double(&m, p, "tau", &tau, &e), DEBA_OK);
    assert_int_equal(deba_meta_get_double(&m, p, "theta", &theta, &e), DEBA_OK);
    assert_int_equal(deba_meta_get_double(&m, p, "lambda", &lambda, &e), DEBA_OK);
    assert_float_equal(tau, t.rows[1].norm_var, 0);
    assert_float_equal(theta, t.rows[1].confidence, 0);
    assert_float_equal(lambda, t.rows[1].loss_var, 0);
    assert_string_equal(deba_meta_get(&m, "cooldown"), "1");
    assert_string_equal(deba_meta_get(&m, "status"), "completed");
    deba_meta_free(&m);
    deba_trace_free(&t);
    /* Again: nothing to train. */
    assert_int_equal(profile("--plan tiny.ini --run --quiet"), 0);
    err = slurp_in("err.txt");
    assert_contains(err, "[1/2] cnn_small/fashion-mnist fixed seed 5: reused completed run");
    assert_contains(err, "[2/2] cnn_small/fashion-mnist deba seed 5: reused completed run");
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_profile_by_hand, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_archetypes, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_resume_killed_profile, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_sweep, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_fake_clock, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_plan_errors, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_emit_jobs, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_plan_run, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
