/* The run files of SPEC §7. Every row-per-record file is described by one column table, and one
 * generic reader and one generic writer serve trace, profile, summary, thresholds and sweep. */
#include "deba/trace.h"
#include "deba/csv.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- column tables ---- */

typedef enum { COL_INT, COL_DOUBLE, COL_STR, COL_DECISION, COL_ARCHETYPE, COL_TEXT } col_type;

typedef struct {
    const char *name;
    col_type type;
    size_t off;      /* COL_INT: int, COL_DOUBLE: double, COL_STR: char[DEBA_NAME_MAX],
                        COL_DECISION: deba_decision, COL_ARCHETYPE: deba_archetype,
                        COL_TEXT: char[DEBA_TEXT_MAX] (may be empty) */
    double lo, hi;   /* COL_INT, COL_DOUBLE: the values that can mean something, inclusive */
    /* A column added after a file kind first shipped: files written before it lack the column
     * and still read, with def in every row (COL_TEXT: ""). Writers always write it. */
    int optional;
    double def;
} col_desc;

typedef struct {
    const col_desc *cols;
    size_t ncols;
    size_t row_size;
    /* optional check across cells of data row r (0-based); fills why and returns 0 when bad */
    int (*row_ok)(const void *row, size_t r, char *why, size_t cap);
    /* optional: rows that describe the same thing (a second thresholds row for one arch and
     * dataset would otherwise be silently shadowed by the first) */
    int (*same_key)(const void *a, const void *b);
    const char *key_names;
} file_kind;

#define C(T, type, field) { #field, type, offsetof(T, field), -HUGE_VAL, HUGE_VAL, 0, 0 }
/* A number with a range: every value a reader accepts is one a writer of ours could have
 * produced, so a hand-edited or hostile file cannot feed a negative batch or a 300% accuracy
 * to the analysis. */
#define R(T, type, field, ...) { #field, type, offsetof(T, field), __VA_ARGS__, 0, 0 }   /* lo, hi */
/* An optional column (see col_desc) named name, stored at T.member, range lo..hi, default def. */
#define OPT(T, type, name, member, lo, hi, def) { name, type, offsetof(T, member), lo, hi, 1, def }
#define POS (-0.0)             /* lower bound "≥ 0" */
#define GT0 DBL_MIN            /* lower bound "> 0" (theta divides: rho = max(theta, 1/theta)) */
#define INF HUGE_VAL
#define PCT 0.0, 100.0
#define KIND(T, cols) { cols, sizeof cols / sizeof cols[0], sizeof(T), NULL, NULL, NULL }

const char DEBA_TRACE_HEADER[] =
    "epoch,batch_size,steps,lr,train_loss,train_acc,test_loss,test_acc,grad_var,grad_norm,"
    "norm_var,loss_var,confidence,decision,epoch_time_s,compute_time_s,data_time_s,"
    "signal_time_s,eval_time_s,samples_per_s";

static const col_desc trace_cols[] = {
    R(deba_trace_row, COL_INT, epoch, 1, INT_MAX),       R(deba_trace_row, COL_INT, batch_size, 1, INT_MAX),
    R(deba_trace_row, COL_INT, steps, 0, INT_MAX),       R(deba_trace_row, COL_DOUBLE, lr, POS, INF),
    R(deba_trace_row, COL_DOUBLE, train_loss, POS, INF), R(deba_trace_row, COL_DOUBLE, train_acc, PCT),
    R(deba_trace_row, COL_DOUBLE, test_loss, POS, INF),  R(deba_trace_row, COL_DOUBLE, test_acc, PCT),
    R(deba_trace_row, COL_DOUBLE, grad_var, POS, INF),   R(deba_trace_row, COL_DOUBLE, grad_norm, POS, INF),
    R(deba_trace_row, COL_DOUBLE, norm_var, POS, INF),   R(deba_trace_row, COL_DOUBLE, loss_var, POS, INF),
    R(deba_trace_row, COL_DOUBLE, confidence, POS, INF), C(deba_trace_row, COL_DECISION, decision),
    R(deba_trace_row, COL_DOUBLE, epoch_time_s, POS, INF), R(deba_trace_row, COL_DOUBLE, compute_time_s, POS, INF),
    R(deba_trace_row, COL_DOUBLE, data_time_s, POS, INF), R(deba_trace_row, COL_DOUBLE, signal_time_s, POS, INF),
    R(deba_trace_row, COL_DOUBLE, eval_time_s, POS, INF), R(deba_trace_row, COL_DOUBLE, samples_per_s, POS, INF),
};
static const col_desc profile_cols[] = {
    C(deba_profile_row, COL_STR, arch),          C(deba_profile_row, COL_STR, dataset),
    R(deba_profile_row, COL_INT, seed, 0, INT_MAX), R(deba_profile_row, COL_INT, epochs, 1, INT_MAX),
    R(deba_profile_row, COL_DOUBLE, S, 0.0, 1.0), R(deba_profile_row, COL_DOUBLE, cv_grad_var, POS, INF),
    R(deba_profile_row, COL_DOUBLE, mean_norm_var, POS, INF), R(deba_profile_row, COL_DOUBLE, mean_loss_var, POS, INF),
    R(deba_profile_row, COL_DOUBLE, final_test_acc, PCT),
};
static const col_desc summary_cols[] = {
    C(deba_summary_row, COL_STR, arch),      C(deba_summary_row, COL_STR, dataset),
    R(deba_summary_row, COL_INT, seeds, 1, INT_MAX), R(deba_summary_row, COL_DOUBLE, S_mean, 0.0, 1.0),
    R(deba_summary_row, COL_DOUBLE, S_std, POS, INF), C(deba_summary_row, COL_ARCHETYPE, archetype),
    /* the verdict (profiler/profile.h), optional: a file without it reads with bootstrap = 0 */
    OPT(deba_summary_row, COL_INT, "epochs", epochs, 0, INT_MAX, 0),
    OPT(deba_summary_row, COL_INT, "bootstrap", bootstrap, 0, INT_MAX, 0),
    OPT(deba_summary_row, COL_INT, "bootstrap_seed", bootstrap_seed, 0, INT_MAX, 0),
    OPT(deba_summary_row, COL_DOUBLE, "archetype_share_naturally_unstable",
        share[DEBA_ARCHETYPE_NATURALLY_UNSTABLE], 0.0, 1.0, 0),
    OPT(deba_summary_row, COL_DOUBLE, "archetype_share_dynamically_stable",
        share[DEBA_ARCHETYPE_DYNAMICALLY_STABLE], 0.0, 1.0, 0),
    OPT(deba_summary_row, COL_DOUBLE, "archetype_share_overly_stable", share[DEBA_ARCHETYPE_OVERLY_STABLE], 0.0, 1.0, 0),
    OPT(deba_summary_row, COL_DOUBLE, "archetype_share_moderately_stable",
        share[DEBA_ARCHETYPE_MODERATELY_STABLE], 0.0, 1.0, 0),
    OPT(deba_summary_row, COL_INT, "enough_epochs", enough_epochs, 0, 1, 0),
    OPT(deba_summary_row, COL_INT, "enough_seeds", enough_seeds, 0, 1, 0),
    OPT(deba_summary_row, COL_DOUBLE, "tau", tau, POS, INF, 0),
    OPT(deba_summary_row, COL_DOUBLE, "theta", theta, POS, INF, 0),
    OPT(deba_summary_row, COL_DOUBLE, "lambda", lambda, POS, INF, 0),
    OPT(deba_summary_row, COL_INT, "throughput_gain", throughput_gain, -1, 1, -1),
    OPT(deba_summary_row, COL_TEXT, "recommendation", recommendation, 0, 0, 0),
};
static const col_desc thresholds_cols[] = {
    C(deba_thresholds_row, COL_STR, arch),       C(deba_thresholds_row, COL_STR, dataset),
    R(deba_thresholds_row, COL_DOUBLE, tau, POS, INF), R(deba_thresholds_row, COL_DOUBLE, theta, GT0, INF),
    R(deba_thresholds_row, COL_DOUBLE, lambda, POS, INF), R(deba_thresholds_row, COL_INT, epochs_used, 0, INT_MAX),
    R(deba_thresholds_row, COL_INT, runs_used, 0, INT_MAX),
};
static const col_desc sweep_cols[] = {
    C(deba_sweep_row, COL_STR, arch),             C(deba_sweep_row, COL_STR, dataset),
    R(deba_sweep_row, COL_INT, batch_size, 1, INT_MAX), R(deba_sweep_row, COL_INT, steps, 0, INT_MAX),
    R(deba_sweep_row, COL_DOUBLE, samples_per_s, POS, INF), R(deba_sweep_row, COL_DOUBLE, epoch_time_s, POS, INF),
    R(deba_sweep_row, COL_DOUBLE, grad_var, POS, INF), R(deba_sweep_row, COL_DOUBLE, compute_util, POS, INF),
    /* repeated measurements (SPEC §7), optional: a file without them reads as one measurement */
    OPT(deba_sweep_row, COL_INT, "repeats", repeats, 0, INT_MAX, 1),
    OPT(deba_sweep_row, COL_DOUBLE, "samples_per_s_min", samples_per_s_min, POS, INF, 0),
    OPT(deba_sweep_row, COL_DOUBLE, "samples_per_s_max", samples_per_s_max, POS, INF, 0),
};

/* A trace is one row per epoch from 1, in order: a repeated, missing or shuffled epoch means
 * the file was edited or concatenated, and every signal after it would be misread. */
static int trace_row_ok(const void *row, size_t r, char *why, size_t cap)
{
    int epoch = ((const deba_trace_row *)row)->epoch;
    if (epoch == (int)r + 1) return 1;
    snprintf(why, cap, "column 'epoch': expected epoch %zu (one row per epoch from 1, in order), got %d", r + 1, epoch);
    return 0;
}

static int same_profile(const void *a, const void *b)
{
    const deba_profile_row *x = a, *y = b;
    return x->seed == y->seed && !strcmp(x->arch, y->arch) && !strcmp(x->dataset, y->dataset);
}
static int same_summary(const void *a, const void *b)
{
    const deba_summary_row *x = a, *y = b;
    return !strcmp(x->arch, y->arch) && !strcmp(x->dataset, y->dataset);
}
static int same_thresholds(const void *a, const void *b)
{
    const deba_thresholds_row *x = a, *y = b;
    return !strcmp(x->arch, y->arch) && !strcmp(x->dataset, y->dataset);
}

static const file_kind TRACE = { trace_cols, sizeof trace_cols / sizeof trace_cols[0], sizeof(deba_trace_row),
                                 trace_row_ok, NULL, NULL };
static const file_kind PROFILE = { profile_cols, sizeof profile_cols / sizeof profile_cols[0],
                                   sizeof(deba_profile_row), NULL, same_profile, "arch, dataset and seed" };
static const file_kind SUMMARY = { summary_cols, sizeof summary_cols / sizeof summary_cols[0],
                                   sizeof(deba_summary_row), NULL, same_summary, "arch and dataset" };
static const file_kind THRESHOLDS = { thresholds_cols, sizeof thresholds_cols / sizeof thresholds_cols[0],
                                      sizeof(deba_thresholds_row), NULL, same_thresholds, "arch and dataset" };
static const file_kind SWEEP = KIND(deba_sweep_row, sweep_cols);

/* ---- the generic reader ---- */

static deba_status range_error(const deba_table *t, size_t r, size_t c, const col_desc *d, const char *s,
                               deba_err *e)
{
    char lo[32], hi[32];
    if (d->lo == DBL_MIN) snprintf(lo, sizeof lo, "(0");
    else snprintf(lo, sizeof lo, "[%.15g", d->lo + 0.0);
    if (d->hi == HUGE_VAL) snprintf(hi, sizeof hi, "inf)");
    else snprintf(hi, sizeof hi, "%.15g]", d->hi);
    return deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column '%s' (%zu): value out of range %s, %s: '%s'",
                        deba_table_path(t), deba_table_line(t, r), d->name, c + 1, lo, hi, s);
}

static deba_status cell_read(const deba_table *t, size_t r, size_t c, const col_desc *d, char *row,
                             deba_err *e)
{
    const char *s = deba_table_str(t, r, c);
    void *dst = row + d->off;
    switch (d->type) {
    case COL_DOUBLE: {
        double v;
        deba_status st = deba_table_double(t, r, c, &v, e);
        if (st != DEBA_OK) return st;
        if (v < d->lo || v > d->hi) return range_error(t, r, c, d, s, e);
        *(double *)dst = v + 0.0;   /* -0 reads as 0 */
        return DEBA_OK;
    }
    case COL_INT: {
        long v;
        deba_status st = deba_table_int(t, r, c, &v, e);
        if (st != DEBA_OK) return st;
        if (v < INT_MIN || v > INT_MAX) break;
        if ((double)v < d->lo || (double)v > d->hi) return range_error(t, r, c, d, s, e);
        *(int *)dst = (int)v;
        return DEBA_OK;
    }
    case COL_STR:
        if (!*s || strlen(s) >= DEBA_NAME_MAX) break;
        memcpy(dst, s, strlen(s) + 1);
        return DEBA_OK;
    case COL_TEXT:
        if (strlen(s) >= DEBA_TEXT_MAX) break;
        memcpy(dst, s, strlen(s) + 1);
        return DEBA_OK;
    case COL_DECISION: {
        int v = deba_decision_parse(s);
        if (v < 0) break;
        *(deba_decision *)dst = (deba_decision)v;
        return DEBA_OK;
    }
    case COL_ARCHETYPE: {
        int v = deba_archetype_parse(s);
        if (v < 0) break;
        *(deba_archetype *)dst = (deba_archetype)v;
        return DEBA_OK;
    }
    }
    static const char *const what[] = {
        [COL_INT] = "integer out of range", [COL_DOUBLE] = "bad number",
        [COL_STR] = "empty or longer than 63 characters", [COL_DECISION] = "unknown decision",
        [COL_ARCHETYPE] = "unknown archetype", [COL_TEXT] = "text longer than 2047 characters",
    };
    return deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column '%s' (%zu): %s: '%s'", deba_table_path(t),
                        deba_table_line(t, r), d->name, c + 1, what[d->type], s);
}

/* Reads every row of a file of this kind into a malloc'd array (never NULL on success). */
static deba_status rows_read(const char *path, const file_kind *k, void **rows, size_t *n, deba_err *e)
{
    *rows = NULL;
    *n = 0;
    deba_table *t;
    deba_status st = deba_table_read(path, &t, e);
    if (st != DEBA_OK) return st;
    size_t idx[32];
    const size_t ABSENT = (size_t)-1;
    for (size_t j = 0; j < k->ncols && st == DEBA_OK; j++) {
        idx[j] = ABSENT;
        if (k->cols[j].optional) {
            for (size_t c = 0; c < deba_table_ncols(t); c++)
                if (!strcmp(deba_table_header(t, c), k->cols[j].name)) idx[j] = c;
        } else
            st = deba_table_col(t, k->cols[j].name, &idx[j], e);
    }
    size_t nr = deba_table_nrows(t);
    char *out = NULL;
    if (st == DEBA_OK) {
        out = calloc(nr ? nr : 1, k->row_size);
        if (!out) st = deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
    }
    for (size_t r = 0; r < nr && st == DEBA_OK; r++) {
        for (size_t j = 0; j < k->ncols && st == DEBA_OK; j++) {
            if (idx[j] != ABSENT) {
                st = cell_read(t, r, idx[j], &k->cols[j], out + r * k->row_size, e);
                continue;
            }
            void *dst = out + r * k->row_size + k->cols[j].off;   /* an older file: the default */
            if (k->cols[j].type == COL_INT) *(int *)dst = (int)k->cols[j].def;
            else if (k->cols[j].type == COL_DOUBLE) *(double *)dst = k->cols[j].def;
            /* COL_TEXT: calloc left "" */
        }
        char why[256];
        if (st == DEBA_OK && k->row_ok && !k->row_ok(out + r * k->row_size, r, why, sizeof why))
            st = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: %s", path, deba_table_line(t, r), why);
        for (size_t q = 0; q < r && st == DEBA_OK && k->same_key; q++)   /* these files have few rows */
            if (k->same_key(out + q * k->row_size, out + r * k->row_size))
                st = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: a second row for the same %s as line %zu; "
                                  "which one is meant is ambiguous", path, deba_table_line(t, r), k->key_names,
                                  deba_table_line(t, q));
    }
    deba_table_free(t);
    if (st != DEBA_OK) {
        free(out);
        return st;
    }
    *rows = out;
    *n = nr;
    return DEBA_OK;
}

/* ---- the generic writer ---- */

static void header_write(FILE *f, const file_kind *k)
{
    for (size_t j = 0; j < k->ncols; j++) {
        if (j) fputc(',', f);
        fputs(k->cols[j].name, f);
    }
    fputc('\n', f);
}

/* One row, newline included. Refuses what a reader would reject, so every file written can be
 * read back: non-finite numbers, empty or unterminated names, out-of-range enums. */
static deba_status row_write(FILE *f, const char *path, size_t r, const file_kind *k, const char *row,
                             deba_err *e)
{
    for (size_t j = 0; j < k->ncols; j++) {
        const col_desc *d = &k->cols[j];
        const void *src = row + d->off;
        if (j) fputc(',', f);
        switch (d->type) {
        case COL_INT: {
            int v = *(const int *)src;
            if (v < d->lo || v > d->hi)
                return deba_err_set(e, DEBA_E_INPUT, "%s: row %zu, column '%s': value %d is out of range",
                                    path, r + 1, d->name, v);
            fprintf(f, "%d", v);
            break;
        }
        case COL_DOUBLE: {
            double v = *(const double *)src;
            if (!isfinite(v))
                return deba_err_set(e, DEBA_E_INPUT, "%s: row %zu, column '%s': value is not finite (%g)",
                                    path, r + 1, d->name, v);
            if (v < d->lo || v > d->hi)
                return deba_err_set(e, DEBA_E_INPUT, "%s: row %zu, column '%s': value %.17g is out of range",
                                    path, r + 1, d->name, v);
            deba_csv_double(f, v + 0.0);
            break;
        }
        case COL_STR: {
            const char *s = src;
            size_t len = strnlen(s, DEBA_NAME_MAX);
            if (len == 0 || len == DEBA_NAME_MAX)
                return deba_err_set(e, DEBA_E_INPUT, "%s: row %zu, column '%s': empty or too long name",
                                    path, r + 1, d->name);
            deba_csv_field(f, s);
            break;
        }
        case COL_TEXT: {
            const char *s = src;
            if (strnlen(s, DEBA_TEXT_MAX) == DEBA_TEXT_MAX)
                return deba_err_set(e, DEBA_E_INPUT, "%s: row %zu, column '%s': text longer than %d characters",
                                    path, r + 1, d->name, DEBA_TEXT_MAX - 1);
            deba_csv_field(f, s);
            break;
        }
        case COL_DECISION: {
            deba_decision v = *(const deba_decision *)src;
            if ((unsigned)v >= DEBA_DECISION_COUNT)
                return deba_err_set(e, DEBA_E_INPUT, "%s: row %zu: invalid decision %d", path, r + 1, (int)v);
            fputs(deba_decision_name(v), f);
            break;
        }
        case COL_ARCHETYPE: {
            deba_archetype v = *(const deba_archetype *)src;
            if ((unsigned)v >= DEBA_ARCHETYPE_COUNT)
                return deba_err_set(e, DEBA_E_INPUT, "%s: row %zu: invalid archetype %d", path, r + 1, (int)v);
            deba_csv_field(f, deba_archetype_name(v));
            break;
        }
        }
    }
    fputc('\n', f);
    return DEBA_OK;
}

static deba_status rows_write(const char *path, const file_kind *k, const void *rows, size_t n, deba_err *e)
{
    deba_atomic a;
    deba_status st = deba_atomic_open(&a, path, e);
    if (st != DEBA_OK) return st;
    header_write(a.f, k);
    for (size_t r = 0; r < n && st == DEBA_OK; r++)
        st = row_write(a.f, path, r, k, (const char *)rows + r * k->row_size, e);
    if (st != DEBA_OK) {
        deba_atomic_abort(&a);
        return st;
    }
    return deba_atomic_commit(&a, e);
}

/* ---- trace.csv ---- */

deba_status deba_trace_read(const char *path, deba_trace *out, deba_err *e)
{
    void *rows;
    size_t n;
    out->rows = NULL;
    out->n = out->cap = 0;
    deba_status st = rows_read(path, &TRACE, &rows, &n, e);
    if (st != DEBA_OK) return st;
    out->rows = rows;
    out->n = out->cap = n;
    return DEBA_OK;
}

deba_status deba_trace_write(const char *path, const deba_trace *t, deba_err *e)
{
    return rows_write(path, &TRACE, t->rows, t->n, e);
}

deba_status deba_trace_push(deba_trace *t, const deba_trace_row *r, deba_err *e)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        deba_trace_row *p = realloc(t->rows, cap * sizeof *p);
        if (!p) return deba_err_set(e, DEBA_E_NOMEM, "trace: out of memory");
        t->rows = p;
        t->cap = cap;
    }
    t->rows[t->n++] = *r;
    return DEBA_OK;
}

void deba_trace_free(deba_trace *t)
{
    if (!t) return;
    free(t->rows);
    t->rows = NULL;
    t->n = t->cap = 0;
}

deba_status deba_trace_append_open(const char *path, FILE **out, deba_err *e)
{
    *out = NULL;
    FILE *f = fopen(path, "a+b");   /* writes always go to the end; reads start anywhere */
    if (!f) return deba_err_set(e, DEBA_E_IO, "%s: cannot open for append: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return deba_err_set(e, DEBA_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (st.st_size == 0) {
        fprintf(f, "%s\n", DEBA_TRACE_HEADER);
        if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
            int err = errno;
            fclose(f);
            return deba_err_set(e, DEBA_E_IO, "%s: cannot write header: %s", path, strerror(err));
        }
        *out = f;
        return DEBA_OK;
    }
    /* An existing trace must be ours and end with a whole row, or appending would corrupt it. */
    char *line = NULL;
    size_t cap = 0;
    rewind(f);
    ssize_t len = getline(&line, &cap, f);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    int ok = len >= 0 && strcmp(line, DEBA_TRACE_HEADER) == 0;
    free(line);
    if (!ok) {
        fclose(f);
        return deba_err_set(e, DEBA_E_INPUT, "%s:1: not a trace.csv header (expected '%s')", path,
                            DEBA_TRACE_HEADER);
    }
    int last = EOF;
    if (fseeko(f, -1, SEEK_END) == 0) last = fgetc(f);
    if (last != '\n') {
        fclose(f);
        return deba_err_set(e, DEBA_E_INPUT, "%s: last row is incomplete (no final newline)", path);
    }
    *out = f;
    return DEBA_OK;
}

deba_status deba_trace_append_row(FILE *f, const char *path, const deba_trace_row *r, deba_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
    deba_status st = row_write(m, path, (size_t)(r->epoch > 0 ? r->epoch - 1 : 0), &TRACE,
                               (const char *)r, e);
    if (fclose(m) != 0 && st == DEBA_OK) st = deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
    /* One fwrite of the whole row: a crash leaves at worst a partial last line, never a mix. */
    if (st == DEBA_OK && (fwrite(buf, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = deba_err_set(e, DEBA_E_IO, "%s: cannot append row: %s", path, strerror(errno));
    free(buf);
    return st;
}

/* ---- meta.csv ---- */

const char *const DEBA_META_KEYS[] = {
    "format_version", "tool_version", "arch", "dataset", "label", "method", "seed", "epochs",
    "batch0", "bmin", "bmax", "lr", "momentum", "weight_decay", "tau", "theta", "lambda", "window",
    "cooldown", "growth", "rollback", "device", "device_name", "precision", "params",
    "started_utc", "finished_utc", "status", "final_test_acc", "best_test_acc",
    "total_train_time_s",
};
const size_t DEBA_META_NKEYS = sizeof DEBA_META_KEYS / sizeof DEBA_META_KEYS[0];

static deba_kv *meta_find(const deba_meta *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->kv[i].key, key) == 0) return &m->kv[i];
    return NULL;
}

static deba_status meta_put(deba_meta *m, const char *key, const char *value, deba_err *e)
{
    if (!*key || strlen(key) >= sizeof m->kv[0].key)
        return deba_err_set(e, DEBA_E_INPUT, "meta key '%s' is empty or too long", key);
    if (strlen(value) >= sizeof m->kv[0].value)
        return deba_err_set(e, DEBA_E_INPUT, "meta value of '%s' is longer than %zu characters", key,
                            sizeof m->kv[0].value - 1);
    deba_kv *kv = meta_find(m, key);
    if (!kv) {
        if (m->n == m->cap) {
            size_t cap = m->cap ? 2 * m->cap : 48;
            deba_kv *p = realloc(m->kv, cap * sizeof *p);
            if (!p) return deba_err_set(e, DEBA_E_NOMEM, "meta: out of memory");
            m->kv = p;
            m->cap = cap;
        }
        kv = &m->kv[m->n++];
        strcpy(kv->key, key);
    }
    strcpy(kv->value, value);
    return DEBA_OK;
}

deba_status deba_meta_set(deba_meta *m, const char *key, const char *fmt, ...)
{
    char value[sizeof m->kv[0].value + 1];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof value - 1) return DEBA_E_INPUT;
    return meta_put(m, key, value, NULL);
}

const char *deba_meta_get(const deba_meta *m, const char *key)
{
    const deba_kv *kv = meta_find(m, key);
    return kv ? kv->value : NULL;
}

deba_status deba_meta_get_double(const deba_meta *m, const char *path, const char *key, double *v, deba_err *e)
{
    const char *s = deba_meta_get(m, key);
    if (!s) return deba_err_set(e, DEBA_E_INPUT, "%s: missing key '%s'", path, key);
    char *end;
    double x = strtod(s, &end);
    if (!*s || *end || !isfinite(x))
        return deba_err_set(e, DEBA_E_INPUT, "%s: key '%s': not a finite number: '%s'", path, key, s);
    *v = x;
    return DEBA_OK;
}

deba_status deba_meta_get_int(const deba_meta *m, const char *path, const char *key, long *v, deba_err *e)
{
    const char *s = deba_meta_get(m, key);
    if (!s) return deba_err_set(e, DEBA_E_INPUT, "%s: missing key '%s'", path, key);
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (!*s || *end || errno == ERANGE)
        return deba_err_set(e, DEBA_E_INPUT, "%s: key '%s': not an integer: '%s'", path, key, s);
    *v = x;
    return DEBA_OK;
}

deba_status deba_meta_read(const char *path, deba_meta *out, deba_err *e)
{
    out->kv = NULL;
    out->n = out->cap = 0;
    deba_table *t;
    deba_status st = deba_table_read(path, &t, e);
    if (st != DEBA_OK) return st;
    size_t ck, cv;
    if ((st = deba_table_col(t, "key", &ck, e)) == DEBA_OK) st = deba_table_col(t, "value", &cv, e);
    /* Every writer of meta.csv writes a run's identity: a header alone is a truncated file, and
     * a run without keys would otherwise be skipped silently by calibration and reports. */
    if (st == DEBA_OK && deba_table_nrows(t) == 0)
        st = deba_err_set(e, DEBA_E_INPUT, "%s:1: a header and no keys (truncated meta.csv?)", path);
    for (size_t r = 0; r < deba_table_nrows(t) && st == DEBA_OK; r++) {
        const char *k = deba_table_str(t, r, ck), *v = deba_table_str(t, r, cv);
        size_t line = deba_table_line(t, r);
        if (meta_find(out, k))
            st = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: duplicate key '%s'", path, line, k);
        else if ((st = meta_put(out, k, v, e)) != DEBA_OK && e) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e->msg);
            deba_err_set(e, st, "%s:%zu: %s", path, line, msg);
        }
    }
    deba_table_free(t);
    if (st != DEBA_OK) deba_meta_free(out);
    return st;
}

deba_status deba_meta_write(const char *path, const deba_meta *m, deba_err *e)
{
    deba_atomic a;
    deba_status st = deba_atomic_open(&a, path, e);
    if (st != DEBA_OK) return st;
    fputs("key,value\n", a.f);
    /* SPEC keys first, in SPEC order; then the others in the order they were set. */
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < (pass ? m->n : DEBA_META_NKEYS); i++) {
            const deba_kv *kv = NULL;
            if (pass == 0) {
                kv = meta_find(m, DEBA_META_KEYS[i]);
            } else {
                size_t j = 0;
                while (j < DEBA_META_NKEYS && strcmp(m->kv[i].key, DEBA_META_KEYS[j]) != 0) j++;
                if (j == DEBA_META_NKEYS) kv = &m->kv[i];
            }
            if (!kv) continue;
            deba_csv_field(a.f, kv->key);
            fputc(',', a.f);
            deba_csv_field(a.f, kv->value);
            fputc('\n', a.f);
        }
    return deba_atomic_commit(&a, e);
}

void deba_meta_free(deba_meta *m)
{
    if (!m) return;
    free(m->kv);
    m->kv = NULL;
    m->n = m->cap = 0;
}

/* ---- profile, summary, thresholds, sweep ---- */

/* The public reader and writer of each kind are the generic ones with that kind's table. */
#define ROWS_RW(name, T, KIND_)                                                                   \
    deba_status deba_##name##_read(const char *path, T **rows, size_t *n, deba_err *e)            \
    {                                                                                             \
        void *p;                                                                                  \
        deba_status st = rows_read(path, &KIND_, &p, n, e);                                       \
        *rows = p;                                                                                \
        return st;                                                                                \
    }                                                                                             \
    deba_status deba_##name##_write(const char *path, const T *rows, size_t n, deba_err *e)       \
    {                                                                                             \
        return rows_write(path, &KIND_, rows, n, e);                                              \
    }

ROWS_RW(profile, deba_profile_row, PROFILE)
ROWS_RW(summary, deba_summary_row, SUMMARY)
ROWS_RW(thresholds, deba_thresholds_row, THRESHOLDS)
ROWS_RW(sweep, deba_sweep_row, SWEEP)

deba_status deba_thresholds_find(const deba_thresholds_row *rows, size_t n, const char *path,
                                 const char *arch, const char *dataset,
                                 const deba_thresholds_row **out, deba_err *e)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].arch, arch) == 0 && strcmp(rows[i].dataset, dataset) == 0) {
            if (*out)   /* rows gathered from several files: the reader could not see this */
                return deba_err_set(e, DEBA_E_INPUT, "two thresholds rows for %s/%s in %s; keep one", arch, dataset,
                                    path);
            *out = &rows[i];
        }
    if (*out) return DEBA_OK;
    return deba_err_set(e, DEBA_E_INPUT, "no thresholds row for %s/%s in %s", arch, dataset, path);
}
