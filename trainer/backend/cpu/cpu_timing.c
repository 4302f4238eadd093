/* The CPU backend's kernel timing: while on, the op table's entries are swapped for trampolines
 * that time each call with clock_gettime and record it under "<op>.forward", "<op>.backward",
 * "xent", "sgd" or "grad_moments"; stopping puts the ops back. The state hangs off be->ctx, so
 * every CPU backend times itself and needs no process-wide pointer. */
#include "trainer/backend/cpu/cpu_ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "trainer/backend/ktime.h"

typedef struct {
    tr_ktime *kt;
    /* the backend's own entries, called by the trampolines */
    tr_op_fn fwd[TR_OP_COUNT], bwd[TR_OP_COUNT];
    void (*xent)(tr_backend *, const float *, const int *, int, int, float *, double *, int64_t *);
    void (*sgd)(tr_backend *, float *, const float *, float *, int64_t, float, float, float);
    void (*moments)(tr_backend *, const float *, int64_t, double *, double *);
    void (*sgd_moments)(tr_backend *, float *, const float *, float *, int64_t, float, float, float, double *,
                        double *);
    char names[TR_OP_COUNT][2][48];
} cpu_timing;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void time_forward(tr_graph *g, tr_node *nd, int n)
{
    cpu_timing *t = g->be->ctx;
    double t0 = now_s();
    t->fwd[nd->op](g, nd, n);
    tr_ktime_add(t->kt, t->names[nd->op][0], now_s() - t0);
}

static void time_backward(tr_graph *g, tr_node *nd, int n)
{
    cpu_timing *t = g->be->ctx;
    double t0 = now_s();
    t->bwd[nd->op](g, nd, n);
    tr_ktime_add(t->kt, t->names[nd->op][1], now_s() - t0);
}

static void time_xent(tr_backend *be, const float *logits, const int *labels, int n, int classes, float *dlogits,
                      double *loss_sum, int64_t *correct)
{
    cpu_timing *t = be->ctx;
    double t0 = now_s();
    t->xent(be, logits, labels, n, classes, dlogits, loss_sum, correct);
    tr_ktime_add(t->kt, "xent", now_s() - t0);
}

static void time_sgd(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr, float momentum,
                     float wd)
{
    cpu_timing *t = be->ctx;
    double t0 = now_s();
    t->sgd(be, p, g, m, count, lr, momentum, wd);
    tr_ktime_add(t->kt, "sgd", now_s() - t0);
}

static void time_moments(tr_backend *be, const float *g, int64_t count, double *sum, double *sumsq)
{
    cpu_timing *t = be->ctx;
    double t0 = now_s();
    t->moments(be, g, count, sum, sumsq);
    tr_ktime_add(t->kt, "grad_moments", now_s() - t0);
}

static void time_sgd_moments(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr,
                             float momentum, float wd, double *sum, double *sumsq)
{
    cpu_timing *t = be->ctx;
    double t0 = now_s();
    t->sgd_moments(be, p, g, m, count, lr, momentum, wd, sum, sumsq);
    tr_ktime_add(t->kt, "sgd+grad_moments", now_s() - t0);
}

static deba_status cpu_timing_start(tr_backend *be, deba_err *e)
{
    if (be->ctx) return deba_err_set(e, DEBA_E_RUNTIME, "kernel timing: already on for this %s backend", be->name);
    cpu_timing *t = calloc(1, sizeof *t);
    if (!t || !(t->kt = tr_ktime_new())) {
        free(t);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory starting kernel timing");
    }
    for (int op = 0; op < TR_OP_COUNT; op++) {
        snprintf(t->names[op][0], sizeof t->names[op][0], "%s.forward", tr_op_name((tr_op)op));
        snprintf(t->names[op][1], sizeof t->names[op][1], "%s.backward", tr_op_name((tr_op)op));
        t->fwd[op] = be->forward[op];
        t->bwd[op] = be->backward[op];
        /* NULL stays NULL: the planner must still report a missing op by name */
        if (be->forward[op]) be->forward[op] = time_forward;
        if (be->backward[op]) be->backward[op] = time_backward;
    }
    t->xent = be->xent;
    t->sgd = be->sgd;
    t->moments = be->grad_moments;
    t->sgd_moments = be->sgd_moments;
    if (be->xent) be->xent = time_xent;
    if (be->sgd) be->sgd = time_sgd;
    if (be->grad_moments) be->grad_moments = time_moments;
    if (be->sgd_moments) be->sgd_moments = time_sgd_moments;
    be->ctx = t;
    return DEBA_OK;
}

/* The CPU runs each op to completion before returning: nothing to synchronise. */
static void cpu_timing_epoch_begin(tr_backend *be)
{
    cpu_timing *t = be->ctx;
    if (t) tr_ktime_epoch(t->kt, 1);
}

static double cpu_timing_epoch_end(tr_backend *be)
{
    cpu_timing *t = be->ctx;
    if (!t) return 0;
    tr_ktime_epoch(t->kt, 0);
    return tr_ktime_epoch_seconds(t->kt);
}

static uint64_t cpu_timing_read(tr_backend *be, tr_timing_row_fn fn, void *arg)
{
    cpu_timing *t = be->ctx;
    return t ? tr_ktime_read(t->kt, fn, arg) : 0;
}

static void cpu_timing_stop(tr_backend *be)
{
    cpu_timing *t = be->ctx;
    if (!t) return;
    for (int op = 0; op < TR_OP_COUNT; op++) {
        be->forward[op] = t->fwd[op];
        be->backward[op] = t->bwd[op];
    }
    be->xent = t->xent;
    be->sgd = t->sgd;
    be->grad_moments = t->moments;
    be->sgd_moments = t->sgd_moments;
    tr_ktime_free(t->kt);
    free(t);
    be->ctx = NULL;
}

void tr_cpu_register_timing(tr_backend *be)
{
    be->timing_on_device = 0;
    be->timing_start = cpu_timing_start;
    be->timing_epoch_begin = cpu_timing_epoch_begin;
    be->timing_epoch_end = cpu_timing_epoch_end;
    be->timing_read = cpu_timing_read;
    be->timing_stop = cpu_timing_stop;
}
