/* The training loop behind deba-train and deba-profile: one epoch at the scheduler's batch
 * size, the SPEC §2 signals from one reduction per step, evaluation, a trace row and a
 * checkpoint per epoch (and every N steps, and on a stop request), and an exact resume, from an
 * epoch's end or from inside one. */
#include "trainer/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "deba/deba.h"
#include "deba/escape.h"
#include "deba/runlock.h"
#include "deba/sha256.h"
#include "trainer/backend/backend.h"
#include "trainer/checkpoint.h"
#include "trainer/models/models.h"

volatile sig_atomic_t tr_train_stop_requested = 0;

static const char *LR_NAMES[TR_LR_SCALING_COUNT] = {"none", "linear", "sqrt"};

const char *tr_lr_scaling_name(tr_lr_scaling s) { return (unsigned)s < TR_LR_SCALING_COUNT ? LR_NAMES[s] : "?"; }

int tr_lr_scaling_parse(const char *s)
{
    for (int i = 0; i < TR_LR_SCALING_COUNT; i++)
        if (!strcmp(s, LR_NAMES[i])) return i;
    return -1;
}

void tr_train_config_default(tr_train_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->out, sizeof c->out, "runs");
    snprintf(c->device, sizeof c->device, "auto");
    c->epochs = 10;
    c->seed = 42;
    deba_sched_config_default(&c->sched);
    c->lr = 0.01;
    c->momentum = 0.9;
    c->weight_decay = 5e-4;
    c->augment = -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Everything one run holds; freed in one place. */
typedef struct {
    const tr_train_config *c;
    char dir[4096], trace_path[4200], meta_path[4200], ckpt_path[4200];
    tr_dataset *train, *test;
    tr_backend *be;
    tr_graph *g;
    tr_onnx_model_info model;    /* with c->model: what meta.csv records of the file */
    deba_sched *sched;
    deba_trace trace;
    deba_meta meta;
    FILE *trace_f;
    tr_ckpt_info info;
    int image, augment;
    float *x;                    /* host batch (planned_n, c, S, S) */
    int *y, *idx;
    int x_cap;
    char started[32];
    deba_lock lock;              /* one writer per run directory, for the whole run */
    int report_failure;          /* a failure from here on is recorded in meta.csv */
    long step;                   /* steps of the whole run so far (all epochs, all processes) */
    long since_ckpt;             /* steps since the last checkpoint */
    long stop_at_step, kill_at_step;   /* test hooks, 0 = off */
    int eval_b;                  /* evaluation batch size (tr_train_eval_batch, halved on OOM) */
} run_state;

static void run_free(run_state *r)
{
    if (r->trace_f) fclose(r->trace_f);
    tr_graph_free(r->g);
    tr_backend_free(r->be);   /* stops its kernel timing too */
    deba_sched_free(r->sched);
    deba_trace_free(&r->trace);
    deba_meta_free(&r->meta);
    tr_dataset_free(r->train);
    tr_dataset_free(r->test);
    free(r->x);
    free(r->y);
    free(r->idx);
    deba_lock_release(&r->lock);   /* last: everything this run writes is written */
}

/* meta.csv with every key current; `error` (the message of a failed run) when not NULL. */
static deba_status write_meta(run_state *r, const char *status, const char *error, deba_err *e)
{
    const tr_train_config *c = r->c;
    const deba_sched_config *sc = deba_sched_config_of(r->sched);
    deba_run_meta f = {
        .arch = c->arch, .dataset = c->dataset, .label = c->label[0] ? c->label : deba_method_name(sc->method),
        .seed = (unsigned long long)c->seed, .epochs = c->epochs, .sched = sc, .bmax = deba_sched_bmax(r->sched),
        .lr = c->lr, .momentum = c->momentum, .weight_decay = c->weight_decay, .device = r->be->name,
        .device_name = r->be->device_name, .precision = "fp32", .params = (long long)r->g->n_params,
        .started_utc = r->started, .final_test_acc = r->trace.n ? r->trace.rows[r->trace.n - 1].test_acc : 0,
        .best_test_acc = r->info.best_test_acc, .total_train_time_s = r->info.train_time_s, .image_size = r->image,
        .subset = c->subset, .test_subset = c->test_subset, .lr_scaling = tr_lr_scaling_name(c->lr_scaling),
        .thresholds_source = c->thresholds_src[0] ? c->thresholds_src : "command line",
    };
    if (c->model[0]) {
        f.model = c->model;
        f.model_sha256 = r->model.sha256;
        f.model_opset = r->model.opset;
        f.model_producer = r->model.producer;
        f.init = tr_onnx_init_name(c->init);
    }
    return deba_run_meta_write(r->meta_path, &r->meta, &f, status, error, e);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Rows in a trace file; 0 when it is absent or holds only its header, -1 when unreadable. */
static long trace_rows(const char *path)
{
    if (!file_exists(path)) return 0;
    deba_trace t = {0};
    if (deba_trace_read(path, &t, NULL)) return -1;
    long n = (long)t.n;
    deba_trace_free(&t);
    return n;
}

/* Complete rows in a trace file: its newlines minus the header's (a row torn by a kill has none
 * yet); 0 when the file is absent. */
static long trace_file_rows(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    long lines = 0;
    for (int ch; (ch = getc(f)) != EOF;) lines += ch == '\n';
    fclose(f);
    return lines > 0 ? lines - 1 : 0;
}

/* A run that fails with its directory ours says so in meta.csv: status `failed`, the message as
 * `error`, never `running`. Best effort: on a full disk this write may fail too, and the atomic
 * writer then leaves the previous meta.csv whole. */
static void record_failure(run_state *r, const deba_err *why)
{
    deba_err ignored = {0};
    const char *msg = why && why->msg[0] ? why->msg : "unknown error";
    if (r->meta.n) {   /* written by this process: every key is current */
        write_meta(r, "failed", msg, &ignored);
        return;
    }
    deba_meta old = {0};
    if (deba_meta_read(r->meta_path, &old, NULL) == DEBA_OK) {   /* keep what the run recorded */
        char fin[32];
        deba_utc_now(fin, sizeof fin);
        if (!deba_meta_set(&old, "status", "failed") && !deba_meta_set(&old, "finished_utc", "%s", fin) &&
            !deba_meta_set(&old, "error", "%.*s", (int)sizeof old.kv[0].value - 1, msg))
            deba_meta_write(r->meta_path, &old, &ignored);
    } else if (r->g && r->be && r->sched) {
        write_meta(r, "failed", msg, &ignored);
    }
    deba_meta_free(&old);
}

/* The network of a run is part of its settings: a built-in one stays built-in, and a model file
 * must be the same bytes (its SHA-256; the path may differ) with the same --init. */
static deba_status check_model(const deba_meta *m, const char *path, const tr_train_config *c, deba_err *e)
{
    const char *was = deba_meta_get(m, "model"), *sha = deba_meta_get(m, "model_sha256");
    if (!was && !c->model[0]) return DEBA_OK;
    if (!was)
        return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with the built-in --arch %s, not --model %s: "
                            "resume it with the same options (or use --force to start over)", path, c->arch, c->model);
    if (!c->model[0])
        return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with --model %s, not the built-in --arch %s: "
                            "resume it with the same options (or use --force to start over)", path, was, c->arch);
    char now[65];
    deba_status st = deba_sha256_file(c->model, now, e);
    if (st) return st;
    if (!sha || strcmp(sha, now))
        return deba_err_set(e, DEBA_E_INPUT, "%s: the model file %s changed since the run was started from %s "
                            "(SHA-256 %s then, %s now): a run continues only with the network it began with (use "
                            "--force to start over)", path, c->model, was, sha ? sha : "(none recorded)", now);
    const char *init = deba_meta_get(m, "init");
    if (init && strcmp(init, tr_onnx_init_name(c->init)))
        return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with --init %s, not %s: resume it with the "
                            "same options (or use --force to start over)", path, init, tr_onnx_init_name(c->init));
    return DEBA_OK;
}

/* A run is resumed with the settings it was started with: anything else would mix two
 * trainings in one trace while meta.csv names only the last. A fixed-batch run never uses the
 * scheduler's settings, so only the first seven keys matter for it (as deba-profile checks). */
deba_status tr_train_check_meta(const deba_meta *m, const char *path, const tr_train_config *c, deba_err *e)
{
    deba_status mst = check_model(m, path, c, e);
    if (mst) return mst;
    int kind = tr_dataset_parse(c->dataset);
    int image = c->image_size > 0 ? c->image_size : kind >= 0 ? tr_dataset_image_size((tr_dataset_kind)kind) : 0;
    const char *method = deba_meta_get(m, "method");
    if (method && strcmp(method, deba_method_name(c->sched.method)))
        return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with --method %s, not %s: resume it with the "
                            "same options (or use --force to start over)", path, method,
                            deba_method_name(c->sched.method));
    struct { const char *key, *opt; double want; } keys[] = {
        {"batch0", "batch", c->sched.b0}, {"lr", "lr", c->lr}, {"momentum", "momentum", c->momentum},
        {"weight_decay", "weight-decay", c->weight_decay}, {"subset", "subset", c->subset},
        {"image_size", "image-size", image}, {"test_subset", "test-subset", c->test_subset},
        {"bmin", "bmin", c->sched.bmin}, {"tau", "tau", c->sched.tau},
        {"theta", "theta", c->sched.theta}, {"lambda", "lambda", c->sched.lambda},
        {"window", "window", c->sched.window}, {"cooldown", "cooldown", c->sched.cooldown},
        {"growth", "growth", c->sched.growth}, {"rollback", "rollback", c->sched.rollback},
    };
    size_t nk = c->sched.method == DEBA_METHOD_FIXED ? 7 : sizeof keys / sizeof *keys;
    for (size_t i = 0; i < nk; i++) {
        const char *v = deba_meta_get(m, keys[i].key);
        if (!v) continue;   /* an older meta.csv without the key: nothing to compare */
        char *end;
        double x = strtod(v, &end);
        if (*end || fabs(x - keys[i].want) > 1e-12 * fmax(fabs(x), fabs(keys[i].want)))
            return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with --%s %s, not %.15g: resume it with "
                                "the same options (or use --force to start over)", path, keys[i].opt, v,
                                keys[i].want);
    }
    const char *lrs = deba_meta_get(m, "lr_scaling");
    if (c->sched.method != DEBA_METHOD_FIXED && lrs && strcmp(lrs, tr_lr_scaling_name(c->lr_scaling)))
        return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with --lr-scaling %s, not %s: resume it with "
                            "the same options (or use --force to start over)", path, lrs,
                            tr_lr_scaling_name(c->lr_scaling));
    return DEBA_OK;
}

/* Decides what an existing run directory means for this invocation, under the directory's lock:
 * nothing in it is read, removed or written before the lock is ours, so a --force next to a
 * live run fails instead of deleting its files. */
static deba_status prepare_dir(run_state *r, int *resuming, deba_err *e)
{
    const tr_train_config *c = r->c;
    *resuming = 0;
    deba_status st = deba_mkdirs(r->dir, e);
    if (!st) st = deba_lock_acquire(&r->lock, r->dir, e);
    if (st) return st;
    int removed = 0;   /* temporary files of writers killed mid-write (kill -9, power loss) */
    if ((st = deba_atomic_clean_stale(r->dir, &removed, e))) return st;
    if (removed && !c->quiet)
        fprintf(stderr, "%s: removed %d temporary file%s left by an interrupted write\n", r->dir, removed,
                removed == 1 ? "" : "s");
    int has_ckpt = file_exists(r->ckpt_path), has_any = has_ckpt || file_exists(r->trace_path) ||
                                                       file_exists(r->meta_path);
    if (has_any && c->resume && !has_ckpt && trace_rows(r->trace_path) == 0) {
        /* killed before its first checkpoint: nothing to lose, start it over */
        remove(r->trace_path);
        remove(r->meta_path);
        return DEBA_OK;
    }
    if (has_any && c->resume) {
        if (!has_ckpt)
            return deba_err_set(e, DEBA_E_INPUT, "%s has a trace but no checkpoint: cannot resume (use --force to start over)",
                                r->dir);
        *resuming = 1;
        return DEBA_OK;
    }
    if (has_any && !c->force)
        return deba_err_set(e, DEBA_E_INPUT, "%s already holds a run: use --resume to continue it or --force to start over",
                            r->dir);
    if (has_any) {
        remove(r->ckpt_path);
        remove(r->trace_path);
        remove(r->meta_path);
    }
    return DEBA_OK;
}

static deba_status load_data(run_state *r, deba_err *e)
{
    const tr_train_config *c = r->c;
    int kind = tr_dataset_parse(c->dataset);
    if (kind < 0)
        return deba_err_set(e, DEBA_E_INPUT, "--dataset: unknown dataset '%s' (known: cifar10, cifar100, fashion-mnist, mnist)",
                            c->dataset);
    const char *dir = c->data_dir[0] ? c->data_dir : tr_dataset_default_dir(kind);
    if (!dir)
        return deba_err_set(e, DEBA_E_INPUT, "--data: %s has no default location; pass --data DIR", c->dataset);
    deba_status st = tr_dataset_load(kind, dir, 1, c->subset, &r->train, e);
    if (!st) st = tr_dataset_load(kind, dir, 0, c->test_subset, &r->test, e);
    if (st) return st;
    r->image = c->image_size > 0 ? c->image_size : r->train->h;
    r->augment = c->augment >= 0 ? c->augment : (kind == TR_DS_CIFAR10 || kind == TR_DS_CIFAR100);
    return DEBA_OK;
}

/* Host batch buffers for up to n samples. */
static deba_status ensure_host(run_state *r, int n, deba_err *e)
{
    if (n <= r->x_cap) return DEBA_OK;
    size_t per = (size_t)r->train->c * r->image * r->image;
    float *x = realloc(r->x, (size_t)n * per * sizeof(float));
    int *y = x ? realloc(r->y, (size_t)n * sizeof(int)) : NULL;
    if (x) r->x = x;
    if (y) r->y = y;
    if (!x || !y) return deba_err_set(e, DEBA_E_NOMEM, "out of memory for a batch of %d", n);
    r->x_cap = n;
    return DEBA_OK;
}

static void progress(const run_state *r, int epoch, int done, int total, double loss, double sps, double t0)
{
    if (!r->c->progress) return;
    double el = now_s() - t0, eta = done ? el * (total - done) / done : 0;
    int w = 24, fill = total ? w * done / total : w;
    char bar[32];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\repoch %d/%d [%s] %d/%d loss %.4f %.0f samples/s ETA %.0fs   ", epoch, r->c->epochs, bar,
            done, total, loss, sps, eta);
    fflush(stderr);
}

typedef struct {
    double loss_sum, train_time, compute, data, signal;
    int64_t correct, samples;
    int steps;
    deba_gradacc acc;
    int diverged;
    int stopped;                 /* a stop request ended the epoch early; its position is saved */
} epoch_stats;

void tr_train_step(tr_graph *g, int n, float lr, float momentum, float wd, tr_step *out)
{
    double t0 = now_s();
    tr_graph_forward(g, n);
    tr_graph_loss(g, n, &out->loss_sum, &out->correct);
    tr_graph_zero_grads(g);
    tr_graph_backward(g, n);
    double t1 = now_s();
    if (g->be->sgd_moments) {
        /* one pass over the gradient: the signal costs no separate read, so signal_s stays 0
         * and the pass counts as the update's compute (docs/formats.md) */
        g->be->sgd_moments(g->be, g->params, g->grads, g->momentum, g->n_params, lr, momentum, wd,
                           &out->grad_sum, &out->grad_sumsq);
        g->be->sync(g->be);
        out->compute_s = now_s() - t0;
        out->signal_s = 0;
        return;
    }
    g->be->grad_moments(g->be, g->grads, g->n_params, &out->grad_sum, &out->grad_sumsq);
    double t2 = now_s();
    tr_graph_sgd(g, lr, momentum, wd);
    g->be->sync(g->be);
    out->compute_s = (t1 - t0) + (now_s() - t2);
    out->signal_s = t2 - t1;
}

/* A checkpoint inside epoch `epoch` after es->steps steps: the epoch's sums and times so far
 * with everything else a resume needs (r->info.pos.epoch_rng was set when the epoch began). */
static deba_status save_position(run_state *r, int epoch, int B, int oom, const epoch_stats *es, double elapsed,
                                 deba_err *e)
{
    tr_ckpt_pos *p = &r->info.pos;
    p->active = 1;
    p->epoch = epoch;
    p->batch_size = B;
    p->oom = oom;
    p->steps = es->steps;
    p->samples = es->samples;
    p->correct = es->correct;
    p->loss_sum = es->loss_sum;
    p->train_time_s = elapsed;
    p->compute_s = es->compute;
    p->data_s = es->data;
    p->signal_s = es->signal;
    p->acc = es->acc;
    deba_status st = tr_ckpt_save(r->ckpt_path, &r->info, r->g, r->sched, &r->trace, e);
    if (!st) r->since_ckpt = 0;
    return st;
}

/* One epoch at batch size B, from its first step or, after a mid-epoch checkpoint
 * (r->info.pos.active), from the step after it: the same sample order (reshuffled from the data
 * RNG as it was when the epoch began), the same sums, so the epoch ends as an uninterrupted one.
 * Between steps: a stop request saves the position and ends the epoch (es->stopped), and
 * --checkpoint-every saves it every N steps. Signal handlers only set the flag. */
static deba_status train_epoch(run_state *r, int epoch, int B, double lr, int oom, epoch_stats *es, deba_err *e)
{
    const tr_train_config *c = r->c;
    tr_graph *g = r->g;
    int n = r->train->n;
    tr_batch_opts bo = {r->augment, r->image, r->image, r->train->mean, r->train->std};
    tr_ckpt_pos *pos = &r->info.pos;
    memset(es, 0, sizeof *es);
    deba_gradacc_reset(&es->acc);
    double before = 0;           /* train time of the part of the epoch before the checkpoint */
    if (pos->active) {
        es->loss_sum = pos->loss_sum;
        es->correct = pos->correct;
        es->samples = pos->samples;
        es->steps = pos->steps;
        es->acc = pos->acc;
        es->compute = pos->compute_s;
        es->data = pos->data_s;
        es->signal = pos->signal_s;
        before = pos->train_time_s;
    } else {
        pos->epoch_rng = r->info.data_rng;
    }
    tr_rng order = pos->epoch_rng;
    for (int i = 0; i < n; i++) r->idx[i] = i;
    tr_rng_shuffle(&order, r->idx, n);
    r->info.data_rng = order;
    g->training = 1;
    tr_backend_timing_epoch_begin(r->be);
    double t0 = now_s(), paused = 0;   /* paused: time spent writing checkpoints */
    deba_status rc = DEBA_OK;
    for (int start = (int)es->samples; start < n; start += B) {
        int nb = n - start < B ? n - start : B;
        double ta = now_s();
        tr_dataset_batch(r->train, r->idx + start, nb, &bo, &r->info.aug_rng, r->x, r->y);
        tr_graph_set_batch(g, r->x, r->y, nb);   /* the upload counts as data time */
        double tb = now_s();
        tr_step st;
        tr_train_step(g, nb, (float)lr, (float)c->momentum, (float)c->weight_decay, &st);
        deba_gradacc_add(&es->acc, st.grad_sum, st.grad_sumsq, g->n_params);
        es->data += tb - ta;
        es->compute += st.compute_s;
        es->signal += st.signal_s;
        if (!isfinite(st.loss_sum)) {
            es->diverged = 1;
            break;
        }
        es->loss_sum += st.loss_sum;
        es->correct += st.correct;
        es->samples += nb;
        es->steps++;
        r->step++;
        r->since_ckpt++;
        progress(r, epoch, start + nb, n, es->loss_sum / (double)es->samples, es->samples / (now_s() - t0), t0);
        if (r->stop_at_step == r->step) tr_train_stop_requested = 1;   /* tests: a stop request here */
        int stop = tr_train_stop_requested != 0, last = start + nb >= n;   /* one read: the flag is async */
        /* the epoch's last step is followed by the epoch's own checkpoint */
        if (!last && (stop || (c->checkpoint_every > 0 && r->since_ckpt >= c->checkpoint_every))) {
            double ts = now_s();
            rc = save_position(r, epoch, B, oom, es, before + (ts - t0 - paused), e);
            paused += now_s() - ts;
            if (rc) break;
        }
        if (r->kill_at_step == r->step) _exit(137);   /* tests: a kill -9 right after this step */
        if (!last && stop) {
            es->stopped = 1;
            break;
        }
    }
    es->train_time = before + now_s() - t0 - paused;
    double kernels = tr_backend_timing_epoch_end(r->be);
    if (tr_backend_timing_on_device(r->be)) es->compute = kernels;   /* SPEC §7: GPU kernel time */
    return rc;
}

int tr_train_eval_batch(const tr_graph *g, int test_n, int requested)
{
    int b = 1;
    if (requested > 0) b = requested;
    else
        while (2 * b <= TR_EVAL_BATCH_MAX) {
            tr_plan_size s;
            tr_graph_plan_size(g, 2 * b, 1, &s);
            if (s.act < 0 || (s.act + s.saved + s.ws) * (int64_t)sizeof(float) > ((int64_t)TR_EVAL_BUDGET_MIB << 20))
                break;
            b *= 2;
        }
    return b < test_n ? b : test_n > 0 ? test_n : 1;
}

/* The test set through the inference plan (no activation gradients, nothing saved for a
 * backward, memory reused as activations die) in batches of r->eval_b, the same batches in a
 * resumed run as in an uninterrupted one. A plan that does not fit halves the batch for the rest
 * of the run instead of failing it. Training resumes on its own plan as it was: evaluation
 * writes only memory that a training step rewrites before reading. */
static deba_status evaluate(run_state *r, double *loss, double *acc, double *secs, deba_err *e)
{
    tr_graph *g = r->g;
    int n = r->test->n;
    tr_batch_opts bo = {0, r->image, r->image, r->train->mean, r->train->std};
    double t0 = now_s(), ls = 0;
    int64_t correct = 0;
    deba_status st;
    while ((st = tr_graph_plan_infer(g, r->eval_b, e)) == DEBA_E_NOMEM && r->eval_b > 1) {
        if (!r->c->quiet)
            fprintf(stderr, "note: evaluation batch %d does not fit on %s: trying %d\n", r->eval_b, r->be->name,
                    r->eval_b / 2);
        deba_err_clear(e);
        r->eval_b /= 2;
    }
    if (!st) st = ensure_host(r, r->eval_b, e);
    if (st) return st;
    int B = r->eval_b;
    tr_graph_infer_begin(g);
    for (int start = 0; start < n; start += B) {
        int nb = n - start < B ? n - start : B;
        for (int i = 0; i < nb; i++) r->idx[i] = start + i;
        tr_dataset_batch(r->test, r->idx, nb, &bo, NULL, r->x, r->y);
        tr_graph_set_batch(g, r->x, r->y, nb);
        tr_graph_forward(g, nb);
        double l;
        int64_t cc;
        tr_graph_eval_loss(g, nb, &l, &cc);
        ls += l;
        correct += cc;
    }
    tr_graph_infer_end(g);
    *loss = ls / n;
    *acc = 100.0 * (double)correct / n;
    *secs = now_s() - t0;
    return DEBA_OK;
}

static double scaled_lr(const tr_train_config *c, int B)
{
    double ratio = (double)B / c->sched.b0;
    switch (c->lr_scaling) {
    case TR_LR_LINEAR: return c->lr * ratio;
    case TR_LR_SQRT: return c->lr * sqrt(ratio);
    default: return c->lr;
    }
}

/* Plans the graph for the scheduler's batch size; an allocation failure at a grown size puts
 * the run back at the size that last ran (SPEC §8), which the trace records as `oom`. */
static deba_status plan_epoch(run_state *r, int last_b, int *oom, deba_err *e)
{
    *oom = 0;
    int B = deba_sched_batch(r->sched);
    deba_status st = tr_graph_plan(r->g, B, e);
    if (st == DEBA_E_NOMEM && last_b > 0 && last_b < B) {
        deba_err_clear(e);
        deba_sched_oom(r->sched, last_b);
        *oom = 1;
        st = tr_graph_plan(r->g, last_b, e);
    }
    if (!st) st = ensure_host(r, deba_sched_batch(r->sched) > r->g->planned_n ? deba_sched_batch(r->sched)
                                                                               : r->g->planned_n, e);
    return st;
}

static int row_finite(const deba_trace_row *r)
{
    const double v[] = {r->lr, r->train_loss, r->train_acc, r->test_loss, r->test_acc, r->grad_var,
                        r->grad_norm, r->norm_var, r->loss_var, r->confidence, r->samples_per_s};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

static deba_status run_epochs(run_state *r, tr_train_result *res, deba_err *e)
{
    const tr_train_config *c = r->c;
    deba_status st = DEBA_OK;
    const char *status = "completed";
    int last_b = r->trace.n ? r->trace.rows[r->trace.n - 1].batch_size : 0;
    /* Fault injection for the resume test: die like SIGKILL right after this epoch's
     * checkpoint and before its trace row. */
    const char *fault = getenv("DEBA_FAULT_KILL_AFTER_EPOCH");
    int fault_epoch = fault ? atoi(fault) : 0;
    /* Test hooks at a global step k (steps counted from the run's start, over all epochs): a stop
     * request raised after step k, and a kill -9 after step k (and its checkpoint, if one is due). */
    const char *hook = getenv("DEBA_TEST_STOP_AT_STEP");
    r->stop_at_step = hook ? atol(hook) : 0;
    hook = getenv("DEBA_FAULT_KILL_AT_STEP");
    r->kill_at_step = hook ? atol(hook) : 0;
    r->step = r->info.pos.active ? r->info.pos.steps : 0;
    int most = r->info.pos.active ? r->info.pos.batch_size : 0;
    for (size_t i = 0; i < r->trace.n; i++) {
        r->step += r->trace.rows[i].steps;
        if (r->trace.rows[i].batch_size > most) most = r->trace.rows[i].batch_size;
    }
    /* The graph is planned for the largest batch so far, as an uninterrupted run would be (those
     * sizes all fitted before). Evaluation has a plan of its own, whose batch size depends only
     * on the model, the test set and --eval-batch, so a resumed run evaluates in the same
     * batches and its test loss matches to the last bit. */
    if (most > 0 && (st = tr_graph_plan(r->g, most, e))) return st;
    r->eval_b = tr_train_eval_batch(r->g, r->test->n, c->eval_batch);
    for (int t = r->info.epoch + 1; t <= c->epochs; t++) {
        if (tr_train_stop_requested) {   /* between epochs: the last checkpoint holds everything */
            status = "interrupted";
            break;
        }
        int oom, B;
        if (r->info.pos.active) {   /* resuming inside epoch t: its batch size was settled */
            B = r->info.pos.batch_size;
            oom = r->info.pos.oom;
            if ((st = ensure_host(r, r->g->planned_n, e))) return st;
        } else {
            if ((st = plan_epoch(r, last_b, &oom, e))) return st;
            B = deba_sched_batch(r->sched);
        }
        double lr = scaled_lr(c, B);
        epoch_stats es;
        if ((st = train_epoch(r, t, B, lr, oom, &es, e))) return st;
        if (es.diverged) {
            status = "diverged";
            break;
        }
        if (es.stopped) {
            status = "interrupted";
            break;
        }
        deba_epoch_result er;
        double train_loss = es.loss_sum / (double)es.samples;
        double ts = now_s();
        deba_sched_step(r->sched, deba_gradacc_var(&es.acc), deba_gradacc_norm(&es.acc), train_loss, &er);
        es.signal += now_s() - ts;
        deba_trace_row row = {0};
        row.epoch = t;
        row.batch_size = B;
        row.steps = es.steps;
        row.lr = lr;
        row.train_loss = train_loss;
        row.train_acc = 100.0 * (double)es.correct / (double)es.samples;
        if ((st = evaluate(r, &row.test_loss, &row.test_acc, &row.eval_time_s, e))) return st;
        row.grad_var = er.grad_var;
        row.grad_norm = er.grad_norm;
        row.norm_var = er.norm_var;
        row.loss_var = er.loss_var;
        row.confidence = er.confidence;
        row.decision = oom ? DEBA_DEC_OOM : er.decision;
        row.epoch_time_s = es.train_time;
        row.compute_time_s = es.compute;
        row.data_time_s = es.data;
        row.signal_time_s = es.signal;
        row.samples_per_s = es.samples / (es.train_time > 0 ? es.train_time : 1e-9);
        if (!row_finite(&row)) {   /* finite loss but overflowing gradients, or eval blew up */
            status = "diverged";
            break;
        }
        r->info.epoch = t;
        r->info.train_time_s += row.epoch_time_s;
        if (row.test_acc > r->info.best_test_acc) r->info.best_test_acc = row.test_acc;
        if ((st = deba_trace_push(&r->trace, &row, e))) return st;
        memset(&r->info.pos, 0, sizeof r->info.pos);   /* at the epoch's end */
        /* checkpoint first: a kill between the two leaves a checkpoint whose trace rows
         * rebuild trace.csv on resume */
        if ((st = tr_ckpt_save(r->ckpt_path, &r->info, r->g, r->sched, &r->trace, e))) return st;
        r->since_ckpt = 0;
        if (fault_epoch == t) _exit(137);   /* tests: a kill at the worst moment */
        if ((st = deba_trace_append_row(r->trace_f, r->trace_path, &row, e))) return st;
        if (c->progress) fprintf(stderr, "\r%*s\r", 100, "");
        if (!c->quiet)
            fprintf(stderr, "epoch %3d  B %4d  loss %.4f  train %.2f%%  test %.2f%%  %s  %.1fs  %.0f samples/s\n", t, B,
                    row.train_loss, row.train_acc, row.test_acc, deba_decision_name(row.decision), row.epoch_time_s,
                    row.samples_per_s);
        last_b = B;
    }
    char kpath[4300];
    snprintf(kpath, sizeof kpath, "%s/kernels.csv", r->dir);
    if ((st = tr_backend_timing_write_csv(r->be, kpath, e))) return st;
    snprintf(res->status, sizeof res->status, "%s", status);
    res->epochs_done = r->info.epoch;
    res->final_test_acc = r->trace.n ? r->trace.rows[r->trace.n - 1].test_acc : 0;
    res->best_test_acc = r->info.best_test_acc;
    res->total_train_time_s = r->info.train_time_s;
    return write_meta(r, status, NULL, e);
}

deba_status tr_train_resolve_name(tr_train_config *c, deba_err *e)
{
    if (!c->model[0]) return DEBA_OK;
    if (c->arch[0]) {
        if (!deba_name_ok(c->arch))
            return deba_err_set(e, DEBA_E_INPUT, "--name: '%s' must be 1-63 characters from A-Z a-z 0-9 . _ - (not . or "
                                "..): it becomes a directory name", c->arch);
        return DEBA_OK;
    }
    char stem[256];
    tr_onnx_model_stem(c->model, stem, sizeof stem);
    if (!deba_name_ok(stem))
        return deba_err_set(e, DEBA_E_INPUT, "--model %s: its stem '%.80s' cannot name the run's directory (1-63 "
                            "characters from A-Z a-z 0-9 . _ -): give the run a name with --name", c->model, stem);
    snprintf(c->arch, sizeof c->arch, "%.*s", (int)sizeof c->arch - 1, stem);
    return DEBA_OK;
}

tr_graph *tr_train_model_build(const tr_train_config *c, int in_c, int image, int classes,
                               tr_onnx_model_info *info, deba_err *e)
{
    if (!c->model[0]) return tr_model_build(c->arch, in_c, image, classes, e);
    return tr_onnx_model_build(c->model, c->dataset[0] ? c->dataset : NULL, in_c, image, classes, c->init, info, e);
}

deba_status tr_train_run(const tr_train_config *given, tr_train_result *res, deba_err *e)
{
    run_state r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    tr_train_config named = *given;   /* with a model file: the run's name resolved */
    const tr_train_config *c = &named;
    r.c = c;
    r.lock.fd = -1;
    deba_status nst = tr_train_resolve_name(&named, e);
    if (nst) return nst;
    if (c->epochs < 1) return deba_err_set(e, DEBA_E_INPUT, "--epochs must be at least 1 (got %d)", c->epochs);
    if (!(isfinite(c->lr) && c->lr > 0)) return deba_err_set(e, DEBA_E_INPUT, "--lr must be > 0 and finite (got %g)", c->lr);
    if (!(c->momentum >= 0 && c->momentum < 1))
        return deba_err_set(e, DEBA_E_INPUT, "--momentum must be in [0, 1) (got %g)", c->momentum);
    if (!(isfinite(c->weight_decay) && c->weight_decay >= 0))
        return deba_err_set(e, DEBA_E_INPUT, "--weight-decay must be >= 0 and finite (got %g)", c->weight_decay);
    deba_status st = deba_sched_config_check(&c->sched, e);
    if (st) return st;
    const char *label = c->label[0] ? c->label : deba_method_name(c->sched.method);
    if ((st = deba_run_dir(r.dir, sizeof r.dir, c->out, c->arch, c->dataset, label, (int)c->seed, e))) return st;
    snprintf(r.trace_path, sizeof r.trace_path, "%s/trace.csv", r.dir);
    snprintf(r.meta_path, sizeof r.meta_path, "%s/meta.csv", r.dir);
    snprintf(r.ckpt_path, sizeof r.ckpt_path, "%s/checkpoint.bin", r.dir);
    snprintf(res->run_dir, sizeof res->run_dir, "%s", r.dir);
    if (!c->model[0] && !tr_model_find(c->arch)) {
        tr_graph_free(tr_model_build(c->arch, 3, 32, 10, e));   /* for its message listing the models */
        return e ? e->status : DEBA_E_INPUT;
    }
    if (strlen(c->model) >= sizeof r.meta.kv[0].value)   /* meta.csv records it */
        return deba_err_set(e, DEBA_E_INPUT, "--model: path longer than %zu characters", sizeof r.meta.kv[0].value - 1);
    int resuming;
    if ((st = load_data(&r, e))) goto done;
    if (!(r.be = tr_backend_new(c->device, e))) {
        st = e->status;
        goto done;
    }
    if ((st = tr_backend_timing_start(r.be, e))) goto done;   /* per-op or per-kernel times: kernels.csv */
    if (!(r.g = tr_train_model_build(c, r.train->c, r.image, r.train->classes, &r.model, e))) {
        st = e->status;
        goto done;
    }
    if ((st = tr_graph_alloc(r.g, r.be, c->seed, e))) goto done;
    if (!(r.sched = deba_sched_new(&c->sched, e))) {
        st = e->status;
        goto done;
    }
    if (!(r.idx = malloc(sizeof(int) * (size_t)(r.train->n > r.test->n ? r.train->n : r.test->n)))) {
        st = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        goto done;
    }
    if (strlen(c->thresholds_src) >= sizeof r.meta.kv[0].value) {   /* meta.csv records it */
        st = deba_err_set(e, DEBA_E_INPUT, "--thresholds: path longer than %zu characters",
                          sizeof r.meta.kv[0].value - 1);
        goto done;
    }
    /* only now, with data, device and model known good, touch the run directory */
    if ((st = prepare_dir(&r, &resuming, e))) goto done;
    deba_utc_now(r.started, sizeof r.started);
    snprintf(r.info.arch, sizeof r.info.arch, "%.*s", (int)sizeof r.info.arch - 1, c->arch);
    snprintf(r.info.dataset, sizeof r.info.dataset, "%.*s", (int)sizeof r.info.dataset - 1, c->dataset);
    r.info.seed = c->seed;
    tr_rng_seed(&r.info.data_rng, c->seed, 1);
    tr_rng_seed(&r.info.aug_rng, c->seed, 2);
    /* from here a failure is the run's (I/O, a full disk, a corrupt checkpoint) and meta.csv
     * records it; options that do not fit the run below leave the run as it was */
    r.report_failure = 1;
    if (resuming) {
        tr_ckpt_info saved;
        /* a changed model file first: its checkpoint would not fit the new graph, and that
         * message would not say why */
        deba_meta was = {0};
        if (!deba_meta_read(r.meta_path, &was, NULL)) st = check_model(&was, r.meta_path, c, e);
        deba_meta_free(&was);
        if (st) {
            r.report_failure = 0;   /* the run is as it was; this invocation is wrong */
            goto done;
        }
        if ((st = tr_ckpt_load(r.ckpt_path, &saved, r.g, &r.sched, &r.trace, e))) goto done;
        /* the names are checked printable and NUL-terminated by the loader */
        if (strcmp(saved.arch, c->arch) || strcmp(saved.dataset, c->dataset) || saved.seed != c->seed) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s was written for %s/%s seed %llu, not %s/%s seed %llu", r.ckpt_path,
                              saved.arch, saved.dataset, (unsigned long long)saved.seed, c->arch, c->dataset,
                              (unsigned long long)c->seed);
            goto done;
        }
        if (saved.pos.active && saved.pos.samples >= r.train->n) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: stopped after sample %lld of an epoch of %d "
                              "images", r.ckpt_path, (long long)saved.pos.samples, r.train->n);
            goto done;
        }
        r.report_failure = 0;
        int need = saved.epoch + saved.pos.active;   /* an epoch in progress counts */
        if (need > c->epochs) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s has %d epochs done%s, more than --epochs %d: resume with --epochs "
                              "%d or more (or use --force to start over)", r.dir, saved.epoch,
                              saved.pos.active ? " and one in progress" : "", c->epochs, need);
            goto done;
        }
        deba_meta old = {0};
        if (!deba_meta_read(r.meta_path, &old, NULL)) {
            if (deba_meta_get(&old, "started_utc"))
                snprintf(r.started, sizeof r.started, "%s", deba_meta_get(&old, "started_utc"));
            st = tr_train_check_meta(&old, r.meta_path, c, e);
        }
        deba_meta_free(&old);
        if (st) goto done;
        r.report_failure = 1;
        /* trace.csv holds the checkpoint's rows, or one fewer after a kill between the two
         * writes; anything else means one of the files is not this run's */
        long rows = trace_file_rows(r.trace_path);
        if (rows != saved.epoch && rows != saved.epoch - 1) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s has %d epochs done but %s has %ld complete rows: the two files do "
                              "not belong together (use --force to start over)", r.ckpt_path, saved.epoch,
                              r.trace_path, rows);
            goto done;
        }
        r.info = saved;
        /* the trace on disk may lack the row of the last checkpointed epoch or hold a torn
         * one; the checkpoint's rows are the truth */
        if ((st = deba_trace_write(r.trace_path, &r.trace, e))) goto done;
    }
    if ((st = deba_trace_append_open(r.trace_path, &r.trace_f, e))) goto done;
    if ((st = write_meta(&r, "running", NULL, e))) goto done;
    if (!c->quiet)
        fprintf(stderr, "%s %s/%s seed %llu on %s (%s): %lld params, %d train / %d test images at %dx%d%s\n",
                resuming ? "resuming" : "training", c->arch, c->dataset, (unsigned long long)c->seed, r.be->name,
                r.be->device_name, (long long)r.g->n_params, r.train->n, r.test->n, r.image, r.image,
                resuming ? "" : "");
    if (!c->quiet && c->model[0])
        fprintf(stderr, "model %s (opset %d%s%s), weights: %s\n", c->model, r.model.opset,
                r.model.producer[0] ? ", from " : "", r.model.producer,
                c->init == ONNX_INIT_SEEDED ? "re-initialised from the seed (--init seeded)" : "the file's (--init onnx)");
    if (!c->quiet && r.be->note[0]) fprintf(stderr, "note: %s\n", r.be->note);   /* why auto took the CPU */
    st = run_epochs(&r, res, e);
done:
    if (st && r.report_failure) record_failure(&r, e);
    run_free(&r);
    return st;
}
