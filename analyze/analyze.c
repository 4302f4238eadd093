/* SPEC §6 comparisons from run directories: per-run metrics from meta.csv and trace.csv, seeds
 * pooled by (arch, dataset, label) and configuration, each condition paired seed by seed with
 * the fixed baseline of its configuration, with 95% intervals of the differences. */
#include "analyze/analyze.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "deba/csv.h"
#include "deba/escape.h"
#include "deba/runs.h"

deba_ms deba_ms_of(const double *x, size_t n)
{
    deba_ms m = {NAN, NAN, (int)n};
    if (n == 0) return m;
    m.mean = deba_mean(x, n);
    m.std = n >= 2 ? deba_std_sample(x, n) : NAN;
    return m;
}

static const struct {
    const char *label, *name;
} conditions[] = {
    {"deba", "Baseline"},
    {"deba-universal", "Universal Thresh."},
    {"deba-cooldown2", "Cooldown=2"},
    {"deba-cooldown5", "Cooldown=5"},
    {"deba-fullhistory", "Full History"},
};
#define NCONDITIONS (sizeof conditions / sizeof conditions[0])

const char *deba_condition_name(const char *label)
{
    for (size_t i = 0; i < NCONDITIONS; i++)
        if (strcmp(label, conditions[i].label) == 0) return conditions[i].name;
    return label;
}

int deba_condition_rank(const char *label)
{
    if (strcmp(label, "fixed") == 0) return -1;
    for (size_t i = 0; i < NCONDITIONS; i++)
        if (strcmp(label, conditions[i].label) == 0) return (int)i;
    return (int)NCONDITIONS;
}

static deba_status add_warning(deba_analysis *a, deba_err *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

deba_status deba_strlist_push(char ***list, size_t *n, deba_err *e, const char *fmt, va_list ap)
{
    char *msg;   /* dynamic: a warning names paths, which a fixed buffer would cut */
    if (vasprintf(&msg, fmt, ap) < 0) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    char **w = realloc(*list, (*n + 1) * sizeof *w);
    if (!w) {
        free(msg);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    *list = w;
    w[(*n)++] = msg;
    return DEBA_OK;
}

static deba_status add_warning(deba_analysis *a, deba_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    deba_status st = deba_strlist_push(&a->warnings, &a->nwarnings, e, fmt, ap);
    va_end(ap);
    return st;
}

/* arch, dataset and label name run directories and figure files, and reach every generated
 * script and document: only names deba_name_ok accepts pass. */
static deba_status meta_name(const deba_run *r, const char *key, char *dst, deba_err *e)
{
    const char *v = deba_meta_get(&r->meta, key);
    if (!v || !*v)
        return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: key '%s' is missing or empty", r->dir, key);
    if (!deba_name_ok(v)) {
        char shown[400];
        return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: key '%s': '%s' is not a name (1 to %d of A-Z a-z 0-9 . _ -, "
                            "not . or ..)", r->dir, key, deba_esc_msg(shown, sizeof shown, v), DEBA_NAME_MAX - 1);
    }
    snprintf(dst, DEBA_NAME_MAX, "%s", v);   /* deba_name_ok: shorter than DEBA_NAME_MAX */
    return DEBA_OK;
}

/* A meta number that may be absent: NAN then; present but malformed is an input error. */
static deba_status meta_opt_double(const deba_run *r, const char *key, double *v, deba_err *e)
{
    *v = NAN;
    const char *s = deba_meta_get(&r->meta, key);
    if (!s || !*s) return DEBA_OK;
    char path[4200];
    snprintf(path, sizeof path, "%s/meta.csv", r->dir);
    return deba_meta_get_double(&r->meta, path, key, v, e);
}

static deba_status run_metrics(const deba_run *r, deba_run_metrics *m, double *scratch, deba_err *e)
{
    memset(m, 0, sizeof *m);
    m->run = r;
    deba_status s;
    if ((s = meta_name(r, "arch", m->arch, e)) || (s = meta_name(r, "dataset", m->dataset, e)) ||
        (s = meta_name(r, "label", m->label, e)))
        return s;
    const char *st = deba_meta_get(&r->meta, "status");
    if (st && strlen(st) >= sizeof m->status) {
        char shown[200];
        return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: key 'status': '%s' is not a run status", r->dir,
                            deba_esc_msg(shown, sizeof shown, st));
    }
    snprintf(m->status, sizeof m->status, "%s", st && *st ? st : "unknown");
    char path[4200];
    snprintf(path, sizeof path, "%s/meta.csv", r->dir);
    long seed;
    if ((s = deba_meta_get_int(&r->meta, path, "seed", &seed, e))) return s;
    m->seed = (int)seed;

    const deba_trace *t = &r->trace;
    m->epochs = (int)t->n;
    double sum_t = 0, sum_thr = 0, best = -INFINITY;
    for (size_t i = 0; i < t->n; i++) {
        sum_t += t->rows[i].epoch_time_s;
        sum_thr += t->rows[i].samples_per_s;
        if (t->rows[i].test_acc > best) best = t->rows[i].test_acc;
    }
    m->train_time = sum_t;
    m->throughput = t->n ? sum_thr / (double)t->n : NAN;
    m->final_batch = t->n ? t->rows[t->n - 1].batch_size : NAN;
    if ((s = meta_opt_double(r, "final_test_acc", &m->final_acc, e)) ||
        (s = meta_opt_double(r, "best_test_acc", &m->best_acc, e)))
        return s;
    if (isnan(m->final_acc)) m->final_acc = t->n ? t->rows[t->n - 1].test_acc : NAN;
    if (isnan(m->best_acc)) m->best_acc = t->n ? best : NAN;

    /* decisions and train_loss as flat arrays for the sched.h metrics */
    deba_decision *dec = (deba_decision *)(void *)(scratch + 4 * t->n);
    for (size_t i = 0; i < t->n; i++) {
        scratch[i] = t->rows[i].train_loss;
        scratch[t->n + i] = t->rows[i].grad_var;
        scratch[2 * t->n + i] = t->rows[i].norm_var;
        scratch[3 * t->n + i] = t->rows[i].loss_var;
        dec[i] = t->rows[i].decision;
    }
    m->aggressiveness = deba_aggressiveness(dec, t->n);
    m->conv_stability = deba_convergence_stability(scratch, t->n);
    deba_stability stab;
    deba_err ignore;
    m->S = t->n >= 2 && deba_stability_score(scratch + t->n, scratch + 2 * t->n, scratch + 3 * t->n, t->n,
                                              &stab, &ignore) == DEBA_OK ? stab.S : NAN;
    m->included = strcmp(m->status, "completed") == 0 && t->n > 0;
    return DEBA_OK;
}

/* ---- configurations ---- */

/* SPEC §6: pooled runs agree on all of these. The first DEBA_CFG_NPAIR also bind a condition to
 * its fixed baseline; the others set the scheduler, which a fixed run does not use. The model is
 * named by arch (meta.csv records no model hash). */
const char *const DEBA_CFG_KEYS[] = {
    "arch", "dataset", "subset", "test_subset", "image_size", "epochs", "lr", "lr_scaling", "momentum",
    "weight_decay", "batch0", "device",
    "label", "method", "bmin", "bmax", "tau", "theta", "lambda", "thresholds_source", "window", "cooldown",
    "growth", "rollback",
};
const size_t DEBA_CFG_NKEYS = sizeof DEBA_CFG_KEYS / sizeof DEBA_CFG_KEYS[0];
const size_t DEBA_CFG_NPAIR = 12;

void deba_analysis_opts_default(deba_analysis_opts *o)
{
    o->ci = DEBA_CI_T;
    o->resamples = 10000;
    o->seed = 1;
}

static const char *cfg_value(const deba_run_metrics *r, size_t k)
{
    const char *v = deba_meta_get(&r->run->meta, DEBA_CFG_KEYS[k]);
    return v ? v : "(absent)";
}

/* Two meta values agree: numbers by value (0.01 and 1e-2, "0.90000000000000002" and "0.9"
 * written by different writers), the device by its kind ("cuda:1" is a cuda), else as text. */
static int value_eq(size_t k, const char *x, const char *y)
{
    if (!strcmp(x, y)) return 1;
    if (!strcmp(DEBA_CFG_KEYS[k], "device")) {
        size_t lx = strcspn(x, ":"), ly = strcspn(y, ":");
        return lx == ly && !strncmp(x, y, lx) && strcmp(x, "(absent)") && strcmp(y, "(absent)");
    }
    char *ex, *ey;
    double dx = strtod(x, &ex), dy = strtod(y, &ey);
    if (ex == x || ey == y || *ex || *ey || !isfinite(dx) || !isfinite(dy)) return 0;
    return dx == dy || fabs(dx - dy) <= 1e-12 * fmax(fabs(dx), fabs(dy));
}

static int is_fixed(const deba_run_metrics *r)
{
    return !strcmp(r->label, "fixed");
}

/* The keys that matter for pooling r: all, except the scheduler's for a fixed run. */
static size_t pool_nkeys(const deba_run_metrics *r)
{
    return is_fixed(r) ? DEBA_CFG_NPAIR : DEBA_CFG_NKEYS;
}

static int cfg_eq(const deba_run_metrics *x, const deba_run_metrics *y, size_t nkeys)
{
    for (size_t k = 0; k < nkeys; k++)
        if (!value_eq(k, cfg_value(x, k), cfg_value(y, k))) return 0;
    return 1;
}

/* "subset (deba 2000, fixed 5000), epochs (deba 8, fixed 30)" for the first nkeys keys where x and
 * y differ, each value after its run's label. */
static deba_status cfg_diff(const deba_run_metrics *x, const deba_run_metrics *y, size_t nkeys, char **out,
                            deba_err *e)
{
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    if (!f) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    int any = 0;
    for (size_t k = 0; k < nkeys; k++) {
        const char *vx = cfg_value(x, k), *vy = cfg_value(y, k);
        if (value_eq(k, vx, vy)) continue;
        fprintf(f, "%s%s (%s %s, %s %s)", any++ ? ", " : "", DEBA_CFG_KEYS[k], x->label, vx, y->label, vy);
    }
    if (fclose(f) != 0 || !s) {
        free(s);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    *out = s;
    return DEBA_OK;
}

/* ---- grouping ---- */

static const deba_run_metrics *g_sort_runs; /* qsort has no context argument */

static int cmp_key(const deba_run_metrics *x, const deba_run_metrics *y)
{
    int c = strcmp(x->arch, y->arch);
    if (c) return c;
    if ((c = strcmp(x->dataset, y->dataset))) return c;
    int rx = deba_condition_rank(x->label), ry = deba_condition_rank(y->label);
    if (rx != ry) return rx < ry ? -1 : 1;
    return strcmp(x->label, y->label);
}

static int cmp_run_idx(const void *pa, const void *pb)
{
    const deba_run_metrics *x = &g_sort_runs[*(const size_t *)pa], *y = &g_sort_runs[*(const size_t *)pb];
    int c = cmp_key(x, y);
    if (c) return c;
    if (x->seed != y->seed) return (x->seed > y->seed) - (x->seed < y->seed);
    return (*(const size_t *)pa > *(const size_t *)pb) - (*(const size_t *)pa < *(const size_t *)pb);
}

int deba_analysis_find(const deba_analysis *a, const char *arch, const char *dataset, const char *label)
{
    for (size_t i = 0; i < a->ngroups; i++)
        if (!strcmp(a->groups[i].arch, arch) && !strcmp(a->groups[i].dataset, dataset) &&
            !strcmp(a->groups[i].label, label))
            return (int)i;
    return -1;
}

#define GROUP_STAT(field, member)                                                 \
    do {                                                                          \
        for (int k = 0; k < g->nseeds; k++) buf[k] = a->runs[g->members[k]].member; \
        g->field = deba_ms_of(buf, (size_t)g->nseeds);                            \
    } while (0)

static void group_stats(deba_analysis *a, deba_group *g, double *buf)
{
    GROUP_STAT(final_acc, final_acc);
    GROUP_STAT(best_acc, best_acc);
    GROUP_STAT(time, train_time);
    GROUP_STAT(throughput, throughput);
    GROUP_STAT(aggressiveness, aggressiveness);
    GROUP_STAT(conv_stability, conv_stability);
    int nS = 0;
    for (int k = 0; k < g->nseeds; k++)
        if (!isnan(a->runs[g->members[k]].S)) buf[nS++] = a->runs[g->members[k]].S;
    g->S = deba_ms_of(buf, (size_t)nS);
    g->epochs = a->runs[g->members[0]].epochs;
    for (int k = 1; k < g->nseeds; k++)
        if (a->runs[g->members[k]].epochs != g->epochs) g->epochs = -1;
}

static deba_status interval(const deba_analysis_opts *o, const double *x, int n, deba_pd *out, deba_err *e)
{
    *out = DEBA_PD_NONE;
    out->n = n;
    if (n == 0) return DEBA_OK;
    out->std = n >= 2 ? deba_std_sample(x, (size_t)n) : NAN;
    deba_interval ci;
    if (o->ci == DEBA_CI_BOOTSTRAP) {
        deba_status s = deba_ci_mean_bootstrap(x, (size_t)n, 0.95, o->resamples, o->seed, &ci, e);
        if (s) return s;
    } else {
        ci = deba_ci_mean_t(x, (size_t)n, 0.95);
    }
    out->mean = ci.mean;
    out->lo = ci.lo;
    out->hi = ci.hi;
    return DEBA_OK;
}

/* "1, 4, 5" into a list of seeds (at most what fits in cap, "..." after). */
static void seed_list(char *buf, size_t cap, const int *seeds, int n)
{
    size_t l = 0;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w = snprintf(buf + l, cap - l, "%s%d", i ? ", " : "", seeds[i]);
        if (w < 0 || (size_t)w >= cap - l) {
            if (cap >= 4) snprintf(buf + (l < cap - 4 ? l : cap - 4), 4, "...");
            return;
        }
        l += (size_t)w;
    }
}

static deba_status compare(deba_analysis *a, deba_group *g, const deba_group *b, const deba_analysis_opts *o,
                           double *buf, int *ibuf, deba_err *e)
{
    g->has_baseline = 1;
    double *dacc = buf, *sp = buf + g->nseeds;
    int *only_g = ibuf, *only_b = ibuf + g->nseeds;
    int np = 0, ng = 0, nb = 0;
    double tf = 0, td = 0, qf = 0, qd = 0;
    for (int k = 0; k < g->nseeds; k++) {
        const deba_run_metrics *r = &a->runs[g->members[k]];
        if (k > 0 && a->runs[g->members[k - 1]].seed == r->seed) continue;   /* a repeated seed pairs once */
        int j;
        for (j = 0; j < b->nseeds; j++)
            if (a->runs[b->members[j]].seed == r->seed) break;
        if (j == b->nseeds) {
            only_g[ng++] = r->seed;
            continue;
        }
        const deba_run_metrics *f = &a->runs[b->members[j]];
        dacc[np] = r->final_acc - f->final_acc;
        sp[np] = (f->train_time - r->train_time) / f->train_time * 100.0;
        tf += f->train_time;
        td += r->train_time;
        qf += f->throughput;
        qd += r->throughput;
        np++;
    }
    for (int j = 0; j < b->nseeds; j++) {
        const deba_run_metrics *f = &a->runs[b->members[j]];
        if (j > 0 && a->runs[b->members[j - 1]].seed == f->seed) continue;
        int k;
        for (k = 0; k < g->nseeds; k++)
            if (a->runs[g->members[k]].seed == f->seed) break;
        if (k == g->nseeds) only_b[nb++] = f->seed;
    }
    g->unpaired = ng;
    g->baseline_unpaired = nb;
    deba_status s;
    if ((s = interval(o, dacc, np, &g->dacc, e)) || (s = interval(o, sp, np, &g->speedup_pct, e))) return s;
    g->speedup_x = np ? tf / td : NAN;
    g->throughput_x = np ? qd / qf : NAN;
    if (ng || nb) {
        char lg[200], lb[200];
        seed_list(lg, sizeof lg, only_g, ng);
        seed_list(lb, sizeof lb, only_b, nb);
        if (np == 0)
            return add_warning(a, e, "unpaired seeds: %s/%s/%s%s%s and its fixed baseline share no seed (%s: %s; fixed: %s); "
                               "its ΔAcc and speedup are not reported", g->arch, g->dataset, g->label,
                               g->config ? " " : "", g->config ? g->config : "", g->label, lg, lb);
        return add_warning(a, e, "unpaired seeds: %s/%s/%s%s%s is compared with fixed on the %d seed(s) both ran; "
                           "seeds only in %s: %s; only in fixed: %s", g->arch, g->dataset, g->label,
                           g->config ? " " : "", g->config ? g->config : "", np, g->label, ng ? lg : "none",
                           nb ? lb : "none");
    }
    return DEBA_OK;
}

/* Splits one (arch, dataset, label) bucket idx[0..n-1] into configurations: cl[i] is the
 * configuration of run idx[i], *ncl how many there are (first-seen order). */
static void cluster(const deba_analysis *a, const size_t *idx, size_t n, int *cl, int *ncl)
{
    *ncl = 0;
    for (size_t i = 0; i < n; i++) {
        const deba_run_metrics *r = &a->runs[idx[i]];
        cl[i] = -1;
        for (size_t j = 0; j < i && cl[i] < 0; j++)
            if (cfg_eq(r, &a->runs[idx[j]], pool_nkeys(r))) cl[i] = cl[j];
        if (cl[i] < 0) cl[i] = (*ncl)++;
    }
}

/* Makes one group per configuration of the bucket idx[0..n-1]; when there are several, each
 * group's config names the keys that differ and a warning names them and the runs. */
static deba_status make_groups(deba_analysis *a, const size_t *idx, size_t n, int *cl, double *scratch, deba_err *e)
{
    int ncl;
    cluster(a, idx, n, cl, &ncl);
    size_t first = a->ngroups;
    deba_status s = DEBA_OK;
    for (int c = 0; c < ncl && !s; c++) {
        deba_group *g = &a->groups[a->ngroups++];
        memset(g, 0, sizeof *g);
        const deba_run_metrics *r0 = NULL;
        for (size_t i = 0; i < n; i++)
            if (cl[i] == c) {
                if (!r0) r0 = &a->runs[idx[i]];
                g->nseeds++;
            }
        strcpy(g->arch, r0->arch);
        strcpy(g->dataset, r0->dataset);
        strcpy(g->label, r0->label);
        g->baseline = -1;
        if (!(g->members = malloc((size_t)g->nseeds * sizeof *g->members)))
            return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        int m = 0;
        for (size_t i = 0; i < n; i++)
            if (cl[i] == c) g->members[m++] = idx[i];
        for (int k = 1; k < g->nseeds && !s; k++)
            if (a->runs[g->members[k]].seed == a->runs[g->members[k - 1]].seed)
                s = add_warning(a, e, "%s/%s/%s: seed %d appears twice (%s and %s); both averaged", g->arch, g->dataset,
                                g->label, a->runs[g->members[k]].seed, a->runs[g->members[k - 1]].run->dir,
                                a->runs[g->members[k]].run->dir);
        group_stats(a, g, scratch);
        if (!s && g->epochs < 0)
            s = add_warning(a, e, "%s/%s/%s: seeds ran different numbers of epochs", g->arch, g->dataset, g->label);
    }
    if (s || ncl < 2) return s;
    /* several configurations: name each by the keys where any two differ */
    const deba_run_metrics *r0 = &a->runs[a->groups[first].members[0]];
    size_t nk = pool_nkeys(r0);
    int differ[sizeof DEBA_CFG_KEYS / sizeof DEBA_CFG_KEYS[0]] = {0};
    for (size_t k = 0; k < nk; k++)
        for (int c = 1; c < ncl && !differ[k]; c++)
            differ[k] = !value_eq(k, cfg_value(r0, k), cfg_value(&a->runs[a->groups[first + c].members[0]], k));
    char *msg = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&msg, &len);
    if (!f) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    fprintf(f, "not pooled: the runs of %s/%s/%s differ in", r0->arch, r0->dataset, r0->label);
    for (size_t k = 0, any = 0; k < nk; k++)
        if (differ[k]) fprintf(f, "%s %s", any++ ? "," : "", DEBA_CFG_KEYS[k]);
    fputs("; reported as separate groups:", f);
    for (int c = 0; c < ncl && !s; c++) {
        deba_group *g = &a->groups[first + c];
        const deba_run_metrics *rc = &a->runs[g->members[0]];
        char *cfg = NULL;
        size_t clen = 0;
        FILE *cf = open_memstream(&cfg, &clen);
        if (!cf) {
            s = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
            break;
        }
        for (size_t k = 0, any = 0; k < nk; k++)
            if (differ[k]) fprintf(cf, "%s%s=%s", any++ ? ", " : "", DEBA_CFG_KEYS[k], cfg_value(rc, k));
        if (fclose(cf) != 0 || !cfg) {
            free(cfg);
            s = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
            break;
        }
        g->config = cfg;
        fprintf(f, "%s [%s]:", c ? ";" : "", cfg);
        for (int k = 0; k < g->nseeds; k++) fprintf(f, "%s %s", k ? "," : "", a->runs[g->members[k]].run->dir);
    }
    if (fclose(f) != 0 || !msg) s = s ? s : deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    if (!s) s = add_warning(a, e, "%s", msg);
    free(msg);
    return s;
}

/* Finds g's baseline: the fixed group of its (arch, dataset) whose configuration agrees on the
 * first DEBA_CFG_NPAIR keys; warns naming the differing keys when only others exist. */
static deba_status find_baseline(deba_analysis *a, deba_group *g, int *out, deba_err *e)
{
    *out = -1;
    const deba_run_metrics *r = &a->runs[g->members[0]];
    int nfixed = 0;
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *b = &a->groups[i];
        if (strcmp(b->label, "fixed") || strcmp(b->arch, g->arch) || strcmp(b->dataset, g->dataset)) continue;
        nfixed++;
        if (cfg_eq(r, &a->runs[b->members[0]], DEBA_CFG_NPAIR)) {
            *out = (int)i;
            return DEBA_OK;
        }
    }
    if (nfixed == 0)
        return add_warning(a, e, "missing baseline: %s/%s/%s has no completed 'fixed' runs of %s/%s; "
                           "its ΔAcc and speedup are not reported", g->arch, g->dataset, g->label, g->arch, g->dataset);
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *b = &a->groups[i];
        if (strcmp(b->label, "fixed") || strcmp(b->arch, g->arch) || strcmp(b->dataset, g->dataset)) continue;
        char *diff = NULL;
        deba_status s = cfg_diff(r, &a->runs[b->members[0]], DEBA_CFG_NPAIR, &diff, e);
        if (s) return s;
        s = add_warning(a, e, "no comparable baseline: %s/%s/%s%s%s (%s) and the fixed runs of %s/%s%s%s (%s) differ in "
                        "%s; its ΔAcc and speedup are not reported",
                        g->arch, g->dataset, g->label, g->config ? " " : "", g->config ? g->config : "", r->run->dir,
                        b->arch, b->dataset, b->config ? " " : "", b->config ? b->config : "",
                        a->runs[b->members[0]].run->dir, diff);
        free(diff);
        if (s) return s;
    }
    return DEBA_OK;
}

deba_status deba_analysis_run(const deba_run *runs, size_t nruns, deba_analysis *a, deba_err *e)
{
    deba_analysis_opts o;
    deba_analysis_opts_default(&o);
    return deba_analysis_run_opts(runs, nruns, &o, a, e);
}

deba_status deba_analysis_run_opts(const deba_run *runs, size_t nruns, const deba_analysis_opts *o, deba_analysis *a,
                                   deba_err *e)
{
    memset(a, 0, sizeof *a);
    a->ci = o->ci;
    deba_status s = DEBA_OK;
    size_t maxn = 1;
    for (size_t i = 0; i < nruns; i++)
        if (runs[i].trace.n > maxn) maxn = runs[i].trace.n;
    double *scratch = malloc(6 * maxn * sizeof *scratch + (nruns + 1) * 2 * sizeof *scratch);
    size_t *idx = malloc((nruns + 1) * sizeof *idx);
    int *ibuf = malloc((nruns + 1) * 2 * sizeof *ibuf);
    a->runs = calloc(nruns + 1, sizeof *a->runs);
    if (!scratch || !idx || !ibuf || !a->runs) {
        s = deba_err_set(e, DEBA_E_NOMEM, "out of memory analysing %zu runs", nruns);
        goto done;
    }
    a->nruns = nruns;
    size_t ninc = 0;
    for (size_t i = 0; i < nruns; i++) {
        if ((s = run_metrics(&runs[i], &a->runs[i], scratch, e))) goto done;
        if (a->runs[i].included) idx[ninc++] = i;
        else if (!strcmp(a->runs[i].status, "completed") &&
                 (s = add_warning(a, e, "%s: completed run with an empty trace.csv, left out", runs[i].dir)))
            goto done;
    }
    g_sort_runs = a->runs;
    qsort(idx, ninc, sizeof *idx, cmp_run_idx);

    /* groups: runs of equal (arch, dataset, label) are adjacent; each bucket splits by configuration */
    a->groups = calloc(ninc + 1, sizeof *a->groups);
    if (!a->groups) { s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < ninc;) {
        size_t j = i + 1;
        while (j < ninc && cmp_key(&a->runs[idx[i]], &a->runs[idx[j]]) == 0) j++;
        if ((s = make_groups(a, idx + i, j - i, ibuf, scratch, e))) goto done;
        i = j;
    }

    /* pair each condition with the fixed group of its configuration, seed by seed */
    for (size_t i = 0; i < a->ngroups; i++) {
        deba_group *g = &a->groups[i];
        if (!strcmp(g->label, "fixed")) continue;
        g->dacc = g->speedup_pct = DEBA_PD_NONE;
        g->speedup_x = g->throughput_x = NAN;
        int b;
        if ((s = find_baseline(a, g, &b, e))) goto done;
        if (b < 0) continue;
        const deba_group *bg = &a->groups[b];
        if (g->epochs != bg->epochs &&
            (s = add_warning(a, e, "mismatched epochs: %s/%s/%s ran %d epochs, its fixed baseline %d "
                             "(-1: seeds differ); compared anyway",
                             g->arch, g->dataset, g->label, g->epochs, bg->epochs)))
            goto done;
        g->baseline = b;
        if ((s = compare(a, g, bg, o, scratch, ibuf, e))) goto done;
    }
done:
    free(scratch);
    free(idx);
    free(ibuf);
    if (s) deba_analysis_free(a);
    return s;
}

/* ---- profile_summary.csv, thresholds.csv, sweep.csv found under the roots ---- */

typedef struct {
    char **paths;
    size_t n;
} pathlist;

static const char *const EXTRA_NAMES[3] = {"profile_summary.csv", "thresholds.csv", "sweep.csv"};

/* deba_walk's visitor: the three files of one directory. */
static deba_status visit_extras(const char *dir, void *ctx, deba_err *e)
{
    pathlist *lists = ctx;
    for (int k = 0; k < 3; k++) {
        char *p;
        struct stat st;
        if (asprintf(&p, "%s/%s", dir, EXTRA_NAMES[k]) < 0) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(p);
            continue;
        }
        char **np = realloc(lists[k].paths, (lists[k].n + 1) * sizeof *np);
        if (!np) {
            free(p);
            return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        }
        lists[k].paths = np;
        np[lists[k].n++] = p;
    }
    return DEBA_OK;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Rows of the extra files name an (arch, dataset) that titles figures and tables: the same
 * rule as meta.csv's names. */
static deba_status check_names(const char *path, size_t row, const char *arch, const char *dataset, deba_err *e)
{
    const char *bad = !deba_name_ok(arch) ? "arch" : !deba_name_ok(dataset) ? "dataset" : NULL;
    if (!bad) return DEBA_OK;
    char shown[400];
    return deba_err_set(e, DEBA_E_INPUT, "%s: data row %zu: column '%s': '%s' is not a name (1 to %d of A-Z a-z 0-9 . _ -, "
                        "not . or ..)", path, row + 1, bad, deba_esc_msg(shown, sizeof shown, *bad == 'a' ? arch : dataset),
                        DEBA_NAME_MAX - 1);
}

#define APPEND_ROWS(reader, field, count, files)                                          \
    for (size_t i = 0; i < lists[k].n && !s; i++) {                                         \
        __typeof__(a->field) rows = NULL;                                                    \
        size_t n = 0;                                                                       \
        if ((s = reader(lists[k].paths[i], &rows, &n, e))) break;                           \
        for (size_t r_ = 0; r_ < n && !s; r_++)                                             \
            s = check_names(lists[k].paths[i], r_, rows[r_].arch, rows[r_].dataset, e);     \
        if (s) { free(rows); break; }                                                       \
        __typeof__(a->field) all = realloc(a->field, (a->count + n + 1) * sizeof *all);     \
        if (!all) { free(rows); s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); break; } \
        if (n) memcpy(all + a->count, rows, n * sizeof *rows);                              \
        a->field = all;                                                                     \
        a->count += n;                                                                      \
        a->files++;                                                                         \
        free(rows);                                                                         \
    }

/* The columns of profile_summary.csv beyond SPEC §7's, by name: deba-profile's verdict, whatever
 * set of them the file carries (none in older files). */
static deba_status load_verdicts(deba_analysis *a, const char *path, deba_err *e)
{
    static const char *const spec[] = {"arch", "dataset", "seeds", "S_mean", "S_std", "archetype"};
    deba_table *t;
    deba_status s = deba_table_read(path, &t, e);
    if (s) return s;
    size_t ncols = deba_table_ncols(t), ca, cd;
    if ((s = deba_table_col(t, "arch", &ca, e)) || (s = deba_table_col(t, "dataset", &cd, e))) {
        deba_table_free(t);
        return s;
    }
    size_t nextra = 0;
    for (size_t c = 0; c < ncols; c++) {
        size_t k = 0;
        while (k < sizeof spec / sizeof spec[0] && strcmp(deba_table_header(t, c), spec[k])) k++;
        nextra += k == sizeof spec / sizeof spec[0];
    }
    for (size_t r = 0; r < deba_table_nrows(t) && nextra && !s; r++) {
        const char *arch = deba_table_str(t, r, ca), *ds = deba_table_str(t, r, cd);
        if ((s = check_names(path, r, arch, ds, e))) break;
        deba_verdict *v = realloc(a->verdicts, (a->nverdicts + 1) * sizeof *v);
        if (!v) { s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); break; }
        a->verdicts = v;
        v = &a->verdicts[a->nverdicts++];
        memset(v, 0, sizeof *v);
        strcpy(v->arch, arch);   /* deba_name_ok: fits */
        strcpy(v->dataset, ds);
        if (!(v->keys = calloc(nextra, sizeof *v->keys)) || !(v->values = calloc(nextra, sizeof *v->values))) {
            s = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
            break;
        }
        for (size_t c = 0; c < ncols && !s; c++) {
            size_t k = 0;
            while (k < sizeof spec / sizeof spec[0] && strcmp(deba_table_header(t, c), spec[k])) k++;
            if (k < sizeof spec / sizeof spec[0]) continue;
            v->keys[v->n] = strdup(deba_table_header(t, c));
            v->values[v->n] = strdup(deba_table_str(t, r, c));
            if (!v->keys[v->n] || !v->values[v->n]) s = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
            v->n++;
        }
    }
    deba_table_free(t);
    return s;
}

deba_status deba_analysis_load_extras(deba_analysis *a, const char *const *roots, size_t nroots, deba_err *e)
{
    pathlist lists[3] = {{0}};
    char **skipped = NULL;
    size_t nskipped = 0;
    deba_status s = deba_walk(roots, nroots, visit_extras, lists, &skipped, &nskipped, e);
    /* the same walk as deba_runs_load's: what it skipped is reported once, here */
    for (size_t i = 0; i < nskipped && !s; i++) s = add_warning(a, e, "%s", skipped[i]);
    deba_strs_free(skipped, nskipped);
    for (int k = 0; k < 3 && !s; k++)
        if (lists[k].n > 1) qsort(lists[k].paths, lists[k].n, sizeof *lists[k].paths, cmp_str);
    int k = 0;
    if (!s) { APPEND_ROWS(deba_summary_read, summary, nsummary, nsummary_files) }
    for (size_t i = 0; i < lists[0].n && !s; i++) s = load_verdicts(a, lists[0].paths[i], e);
    k = 1;
    if (!s) { APPEND_ROWS(deba_thresholds_read, thresholds, nthresholds, nthresholds_files) }
    k = 2;
    if (!s) { APPEND_ROWS(deba_sweep_read, sweep, nsweep, nsweep_files) }
    for (k = 0; k < 3; k++) {
        for (size_t i = 0; i < lists[k].n; i++) free(lists[k].paths[i]);
        free(lists[k].paths);
    }
    return s;
}

void deba_analysis_free(deba_analysis *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->ngroups; i++) {
        free(a->groups[i].members);
        free(a->groups[i].config);
    }
    for (size_t i = 0; i < a->nverdicts; i++) {
        for (size_t k = 0; k < a->verdicts[i].n; k++) {
            free(a->verdicts[i].keys[k]);
            free(a->verdicts[i].values[k]);
        }
        free(a->verdicts[i].keys);
        free(a->verdicts[i].values);
    }
    free(a->verdicts);
    for (size_t i = 0; i < a->nwarnings; i++) free(a->warnings[i]);
    free(a->groups);
    free(a->runs);
    free(a->warnings);
    free(a->summary);
    free(a->thresholds);
    free(a->sweep);
    memset(a, 0, sizeof *a);
}
