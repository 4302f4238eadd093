/* One training run (SPEC §7-§8): data, model, SGD, DEBA scheduling, evaluation each epoch,
 * trace.csv/meta.csv/checkpoint in the run directory, resume after an interruption. The
 * library entry point behind deba-train and deba-profile. */
#ifndef TR_TRAIN_H
#define TR_TRAIN_H

#include <signal.h>
#include <stdint.h>
#include "deba/error.h"
#include "deba/sched.h"
#include "deba/trace.h"
#include "trainer/data/dataset.h"
#include "trainer/graph.h"
#include "trainer/onnx/model.h"

typedef enum { TR_LR_NONE, TR_LR_LINEAR, TR_LR_SQRT, TR_LR_SCALING_COUNT } tr_lr_scaling;

typedef struct {
    char arch[64];                /* with model: the run's name (--name, else the file's stem) */
    char model[4096];             /* --model FILE.onnx instead of a built-in --arch; "" = none */
    onnx_init_mode init;          /* with model: keep the file's weights or draw them from seed */
    char dataset[64];
    char data_dir[4096];          /* "" = the dataset's default directory */
    char label[64];               /* "" = the method's name */
    char out[4096];               /* root of run directories */
    char device[16];              /* cpu | cuda | auto */
    char thresholds_src[4096];    /* where tau/theta/lambda came from, for meta.csv */
    int epochs;
    uint64_t seed;
    deba_sched_config sched;      /* method, B0 (--batch), bounds, thresholds, W, C, α, β */
    double lr, momentum, weight_decay;
    tr_lr_scaling lr_scaling;
    int subset, test_subset;      /* 0 = all */
    int image_size;               /* 0 = the dataset's */
    int augment;                  /* -1: on for CIFAR, off otherwise */
    int resume, force, quiet;
    int progress;                 /* draw a progress bar on stderr */
    int checkpoint_every;         /* also checkpoint every N steps inside an epoch; 0 = epoch ends only */
    int eval_batch;               /* evaluation batch size; 0 = tr_train_eval_batch's default */
} tr_train_config;

typedef struct {
    char run_dir[4096];
    char status[16];              /* completed | diverged | interrupted (a failure is an error instead) */
    int epochs_done;
    double final_test_acc, best_test_acc, total_train_time_s;
} tr_train_result;

/* With a model file and no name: the file's stem as c->arch. Either way the name must be able
 * to become a directory (deba_name_ok): DEBA_E_INPUT naming --name or the file otherwise. A
 * no-op for a built-in --arch. */
deba_status tr_train_resolve_name(tr_train_config *c, deba_err *e);

/* The network of c for in_c x image x image images and `classes` classes: the built-in c->arch,
 * or the graph of c->model (info, may be NULL, gets what meta.csv records of the file; it is
 * left untouched for a built-in). NULL with e set (DEBA_E_INPUT for a bad name or file). */
tr_graph *tr_train_model_build(const tr_train_config *c, int in_c, int image, int classes,
                               tr_onnx_model_info *info, deba_err *e);

/* SPEC defaults: lr 0.01, momentum 0.9, wd 5e-4, B0 64, device auto, seed 42, 10 epochs. */
void tr_train_config_default(tr_train_config *c);
const char *tr_lr_scaling_name(tr_lr_scaling s);
int tr_lr_scaling_parse(const char *s);            /* -1 when unknown */

/* The evaluation batch size of a run: `requested` (--eval-batch) when positive, else the largest
 * power of two up to TR_EVAL_BATCH_MAX whose inference plan (tr_graph_plan_size) fits in
 * TR_EVAL_BUDGET_MIB; never more than test_n. Fixed quantities only (the model, the test set's
 * size, the option), never the memory free at the time: the batching changes the last bits of
 * the test loss, and a resumed run must evaluate as an uninterrupted one. At least 1. */
#define TR_EVAL_BATCH_MAX 128
#define TR_EVAL_BUDGET_MIB 512
int tr_train_eval_batch(const tr_graph *g, int test_n, int requested);

/* Runs (or resumes) one training, holding the run directory's lock (deba/runlock.h) throughout:
 * a second writer gets DEBA_E_INPUT naming the directory and the holder's pid. DEBA_E_INPUT for
 * bad configuration or data, with the option or file named; a diverged or interrupted run is not
 * an error (result status says so). A failure once the run directory is ours (I/O, a full disk,
 * a corrupt checkpoint) leaves meta.csv with status `failed` and the message as `error`. */
deba_status tr_train_run(const tr_train_config *c, tr_train_result *r, deba_err *e);

/* What one SGD step measured. */
typedef struct {
    double loss_sum;             /* summed over the batch */
    int64_t correct;
    double grad_sum, grad_sumsq; /* Σg and Σg² of the step's gradient (SPEC §2) */
    double compute_s;            /* forward, loss, backward and update (wall clock) */
    double signal_s;             /* the gradient moments */
} tr_step;

/* One SGD step on the batch set with tr_graph_set_batch: forward, loss, backward, the SPEC §2
 * gradient moments (one reduction, before the update), then the update. */
void tr_train_step(tr_graph *g, int n, float lr, float momentum, float wd, tr_step *out);

/* Whether a run directory's meta.csv was written with the settings of c (method, batch, lr,
 * momentum, weight decay, subset, image size and, for DEBA, the scheduler's; for a model file,
 * the file's SHA-256 and --init): a run is only ever continued or reused with the settings it
 * was started with. DEBA_E_INPUT names the file, the option and both values (both hashes). */
deba_status tr_train_check_meta(const deba_meta *m, const char *path, const tr_train_config *c, deba_err *e);

/* Set by a SIGINT/SIGTERM handler in the tool (the handler does nothing else): the run stops
 * after the current step, writes a checkpoint at that position in the epoch and marks itself
 * interrupted; --resume continues it to the same end as an uninterrupted run. */
extern volatile sig_atomic_t tr_train_stop_requested;

#endif
