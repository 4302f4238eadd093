/* SPEC §6 comparisons from run directories: per-run metrics from meta.csv and trace.csv, seeds
 * grouped by (arch, dataset, label), each condition against its fixed baseline. */
#include "analyze/analyze.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    return (x->seed > y->seed) - (x->seed < y->seed);
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

static void compare(deba_analysis *a, deba_group *g, const deba_group *b, double *buf)
{
    g->has_baseline = 1;
    g->dacc.mean = g->final_acc.mean - b->final_acc.mean;
    g->speedup_pct.mean = (b->time.mean - g->time.mean) / b->time.mean * 100.0;
    g->speedup_x = b->time.mean / g->time.mean;
    g->throughput_x = g->throughput.mean / b->throughput.mean;
    /* seed-paired spreads */
    double *dacc = buf, *sp = buf + g->nseeds;
    int np = 0;
    for (int k = 0; k < g->nseeds; k++) {
        const deba_run_metrics *r = &a->runs[g->members[k]];
        for (int j = 0; j < b->nseeds; j++) {
            const deba_run_metrics *f = &a->runs[b->members[j]];
            if (f->seed != r->seed) continue;
            dacc[np] = r->final_acc - f->final_acc;
            sp[np] = (f->train_time - r->train_time) / f->train_time * 100.0;
            np++;
            break;
        }
    }
    g->dacc.n = g->speedup_pct.n = np;
    g->dacc.std = np >= 2 ? deba_std_sample(dacc, (size_t)np) : NAN;
    g->speedup_pct.std = np >= 2 ? deba_std_sample(sp, (size_t)np) : NAN;
}

deba_status deba_analysis_run(const deba_run *runs, size_t nruns, deba_analysis *a, deba_err *e)
{
    memset(a, 0, sizeof *a);
    deba_status s = DEBA_OK;
    size_t maxn = 1;
    for (size_t i = 0; i < nruns; i++)
        if (runs[i].trace.n > maxn) maxn = runs[i].trace.n;
    double *scratch = malloc(6 * maxn * sizeof *scratch + (nruns + 1) * 2 * sizeof *scratch);
    size_t *idx = malloc((nruns + 1) * sizeof *idx);
    a->runs = calloc(nruns + 1, sizeof *a->runs);
    if (!scratch || !idx || !a->runs) {
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

    /* groups: runs of equal key are adjacent */
    a->groups = calloc(ninc + 1, sizeof *a->groups);
    if (!a->groups) { s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < ninc;) {
        size_t j = i + 1;
        while (j < ninc && cmp_key(&a->runs[idx[i]], &a->runs[idx[j]]) == 0) j++;
        deba_group *g = &a->groups[a->ngroups++];
        const deba_run_metrics *r = &a->runs[idx[i]];
        strcpy(g->arch, r->arch);
        strcpy(g->dataset, r->dataset);
        strcpy(g->label, r->label);
        g->nseeds = (int)(j - i);
        g->baseline = -1;
        if (!(g->members = malloc((j - i) * sizeof *g->members))) {
            s = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
            goto done;
        }
        memcpy(g->members, idx + i, (j - i) * sizeof *idx);
        for (size_t k = i + 1; k < j; k++)
            if (a->runs[idx[k]].seed == a->runs[idx[k - 1]].seed &&
                (s = add_warning(a, e, "%s/%s/%s: seed %d appears twice (%s and %s); both averaged",
                                 g->arch, g->dataset, g->label, a->runs[idx[k]].seed,
                                 a->runs[idx[k - 1]].run->dir, a->runs[idx[k]].run->dir)))
                goto done;
        group_stats(a, g, scratch);
        if (g->epochs < 0 &&
            (s = add_warning(a, e, "%s/%s/%s: seeds ran different numbers of epochs", g->arch, g->dataset,
                             g->label)))
            goto done;
        i = j;
    }

    /* pair each condition with its baseline; groups of one (arch, dataset) are adjacent and
     * fixed sorts first */
    for (size_t i = 0; i < a->ngroups; i++) {
        deba_group *g = &a->groups[i];
        if (!strcmp(g->label, "fixed")) continue;
        g->dacc = g->speedup_pct = (deba_ms){NAN, NAN, 0};
        g->speedup_x = g->throughput_x = NAN;
        int b = deba_analysis_find(a, g->arch, g->dataset, "fixed");
        if (b < 0) {
            if ((s = add_warning(a, e, "missing baseline: %s/%s/%s has no completed 'fixed' runs of %s/%s; "
                                 "its ΔAcc and speedup are not reported",
                                 g->arch, g->dataset, g->label, g->arch, g->dataset)))
                goto done;
            continue;
        }
        const deba_group *bg = &a->groups[b];
        if (g->epochs != bg->epochs &&
            (s = add_warning(a, e, "mismatched epochs: %s/%s/%s ran %d epochs, its fixed baseline %d "
                             "(-1: seeds differ); compared anyway",
                             g->arch, g->dataset, g->label, g->epochs, bg->epochs)))
            goto done;
        g->baseline = b;
        compare(a, g, bg, scratch);
    }
done:
    free(scratch);
    free(idx);
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
    for (size_t i = 0; i < a->ngroups; i++) free(a->groups[i].members);
    for (size_t i = 0; i < a->nwarnings; i++) free(a->warnings[i]);
    free(a->groups);
    free(a->runs);
    free(a->warnings);
    free(a->summary);
    free(a->thresholds);
    free(a->sweep);
    memset(a, 0, sizeof *a);
}
