/* The library half of deba-profile: the stability profile of fixed-batch runs over seeds
 * (SPEC §5) with calibrated thresholds (SPEC §4), the batch-size sweep (SPEC §7 sweep.csv), and
 * study plans (docs/studies.md) that run or emit every run of an experiment. */
#ifndef DEBA_PROFILE_H
#define DEBA_PROFILE_H

#include <stddef.h>
#include <stdio.h>
#include "deba/error.h"
#include "deba/trace.h"
#include "trainer/train.h"

#define DEBA_PROFILE_MAX_SEEDS 64
#define DEBA_SWEEP_MAX_SIZES 64

/* ---- stability profile from existing run directories ---- */

/* One requested seed and what its run directory holds. */
typedef struct {
    int seed;
    char dir[4096];
    char status[16];       /* meta status: completed, diverged, running, interrupted */
    int used;              /* 1: completed, part of S̄, σ_S and the thresholds */
    deba_profile_row row;  /* valid when used */
} deba_profile_seed;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    deba_profile_seed *seeds;   /* every seed looked at, in the order asked (or seed order) */
    size_t n_seeds;
    deba_profile_row *rows;     /* the used seeds only: profile.csv */
    size_t n_rows;
    deba_summary_row summary;   /* profile_summary.csv */
    deba_thresholds_row thresholds;  /* thresholds.csv, calibrated by calib/calib.h */
} deba_profile;

/* S̄ (mean), σ_S (sample std, n − 1; 0 for one seed) and the archetype of rows[0..n-1]. */
void deba_profile_summarize(const deba_profile_row *rows, size_t n, deba_summary_row *out);

/* Reads <out>/<arch>/<dataset>/fixed/seed<s>/{meta,trace}.csv for each of seeds[0..n_seeds-1]
 * (n_seeds = 0: every run found under .../fixed/) and computes each completed seed's S and its
 * terms (SPEC §5, epochs t >= 2), S̄, σ_S, the archetype and the SPEC §4 thresholds. Diverged or
 * unfinished seeds are listed in p->seeds with used = 0 and left out. A missing run, a run that
 * is not a fixed-batch run of this (arch, dataset), a trace whose epochs are not 1..n, fewer
 * than 2 epochs, or no completed seed at all is DEBA_E_INPUT. Free with deba_profile_free. */
deba_status deba_profile_compute(const char *out, const char *arch, const char *dataset, const int *seeds,
                                 size_t n_seeds, deba_profile *p, deba_err *e);
void deba_profile_free(deba_profile *p);   /* leaves an empty profile; NULL is a no-op */

/* Writes profile.csv, profile_summary.csv and thresholds.csv into dir (atomic each). */
deba_status deba_profile_save(const char *dir, const deba_profile *p, deba_err *e);

/* The verdict for a person: per-seed S, S̄ ± σ_S, the archetype with what it means for DEBA,
 * and τ, θ, λ. Seeds left out are named with their status. */
void deba_profile_print(FILE *f, const deba_profile *p);

/* ---- training through the library, reusing what is already there ---- */

/* What deba_profile_train found and did for one run directory. */
typedef enum {
    DEBA_RUN_TRAINED,   /* trained from scratch */
    DEBA_RUN_RESUMED,   /* continued from its checkpoint */
    DEBA_RUN_REUSED,    /* already completed (or diverged) with these settings: not touched */
    DEBA_RUN_ACTION_COUNT
} deba_run_action;

/* Runs c (label, seed, method as given) unless its run directory already holds a completed or
 * diverged run of the same settings, which is reused without writing anything. A run with a
 * checkpoint resumes; one that stopped before its first checkpoint starts over. With c->force
 * the run always starts over. A finished run whose meta.csv disagrees with c (epochs, batch0,
 * method, lr, momentum, weight_decay, subset, image_size) is DEBA_E_INPUT suggesting --force.
 * r->status is completed, diverged or interrupted. */
deba_status deba_profile_train(const tr_train_config *c, deba_run_action *action, tr_train_result *r,
                               deba_err *e);

typedef struct {
    tr_train_config train;      /* arch, dataset, data, out, epochs, batch (sched.b0), lr, device,
                                   force, quiet...; method, label and seed are set per seed */
    int seeds[DEBA_PROFILE_MAX_SEEDS];
    int n_seeds;
    FILE *log;                  /* one line per seed (trained, resumed, reused, diverged); NULL: none */
} deba_profile_config;

/* Trains (or reuses, or resumes) one fixed-batch run per seed, label "fixed", then computes the
 * profile from the run directories. An interrupted run (tr_train_stop_requested) stops the
 * profile with DEBA_E_RUNTIME; every seed diverging is DEBA_E_RUNTIME too. */
deba_status deba_profile_run(const deba_profile_config *c, deba_profile *p, deba_err *e);

/* ---- batch-size sweep ---- */

typedef struct {
    tr_train_config train;      /* arch, dataset, data, subset, image_size, augment, device, seed,
                                   lr, momentum, weight_decay */
    int sizes[DEBA_SWEEP_MAX_SIZES];
    int n_sizes;
    int steps;                  /* K measured steps per size (after one untimed warm-up step) */
    FILE *log;                  /* one line per size; NULL: none */
} deba_sweep_config;

/* Trains K steps at each batch size from the same initial state (weights, BN statistics,
 * momentum, data order, dropout stream restored before each size) and fills one sweep.csv row per
 * size. A size that does not fit in memory gets a row with steps = 0 and every measurement 0,
 * and the sweep goes on. *rows: free() it. */
deba_status deba_sweep_run(const deba_sweep_config *c, deba_sweep_row **rows, size_t *n, deba_err *e);

/* ---- study plans (docs/studies.md) ---- */

typedef struct deba_plan deba_plan;

/* Parses a plan file. Every error is DEBA_E_INPUT with "file:line: message". */
deba_plan *deba_plan_load(const char *path, deba_err *e);
void deba_plan_free(deba_plan *p);
size_t deba_plan_count(const deba_plan *p);   /* runs in the study */

/* Writes one deba-train command line per run to jobs_path (runs that need calibrated thresholds
 * last), study.sbatch next to it (a Slurm array job running line $SLURM_ARRAY_TASK_ID), and, when
 * some condition calibrates, calibrate.sh next to it (one deba-calibrate per arch and dataset).
 * Existing files are DEBA_E_INPUT unless force. A summary goes to log (may be NULL). */
deba_status deba_plan_emit(const deba_plan *p, const char *jobs_path, int force, FILE *log, deba_err *e);

/* Runs the study in order (arch, dataset, condition, seed) through the library; completed runs
 * are skipped, interrupted ones resume. A condition with `thresholds = calibrate` first writes
 * <out>/<arch>/<dataset>/{profile,profile_summary,thresholds}.csv from the `fixed` runs. */
deba_status deba_plan_run(const deba_plan *p, int quiet, FILE *log, deba_err *e);

#endif
