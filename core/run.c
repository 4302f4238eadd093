/* The epoch accumulator and the run writer of deba/run.h: a training loop that is not deba-train
 * writes trace.csv and meta.csv with deba-train's keys, formats, refusals and resume rules, and
 * the derived columns come from the same scheduler code, so the tools cannot tell the runs apart. */
#include "deba/run.h"
#include "deba/csv.h"
#include "deba/escape.h"
#include "deba/runlock.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- epoch accumulator ---- */

void deba_epochacc_reset(deba_epochacc *a)
{
    memset(a, 0, sizeof *a);
    deba_gradacc_reset(&a->grad);
}

deba_status deba_epochacc_add(deba_epochacc *a, double grad_sum, double grad_sumsq, int64_t d, double loss_sum,
                              int64_t samples, int64_t correct, deba_err *e)
{
    if (d < 1) return deba_err_set(e, DEBA_E_INPUT, "numel: the gradient has %lld entries, need >= 1", (long long)d);
    if (samples < 1)
        return deba_err_set(e, DEBA_E_INPUT, "samples: a step needs >= 1 sample (got %lld)", (long long)samples);
    if (correct < 0 || correct > samples)
        return deba_err_set(e, DEBA_E_INPUT, "correct: %lld is outside [0, samples %lld]", (long long)correct,
                            (long long)samples);
    /* deba-train stops the epoch at a non-finite loss without counting the step */
    if (!isfinite(loss_sum)) {
        a->diverged = 1;
        return DEBA_OK;
    }
    deba_gradacc_add(&a->grad, grad_sum, grad_sumsq, d);
    a->loss_sum += loss_sum;
    a->samples += samples;
    a->correct += correct;
    return DEBA_OK;
}

deba_status deba_epochacc_fill(const deba_epochacc *a, deba_trace_row *row, deba_err *e)
{
    if (a->samples < 1 || a->grad.steps < 1) {
        if (!a->diverged) return deba_err_set(e, DEBA_E_INPUT, "epoch: no step was added");
        row->steps = (int)a->grad.steps;
        row->train_loss = NAN;   /* the divergence itself: the writer ends the run on it */
        row->train_acc = 0;
        row->grad_var = row->grad_norm = 0;
        return DEBA_OK;
    }
    if (a->grad.steps > INT_MAX) return deba_err_set(e, DEBA_E_INPUT, "epoch: more than %d steps", INT_MAX);
    row->steps = (int)a->grad.steps;
    row->train_loss = a->diverged ? NAN : a->loss_sum / (double)a->samples;
    row->train_acc = 100.0 * (double)a->correct / (double)a->samples;
    row->grad_var = deba_gradacc_var(&a->grad);
    row->grad_norm = deba_gradacc_norm(&a->grad);
    return DEBA_OK;
}

/* ---- scheduler bytes ---- */

deba_status deba_sched_to_bytes(const deba_sched *s, void **buf, size_t *len, deba_err *e)
{
    char *p = NULL;
    size_t n = 0;
    *buf = NULL;
    *len = 0;
    FILE *f = open_memstream(&p, &n);
    if (!f) return deba_err_set(e, DEBA_E_NOMEM, "scheduler state: out of memory");
    deba_status st = deba_sched_save(s, f, e);
    if (fclose(f) != 0 && !st) st = deba_err_set(e, DEBA_E_NOMEM, "scheduler state: out of memory");
    if (st) {
        free(p);
        return st;
    }
    *buf = p;
    *len = n;
    return DEBA_OK;
}

deba_sched *deba_sched_from_bytes(const void *buf, size_t len, deba_err *e)
{
    if (!buf || len == 0) {
        deba_err_set(e, DEBA_E_INPUT, "scheduler state: empty");
        return NULL;
    }
    FILE *f = fmemopen((void *)buf, len, "rb");
    if (!f) {
        deba_err_set(e, DEBA_E_NOMEM, "scheduler state: out of memory");
        return NULL;
    }
    deba_sched *s = deba_sched_load(f, e);
    if (s && fgetc(f) != EOF) {   /* a blob with a tail is not one we wrote */
        deba_sched_free(s);
        s = NULL;
        deba_err_set(e, DEBA_E_INPUT, "scheduler state: %zu bytes hold more than one state", len);
    }
    fclose(f);
    return s;
}

void deba_free(void *p)
{
    free(p);
}

/* ---- run writer ---- */

void deba_run_config_default(deba_run_config *c)
{
    memset(c, 0, sizeof *c);
    c->out = "runs";
    deba_sched_config_default(&c->sched);
    c->lr = 0.01;
    c->momentum = 0.9;
    c->weight_decay = 5e-4;
    c->keep_rows = -1;
}

struct deba_runwriter {
    char dir[4096], trace_path[4200], meta_path[4200];
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX], label[DEBA_NAME_MAX];
    char lr_scaling[16], device[DEBA_NAME_MAX], device_name[512], precision[32], thresholds_source[512];
    char started[32];
    long long seed, params;
    int epochs, image_size, subset, test_subset;
    double lr, momentum, weight_decay;
    deba_sched *sched;
    deba_meta meta;
    FILE *trace_f;
    deba_lock lock;
    int rows;               /* rows in trace.csv */
    double best_acc, final_acc, train_time;
    int oom;                /* the coming row's epoch ran at the size deba_runwriter_oom gave */
    int diverged, closed;
};

void deba_utc_now(char *buf, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

deba_status deba_run_meta_write(const char *path, deba_meta *m, const deba_run_meta *f, const char *status,
                                const char *error, deba_err *e)
{
    const deba_sched_config *sc = f->sched;
    char fin[32] = "";
    if (strcmp(status, "running")) deba_utc_now(fin, sizeof fin);
    deba_status st = DEBA_OK;
    const char *key = NULL;   /* the key deba_meta_set refused (a value too long), for the message */
#define SET(k, ...) if (!st && (st = deba_meta_set(m, k, __VA_ARGS__))) key = k
    SET("format_version", "%d", DEBA_FORMAT_VERSION);
    SET("tool_version", "%s", DEBA_VERSION);
    SET("arch", "%s", f->arch);
    SET("dataset", "%s", f->dataset);
    SET("label", "%s", f->label);
    SET("method", "%s", deba_method_name(sc->method));
    SET("seed", "%llu", f->seed);
    SET("epochs", "%d", f->epochs);
    SET("batch0", "%d", sc->b0);
    SET("bmin", "%d", sc->bmin);
    SET("bmax", "%d", f->bmax);
    SET("lr", "%.17g", f->lr);
    SET("momentum", "%.17g", f->momentum);
    SET("weight_decay", "%.17g", f->weight_decay);
    SET("tau", "%.17g", sc->tau);
    SET("theta", "%.17g", sc->theta);
    SET("lambda", "%.17g", sc->lambda);
    SET("window", "%d", sc->window);
    SET("cooldown", "%d", sc->cooldown);
    SET("growth", "%.17g", sc->growth);
    SET("rollback", "%.17g", sc->rollback);
    SET("device", "%s", f->device);
    SET("device_name", "%s", f->device_name);
    SET("precision", "%s", f->precision);
    SET("params", "%lld", f->params);
    SET("started_utc", "%s", f->started_utc);
    SET("finished_utc", "%s", fin);
    SET("status", "%s", status);
    SET("final_test_acc", "%.17g", f->final_test_acc);
    SET("best_test_acc", "%.17g", f->best_test_acc);
    SET("total_train_time_s", "%.17g", f->total_train_time_s);
    SET("image_size", "%d", f->image_size);
    SET("subset", "%d", f->subset);
    SET("test_subset", "%d", f->test_subset);
    SET("lr_scaling", "%s", f->lr_scaling);
    SET("thresholds_source", "%s", f->thresholds_source);
    if (f->model) {
        SET("model", "%s", f->model);
        SET("model_sha256", "%s", f->model_sha256 ? f->model_sha256 : "");
        SET("model_opset", "%d", f->model_opset);
        SET("model_producer", "%s", f->model_producer ? f->model_producer : "");
        SET("init", "%s", f->init ? f->init : "onnx");
    }
    if (error) SET("error", "%.*s", (int)sizeof m->kv[0].value - 1, error);
#undef SET
    if (st)
        return deba_err_set(e, st, "%s: the value of '%s' is longer than %zu characters", path, key,
                            sizeof m->kv[0].value - 1);
    return deba_meta_write(path, m, e);
}

static deba_status write_meta(deba_runwriter *w, const char *status, const char *error, deba_err *e)
{
    deba_run_meta f = {
        .arch = w->arch, .dataset = w->dataset, .label = w->label, .seed = (unsigned long long)w->seed,
        .epochs = w->epochs > 0 ? w->epochs : w->rows, .sched = deba_sched_config_of(w->sched),
        .bmax = deba_sched_bmax(w->sched), .lr = w->lr, .momentum = w->momentum, .weight_decay = w->weight_decay,
        .device = w->device, .device_name = w->device_name, .precision = w->precision, .params = w->params,
        .started_utc = w->started, .final_test_acc = w->final_acc, .best_test_acc = w->best_acc,
        .total_train_time_s = w->train_time, .image_size = w->image_size, .subset = w->subset,
        .test_subset = w->test_subset, .lr_scaling = w->lr_scaling, .thresholds_source = w->thresholds_source,
    };
    return deba_run_meta_write(w->meta_path, &w->meta, &f, status, error, e);
}

/* A string option copied into the writer; too long for meta.csv is an input error naming it. */
static deba_status copy_opt(char *dst, size_t cap, const char *src, const char *dflt, const char *name, deba_err *e)
{
    const char *s = src ? src : dflt;
    if (strlen(s) >= cap)
        return deba_err_set(e, DEBA_E_INPUT, "%s: longer than %zu characters", name, cap - 1);
    if (strpbrk(s, "\n\r"))
        return deba_err_set(e, DEBA_E_INPUT, "%s: must be one line", name);
    memcpy(dst, s, strlen(s) + 1);
    return DEBA_OK;
}

static deba_status check_config(const deba_run_config *c, deba_err *e)
{
    if (!c->out || !*c->out) return deba_err_set(e, DEBA_E_INPUT, "out: empty directory name");
    if (!c->arch) return deba_err_set(e, DEBA_E_INPUT, "arch: required");
    if (!c->dataset) return deba_err_set(e, DEBA_E_INPUT, "dataset: required");
    if (c->seed < 0 || c->seed > INT_MAX)
        return deba_err_set(e, DEBA_E_INPUT, "seed: must be in [0, %d] (got %lld)", INT_MAX, c->seed);
    if (c->epochs < 0) return deba_err_set(e, DEBA_E_INPUT, "epochs: must be >= 0, 0 when not known (got %d)", c->epochs);
    if (!(isfinite(c->lr) && c->lr > 0)) return deba_err_set(e, DEBA_E_INPUT, "lr: must be > 0 and finite (got %g)", c->lr);
    if (!(c->momentum >= 0 && c->momentum < 1))
        return deba_err_set(e, DEBA_E_INPUT, "momentum: must be in [0, 1) (got %g)", c->momentum);
    if (!(isfinite(c->weight_decay) && c->weight_decay >= 0))
        return deba_err_set(e, DEBA_E_INPUT, "weight_decay: must be >= 0 and finite (got %g)", c->weight_decay);
    if (c->lr_scaling && strcmp(c->lr_scaling, "none") && strcmp(c->lr_scaling, "linear") &&
        strcmp(c->lr_scaling, "sqrt"))
        return deba_err_set(e, DEBA_E_INPUT, "lr_scaling: must be none, linear or sqrt (got '%.40s')", c->lr_scaling);
    if (c->params < 0) return deba_err_set(e, DEBA_E_INPUT, "params: must be >= 0 (got %lld)", c->params);
    if (c->image_size < 0 || c->subset < 0 || c->test_subset < 0)
        return deba_err_set(e, DEBA_E_INPUT, "%s: must be >= 0, 0 when it does not apply",
                            c->image_size < 0 ? "image_size" : c->subset < 0 ? "subset" : "test_subset");
    if (c->keep_rows < -1) return deba_err_set(e, DEBA_E_INPUT, "keep_rows: must be >= 0, or -1 for all (got %d)", c->keep_rows);
    if (c->keep_rows >= 0 && !c->resume) return deba_err_set(e, DEBA_E_INPUT, "keep_rows: only with resume");
    if (c->resume && c->force) return deba_err_set(e, DEBA_E_INPUT, "resume and force: choose one");
    return deba_sched_config_check(&c->sched, e);
}

/* On resume the settings must be the run's, as tr_train_check_meta makes deba-train check. */
static deba_status check_meta(const deba_runwriter *w, const deba_meta *m, deba_err *e)
{
    const deba_sched_config *sc = deba_sched_config_of(w->sched);
    const char *method = deba_meta_get(m, "method");
    if (method && strcmp(method, deba_method_name(sc->method)))
        return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with method %s, not %s: resume it with the "
                            "same settings (or use force to start over)", w->meta_path, method,
                            deba_method_name(sc->method));
    struct { const char *key; double want; } keys[] = {
        {"batch0", sc->b0}, {"lr", w->lr}, {"momentum", w->momentum}, {"weight_decay", w->weight_decay},
        {"subset", w->subset}, {"image_size", w->image_size}, {"test_subset", w->test_subset},
        {"bmin", sc->bmin}, {"bmax", sc->bmax}, {"tau", sc->tau}, {"theta", sc->theta}, {"lambda", sc->lambda},
        {"window", sc->window}, {"cooldown", sc->cooldown}, {"growth", sc->growth}, {"rollback", sc->rollback},
    };
    size_t nk = sc->method == DEBA_METHOD_FIXED ? 7 : sizeof keys / sizeof *keys;
    for (size_t i = 0; i < nk; i++) {
        const char *v = deba_meta_get(m, keys[i].key);
        if (!v) continue;
        if (!strcmp(keys[i].key, "bmax")) continue;   /* an OOM lowers it: the replay checks it */
        char *end;
        double x = strtod(v, &end);
        if (*end || fabs(x - keys[i].want) > 1e-12 * fmax(fabs(x), fabs(keys[i].want)))
            return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with %s %s, not %.15g: resume it with the "
                                "same settings (or use force to start over)", w->meta_path, keys[i].key, v,
                                keys[i].want);
    }
    const char *lrs = deba_meta_get(m, "lr_scaling");
    if (sc->method != DEBA_METHOD_FIXED && lrs && strcmp(lrs, w->lr_scaling))
        return deba_err_set(e, DEBA_E_INPUT, "%s: the run was started with lr_scaling %s, not %s: resume it with the "
                            "same settings (or use force to start over)", w->meta_path, lrs, w->lr_scaling);
    return DEBA_OK;
}

/* Drops a last row torn by a kill (bytes after the last newline), atomically; *rows counts
 * the complete rows left. */
static deba_status drop_torn_row(const char *path, long *rows, deba_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) return deba_err_set(e, DEBA_E_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 65536;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
            }
            buf = p;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return deba_err_set(e, DEBA_E_IO, "%s: read failed", path);
    }
    size_t keep = len;
    while (keep > 0 && buf[keep - 1] != '\n') keep--;
    long lines = 0;
    for (size_t i = 0; i < keep; i++) lines += buf[i] == '\n';
    *rows = lines > 0 ? lines - 1 : 0;
    deba_status st = DEBA_OK;
    if (keep < len) {
        deba_atomic a;
        if (!(st = deba_atomic_open(&a, path, e))) {
            if (fwrite(buf, 1, keep, a.f) != keep) {
                deba_atomic_abort(&a);
                st = deba_err_set(e, DEBA_E_IO, "%s: rewrite failed", path);
            } else {
                st = deba_atomic_commit(&a, e);
            }
        }
    }
    free(buf);
    return st;
}

static int same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0 || (a == 0 && b == 0);
}

/* Rebuilds the scheduler from the trace rows: the same inputs in the same order give the same
 * state bit for bit. Each row must be what this configuration would have written. */
static deba_status replay(deba_runwriter *w, const deba_trace *t, deba_err *e)
{
    for (size_t i = 0; i < t->n; i++) {
        const deba_trace_row *r = &t->rows[i];
        if (r->decision == DEBA_DEC_OOM) deba_sched_oom(w->sched, r->batch_size);
        if (r->batch_size != deba_sched_batch(w->sched))
            return deba_err_set(e, DEBA_E_INPUT, "%s:%zu: epoch %d ran at batch size %d, but these settings give %d: "
                                "the trace is not this run's (use force to start over)", w->trace_path, i + 2,
                                r->epoch, r->batch_size, deba_sched_batch(w->sched));
        deba_epoch_result er;
        deba_sched_step(w->sched, r->grad_var, r->grad_norm, r->train_loss, &er);
        const char *col = !same_double(er.norm_var, r->norm_var)       ? "norm_var"
                          : !same_double(er.loss_var, r->loss_var)     ? "loss_var"
                          : !same_double(er.confidence, r->confidence) ? "confidence"
                          : (r->decision != DEBA_DEC_OOM && r->decision != er.decision) ? "decision"
                                                                                         : NULL;
        if (col)
            return deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column '%s' of epoch %d is not what these settings compute: "
                                "the trace is not this run's (use force to start over)", w->trace_path, i + 2, col,
                                r->epoch);
        w->rows++;
        w->final_acc = r->test_acc;
        if (r->test_acc > w->best_acc) w->best_acc = r->test_acc;
        w->train_time += r->epoch_time_s;
    }
    return DEBA_OK;
}

static deba_status resume_run(deba_runwriter *w, const deba_run_config *c, deba_err *e)
{
    deba_meta old = {0};
    deba_status st = deba_meta_read(w->meta_path, &old, e);
    if (st) return st;
    const char *started = deba_meta_get(&old, "started_utc");
    if (started && strlen(started) < sizeof w->started) snprintf(w->started, sizeof w->started, "%s", started);
    st = check_meta(w, &old, e);
    deba_meta_free(&old);
    if (st) return st;
    deba_trace t = {0};
    if ((st = deba_trace_read(w->trace_path, &t, e))) return st;
    if (c->keep_rows >= 0) {
        if ((size_t)c->keep_rows > t.n) {
            st = deba_err_set(e, DEBA_E_INPUT, "keep_rows: %d, but %s has only %zu rows", c->keep_rows, w->trace_path,
                              t.n);
        } else if ((size_t)c->keep_rows < t.n) {
            t.n = (size_t)c->keep_rows;
            st = deba_trace_write(w->trace_path, &t, e);
        }
    }
    if (!st && c->epochs > 0 && t.n > (size_t)c->epochs)
        st = deba_err_set(e, DEBA_E_INPUT, "%s has %zu epochs done, more than epochs %d: resume with epochs %zu or "
                          "more (or use force to start over)", w->dir, t.n, c->epochs, t.n);
    if (!st) st = replay(w, &t, e);
    deba_trace_free(&t);
    return st;
}

/* deba-train's prepare_dir, minus the checkpoint: the trace is what a resume continues from. */
static deba_status prepare_dir(deba_runwriter *w, const deba_run_config *c, deba_err *e)
{
    deba_status st = deba_mkdirs(w->dir, e);
    if (!st) st = deba_lock_acquire(&w->lock, w->dir, e);
    if (!st) st = deba_atomic_clean_stale(w->dir, NULL, e);
    if (st) return st;
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.bin", w->dir);
    int has_trace = file_exists(w->trace_path);
    int has_any = has_trace || file_exists(w->meta_path) || file_exists(ckpt);
    if (!has_any) return DEBA_OK;
    if (c->resume) {
        long rows = 0;
        if (has_trace && (st = drop_torn_row(w->trace_path, &rows, e))) return st;
        if (rows == 0) {   /* killed before its first row: nothing to lose, start it over */
            remove(w->trace_path);
            remove(w->meta_path);
            return DEBA_OK;
        }
        return resume_run(w, c, e);
    }
    if (!c->force)
        return deba_err_set(e, DEBA_E_INPUT, "%s already holds a run: use resume to continue it or force to start over",
                            w->dir);
    remove(ckpt);   /* a deba-train checkpoint left here would resume the wrong run */
    remove(w->trace_path);
    remove(w->meta_path);
    return DEBA_OK;
}

deba_runwriter *deba_runwriter_open(const deba_run_config *c, deba_err *e)
{
    if (check_config(c, e)) return NULL;
    deba_runwriter *w = calloc(1, sizeof *w);
    if (!w) {
        deba_err_set(e, DEBA_E_NOMEM, "run writer: out of memory");
        return NULL;
    }
    w->lock.fd = -1;
    const char *label = c->label ? c->label : deba_method_name(c->sched.method);
    deba_status st;
    if ((st = copy_opt(w->arch, sizeof w->arch, c->arch, "", "arch", e)) ||
        (st = copy_opt(w->dataset, sizeof w->dataset, c->dataset, "", "dataset", e)) ||
        (st = copy_opt(w->label, sizeof w->label, label, "", "label", e)) ||
        (st = copy_opt(w->lr_scaling, sizeof w->lr_scaling, c->lr_scaling, "none", "lr_scaling", e)) ||
        (st = copy_opt(w->device, sizeof w->device, c->device, "cpu", "device", e)) ||
        (st = copy_opt(w->device_name, sizeof w->device_name, c->device_name, "", "device_name", e)) ||
        (st = copy_opt(w->precision, sizeof w->precision, c->precision, "fp32", "precision", e)) ||
        (st = copy_opt(w->thresholds_source, sizeof w->thresholds_source, c->thresholds_source, "command line",
                       "thresholds_source", e)) ||
        (st = deba_run_dir(w->dir, sizeof w->dir, c->out, c->arch, c->dataset, label, (int)c->seed, e)))
        goto fail;
    snprintf(w->trace_path, sizeof w->trace_path, "%s/trace.csv", w->dir);
    snprintf(w->meta_path, sizeof w->meta_path, "%s/meta.csv", w->dir);
    w->seed = c->seed;
    w->params = c->params;
    w->epochs = c->epochs;
    w->image_size = c->image_size;
    w->subset = c->subset;
    w->test_subset = c->test_subset;
    w->lr = c->lr;
    w->momentum = c->momentum;
    w->weight_decay = c->weight_decay;
    if (!(w->sched = deba_sched_new(&c->sched, e))) goto fail;
    deba_utc_now(w->started, sizeof w->started);
    if ((st = prepare_dir(w, c, e))) goto fail;
    if ((st = deba_trace_append_open(w->trace_path, &w->trace_f, e))) goto fail;
    if ((st = write_meta(w, "running", NULL, e))) goto fail;
    return w;
fail:
    deba_runwriter_free(w);
    return NULL;
}

void deba_runwriter_free(deba_runwriter *w)
{
    if (!w) return;
    if (w->trace_f) fclose(w->trace_f);
    deba_sched_free(w->sched);
    deba_meta_free(&w->meta);
    deba_lock_release(&w->lock);
    free(w);
}

const char *deba_runwriter_dir(const deba_runwriter *w) { return w->dir; }
deba_sched *deba_runwriter_sched(deba_runwriter *w) { return w->sched; }
int deba_runwriter_epochs(const deba_runwriter *w) { return w->rows; }
int deba_runwriter_diverged(const deba_runwriter *w) { return w->diverged; }

void deba_runwriter_oom(deba_runwriter *w, int fits)
{
    deba_sched_oom(w->sched, fits);
    w->oom = 1;
}

/* The first measured column a reader would reject, with its value; NULL when all are fine.
 * NaN and infinities are left to the divergence rule. */
static const char *measured_out_of_range(const deba_trace_row *r, double *value)
{
    struct { const char *name; double v, hi; } c[] = {
        {"steps", r->steps, HUGE_VAL}, {"lr", r->lr, HUGE_VAL}, {"train_loss", r->train_loss, HUGE_VAL},
        {"train_acc", r->train_acc, 100}, {"test_loss", r->test_loss, HUGE_VAL}, {"test_acc", r->test_acc, 100},
        {"grad_var", r->grad_var, HUGE_VAL}, {"grad_norm", r->grad_norm, HUGE_VAL},
        {"epoch_time_s", r->epoch_time_s, HUGE_VAL}, {"compute_time_s", r->compute_time_s, HUGE_VAL},
        {"data_time_s", r->data_time_s, HUGE_VAL}, {"signal_time_s", r->signal_time_s, HUGE_VAL},
        {"eval_time_s", r->eval_time_s, HUGE_VAL}, {"samples_per_s", r->samples_per_s, HUGE_VAL},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        if (c[i].v < 0 || c[i].v > c[i].hi) {
            *value = c[i].v;
            return c[i].name;
        }
    return NULL;
}

static int row_finite(const deba_trace_row *r)
{
    const double v[] = {r->lr, r->train_loss, r->train_acc, r->test_loss, r->test_acc, r->grad_var, r->grad_norm,
                        r->norm_var, r->loss_var, r->confidence, r->epoch_time_s, r->compute_time_s,
                        r->data_time_s, r->signal_time_s, r->eval_time_s, r->samples_per_s};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

deba_status deba_runwriter_append(deba_runwriter *w, deba_trace_row *row, int *diverged, deba_err *e)
{
    if (diverged) *diverged = 0;
    if (w->closed) return deba_err_set(e, DEBA_E_INPUT, "%s: the run is closed", w->dir);
    if (w->diverged) return deba_err_set(e, DEBA_E_INPUT, "%s: the run has diverged: no more epochs", w->dir);
    if (w->epochs > 0 && w->rows >= w->epochs)
        return deba_err_set(e, DEBA_E_INPUT, "%s: epoch %d is past epochs %d (plan more epochs, or 0 when not known)",
                            w->dir, w->rows + 1, w->epochs);
    double v;
    const char *bad = measured_out_of_range(row, &v);
    if (bad)
        return deba_err_set(e, DEBA_E_INPUT, "%s: %s %.17g is out of range (%s)", w->trace_path, bad, v,
                            strstr(bad, "acc") ? "a percentage, 0 to 100" : "must be >= 0");
    row->epoch = w->rows + 1;
    row->batch_size = deba_sched_batch(w->sched);
    int measured_ok = isfinite(row->train_loss) && isfinite(row->grad_var) && isfinite(row->grad_norm);
    deba_status st = DEBA_OK;
    if (measured_ok) {
        deba_epoch_result er;
        deba_sched_step(w->sched, row->grad_var, row->grad_norm, row->train_loss, &er);
        row->norm_var = er.norm_var;
        row->loss_var = er.loss_var;
        row->confidence = er.confidence;
        row->decision = w->oom ? DEBA_DEC_OOM : er.decision;
    }
    if (!measured_ok || !row_finite(row)) {   /* deba-train: no row, the run ends diverged */
        w->diverged = 1;
        if (diverged) *diverged = 1;
        return write_meta(w, "diverged", NULL, e);
    }
    if ((st = deba_trace_append_row(w->trace_f, w->trace_path, row, e))) return st;
    w->oom = 0;
    w->rows++;
    w->final_acc = row->test_acc;
    if (row->test_acc > w->best_acc) w->best_acc = row->test_acc;
    w->train_time += row->epoch_time_s;
    return write_meta(w, "running", NULL, e);
}

deba_status deba_runwriter_close(deba_runwriter *w, const char *status, const char *error, deba_err *e)
{
    if (w->closed) return deba_err_set(e, DEBA_E_INPUT, "%s: the run is already closed", w->dir);
    if (!status) status = w->diverged ? "diverged" : (w->epochs == 0 || w->rows >= w->epochs) ? "completed" : "interrupted";
    static const char *const ok[] = {"completed", "interrupted", "failed", "diverged"};
    size_t i = 0;
    while (i < 4 && strcmp(status, ok[i])) i++;
    if (i == 4)
        return deba_err_set(e, DEBA_E_INPUT, "status: must be completed, interrupted, failed or diverged (got '%.40s')",
                            status);
    if (w->diverged && strcmp(status, "diverged") && strcmp(status, "failed")) status = "diverged";
    deba_status st = write_meta(w, status, !strcmp(status, "failed") ? (error ? error : "unknown error") : NULL, e);
    if (st) return st;
    w->closed = 1;
    if (w->trace_f) fclose(w->trace_f);
    w->trace_f = NULL;
    deba_lock_release(&w->lock);
    return DEBA_OK;
}

size_t deba_abi_sizeof(const char *type)
{
    static const struct { const char *name; size_t size; } t[] = {
        {"deba_trace_row", sizeof(deba_trace_row)},       {"deba_sched_config", sizeof(deba_sched_config)},
        {"deba_run_config", sizeof(deba_run_config)},     {"deba_epoch_result", sizeof(deba_epoch_result)},
        {"deba_err", sizeof(deba_err)},                   {"deba_epochacc", sizeof(deba_epochacc)},
        {"deba_sgd", sizeof(deba_sgd)},
    };
    for (size_t i = 0; type && i < sizeof t / sizeof *t; i++)
        if (!strcmp(type, t[i].name)) return t[i].size;
    return 0;
}
