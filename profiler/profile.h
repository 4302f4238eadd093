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
#define DEBA_SWEEP_REPEATS 3              /* --repeats default */
#define DEBA_SWEEP_MIN_TIME_S 0.5         /* --sweep-min-time default: measured seconds per repeat */
#define DEBA_VERDICT_MIN_EPOCHS 30        /* below: the paper's cut-offs do not apply yet */
#define DEBA_VERDICT_MIN_SEEDS 3
#define DEBA_BOOTSTRAP_B 1000             /* --bootstrap default */
#define DEBA_BOOTSTRAP_SEED 1             /* --bootstrap-seed default */

/* ---- stability profile from existing run directories ---- */

/* One requested seed and what its run directory holds. */
typedef struct {
    int seed;
    char dir[4096];
    char status[16];       /* meta status: completed, diverged, running, interrupted */
    int used;              /* 1: completed, part of S̄, σ_S and the thresholds */
    deba_profile_row row;  /* valid when used */
    double *signals;       /* (row.epochs, 3): grad_var, norm_var, loss_var of epochs 1..n, for the
                              bootstrap; valid when used */
} deba_profile_seed;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    deba_profile_seed *seeds;   /* every seed looked at, in the order asked (or seed order) */
    size_t n_seeds;
    deba_profile_row *rows;     /* the used seeds only: profile.csv */
    size_t n_rows;
    deba_summary_row summary;   /* profile_summary.csv, the verdict columns included */
    deba_thresholds_row thresholds;  /* thresholds.csv, calibrated by calib/calib.h */
} deba_profile;

/* S̄ (mean), σ_S (sample std, n − 1; 0 for one seed) and the archetype of rows[0..n-1]. */
void deba_profile_summarize(const deba_profile_row *rows, size_t n, deba_summary_row *out);

/* Reads <out>/<arch>/<dataset>/fixed/seed<s>/{meta,trace}.csv for each of seeds[0..n_seeds-1]
 * (n_seeds = 0: every run found under .../fixed/) and computes each completed seed's S and its
 * terms (SPEC §5, epochs t >= 2), S̄, σ_S, the archetype and the SPEC §4 thresholds, then the
 * verdict (deba_profile_verdict, DEBA_BOOTSTRAP_B resamples from DEBA_BOOTSTRAP_SEED, with
 * <out>/<arch>/<dataset>/sweep.csv when it exists). Diverged or unfinished seeds are listed in
 * p->seeds with used = 0 and left out. A missing run, a run that is not a fixed-batch run of this
 * (arch, dataset), a trace whose epochs are not 1..n, fewer than 2 epochs, no completed seed at
 * all, or a sweep.csv that does not read is DEBA_E_INPUT. Free with deba_profile_free. */
deba_status deba_profile_compute(const char *out, const char *arch, const char *dataset, const int *seeds,
                                 size_t n_seeds, deba_profile *p, deba_err *e);

/* ---- the verdict: should I use DEBA on this network, and with which thresholds? ---- */

/* A bootstrap over seeds and epochs: each of B resamples draws the used seeds with replacement
 * and, within each drawn seed's trace, its epochs t >= 2 with replacement (epoch 1 stays out, as
 * in S), recomputes S per drawn seed, then S̄, σ_S and the archetype. share[a] is the fraction of
 * resamples in archetype a. The same (p, B, seed) gives the same shares. B < 1 is DEBA_E_INPUT. */
deba_status deba_profile_bootstrap(const deba_profile *p, int B, uint64_t seed, double share[DEBA_ARCHETYPE_COUNT],
                                   deba_err *e);

/* What a batch sweep supports about throughput for one (arch, dataset). Only sizes that fit
 * (steps > 0) count; the reference is the smallest of them. A gain is claimed only when a larger
 * size's samples/s interval [min, max] over its repeats lies wholly above the reference's. */
typedef struct {
    int gain;            /* 1 gain, 0 no measurable gain, -1 cannot tell (see why) */
    const char *why;     /* gain = -1: "no sweep", "one size", "one measurement" */
    int sizes;           /* distinct sizes that fit */
    int repeats;         /* fewest repeats among them */
    int ref_batch, best_batch, largest_batch;
    double ratio;        /* gain = 1: median samples/s of best_batch over the reference's */
} deba_sweep_cmp;

void deba_sweep_compare(const deba_sweep_row *rows, size_t n, const char *arch, const char *dataset,
                        deba_sweep_cmp *out);
/* The sentence a sweep supports (for the sweep's output and the report's figure). 0, or -1 when
 * cap is too small. */
int deba_sweep_reading(char *buf, size_t cap, const deba_sweep_cmp *c);

/* Fills p->summary's verdict columns: the bootstrap shares (B resamples from seed), whether the
 * shortest run (>= DEBA_VERDICT_MIN_EPOCHS epochs) and the seeds (>= DEBA_VERDICT_MIN_SEEDS) are
 * enough for the paper's cut-offs, the thresholds to use, what the sweep rows of this
 * (arch, dataset) say about throughput (sweep may be NULL), and the recommendation text. */
deba_status deba_profile_verdict(deba_profile *p, const deba_sweep_row *sweep, size_t nsweep, int B, uint64_t seed,
                                 deba_err *e);
void deba_profile_free(deba_profile *p);   /* leaves an empty profile; NULL is a no-op */

/* Writes profile.csv, profile_summary.csv and thresholds.csv into dir (atomic each). */
deba_status deba_profile_save(const char *dir, const deba_profile *p, deba_err *e);

/* The profile for a person: per-seed S, S̄ ± σ_S, the archetype with what it means for DEBA, τ,
 * θ, λ, then the recommendation block (the verdict columns, one sentence a line). Seeds left
 * out are named with their status. */
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
    int bootstrap;              /* verdict resamples; 0: DEBA_BOOTSTRAP_B */
    uint64_t bootstrap_seed;    /* used when bootstrap > 0 */
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
    int steps;                  /* at least this many measured steps per repeat */
    int repeats;                /* R timed repeats per size (0: DEBA_SWEEP_REPEATS) */
    double min_time_s;          /* the first repeat also runs until this much measured time (< 0:
                                   DEBA_SWEEP_MIN_TIME_S; 0: steps only) */
    FILE *log;                  /* one line per size; NULL: none */
} deba_sweep_config;

/* At each batch size: one untimed warm-up step, then R repeats of K steps, each from the same
 * initial state (weights, BN statistics, momentum, data order, dropout stream restored before
 * every repeat). K = max(steps, the steps the first repeat needed to reach min_time_s), the same
 * for every repeat of that size. One sweep.csv row per size: samples_per_s and epoch_time_s from
 * the median per-step time over the repeats, grad_var and compute_util the medians, and the
 * min and max samples/s. A size that does not fit in memory gets a row with steps = 0 and every
 * measurement 0, and the sweep goes on. *rows: free() it.
 * Test hook: DEBA_TEST_SWEEP_S_PER_SAMPLE=X replaces the clock: every step then takes X·B
 * seconds (throughput 1/X at every size), so tests see the timing logic without timing. */
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
