/* The paper's Tables 1-4 built from the report's rows (runs or paper), with a reading computed
 * from the numbers, and their CSV forms. */
#include "report/report.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "deba/csv.h"

/* ---- rows from an analysis ---- */

static void *grow(void *p, size_t n, size_t size)
{
    return realloc(p, (n + 1) * size);
}

#define PUSH(arr, n, val)                                                   \
    do {                                                                    \
        void *np_ = grow((arr), (n), sizeof *(arr));                        \
        if (!np_) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");   \
        (arr) = np_;                                                        \
        (arr)[(n)++] = (val);                                               \
    } while (0)

static double meta_num(const deba_run *r, const char *key)
{
    const char *s = deba_meta_get(&r->meta, key);
    if (!s || !*s) return NAN;
    char *end;
    double v = strtod(s, &end);
    return *end || !isfinite(v) ? NAN : v;
}

static void t4_empty(deba_t4_row *r, const char *arch, const char *dataset)
{
    deba_ms none = {NAN, NAN, 0};
    memset(r, 0, sizeof *r);
    r->acc_fixed = r->acc_deba = r->time_fixed = r->time_deba = none;
    r->dacc = r->speedup = DEBA_PD_NONE;
    r->speedup_x = r->throughput_x = NAN;
    strcpy(r->arch, arch);
    strcpy(r->dataset, dataset);
}

/* The DEBA group of (arch, dataset) that compares with a fixed baseline, else the first. */
static const deba_group *deba_of(const deba_analysis *a, const char *arch, const char *dataset)
{
    const deba_group *first = NULL;
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *g = &a->groups[i];
        if (strcmp(g->label, "deba") || strcmp(g->arch, arch) || strcmp(g->dataset, dataset)) continue;
        if (g->has_baseline) return g;
        if (!first) first = g;
    }
    return first;
}

deba_status deba_report_from_analysis(const deba_analysis *a, deba_report_data *d, deba_err *e)
{
    memset(d, 0, sizeof *d);
    d->analysis = a;
    /* Table 1 */
    if (a->nthresholds) {
        for (size_t i = 0; i < a->nthresholds; i++) {
            deba_t1_row r = {.tau = a->thresholds[i].tau, .theta = a->thresholds[i].theta,
                             .lambda = a->thresholds[i].lambda};
            strcpy(r.arch, a->thresholds[i].arch);
            strcpy(r.dataset, a->thresholds[i].dataset);
            PUSH(d->t1, d->n1, r);
        }
    } else {
        for (size_t i = 0; i < a->ngroups; i++) {
            const deba_group *g = &a->groups[i];
            if (strcmp(g->label, "deba")) continue;
            const deba_run *run = a->runs[g->members[0]].run;
            deba_t1_row r = {.tau = meta_num(run, "tau"), .theta = meta_num(run, "theta"),
                             .lambda = meta_num(run, "lambda")};
            if (isnan(r.tau) && isnan(r.theta) && isnan(r.lambda)) continue;
            strcpy(r.arch, g->arch);
            strcpy(r.dataset, g->dataset);
            PUSH(d->t1, d->n1, r);
        }
    }
    /* Table 2 */
    if (a->nsummary) {
        for (size_t i = 0; i < a->nsummary; i++) {
            const deba_summary_row *s = &a->summary[i];
            deba_t2_row r = {.seeds = s->seeds, .S_mean = s->S_mean, .S_std = s->S_std, .dacc = DEBA_PD_NONE};
            strcpy(r.arch, s->arch);
            strcpy(r.dataset, s->dataset);
            snprintf(r.printed, sizeof r.printed, "%s", deba_archetype_name(s->archetype));
            r.archetype = deba_archetype_classify(r.S_mean, r.S_std);
            const deba_group *g = deba_of(a, s->arch, s->dataset);
            if (g && g->has_baseline) r.dacc = g->dacc;
            PUSH(d->t2, d->n2, r);
        }
    } else {
        for (size_t i = 0; i < a->ngroups; i++) {
            const deba_group *g = &a->groups[i];
            if (strcmp(g->label, "fixed") || g->S.n == 0) continue;
            deba_t2_row r = {.seeds = g->S.n, .S_mean = g->S.mean, .S_std = g->S.std, .dacc = DEBA_PD_NONE};
            strcpy(r.arch, g->arch);
            strcpy(r.dataset, g->dataset);
            r.archetype = deba_archetype_classify(r.S_mean, isnan(r.S_std) ? 0.0 : r.S_std);
            for (size_t j = 0; j < a->ngroups; j++)   /* the DEBA group compared with this fixed one */
                if (!strcmp(a->groups[j].label, "deba") && a->groups[j].baseline == (int)i) {
                    r.dacc = a->groups[j].dacc;
                    break;
                }
            PUSH(d->t2, d->n2, r);
        }
    }
    /* Table 3: one row per condition group */
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *g = &a->groups[i];
        if (!strcmp(g->label, "fixed")) continue;
        deba_t3_row r = {.config = g->config, .dacc = g->dacc, .speedup = g->speedup_pct};
        strcpy(r.arch, g->arch);
        strcpy(r.dataset, g->dataset);
        strcpy(r.label, g->label);
        PUSH(d->t3, d->n3, r);
    }
    /* Table 4: each DEBA group with its baseline, after it; fixed groups no DEBA group uses alone */
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *g = &a->groups[i];
        int is_fixed = !strcmp(g->label, "fixed");
        if (!is_fixed && (strcmp(g->label, "deba") || g->baseline >= 0)) continue;
        int used = 0;
        for (size_t j = 0; j < a->ngroups && is_fixed; j++) {
            const deba_group *db = &a->groups[j];
            if (strcmp(db->label, "deba") || db->baseline != (int)i) continue;
            used = 1;
            deba_t4_row r;
            t4_empty(&r, db->arch, db->dataset);
            r.config = db->config ? db->config : g->config;
            r.acc_fixed = g->final_acc;
            r.time_fixed = g->time;
            r.acc_deba = db->final_acc;
            r.time_deba = db->time;
            r.dacc = db->dacc;
            r.speedup = db->speedup_pct;
            r.speedup_x = db->speedup_x;
            r.throughput_x = db->throughput_x;
            PUSH(d->t4, d->n4, r);
        }
        if (used) continue;
        deba_t4_row r;
        t4_empty(&r, g->arch, g->dataset);
        r.config = g->config;
        if (is_fixed) { r.acc_fixed = g->final_acc; r.time_fixed = g->time; }
        else { r.acc_deba = g->final_acc; r.time_deba = g->time; }
        PUSH(d->t4, d->n4, r);
    }
    return DEBA_OK;
}

void deba_report_data_free(deba_report_data *d)
{
    if (!d) return;
    free(d->t1);
    free(d->t2);
    free(d->t3);
    free(d->t3p);
    free(d->t4);
    for (size_t i = 0; i < d->nnotes; i++) free(d->notes[i]);
    free(d->notes);
    free(d->note_cause);
    for (size_t i = 0; i < d->ncauses; i++) free(d->causes[i]);
    free(d->causes);
    memset(d, 0, sizeof *d);
}

/* ---- table building ---- */

static void fmt_g(char *buf, size_t cap, double v)
{
    if (isnan(v)) snprintf(buf, cap, "—");
    else snprintf(buf, cap, "%.4g", v);
}

/* "arch" or "arch (dataset)", with " [config]" when the group is one of several configurations. */
static deba_status row_key(char *buf, size_t cap, deba_err *e, const char *arch, const char *dataset, int show_ds,
                           const char *config)
{
    return rp_text(buf, cap, e, "%s%s%s%s%s%s%s", arch, show_ds ? " (" : "", show_ds ? dataset : "", show_ds ? ")" : "",
                   config ? " [" : "", config ? config : "", config ? "]" : "");
}

static int only_one_dataset(const deba_t3_row *r, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (strcmp(r[i].dataset, r[0].dataset)) return 0;
    return 1;
}

static int same_cfg(const char *x, const char *y)
{
    return x == y || (x && y && !strcmp(x, y));
}

static int t3_same_row(const deba_t3_row *x, const deba_t3_row *y)
{
    return !strcmp(x->arch, y->arch) && !strcmp(x->dataset, y->dataset) && same_cfg(x->config, y->config);
}

/* Conditions of Table 3 in display order. */
static size_t t3_conditions(const deba_report_data *d, const char **labels, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n3; i++) {
        size_t j;
        for (j = 0; j < n; j++)
            if (!strcmp(labels[j], d->t3[i].label)) break;
        if (j == n && n < cap) labels[n++] = d->t3[i].label;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort by (rank, name) */
        for (size_t j = i; j > 0; j--) {
            int ra = deba_condition_rank(labels[j - 1]), rb = deba_condition_rank(labels[j]);
            if (ra < rb || (ra == rb && strcmp(labels[j - 1], labels[j]) <= 0)) break;
            const char *t = labels[j];
            labels[j] = labels[j - 1];
            labels[j - 1] = t;
        }
    return n;
}

/* Degraded count, rows with a ΔAcc, and mean |ΔAcc| for one condition. From runs, an
 * architecture is degraded only when its whole 95% CI of ΔAcc lies at or below −1 point (one
 * seed gives no interval and cannot count); the paper prints means only, so there ΔAcc ≤ −1. */
static void t3_summary(const deba_report_data *d, const char *label, int *deg, int *of, double *mabs)
{
    *deg = *of = 0;
    double s = 0;
    for (size_t i = 0; i < d->n3; i++) {
        const deba_pd *x = &d->t3[i].dacc;
        if (strcmp(d->t3[i].label, label) || isnan(x->mean)) continue;
        (*of)++;
        if (d->paper ? x->mean <= -1.0 : (x->n >= 2 && !isnan(x->hi) && x->hi <= -1.0)) (*deg)++;
        s += fabs(x->mean);
    }
    *mabs = *of ? s / *of : NAN;
}

static const deba_t3_printed *t3_printed(const deba_report_data *d, const char *label)
{
    for (size_t i = 0; i < d->n3p; i++)
        if (!strcmp(d->t3p[i].label, label)) return &d->t3p[i];
    return NULL;
}

#define ADD(t, ...)                                                             \
    do {                                                                        \
        const char *row_[] = {__VA_ARGS__};                                     \
        if (rp_add_row((t), row_) < 0) return deba_err_set(e, DEBA_E_NOMEM, "out of memory"); \
    } while (0)

/* ---- readings: a growing sentence buffer that fails instead of cutting ---- */

typedef struct {
    char *buf;
    size_t cap, len;
} sbuf;

static deba_status sb_add(sbuf *b, deba_err *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static deba_status sb_add(sbuf *b, deba_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len)
        return deba_err_set(e, DEBA_E_RUNTIME, "internal: reading longer than its %zu-byte field: %.80s...", b->cap,
                            b->buf);
    b->len += (size_t)n;
    return DEBA_OK;
}

/* "a/d, b/d and 3 more" of the rows whose flag is set: names up to four, then a count. */
static deba_status sb_names(sbuf *b, deba_err *e, const char *const *names, const int *flag, size_t n)
{
    size_t total = 0, shown = 0;
    for (size_t i = 0; i < n; i++) total += flag[i] != 0;
    deba_status s = DEBA_OK;
    for (size_t i = 0; i < n && !s && shown < 4; i++) {
        if (!flag[i]) continue;
        const char *sep = shown == 0 ? "" : (shown + 1 == total ? " and " : ", ");
        s = sb_add(b, e, "%s%s", sep, names[i]);
        shown++;
    }
    if (!s && total > shown) s = sb_add(b, e, " and %zu more", total - shown);
    return s;
}

static deba_status build_t1(const deba_report_data *d, rp_table *t, deba_err *e)
{
    rp_table_init(t, "table1", "Table 1: Calibrated thresholds τ, θ, λ per architecture and dataset", 5);
    rp_set_head(t, 0, "Architecture", 'l');
    rp_set_head(t, 1, "Dataset", 'l');
    rp_set_head(t, 2, "τ", 'r');
    rp_set_head(t, 3, "θ", 'r');
    rp_set_head(t, 4, "λ", 'r');
    size_t lo = 0, hi = 0;
    for (size_t i = 0; i < d->n1; i++) {
        char a[32], b[32], c[32];
        fmt_g(a, sizeof a, d->t1[i].tau);
        fmt_g(b, sizeof b, d->t1[i].theta);
        fmt_g(c, sizeof c, d->t1[i].lambda);
        ADD(t, d->t1[i].arch, d->t1[i].dataset, a, b, c);
        if (d->t1[i].tau < d->t1[lo].tau) lo = i;
        if (d->t1[i].tau > d->t1[hi].tau) hi = i;
    }
    if (d->n1 == 0)
        return rp_text(t->reading, sizeof t->reading, e, "No thresholds found (no thresholds.csv and no DEBA run with "
                       "tau/theta/lambda in its meta.csv).");
    const deba_t1_row *r = &d->t1[0];
    if (d->n1 == 1)
        return rp_text(t->reading, sizeof t->reading, e, "One row: τ = %.4g, θ = %.4g, λ = %.4g for %s/%s; no other "
                       "architecture to compare with.", r->tau, r->theta, r->lambda, r->arch, r->dataset);
    if (isnan(d->t1[lo].tau) || d->t1[lo].tau == d->t1[hi].tau)
        return rp_text(t->reading, sizeof t->reading, e, "τ is %.4g in all %zu rows.", d->t1[hi].tau, d->n1);
    return rp_text(t->reading, sizeof t->reading, e, "τ spans %.4g (%s/%s) to %.4g (%s/%s), a %.3g× range over %zu rows.",
                   d->t1[lo].tau, d->t1[lo].arch, d->t1[lo].dataset, d->t1[hi].tau, d->t1[hi].arch,
                   d->t1[hi].dataset, d->t1[lo].tau > 0 ? d->t1[hi].tau / d->t1[lo].tau : NAN, d->n1);
}

static deba_status build_t2(const deba_report_data *d, rp_table *t, deba_err *e)
{
    rp_table_init(t, "table2", "Table 2: Stability profile S̄, σ_S, archetype and ΔAcc of DEBA", 7);
    rp_set_head(t, 0, "Architecture", 'l');
    rp_set_head(t, 1, "Dataset", 'l');
    rp_set_head(t, 2, "Seeds", 'r');
    rp_set_head(t, 3, "S̄", 'r');
    rp_set_head(t, 4, "σ_S", 'r');
    rp_set_head(t, 5, "Archetype", 'l');
    rp_set_head(t, 6, d->paper ? "ΔAcc" : "ΔAcc [95% CI]", 'r');
    size_t lo = 0, hi = 0;
    int disagree = 0;
    double smax = 0;
    for (size_t i = 0; i < d->n2; i++) {
        const deba_t2_row *r = &d->t2[i];
        char seeds[16], s[RP_NUM_MAX], sd[RP_NUM_MAX], cls[160], da[3 * RP_NUM_MAX + 8];
        deba_status st;
        if (r->seeds > 0) snprintf(seeds, sizeof seeds, "%d", r->seeds);
        else snprintf(seeds, sizeof seeds, "—");
        if ((st = rp_num(s, sizeof s, e, r->S_mean, 3, 0)) || (st = rp_num(sd, sizeof sd, e, r->S_std, 3, 0)))
            return st;
        if (rp_fmt_pd(da, sizeof da, r->dacc, 2, 1)) return deba_err_set(e, DEBA_E_RUNTIME, "internal: Table 2 cell too long");
        const char *name = deba_archetype_name(r->archetype);
        if (r->printed[0] && strcasecmp(r->printed, name)) {
            if ((st = rp_text(cls, sizeof cls, e, "%s (printed: %s)", name, r->printed))) return st;
            disagree++;
        } else {
            snprintf(cls, sizeof cls, "%s", name);   /* an archetype name: short */
        }
        ADD(t, r->arch, r->dataset, seeds, s, sd, cls, da);
        if (r->S_mean < d->t2[lo].S_mean) lo = i;
        if (r->S_mean > d->t2[hi].S_mean) hi = i;
        if (!isnan(r->S_std) && r->S_std > smax) smax = r->S_std;
    }
    if (d->n2 == 0)
        return rp_text(t->reading, sizeof t->reading, e, "No stability profile found (no profile_summary.csv and no "
                       "completed fixed runs).");
    char shi[RP_NUM_MAX], slo[RP_NUM_MAX], ssd[RP_NUM_MAX], ph[256];
    deba_status st;
    sbuf b = {t->reading, sizeof t->reading, 0};
    if ((st = rp_num(shi, sizeof shi, e, d->t2[hi].S_mean, 3, 0)) || (st = rp_num(slo, sizeof slo, e, d->t2[lo].S_mean, 3, 0)))
        return st;
    if (d->n2 == 1) {
        const deba_t2_row *r = &d->t2[0];
        if ((st = rp_num(ssd, sizeof ssd, e, r->S_std, 3, 0)) ||
            (st = sb_add(&b, e, "One profile: %s/%s, S̄ = %s (σ_S = %s, %d seed%s): %s.", r->arch, r->dataset, shi, ssd,
                         r->seeds, r->seeds == 1 ? "" : "s", deba_archetype_name(r->archetype))))
            return st;
        if (!isnan(r->dacc.mean) && ((st = rp_pd_phrase(ph, sizeof ph, e, r->dacc, 2, "points")) ||
                                     (st = sb_add(&b, e, " DEBA's ΔAcc: %s.", ph))))
            return st;
    } else {
        if (d->t2[hi].S_mean - d->t2[lo].S_mean <= smax) {
            if ((st = rp_num(ssd, sizeof ssd, e, smax, 3, 0)) ||
                (st = sb_add(&b, e, "S̄ ranges from %s to %s over %zu rows, no more than one seed standard deviation "
                             "(σ_S up to %s): no ordering by stability.", slo, shi, d->n2, ssd)))
                return st;
        } else if ((st = sb_add(&b, e, "Most stable: %s (S̄ = %s, %s); least: %s (S̄ = %s, %s).", d->t2[hi].arch, shi,
                                deba_archetype_name(d->t2[hi].archetype), d->t2[lo].arch, slo,
                                deba_archetype_name(d->t2[lo].archetype)))) {
            return st;
        }
        int counts[DEBA_ARCHETYPE_COUNT] = {0};
        for (size_t i = 0; i < d->n2; i++) counts[d->t2[i].archetype]++;
        if ((st = sb_add(&b, e, " Archetypes:"))) return st;
        for (int k = 0, any = 0; k < DEBA_ARCHETYPE_COUNT; k++)
            if (counts[k] && (st = sb_add(&b, e, "%s %d %s", any++ ? "," : "", counts[k], deba_archetype_name(k))))
                return st;
        if ((st = sb_add(&b, e, "."))) return st;
    }
    if (disagree) return sb_add(&b, e, " %d printed archetype(s) disagree with (S̄, σ_S).", disagree);
    if (d->paper) return sb_add(&b, e, " Every printed archetype follows from its (S̄, σ_S).");
    return DEBA_OK;
}

/* Counts of one comparison over rows: measurably above 0, below 0, interval spanning 0, one
 * seed (no interval). */
typedef struct {
    int up, down, none, one;
} tally;

static void tally_add(tally *t, deba_pd d)
{
    if (isnan(d.mean)) return;
    if (d.n < 2 || isnan(d.lo)) t->one++;
    else if (rp_pd_sign(d) > 0) t->up++;
    else if (rp_pd_sign(d) < 0) t->down++;
    else t->none++;
}

static deba_status sb_tally(sbuf *b, deba_err *e, const char *what, const char *up, const char *down, tally t)
{
    deba_status s = sb_add(b, e, "%s %s on %d, %s on %d, no measurable difference on %d", what, up, t.up, down, t.down,
                           t.none);
    if (!s && t.one) s = sb_add(b, e, ", one seed (no uncertainty estimate) on %d", t.one);
    return s;
}

static deba_status t3_reading(const deba_report_data *d, const char **labels, size_t nc, rp_table *t, deba_err *e)
{
    sbuf b = {t->reading, sizeof t->reading, 0};
    deba_status st = DEBA_OK;
    if (nc == 0) return sb_add(&b, e, "No DEBA or ablation runs to compare.");
    if (d->paper) {
        /* the paper prints means only: the printed numbers are read as they are */
        int worst = -1, wdeg = -1;
        double wabs = -1;
        for (size_t c = 0; c < nc; c++) {
            int deg, of;
            double mabs;
            t3_summary(d, labels[c], &deg, &of, &mabs);
            if (of && (deg > wdeg || (deg == wdeg && mabs > wabs))) {
                worst = (int)c;
                wdeg = deg;
                wabs = mabs;
            }
        }
        char ma[RP_NUM_MAX];
        if (worst < 0) return sb_add(&b, e, "No condition has a ΔAcc to compare.");
        if ((st = rp_num(ma, sizeof ma, e, wabs, 2, 0))) return st;
        if (wdeg == 0)
            st = sb_add(&b, e, "No condition costs any architecture ≥1 point; the largest mean |ΔAcc| is %s's (%s).",
                        deba_condition_name(labels[worst]), ma);
        else
            st = sb_add(&b, e, "Most harmful condition: %s (%d architectures lose ≥1 point, mean |ΔAcc| %s).",
                        deba_condition_name(labels[worst]), wdeg, ma);
        return st ? st : sb_add(&b, e, " The paper prints means only (no per-seed values), so no intervals.");
    }
    for (size_t c = 0; c < nc && !st; c++) {
        const char *name = deba_condition_name(labels[c]);
        size_t nrows = 0, last = 0;
        tally ta = {0}, ts = {0};
        for (size_t i = 0; i < d->n3; i++) {
            if (strcmp(d->t3[i].label, labels[c])) continue;
            nrows++;
            last = i;
            tally_add(&ta, d->t3[i].dacc);
            tally_add(&ts, d->t3[i].speedup);
        }
        if (c) st = sb_add(&b, e, " ");
        if (st) break;
        if (nrows == 1) {
            const deba_t3_row *r = &d->t3[last];
            char pa[256], ps[256];
            if ((st = rp_pd_phrase(pa, sizeof pa, e, r->dacc, 2, "points")) ||
                (st = rp_pd_phrase(ps, sizeof ps, e, r->speedup, 1, "%")))
                break;
            st = sb_add(&b, e, "%s on %s/%s%s%s%s: ΔAcc %s; speedup %s.", name, r->arch, r->dataset,
                        r->config ? " [" : "", r->config ? r->config : "", r->config ? "]" : "", pa, ps);
            continue;
        }
        if ((st = sb_add(&b, e, "%s over %zu architectures: ", name, nrows)) ||
            (st = sb_tally(&b, e, "ΔAcc", "higher", "lower", ta)) || (st = sb_add(&b, e, "; ")) ||
            (st = sb_tally(&b, e, "training time", "shorter", "longer", ts)) || (st = sb_add(&b, e, ".")))
            break;
    }
    if (!st)
        st = sb_add(&b, e, " Cells: mean [95%% CI] of per-seed paired differences; Degraded counts an architecture "
                    "only when its whole CI of ΔAcc lies at or below −1 point.");
    return st;
}

static deba_status build_t3(const deba_report_data *d, rp_table *t, deba_err *e)
{
    const char *labels[(RP_MAXCOLS - 1) / 2];
    size_t nc = t3_conditions(d, labels, (RP_MAXCOLS - 1) / 2);
    rp_table_init(t, "table3", d->paper ? "Table 3: Ablations, ΔAcc (points) and speedup (%) against fixed batch"
                                        : "Table 3: Ablations, ΔAcc (points) and speedup (%) against fixed batch, "
                                          "mean [95% CI] over paired seeds", 1 + 2 * (int)nc);
    rp_set_head(t, 0, "Architecture", 'l');
    t->ngroups = 1 + (int)nc;
    t->span[0] = 1;
    t->group[0][0] = '\0';
    for (size_t c = 0; c < nc; c++) {
        char h[sizeof t->head[0]];
        const char *name = deba_condition_name(labels[c]);
        deba_status st;
        if ((st = rp_text(h, sizeof h, e, "%s ΔAcc", name))) return st;
        rp_set_head(t, 1 + 2 * (int)c, h, 'r');
        if ((st = rp_text(h, sizeof h, e, "%s Speedup (%%)", name))) return st;
        rp_set_head(t, 2 + 2 * (int)c, h, 'r');
        if ((st = rp_text(t->group[1 + c], sizeof t->group[1 + c], e, "%s", name))) return st;
        t->span[1 + c] = 2;
    }
    /* Rows: one per (arch, dataset, configuration) in first-seen order */
    int one = only_one_dataset(d->t3, d->n3);
    char *cells[RP_MAXCOLS];
    char store[RP_MAXCOLS][600];
    for (int c = 0; c < RP_MAXCOLS; c++) cells[c] = store[c];
    for (size_t i = 0; i < d->n3; i++) {
        size_t j;
        for (j = 0; j < i; j++)
            if (t3_same_row(&d->t3[j], &d->t3[i])) break;
        if (j < i) continue;
        deba_status st = row_key(store[0], sizeof store[0], e, d->t3[i].arch, d->t3[i].dataset, !one, d->t3[i].config);
        if (st) return st;
        for (size_t c = 0; c < nc; c++) {
            snprintf(store[1 + 2 * c], sizeof store[0], "—");
            snprintf(store[2 + 2 * c], sizeof store[0], "—");
            for (size_t k = i; k < d->n3; k++) {
                const deba_t3_row *r = &d->t3[k];
                if (!t3_same_row(r, &d->t3[i]) || strcmp(r->label, labels[c])) continue;
                if (rp_fmt_pd(store[1 + 2 * c], sizeof store[0], r->dacc, 2, 1) ||
                    rp_fmt_pd(store[2 + 2 * c], sizeof store[0], r->speedup, fabs(r->speedup.mean) < 0.095 ? 2 : 1, 0))
                    return deba_err_set(e, DEBA_E_RUNTIME, "internal: Table 3 cell too long");
            }
        }
        if (rp_add_row(t, (const char *const *)cells) < 0) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    /* summary rows, with the printed value beside a disagreeing one in paper mode */
    for (int pass = 0; pass < 2; pass++) {
        snprintf(store[0], sizeof store[0], pass == 0 ? "Degraded (≥1pt)" : "Mean |ΔAcc|");
        for (size_t c = 0; c < nc; c++) {
            int deg, of;
            double mabs;
            t3_summary(d, labels[c], &deg, &of, &mabs);
            const deba_t3_printed *p = t3_printed(d, labels[c]);
            if (pass == 0) {
                if (p && (p->degraded != deg || p->of != of))
                    snprintf(store[1 + 2 * c], sizeof store[0], "%d/%d (printed %d/%d)", deg, of, p->degraded, p->of);
                else
                    snprintf(store[1 + 2 * c], sizeof store[0], "%d/%d", deg, of);
            } else {
                char v[RP_NUM_MAX], pv[RP_NUM_MAX];
                deba_status st = rp_num(v, sizeof v, e, mabs, 2, 0);
                if (!st && p) st = rp_num(pv, sizeof pv, e, p->mean_abs_dacc, 2, 0);
                if (st) return st;
                if (p && !isnan(p->mean_abs_dacc) && fabs(p->mean_abs_dacc - mabs) > 0.0051)
                    snprintf(store[1 + 2 * c], sizeof store[0], "%s (printed %s)", v, pv);   /* two numbers: fits */
                else
                    snprintf(store[1 + 2 * c], sizeof store[0], "%s", v);
            }
            snprintf(store[2 + 2 * c], sizeof store[0], "—");
        }
        long r = rp_add_row(t, (const char *const *)cells);
        if (r < 0) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        if (pass == 0) t->rule_before[r] = 1;
    }
    return t3_reading(d, labels, nc, t, e);
}

static deba_status t4_reading(const deba_report_data *d, rp_table *t, deba_err *e)
{
    sbuf b = {t->reading, sizeof t->reading, 0};
    deba_status st = DEBA_OK;
    size_t n = 0, last = 0;
    for (size_t i = 0; i < d->n4; i++)
        if (!isnan(d->t4[i].dacc.mean) || !isnan(d->t4[i].speedup.mean)) {
            n++;
            last = i;
        }
    if (n == 0) return sb_add(&b, e, "No fixed/DEBA pair to compare.");
    if (d->paper) {
        /* printed means, no per-seed values */
        const deba_t4_row *fast = NULL, *gain = NULL;
        int ngain = 0, nd = 0;
        for (size_t i = 0; i < d->n4; i++) {
            const deba_t4_row *r = &d->t4[i];
            if (!isnan(r->speedup.mean) && (!fast || r->speedup.mean > fast->speedup.mean)) fast = r;
            if (!isnan(r->dacc.mean)) {
                nd++;
                ngain += r->dacc.mean > 0;
                if (!gain || r->dacc.mean > gain->dacc.mean) gain = r;
            }
        }
        char n1[RP_NUM_MAX], n2[RP_NUM_MAX];
        if (fast && n > 1 && ((st = rp_num(n1, sizeof n1, e, fast->speedup.mean, 1, 1)) ||
                              (st = rp_num(n2, sizeof n2, e, 100.0 / (100.0 - fast->speedup.mean), 2, 0)) ||
                              (st = sb_add(&b, e, "Largest printed speedup: %s/%s (%s%%, %s×). ", fast->arch,
                                           fast->dataset, n1, n2))))
            return st;
        if (gain && n > 1 && ((st = rp_num(n1, sizeof n1, e, gain->dacc.mean, 2, 1)) ||
                              (st = sb_add(&b, e, "Largest printed ΔAcc: %s/%s (%s points); %d of %d pairs print a "
                                           "gain. ", gain->arch, gain->dataset, n1, ngain, nd))))
            return st;
        return sb_add(&b, e, "The paper prints means only (no per-seed values), so no intervals.");
    }
    char ps[256], pa[256];
    if (n == 1) {
        const deba_t4_row *r = &d->t4[last];
        if ((st = rp_pd_phrase(ps, sizeof ps, e, r->speedup, 1, "%")) ||
            (st = rp_pd_phrase(pa, sizeof pa, e, r->dacc, 2, "points")))
            return st;
        return sb_add(&b, e, "%s/%s%s%s%s: speedup %s; ΔAcc %s.", r->arch, r->dataset, r->config ? " [" : "",
                      r->config ? r->config : "", r->config ? "]" : "", ps, pa);
    }
    /* several pairs: name those whose interval excludes 0, count the rest */
    const char **names = calloc(d->n4 + 1, sizeof *names);
    char (*keys)[160] = calloc(d->n4 + 1, sizeof *keys);
    int *flag = calloc(d->n4 + 1, sizeof *flag);
    if (!names || !keys || !flag) {
        free(names);
        free(keys);
        free(flag);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    tally ta = {0}, ts = {0};
    for (size_t i = 0; i < d->n4 && !st; i++) {
        st = rp_text(keys[i], sizeof keys[i], e, "%s/%s%s", d->t4[i].arch, d->t4[i].dataset, d->t4[i].config ? " [*]" : "");
        names[i] = keys[i];
        tally_add(&ta, d->t4[i].dacc);
        tally_add(&ts, d->t4[i].speedup);
    }
    static const char *const what[2] = {"speedup", "ΔAcc"};
    static const char *const dir[2][2] = {{"measurably faster", "measurably slower"},
                                          {"measurably more accurate", "measurably less accurate"}};
    if (!st) st = sb_add(&b, e, "Over %zu fixed/DEBA pairs: ", n);
    for (int w = 0; w < 2 && !st; w++) {
        tally tt = w ? ta : ts;
        for (int sg = 0; sg < 2 && !st; sg++) {
            int want = sg ? -1 : 1, cnt = sg ? tt.down : tt.up;
            for (size_t i = 0; i < d->n4; i++) flag[i] = rp_pd_sign(w ? d->t4[i].dacc : d->t4[i].speedup) == want;
            if (!(st = sb_add(&b, e, "%s%s on ", w || sg ? "; " : "DEBA is ", dir[w][sg])))
                st = cnt ? sb_names(&b, e, names, flag, d->n4) : sb_add(&b, e, "none");
        }
        if (!st) st = sb_add(&b, e, "; no measurable %s difference on %d", what[w], tt.none);
        if (!st && tt.one) st = sb_add(&b, e, ", one seed (no uncertainty estimate) on %d", tt.one);
    }
    if (!st) st = sb_add(&b, e, " (95%% CI of per-seed paired differences).");
    free(names);
    free(keys);
    free(flag);
    return st;
}

static deba_status build_t4(const deba_report_data *d, rp_table *t, deba_err *e)
{
    rp_table_init(t, "table4", d->paper ? "Table 4: Fixed batch vs DEBA per architecture and dataset"
                                        : "Table 4: Fixed batch vs DEBA per architecture and dataset (accuracy and time: "
                                          "mean ± std over seeds; ΔAcc and speedup: mean [95% CI] over paired seeds)", 10);
    const char *h[10] = {"Architecture", "Dataset", "Acc fixed (%)", "Acc DEBA (%)", "ΔAcc", "Time fixed (s)",
                         "Time DEBA (s)", "Speedup (%)", "Speedup (×)", "Throughput (×)"};
    for (int c = 0; c < 10; c++) rp_set_head(t, c, h[c], c < 2 ? 'l' : 'r');
    for (size_t i = 0; i < d->n4; i++) {
        const deba_t4_row *r = &d->t4[i];
        char c[8][3 * RP_NUM_MAX + 8], x[2][RP_NUM_MAX], key[600];
        if (rp_fmt_ms(c[0], sizeof c[0], r->acc_fixed, 2, 0) || rp_fmt_ms(c[1], sizeof c[1], r->acc_deba, 2, 0) ||
            rp_fmt_pd(c[2], sizeof c[2], r->dacc, 2, 1) || rp_fmt_ms(c[3], sizeof c[3], r->time_fixed, 1, 0) ||
            rp_fmt_ms(c[4], sizeof c[4], r->time_deba, 1, 0) || rp_fmt_pd(c[5], sizeof c[5], r->speedup, 1, 0) ||
            rp_fmt(x[0], sizeof x[0], r->speedup_x, 2, 0) || rp_fmt(x[1], sizeof x[1], r->throughput_x, 2, 0))
            return deba_err_set(e, DEBA_E_RUNTIME, "internal: Table 4 cell too long");
        for (int k = 0; k < 2; k++) {   /* a ratio gets its ×, "—" none */
            deba_status st = rp_text(c[6 + k], sizeof c[6 + k], e, "%s%s", x[k], strcmp(x[k], "—") ? "×" : "");
            if (st) return st;
        }
        deba_status st = row_key(key, sizeof key, e, r->arch, r->dataset, 0, r->config);
        if (st) return st;
        ADD(t, key, r->dataset, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
    }
    return t4_reading(d, t, e);
}

deba_status rp_build_tables(const deba_report_data *d, rp_table tables[4], deba_err *e)
{
    memset(tables, 0, 4 * sizeof *tables);
    deba_status s;
    if ((s = build_t1(d, &tables[0], e)) || (s = build_t2(d, &tables[1], e)) || (s = build_t3(d, &tables[2], e)) ||
        (s = build_t4(d, &tables[3], e))) {
        for (int i = 0; i < 4; i++) rp_table_free(&tables[i]);
        return s;
    }
    return DEBA_OK;
}

/* ---- CSV forms ---- */

static void num(FILE *f, double v)
{
    fputc(',', f);
    if (isfinite(v)) deba_csv_double(f, v);
}

static void w_t1(FILE *f, const void *ctx)
{
    const deba_report_data *d = ctx;
    fputs("arch,dataset,tau,theta,lambda\n", f);
    for (size_t i = 0; i < d->n1; i++) {
        deba_csv_field(f, d->t1[i].arch);
        fputc(',', f);
        deba_csv_field(f, d->t1[i].dataset);
        num(f, d->t1[i].tau);
        num(f, d->t1[i].theta);
        num(f, d->t1[i].lambda);
        fputc('\n', f);
    }
}

static void w_t2(FILE *f, const void *ctx)
{
    const deba_report_data *d = ctx;
    fputs("arch,dataset,seeds,S_mean,S_std,archetype,dacc,printed_archetype\n", f);
    for (size_t i = 0; i < d->n2; i++) {
        const deba_t2_row *r = &d->t2[i];
        deba_csv_field(f, r->arch);
        fputc(',', f);
        deba_csv_field(f, r->dataset);
        fprintf(f, ",%d", r->seeds);
        num(f, r->S_mean);
        num(f, r->S_std);
        fputc(',', f);
        deba_csv_field(f, deba_archetype_name(r->archetype));
        num(f, r->dacc.mean);
        fputc(',', f);
        deba_csv_field(f, r->printed);
        fputc('\n', f);
    }
}

static void w_t3(FILE *f, const void *ctx)
{
    const deba_report_data *d = ctx;
    /* the CI and configuration columns follow the original ones, which keep their meaning */
    fputs("arch,dataset,label,condition,dacc,dacc_std,speedup_pct,speedup_pct_std,seeds,"
          "dacc_ci_lo,dacc_ci_hi,speedup_pct_ci_lo,speedup_pct_ci_hi,config\n", f);
    for (size_t i = 0; i < d->n3; i++) {
        const deba_t3_row *r = &d->t3[i];
        deba_csv_field(f, r->arch);
        fputc(',', f);
        deba_csv_field(f, r->dataset);
        fputc(',', f);
        deba_csv_field(f, r->label);
        fputc(',', f);
        deba_csv_field(f, deba_condition_name(r->label));
        num(f, r->dacc.mean);
        num(f, r->dacc.std);
        num(f, r->speedup.mean);
        num(f, r->speedup.std);
        fprintf(f, ",%d", r->dacc.n);
        num(f, r->dacc.lo);
        num(f, r->dacc.hi);
        num(f, r->speedup.lo);
        num(f, r->speedup.hi);
        fputc(',', f);
        if (r->config) deba_csv_field(f, r->config);
        fputc('\n', f);
    }
}

static void w_t3s(FILE *f, const void *ctx)
{
    const deba_report_data *d = ctx;
    const char *labels[64];
    size_t nc = t3_conditions(d, labels, 64);
    fputs("label,condition,degraded,of,mean_abs_dacc,printed_degraded,printed_of,printed_mean_abs_dacc\n", f);
    for (size_t c = 0; c < nc; c++) {
        int deg, of;
        double m;
        t3_summary(d, labels[c], &deg, &of, &m);
        deba_csv_field(f, labels[c]);
        fputc(',', f);
        deba_csv_field(f, deba_condition_name(labels[c]));
        fprintf(f, ",%d,%d", deg, of);
        num(f, m);
        const deba_t3_printed *p = t3_printed(d, labels[c]);
        if (p) fprintf(f, ",%d,%d", p->degraded, p->of);
        else fputs(",,", f);
        num(f, p ? p->mean_abs_dacc : NAN);
        fputc('\n', f);
    }
}

static void ms(FILE *f, deba_ms m)
{
    num(f, m.mean);
    num(f, m.std);
}

static void pd(FILE *f, deba_pd m)
{
    num(f, m.mean);
    num(f, m.std);
}

static void w_t4(FILE *f, const void *ctx)
{
    const deba_report_data *d = ctx;
    fputs("arch,dataset,acc_fixed,acc_fixed_std,acc_deba,acc_deba_std,dacc,dacc_std,time_fixed_s,"
          "time_fixed_std,time_deba_s,time_deba_std,speedup_pct,speedup_pct_std,speedup_x,throughput_x,"
          "seeds_fixed,seeds_deba,dacc_ci_lo,dacc_ci_hi,speedup_pct_ci_lo,speedup_pct_ci_hi,pairs,config\n", f);
    for (size_t i = 0; i < d->n4; i++) {
        const deba_t4_row *r = &d->t4[i];
        deba_csv_field(f, r->arch);
        fputc(',', f);
        deba_csv_field(f, r->dataset);
        ms(f, r->acc_fixed);
        ms(f, r->acc_deba);
        pd(f, r->dacc);
        ms(f, r->time_fixed);
        ms(f, r->time_deba);
        pd(f, r->speedup);
        num(f, r->speedup_x);
        num(f, r->throughput_x);
        fprintf(f, ",%d,%d", r->acc_fixed.n, r->acc_deba.n);
        num(f, r->dacc.lo);
        num(f, r->dacc.hi);
        num(f, r->speedup.lo);
        num(f, r->speedup.hi);
        fprintf(f, ",%d,", r->dacc.n);
        if (r->config) deba_csv_field(f, r->config);
        fputc('\n', f);
    }
}

static void w_runs(FILE *f, const void *ctx)
{
    const deba_analysis *a = ctx;
    fputs("dir,arch,dataset,label,seed,status,included,epochs,final_test_acc,best_test_acc,train_time_s,"
          "samples_per_s,aggressiveness,convergence_stability,S\n", f);
    for (size_t i = 0; i < a->nruns; i++) {
        const deba_run_metrics *r = &a->runs[i];
        deba_csv_field(f, r->run->dir);
        fputc(',', f);
        deba_csv_field(f, r->arch);
        fputc(',', f);
        deba_csv_field(f, r->dataset);
        fputc(',', f);
        deba_csv_field(f, r->label);
        fprintf(f, ",%d,", r->seed);
        deba_csv_field(f, r->status);
        fprintf(f, ",%d,%d", r->included, r->epochs);
        num(f, r->final_acc);
        num(f, r->best_acc);
        num(f, r->train_time);
        num(f, r->throughput);
        num(f, r->aggressiveness);
        num(f, r->conv_stability);
        num(f, r->S);
        fputc('\n', f);
    }
}

deba_status rp_write_csv(const deba_report_data *d, const char *dir, deba_err *e)
{
    static const struct {
        const char *name;
        rp_writer w;
    } files[] = {{"table1.csv", w_t1}, {"table2.csv", w_t2}, {"table3.csv", w_t3},
                 {"table3_summary.csv", w_t3s}, {"table4.csv", w_t4}};
    char path[PATH_MAX];
    deba_status s;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if ((s = rp_path(path, sizeof path, e, "%s/%s", dir, files[i].name))) return s;
        if ((s = rp_write_file(path, files[i].w, d, e))) return s;
    }
    if (d->analysis) {
        if ((s = rp_path(path, sizeof path, e, "%s/runs.csv", dir))) return s;
        if ((s = rp_write_file(path, w_runs, d->analysis, e))) return s;
    }
    return DEBA_OK;
}
