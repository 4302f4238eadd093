/* Kernel timing on the CPU backend, which records its own per-op times (backend/cpu/
 * cpu_timing.c) and the profiler reads (profiler/kernels.h): per-op rows, epoch sums that match
 * the rows, kernels.csv sorted with shares that add up to 1, the table restored afterwards, one
 * timer per backend but several backends at once, and the dispatchers' answers for a backend
 * without timing entries. The CUPTI path runs in tests/bench_gpu.c on a GPU machine. */
#include "tests/testutil.h"

#include <math.h>
#include "deba/csv.h"
#include "profiler/kernels.h"
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/models/models.h"

static void steps(tr_graph *g, int k)
{
    static float x[4 * 3 * 32 * 32];
    int y[4] = {1, 2, 3, 4};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)((i * 7919) % 101) / 50.f - 1.f;
    for (int s = 0; s < k; s++) {
        double loss, sum, sumsq;
        int64_t correct;
        tr_graph_set_batch(g, x, y, 4);
        tr_graph_forward(g, 4);
        tr_graph_loss(g, 4, &loss, &correct);
        tr_graph_zero_grads(g);
        tr_graph_backward(g, 4);
        g->be->grad_moments(g->be, g->grads, g->n_params, &sum, &sumsq);
        tr_graph_sgd(g, 0.01f, 0.9f, 5e-4f);
    }
}

static void test_cpu_rows_and_csv(void **state)
{
    (void)state;
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    assert_non_null(be);
    tr_op_fn conv_fwd = be->forward[TR_OP_CONV2D];
    void *sgd = (void *)be->sgd;
    tr_graph *g = tr_model_build("cnn_small", 3, 32, 10, &e);
    assert_non_null(g);
    assert_int_equal(tr_graph_alloc(g, be, 1, &e), DEBA_OK);
    assert_int_equal(tr_graph_plan(g, 4, &e), DEBA_OK);

    tr_kprof *kp = tr_kprof_new(be, &e);
    assert_non_null(kp);
    assert_int_equal(tr_kprof_uses_cupti(kp), 0);
    assert_true(be->forward[TR_OP_CONV2D] != conv_fwd);
    assert_null(be->forward[TR_OP_VIEW]);                /* a missing op stays missing */
    deba_err e2 = {0};
    assert_null(tr_kprof_new(be, &e2));                  /* one at a time */
    assert_int_equal(e2.status, DEBA_E_RUNTIME);

    steps(g, 1);                                         /* outside an epoch: not counted */
    tr_kprof_epoch_begin(kp);
    steps(g, 2);
    double s = tr_kprof_epoch_end(kp);
    assert_true(s > 0);

    char *dir = tu_mkdtemp();
    char path[4200];
    snprintf(path, sizeof path, "%s/kernels.csv", dir);
    assert_int_equal(tr_kprof_write_csv(kp, path, &e), DEBA_OK);
    deba_table *t = NULL;
    assert_int_equal(deba_table_read(path, &t, &e), DEBA_OK);
    size_t cn, cc, ct, cs;
    assert_int_equal(deba_table_col(t, "name", &cn, &e), DEBA_OK);
    assert_int_equal(deba_table_col(t, "calls", &cc, &e), DEBA_OK);
    assert_int_equal(deba_table_col(t, "total_s", &ct, &e), DEBA_OK);
    assert_int_equal(deba_table_col(t, "share", &cs, &e), DEBA_OK);
    double total = 0, share = 0, prev = INFINITY;
    int saw_conv = 0, saw_sgd = 0;
    for (size_t r = 0; r < deba_table_nrows(t); r++) {
        double v, sh;
        long calls;
        assert_int_equal(deba_table_double(t, r, ct, &v, &e), DEBA_OK);
        assert_int_equal(deba_table_double(t, r, cs, &sh, &e), DEBA_OK);
        assert_int_equal(deba_table_int(t, r, cc, &calls, &e), DEBA_OK);
        assert_true(v <= prev);                          /* sorted by total time */
        prev = v;
        total += v;
        share += sh;
        const char *name = deba_table_str(t, r, cn);
        if (!strcmp(name, "conv2d.forward")) saw_conv = 1;
        if (!strcmp(name, "sgd")) {
            saw_sgd = 1;
            assert_int_equal(calls, 2);                  /* the two steps inside the epoch */
        }
    }
    assert_true(saw_conv && saw_sgd);
    assert_true(fabs(total - s) <= 1e-9 * (1 + s));     /* the epoch is the sum of the rows */
    assert_true(fabs(share - 1.0) < 1e-9);
    deba_table_free(t);
    tu_rmtree(dir);

    tr_kprof_free(kp);
    assert_true(be->forward[TR_OP_CONV2D] == conv_fwd);  /* table restored */
    assert_true((void *)be->sgd == sgd);
    kp = tr_kprof_new(be, &e);                           /* and a new one may start */
    assert_non_null(kp);
    tr_kprof_free(kp);
    tr_kprof_free(NULL);
    tr_graph_free(g);
    tr_backend_free(be);
}

static void count_rows(void *arg, const char *name, uint64_t calls, double total_s)
{
    (void)name, (void)calls, (void)total_s;
    (*(int *)arg)++;
}

/* Sums the calls of one row. */
typedef struct {
    const char *name;
    uint64_t calls;
} find_row;

static void find(void *arg, const char *name, uint64_t calls, double total_s)
{
    (void)total_s;
    find_row *f = arg;
    if (!strcmp(name, f->name)) f->calls += calls;
}

/* Two CPU backends time themselves at once (no process-wide state): each sees only its own
 * steps. Freeing a backend with timing on stops it. */
static void test_two_backends(void **state)
{
    (void)state;
    deba_err e = {0};
    tr_backend *a = tr_backend_cpu_new(&e), *b = tr_backend_cpu_new(&e);
    assert_non_null(a);
    assert_non_null(b);
    tr_graph *ga = tr_model_build("cnn_small", 3, 32, 10, &e), *gb = tr_model_build("cnn_small", 3, 32, 10, &e);
    assert_int_equal(tr_graph_alloc(ga, a, 1, &e), DEBA_OK);
    assert_int_equal(tr_graph_plan(ga, 4, &e), DEBA_OK);
    assert_int_equal(tr_graph_alloc(gb, b, 1, &e), DEBA_OK);
    assert_int_equal(tr_graph_plan(gb, 4, &e), DEBA_OK);
    assert_int_equal(tr_backend_timing_start(a, &e), DEBA_OK);
    assert_int_equal(tr_backend_timing_start(b, &e), DEBA_OK);
    assert_int_equal(tr_backend_timing_start(a, &e), DEBA_E_RUNTIME);   /* one timer per backend */
    assert_int_equal(tr_backend_timing_on_device(a), 0);
    tr_backend_timing_epoch_begin(a);
    tr_backend_timing_epoch_begin(b);
    steps(ga, 1);
    steps(gb, 3);
    assert_true(tr_backend_timing_epoch_end(a) > 0);
    assert_true(tr_backend_timing_epoch_end(b) > 0);
    find_row fa = {"sgd", 0}, fb = {"sgd", 0};
    assert_int_equal(tr_backend_timing_read(a, find, &fa), 0);
    assert_int_equal(tr_backend_timing_read(b, find, &fb), 0);
    assert_int_equal(fa.calls, 1);
    assert_int_equal(fb.calls, 3);
    tr_graph_free(ga);
    tr_graph_free(gb);
    tr_backend_free(a);   /* timing still on: stopped and freed with the backend */
    tr_backend_free(b);
}

/* A backend whose table has no timing entries: the dispatchers start nothing and report
 * nothing, kernels.csv is the header alone, and the profiler says it cannot time it. */
static void test_backend_without_timing(void **state)
{
    (void)state;
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    assert_non_null(be);
    tr_backend plain = *be;   /* the same table without the timing entries */
    plain.timing_start = NULL;
    plain.timing_epoch_begin = NULL;
    plain.timing_epoch_end = NULL;
    plain.timing_read = NULL;
    plain.timing_stop = NULL;
    assert_int_equal(tr_backend_timing_start(&plain, &e), DEBA_OK);
    tr_backend_timing_epoch_begin(&plain);
    assert_true(tr_backend_timing_epoch_end(&plain) == 0.0);
    int rows = 0;
    assert_int_equal(tr_backend_timing_read(&plain, count_rows, &rows), 0);
    assert_int_equal(rows, 0);
    char *dir = tu_mkdtemp();
    assert_non_null(dir);
    if (!dir) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/kernels.csv", dir);
    assert_int_equal(tr_backend_timing_write_csv(&plain, path, &e), DEBA_OK);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[256];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, "name,calls,total_s,mean_us,share\n");
    tu_rmtree(dir);
    deba_err e2 = {0};
    assert_null(tr_kprof_new(&plain, &e2));
    assert_int_equal(e2.status, DEBA_E_UNSUPPORTED);
    tr_backend_timing_stop(&plain);
    tr_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_rows_and_csv),
        cmocka_unit_test(test_two_backends),
        cmocka_unit_test(test_backend_without_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
