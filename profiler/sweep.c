/* The batch-size sweep (paper Fig. 1-2, SPEC §7 sweep.csv): K training steps at each batch size
 * from the same initial state, timed like the trainer times an epoch, with the SPEC §2 gradient
 * variance of every step. */
#include "profiler/profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "deba/deba.h"
#include "trainer/backend/backend.h"
#include "trainer/data/dataset.h"
#include "trainer/models/models.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const deba_sweep_config *c;
    tr_dataset *train;
    tr_backend *be;
    tr_graph *g;
    int image, augment;
    float *params0, *stats0;   /* host copies of the initial state */
    tr_rng graph_rng0;
    tr_rng data_rng, aug_rng;
    int *perm, perm_pos;       /* the shuffled order batches are drawn from */
    int *idx;
    float *x;
    int *y;
    int cap;                   /* samples the host batch buffers hold */
} sweep_state;

static void sweep_free(sweep_state *s)
{
    tr_graph_free(s->g);
    tr_backend_free(s->be);
    tr_dataset_free(s->train);
    free(s->params0);
    free(s->stats0);
    free(s->perm);
    free(s->idx);
    free(s->x);
    free(s->y);
}

/* Weights, BN statistics, momentum, dropout and data streams back to where the sweep started, so
 * every batch size starts from the same point and sees the same sample order. */
static void reset_state(sweep_state *s)
{
    tr_graph *g = s->g;
    tr_backend *be = s->be;
    be->upload(be, g->params, s->params0, (size_t)g->n_params * sizeof(float));
    if (g->n_stats) be->upload(be, g->stats, s->stats0, (size_t)g->n_stats * sizeof(float));
    be->zero(be, g->momentum, (size_t)g->n_params * sizeof(float));
    be->zero(be, g->grads, (size_t)g->n_params * sizeof(float));
    be->sync(be);
    g->rng = s->graph_rng0;
    tr_rng_seed(&s->data_rng, s->c->train.seed, 1);
    tr_rng_seed(&s->aug_rng, s->c->train.seed, 2);
    s->perm_pos = s->train->n;   /* reshuffle on the first draw */
}

/* The next B indices of the shuffled order; a new permutation whenever one runs out, so a batch
 * larger than the training set repeats samples. */
static void next_indices(sweep_state *s, int B)
{
    int n = s->train->n;
    for (int i = 0; i < B; i++) {
        if (s->perm_pos == n) {
            for (int j = 0; j < n; j++) s->perm[j] = j;
            tr_rng_shuffle(&s->data_rng, s->perm, n);
            s->perm_pos = 0;
        }
        s->idx[i] = s->perm[s->perm_pos++];
    }
}

static deba_status ensure_host(sweep_state *s, int B, deba_err *e)
{
    if (B <= s->cap) return DEBA_OK;
    size_t per = (size_t)s->train->c * s->image * s->image;
    float *x = malloc((size_t)B * per * sizeof(float));
    int *y = malloc((size_t)B * sizeof(int)), *idx = malloc((size_t)B * sizeof(int));
    if (!x || !y || !idx) {
        free(x), free(y), free(idx);
        return deba_err_set(e, DEBA_E_NOMEM, "out of host memory for a batch of %d (%.1f MiB)", B,
                            (double)B * per * 4 / 1048576.0);
    }
    free(s->x), free(s->y), free(s->idx);
    s->x = x, s->y = y, s->idx = idx;
    s->cap = B;
    return DEBA_OK;
}

typedef struct {
    double wall, compute, var_sum;
    int steps, diverged;
} step_times;

/* One SGD step of B samples, timed as trainer/train.c times its steps. */
static void sweep_step(sweep_state *s, int B, step_times *t)
{
    const tr_train_config *c = &s->c->train;
    tr_graph *g = s->g;
    tr_batch_opts bo = { s->augment, s->image, s->image, s->train->mean, s->train->std };
    double ta = now_s();
    next_indices(s, B);
    tr_dataset_batch(s->train, s->idx, B, &bo, &s->aug_rng, s->x, s->y);
    tr_graph_set_batch(g, s->x, s->y, B);
    tr_step st;
    tr_train_step(g, B, (float)c->lr, (float)c->momentum, (float)c->weight_decay, &st);
    double var = deba_step_var(st.grad_sum, st.grad_sumsq, g->n_params);
    if (!isfinite(st.loss_sum) || !isfinite(var)) {
        t->diverged = 1;
        return;
    }
    t->wall += now_s() - ta;
    t->compute += st.compute_s;
    t->var_sum += var;
    t->steps++;
}

static deba_status setup(sweep_state *s, deba_err *e)
{
    const tr_train_config *c = &s->c->train;
    int kind = tr_dataset_parse(c->dataset);
    if (kind < 0)
        return deba_err_set(e, DEBA_E_INPUT, "--dataset: unknown dataset '%s' (known: cifar10, cifar100, fashion-mnist, mnist)",
                            c->dataset);
    if (!tr_model_find(c->arch)) {
        tr_graph_free(tr_model_build(c->arch, 3, 32, 10, e));   /* its message lists the models */
        return e ? e->status : DEBA_E_INPUT;
    }
    const char *dir = c->data_dir[0] ? c->data_dir : tr_dataset_default_dir((tr_dataset_kind)kind);
    if (!dir) return deba_err_set(e, DEBA_E_INPUT, "--data: %s has no default location; pass --data DIR", c->dataset);
    deba_status st = tr_dataset_load((tr_dataset_kind)kind, dir, 1, c->subset, &s->train, e);
    if (st) return st;
    s->image = c->image_size > 0 ? c->image_size : s->train->h;
    s->augment = c->augment >= 0 ? c->augment : (kind == TR_DS_CIFAR10 || kind == TR_DS_CIFAR100);
    if (!(s->be = tr_backend_new(c->device, e))) return e ? e->status : DEBA_E_RUNTIME;
    if (!(s->g = tr_model_build(c->arch, s->train->c, s->image, s->train->classes, e))) return e ? e->status : DEBA_E_INPUT;
    if ((st = tr_graph_alloc(s->g, s->be, c->seed, e))) return st;
    tr_graph *g = s->g;
    s->params0 = malloc((size_t)g->n_params * sizeof(float));
    s->stats0 = malloc((size_t)(g->n_stats ? g->n_stats : 1) * sizeof(float));
    s->perm = malloc((size_t)s->train->n * sizeof(int));
    if (!s->params0 || !s->stats0 || !s->perm) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    s->be->download(s->be, s->params0, g->params, (size_t)g->n_params * sizeof(float));
    if (g->n_stats) s->be->download(s->be, s->stats0, g->stats, (size_t)g->n_stats * sizeof(float));
    s->graph_rng0 = g->rng;
    g->training = 1;
    return DEBA_OK;
}

deba_status deba_sweep_run(const deba_sweep_config *c, deba_sweep_row **rows, size_t *n, deba_err *e)
{
    *rows = NULL;
    *n = 0;
    if (c->n_sizes < 1) return deba_err_set(e, DEBA_E_INPUT, "--sweep: no batch size given");
    if (c->steps < 1) return deba_err_set(e, DEBA_E_INPUT, "--sweep-steps must be at least 1 (got %d)", c->steps);
    sweep_state s;
    memset(&s, 0, sizeof s);
    s.c = c;
    deba_sweep_row *out = calloc((size_t)c->n_sizes, sizeof *out);
    deba_status st = out ? setup(&s, e) : deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    for (int i = 0; i < c->n_sizes && !st && !tr_train_stop_requested; i++) {
        int B = c->sizes[i];
        deba_sweep_row *r = &out[i];
        snprintf(r->arch, sizeof r->arch, "%s", c->train.arch);
        snprintf(r->dataset, sizeof r->dataset, "%s", c->train.dataset);
        r->batch_size = B;
        st = tr_graph_plan(s.g, B, e);
        if (!st) st = ensure_host(&s, B, e);
        if (st == DEBA_E_NOMEM) {
            /* Recorded, not fatal: the row says "did not fit" with steps = 0 (docs/profiling.md). */
            if (c->log) fprintf(c->log, "batch %d: does not fit in memory (%s): recorded with steps = 0\n", B, e->msg);
            deba_err_clear(e);
            st = DEBA_OK;
            (*n)++;
            continue;
        }
        if (st) break;
        if (B > s.train->n && c->log)
            fprintf(c->log, "batch %d: larger than the %d training images: batches repeat samples\n", B, s.train->n);
        /* One untimed step first (first-touch page faults, cuDNN algorithm choice), then the
         * state goes back so the measured steps start from the initial weights. */
        step_times t = { 0 };
        reset_state(&s);
        sweep_step(&s, B, &t);
        reset_state(&s);
        memset(&t, 0, sizeof t);
        for (int k = 0; k < c->steps && !t.diverged && !tr_train_stop_requested; k++) sweep_step(&s, B, &t);
        if (t.steps) {
            double per_step = t.wall / t.steps;
            r->steps = t.steps;
            r->samples_per_s = (double)t.steps * B / (t.wall > 0 ? t.wall : 1e-9);
            r->epoch_time_s = per_step * (double)((s.train->n + B - 1) / B);
            r->grad_var = t.var_sum / t.steps;
            r->compute_util = t.wall > 0 ? t.compute / t.wall : 0;
        }
        if (t.diverged && c->log)
            fprintf(c->log, "batch %d: the loss or gradient became non-finite after %d steps: row over those steps\n", B,
                    t.steps);
        if (c->log)
            fprintf(c->log, "batch %5d: %d steps, %.1f samples/s, epoch %.2fs, grad_var %.4g, compute %.0f%%\n", B,
                    r->steps, r->samples_per_s, r->epoch_time_s, r->grad_var, 100 * r->compute_util);
        (*n)++;
    }
    if (!st && tr_train_stop_requested) st = deba_err_set(e, DEBA_E_RUNTIME, "interrupted: sweep.csv not written");
    sweep_free(&s);
    if (st) {
        free(out);
        *n = 0;
        return st;
    }
    *rows = out;
    return DEBA_OK;
}
