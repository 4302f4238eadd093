/* The DEBA batch-size scheduler (SPEC §3): one call per epoch turns the epoch's gradient and
 * loss signals into a decision and the batch size of the next epoch. */
#ifndef DEBA_SCHED_H
#define DEBA_SCHED_H

#include <stddef.h>
#include <stdio.h>
#include "deba/error.h"

typedef enum {
    DEBA_METHOD_FIXED,  /* signals are computed, the batch size never changes */
    DEBA_METHOD_DEBA,
    DEBA_METHOD_COUNT
} deba_method;

typedef enum {
    DEBA_DEC_FIXED,
    DEBA_DEC_WARMUP,
    DEBA_DEC_COOLDOWN,
    DEBA_DEC_HOLD,
    DEBA_DEC_INCREASE,
    DEBA_DEC_ROLLBACK,
    DEBA_DEC_OOM,
    DEBA_DECISION_COUNT
} deba_decision;

const char *deba_method_name(deba_method m);      /* "fixed", "deba" */
int deba_method_parse(const char *s);             /* -1 when unknown */
const char *deba_decision_name(deba_decision d);  /* "fixed", "warmup", ... as in trace.csv */
int deba_decision_parse(const char *s);           /* -1 when unknown */

typedef struct {
    deba_method method;
    int b0, bmin, bmax;          /* 64, 32, 1024 */
    double tau, theta, lambda;   /* universal defaults 0.25, 0.5, 0.10 */
    int window;                  /* W = 15; 0 = full history */
    int cooldown;                /* C = 10 */
    double growth, rollback;     /* α = 1.5, β = 0.8 */
    double rho;                  /* ≤ 0 means the default max(θ, 1/θ) */
    double kappa;                /* 2 */
} deba_sched_config;

/* Fills the SPEC defaults (method deba, universal thresholds). */
void deba_sched_config_default(deba_sched_config *c);
/* Checks ranges: 1 ≤ bmin ≤ b0 ≤ bmax, thresholds > 0 and finite, growth > 1, 0 < rollback < 1,
 * window ≥ 0, cooldown ≥ 0; the message names the option (e.g. "--tau"). */
deba_status deba_sched_config_check(const deba_sched_config *c, deba_err *e);

/* What one epoch produced and decided. */
typedef struct {
    int epoch;            /* t, from 1 */
    int batch_size;       /* B used during epoch t */
    int next_batch_size;  /* B for epoch t+1 */
    double grad_var, grad_norm, train_loss;
    double norm_var, loss_var, confidence;
    deba_decision decision;
} deba_epoch_result;

typedef struct deba_sched deba_sched;

deba_sched *deba_sched_new(const deba_sched_config *c, deba_err *e);
void deba_sched_free(deba_sched *s);
const deba_sched_config *deba_sched_config_of(const deba_sched *s);
int deba_sched_batch(const deba_sched *s);   /* the batch size for the coming epoch */
int deba_sched_epoch(const deba_sched *s);   /* epochs stepped so far */
int deba_sched_bmax(const deba_sched *s);    /* current B_max (lowered by an OOM) */

/* End of epoch t = deba_sched_epoch(s) + 1: computes norm_var, loss_var, confidence from the
 * history, decides, updates B for the next epoch. */
void deba_sched_step(deba_sched *s, double grad_var, double grad_norm, double train_loss,
                     deba_epoch_result *out);

/* The batch size deba_sched_batch() proposed did not fit in memory: B goes back to `fits`
 * (the size that last ran) and becomes B_max for the rest of the run. Counts as an
 * adaptation for the cooldown. The trainer logs the epoch's decision as `oom`. */
void deba_sched_oom(deba_sched *s, int fits);

/* Checkpointing: the whole state (config, history, B, last adaptation) as a versioned binary
 * blob. _load validates and fails with DEBA_E_INPUT on a corrupt or foreign blob. */
deba_status deba_sched_save(const deba_sched *s, FILE *f, deba_err *e);
deba_sched *deba_sched_load(FILE *f, deba_err *e);

/* ---- DEBA-run metrics (SPEC §5) ---- */
/* (increases − rollbacks) / max(1, epochs whose decision was possible: hold, increase,
 * rollback). */
double deba_aggressiveness(const deba_decision *d, size_t n);
/* Population std of train_loss over the run. */
double deba_convergence_stability(const double *train_loss, size_t n);

#endif
