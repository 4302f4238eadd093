/* Comparisons of SPEC §6 computed from loaded run directories: per-run metrics, seeds pooled only
 * when their whole configuration matches, each condition paired seed by seed with the `fixed`
 * group of the same configuration, and 95% confidence intervals of the paired differences. */
#ifndef DEBA_ANALYZE_H
#define DEBA_ANALYZE_H

#include <math.h>
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

/* A paired comparison: the mean and sample std of per-seed differences (condition − fixed, over
 * the seeds both ran), their 95% confidence interval (lo = hi = NAN when n < 2) and n. */
typedef struct {
    double mean, std, lo, hi;
    int n;
} deba_pd;

#define DEBA_PD_NONE ((deba_pd){NAN, NAN, NAN, NAN, 0})

/* The meta.csv keys two runs must agree on to be pooled (SPEC §6); a key a run's meta.csv lacks
 * reads "(absent)", equal only to itself. The first DEBA_CFG_NPAIR keys are the ones a condition
 * and its fixed baseline must share; the rest configure the scheduler (and the label). */
extern const char *const DEBA_CFG_KEYS[];
extern const size_t DEBA_CFG_NKEYS, DEBA_CFG_NPAIR;

typedef enum { DEBA_CI_T, DEBA_CI_BOOTSTRAP } deba_ci_method;

typedef struct {
    deba_ci_method ci;          /* DEBA_CI_T (default) or a percentile bootstrap */
    int resamples;              /* bootstrap resamples (default 10000) */
    unsigned long long seed;    /* bootstrap seed (default 1): the same seed gives the same intervals */
} deba_analysis_opts;

void deba_analysis_opts_default(deba_analysis_opts *o);

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

/* One (arch, dataset, label, configuration) over its included seeds, and against the fixed
 * baseline of the same configuration. */
typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX], label[DEBA_NAME_MAX];
    char *config;               /* NULL when its (arch, dataset, label) ran one configuration;
                                   else "key=value, ..." for the keys that tell its configurations
                                   apart (malloc'd, freed with the analysis) */
    int nseeds;
    int epochs;                 /* common trace length; -1 when the seeds disagree */
    size_t *members;            /* indices into deba_analysis.runs, included runs only */
    deba_ms final_acc, best_acc, time, throughput, aggressiveness, conv_stability, S;
    /* vs the fixed group of the same configuration (scheduler keys aside); has_baseline = 0 for
     * fixed itself or when there is none. Only seeds both groups ran count: dacc and
     * speedup_pct are the per-seed differences final_acc − fixed's and (T_fixed − T)/T_fixed·100;
     * speedup_x and throughput_x are ratios of the paired seeds' means. */
    int has_baseline;
    int baseline;               /* index into groups, -1 when none */
    deba_pd dacc, speedup_pct;
    double speedup_x, throughput_x;
    int unpaired, baseline_unpaired;   /* seeds only this group ran, only its baseline ran */
} deba_group;

/* Columns of a profile_summary.csv beyond SPEC §7's (deba-profile's verdict: archetype shares,
 * enough_epochs, recommended thresholds, recommendation, ...), kept by name for the report. */
typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    size_t n;
    char **keys, **values;      /* n each, malloc'd */
} deba_verdict;

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
    deba_verdict *verdicts;     size_t nverdicts;   /* rows of profile_summary.csv with extra columns */
    deba_ci_method ci;          /* how the intervals were made */
} deba_analysis;

/* Computes everything from already loaded runs (deba_runs_load); runs must outlive a. A run
 * whose meta.csv arch, dataset or label is not a name (deba_name_ok: they title figures and
 * name their files) is DEBA_E_INPUT naming the file and key. */
deba_status deba_analysis_run(const deba_run *runs, size_t nruns, deba_analysis *a, deba_err *e);
/* The same with a choice of interval (deba_analysis_run: t intervals). */
deba_status deba_analysis_run_opts(const deba_run *runs, size_t nruns, const deba_analysis_opts *o, deba_analysis *a,
                                   deba_err *e);
/* Walks the roots (deba_walk, the same walk as deba_runs_load) for profile_summary.csv,
 * thresholds.csv and sweep.csv and reads them into a; every path the walk skipped (a symlink
 * into a directory already walked, too deep) becomes one of a's warnings. An arch or dataset
 * in those files that deba_name_ok refuses is DEBA_E_INPUT. */
deba_status deba_analysis_load_extras(deba_analysis *a, const char *const *roots, size_t nroots,
                                      deba_err *e);
void deba_analysis_free(deba_analysis *a);
/* Index of the first group of (arch, dataset, label), -1 when absent. */
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
