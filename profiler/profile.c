/* Stability profiling (SPEC §5): fixed-batch runs over seeds trained through the library (or
 * reused, or resumed), S and its terms per seed from the traces, S̄ ± σ_S, the archetype, and
 * the SPEC §4 thresholds from the same traces through calib/calib.h. */
#include "profiler/profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "calib/calib.h"
#include "deba/deba.h"
#include "deba/escape.h"
#include "trainer/data/dataset.h"

void deba_profile_summarize(const deba_profile_row *rows, size_t n, deba_summary_row *out)
{
    memset(out, 0, sizeof *out);
    if (n) {
        snprintf(out->arch, sizeof out->arch, "%s", rows[0].arch);
        snprintf(out->dataset, sizeof out->dataset, "%s", rows[0].dataset);
    }
    out->seeds = (int)n;
    double *S = malloc((n ? n : 1) * sizeof *S);
    if (S) {
        for (size_t i = 0; i < n; i++) S[i] = rows[i].S;
        out->S_mean = deba_mean(S, n);
        out->S_std = deba_std_sample(S, n);
    } else {   /* no memory for a copy: the same sums, by hand */
        for (size_t i = 0; i < n; i++) out->S_mean += rows[i].S / (double)n;
        double ss = 0;
        for (size_t i = 0; i < n; i++) ss += (rows[i].S - out->S_mean) * (rows[i].S - out->S_mean);
        out->S_std = n > 1 ? sqrt(ss / (double)(n - 1)) : 0;
    }
    out->archetype = deba_archetype_classify(out->S_mean, out->S_std);
    free(S);
}

void deba_profile_free(deba_profile *p)
{
    if (!p) return;
    free(p->seeds);
    free(p->rows);
    memset(p, 0, sizeof *p);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Loads one run directory into run (meta and trace). */
static deba_status load_run(const char *dir, deba_run *run, deba_err *e)
{
    char p[4200];
    snprintf(run->dir, sizeof run->dir, "%s", dir);
    snprintf(p, sizeof p, "%s/meta.csv", dir);
    deba_status st = deba_meta_read(p, &run->meta, e);
    if (st) return st;
    snprintf(p, sizeof p, "%s/trace.csv", dir);
    return deba_trace_read(p, &run->trace, e);
}

/* Checks that run is a fixed-batch run of arch/dataset and, when completed, computes its row. */
static deba_status seed_row(const deba_run *run, const char *arch, const char *dataset, deba_profile_seed *s,
                            deba_err *e)
{
    const deba_meta *m = &run->meta;
    const char *method = deba_meta_get(m, "method"), *ma = deba_meta_get(m, "arch"),
               *md = deba_meta_get(m, "dataset"), *status = deba_meta_get(m, "status");
    long seed;
    deba_status st = deba_meta_get_int(m, run->dir, "seed", &seed, e);
    if (st) return st;
    if (!method || strcmp(method, "fixed"))
        return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: method is '%s', not fixed: a profile needs fixed-batch runs",
                            run->dir, method ? method : "(missing)");
    if (!ma || !md || strcmp(ma, arch) || strcmp(md, dataset))
        return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: the run is %s/%s, not %s/%s", run->dir, ma ? ma : "?",
                            md ? md : "?", arch, dataset);
    if (!status) return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: key 'status' missing", run->dir);
    s->seed = (int)seed;
    if (strlen(status) >= sizeof s->status) {
        char shown[200];
        return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: status '%s' is not a run status", run->dir,
                            deba_esc_msg(shown, sizeof shown, status));
    }
    snprintf(s->dir, sizeof s->dir, "%s", run->dir);    /* both 4096 bytes */
    snprintf(s->status, sizeof s->status, "%s", status);
    s->used = 0;
    if (strcmp(status, "completed")) return DEBA_OK;

    const deba_trace *t = &run->trace;
    for (size_t i = 0; i < t->n; i++)
        if (t->rows[i].epoch != (int)i + 1)
            return deba_err_set(e, DEBA_E_INPUT, "%s/trace.csv: row %zu is epoch %d, expected %zu (epochs must be 1..n in order)",
                                run->dir, i + 1, t->rows[i].epoch, i + 1);
    double *buf = malloc(3 * (t->n ? t->n : 1) * sizeof *buf);
    if (!buf) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    double *gv = buf, *nv = buf + t->n, *lv = buf + 2 * t->n;
    for (size_t i = 0; i < t->n; i++) {
        gv[i] = t->rows[i].grad_var;
        nv[i] = t->rows[i].norm_var;
        lv[i] = t->rows[i].loss_var;
    }
    deba_stability sc;
    st = deba_stability_score(gv, nv, lv, t->n, &sc, e);
    free(buf);
    if (st) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        return deba_err_set(e, st, "%s/trace.csv: %s", run->dir, msg);
    }
    deba_profile_row *r = &s->row;
    memset(r, 0, sizeof *r);
    snprintf(r->arch, sizeof r->arch, "%s", arch);
    snprintf(r->dataset, sizeof r->dataset, "%s", dataset);
    r->seed = (int)seed;
    r->epochs = (int)t->n;
    r->S = sc.S;
    r->cv_grad_var = sc.cv_grad_var;
    r->mean_norm_var = sc.mean_norm_var;
    r->mean_loss_var = sc.mean_loss_var;
    r->final_test_acc = t->rows[t->n - 1].test_acc;
    s->used = 1;
    return DEBA_OK;
}

static int cmp_seed(const void *a, const void *b)
{
    const deba_profile_seed *x = a, *y = b;
    return (x->seed > y->seed) - (x->seed < y->seed);
}

deba_status deba_profile_compute(const char *out, const char *arch, const char *dataset, const int *seeds,
                                 size_t n_seeds, deba_profile *p, deba_err *e)
{
    memset(p, 0, sizeof *p);
    if (!deba_name_ok(arch) || !deba_name_ok(dataset))   /* they name directories below out */
        return deba_err_set(e, DEBA_E_INPUT, "arch or dataset is not a name of 1 to %d of A-Z a-z 0-9 . _ -",
                            DEBA_NAME_MAX - 1);
    snprintf(p->arch, sizeof p->arch, "%s", arch);
    snprintf(p->dataset, sizeof p->dataset, "%s", dataset);

    deba_run *runs = NULL;
    size_t n = 0;
    deba_status st = DEBA_OK;
    if (n_seeds) {
        runs = calloc(n_seeds, sizeof *runs);
        if (!runs) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        n = n_seeds;
        for (size_t i = 0; i < n_seeds && !st; i++) {
            char dir[4096], meta[4200];
            st = deba_run_dir(dir, sizeof dir, out, arch, dataset, "fixed", seeds[i], e);
            snprintf(meta, sizeof meta, "%s/meta.csv", dir);
            if (!st && !file_exists(meta))
                st = deba_err_set(e, DEBA_E_INPUT, "no run for seed %d: %s does not exist", seeds[i], meta);
            if (!st) st = load_run(dir, &runs[i], e);
        }
    } else {
        char root[4200];
        int len = snprintf(root, sizeof root, "%s/%s/%s/fixed", out, arch, dataset);
        const char *roots[1] = { root };
        if (len < 0 || (size_t)len >= sizeof root) st = deba_err_set(e, DEBA_E_INPUT, "--out: path too long");
        else st = deba_runs_load(roots, 1, &runs, &n, e);
        if (!st && n == 0) st = deba_err_set(e, DEBA_E_INPUT, "no runs under %s", root);
    }
    if (!st && !(p->seeds = calloc(n, sizeof *p->seeds))) st = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !st; i++) st = seed_row(&runs[i], arch, dataset, &p->seeds[i], e);
    p->n_seeds = st ? 0 : n;
    if (!st && !n_seeds) qsort(p->seeds, n, sizeof *p->seeds, cmp_seed);
    for (size_t i = 0; i + 1 < p->n_seeds && !st; i++)
        for (size_t j = i + 1; j < p->n_seeds && !st; j++)
            if (p->seeds[i].seed == p->seeds[j].seed)
                st = deba_err_set(e, DEBA_E_INPUT, "%s and %s are both seed %d", p->seeds[i].dir, p->seeds[j].dir,
                                  p->seeds[i].seed);

    size_t used = 0;
    for (size_t i = 0; i < p->n_seeds; i++) used += (size_t)p->seeds[i].used;
    if (!st && used == 0) {
        char list[512] = "";   /* the seeds and their status; past 400 bytes, how many more */
        for (size_t i = 0, l = 0; i < p->n_seeds; i++, l = strlen(list)) {
            if (l > 400) {
                snprintf(list + l, sizeof list - l, ", %zu more", p->n_seeds - i);   /* fits: l <= 460 */
                break;
            }
            snprintf(list + l, sizeof list - l, "%sseed %d %s", i ? ", " : "", p->seeds[i].seed, p->seeds[i].status);
        }
        st = deba_err_set(e, DEBA_E_INPUT, "%s/%s: no completed fixed-batch run to profile (%s)", arch, dataset, list);
    }
    if (!st && !(p->rows = calloc(used, sizeof *p->rows))) st = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    if (!st) {
        for (size_t i = 0; i < p->n_seeds; i++)
            if (p->seeds[i].used) p->rows[p->n_rows++] = p->seeds[i].row;
        deba_profile_summarize(p->rows, p->n_rows, &p->summary);
    }

    /* Thresholds from the same completed runs, by deba-calibrate's code. */
    if (!st) {
        deba_run *sel = calloc(used, sizeof *sel);
        size_t k = 0;
        if (!sel) st = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        for (size_t i = 0; sel && i < n; i++)
            if (deba_calib_usable(&runs[i])) sel[k++] = runs[i];   /* shallow: runs keeps ownership */
        deba_thresholds_row *rows = NULL;
        size_t nrows = 0;
        if (!st) st = deba_calib_thresholds(sel, k, &rows, &nrows, e);
        if (!st && nrows != 1)
            st = deba_err_set(e, DEBA_E_RUNTIME, "calibration gave %zu groups for one arch and dataset", nrows);
        if (!st) p->thresholds = rows[0];
        free(rows);
        free(sel);
    }
    deba_runs_free(runs, n);
    if (st) deba_profile_free(p);
    return st;
}

deba_status deba_profile_save(const char *dir, const deba_profile *p, deba_err *e)
{
    char path[4200];   /* deba_mkdirs takes dirs shorter than 4096 bytes: every path below fits */
    deba_status st = deba_mkdirs(dir, e);
    if (st) return st;
    snprintf(path, sizeof path, "%s/profile.csv", dir);
    if ((st = deba_profile_write(path, p->rows, p->n_rows, e))) return st;
    snprintf(path, sizeof path, "%s/profile_summary.csv", dir);
    if ((st = deba_summary_write(path, &p->summary, 1, e))) return st;
    snprintf(path, sizeof path, "%s/thresholds.csv", dir);
    return deba_thresholds_write(path, &p->thresholds, 1, e);
}

void deba_profile_print(FILE *f, const deba_profile *p)
{
    const deba_summary_row *s = &p->summary;
    const deba_thresholds_row *t = &p->thresholds;
    fprintf(f, "%s/%s: stability profile of %zu fixed-batch run%s (SPEC §5, epochs t >= 2)\n", p->arch, p->dataset,
            p->n_rows, p->n_rows == 1 ? "" : "s");
    fprintf(f, "  %6s  %8s  %12s  %13s  %13s  %8s\n", "seed", "S", "cv_grad_var", "mean_norm_var", "mean_loss_var",
            "test_acc");
    for (size_t i = 0; i < p->n_seeds; i++) {
        const deba_profile_seed *sd = &p->seeds[i];
        if (!sd->used) {
            fprintf(f, "  %6d  %s: left out\n", sd->seed, sd->status);
            continue;
        }
        const deba_profile_row *r = &sd->row;
        fprintf(f, "  %6d  %8.4f  %12.4f  %13.4f  %13.4f  %8.2f\n", r->seed, r->S, r->cv_grad_var, r->mean_norm_var,
                r->mean_loss_var, r->final_test_acc);
    }
    fprintf(f, "S̄ = %.4f ± %.4f (mean ± σ_S, the sample std over %d seed%s)%s\n", s->S_mean, s->S_std, s->seeds,
            s->seeds == 1 ? "" : "s", s->seeds < 2 ? "; one seed gives no seed sensitivity" : "");
    fprintf(f, "archetype: %s\n  %s\n", deba_archetype_name(s->archetype), deba_archetype_advice(s->archetype));
    fprintf(f, "thresholds (SPEC §4, %d epochs of %d run%s): tau = %.6g  theta = %.6g  lambda = %.6g\n", t->epochs_used,
            t->runs_used, t->runs_used == 1 ? "" : "s", t->tau, t->theta, t->lambda);
}

/* ---- training, reusing what is there ---- */

deba_status deba_profile_train(const tr_train_config *c, deba_run_action *action, tr_train_result *r,
                               deba_err *e)
{
    char dir[4096], path[4200];
    const char *label = c->label[0] ? c->label : deba_method_name(c->sched.method);
    deba_status st = deba_run_dir(dir, sizeof dir, c->out, c->arch, c->dataset, label, (int)c->seed, e);
    if (st) return st;
    tr_train_config cc = *c;
    cc.resume = 0;
    *action = DEBA_RUN_TRAINED;
    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/meta.csv", dir);
    if (!c->force && file_exists(path)) {
        deba_meta m = { 0 };
        deba_trace t = { 0 };
        if ((st = deba_meta_read(path, &m, e))) return st;
        if ((st = tr_train_check_meta(&m, path, c, e))) {
            deba_meta_free(&m);
            return st;
        }
        snprintf(path, sizeof path, "%s/trace.csv", dir);
        if (file_exists(path)) st = deba_trace_read(path, &t, e);
        long epochs = 0;
        const char *status = deba_meta_get(&m, "status");
        if (!st) st = deba_meta_get_int(&m, dir, "epochs", &epochs, e);
        snprintf(path, sizeof path, "%s/checkpoint.bin", dir);
        int has_ckpt = file_exists(path);
        if (st) {
        } else if (status && !strcmp(status, "completed") && epochs == c->epochs) {
            *action = DEBA_RUN_REUSED;
        } else if (status && !strcmp(status, "diverged") && t.n < (size_t)c->epochs) {
            *action = DEBA_RUN_REUSED;   /* same seed, same settings: it would diverge again */
        } else if (status && !strcmp(status, "completed") && epochs > c->epochs) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s is a completed run of %ld epochs, more than the %d asked (use --force to retrain it, or --epochs %ld)",
                              dir, epochs, c->epochs, epochs);
        } else if (has_ckpt) {
            *action = DEBA_RUN_RESUMED;   /* interrupted, killed, or completed with fewer epochs */
            cc.resume = 1;
        } else if (t.n == 0) {
            cc.force = 1;                 /* stopped before its first checkpoint: nothing to keep */
        } else {
            cc.resume = 1;                /* the trainer explains why it cannot resume */
        }
        if (!st && *action == DEBA_RUN_REUSED) {
            snprintf(r->run_dir, sizeof r->run_dir, "%s", dir);
            snprintf(r->status, sizeof r->status, "%s", status);
            r->epochs_done = (int)t.n;
            r->final_test_acc = t.n ? t.rows[t.n - 1].test_acc : 0;
            double best = 0, total = 0;
            for (size_t i = 0; i < t.n; i++) {
                if (t.rows[i].test_acc > best) best = t.rows[i].test_acc;
                total += t.rows[i].epoch_time_s;
            }
            r->best_test_acc = best;
            r->total_train_time_s = total;
        }
        deba_meta_free(&m);
        deba_trace_free(&t);
        if (st || *action == DEBA_RUN_REUSED) return st;
    } else if (!c->force && file_exists(dir)) {
        cc.force = 1;   /* a directory without meta.csv holds no run */
    }
    return tr_train_run(&cc, r, e);
}

static const char *ACTION_NAMES[DEBA_RUN_ACTION_COUNT] = { "trained", "resumed", "reused" };

deba_status deba_profile_run(const deba_profile_config *c, deba_profile *p, deba_err *e)
{
    memset(p, 0, sizeof *p);
    if (c->n_seeds < 1) return deba_err_set(e, DEBA_E_INPUT, "--seeds: no seed given");
    int completed = 0;
    for (int i = 0; i < c->n_seeds; i++) {
        tr_train_config tc = c->train;
        tc.seed = (uint64_t)c->seeds[i];
        tc.sched.method = DEBA_METHOD_FIXED;
        snprintf(tc.label, sizeof tc.label, "fixed");
        deba_run_action act;
        tr_train_result r;
        deba_status st = deba_profile_train(&tc, &act, &r, e);
        if (st) return st;
        if (!strcmp(r.status, "interrupted"))
            return deba_err_set(e, DEBA_E_RUNTIME, "interrupted during seed %d (%s): run the same command again to continue",
                                c->seeds[i], r.run_dir);
        if (c->log)
            fprintf(c->log, "seed %d: %s %s run, %d epochs, final test accuracy %.2f%% (%s)\n", c->seeds[i],
                    ACTION_NAMES[act], r.status, r.epochs_done, r.final_test_acc, r.run_dir);
        if (!strcmp(r.status, "diverged")) {
            if (c->log)
                fprintf(c->log, "warning: seed %d diverged after %d epochs: it is left out of S and the thresholds\n",
                        c->seeds[i], r.epochs_done);
        } else
            completed++;
    }
    if (!completed)
        return deba_err_set(e, DEBA_E_RUNTIME, "%s/%s: every seed diverged: no profile (try a smaller --lr)", c->train.arch,
                            c->train.dataset);
    return deba_profile_compute(c->train.out, c->train.arch, c->train.dataset, c->seeds, (size_t)c->n_seeds, p, e);
}
