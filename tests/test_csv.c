/* The CSV layer and the run files of SPEC §7: exact round trips of every file kind, tolerant
 * reading (extra and reordered columns, CRLF, BOM, quoted newlines) and a table of malformed
 * inputs that must each fail with DEBA_E_INPUT naming file, line and column. */
#include "tests/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <float.h>
#include <math.h>

#include "deba/deba.h"
#include "deba/runlock.h"

static char *path_in(const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", g_dir, name);
    return p;
}

/* Files in g_dir whose name contains `part`. */
static int count_files_with(const char *part)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, part)) n++;
    closedir(d);
    return n;
}

/* Doubles that a careless writer would not bring back bit for bit. */
static const double awkward[] = {
    0.1, 1.0 / 3.0, 2.0 / 3.0, 1e-300, 5e-324, DBL_MAX, -0.1 - 0.2, 123456789.123456789,
    6.02214076e23, 0.30000000000000004, 1e-8, 100.0, 0.0, -2.5e-7, 0.7, 97.123456789012345,
};
#define NAWK (sizeof awkward / sizeof awkward[0])

/* The i-th awkward value, as a magnitude (no column takes a negative number) no larger than hi:
 * readers refuse values outside a column's range, so round trips use values inside it. */
static double awk_max(size_t i, double hi)
{
    for (size_t k = 0;; k++) {
        double v = fabs(awkward[(i + k) % NAWK]);
        if (v <= hi) return v;
    }
}
static double awk(size_t i) { return awk_max(i, DBL_MAX); }
static double pct(size_t i) { return awk_max(i, 100.0); }
static double unit(size_t i) { return awk_max(i, 1.0); }

static deba_trace_row trace_row(int i)
{
    deba_trace_row r = {
        .epoch = i + 1, .batch_size = 64 + 32 * i, .steps = 781 - i,
        .lr = awk(i), .train_loss = awk(i + 1), .train_acc = pct(i + 2), .test_loss = awk(i + 3),
        .test_acc = pct(i + 4), .grad_var = awk(i + 5), .grad_norm = awk(i + 6), .norm_var = awk(i + 7),
        .loss_var = awk(i + 8), .confidence = awk(i + 9), .decision = (deba_decision)(i % DEBA_DECISION_COUNT),
        .epoch_time_s = awk(i + 10), .compute_time_s = awk(i + 11), .data_time_s = awk(i + 12),
        .signal_time_s = awk(i + 13), .eval_time_s = awk(i + 14), .samples_per_s = awk(i + 15),
    };
    return r;
}

static void assert_trace_row_equal(const deba_trace_row *a, const deba_trace_row *b)
{
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->batch_size, b->batch_size);
    assert_int_equal(a->steps, b->steps);
    assert_int_equal(a->decision, b->decision);
    const double *x = &a->lr, *y = &b->lr;   /* lr .. confidence are contiguous doubles */
    for (int k = 0; k < 9; k++) assert_true(x[k] == y[k]);
    x = &a->epoch_time_s;
    y = &b->epoch_time_s;
    for (int k = 0; k < 6; k++) assert_true(x[k] == y[k]);
}

/* ---- round trips ---- */

static void test_trace_round_trip(void **state)
{
    (void)state;
    deba_err e;
    deba_trace t = { 0 }, back;
    for (int i = 0; i < 23; i++) {
        deba_trace_row r = trace_row(i);
        assert_int_equal(deba_trace_push(&t, &r, &e), DEBA_OK);
    }
    char *p = path_in("trace.csv");
    assert_int_equal(deba_trace_write(p, &t, &e), DEBA_OK);
    assert_int_equal(deba_trace_read(p, &back, &e), DEBA_OK);
    assert_int_equal(back.n, t.n);
    for (size_t i = 0; i < t.n; i++) assert_trace_row_equal(&t.rows[i], &back.rows[i]);

    /* The header is exactly the SPEC's line, and decisions are written by name. */
    char *text = tu_slurp(p);
    size_t hl = strlen(DEBA_TRACE_HEADER);
    assert_memory_equal(text, DEBA_TRACE_HEADER, hl);
    assert_int_equal(text[hl], '\n');
    assert_string_equal(DEBA_TRACE_HEADER,
                        "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm,"
                        "norm_var,loss_var,confidence,decision,epoch_time_s,compute_time_s,data_time_s,"
                        "signal_time_s,eval_time_s,samples_per_s");
    assert_non_null(strstr(text, ",increase,"));
    assert_non_null(strstr(text, ",rollback,"));
    assert_int_equal(count_files_with(".tmp."), 0);
    free(text);
    free(p);
    deba_trace_free(&t);
    deba_trace_free(&back);
    assert_null(back.rows);
}

static void test_trace_append(void **state)
{
    (void)state;
    deba_err e;
    char *p = path_in("append.csv");
    FILE *f;
    assert_int_equal(deba_trace_append_open(p, &f, &e), DEBA_OK);
    for (int i = 0; i < 3; i++) {
        deba_trace_row r = trace_row(i);
        assert_int_equal(deba_trace_append_row(f, p, &r, &e), DEBA_OK);
    }
    fclose(f);
    /* Reopening (a resumed run) appends after the existing rows without a second header. */
    assert_int_equal(deba_trace_append_open(p, &f, &e), DEBA_OK);
    deba_trace_row r = trace_row(3);
    assert_int_equal(deba_trace_append_row(f, p, &r, &e), DEBA_OK);
    /* A non-finite value is refused and nothing is written. */
    r = trace_row(4);
    r.train_loss = NAN;
    assert_int_equal(deba_trace_append_row(f, p, &r, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "train_loss"));
    fclose(f);
    deba_trace back;
    assert_int_equal(deba_trace_read(p, &back, &e), DEBA_OK);
    assert_int_equal(back.n, 4);
    for (int i = 0; i < 4; i++) {
        deba_trace_row want = trace_row(i);
        assert_trace_row_equal(&want, &back.rows[i]);
    }
    deba_trace_free(&back);
    free(p);
}

static void test_meta_round_trip(void **state)
{
    (void)state;
    deba_err e;
    deba_meta m = { 0 }, back;
    /* Set out of order, an extra key first: the file must list SPEC keys in SPEC order, then extras. */
    assert_int_equal(deba_meta_set(&m, "zz_extra", "%s", "hello"), DEBA_OK);
    assert_int_equal(deba_meta_set(&m, "status", "%s", "running"), DEBA_OK);
    assert_int_equal(deba_meta_set(&m, "arch", "%s", "resnet18"), DEBA_OK);
    assert_int_equal(deba_meta_set(&m, "lr", "%.17g", 0.1), DEBA_OK);
    assert_int_equal(deba_meta_set(&m, "device_name", "%s", "NVIDIA H200, 141 GB \"HBM3e\""), DEBA_OK);
    assert_int_equal(deba_meta_set(&m, "seed", "%d", 7), DEBA_OK);
    assert_int_equal(deba_meta_set(&m, "status", "%s", "completed"), DEBA_OK);   /* replaces */
    assert_int_equal(m.n, 6);
    char *p = path_in("meta.csv");
    assert_int_equal(deba_meta_write(p, &m, &e), DEBA_OK);
    char *text = tu_slurp(p);
    assert_string_equal(text, "key,value\n"
                              "arch,resnet18\n"
                              "seed,7\n"
                              "lr,0.10000000000000001\n"
                              "device_name,\"NVIDIA H200, 141 GB \"\"HBM3e\"\"\"\n"
                              "status,completed\n"
                              "zz_extra,hello\n");
    free(text);
    assert_int_equal(deba_meta_read(p, &back, &e), DEBA_OK);
    assert_int_equal(back.n, 6);
    assert_string_equal(deba_meta_get(&back, "device_name"), "NVIDIA H200, 141 GB \"HBM3e\"");
    assert_string_equal(deba_meta_get(&back, "zz_extra"), "hello");
    assert_null(deba_meta_get(&back, "tau"));
    double lr;
    long seed;
    assert_int_equal(deba_meta_get_double(&back, p, "lr", &lr, &e), DEBA_OK);
    assert_true(lr == 0.1);
    assert_int_equal(deba_meta_get_int(&back, p, "seed", &seed, &e), DEBA_OK);
    assert_int_equal(seed, 7);
    assert_int_equal(deba_meta_get_int(&back, p, "arch", &seed, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "arch"));
    /* The SPEC list itself. */
    assert_int_equal(DEBA_META_NKEYS, 31);
    assert_string_equal(DEBA_META_KEYS[0], "format_version");
    assert_string_equal(DEBA_META_KEYS[DEBA_META_NKEYS - 1], "total_train_time_s");
    deba_meta_free(&m);
    deba_meta_free(&back);
    deba_meta_free(NULL);
    free(p);
}

static void test_small_files_round_trip(void **state)
{
    (void)state;
    deba_err e;
    enum { N = 5 };
    deba_profile_row prof[N];
    deba_summary_row sum[N];
    deba_thresholds_row thr[N];
    deba_sweep_row sw[N];
    memset(prof, 0, sizeof prof);
    memset(sum, 0, sizeof sum);
    memset(thr, 0, sizeof thr);
    memset(sw, 0, sizeof sw);
    for (int i = 0; i < N; i++) {
        /* Names with a comma and a quote must survive too. */
        snprintf(prof[i].arch, DEBA_NAME_MAX, i == 2 ? "odd,\"arch\"%d" : "arch%d", i);
        snprintf(prof[i].dataset, DEBA_NAME_MAX, "data set %d", i);
        prof[i].seed = i * 1000 + 3;
        prof[i].epochs = 30 + i;
        prof[i].S = unit(i);
        prof[i].cv_grad_var = awk(i + 1);
        prof[i].mean_norm_var = awk(i + 2);
        prof[i].mean_loss_var = awk(i + 3);
        prof[i].final_test_acc = pct(i + 4);
        memcpy(sum[i].arch, prof[i].arch, DEBA_NAME_MAX);
        memcpy(sum[i].dataset, prof[i].dataset, DEBA_NAME_MAX);
        sum[i].seeds = i + 1;
        sum[i].S_mean = unit(i + 5);
        sum[i].S_std = awk(i + 6);
        sum[i].archetype = (deba_archetype)(i % DEBA_ARCHETYPE_COUNT);
        memcpy(thr[i].arch, prof[i].arch, DEBA_NAME_MAX);
        memcpy(thr[i].dataset, prof[i].dataset, DEBA_NAME_MAX);
        thr[i].tau = awk(i + 7);
        thr[i].theta = awk(i + 8) > 0 ? awk(i + 8) : 0.5;
        thr[i].lambda = awk(i + 9);
        thr[i].epochs_used = 100 + i;
        thr[i].runs_used = 3;
        memcpy(sw[i].arch, prof[i].arch, DEBA_NAME_MAX);
        memcpy(sw[i].dataset, prof[i].dataset, DEBA_NAME_MAX);
        sw[i].batch_size = 32 << i;
        sw[i].steps = 1563 >> i;
        sw[i].samples_per_s = awk(i + 10);
        sw[i].epoch_time_s = awk(i + 11);
        sw[i].grad_var = awk(i + 12);
        sw[i].compute_util = awk(i + 13);
    }
    char *pp = path_in("profile.csv"), *ps = path_in("profile_summary.csv"), *pt = path_in("thresholds.csv"),
         *pw = path_in("sweep.csv");
    assert_int_equal(deba_profile_write(pp, prof, N, &e), DEBA_OK);
    assert_int_equal(deba_summary_write(ps, sum, N, &e), DEBA_OK);
    assert_int_equal(deba_thresholds_write(pt, thr, N, &e), DEBA_OK);
    assert_int_equal(deba_sweep_write(pw, sw, N, &e), DEBA_OK);

    deba_profile_row *bp;
    deba_summary_row *bs;
    deba_thresholds_row *bt;
    deba_sweep_row *bw;
    size_t n;
    assert_int_equal(deba_profile_read(pp, &bp, &n, &e), DEBA_OK);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(bp[i].arch, prof[i].arch);
        assert_string_equal(bp[i].dataset, prof[i].dataset);
        assert_int_equal(bp[i].seed, prof[i].seed);
        assert_int_equal(bp[i].epochs, prof[i].epochs);
        assert_true(bp[i].S == prof[i].S && bp[i].cv_grad_var == prof[i].cv_grad_var &&
                    bp[i].mean_norm_var == prof[i].mean_norm_var && bp[i].mean_loss_var == prof[i].mean_loss_var &&
                    bp[i].final_test_acc == prof[i].final_test_acc);
    }
    assert_int_equal(deba_summary_read(ps, &bs, &n, &e), DEBA_OK);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(bs[i].arch, sum[i].arch);
        assert_string_equal(bs[i].dataset, sum[i].dataset);
        assert_int_equal(bs[i].seeds, sum[i].seeds);
        assert_true(bs[i].S_mean == sum[i].S_mean && bs[i].S_std == sum[i].S_std);
        assert_int_equal(bs[i].archetype, sum[i].archetype);
    }
    assert_int_equal(deba_thresholds_read(pt, &bt, &n, &e), DEBA_OK);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(bt[i].arch, thr[i].arch);
        assert_string_equal(bt[i].dataset, thr[i].dataset);
        assert_true(bt[i].tau == thr[i].tau && bt[i].theta == thr[i].theta && bt[i].lambda == thr[i].lambda);
        assert_int_equal(bt[i].epochs_used, thr[i].epochs_used);
        assert_int_equal(bt[i].runs_used, thr[i].runs_used);
    }
    const deba_thresholds_row *hit;
    assert_int_equal(deba_thresholds_find(bt, n, pt, "arch3", "data set 3", &hit, &e), DEBA_OK);
    assert_ptr_equal(hit, &bt[3]);
    assert_int_equal(deba_sweep_read(pw, &bw, &n, &e), DEBA_OK);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(bw[i].arch, sw[i].arch);
        assert_int_equal(bw[i].batch_size, sw[i].batch_size);
        assert_int_equal(bw[i].steps, sw[i].steps);
        assert_true(bw[i].samples_per_s == sw[i].samples_per_s && bw[i].epoch_time_s == sw[i].epoch_time_s &&
                    bw[i].grad_var == sw[i].grad_var && bw[i].compute_util == sw[i].compute_util);
    }
    /* Header lines as SPEC §7 spells them. */
    char *text = tu_slurp(pt);
    assert_memory_equal(text, "arch,dataset,tau,theta,lambda,epochs_used,runs_used\n", 52);
    free(text);
    text = tu_slurp(ps);
    /* SPEC §7's columns first; deba-profile's verdict columns follow (docs/formats.md) */
    assert_memory_equal(text, "arch,dataset,seeds,S_mean,S_std,archetype,", 42);
    assert_non_null(strstr(text, ",Naturally Unstable,"));
    free(text);
    free(bp); free(bs); free(bt); free(bw);
    free(pp); free(ps); free(pt); free(pw);
}

static void test_csv_double_shortest(void **state)
{
    (void)state;
    struct { double v; const char *want; } cases[] = {
        { 0.1, "0.1" }, { 0.1 + 0.2, "0.30000000000000004" }, { 1.0 / 3.0, "0.3333333333333333" },
        { 100.0, "100" }, { 1e-8, "1e-08" }, { 5e-324, "4.94065645841247e-324" } /* the smallest denormal: 15 digits already round-trip */, { 0.0, "0" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        deba_csv_double(m, cases[i].v);
        fclose(m);
        assert_string_equal(buf, cases[i].want);
        free(buf);
    }
}

/* Readers find columns by name: extra columns, any order, CRLF, a BOM and quoted newlines. */
static void test_tolerant_reading(void **state)
{
    (void)state;
    deba_err e;
    char *p = tu_write(g_dir, "thr_reordered.csv",
                       "\xEF\xBB\xBFnote,runs_used,lambda,dataset,arch,theta,epochs_used,tau\r\n"
                       "\"two\r\nlines\",2,0.1,cifar10,resnet18,0.5,40,0.25\r\n"
                       "x,1,0.125,mnist,\"cnn,small\",2,9,1e-3\r\n");
    deba_thresholds_row *rows;
    size_t n;
    assert_int_equal(deba_thresholds_read(p, &rows, &n, &e), DEBA_OK);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].arch, "resnet18");
    assert_true(rows[0].tau == 0.25 && rows[0].theta == 0.5 && rows[0].lambda == 0.1);
    assert_int_equal(rows[0].epochs_used, 40);
    assert_string_equal(rows[1].arch, "cnn,small");
    assert_true(rows[1].tau == 1e-3 && rows[1].theta == 2 && rows[1].lambda == 0.125);
    free(rows);

    /* Physical lines: the row with the quoted newline starts on line 2, the next on line 4. */
    deba_table *t;
    assert_int_equal(deba_table_read(p, &t, &e), DEBA_OK);
    assert_int_equal(deba_table_ncols(t), 8);
    assert_string_equal(deba_table_header(t, 0), "note");
    assert_int_equal(deba_table_line(t, 0), 2);
    assert_int_equal(deba_table_line(t, 1), 4);
    assert_string_equal(deba_table_str(t, 0, 0), "two\r\nlines");
    assert_string_equal(deba_table_str(t, 1, 7), "1e-3");
    deba_table_free(t);
    deba_table_free(NULL);
    free(p);

    /* Header only: a table with no rows, not an error; a trace with no epochs yet, likewise. */
    p = tu_write(g_dir, "trace_empty.csv", "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,"
                 "grad_var,grad_norm,norm_var,loss_var,confidence,decision,epoch_time_s,compute_time_s,"
                 "data_time_s,signal_time_s,eval_time_s,samples_per_s\n");
    assert_int_equal(deba_table_read(p, &t, &e), DEBA_OK);
    assert_int_equal(deba_table_nrows(t), 0);
    deba_table_free(t);
    deba_trace tr;
    assert_int_equal(deba_trace_read(p, &tr, &e), DEBA_OK);
    assert_int_equal(tr.n, 0);
    deba_trace_free(&tr);
    free(p);
}

/* ---- malformed inputs ---- */

typedef enum { RD_TABLE, RD_TRACE, RD_THRESH, RD_SUMMARY, RD_META } reader;

typedef struct {
    const char *name;     /* file name, also what the message must contain */
    reader rd;
    const char *text;     /* NULL: the file is not created */
    const char *want[3];  /* further fragments the message must contain */
} bad_case;

#define TH "arch,dataset,tau,theta,lambda,epochs_used,runs_used\n"
#define TRH "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm," \
            "norm_var,loss_var,confidence,decision,epoch_time_s,compute_time_s,data_time_s," \
            "signal_time_s,eval_time_s,samples_per_s\n"
#define TR1 "1,64,10,0.01,2.3,10,2.2,11,0.5,1.5,0,0,1,warmup,3,2.5,0.3,0.01,0.4,200\n"
#define TR2 "2,64,10,0.01,2.1,12,2.0,13,0.5,1.4,0.07,0.09,1,warmup,3,2.5,0.3,0.01,0.4,200\n"

static const bad_case bad_cases[] = {
    { "empty.csv", RD_TABLE, "", { "empty file" } },
    { "empty_trace.csv", RD_TRACE, "", { "empty file" } },
    { "missing_col.csv", RD_THRESH, "arch,dataset,tau,theta,epochs_used,runs_used\nr,c,1,2,3,4\n",
      { ":1:", "missing column 'lambda'" } },
    { "ragged_long.csv", RD_THRESH, TH "r,c,1,2,3,4,5\nr,c,1,2,3,4,5,6\n", { ":3:", "ragged", "8 fields" } },
    { "ragged_short.csv", RD_TABLE, "a,b,c\n1,2,3\n\n4,5\n", { ":4:", "ragged", "2 fields" } },
    { "not_number.csv", RD_THRESH, TH "r,c,abc,2,3,4,5\n", { ":2: column 'tau' (3): not a number: 'abc'" } },
    { "nan.csv", RD_THRESH, TH "r,c,1,nan,3,4,5\n", { ":2:", "column 'theta' (4)", "'nan'" } },
    { "inf.csv", RD_THRESH, TH "r,c,1,2,inf,4,5\n", { ":2:", "column 'lambda' (5)", "not a finite number" } },
    { "neg_inf.csv", RD_THRESH, TH "r,c,1,2,3,4,5\nr,c,-Infinity,2,3,4,5\n", { ":3:", "column 'tau'" } },
    { "overflow.csv", RD_THRESH, TH "r,c,1e999,2,3,4,5\n", { ":2:", "column 'tau'", "not a finite" } },
    { "empty_cell.csv", RD_THRESH, TH "r,c,1,,3,4,5\n", { ":2:", "column 'theta' (4)", "empty cell" } },
    { "junk.csv", RD_THRESH, TH "r,c,1.5x,2,3,4,5\n", { ":2:", "column 'tau'", "'1.5x'" } },
    { "junk_int.csv", RD_THRESH, TH "r,c,1,2,3,4.5,5\n", { ":2:", "column 'epochs_used' (6)", "not an integer" } },
    { "int_range.csv", RD_THRESH, TH "r,c,1,2,3,99999999999,5\n", { ":2:", "column 'epochs_used'", "out of range" } },
    { "empty_name.csv", RD_THRESH, TH "r,,1,2,3,4,5\n", { ":2:", "column 'dataset' (2)" } },
    { "bad_decision.csv", RD_TRACE, TRH TR1 "2,64,10,0.01,2.3,10,2.2,11,0.5,1.5,0,0,1,grow,3,2.5,0.3,0.01,0.4,200\n",
      { ":3:", "column 'decision' (14)", "unknown decision: 'grow'" } },
    { "trace_nan.csv", RD_TRACE, TRH TR1 TR2 "3,64,10,0.01,NaN,10,2.2,11,0.5,1.5,0,0,1,hold,3,2.5,0.3,0.01,0.4,200\n",
      { ":4:", "column 'train_loss' (5)" } },
    /* one row per epoch from 1, in order (a concatenated or hand-edited trace) */
    { "trace_dup_epoch.csv", RD_TRACE, TRH TR1 TR2 TR2, { ":4:", "column 'epoch'", "expected epoch 3" } },
    { "trace_gap.csv", RD_TRACE, TRH TR1 "3,64,10,0.01,2.1,12,2.0,13,0.5,1.4,0,0,1,hold,3,2.5,0.3,0.01,0.4,200\n",
      { ":3:", "expected epoch 2", "got 3" } },
    { "trace_from_2.csv", RD_TRACE, TRH TR2, { ":2:", "expected epoch 1" } },
    /* every column range-checked: values no run of ours can produce (audit: batch_size=-64) */
    { "trace_neg_batch.csv", RD_TRACE, TRH TR1 "2,-64,10,0.01,2.1,12,2.0,13,0.5,1.4,0.07,0.09,1,hold,3,2.5,0.3,0.01,0.4,200\n",
      { ":3:", "column 'batch_size' (2)", "out of range [1, " } },
    { "trace_zero_batch.csv", RD_TRACE, TRH "1,0,10,0.01,2.3,10,2.2,11,0.5,1.5,0,0,1,warmup,3,2.5,0.3,0.01,0.4,200\n",
      { ":2:", "column 'batch_size'", "'0'" } },
    { "trace_neg_steps.csv", RD_TRACE, TRH "1,64,-1,0.01,2.3,10,2.2,11,0.5,1.5,0,0,1,warmup,3,2.5,0.3,0.01,0.4,200\n",
      { ":2:", "column 'steps' (3)", "out of range" } },
    { "trace_acc_101.csv", RD_TRACE, TRH TR1 "2,64,10,0.01,2.1,12,2.0,100.5,0.5,1.4,0.07,0.09,1,hold,3,2.5,0.3,0.01,0.4,200\n",
      { ":3:", "column 'test_acc' (8)", "out of range [0, 100]" } },
    { "trace_neg_acc.csv", RD_TRACE, TRH "1,64,10,0.01,2.3,-0.5,2.2,11,0.5,1.5,0,0,1,warmup,3,2.5,0.3,0.01,0.4,200\n",
      { ":2:", "column 'train_acc' (6)" } },
    { "trace_neg_time.csv", RD_TRACE, TRH "1,64,10,0.01,2.3,10,2.2,11,0.5,1.5,0,0,1,warmup,-3,2.5,0.3,0.01,0.4,200\n",
      { ":2:", "column 'epoch_time_s' (15)", "out of range [0, inf)" } },
    { "trace_neg_var.csv", RD_TRACE, TRH "1,64,10,0.01,2.3,10,2.2,11,-0.5,1.5,0,0,1,warmup,3,2.5,0.3,0.01,0.4,200\n",
      { ":2:", "column 'grad_var' (9)" } },
    { "trace_neg_sps.csv", RD_TRACE, TRH "1,64,10,0.01,2.3,10,2.2,11,0.5,1.5,0,0,1,warmup,3,2.5,0.3,0.01,0.4,-200\n",
      { ":2:", "column 'samples_per_s' (20)" } },
    { "theta_zero.csv", RD_THRESH, TH "r,c,1,0,3,4,5\n", { ":2:", "column 'theta' (4)", "out of range (0, inf)" } },
    { "tau_neg.csv", RD_THRESH, TH "r,c,-0.1,0.5,3,4,5\n", { ":2:", "column 'tau' (3)", "out of range" } },
    { "summary_S.csv", RD_SUMMARY, "arch,dataset,seeds,S_mean,S_std,archetype\nr,c,3,1.5,0.1,Overly Stable\n",
      { ":2:", "column 'S_mean' (4)", "out of range [0, 1]" } },
    { "summary_seeds.csv", RD_SUMMARY, "arch,dataset,seeds,S_mean,S_std,archetype\nr,c,0,0.5,0.1,Overly Stable\n",
      { ":2:", "column 'seeds' (3)" } },
    /* two rows for one arch/dataset: the first used to win silently */
    { "thresholds_dup.csv", RD_THRESH, TH "r,c,1,2,3,4,5\nr,d,1,2,3,4,5\nr,c,0.5,2,3,4,5\n",
      { ":4:", "second row for the same arch and dataset as line 2" } },
    { "summary_dup.csv", RD_SUMMARY,
      "arch,dataset,seeds,S_mean,S_std,archetype\nr,c,3,0.5,0.1,Overly Stable\nr,c,3,0.4,0.1,Overly Stable\n",
      { ":3:", "same arch and dataset as line 2" } },
    { "trace_missing.csv", RD_TRACE, "epoch,batch_size\n1,64\n", { ":1:", "missing column 'steps'" } },
    { "bad_archetype.csv", RD_SUMMARY, "arch,dataset,seeds,S_mean,S_std,archetype\nr,c,3,0.5,0.1,Wobbly\n",
      { ":2:", "column 'archetype' (6)", "unknown archetype: 'Wobbly'" } },
    { "dup_header.csv", RD_TABLE, "a,b,a\n1,2,3\n", { ":1:", "duplicate header name 'a'" } },
    { "empty_header.csv", RD_TABLE, "a,,c\n1,2,3\n", { ":1:", "column 2", "empty header" } },
    { "unterminated.csv", RD_TABLE, "a,b\n1,2\n3,\"oops\n4,5\n", { ":3:", "unterminated" } },
    { "stray_quote.csv", RD_TABLE, "a,b\n1,2\n3,x\"y\n", { ":3:", "malformed" } },
    { "after_quote.csv", RD_TABLE, "a,b\n\"1\"x,2\n", { ":2:", "malformed" } },
    /* Line numbers stay physical past a quoted newline and with CRLF and a BOM. */
    { "line_after_newline.csv", RD_THRESH, TH "\"r\nx\",c,1,2,3,4,5\nr,c,oops,2,3,4,5\n", { ":4:", "'oops'" } },
    { "crlf.csv", RD_THRESH, "\xEF\xBB\xBF" "arch,dataset,tau,theta,lambda,epochs_used,runs_used\r\nr,c,1,2,3,4,5\r\nr,c,1,2,3,x4,5\r\n",
      { ":3:", "column 'epochs_used'", "'x4'" } },
    { "missing_file.csv", RD_TABLE, NULL, { "cannot open" } },
    { "", RD_TRACE, NULL, { "is a directory" } },   /* the scratch directory itself */
    { "meta_dup.csv", RD_META, "key,value\narch,a\ndataset,d\narch,b\n", { ":4:", "duplicate key 'arch'" } },
    { "meta_no_value.csv", RD_META, "key,val\narch,a\n", { ":1:", "missing column 'value'" } },
    { "meta_ragged.csv", RD_META, "key,value\narch,a,b\n", { ":2:", "ragged" } },
};

static void test_malformed(void **state)
{
    (void)state;
    assert_true(sizeof bad_cases / sizeof bad_cases[0] >= 15);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        char *p = c->text ? tu_write(g_dir, c->name, c->text) : path_in(c->name);
        deba_err e;
        deba_err_clear(&e);
        deba_status st = DEBA_OK;
        switch (c->rd) {
        case RD_TABLE: {
            deba_table *t = (deba_table *)1;
            st = deba_table_read(p, &t, &e);
            assert_null(t);
            break;
        }
        case RD_TRACE: {
            deba_trace t;
            st = deba_trace_read(p, &t, &e);
            assert_null(t.rows);
            break;
        }
        case RD_THRESH: {
            deba_thresholds_row *r;
            size_t n;
            st = deba_thresholds_read(p, &r, &n, &e);
            assert_null(r);
            break;
        }
        case RD_SUMMARY: {
            deba_summary_row *r;
            size_t n;
            st = deba_summary_read(p, &r, &n, &e);
            assert_null(r);
            break;
        }
        case RD_META: {
            deba_meta m;
            st = deba_meta_read(p, &m, &e);
            assert_null(m.kv);
            break;
        }
        }
        if (st != DEBA_E_INPUT || !strstr(e.msg, p)) fail_msg("case %s: status %d, message '%s'", c->name, st, e.msg);
        assert_int_equal(e.status, DEBA_E_INPUT);
        if (getenv("DEBA_TEST_VERBOSE")) printf("  %-24s %s\n", c->name, e.msg);
        for (int k = 0; k < 3 && c->want[k]; k++)
            if (!strstr(e.msg, c->want[k]))
                fail_msg("case %s: message '%s' lacks '%s'", c->name, e.msg, c->want[k]);
        free(p);
    }
}

static void test_lookup_errors(void **state)
{
    (void)state;
    deba_err e;
    deba_meta m = { 0 };
    assert_int_equal(deba_meta_set(&m, "tau", "%s", "0.25"), DEBA_OK);
    assert_int_equal(deba_meta_set(&m, "theta", "%s", "fast"), DEBA_OK);
    assert_int_equal(deba_meta_set(&m, "lambda", "%s", "inf"), DEBA_OK);
    double v;
    assert_int_equal(deba_meta_get_double(&m, "runs/x/meta.csv", "window", &v, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "runs/x/meta.csv"));
    assert_non_null(strstr(e.msg, "'window'"));
    assert_int_equal(deba_meta_get_double(&m, "runs/x/meta.csv", "theta", &v, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "'fast'"));
    assert_int_equal(deba_meta_get_double(&m, "runs/x/meta.csv", "lambda", &v, &e), DEBA_E_INPUT);
    assert_int_equal(deba_meta_get_double(&m, "runs/x/meta.csv", "tau", &v, &e), DEBA_OK);
    assert_true(v == 0.25);
    char longkey[80];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(deba_meta_set(&m, longkey, "%d", 1), DEBA_E_INPUT);
    deba_meta_free(&m);

    deba_thresholds_row rows[1] = { { .arch = "resnet18", .dataset = "cifar10", .tau = 1, .theta = 1, .lambda = 1 } };
    const deba_thresholds_row *hit = rows;
    assert_int_equal(deba_thresholds_find(rows, 1, "th.csv", "resnet18", "cifar100", &hit, &e), DEBA_E_INPUT);
    assert_null(hit);
    assert_string_equal(e.msg, "no thresholds row for resnet18/cifar100 in th.csv");
    /* rows gathered from several files: a second match is an error, not the first one silently */
    deba_thresholds_row two[3] = {
        { .arch = "resnet18", .dataset = "cifar10", .tau = 1, .theta = 1, .lambda = 1 },
        { .arch = "resnet18", .dataset = "cifar100", .tau = 1, .theta = 1, .lambda = 1 },
        { .arch = "resnet18", .dataset = "cifar10", .tau = 2, .theta = 1, .lambda = 1 },
    };
    assert_int_equal(deba_thresholds_find(two, 3, "runs", "resnet18", "cifar10", &hit, &e), DEBA_E_INPUT);
    assert_string_equal(e.msg, "two thresholds rows for resnet18/cifar10 in runs; keep one");
    assert_int_equal(deba_thresholds_find(two, 3, "runs", "resnet18", "cifar100", &hit, &e), DEBA_OK);
    assert_ptr_equal(hit, &two[1]);

    /* Appending to a file that is not a trace must not touch it. */
    const char *wrong = "epoch,batch_size,steps\n1,64,10\n";
    char *p = tu_write(g_dir, "not_a_trace.csv", wrong);
    FILE *f = (FILE *)1;
    assert_int_equal(deba_trace_append_open(p, &f, &e), DEBA_E_INPUT);
    assert_null(f);
    assert_non_null(strstr(e.msg, p));
    assert_non_null(strstr(e.msg, ":1:"));
    char *text = tu_slurp(p);
    assert_string_equal(text, wrong);
    free(text);
    free(p);
    /* A trace whose last row was cut off. */
    p = tu_write(g_dir, "cut_trace.csv", TRH "1,64,10,0.01");
    assert_int_equal(deba_trace_append_open(p, &f, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "incomplete"));
    free(p);
}

/* A failed write leaves neither a temporary file nor a changed target. */
static void test_atomic_failure(void **state)
{
    (void)state;
    deba_err e;
    char *p = tu_write(g_dir, "keep.csv", "old contents\n");
    deba_thresholds_row rows[2] = {
        { .arch = "a", .dataset = "d", .tau = 1, .theta = 2, .lambda = 3 },
        { .arch = "a", .dataset = "e", .tau = 1, .theta = NAN, .lambda = 3 },
    };
    assert_int_equal(deba_thresholds_write(p, rows, 2, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "theta"));
    assert_int_equal(count_files_with(".tmp."), 0);
    char *text = tu_slurp(p);
    assert_string_equal(text, "old contents\n");
    free(text);
    free(p);

    p = path_in("fresh.csv");
    deba_trace t = { 0 };
    deba_trace_row r = trace_row(0);
    r.decision = DEBA_DECISION_COUNT;
    assert_int_equal(deba_trace_push(&t, &r, &e), DEBA_OK);
    assert_int_equal(deba_trace_write(p, &t, &e), DEBA_E_INPUT);
    assert_false(tu_exists(p));
    assert_int_equal(count_files_with(".tmp."), 0);
    deba_trace_free(&t);
    free(p);

    /* A directory that does not exist: nothing is created anywhere. */
    p = path_in("no/such/dir/x.csv");
    assert_int_equal(deba_thresholds_write(p, rows, 1, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, p));
    free(p);

    /* A directory where the file should go: an input error naming it, before any temporary
     * file is made (it used to fail only at the rename, as an i/o error). */
    deba_atomic a;
    p = path_in("adir");
    assert_int_equal(deba_mkdirs(p, &e), DEBA_OK);
    assert_int_equal(deba_atomic_open(&a, p, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "is a directory"));
    assert_int_equal(deba_thresholds_write(p, rows, 1, &e), DEBA_E_INPUT);
    assert_int_equal(count_files_with(".tmp."), 0);
    free(p);

    /* abort removes the temporary file. */
    p = path_in("aborted.csv");
    assert_int_equal(deba_atomic_open(&a, p, &e), DEBA_OK);
    fputs("partial", a.f);
    assert_true(tu_exists(a.tmp));
    deba_atomic_abort(&a);
    assert_int_equal(count_files_with(".tmp."), 0);
    assert_false(tu_exists(p));
    free(p);
}

/* A symlink planted where the old writer put its temporary file ("<path>.tmp.<pid>") used to be
 * followed and its target overwritten. The writer now creates an unpredictable name with
 * O_EXCL|O_NOFOLLOW: the victim keeps its contents, whatever name is planted. */
static void test_atomic_planted_symlink(void **state)
{
    (void)state;
    deba_err e;
    char *victim = tu_write(g_dir, "victim.txt", "precious\n");
    char *p = path_in("out.csv");
    char planted[4200];
    snprintf(planted, sizeof planted, "%s.tmp.%ld", p, (long)getpid());
    assert_int_equal(symlink(victim, planted), 0);
    deba_thresholds_row row = { .arch = "a", .dataset = "d", .tau = 1, .theta = 2, .lambda = 3 };
    assert_int_equal(deba_thresholds_write(p, &row, 1, &e), DEBA_OK);
    char *text = tu_slurp(victim);
    assert_string_equal(text, "precious\n");
    free(text);
    text = tu_slurp(p);
    assert_non_null(strstr(text, "a,d,1,2,3"));
    free(text);

    /* The temporary name is in the target's directory, hidden, and carries our pid. */
    deba_atomic a;
    assert_int_equal(deba_atomic_open(&a, p, &e), DEBA_OK);
    char want[64];
    snprintf(want, sizeof want, "/.out.csv.tmp.%ld.", (long)getpid());
    assert_non_null(strstr(a.tmp, want));
    assert_int_equal(strncmp(a.tmp, g_dir, strlen(g_dir)), 0);
    /* The same name planted as a symlink before open could not be used: O_EXCL|O_NOFOLLOW. */
    char again[4300];
    snprintf(again, sizeof again, "%s", a.tmp);
    deba_atomic_abort(&a);
    assert_int_equal(symlink(victim, again), 0);
    int fd = open(again, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0666);
    assert_true(fd < 0);
    unlink(again);
    unlink(planted);

    /* A symlink at the target itself is replaced by the file, never written through. */
    char *link = path_in("linked.csv");
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(deba_thresholds_write(link, &row, 1, &e), DEBA_OK);
    text = tu_slurp(victim);
    assert_string_equal(text, "precious\n");
    free(text);
    struct stat sb;
    assert_int_equal(lstat(link, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    free(link);
    free(victim);
    free(p);
}

/* Temporary files of writers that died (kill -9 mid-write) are removed; a live writer's, and
 * files that only look similar, are not. */
static void test_atomic_clean_stale(void **state)
{
    (void)state;
    deba_err e;
    /* A pid that is certainly dead: a child that has exited and been reaped. */
    pid_t child = fork();
    if (child == 0) _exit(0);
    assert_true(child > 0);
    waitpid(child, NULL, 0);
    char name[128];
    snprintf(name, sizeof name, ".trace.csv.tmp.%ld.0123456789abcdef", (long)child);
    free(tu_write(g_dir, name, "half"));
    snprintf(name, sizeof name, "checkpoint.bin.tmp.%ld", (long)child);         /* the older name */
    free(tu_write(g_dir, name, "half"));
    snprintf(name, sizeof name, ".meta.csv.tmp.%ld.0123456789abcdef", (long)getppid());   /* alive */
    free(tu_write(g_dir, name, "live"));
    free(tu_write(g_dir, "notes.tmp.txt", "mine"));                               /* not a temp */
    snprintf(name, sizeof name, ".x.tmp.%ld.zz", (long)child);                    /* not our form */
    free(tu_write(g_dir, name, "other"));
    deba_atomic a;
    char *p = path_in("open.csv");
    assert_int_equal(deba_atomic_open(&a, p, &e), DEBA_OK);                       /* our own, open */
    int removed = -1;
    assert_int_equal(deba_atomic_clean_stale(g_dir, &removed, &e), DEBA_OK);
    assert_int_equal(removed, 2);
    assert_int_equal(count_files_with(".tmp."), 4);
    assert_true(tu_exists(a.tmp));
    deba_atomic_abort(&a);
    assert_int_equal(deba_atomic_clean_stale("/nonexistent/dir", NULL, &e), DEBA_E_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/dir"));
    free(p);
}

/* One writer per run directory: a second lock (here from a child process, as a second
 * deba-train would be) fails naming the directory and the holder's pid; after release, or after
 * the holder dies, it succeeds. A .lock planted as a symlink is refused. */
static void test_run_lock(void **state)
{
    (void)state;
    deba_err e;
    deba_lock l;
    assert_int_equal(deba_lock_acquire(&l, g_dir, &e), DEBA_OK);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t child = fork();
    if (child == 0) {
        deba_err ce;
        deba_lock cl;
        char msg[1100] = "";
        if (deba_lock_acquire(&cl, g_dir, &ce) == DEBA_E_INPUT) snprintf(msg, sizeof msg, "%s", ce.msg);
        ssize_t w = write(pipefd[1], msg, strlen(msg) + 1);
        _exit(w > 0 ? 0 : 1);
    }
    char msg[1100] = "";
    ssize_t got = read(pipefd[0], msg, sizeof msg - 1);
    assert_true(got > 0);
    waitpid(child, NULL, 0);
    close(pipefd[0]);
    close(pipefd[1]);
    char want[64];
    snprintf(want, sizeof want, "in use by another run (pid %ld)", (long)getpid());
    assert_non_null(strstr(msg, want));
    assert_non_null(strstr(msg, g_dir));
    deba_lock_release(&l);
    deba_lock_release(&l);   /* twice: a no-op */
    deba_lock_release(NULL);

    /* A holder killed with SIGKILL leaves no lock behind. */
    child = fork();
    if (child == 0) {
        deba_lock cl;
        if (deba_lock_acquire(&cl, g_dir, NULL)) _exit(1);
        pause();
        _exit(0);
    }
    for (int i = 0; i < 200; i++) {   /* wait until the child holds it */
        deba_lock probe;
        if (deba_lock_acquire(&probe, g_dir, &e) != DEBA_OK) break;
        deba_lock_release(&probe);
        usleep(10000);
    }
    assert_int_equal(deba_lock_acquire(&l, g_dir, &e), DEBA_E_INPUT);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    assert_int_equal(deba_lock_acquire(&l, g_dir, &e), DEBA_OK);
    deba_lock_release(&l);

    char *sub = path_in("sub");
    assert_int_equal(deba_mkdirs(sub, &e), DEBA_OK);
    char *victim = tu_write(g_dir, "victim.txt", "precious\n");
    char linkp[4200];
    snprintf(linkp, sizeof linkp, "%s/.lock", sub);
    assert_int_equal(symlink(victim, linkp), 0);
    assert_int_equal(deba_lock_acquire(&l, sub, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "symbolic link"));
    char *text = tu_slurp(victim);
    assert_string_equal(text, "precious\n");
    free(text);
    free(victim);
    free(sub);
}

static void test_run_dirs(void **state)
{
    (void)state;
    deba_err e;
    char buf[4096];
    assert_int_equal(deba_run_dir(buf, sizeof buf, g_dir, "resnet18", "cifar10", "fixed", 3, &e), DEBA_OK);
    char want[4096];
    snprintf(want, sizeof want, "%s/resnet18/cifar10/fixed/seed3", g_dir);
    assert_string_equal(buf, want);
    char small[16];
    assert_int_equal(deba_run_dir(small, sizeof small, g_dir, "resnet18", "cifar10", "fixed", 3, &e), DEBA_E_INPUT);
    /* An empty root is not "/": the run would land in /resnet18/... */
    assert_int_equal(deba_run_dir(buf, sizeof buf, "", "resnet18", "cifar10", "fixed", 3, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "--out"));
    assert_int_equal(deba_run_dir(buf, sizeof buf, g_dir, "resnet18", "cifar10", "fixed", 3, &e), DEBA_OK);
    assert_int_equal(deba_mkdirs(buf, &e), DEBA_OK);
    assert_int_equal(deba_mkdirs(buf, &e), DEBA_OK);   /* again: already there */

    /* Two runs, written out of order, plus a directory with only a meta.csv. */
    const char *seeds[2] = { "seed2", "seed1" };
    for (int i = 0; i < 2; i++) {
        char d[2048], p[2200];
        snprintf(d, sizeof d, "%s/runs/m/ds/fixed/%s", g_dir, seeds[i]);
        assert_int_equal(deba_mkdirs(d, &e), DEBA_OK);
        snprintf(p, sizeof p, "%s/meta.csv", d);
        FILE *f = fopen(p, "w");
        fprintf(f, "key,value\nseed,%c\n", seeds[i][4]);
        fclose(f);
        snprintf(p, sizeof p, "%s/trace.csv", d);
        f = fopen(p, "w");
        fputs(TRH TR1, f);
        fclose(f);
    }
    char d[2048];
    snprintf(d, sizeof d, "%s/runs/m/ds/deba/seed1", g_dir);
    assert_int_equal(deba_mkdirs(d, &e), DEBA_OK);
    char *meta_only = tu_write(d, "meta.csv", "key,value\n");
    free(meta_only);

    snprintf(d, sizeof d, "%s/runs/", g_dir);
    char d2[2048];
    snprintf(d2, sizeof d2, "%s/runs/m/ds/fixed/seed1", g_dir);
    const char *roots[2] = { d, d2 };   /* overlapping roots: each run once */
    deba_run *runs;
    size_t n;
    assert_int_equal(deba_runs_load(roots, 2, &runs, &n, &e), DEBA_OK);
    assert_int_equal(n, 2);
    assert_non_null(strstr(runs[0].dir, "fixed/seed1"));
    assert_non_null(strstr(runs[1].dir, "fixed/seed2"));
    assert_string_equal(deba_meta_get(&runs[1].meta, "seed"), "2");
    assert_int_equal(runs[0].trace.n, 1);
    assert_int_equal(runs[0].trace.rows[0].decision, DEBA_DEC_WARMUP);
    deba_runs_free(runs, n);
    deba_runs_free(NULL, 0);

    /* A missing root, and a corrupt trace, are input errors naming the path. */
    const char *missing[1] = { "/nonexistent/deba/runs" };
    assert_int_equal(deba_runs_load(missing, 1, &runs, &n, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "/nonexistent/deba/runs"));
    char *bad = tu_write(d2, "trace.csv", TRH "1,64,10,0.01,2.3,10,2.2,11,0.5,1.5,0,0,1,warmup,3,2.5,0.3\n");
    assert_int_equal(deba_runs_load(roots, 1, &runs, &n, &e), DEBA_E_INPUT);
    assert_null(runs);
    assert_non_null(strstr(e.msg, bad));
    assert_non_null(strstr(e.msg, ":2:"));
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trace_round_trip, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_trace_append, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_meta_round_trip, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_small_files_round_trip, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test(test_csv_double_shortest),
        cmocka_unit_test_setup_teardown(test_tolerant_reading, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_malformed, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_lookup_errors, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_atomic_failure, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_atomic_planted_symlink, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_atomic_clean_stale, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_run_lock, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_run_dirs, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
