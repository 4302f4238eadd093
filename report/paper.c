/* Paper mode: the numbers the DEBA paper prints (the CSVs in data/paper/), rendered in the report's
 * layouts with every derived number recomputed, and each place where the paper disagrees with
 * its own inputs listed. */
#include "report/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "deba/csv.h"

/* Each inconsistency is one place in the paper; places that share a root cause (the same wrong
 * number quoted in several sections) are grouped under it. `cause` is the root cause's key,
 * `why` its explanation (the tool's words); a new key opens a new root cause. */
static deba_status note(deba_report_data *d, deba_err *e, const char *cause, const char *why, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static deba_status add_cause(deba_report_data *d, const char *key, const char *why, int *idx, deba_err *e)
{
    for (size_t i = 0; i < d->ncauses; i++) {
        const char *k = d->causes[i];   /* "key\twhy" */
        size_t l = strlen(key);
        if (!strncmp(k, key, l) && k[l] == '\t') {
            *idx = (int)i;
            return DEBA_OK;
        }
    }
    char **c = realloc(d->causes, (d->ncauses + 1) * sizeof *c);
    if (!c) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    d->causes = c;
    if (asprintf(&c[d->ncauses], "%s\t%s", key, why) < 0) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    *idx = (int)d->ncauses++;
    return DEBA_OK;
}

static deba_status note(deba_report_data *d, deba_err *e, const char *cause, const char *why, const char *fmt, ...)
{
    int ci = -1;
    deba_status st = add_cause(d, cause, why, &ci, e);
    if (st) return st;
    int *nc = realloc(d->note_cause, (d->nnotes + 1) * sizeof *nc);
    if (!nc) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    d->note_cause = nc;
    va_list ap;
    va_start(ap, fmt);
    st = deba_strlist_push(&d->notes, &d->nnotes, e, fmt, ap);
    va_end(ap);
    if (!st) nc[d->nnotes - 1] = ci;
    return st;
}

/* The explanation of root cause i (after the key and its tab). */
static const char *cause_text(const deba_report_data *d, size_t i)
{
    const char *t = strchr(d->causes[i], '\t');
    return t ? t + 1 : d->causes[i];
}

void rp_causes_md(FILE *f, const deba_report_data *d)
{
    for (size_t c = 0; c < d->ncauses; c++) {
        size_t n = 0;
        for (size_t i = 0; i < d->nnotes; i++) n += d->note_cause[i] == (int)c;
        fprintf(f, "%zu. ", c + 1);
        rp_md(f, cause_text(d, c));
        fprintf(f, " (%zu place%s):\n", n, n == 1 ? "" : "s");
        for (size_t i = 0; i < d->nnotes; i++)
            if (d->note_cause[i] == (int)c) {
                fputs("   - ", f);
                rp_md(f, d->notes[i]);
                fputc('\n', f);
            }
    }
}

/* ---- reading the transcribed tables ---- */

typedef struct {
    deba_table *t;
    size_t col[12];
} ptab;

static deba_status open_tab(const char *dir, const char *name, const char *const *cols, size_t ncols, ptab *p,
                            deba_err *e)
{
    char path[4200];
    deba_status s = rp_path(path, sizeof path, e, "%s/%s", dir, name);
    if (s) return s;
    s = deba_table_read(path, &p->t, e);
    for (size_t i = 0; i < ncols && !s; i++) s = deba_table_col(p->t, cols[i], &p->col[i], e);
    if (s) {
        deba_table_free(p->t);
        p->t = NULL;
    }
    return s;
}

/* A number cell that may be empty (not printed): NAN then. */
static deba_status cell_num(const ptab *p, size_t row, int c, double *v, deba_err *e)
{
    const char *s = deba_table_str(p->t, row, p->col[c]);
    if (!s || !*s) {
        *v = NAN;
        return DEBA_OK;
    }
    return deba_table_double(p->t, row, p->col[c], v, e);
}

static deba_status cell_name(const ptab *p, size_t row, int c, char *dst, deba_err *e)
{
    const char *s = deba_table_str(p->t, row, p->col[c]);
    if (strlen(s) >= DEBA_NAME_MAX)
        return deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column '%s' is longer than %d characters",
                            deba_table_path(p->t), deba_table_line(p->t, row), deba_table_header(p->t, p->col[c]),
                            DEBA_NAME_MAX - 1);
    strcpy(dst, s);
    return DEBA_OK;
}

#define GROW(arr, n)                                                            \
    do {                                                                        \
        void *np_ = realloc((arr), ((n) + 1) * sizeof *(arr));                  \
        if (!np_) { s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); break; } \
        (arr) = np_;                                                            \
        memset(&(arr)[(n)], 0, sizeof *(arr));                                  \
    } while (0)

static deba_status load_t1(const char *dir, deba_report_data *d, deba_err *e)
{
    static const char *const cols[] = {"arch", "dataset", "tau", "theta", "lambda"};
    ptab p;
    deba_status s = open_tab(dir, "table1.csv", cols, 5, &p, e);
    for (size_t i = 0; !s && i < deba_table_nrows(p.t); i++) {
        GROW(d->t1, d->n1);
        if (s) break;
        deba_t1_row *r = &d->t1[d->n1];
        if ((s = cell_name(&p, i, 0, r->arch, e)) || (s = cell_name(&p, i, 1, r->dataset, e)) ||
            (s = cell_num(&p, i, 2, &r->tau, e)) || (s = cell_num(&p, i, 3, &r->theta, e)) ||
            (s = cell_num(&p, i, 4, &r->lambda, e)))
            break;
        d->n1++;
    }
    deba_table_free(p.t);
    return s;
}

static deba_status load_t2(const char *dir, deba_report_data *d, deba_err *e)
{
    static const char *const cols[] = {"arch", "dataset", "seeds", "S_mean", "S_std", "archetype", "dacc"};
    ptab p;
    deba_status s = open_tab(dir, "table2.csv", cols, 7, &p, e);
    for (size_t i = 0; !s && i < deba_table_nrows(p.t); i++) {
        GROW(d->t2, d->n2);
        if (s) break;
        deba_t2_row *r = &d->t2[d->n2];
        r->dacc = DEBA_PD_NONE;
        double seeds;
        if ((s = cell_name(&p, i, 0, r->arch, e)) || (s = cell_name(&p, i, 1, r->dataset, e)) ||
            (s = cell_num(&p, i, 2, &seeds, e)) || (s = deba_table_double(p.t, i, p.col[3], &r->S_mean, e)) ||
            (s = deba_table_double(p.t, i, p.col[4], &r->S_std, e)) || (s = cell_name(&p, i, 5, r->printed, e)) ||
            (s = cell_num(&p, i, 6, &r->dacc.mean, e)))
            break;
        r->seeds = isnan(seeds) ? 0 : (int)seeds;
        r->archetype = deba_archetype_classify(r->S_mean, r->S_std);
        d->n2++;
    }
    deba_table_free(p.t);
    return s;
}

static deba_status load_t3(const char *dir, deba_report_data *d, deba_err *e)
{
    static const char *const cols[] = {"arch", "dataset", "label", "dacc", "speedup_pct"};
    ptab p;
    deba_status s = open_tab(dir, "table3.csv", cols, 5, &p, e);
    for (size_t i = 0; !s && i < deba_table_nrows(p.t); i++) {
        GROW(d->t3, d->n3);
        if (s) break;
        deba_t3_row *r = &d->t3[d->n3];
        r->dacc = r->speedup = DEBA_PD_NONE;
        if ((s = cell_name(&p, i, 0, r->arch, e)) || (s = cell_name(&p, i, 1, r->dataset, e)) ||
            (s = cell_name(&p, i, 2, r->label, e)) || (s = cell_num(&p, i, 3, &r->dacc.mean, e)) ||
            (s = cell_num(&p, i, 4, &r->speedup.mean, e)))
            break;
        d->n3++;
    }
    deba_table_free(p.t);
    if (s) return s;
    static const char *const cols2[] = {"label", "degraded", "of", "mean_abs_dacc"};
    s = open_tab(dir, "table3_summary.csv", cols2, 4, &p, e);
    for (size_t i = 0; !s && i < deba_table_nrows(p.t); i++) {
        GROW(d->t3p, d->n3p);
        if (s) break;
        deba_t3_printed *r = &d->t3p[d->n3p];
        long deg, of;
        if ((s = cell_name(&p, i, 0, r->label, e)) || (s = deba_table_int(p.t, i, p.col[1], &deg, e)) ||
            (s = deba_table_int(p.t, i, p.col[2], &of, e)) || (s = cell_num(&p, i, 3, &r->mean_abs_dacc, e)))
            break;
        r->degraded = (int)deg;
        r->of = (int)of;
        d->n3p++;
    }
    deba_table_free(p.t);
    return s;
}

/* Printed precision of a number cell: half a unit of its last digit. */
static double half_unit(const char *s)
{
    const char *dot = strchr(s, '.');
    int dec = dot ? (int)strspn(dot + 1, "0123456789") : 0;
    return 0.5 * pow(10.0, -dec);
}

typedef struct {
    double thr_half;   /* rounding of the printed throughput × */
    double sp_half;    /* rounding of the printed speedup % */
    char source[256];
} t4_extra;

static deba_status load_t4(const char *dir, deba_report_data *d, t4_extra **extra, deba_err *e)
{
    static const char *const cols[] = {"arch", "dataset", "dacc", "throughput_x", "speedup_pct", "speedup_source",
                                       "acc_fixed", "acc_deba", "time_fixed", "time_deba"};
    ptab p;
    deba_status s = open_tab(dir, "table4.csv", cols, 10, &p, e);
    for (size_t i = 0; !s && i < deba_table_nrows(p.t); i++) {
        GROW(d->t4, d->n4);
        if (s) break;
        GROW(*extra, d->n4);
        if (s) break;
        deba_t4_row *r = &d->t4[d->n4];
        deba_ms none = {NAN, NAN, 0};
        r->acc_fixed = r->acc_deba = r->time_fixed = r->time_deba = none;
        r->dacc = r->speedup = DEBA_PD_NONE;
        r->speedup_x = r->throughput_x = NAN;
        if ((s = cell_name(&p, i, 0, r->arch, e)) || (s = cell_name(&p, i, 1, r->dataset, e)) ||
            (s = cell_num(&p, i, 2, &r->dacc.mean, e)) || (s = cell_num(&p, i, 3, &r->throughput_x, e)) ||
            (s = cell_num(&p, i, 4, &r->speedup.mean, e)) || (s = cell_num(&p, i, 6, &r->acc_fixed.mean, e)) ||
            (s = cell_num(&p, i, 7, &r->acc_deba.mean, e)) || (s = cell_num(&p, i, 8, &r->time_fixed.mean, e)) ||
            (s = cell_num(&p, i, 9, &r->time_deba.mean, e)))
            break;
        t4_extra *x = &(*extra)[d->n4];
        x->thr_half = half_unit(deba_table_str(p.t, i, p.col[3]));
        x->sp_half = half_unit(deba_table_str(p.t, i, p.col[4]));
        const char *src = deba_table_str(p.t, i, p.col[5]);
        if (strlen(src) >= sizeof x->source) {
            s = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column 'speedup_source' is longer than %zu characters",
                             deba_table_path(p.t), deba_table_line(p.t, i), sizeof x->source - 1);
            break;
        }
        snprintf(x->source, sizeof x->source, "%s", src);
        if (!isnan(r->speedup.mean) && !x->source[0]) snprintf(x->source, sizeof x->source, "Table 4");
        d->n4++;
    }
    deba_table_free(p.t);
    return s;
}

/* ---- lookups ---- */

static const deba_t3_row *t3_get(const deba_report_data *d, const char *label, const char *arch)
{
    for (size_t i = 0; i < d->n3; i++)
        if (!strcmp(d->t3[i].label, label) && !strcasecmp(d->t3[i].arch, arch)) return &d->t3[i];
    return NULL;
}

static const deba_t2_row *t2_get(const deba_report_data *d, const char *arch)
{
    for (size_t i = 0; i < d->n2; i++)
        if (!strcasecmp(d->t2[i].arch, arch)) return &d->t2[i];
    return NULL;
}

static int in_list(const char *list, const char *arch)
{
    if (!strcmp(list, "*")) return 1;
    size_t l = strlen(arch);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == l && !strncasecmp(p, arch, l)) return 1;
        p += n + (end != NULL);
    }
    return 0;
}

static double t3_field(const deba_t3_row *r, const char *field)
{
    return !strcmp(field, "speedup") ? r->speedup.mean : !strcmp(field, "dacc") ? r->dacc.mean : NAN;
}

/* Evaluates one claim's check; desc says what was computed. NAN when the check is unknown or
 * its inputs are missing. */
static double eval_check(const deba_report_data *d, const char *check, char *desc, size_t cap, int *counted)
{
    *counted = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", check);
    char *f[6] = {0};
    int nf = 0;
    for (char *p = buf, *sv = NULL, *tok; nf < 6 && (tok = strtok_r(p, ":", &sv)); p = NULL) f[nf++] = tok;
    if (nf == 0) return NAN;
    const char *k = f[0];
    double v = NAN;
    if (!strcmp(k, "t1_tau_ratio") && d->n1) {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < d->n1; i++) {
            if (d->t1[i].tau < lo) lo = d->t1[i].tau;
            if (d->t1[i].tau > hi) hi = d->t1[i].tau;
        }
        v = hi / lo;
        snprintf(desc, cap, "Table 1's largest/smallest τ = %.4g/%.4g", hi, lo);
    } else if (!strcmp(k, "t2") && nf == 3) {
        const deba_t2_row *r = t2_get(d, f[1]);
        if (r) {
            v = !strcmp(f[2], "S_mean") ? r->S_mean : !strcmp(f[2], "S_std") ? r->S_std : r->dacc.mean;
            snprintf(desc, cap, "Table 2 gives %s %s", f[1],
                     !strcmp(f[2], "S_mean") ? "S̄" : !strcmp(f[2], "S_std") ? "σ_S" : "ΔAcc");
        }
    } else if (!strcmp(k, "t3") && nf == 4) {
        const deba_t3_row *r = t3_get(d, f[1], f[2]);
        if (r) {
            v = t3_field(r, f[3]);
            snprintf(desc, cap, "Table 3 gives %s %s %s", deba_condition_name(f[1]), f[2],
                     !strcmp(f[3], "speedup") ? "speedup (%)" : "ΔAcc");
        }
    } else if ((!strcmp(k, "t3_min") || !strcmp(k, "t3_max")) && nf == 3) {
        int mx = !strcmp(k, "t3_max");
        const char *who = "";
        for (size_t i = 0; i < d->n3; i++) {
            if (strcmp(d->t3[i].label, f[1])) continue;
            double x = t3_field(&d->t3[i], f[2]);
            if (isnan(v) || (mx ? x > v : x < v)) {
                v = x;
                who = d->t3[i].arch;
            }
        }
        snprintf(desc, cap, "Table 3's %s %s under %s is %s's", mx ? "largest" : "smallest",
                 !strcmp(f[2], "speedup") ? "speedup (%)" : "ΔAcc", deba_condition_name(f[1]), who);
    } else if ((!strcmp(k, "t3_count_gt") || !strcmp(k, "t3_count_le") || !strcmp(k, "t3_count_drop")) && nf == 3) {
        double x = atof(f[2]);
        int n = 0, of = 0;
        for (size_t i = 0; i < d->n3; i++) {
            const deba_t3_row *r = &d->t3[i];
            if (strcmp(r->label, f[1]) || isnan(r->dacc.mean)) continue;
            of++;
            if (!strcmp(k, "t3_count_gt")) n += r->dacc.mean > x;
            else if (!strcmp(k, "t3_count_le")) n += r->dacc.mean <= x;
            else {
                const deba_t3_row *b = t3_get(d, "deba", r->arch);
                n += b && r->dacc.mean - b->dacc.mean <= -x;
            }
        }
        v = n;
        *counted = 1;
        if (!strcmp(k, "t3_count_gt"))
            snprintf(desc, cap, "Table 3 has %d/%d architectures with ΔAcc > %g under %s", n, of, x, deba_condition_name(f[1]));
        else if (!strcmp(k, "t3_count_le"))
            snprintf(desc, cap, "Table 3 has %d/%d architectures with ΔAcc ≤ %g under %s", n, of, x, deba_condition_name(f[1]));
        else
            snprintf(desc, cap, "Table 3 has %d/%d architectures whose ΔAcc under %s is ≥ %g below Baseline's", n, of,
                     deba_condition_name(f[1]), x);
    } else if (!strcmp(k, "t4_count_gt") && nf == 2) {
        double x = atof(f[1]);
        int n = 0, of = 0;
        for (size_t i = 0; i < d->n4; i++)
            if (!isnan(d->t4[i].dacc.mean)) {
                of++;
                n += d->t4[i].dacc.mean > x;
            }
        v = n;
        *counted = 1;
        snprintf(desc, cap, "Table 4 has %d/%d (arch, dataset) pairs with ΔAcc > %g", n, of, x);
    } else if ((!strcmp(k, "t4_min_dacc") || !strcmp(k, "t4_max_dacc")) && nf == 2) {
        int mx = !strcmp(k, "t4_max_dacc");
        const deba_t4_row *who = NULL;
        for (size_t i = 0; i < d->n4; i++) {
            if (!in_list(f[1], d->t4[i].arch) || isnan(d->t4[i].dacc.mean)) continue;
            if (!who || (mx ? d->t4[i].dacc.mean > v : d->t4[i].dacc.mean < v)) {
                v = d->t4[i].dacc.mean;
                who = &d->t4[i];
            }
        }
        if (who)
            snprintf(desc, cap, "Table 4's %s ΔAcc%s is %s/%s's", mx ? "largest" : "smallest",
                     strcmp(f[1], "*") ? " among those architectures" : "", who->arch, who->dataset);
    } else if (!strcmp(k, "t4") && nf == 4) {
        for (size_t i = 0; i < d->n4 && isnan(v); i++) {
            const deba_t4_row *r = &d->t4[i];
            if (strcasecmp(r->arch, f[1]) || strcasecmp(r->dataset, f[2])) continue;
            v = !strcmp(f[3], "dacc") ? r->dacc.mean : !strcmp(f[3], "throughput") ? r->throughput_x : NAN;
            snprintf(desc, cap, "Table 4 gives %s/%s %s", r->arch, r->dataset,
                     !strcmp(f[3], "dacc") ? "ΔAcc" : "throughput (×)");
        }
    } else if ((!strcmp(k, "t4_min_speedup") || !strcmp(k, "t4_max_speedup")) && nf == 2) {
        /* speedup (%) as printed (CIFAR-10: Table 3's Baseline, same runs), else (1 − 1/×)·100 from the throughput × */
        int mx = !strcmp(k, "t4_max_speedup");
        const deba_t4_row *who = NULL;
        for (size_t i = 0; i < d->n4; i++) {
            const deba_t4_row *r = &d->t4[i];
            double x = !isnan(r->speedup.mean) ? r->speedup.mean : 100.0 * (1.0 - 1.0 / r->throughput_x);
            if (!in_list(f[1], r->arch) || isnan(x)) continue;
            if (!who || (mx ? x > v : x < v)) {
                v = x;
                who = r;
            }
        }
        if (who) {
            char from[64] = "";
            if (isnan(who->speedup.mean)) snprintf(from, sizeof from, " (1 − 1/%.2f)·100 =", who->throughput_x);
            snprintf(desc, cap, "Table 4's %s speedup (%%)%s is %s/%s's%s", mx ? "largest" : "smallest",
                     strcmp(f[1], "*") ? " among those architectures" : "", who->arch, who->dataset, from);
        }
    } else if (!strcmp(k, "t4_runs") && nf == 3) {
        int seeds = atoi(f[1]), methods = atoi(f[2]);
        int abl = 0;
        for (size_t i = 0; i < d->n3; i++) abl += strcmp(d->t3[i].label, "deba") != 0;
        v = ((double)d->n4 * methods + abl) * seeds;
        snprintf(desc, cap, "Table 4's %zu (arch, dataset) pairs × %d run%s and Table 3's %d ablation cells, × %d seeds, "
                 "make %.0f runs", d->n4, methods, methods == 1 ? " (a fixed/DEBA pair counted as one)" : "s", abl, seeds, v);
        *counted = 1;
    }
    return v;
}

/* causes.csv: the root causes claims.csv names, key → explanation. */
static deba_status load_causes(const char *dir, deba_table **t, size_t col[2], deba_err *e)
{
    static const char *const cols[] = {"cause", "explanation"};
    ptab p;
    deba_status s = open_tab(dir, "causes.csv", cols, 2, &p, e);
    if (s) return s;
    *t = p.t;
    col[0] = p.col[0];
    col[1] = p.col[1];
    return DEBA_OK;
}

/* A claim's root cause: its `cause` key explained by causes.csv, else (no key) the computed
 * fact it contradicts, so two claims contradicted by the same number group together. */
static deba_status claim_cause(const ptab *p, size_t row, const deba_table *causes, const size_t *ccol,
                               const char *fact, const char **key, const char **why, deba_err *e)
{
    const char *k = deba_table_str(p->t, row, p->col[6]);
    *key = *why = fact;
    if (!*k) return DEBA_OK;
    for (size_t i = 0; i < deba_table_nrows(causes); i++)
        if (!strcmp(deba_table_str(causes, i, ccol[0]), k)) {
            *key = k;
            *why = deba_table_str(causes, i, ccol[1]);
            return DEBA_OK;
        }
    return deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column 'cause': '%s' is not in causes.csv", deba_table_path(p->t),
                        deba_table_line(p->t, row), k);
}

static deba_status check_claims(const char *dir, deba_report_data *d, deba_err *e)
{
    /* claim: the paper's words, verbatim (" ... " where words are left out); note: the tool's
     * remark, printed outside the quotation marks */
    static const char *const cols[] = {"section", "claim", "check", "op", "printed", "tol", "cause", "note"};
    ptab p;
    deba_table *causes = NULL;
    size_t ccol[2];
    deba_status s = open_tab(dir, "claims.csv", cols, 8, &p, e);
    if (s) return s;
    if ((s = load_causes(dir, &causes, ccol, e))) {
        deba_table_free(p.t);
        return s;
    }
    for (size_t i = 0; !s && i < deba_table_nrows(p.t); i++) {
        const char *sec = deba_table_str(p.t, i, p.col[0]);
        const char *claim = deba_table_str(p.t, i, p.col[1]);
        const char *check = deba_table_str(p.t, i, p.col[2]);
        const char *op = deba_table_str(p.t, i, p.col[3]);
        const char *rem = deba_table_str(p.t, i, p.col[7]);
        char remark[600] = "";
        if (*rem && (s = rp_text(remark, sizeof remark, e, " (%.500s)", rem))) break;
        const char *key, *why;
        d->nchecks++;
        if (!strcmp(check, "note")) {
            char fact[700];
            if ((s = rp_text(fact, sizeof fact, e, "%s: %s", sec, rem))) break;
            if (!(s = claim_cause(&p, i, causes, ccol, fact, &key, &why, e)))
                s = note(d, e, key, why, "%s (read, not computed): \"%s\"%s.", sec, claim, remark);
            continue;
        }
        double printed, tol;
        if ((s = deba_table_double(p.t, i, p.col[4], &printed, e)) || (s = cell_num(&p, i, 5, &tol, e))) break;
        if (isnan(tol)) tol = 0;
        char desc[512] = "";
        int counted;
        if (strlen(check) >= 512) {   /* eval_check splits a copy of at most 511 bytes */
            s = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column 'check' is longer than 511 characters",
                             deba_table_path(p.t), deba_table_line(p.t, i));
            break;
        }
        double v = eval_check(d, check, desc, sizeof desc, &counted);
        if (isnan(v)) {
            s = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: check '%s' is unknown or names a row the tables lack",
                             deba_table_path(p.t), deba_table_line(p.t, i), check);
            break;
        }
        int ok = !strcmp(op, "eq") ? fabs(v - printed) <= tol + 1e-9
               : !strcmp(op, "ge") ? v >= printed - tol - 1e-9
               : !strcmp(op, "le") ? v <= printed + tol + 1e-9 : -1;
        if (ok < 0) {
            s = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column 'op': '%s' is not eq, ge or le",
                             deba_table_path(p.t), deba_table_line(p.t, i), op);
            break;
        }
        if (!ok) {
            char val[64] = "", fact[600];
            if (!counted) snprintf(val, sizeof val, " %.4g", v);
            if ((s = rp_text(fact, sizeof fact, e, "%s%s", desc, val)) ||
                (s = claim_cause(&p, i, causes, ccol, fact, &key, &why, e)))
                break;
            s = note(d, e, key, why, "%s: \"%s\"%s — the text says %s%g, but %s [check %s].", sec, claim, remark,
                     !strcmp(op, "eq") ? "" : !strcmp(op, "ge") ? "≥ " : "≤ ", printed, fact, check);
        }
    }
    deba_table_free(causes);
    deba_table_free(p.t);
    return s;
}

/* ---- derived numbers ---- */

static deba_status check_derived(deba_report_data *d, const t4_extra *x, deba_err *e)
{
    deba_status s = DEBA_OK;
    /* Table 2: archetype from (S̄, σ_S) */
    for (size_t i = 0; i < d->n2 && !s; i++) {
        const deba_t2_row *r = &d->t2[i];
        d->nchecks++;
        if (r->printed[0] && strcasecmp(r->printed, deba_archetype_name(r->archetype)))
            s = note(d, e, r->arch, "Table 2 prints an archetype its own (S̄, σ_S) do not give",
                     "Table 2: %s is printed as %s, but S̄ = %.3f, σ_S = %.3f make it %s (SPEC §5 rule).",
                     r->arch, r->printed, r->S_mean, r->S_std, deba_archetype_name(r->archetype));
    }
    /* Table 3: Degraded and Mean |ΔAcc| rows */
    for (size_t c = 0; c < d->n3p && !s; c++) {
        const deba_t3_printed *p = &d->t3p[c];
        int deg = 0, of = 0, drop = 0;
        double sum = 0;
        char vals[512] = "";
        for (size_t i = 0; i < d->n3; i++) {
            const deba_t3_row *r = &d->t3[i];
            if (strcmp(r->label, p->label) || isnan(r->dacc.mean)) continue;
            of++;
            deg += r->dacc.mean <= -1.0;
            sum += fabs(r->dacc.mean);
            const deba_t3_row *b = t3_get(d, "deba", r->arch);
            drop += b && r->dacc.mean - b->dacc.mean <= -1.0;
            size_t l = strlen(vals);
            snprintf(vals + l, sizeof vals - l, "%s%.2f", l ? " + " : "", fabs(r->dacc.mean));
        }
        double mabs = of ? sum / of : NAN;
        d->nchecks += 2;
        if (p->degraded != deg || p->of != of) {
            char alt[256] = "";
            if (drop == p->degraded && strcmp(p->label, "deba"))
                snprintf(alt, sizeof alt, " The printed %d/%d matches a different reading, a drop of ≥1 point from the "
                         "Baseline column, which the other columns of the same row do not follow.", p->degraded, p->of);
            s = note(d, e, "t3-degraded", "Table 3's \"Degraded (≥1pt)\" row does not count its own column",
                     "Table 3, %s: \"Degraded (≥1pt)\" is printed %d/%d, but %d/%d architectures have ΔAcc ≤ −1.%s",
                     deba_condition_name(p->label), p->degraded, p->of, deg, of, alt);
        }
        if (!s && !isnan(p->mean_abs_dacc) && fabs(p->mean_abs_dacc - mabs) > 0.005 + 1e-9)
            s = note(d, e, "t3-mean", "Table 3's \"Mean |ΔAcc|\" row is not the mean of its own column",
                     "Table 3, %s: \"Mean |ΔAcc|\" is printed %.2f, but (%s)/%d = %.2f.",
                     deba_condition_name(p->label), p->mean_abs_dacc, vals, of, mabs);
    }
    /* Table 4: speedup × from speedup %, against the printed throughput × */
    for (size_t i = 0; i < d->n4 && !s; i++) {
        deba_t4_row *r = &d->t4[i];
        const deba_t3_row *b = t3_get(d, "deba", r->arch);
        /* Table 3's Baseline column is CIFAR-10 (§6.2): the same runs as Table 4's CIFAR-10 rows */
        int same_runs = b && !strcmp(b->dataset, r->dataset);
        if (same_runs) {
            d->nchecks++;
            if (!isnan(r->dacc.mean) && fabs(b->dacc.mean - r->dacc.mean) > 0.005 + 1e-9)
                s = note(d, e, "t3-t4-dacc", "Table 3's Baseline column and Table 4 give the same runs different ΔAcc",
                         "%s/%s: ΔAcc is %+.2f in Table 4 but %+.2f in Table 3's Baseline column.", r->arch,
                         r->dataset, r->dacc.mean, b->dacc.mean);
            if (isnan(r->speedup.mean)) r->speedup.mean = b->speedup.mean;
        }
        if (isnan(r->speedup.mean)) continue;
        r->speedup_x = 100.0 / (100.0 - r->speedup.mean);
        if (isnan(r->throughput_x) || s) continue;
        d->nchecks++;
        double sp_half = same_runs && x[i].source[0] == '\0' ? 0.05 : x[i].sp_half;
        /* rounding of both printed numbers, plus 2% for throughput not being exactly 1/time */
        double dx = 100.0 / (100.0 - (r->speedup.mean + sp_half)) - r->speedup_x;
        double tol = x[i].thr_half + dx + 0.02 * r->speedup_x;
        if (fabs(r->speedup_x - r->throughput_x) > tol)
            s = note(d, e, "t4-throughput", "Table 4's throughput (×) does not follow from the speedup (%) of the same runs",
                     "%s/%s: a speedup of %.1f%% (%s) is %.2f× faster, but Table 4 prints a %.2f× throughput "
                     "(%.2f× would be a %.1f%% speedup).", r->arch, r->dataset, r->speedup.mean,
                     x[i].source[0] ? x[i].source : "Table 3, Baseline column", r->speedup_x, r->throughput_x,
                     r->throughput_x, 100.0 * (1.0 - 1.0 / r->throughput_x));
    }
    /* Table 2's ΔAcc against Table 4 (CIFAR-10, CIFAR-100, their mean) */
    int nmis = 0, nall = 0;
    char ex[1024] = "";
    for (size_t i = 0; i < d->n2 && !s; i++) {
        const deba_t2_row *r = &d->t2[i];
        if (isnan(r->dacc.mean)) continue;
        double v[3] = {NAN, NAN, NAN};
        int nv = 0;
        double sum = 0;
        for (size_t j = 0; j < d->n4; j++)
            if (!strcasecmp(d->t4[j].arch, r->arch) && !isnan(d->t4[j].dacc.mean) && nv < 2) {
                v[nv++] = d->t4[j].dacc.mean;
                sum += d->t4[j].dacc.mean;
            }
        if (nv == 0) continue;
        v[2] = sum / nv;
        nall++;
        int match = 0;
        for (int k = 0; k < 3; k++) match |= !isnan(v[k]) && fabs(v[k] - r->dacc.mean) <= 0.05 + 1e-9;
        if (!match) {
            nmis++;
            size_t l = strlen(ex);
            snprintf(ex + l, sizeof ex - l, "%s%s %+.1f vs %+.2f/%+.2f (mean %+.2f)", l ? "; " : "", r->arch, r->dacc.mean,
                     v[0], v[1], v[2]);
        }
    }
    if (!s && nall) {
        d->nchecks++;
        if (nmis)
            s = note(d, e, "t2-t4-dacc", "Table 2's ΔAcc column is not Table 4's",
                     "Table 2's ΔAcc column matches neither Table 4's CIFAR-10 nor CIFAR-100 value nor their mean "
                     "for %d of %d architectures: %s. §5.2 profiles with 3 seeds (2, 42, 199) while Table 4 uses 5, so "
                     "these may be other runs, but the paper does not say which.", nmis, nall, ex);
    }
    return s;
}

deba_status deba_report_from_paper(const char *dir, deba_report_data *d, deba_err *e)
{
    memset(d, 0, sizeof *d);
    d->paper = 1;
    t4_extra *x = NULL;
    deba_status s = load_t1(dir, d, e);
    if (!s) s = load_t2(dir, d, e);
    if (!s) s = load_t3(dir, d, e);
    if (!s) s = load_t4(dir, d, &x, e);
    if (!s) s = check_derived(d, x, e);
    if (!s) s = check_claims(dir, d, e);
    free(x);
    if (s) deba_report_data_free(d);
    return s;
}
