/* deba-train end to end on real Fashion-MNIST (small subsets): determinism, resume after a
 * kill at the worst moment, divergence, and bad input answered with exit 2. */
#include "tests/testutil.h"

#include <math.h>
#include "deba/deba.h"
#include "trainer/backend/backend.h"
#include "trainer/checkpoint.h"
#include "trainer/models/models.h"

static char *tmp;
static const char *FMNIST = "/usr/share/datasets/fashion-mnist";

static int train(const char *out, const char *extra, const char *env)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s %s/deba-train --arch cnn_small --dataset fashion-mnist --subset 512 --test-subset 256 "
             "--epochs 3 --seed 7 --method deba --cooldown 1 --window 2 --device cpu --quiet --out %s %s "
             "2>%s/stderr.txt",
             env ? env : "", tu_bindir(), out, extra ? extra : "", tmp);
    return tu_run(cmd);
}

static void read_trace(const char *out, const char *label, deba_trace *t)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/cnn_small/fashion-mnist/%s/seed7/trace.csv", out, label);
    deba_err e = {0};
    assert_int_equal(deba_trace_read(p, t, &e), DEBA_OK);
}

/* Everything but the wall-clock columns must match bit for bit. */
static void assert_same_trace(const deba_trace *a, const deba_trace *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const deba_trace_row *x = &a->rows[i], *y = &b->rows[i];
        assert_int_equal(x->epoch, y->epoch);
        assert_int_equal(x->batch_size, y->batch_size);
        assert_int_equal(x->steps, y->steps);
        assert_true(x->train_loss == y->train_loss);
        assert_true(x->train_acc == y->train_acc);
        assert_true(x->test_loss == y->test_loss);
        assert_true(x->test_acc == y->test_acc);
        assert_true(x->grad_var == y->grad_var);
        assert_true(x->grad_norm == y->grad_norm);
        assert_true(x->confidence == y->confidence);
        assert_int_equal(x->decision, y->decision);
    }
}

/* Final weights, momentum and BN statistics from the two runs' checkpoints. */
static void load_state(const char *out, float **buf, int64_t *n)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/cnn_small/fashion-mnist/deba/seed7/checkpoint.bin", out);
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    tr_graph *g = tr_model_build("cnn_small", 1, 28, 10, &e);
    assert_non_null(g);
    assert_int_equal(tr_graph_alloc(g, be, 1, &e), DEBA_OK);
    deba_sched_config c;
    deba_sched_config_default(&c);
    deba_sched *s = deba_sched_new(&c, &e);
    deba_trace t = {0};
    tr_ckpt_info info;
    assert_int_equal(tr_ckpt_load(p, &info, g, &s, &t, &e), DEBA_OK);
    *n = 2 * g->n_params + g->n_stats;
    *buf = malloc((size_t)*n * sizeof(float));
    memcpy(*buf, g->params, (size_t)g->n_params * sizeof(float));
    memcpy(*buf + g->n_params, g->momentum, (size_t)g->n_params * sizeof(float));
    memcpy(*buf + 2 * g->n_params, g->stats, (size_t)g->n_stats * sizeof(float));
    assert_int_equal(info.epoch, 3);
    deba_trace_free(&t);
    deba_sched_free(s);
    tr_graph_free(g);
    tr_backend_free(be);
}

static void assert_same_weights(const char *a, const char *b)
{
    float *x, *y;
    int64_t nx, ny;
    load_state(a, &x, &nx);
    load_state(b, &y, &ny);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, (size_t)nx * sizeof(float));
    free(x);
    free(y);
}

static int skip_without_data(void)
{
    return !tu_exists(FMNIST);
}

static void test_determinism_and_columns(void **state)
{
    (void)state;
    if (skip_without_data()) skip();
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/det-a", tmp);
    snprintf(b, sizeof b, "%s/det-b", tmp);
    assert_int_equal(train(a, NULL, NULL), 0);
    assert_int_equal(train(b, NULL, NULL), 0);
    deba_trace ta = {0}, tb = {0};
    read_trace(a, "deba", &ta);   /* the reader requires every SPEC column */
    read_trace(b, "deba", &tb);
    assert_int_equal(ta.n, 3);
    assert_same_trace(&ta, &tb);
    /* a learning network: loss falls, test accuracy well above chance (10%) */
    assert_true(ta.rows[2].train_loss < ta.rows[0].train_loss);
    assert_true(ta.rows[2].test_acc > 50.0);
    /* epoch 1 has no previous epoch: its variations are 0 and confidence 1 (SPEC §2) */
    assert_true(ta.rows[0].norm_var == 0 && ta.rows[0].loss_var == 0 && ta.rows[0].confidence == 1);
    deba_trace_free(&ta);
    deba_trace_free(&tb);
    assert_same_weights(a, b);
    deba_meta m = {0};
    char p[4200];
    snprintf(p, sizeof p, "%s/cnn_small/fashion-mnist/deba/seed7/meta.csv", a);
    deba_err e = {0};
    assert_int_equal(deba_meta_read(p, &m, &e), DEBA_OK);
    assert_string_equal(deba_meta_get(&m, "status"), "completed");
    assert_string_equal(deba_meta_get(&m, "method"), "deba");
    deba_meta_free(&m);
    /* kernels.csv: per-op time table whose shares add up to 1 */
    snprintf(p, sizeof p, "%s/cnn_small/fashion-mnist/deba/seed7/kernels.csv", a);
    deba_table *kt;
    assert_int_equal(deba_table_read(p, &kt, &e), DEBA_OK);
    size_t col;
    assert_int_equal(deba_table_col(kt, "share", &col, &e), DEBA_OK);
    double share = 0, v;
    for (size_t i = 0; i < deba_table_nrows(kt); i++) {
        assert_int_equal(deba_table_double(kt, i, col, &v, &e), DEBA_OK);
        share += v;
    }
    assert_true(deba_table_nrows(kt) >= 5 && fabs(share - 1.0) < 1e-6);
    deba_table_free(kt);
}

static void test_resume_after_kill(void **state)
{
    (void)state;
    if (skip_without_data()) skip();
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/res-a", tmp);
    snprintf(b, sizeof b, "%s/res-b", tmp);
    assert_int_equal(train(a, NULL, NULL), 0);
    /* killed after epoch 2's checkpoint, before its trace row */
    assert_int_equal(train(b, NULL, "DEBA_FAULT_KILL_AFTER_EPOCH=2"), 137);
    deba_trace partial = {0};
    read_trace(b, "deba", &partial);
    assert_int_equal(partial.n, 1);
    deba_trace_free(&partial);
    assert_int_equal(train(b, NULL, NULL), 2);           /* exists: needs --resume or --force */
    assert_int_equal(train(b, "--resume", NULL), 0);
    deba_trace ta = {0}, tb = {0};
    read_trace(a, "deba", &ta);
    read_trace(b, "deba", &tb);
    assert_same_trace(&ta, &tb);
    deba_trace_free(&ta);
    deba_trace_free(&tb);
    assert_same_weights(a, b);
}

/* --resume continues a run with the settings it was started with; other settings, or fewer
 * epochs than it has done, are input errors that leave the run as it was. */
static void test_resume_other_settings(void **state)
{
    (void)state;
    if (skip_without_data()) skip();
    char a[4096], p[4200];
    snprintf(a, sizeof a, "%s/res-other", tmp);
    assert_int_equal(train(a, NULL, NULL), 0);
    snprintf(p, sizeof p, "%s/cnn_small/fashion-mnist/deba/seed7/meta.csv", a);
    deba_trace before = {0}, after = {0};
    read_trace(a, "deba", &before);
    assert_int_equal(train(a, "--resume --epochs 4 --lr 0.05", NULL), 2);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "grep -q 'started with --lr 0.01, not 0.05' %s/stderr.txt", tmp);
    assert_int_equal(tu_run(cmd), 0);
    assert_int_equal(train(a, "--resume --epochs 4 --cooldown 3", NULL), 2);
    assert_int_equal(train(a, "--resume --epochs 2", NULL), 2);   /* 3 epochs done */
    snprintf(cmd, sizeof cmd, "grep -q 'has 3 epochs done, more than --epochs 2' %s/stderr.txt", tmp);
    assert_int_equal(tu_run(cmd), 0);
    read_trace(a, "deba", &after);
    assert_same_trace(&before, &after);
    deba_meta m = {0};
    deba_err e = {0};
    assert_int_equal(deba_meta_read(p, &m, &e), DEBA_OK);
    assert_string_equal(deba_meta_get(&m, "epochs"), "3");
    assert_string_equal(deba_meta_get(&m, "lr"), "0.01");
    assert_string_equal(deba_meta_get(&m, "status"), "completed");
    deba_meta_free(&m);
    /* the same settings and more epochs: it continues */
    assert_int_equal(train(a, "--resume --epochs 4", NULL), 0);
    deba_trace_free(&after);
    read_trace(a, "deba", &after);
    assert_int_equal(after.n, 4);
    deba_trace_free(&before);
    deba_trace_free(&after);
}

static void test_divergence_keeps_trace(void **state)
{
    (void)state;
    if (skip_without_data()) skip();
    char a[4096];
    snprintf(a, sizeof a, "%s/div", tmp);
    assert_int_equal(train(a, "--lr 1e12 --label huge-lr", NULL), 0);
    char p[4200];
    snprintf(p, sizeof p, "%s/cnn_small/fashion-mnist/huge-lr/seed7/meta.csv", a);
    deba_meta m = {0};
    deba_err e = {0};
    assert_int_equal(deba_meta_read(p, &m, &e), DEBA_OK);
    assert_string_equal(deba_meta_get(&m, "status"), "diverged");
    deba_meta_free(&m);
    deba_trace t = {0};
    read_trace(a, "huge-lr", &t);   /* still a valid trace file, with only finite rows */
    deba_trace_free(&t);
}

static void test_bad_input(void **state)
{
    (void)state;
    char a[4096], cmd[8192];
    snprintf(a, sizeof a, "%s/bad", tmp);
    assert_int_equal(train(a, "--no-such-option", NULL), 2);
    assert_int_equal(train(a, "--batch 0", NULL), 2);
    assert_int_equal(train(a, "--tau -1", NULL), 2);
    assert_int_equal(train(a, "--data /nonexistent/dir", NULL), 2);
    assert_int_equal(train(a, "--method sometimes", NULL), 2);
    assert_int_equal(train(a, "--device tpu", NULL), 2);
    /* SGD settings out of range, an empty label, contradictory options */
    assert_int_equal(train(a, "--lr -1", NULL), 2);
    assert_int_equal(train(a, "--lr 0", NULL), 2);
    assert_int_equal(train(a, "--momentum 1.5", NULL), 2);
    assert_int_equal(train(a, "--weight-decay -1", NULL), 2);
    assert_int_equal(train(a, "--label ''", NULL), 2);
    /* a label becomes a directory name: only [A-Za-z0-9._-] */
    assert_int_equal(train(a, "--label 'a b'", NULL), 2);
    snprintf(cmd, sizeof cmd, "grep -q -- \"--label: 'a b' must be 1-63 characters\" %s/stderr.txt", tmp);
    assert_int_equal(tu_run(cmd), 0);
    assert_int_equal(train(a, "--label '$(touch x)'", NULL), 2);
    assert_int_equal(train(a, "--resume --force", NULL), 2);
    /* a thresholds row with a bad value is blamed on the file, not on --tau */
    char *thn = tu_write(tmp, "thresholds_neg.csv", "arch,dataset,tau,theta,lambda,epochs_used,runs_used\n"
                                                    "cnn_small,fashion-mnist,-0.5,0.9,0.1,10,1\n");
    snprintf(cmd, sizeof cmd, "--thresholds %s", thn);
    assert_int_equal(train(a, cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "grep -q \"thresholds_neg.csv:2: column 'tau' (3): value out of range\" %s/stderr.txt",
             tmp);
    assert_int_equal(tu_run(cmd), 0);
    free(thn);
    /* a thresholds path too long for meta.csv: said before the run directory is touched (it used
     * to leave a run directory with a header-only trace and an empty error message) */
    char longdir[2048], seg[201];
    memset(seg, 'd', 200);
    seg[200] = '\0';
    snprintf(longdir, sizeof longdir, "%s/%s/%s/%s", tmp, seg, seg, seg);
    deba_err le = {0};
    assert_int_equal(deba_mkdirs(longdir, &le), DEBA_OK);
    char *thl = tu_write(longdir, "thresholds.csv", "arch,dataset,tau,theta,lambda,epochs_used,runs_used\n"
                                                    "cnn_small,fashion-mnist,0.5,0.9,0.1,10,1\n");
    snprintf(cmd, sizeof cmd, "--thresholds %s", thl);
    assert_int_equal(train(a, cmd, NULL), 2);
    snprintf(cmd, sizeof cmd, "grep -q 'thresholds: path longer than' %s/stderr.txt", tmp);
    assert_int_equal(tu_run(cmd), 0);
    free(thl);
    char *th = tu_write(tmp, "thresholds.csv", "arch,dataset,tau,theta,lambda,epochs_used,runs_used\n"
                                               "resnet18,cifar10,0.5,0.9,0.1,10,1\n");
    snprintf(cmd, sizeof cmd, "--thresholds %s", th);
    assert_int_equal(train(a, cmd, NULL), 2);   /* no row for cnn_small/fashion-mnist */
    snprintf(cmd, sizeof cmd, "grep -q 'cnn_small' %s/stderr.txt && grep -q 'thresholds.csv' %s/stderr.txt", tmp, tmp);
    assert_int_equal(tu_run(cmd), 0);
    free(th);
    snprintf(cmd, sizeof cmd, "%s/deba-train --arch densenet121 --dataset fashion-mnist --summary >/dev/null 2>%s/e.txt",
             tu_bindir(), tmp);
    assert_int_equal(tu_run(cmd), 2);           /* 28x28 is too small for DenseNet-121 */
    snprintf(cmd, sizeof cmd, "grep -q -- '--image-size' %s/e.txt", tmp);
    assert_int_equal(tu_run(cmd), 0);
    assert_false(tu_exists(a));                 /* nothing written for rejected runs */
}

static void test_summary_params(void **state)
{
    (void)state;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/deba-train --arch resnet18 --num-classes 10 --summary | tail -n 1 | grep -qx 'params 11181642'",
             tu_bindir());
    assert_int_equal(tu_run(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    tmp = tu_mkdtemp();
    return tmp ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism_and_columns),
        cmocka_unit_test(test_resume_after_kill),
        cmocka_unit_test(test_resume_other_settings),
        cmocka_unit_test(test_divergence_keeps_trace),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_summary_params),
    };
    return cmocka_run_group_tests_name("train", tests, setup, teardown);
}
