/* Checkpoints: everything a run needs to continue exactly where it stopped (parameters,
 * momentum, BN statistics, RNG states, scheduler, trace rows so far, and, inside an epoch, the
 * position in the epoch's sample order), written atomically and checked by a CRC on load. */
#ifndef TR_CHECKPOINT_H
#define TR_CHECKPOINT_H

#include "deba/error.h"
#include "deba/sched.h"
#include "deba/stats.h"
#include "deba/trace.h"
#include "trainer/graph.h"
#include "trainer/rng.h"

/* Where a checkpoint written inside an epoch stands (format version 2): enough to replay the
 * rest of the epoch exactly as an uninterrupted run would. */
typedef struct {
    int active;                  /* 1: written inside epoch `epoch`; 0: at the end of an epoch */
    int epoch;                   /* the epoch in progress (epochs completed + 1) */
    int batch_size, oom;         /* the epoch's batch size, and whether an OOM set it (SPEC §8) */
    int steps;                   /* steps done in this epoch */
    int64_t samples, correct;    /* samples seen and classified right so far in this epoch */
    double loss_sum;             /* Σ per-sample loss so far */
    double train_time_s, compute_s, data_s, signal_s;   /* epoch times so far */
    deba_gradacc acc;            /* Σ per-step var and norm, step count */
    tr_rng epoch_rng;            /* the data RNG at the epoch's start: the epoch's sample order */
} tr_ckpt_pos;

typedef struct {
    char arch[64], dataset[64];
    uint64_t seed;
    int epoch;                   /* epochs completed */
    tr_rng data_rng, aug_rng;    /* shuffling and augmentation streams */
    double train_time_s;         /* Σ epoch_time_s so far */
    double best_test_acc;
    tr_ckpt_pos pos;             /* position inside epoch + 1 (pos.active = 0 at an epoch's end) */
} tr_ckpt_info;

/* Writes path atomically (format version 2): info, graph parameters/momentum/stats/rng,
 * trace rows, scheduler, position. Errors carry the system's reason (a full disk, EFBIG). */
deba_status tr_ckpt_save(const char *path, const tr_ckpt_info *info, const tr_graph *g,
                         const deba_sched *s, const deba_trace *t, deba_err *e);
/* Loads into an allocated graph of the same model (parameter count checked), replaces *s with
 * the saved scheduler and fills t. Reads version 2 and version 1 (no position: pos.active = 0).
 * Everything read is checked before it is used: the payload length against the file's size,
 * the CRC, names NUL-terminated and printable, epoch and trace rows in range and consistent
 * with each other and with the scheduler, nothing after the last field. A corrupt, truncated
 * or foreign file is DEBA_E_INPUT naming the file and what is wrong. */
deba_status tr_ckpt_load(const char *path, tr_ckpt_info *info, tr_graph *g, deba_sched **s,
                         deba_trace *t, deba_err *e);

#endif
