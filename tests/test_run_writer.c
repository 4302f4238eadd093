/* The run writer (deba/run.h) against deba-train itself: the same per-epoch measurements fed
 * through the writer give a byte-identical trace.csv and the same meta.csv, and deba-calibrate
 * and deba-report produce the same outputs from either run; plus the epoch accumulator by hand,
 * refusals, bad values, divergence and resume. */
#include "tests/testutil.h"

#include <math.h>
#include "deba/deba.h"

static int run_cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_cmd(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return tu_run(cmd);
}

static const char *bindir(void)
{
    static char buf[4096];
    const char *bin = tu_bindir();
    char cwd[2048] = "";
    if (bin[0] != '/' && !getcwd(cwd, sizeof cwd)) return bin;
    snprintf(buf, sizeof buf, "%s%s%s", cwd, *cwd ? "/" : "", bin);
    return buf;
}

/* ---- the epoch accumulator, by hand ---- */

static void test_epochacc_by_hand(void **state)
{
    (void)state;
    deba_epochacc a;
    deba_epochacc_reset(&a);
    deba_err e;
    /* step 1: Σg 2, Σg² 10, d 4 -> var 10/4 - (2/4)² = 2.25, norm √10; loss 2 on 3 samples, 1 right */
    assert_int_equal(deba_epochacc_add(&a, 2, 10, 4, 6, 3, 1, &e), DEBA_OK);
    /* step 2: Σg 0, Σg² 4, d 4 -> var 1, norm 2; loss 2 on 1 sample, 1 right */
    assert_int_equal(deba_epochacc_add(&a, 0, 4, 4, 2, 1, 1, &e), DEBA_OK);
    deba_trace_row r = {0};
    assert_int_equal(deba_epochacc_fill(&a, &r, &e), DEBA_OK);
    assert_int_equal(r.steps, 2);
    assert_true(fabs(r.grad_var - 1.625) < 1e-15);
    assert_true(fabs(r.grad_norm - (sqrt(10.0) + 2) / 2) < 1e-15);
    assert_true(fabs(r.train_loss - 2.0) < 1e-15);   /* (6 + 2) / 4 samples */
    assert_true(fabs(r.train_acc - 50.0) < 1e-15);
    /* bad steps add nothing and name the argument */
    assert_int_equal(deba_epochacc_add(&a, 0, 1, 0, 1, 1, 0, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "numel"));
    assert_int_equal(deba_epochacc_add(&a, 0, 1, 4, 1, 2, 3, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "correct"));
    assert_int_equal(deba_epochacc_add(&a, 0, 1, 4, 1, 0, 0, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "samples"));
    assert_int_equal(a.grad.steps, 2);
    deba_epochacc_reset(&a);
    assert_int_equal(deba_epochacc_fill(&a, &r, &e), DEBA_E_INPUT);   /* an empty epoch */
}

/* ---- agreement with deba-train ---- */

/* Settings a run writer needs to write what deba-train wrote, from deba-train's meta.csv. */
static void config_from_meta(deba_run_config *c, const deba_meta *m, const char *out)
{
    deba_run_config_default(c);
    long v;
    double x;
    c->out = out;
    c->arch = deba_meta_get(m, "arch");
    c->dataset = deba_meta_get(m, "dataset");
    c->label = deba_meta_get(m, "label");
    c->sched.method = deba_method_parse(deba_meta_get(m, "method"));
#define I(k, dst) assert_int_equal(deba_meta_get_int(m, "meta", k, &v, NULL), DEBA_OK); dst = (int)v
#define D(k, dst) assert_int_equal(deba_meta_get_double(m, "meta", k, &x, NULL), DEBA_OK); dst = x
    I("seed", c->seed); I("epochs", c->epochs); I("batch0", c->sched.b0); I("bmin", c->sched.bmin);
    I("bmax", c->sched.bmax); I("window", c->sched.window); I("cooldown", c->sched.cooldown);
    I("image_size", c->image_size); I("subset", c->subset); I("test_subset", c->test_subset);
    D("lr", c->lr); D("momentum", c->momentum); D("weight_decay", c->weight_decay); D("tau", c->sched.tau);
    D("theta", c->sched.theta); D("lambda", c->sched.lambda); D("growth", c->sched.growth);
    D("rollback", c->sched.rollback);
#undef I
#undef D
    assert_int_equal(deba_meta_get_int(m, "meta", "params", &v, NULL), DEBA_OK);
    c->params = v;
    c->lr_scaling = deba_meta_get(m, "lr_scaling");
    c->device = deba_meta_get(m, "device");
    c->device_name = deba_meta_get(m, "device_name");
    c->precision = deba_meta_get(m, "precision");
    c->thresholds_source = deba_meta_get(m, "thresholds_source");
}

/* Writes through the run writer, under out_root, the run deba-train wrote in src: only the
 * measured columns of each row go in; the writer computes the rest. */
static void replicate(const char *src, const char *out_root)
{
    char p[4300];
    deba_meta m = {0};
    deba_trace t = {0};
    snprintf(p, sizeof p, "%s/meta.csv", src);
    assert_int_equal(deba_meta_read(p, &m, NULL), DEBA_OK);
    snprintf(p, sizeof p, "%s/trace.csv", src);
    assert_int_equal(deba_trace_read(p, &t, NULL), DEBA_OK);
    deba_run_config c;
    config_from_meta(&c, &m, out_root);
    deba_err e;
    deba_runwriter *w = deba_runwriter_open(&c, &e);
    if (!w) fail_msg("%s", e.msg);
    for (size_t i = 0; i < t.n; i++) {
        const deba_trace_row *s = &t.rows[i];
        deba_trace_row r = {
            .steps = s->steps, .lr = s->lr, .train_loss = s->train_loss, .train_acc = s->train_acc,
            .test_loss = s->test_loss, .test_acc = s->test_acc, .grad_var = s->grad_var, .grad_norm = s->grad_norm,
            .epoch_time_s = s->epoch_time_s, .compute_time_s = s->compute_time_s, .data_time_s = s->data_time_s,
            .signal_time_s = s->signal_time_s, .eval_time_s = s->eval_time_s, .samples_per_s = s->samples_per_s,
            .norm_var = -1, .loss_var = -1, .confidence = -1, .decision = DEBA_DEC_OOM,   /* must be overwritten */
        };
        int div = 1;
        if (deba_runwriter_append(w, &r, &div, &e)) fail_msg("%s", e.msg);
        assert_int_equal(div, 0);
    }
    assert_int_equal(deba_runwriter_close(w, NULL, NULL, &e), DEBA_OK);
    deba_runwriter_free(w);
    deba_meta_free(&m);
    deba_trace_free(&t);
}

static void assert_same_file(const char *a, const char *b)
{
    char *x = tu_slurp(a), *y = tu_slurp(b);
    if (!x || !y) fail_msg("cannot read %s or %s", a, b);
    if (strcmp(x, y)) fail_msg("%s and %s differ:\n%s\n----\n%s", a, b, x, y);
    free(x);
    free(y);
}

/* meta.csv: the same keys in the same order, the same values but for the two timestamps. */
static void assert_same_meta(const char *a, const char *b)
{
    deba_meta x = {0}, y = {0};
    assert_int_equal(deba_meta_read(a, &x, NULL), DEBA_OK);
    assert_int_equal(deba_meta_read(b, &y, NULL), DEBA_OK);
    assert_int_equal(x.n, y.n);
    for (size_t i = 0; i < x.n; i++) {
        assert_string_equal(x.kv[i].key, y.kv[i].key);
        if (strcmp(x.kv[i].key, "started_utc") && strcmp(x.kv[i].key, "finished_utc") &&
            strcmp(x.kv[i].value, y.kv[i].value))
            fail_msg("meta key %s: '%s' (deba-train) vs '%s' (writer)", x.kv[i].key, x.kv[i].value, y.kv[i].value);
    }
    deba_meta_free(&x);
    deba_meta_free(&y);
}

static void test_agrees_with_deba_train(void **state)
{
    (void)state;
    const char *bin = bindir();
    /* a DEBA run whose thresholds let it adapt inside four epochs, and the fixed baseline */
    assert_int_equal(run_cmd("cd '%s' && OMP_NUM_THREADS=2 '%s/deba-train' --arch cnn_small --dataset fashion-mnist "
                             "--subset 500 --test-subset 200 --epochs 4 --method deba --cooldown 1 --tau 0.3 --theta 0.6 "
                             "--lambda 0.5 --device cpu --seed 3 --out a/runs --quiet 2>err.txt",
                             g_dir, bin), 0);
    assert_int_equal(run_cmd("cd '%s' && OMP_NUM_THREADS=2 '%s/deba-train' --arch cnn_small --dataset fashion-mnist "
                             "--subset 500 --test-subset 200 --epochs 3 --method fixed --device cpu --seed 3 "
                             "--out a/runs --quiet 2>err.txt", g_dir, bin), 0);
    char src[4200], dst[4200], a[4300], b[4300];
    const char *labels[2] = {"deba", "fixed"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/a/runs/cnn_small/fashion-mnist/%s/seed3", g_dir, labels[i]);
        snprintf(dst, sizeof dst, "%s/b/runs", g_dir);
        replicate(src, dst);
        snprintf(dst, sizeof dst, "%s/b/runs/cnn_small/fashion-mnist/%s/seed3", g_dir, labels[i]);
        snprintf(a, sizeof a, "%s/trace.csv", src);
        snprintf(b, sizeof b, "%s/trace.csv", dst);
        assert_same_file(a, b);   /* every column, derived ones included, byte for byte */
        snprintf(a, sizeof a, "%s/meta.csv", src);
        snprintf(b, sizeof b, "%s/meta.csv", dst);
        assert_same_meta(a, b);
    }
    /* the DEBA run did adapt: the agreement covers a decision that changes B */
    snprintf(a, sizeof a, "%s/b/runs/cnn_small/fashion-mnist/deba/seed3/trace.csv", g_dir);
    char *tr = tu_slurp(a);
    assert_non_null(strstr(tr, ",increase,"));
    free(tr);
    /* the tools cannot tell the two roots apart: the same outputs from a/runs and b/runs */
    const char *roots[2] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(run_cmd("cd '%s/%s' && '%s/deba-calibrate' --quiet --out thr.csv runs", g_dir, roots[i], bin),
                         0);
        assert_int_equal(run_cmd("cd '%s/%s' && '%s/deba-report' --quiet --no-figures --format csv,md --out rep runs "
                                 ">/dev/null", g_dir, roots[i], bin), 0);
    }
    snprintf(a, sizeof a, "%s/a/thr.csv", g_dir);
    snprintf(b, sizeof b, "%s/b/thr.csv", g_dir);
    assert_same_file(a, b);
    tr = tu_slurp(a);
    assert_non_null(strstr(tr, "cnn_small,fashion-mnist,"));
    free(tr);
    assert_int_equal(run_cmd("cd '%s' && diff -r a/rep b/rep", g_dir), 0);
    assert_int_equal(run_cmd("cd '%s' && ls b/rep | grep -q .", g_dir), 0);
}

/* ---- refusals, bad values, divergence, resume ---- */

static void small_config(deba_run_config *c, const char *out)
{
    deba_run_config_default(c);
    c->out = out;
    c->arch = "net";
    c->dataset = "data";
    c->seed = 1;
    c->epochs = 4;
    c->sched.cooldown = 1;
}

/* Epoch t of a designed sequence: the gradient variance halves from epoch 2, so DEBA increases. */
static deba_trace_row epoch_row(int t)
{
    deba_trace_row r = {0};
    r.steps = 10;
    r.lr = 0.01;
    r.train_loss = 1.0 - 0.01 * t;
    r.train_acc = 50 + t;
    r.test_loss = 1.1 - 0.01 * t;
    r.test_acc = 40 + t;
    r.grad_var = t == 1 ? 1.0 : pow(0.5, t);
    r.grad_norm = 2.0;
    r.epoch_time_s = 1.5;
    r.samples_per_s = 100;
    return r;
}

static void write_rows(deba_runwriter *w, int from, int to)
{
    deba_err e;
    for (int t = from; t <= to; t++) {
        deba_trace_row r = epoch_row(t);
        if (deba_runwriter_append(w, &r, NULL, &e)) fail_msg("%s", e.msg);
    }
}

static void test_refuses_and_locks(void **state)
{
    (void)state;
    deba_run_config c;
    small_config(&c, g_dir);
    deba_err e;
    deba_runwriter *w = deba_runwriter_open(&c, &e);
    assert_non_null(w);
    deba_run_config f = c;
    f.force = 1;
    assert_null(deba_runwriter_open(&f, &e));   /* a live writer holds the directory */
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "in use by another run"));
    write_rows(w, 1, 1);
    assert_int_equal(deba_runwriter_close(w, NULL, NULL, &e), DEBA_OK);
    deba_runwriter_free(w);
    char meta[4300];
    snprintf(meta, sizeof meta, "%s/net/data/deba/seed1/meta.csv", g_dir);
    char *before = tu_slurp(meta);
    assert_non_null(strstr(before, "status,interrupted"));   /* 1 of 4 planned epochs */
    assert_null(deba_runwriter_open(&c, &e));
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "already holds a run: use resume to continue it or force to start over"));
    char *after = tu_slurp(meta);
    assert_string_equal(before, after);   /* a refusal touches nothing */
    free(before);
    free(after);
    w = deba_runwriter_open(&f, &e);   /* force starts over */
    assert_non_null(w);
    assert_int_equal(deba_runwriter_epochs(w), 0);
    deba_runwriter_free(w);
    /* config errors name the setting */
    deba_run_config b = c;
    b.arch = "a/b";
    assert_null(deba_runwriter_open(&b, &e));
    assert_non_null(strstr(e.msg, "arch 'a/b' cannot name a run directory"));
    b = c;
    b.sched.tau = -1;
    assert_null(deba_runwriter_open(&b, &e));
    assert_non_null(strstr(e.msg, "--tau"));
    b = c;
    b.lr_scaling = "cubic";
    assert_null(deba_runwriter_open(&b, &e));
    assert_non_null(strstr(e.msg, "lr_scaling"));
}

static void test_bad_row_and_divergence(void **state)
{
    (void)state;
    deba_run_config c;
    small_config(&c, g_dir);
    deba_err e;
    deba_runwriter *w = deba_runwriter_open(&c, &e);
    assert_non_null(w);
    write_rows(w, 1, 1);
    char trace[4300], meta[4300];
    snprintf(trace, sizeof trace, "%s/net/data/deba/seed1/trace.csv", g_dir);
    snprintf(meta, sizeof meta, "%s/net/data/deba/seed1/meta.csv", g_dir);
    char *before = tu_slurp(trace);
    deba_trace_row r = epoch_row(2);
    r.test_acc = 101;
    assert_int_equal(deba_runwriter_append(w, &r, NULL, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "test_acc 101 is out of range"));
    r = epoch_row(2);
    r.train_loss = -1;
    assert_int_equal(deba_runwriter_append(w, &r, NULL, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "train_loss"));
    char *after = tu_slurp(trace);
    assert_string_equal(before, after);
    free(after);
    assert_int_equal(deba_sched_epoch(deba_runwriter_sched(w)), 1);   /* not stepped either */
    r = epoch_row(2);
    r.train_loss = NAN;
    int div = 0;
    assert_int_equal(deba_runwriter_append(w, &r, &div, &e), DEBA_OK);
    assert_int_equal(div, 1);
    after = tu_slurp(trace);
    assert_string_equal(before, after);   /* deba-train writes no row for the diverged epoch */
    free(after);
    free(before);
    char *m = tu_slurp(meta);
    assert_non_null(strstr(m, "status,diverged"));
    free(m);
    r = epoch_row(3);
    assert_int_equal(deba_runwriter_append(w, &r, NULL, &e), DEBA_E_INPUT);
    assert_int_equal(deba_runwriter_close(w, NULL, NULL, &e), DEBA_OK);
    m = tu_slurp(meta);
    assert_non_null(strstr(m, "status,diverged"));
    free(m);
    deba_runwriter_free(w);
}

static void test_resume_ends_identical(void **state)
{
    (void)state;
    deba_run_config c;
    char ref_root[4200], trace[4300], ref_trace[4300];
    snprintf(ref_root, sizeof ref_root, "%s/ref", g_dir);
    small_config(&c, ref_root);
    deba_err e;
    deba_runwriter *w = deba_runwriter_open(&c, &e);   /* uninterrupted: four epochs */
    assert_non_null(w);
    write_rows(w, 1, 4);
    assert_int_equal(deba_runwriter_close(w, NULL, NULL, &e), DEBA_OK);
    deba_runwriter_free(w);
    snprintf(ref_trace, sizeof ref_trace, "%s/net/data/deba/seed1/trace.csv", ref_root);
    char *ref = tu_slurp(ref_trace);
    assert_non_null(strstr(ref, ",increase,"));

    small_config(&c, g_dir);
    w = deba_runwriter_open(&c, &e);
    write_rows(w, 1, 2);
    deba_runwriter_free(w);   /* killed: meta says running */
    snprintf(trace, sizeof trace, "%s/net/data/deba/seed1/trace.csv", g_dir);
    FILE *f = fopen(trace, "ab");
    fputs("3,64,10,0.01,0.9", f);   /* and a row torn mid-write */
    fclose(f);
    assert_null(deba_runwriter_open(&c, &e));   /* no resume: refused */
    deba_run_config r = c;
    r.resume = 1;
    r.sched.theta = 0.4;   /* other settings than the run's */
    assert_null(deba_runwriter_open(&r, &e));
    assert_non_null(strstr(e.msg, "the run was started with theta 0.5, not 0.4"));
    r.sched.theta = c.sched.theta;
    w = deba_runwriter_open(&r, &e);
    if (!w) fail_msg("%s", e.msg);
    assert_int_equal(deba_runwriter_epochs(w), 2);
    write_rows(w, 3, 4);
    assert_int_equal(deba_runwriter_close(w, NULL, NULL, &e), DEBA_OK);
    deba_runwriter_free(w);
    char *got = tu_slurp(trace);
    assert_string_equal(got, ref);   /* the replayed scheduler decided as the uninterrupted one */
    free(got);
    /* the caller's checkpoint is at epoch 1: keep one row and go on from there */
    r.keep_rows = 1;
    w = deba_runwriter_open(&r, &e);
    assert_non_null(w);
    assert_int_equal(deba_runwriter_epochs(w), 1);
    write_rows(w, 2, 4);
    deba_runwriter_free(w);
    got = tu_slurp(trace);
    assert_string_equal(got, ref);
    free(got);
    free(ref);
    /* a trace the settings cannot have produced is refused on resume */
    r.keep_rows = -1;
    r.sched.cooldown = 3;   /* meta says cooldown 1 */
    assert_null(deba_runwriter_open(&r, &e));
    assert_non_null(strstr(e.msg, "cooldown"));
}

static void test_sched_bytes(void **state)
{
    (void)state;
    deba_sched_config c;
    deba_sched_config_default(&c);
    deba_err e;
    deba_sched *s = deba_sched_new(&c, &e);
    deba_sched_step(s, 1, 2, 1, NULL);
    void *buf;
    size_t n;
    assert_int_equal(deba_sched_to_bytes(s, &buf, &n, &e), DEBA_OK);
    deba_sched *t = deba_sched_from_bytes(buf, n, &e);
    assert_non_null(t);
    assert_int_equal(deba_sched_epoch(t), 1);
    deba_sched_free(t);
    assert_null(deba_sched_from_bytes(buf, n - 1, &e));
    assert_int_equal(e.status, DEBA_E_INPUT);
    char *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 0;
    assert_null(deba_sched_from_bytes(longer, n + 1, &e));
    assert_non_null(strstr(e.msg, "more than one state"));
    free(longer);
    deba_free(buf);
    deba_sched_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epochacc_by_hand),
        cmocka_unit_test(test_sched_bytes),
        cmocka_unit_test_setup_teardown(test_refuses_and_locks, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_row_and_divergence, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_resume_ends_identical, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_agrees_with_deba_train, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
