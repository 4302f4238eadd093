/* The run files of SPEC §7: trace.csv, meta.csv, profile.csv, profile_summary.csv,
 * thresholds.csv, sweep.csv. Readers find columns by name, accept extra columns and any order,
 * and reject missing columns, ragged rows, non-numeric or non-finite values with
 * file:line and column. Writers are atomic; trace.csv is also appendable row by row. */
#ifndef DEBA_TRACE_H
#define DEBA_TRACE_H

#include <stddef.h>
#include <stdio.h>
#include "deba/error.h"
#include "deba/sched.h"
#include "deba/stats.h"

#define DEBA_FORMAT_VERSION 1
#define DEBA_NAME_MAX 64
#define DEBA_TEXT_MAX 2048   /* a free-text column (profile_summary.csv's recommendation) */

/* ---- trace.csv: one row per epoch ---- */
typedef struct {
    int epoch, batch_size, steps;
    double lr, train_loss, train_acc, test_loss, test_acc;
    double grad_var, grad_norm, norm_var, loss_var, confidence;
    deba_decision decision;
    double epoch_time_s, compute_time_s, data_time_s, signal_time_s, eval_time_s, samples_per_s;
} deba_trace_row;

typedef struct {
    deba_trace_row *rows;
    size_t n, cap;
} deba_trace;

/* The header line of trace.csv, without newline, columns in SPEC order. */
extern const char DEBA_TRACE_HEADER[];

deba_status deba_trace_read(const char *path, deba_trace *out, deba_err *e);
deba_status deba_trace_write(const char *path, const deba_trace *t, deba_err *e); /* atomic */
deba_status deba_trace_push(deba_trace *t, const deba_trace_row *r, deba_err *e);
void deba_trace_free(deba_trace *t);   /* frees rows, leaves an empty trace */
/* Appending while training: _append_open creates the file with its header (or opens an
 * existing one for append); _append_row writes one whole row, then fflush and fsync. */
deba_status deba_trace_append_open(const char *path, FILE **f, deba_err *e);
deba_status deba_trace_append_row(FILE *f, const char *path, const deba_trace_row *r, deba_err *e);

/* ---- meta.csv: key,value ---- */
typedef struct {
    char key[DEBA_NAME_MAX];
    char value[512];
} deba_kv;

typedef struct {
    deba_kv *kv;
    size_t n, cap;
} deba_meta;

/* The SPEC's keys in their order; writers put these first, in this order, then any others. */
extern const char *const DEBA_META_KEYS[];
extern const size_t DEBA_META_NKEYS;

deba_status deba_meta_set(deba_meta *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *deba_meta_get(const deba_meta *m, const char *key);    /* NULL when absent */
/* Typed getters: a missing key or a bad value is DEBA_E_INPUT naming `path` and the key. */
deba_status deba_meta_get_double(const deba_meta *m, const char *path, const char *key, double *v, deba_err *e);
deba_status deba_meta_get_int(const deba_meta *m, const char *path, const char *key, long *v, deba_err *e);
deba_status deba_meta_read(const char *path, deba_meta *out, deba_err *e);
deba_status deba_meta_write(const char *path, const deba_meta *m, deba_err *e);  /* atomic */
void deba_meta_free(deba_meta *m);

/* ---- per-seed profile, per-(arch, dataset) summary, thresholds, sweep ---- */
typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    int seed, epochs;
    double S, cv_grad_var, mean_norm_var, mean_loss_var, final_test_acc;
} deba_profile_row;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    int seeds;
    double S_mean, S_std;
    deba_archetype archetype;
    /* The verdict of deba-profile (profiler/profile.h; columns after the others, optional: a file
     * written before them reads with bootstrap = 0, throughput_gain = -1, the rest 0 and ""). */
    int epochs;                             /* epochs of the shortest run profiled */
    int bootstrap, bootstrap_seed;          /* resamples behind share[] (0: no verdict) and their seed */
    double share[DEBA_ARCHETYPE_COUNT];     /* archetype_share_<name>: share of resamples, 0-1 */
    int enough_epochs, enough_seeds;        /* 1: >= 30 epochs, >= 3 seeds (the paper's cut-offs apply) */
    double tau, theta, lambda;              /* the thresholds to use (thresholds.csv) */
    int throughput_gain;                    /* the sweep: 1 gain, 0 none measurable, -1 no sweep or no spread */
    char recommendation[DEBA_TEXT_MAX];
} deba_summary_row;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    double tau, theta, lambda;
    int epochs_used, runs_used;
} deba_thresholds_row;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    int batch_size, steps;
    double samples_per_s, epoch_time_s, grad_var, compute_util;   /* medians over the repeats */
    /* optional columns: a file without them reads as repeats = 1, min = max = 0 (not recorded) */
    int repeats;
    double samples_per_s_min, samples_per_s_max;
} deba_sweep_row;

/* Each reader allocates *rows (free() it) and sets *n; each writer is atomic. */
deba_status deba_profile_read(const char *path, deba_profile_row **rows, size_t *n, deba_err *e);
deba_status deba_profile_write(const char *path, const deba_profile_row *rows, size_t n, deba_err *e);
deba_status deba_summary_read(const char *path, deba_summary_row **rows, size_t *n, deba_err *e);
deba_status deba_summary_write(const char *path, const deba_summary_row *rows, size_t n, deba_err *e);
deba_status deba_thresholds_read(const char *path, deba_thresholds_row **rows, size_t *n, deba_err *e);
deba_status deba_thresholds_write(const char *path, const deba_thresholds_row *rows, size_t n, deba_err *e);
deba_status deba_sweep_read(const char *path, deba_sweep_row **rows, size_t *n, deba_err *e);
deba_status deba_sweep_write(const char *path, const deba_sweep_row *rows, size_t n, deba_err *e);
/* The row for (arch, dataset); DEBA_E_INPUT "no thresholds row for <arch>/<dataset> in <path>". */
deba_status deba_thresholds_find(const deba_thresholds_row *rows, size_t n, const char *path,
                                 const char *arch, const char *dataset,
                                 const deba_thresholds_row **out, deba_err *e);

/* ---- run directories ---- */
/* "<out>/<arch>/<dataset>/<label>/seed<seed>" into buf (cap bytes); DEBA_E_INPUT when too long. */
deba_status deba_run_dir(char *buf, size_t cap, const char *out, const char *arch, const char *dataset,
                         const char *label, int seed, deba_err *e);
/* mkdir -p */
deba_status deba_mkdirs(const char *path, deba_err *e);

/* A run found under some root: its directory, meta and trace, loaded. */
typedef struct {
    char dir[4096];
    deba_meta meta;
    deba_trace trace;
} deba_run;

/* Walks each root recursively for directories holding meta.csv and trace.csv, in sorted path
 * order, and loads them. A root that does not exist is DEBA_E_INPUT; a corrupt file stops the
 * walk with its error. *runs is an array of *n; free with deba_runs_free. */
deba_status deba_runs_load(const char *const *roots, size_t nroots, deba_run **runs, size_t *n, deba_err *e);
void deba_runs_free(deba_run *runs, size_t n);

#endif
