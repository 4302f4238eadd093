/* What a training loop outside deba-train (a PyTorch script, a C++ trainer) needs to produce a run
 * the tools read exactly like deba-train's: an epoch accumulator over per-step gradient moments
 * (the SPEC §2 formulas stay in deba/stats.h) and a run writer for trace.csv and meta.csv. */
#ifndef DEBA_RUN_H
#define DEBA_RUN_H

#include <stddef.h>
#include <stdint.h>
#include "deba/error.h"
#include "deba/sched.h"
#include "deba/stats.h"
#include "deba/trace.h"

/* ---- epoch accumulator ---- */

/* One epoch's steps: the per-step gradient statistics (deba_gradacc) and the loss and accuracy
 * sums deba-train keeps. */
typedef struct {
    deba_gradacc grad;
    double loss_sum;     /* Σ over samples of the per-sample training loss */
    int64_t samples;
    int64_t correct;
    int diverged;        /* a step with a non-finite loss was added (and not counted) */
} deba_epochacc;

void deba_epochacc_reset(deba_epochacc *a);
/* One optimizer step: Σg and Σg² over all d gradient entries, the step's summed loss (mean loss
 * × samples), its sample count and correct predictions. A non-finite loss marks the epoch
 * diverged, as deba-train does; d < 1, samples < 1 or correct outside [0, samples] is DEBA_E_INPUT
 * naming the argument, and nothing is added. */
deba_status deba_epochacc_add(deba_epochacc *a, double grad_sum, double grad_sumsq, int64_t d, double loss_sum,
                              int64_t samples, int64_t correct, deba_err *e);
/* Fills the row's steps, train_loss (sample-weighted), train_acc (percent), grad_var and
 * grad_norm from the epoch, with deba-train's arithmetic. An empty epoch is DEBA_E_INPUT. */
deba_status deba_epochacc_fill(const deba_epochacc *a, deba_trace_row *row, deba_err *e);

/* ---- scheduler state as bytes (for bindings that have no FILE *) ---- */

/* deba_sched_save into a new buffer (free it with deba_free). */
deba_status deba_sched_to_bytes(const deba_sched *s, void **buf, size_t *len, deba_err *e);
/* deba_sched_load from len bytes: DEBA_E_INPUT on a corrupt, truncated or foreign blob, or on
 * bytes left over after it. */
deba_sched *deba_sched_from_bytes(const void *buf, size_t len, deba_err *e);
void deba_free(void *p);

/* ---- meta.csv of a run ---- */

/* Everything meta.csv says about a run. deba-train and the run writer both write meta.csv
 * through deba_run_meta_write, so the key set, order and number formats cannot drift apart. */
typedef struct {
    const char *arch, *dataset, *label;
    unsigned long long seed;
    int epochs;
    const deba_sched_config *sched;
    int bmax;                                  /* current B_max (lowered by an OOM) */
    double lr, momentum, weight_decay;
    const char *device, *device_name, *precision;
    long long params;
    const char *started_utc;
    double final_test_acc, best_test_acc, total_train_time_s;
    int image_size, subset, test_subset;
    const char *lr_scaling, *thresholds_source;
    /* a network imported from a model file (deba-train --model); model NULL: a built-in one,
     * and none of these keys is written */
    const char *model;                         /* the path as given */
    const char *model_sha256, *model_producer; /* of the file's bytes; "name version" */
    int model_opset;
    const char *init;                          /* onnx (the file's weights) | seeded */
} deba_run_meta;

/* Sets every key of f in m (keys m already holds that f does not name stay), status, the finish
 * time unless status is "running", and `error` when not NULL; then writes m to path atomically.
 * A model file's keys (model, model_sha256, model_opset, model_producer, init) follow the
 * others, so a built-in run's meta.csv is the same as before they existed.
 * A value too long for meta.csv is DEBA_E_INPUT naming path and key. */
deba_status deba_run_meta_write(const char *path, deba_meta *m, const deba_run_meta *f, const char *status,
                                const char *error, deba_err *e);
/* The current UTC time as meta.csv writes it: 2026-11-30T15:00:00Z. */
void deba_utc_now(char *buf, size_t cap);

/* ---- run writer ---- */

/* Everything meta.csv records about a run; strings may be NULL for their defaults. */
typedef struct {
    const char *out;               /* root of run directories ("runs") */
    const char *arch, *dataset;    /* path components: deba_name_ok names */
    const char *label;             /* NULL: the method name, as deba-train */
    long long seed;                /* 0 .. INT_MAX */
    deba_sched_config sched;       /* method fixed: the batch size stays sched.b0 */
    int epochs;                    /* planned epochs; 0: not known, meta's epochs follows the rows */
    double lr, momentum, weight_decay;
    const char *lr_scaling;        /* none | linear | sqrt (NULL: none) */
    const char *device;            /* NULL: "cpu" */
    const char *device_name;       /* NULL: "" */
    const char *precision;         /* NULL: "fp32" */
    long long params;              /* trainable parameters, ≥ 0 */
    int image_size, subset, test_subset;   /* 0 when they do not apply */
    const char *thresholds_source; /* NULL: "command line" */
    int resume;                    /* continue the run in the directory from its trace */
    int force;                     /* remove a run in the directory and start over */
    int keep_rows;                 /* with resume: keep only the first N trace rows (the epoch of the
                                      caller's own checkpoint); -1 keeps them all */
} deba_run_config;

/* Defaults: method deba with the SPEC thresholds, lr 0.01, momentum 0.9, weight decay 5e-4,
 * out "runs", keep_rows -1; arch and dataset must be set. */
void deba_run_config_default(deba_run_config *c);

typedef struct deba_runwriter deba_runwriter;

/* Creates <out>/<arch>/<dataset>/<label>/seed<seed>/, takes its lock (deba/runlock.h) for the
 * writer's life, and refuses a directory that already holds a run unless resume or force, as
 * deba-train does. resume: meta.csv must record the same settings; a torn last row is dropped,
 * the scheduler is rebuilt by replaying the trace's rows (each replayed decision, batch size and
 * signal must match the row, or the trace is not this configuration's), and rows are appended
 * after them. Writes meta.csv with status running. Bad config or directory: DEBA_E_INPUT. */
deba_runwriter *deba_runwriter_open(const deba_run_config *c, deba_err *e);
/* Closes the files and releases the lock without writing (meta.csv keeps what it last said, as
 * after a kill); NULL is a no-op. */
void deba_runwriter_free(deba_runwriter *w);

const char *deba_runwriter_dir(const deba_runwriter *w);
/* The writer's scheduler (owned by the writer): its batch size is the next epoch's. */
deba_sched *deba_runwriter_sched(deba_runwriter *w);
int deba_runwriter_epochs(const deba_runwriter *w);  /* rows written, resumed ones included */
/* 1 once a row was non-finite: the run is over with status diverged. */
int deba_runwriter_diverged(const deba_runwriter *w);

/* The batch size the scheduler proposed did not fit: the epoch runs at `fits` instead and its
 * row's decision is `oom` (deba_sched_oom). */
void deba_runwriter_oom(deba_runwriter *w, int fits);

/* Ends the epoch. The caller fills the measured columns (steps, lr, train_loss, train_acc,
 * test_loss, test_acc, grad_var, grad_norm, the times and samples_per_s; deba_epochacc_fill does
 * the first ones); the writer sets epoch and batch_size, steps the scheduler, fills norm_var,
 * loss_var, confidence and decision, appends the row to trace.csv (flushed and synced) and
 * rewrites meta.csv. A measured value that is out of range (a negative loss, an accuracy above
 * 100) is DEBA_E_INPUT naming the column, with nothing written or stepped. A non-finite value
 * ends the run as deba-train does: no row, meta status diverged, *diverged = 1 (may be NULL),
 * DEBA_OK; later calls are DEBA_E_INPUT. More rows than the planned epochs is DEBA_E_INPUT. */
deba_status deba_runwriter_append(deba_runwriter *w, deba_trace_row *row, int *diverged, deba_err *e);

/* Finishes the run: meta.csv with `status` (completed, interrupted, failed or diverged; NULL:
 * completed when the planned epochs are done or none were planned, else interrupted) and, for
 * failed, `error` as its message; closes trace.csv and releases the lock. A second close is
 * DEBA_E_INPUT. The writer stays readable until deba_runwriter_free. */
deba_status deba_runwriter_close(deba_runwriter *w, const char *status, const char *error, deba_err *e);

/* sizeof the public structs, for bindings to check the layout they mirror: "deba_trace_row",
 * "deba_sched_config", "deba_run_config", "deba_epoch_result", "deba_err", "deba_epochacc";
 * 0 for any other name. */
size_t deba_abi_sizeof(const char *type);

#endif
