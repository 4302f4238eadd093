/* The batch-size sweep (paper Fig. 1-2, SPEC §7 sweep.csv): R timed repeats of K training steps
 * at each batch size, all from the same initial state, timed like the trainer times an epoch,
 * with the SPEC §2 gradient variance of every step; and what such a sweep supports saying about
 * throughput (a gain only when the min-max intervals over the repeats do not overlap). */
#include "profiler/profile.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "deba/deba.h"
#include "trainer/backend/backend.h"
#include "trainer/data/dataset.h"
#include "trainer/models/models.h"

enum { SWEEP_MAX_REPEATS = 1000, SWEEP_MAX_STEPS = 1000000 };

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
    double fake_s_per_sample;  /* > 0: the test clock of DEBA_TEST_SWEEP_S_PER_SAMPLE */
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
    double real;   /* wall-clock time, which the test clock replaces in wall only */
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
    double took = now_s() - ta;
    t->real += took;
    t->wall += s->fake_s_per_sample > 0 ? s->fake_s_per_sample * B : took;
    t->compute += st.compute_s;
    t->var_sum += var;
    t->steps++;
}

static deba_status setup(sweep_state *s, deba_err *e)
{
    const tr_train_config *c = &s->c->train;
    const char *fake = getenv("DEBA_TEST_SWEEP_S_PER_SAMPLE");
    if (fake && *fake) {
        char *end;
        s->fake_s_per_sample = strtod(fake, &end);
        if (*end || !(s->fake_s_per_sample > 0) || !isfinite(s->fake_s_per_sample))
            return deba_err_set(e, DEBA_E_INPUT, "DEBA_TEST_SWEEP_S_PER_SAMPLE: not a positive number: '%s'", fake);
    }
    int kind = tr_dataset_parse(c->dataset);
    if (kind < 0)
        return deba_err_set(e, DEBA_E_INPUT, "--dataset: unknown dataset '%s' (known: cifar10, cifar100, fashion-mnist, mnist)",
                            c->dataset);
    if (!c->model[0] && !tr_model_find(c->arch)) {
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
    if (!(s->g = tr_train_model_build(c, s->train->c, s->image, s->train->classes, NULL, e)))
        return e ? e->status : DEBA_E_INPUT;
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
    int R = c->repeats > 0 ? c->repeats : DEBA_SWEEP_REPEATS;
    double min_time = c->min_time_s < 0 ? DEBA_SWEEP_MIN_TIME_S : c->min_time_s;
    if (R > SWEEP_MAX_REPEATS) return deba_err_set(e, DEBA_E_INPUT, "--repeats must be at most %d (got %d)", SWEEP_MAX_REPEATS, R);
    if (!isfinite(min_time) || min_time > 3600)
        return deba_err_set(e, DEBA_E_INPUT, "--sweep-min-time must be 0 to 3600 seconds (got %g)", min_time);
    double step_s[SWEEP_MAX_REPEATS], var[SWEEP_MAX_REPEATS], util[SWEEP_MAX_REPEATS];
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
         * state goes back before every repeat so each measures the same steps from the initial
         * weights on the same samples. */
        step_times t = { 0 };
        reset_state(&s);
        sweep_step(&s, B, &t);
        int K = c->steps, done = 0, diverged = 0;
        for (int rep = 0; rep < R && !diverged && !tr_train_stop_requested; rep++) {
            reset_state(&s);
            memset(&t, 0, sizeof t);
            /* the first repeat also runs until min_time of measured time: a few ms of steps
             * time the clock and the scheduler, not the network */
            for (int k = 0; !t.diverged && !tr_train_stop_requested; k++) {
                int more = rep == 0 ? k < c->steps || (t.wall < min_time && k < SWEEP_MAX_STEPS) : k < K;
                if (!more) break;
                sweep_step(&s, B, &t);
            }
            if (rep == 0) K = t.steps;   /* every later repeat takes the same steps */
            diverged = t.diverged;
            if (!t.steps || (rep > 0 && t.steps != K)) break;
            step_s[done] = t.wall / t.steps;
            var[done] = t.var_sum / t.steps;
            util[done] = t.real > 0 ? t.compute / t.real : 0;
            done++;
        }
        if (done) {
            double med = deba_median(step_s, (size_t)done), lo = step_s[0], hi = step_s[0];
            for (int k = 1; k < done; k++) {
                if (step_s[k] < lo) lo = step_s[k];
                if (step_s[k] > hi) hi = step_s[k];
            }
            if (!(med > 0)) med = lo = hi = 1e-9;   /* a clock that did not move: finite, not 0 */
            r->steps = K;
            r->repeats = done;
            r->samples_per_s = B / med;
            r->samples_per_s_min = B / (hi > 0 ? hi : 1e-9);
            r->samples_per_s_max = B / (lo > 0 ? lo : 1e-9);
            r->epoch_time_s = med * (double)((s.train->n + B - 1) / B);
            r->grad_var = deba_median(var, (size_t)done);
            r->compute_util = deba_median(util, (size_t)done);
        }
        if (diverged && c->log)
            fprintf(c->log, "batch %d: the loss or gradient became non-finite after %d steps: row over those steps\n", B,
                    K);
        if (c->log)
            fprintf(c->log, "batch %5d: %d x %d steps, %.1f samples/s (min %.1f, max %.1f), epoch %.2fs, grad_var %.4g, "
                            "compute %.0f%%\n", B, r->repeats, r->steps, r->samples_per_s, r->samples_per_s_min,
                    r->samples_per_s_max, r->epoch_time_s, r->grad_var, 100 * r->compute_util);
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

/* ---- what a sweep supports ---- */

void deba_sweep_compare(const deba_sweep_row *rows, size_t n, const char *arch, const char *dataset,
                        deba_sweep_cmp *out)
{
    memset(out, 0, sizeof *out);
    out->gain = -1;
    out->why = "no sweep";
    const deba_sweep_row *ref = NULL, *largest = NULL;
    for (size_t i = 0; i < n; i++) {
        const deba_sweep_row *r = &rows[i];
        if (strcmp(r->arch, arch) || strcmp(r->dataset, dataset) || r->steps < 1) continue;
        if (!ref || r->batch_size < ref->batch_size) ref = r;
        if (!largest || r->batch_size > largest->batch_size) largest = r;
    }
    if (!ref) return;
    out->why = "one size";
    out->ref_batch = ref->batch_size;
    out->largest_batch = largest->batch_size;
    out->repeats = INT_MAX;
    for (size_t i = 0; i < n; i++) {   /* distinct sizes that fit, and their fewest repeats */
        const deba_sweep_row *r = &rows[i];
        if (strcmp(r->arch, arch) || strcmp(r->dataset, dataset) || r->steps < 1) continue;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = rows[j].steps > 0 && rows[j].batch_size == r->batch_size && !strcmp(rows[j].arch, arch) &&
                   !strcmp(rows[j].dataset, dataset);
        out->sizes += !seen;
        if (r->repeats < out->repeats) out->repeats = r->repeats;
    }
    if (out->sizes < 2) return;
    /* one measurement (an older sweep.csv, or --repeats 1) has no spread: no claim either way */
    if (out->repeats < 2) {
        out->why = "one measurement";
        return;
    }
    out->why = "";
    out->gain = 0;
    double ref_max = ref->samples_per_s_max;
    for (size_t i = 0; i < n; i++) {
        const deba_sweep_row *r = &rows[i];
        if (strcmp(r->arch, arch) || strcmp(r->dataset, dataset) || r->steps < 1 || r->batch_size <= ref->batch_size)
            continue;
        /* apart by more than rounding: equal timings summed in another order must not read as a gain */
        if (r->samples_per_s_min > ref_max * (1 + 1e-9)) {
            double ratio = r->samples_per_s / ref->samples_per_s;
            if (!out->gain || ratio > out->ratio) {
                out->gain = 1;
                out->ratio = ratio;
                out->best_batch = r->batch_size;
            }
        }
    }
}

int deba_sweep_reading(char *buf, size_t cap, const deba_sweep_cmp *c)
{
    int n;
    if (c->gain == 1)
        n = snprintf(buf, cap, "Throughput rises with the batch size: B = %d gives %.2fx the samples/s of B = %d "
                     "(their samples/s min-max intervals over %d repeats do not overlap).",
                     c->best_batch, c->ratio, c->ref_batch, c->repeats);
    else if (c->gain == 0)
        n = snprintf(buf, cap, "No measurable throughput gain from larger batches: the samples/s min-max intervals of "
                     "B = %d to %d overlap or lie below that of B = %d (%d repeats each).",
                     c->ref_batch, c->largest_batch, c->ref_batch, c->repeats);
    else if (!strcmp(c->why, "one measurement"))
        n = snprintf(buf, cap, "Each batch size was measured once: no spread to tell a throughput gain from noise "
                     "(sweep again with --repeats 3 or more).");
    else if (!strcmp(c->why, "one size"))
        n = snprintf(buf, cap, "Only one batch size was measured (B = %d): nothing to compare.", c->ref_batch);
    else
        n = snprintf(buf, cap, "No batch size was measured: nothing to compare.");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}
