/* Comparisons of SPEC §6 computed from loaded run directories: per-run metrics, seeds grouped
 * by (arch, dataset, label), each condition paired with the `fixed` baseline of its pair. */
#ifndef DEBA_ANALYZE_H
#define DEBA_ANALYZE_H

#include <stdarg.h>
#include <stddef.h>
#include "deba/error.h"
#include "deba/trace.h"

/* Mean ± sample std (n − 1) over n values; std is NAN when n < 2, mean NAN when n = 0. */
typedef struct {
    double mean, std;
    int n;
} deba_ms;

deba_ms deba_ms_of(const double *x, size_t n);

/* What one run contributes. */
typedef struct {
    const deba_run *run;        /* borrowed from the array given to deba_analysis_run */
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX], label[DEBA_NAME_MAX];
    char status[32];
    int seed;
    int epochs;                 /* rows in trace.csv */
    int included;               /* completed and averaged */
    double final_acc, best_acc; /* meta final_test_acc / best_test_acc, else from the trace */
    double train_time;          /* Σ epoch_time_s */
    double throughput;          /* mean samples_per_s */
    double aggressiveness, conv_stability;
    double S;                   /* stability score (SPEC §5), NAN when the trace is too short */
    double final_batch;         /* batch size of the last epoch */
} deba_run_metrics;

/* One (arch, dataset, label) over its included seeds, and against the fixed baseline. */
typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX], label[DEBA_NAME_MAX];
    int nseeds;
    int epochs;                 /* common trace length; -1 when the seeds disagree */
    size_t *members;            /* indices into deba_analysis.runs, included runs only */
    deba_ms final_acc, best_acc, time, throughput, aggressiveness, conv_stability, S;
    /* vs the fixed group of the same (arch, dataset); has_baseline = 0 for fixed itself or
     * when there is none. dacc.mean = mean(cond) − mean(fixed); its std is over seeds present
     * in both (NAN with fewer than two). speedup_pct/x and throughput_x come from the means;
     * their std (speedup_pct only) is over paired seeds. */
    int has_baseline;
    int baseline;               /* index into groups, -1 when none */
    deba_ms dacc, speedup_pct;
    double speedup_x, throughput_x;
} deba_group;

typedef struct {
    deba_run_metrics *runs;
    size_t nruns;
    deba_group *groups;         /* sorted by arch, dataset, then fixed first, then label */
    size_t ngroups;
    char **warnings;            /* problems the report lists (missing baseline, ...) */
    size_t nwarnings;
    /* Files found under the roots (SPEC §7), concatenated. */
    deba_summary_row *summary;  size_t nsummary;
    deba_thresholds_row *thresholds; size_t nthresholds;
    deba_sweep_row *sweep;      size_t nsweep;
    int nsummary_files, nthresholds_files, nsweep_files;
} deba_analysis;

/* Computes everything from already loaded runs (deba_runs_load); runs must outlive a. A run
 * whose meta.csv arch, dataset or label is not a name (deba_name_ok: they title figures and
 * name their files) is DEBA_E_INPUT naming the file and key. */
deba_status deba_analysis_run(const deba_run *runs, size_t nruns, deba_analysis *a, deba_err *e);
/* Walks the roots (deba_walk, the same walk as deba_runs_load) for profile_summary.csv,
 * thresholds.csv and sweep.csv and reads them into a; every path the walk skipped (a symlink
 * into a directory already walked, too deep) becomes one of a's warnings. An arch or dataset
 * in those files that deba_name_ok refuses is DEBA_E_INPUT. */
deba_status deba_analysis_load_extras(deba_analysis *a, const char *const *roots, size_t nroots,
                                      deba_err *e);
void deba_analysis_free(deba_analysis *a);
/* Index of a group, -1 when absent. */
int deba_analysis_find(const deba_analysis *a, const char *arch, const char *dataset, const char *label);

/* Display name of a condition label for Table 3 ("deba" → "Baseline", ...); the label itself
 * when it is not one of the paper's ablations. */
const char *deba_condition_name(const char *label);
/* Order of the paper's conditions (deba, universal, cooldown2, cooldown5, fullhistory), then
 * other labels: a sort key. */
int deba_condition_rank(const char *label);

/* Synthetic run directories for tests and the benchmark: under root, narch architectures ×
 * ndata datasets × (fixed, deba) × nseeds seeds, `epochs` epochs each; deterministic in seed. */
deba_status deba_synth_runs(const char *root, int narch, int ndata, int nseeds, int epochs,
                            unsigned seed, deba_err *e);

/* Appends a printf-formatted copy to a growable list of strings (warnings, notes). */
deba_status deba_strlist_push(char ***list, size_t *n, deba_err *e, const char *fmt, va_list ap);

#endif
