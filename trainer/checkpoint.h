/* Checkpoints: everything a run needs to continue exactly where it stopped (parameters,
 * momentum, BN statistics, RNG states, scheduler, trace rows so far), written atomically and
 * checked by a CRC on load. */
#ifndef TR_CHECKPOINT_H
#define TR_CHECKPOINT_H

#include "deba/error.h"
#include "deba/sched.h"
#include "deba/trace.h"
#include "trainer/graph.h"
#include "trainer/rng.h"

typedef struct {
    char arch[64], dataset[64];
    uint64_t seed;
    int epoch;                   /* epochs completed */
    tr_rng data_rng, aug_rng;    /* shuffling and augmentation streams */
    double train_time_s;         /* Σ epoch_time_s so far */
    double best_test_acc;
} tr_ckpt_info;

/* Writes path atomically: info, graph parameters/momentum/stats/rng, scheduler, trace rows. */
deba_status tr_ckpt_save(const char *path, const tr_ckpt_info *info, const tr_graph *g,
                         const deba_sched *s, const deba_trace *t, deba_err *e);
/* Loads into an allocated graph of the same model (parameter count checked), replaces *s with
 * the saved scheduler and fills t. A corrupt, truncated or foreign file is DEBA_E_INPUT. */
deba_status tr_ckpt_load(const char *path, tr_ckpt_info *info, tr_graph *g, deba_sched **s,
                         deba_trace *t, deba_err *e);

#endif
