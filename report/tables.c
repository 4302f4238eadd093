/* The paper's Tables 1-4 built from the report's rows (runs or paper), with a reading computed
 * from the numbers, and their CSV forms. */
#include "report/report.h"

#include <limits.h>
#include <math.h>
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
            deba_t2_row r = {.seeds = s->seeds, .S_mean = s->S_mean, .S_std = s->S_std, .dacc = NAN};
            strcpy(r.arch, s->arch);
            strcpy(r.dataset, s->dataset);
            snprintf(r.printed, sizeof r.printed, "%s", deba_archetype_name(s->archetype));
            r.archetype = deba_archetype_classify(r.S_mean, r.S_std);
            int gi = deba_analysis_find(a, s->arch, s->dataset, "deba");
            if (gi >= 0 && a->groups[gi].has_baseline) r.dacc = a->groups[gi].dacc.mean;
            PUSH(d->t2, d->n2, r);
        }
    } else {
        for (size_t i = 0; i < a->ngroups; i++) {
            const deba_group *g = &a->groups[i];
            if (strcmp(g->label, "fixed") || g->S.n == 0) continue;
            deba_t2_row r = {.seeds = g->S.n, .S_mean = g->S.mean, .S_std = g->S.std, .dacc = NAN};
            strcpy(r.arch, g->arch);
            strcpy(r.dataset, g->dataset);
            r.archetype = deba_archetype_classify(r.S_mean, isnan(r.S_std) ? 0.0 : r.S_std);
            int gi = deba_analysis_find(a, g->arch, g->dataset, "deba");
            if (gi >= 0 && a->groups[gi].has_baseline) r.dacc = a->groups[gi].dacc.mean;
            PUSH(d->t2, d->n2, r);
        }
    }
    /* Tables 3 and 4 */
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *g = &a->groups[i];
        if (!strcmp(g->label, "fixed")) continue;
        deba_t3_row r = {.dacc = g->dacc, .speedup = g->speedup_pct};
        strcpy(r.arch, g->arch);
        strcpy(r.dataset, g->dataset);
        strcpy(r.label, g->label);
        PUSH(d->t3, d->n3, r);
    }
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *g = &a->groups[i];
        int is_fixed = !strcmp(g->label, "fixed");
        if (!is_fixed && strcmp(g->label, "deba")) continue;
        /* one row per (arch, dataset): made at its fixed group, or at deba when fixed is missing */
        if (!is_fixed && g->baseline >= 0) continue;
        deba_ms none = {NAN, NAN, 0};
        deba_t4_row r;
        memset(&r, 0, sizeof r);
        r.acc_fixed = r.acc_deba = r.dacc = r.time_fixed = r.time_deba = r.speedup = none;
        r.speedup_x = r.throughput_x = NAN;
        strcpy(r.arch, g->arch);
        strcpy(r.dataset, g->dataset);
        const deba_group *f = is_fixed ? g : NULL;
        int di = deba_analysis_find(a, g->arch, g->dataset, "deba");
        const deba_group *db = di >= 0 ? &a->groups[di] : NULL;
        if (f) { r.acc_fixed = f->final_acc; r.time_fixed = f->time; }
        if (db) {
            r.acc_deba = db->final_acc;
            r.time_deba = db->time;
            if (db->has_baseline) {
                r.dacc = db->dacc;
                r.speedup = db->speedup_pct;
                r.speedup_x = db->speedup_x;
                r.throughput_x = db->throughput_x;
            }
        }
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
    memset(d, 0, sizeof *d);
}

/* ---- table building ---- */

static void fmt_g(char *buf, size_t cap, double v)
{
    if (isnan(v)) snprintf(buf, cap, "—");
    else snprintf(buf, cap, "%.4g", v);
}

static int only_one_dataset(const deba_t3_row *r, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (strcmp(r[i].dataset, r[0].dataset)) return 0;
    return 1;
}

static void t3_row_key(char *buf, size_t cap, const deba_t3_row *r, int one)
{
    if (one) snprintf(buf, cap, "%s", r->arch);
    else snprintf(buf, cap, "%s (%s)", r->arch, r->dataset);
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

/* Degraded (ΔAcc ≤ −1) count, rows with a ΔAcc, and mean |ΔAcc| for one condition. */
static void t3_summary(const deba_report_data *d, const char *label, int *deg, int *of, double *mabs)
{
    *deg = *of = 0;
    double s = 0;
    for (size_t i = 0; i < d->n3; i++) {
        if (strcmp(d->t3[i].label, label) || isnan(d->t3[i].dacc.mean)) continue;
        (*of)++;
        if (d->t3[i].dacc.mean <= -1.0) (*deg)++;
        s += fabs(d->t3[i].dacc.mean);
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

static deba_status build_t1(const deba_report_data *d, rp_table *t, deba_err *e)
{
    rp_table_init(t, "table1", "Table 1: calibrated thresholds τ, θ, λ per architecture and dataset", 5);
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
    return rp_text(t->reading, sizeof t->reading, e, "τ spans %.4g (%s/%s) to %.4g (%s/%s), a %.3g× range over %zu rows.",
                   d->t1[lo].tau, d->t1[lo].arch, d->t1[lo].dataset, d->t1[hi].tau, d->t1[hi].arch,
                   d->t1[hi].dataset, d->t1[lo].tau > 0 ? d->t1[hi].tau / d->t1[lo].tau : NAN, d->n1);
}

static deba_status build_t2(const deba_report_data *d, rp_table *t, deba_err *e)
{
    rp_table_init(t, "table2", "Table 2: stability profile S̄, σ_S, archetype and ΔAcc of DEBA", 7);
    rp_set_head(t, 0, "Architecture", 'l');
    rp_set_head(t, 1, "Dataset", 'l');
    rp_set_head(t, 2, "Seeds", 'r');
    rp_set_head(t, 3, "S̄", 'r');
    rp_set_head(t, 4, "σ_S", 'r');
    rp_set_head(t, 5, "Archetype", 'l');
    rp_set_head(t, 6, "ΔAcc", 'r');
    size_t lo = 0, hi = 0;
    int disagree = 0;
    for (size_t i = 0; i < d->n2; i++) {
        const deba_t2_row *r = &d->t2[i];
        char seeds[16], s[RP_NUM_MAX], sd[RP_NUM_MAX], cls[160], da[RP_NUM_MAX];
        deba_status st;
        if (r->seeds > 0) snprintf(seeds, sizeof seeds, "%d", r->seeds);
        else snprintf(seeds, sizeof seeds, "—");
        if ((st = rp_num(s, sizeof s, e, r->S_mean, 3, 0)) || (st = rp_num(sd, sizeof sd, e, r->S_std, 3, 0)) ||
            (st = rp_num(da, sizeof da, e, r->dacc, 2, 1)))
            return st;
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
    }
    if (d->n2 == 0)
        return rp_text(t->reading, sizeof t->reading, e, "No stability profile found (no profile_summary.csv and no "
                       "completed fixed runs).");
    int counts[DEBA_ARCHETYPE_COUNT] = {0};
    for (size_t i = 0; i < d->n2; i++) counts[d->t2[i].archetype]++;
    char mix[256] = "", shi[RP_NUM_MAX], slo[RP_NUM_MAX];
    deba_status st = DEBA_OK;
    for (int k = 0; k < DEBA_ARCHETYPE_COUNT && !st; k++)
        if (counts[k]) {
            size_t l = strlen(mix);
            st = rp_text(mix + l, sizeof mix - l, e, "%s%d %s", l ? ", " : "", counts[k], deba_archetype_name(k));
        }
    char tail[160] = "";
    if (disagree) snprintf(tail, sizeof tail, " %d printed archetype(s) disagree with (S̄, σ_S).", disagree);
    else if (d->paper) snprintf(tail, sizeof tail, " Every printed archetype follows from its (S̄, σ_S).");
    if (st || (st = rp_num(shi, sizeof shi, e, d->t2[hi].S_mean, 3, 0)) ||
        (st = rp_num(slo, sizeof slo, e, d->t2[lo].S_mean, 3, 0)))
        return st;
    return rp_text(t->reading, sizeof t->reading, e, "Most stable: %s (S̄ = %s, %s); least: %s (S̄ = %s, %s); %s.%s",
                   d->t2[hi].arch, shi, deba_archetype_name(d->t2[hi].archetype), d->t2[lo].arch, slo,
                   deba_archetype_name(d->t2[lo].archetype), mix, tail);
}

static deba_status build_t3(const deba_report_data *d, rp_table *t, deba_err *e)
{
    const char *labels[(RP_MAXCOLS - 1) / 2];
    size_t nc = t3_conditions(d, labels, (RP_MAXCOLS - 1) / 2);
    rp_table_init(t, "table3", "Table 3: ablations, ΔAcc (points) and speedup (%) against fixed batch", 1 + 2 * (int)nc);
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
    /* Rows: one per (arch, dataset) in first-seen order */
    int one = only_one_dataset(d->t3, d->n3);
    char *cells[RP_MAXCOLS];
    char store[RP_MAXCOLS][160];
    for (int c = 0; c < RP_MAXCOLS; c++) cells[c] = store[c];
    for (size_t i = 0; i < d->n3; i++) {
        size_t j;
        for (j = 0; j < i; j++)
            if (!strcmp(d->t3[j].arch, d->t3[i].arch) && !strcmp(d->t3[j].dataset, d->t3[i].dataset)) break;
        if (j < i) continue;
        t3_row_key(store[0], sizeof store[0], &d->t3[i], one);
        for (size_t c = 0; c < nc; c++) {
            snprintf(store[1 + 2 * c], 160, "—");
            snprintf(store[2 + 2 * c], 160, "—");
            for (size_t k = i; k < d->n3; k++) {
                const deba_t3_row *r = &d->t3[k];
                if (strcmp(r->arch, d->t3[i].arch) || strcmp(r->dataset, d->t3[i].dataset) ||
                    strcmp(r->label, labels[c]))
                    continue;
                if (rp_fmt_ms(store[1 + 2 * c], 160, r->dacc, 2, 1) ||
                    rp_fmt_ms(store[2 + 2 * c], 160, r->speedup, fabs(r->speedup.mean) < 0.095 ? 2 : 1, 0))
                    return deba_err_set(e, DEBA_E_RUNTIME, "internal: Table 3 cell too long");
            }
        }
        if (rp_add_row(t, (const char *const *)cells) < 0) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    /* summary rows, with the printed value beside a disagreeing one in paper mode */
    int worst = -1, wdeg = -1;
    double wabs = -1;
    for (int pass = 0; pass < 2; pass++) {
        snprintf(store[0], 160, pass == 0 ? "Degraded (≥1pt)" : "Mean |ΔAcc|");
        for (size_t c = 0; c < nc; c++) {
            int deg, of;
            double mabs;
            t3_summary(d, labels[c], &deg, &of, &mabs);
            const deba_t3_printed *p = t3_printed(d, labels[c]);
            if (pass == 0) {
                if (p && (p->degraded != deg || p->of != of))
                    snprintf(store[1 + 2 * c], 160, "%d/%d (printed %d/%d)", deg, of, p->degraded, p->of);
                else
                    snprintf(store[1 + 2 * c], 160, "%d/%d", deg, of);
                if (of && (deg > wdeg || (deg == wdeg && mabs > wabs))) {
                    worst = (int)c;
                    wdeg = deg;
                    wabs = mabs;
                }
            } else {
                char v[RP_NUM_MAX], pv[RP_NUM_MAX];
                deba_status st = rp_num(v, sizeof v, e, mabs, 2, 0);
                if (!st && p) st = rp_num(pv, sizeof pv, e, p->mean_abs_dacc, 2, 0);
                if (st) return st;
                if (p && !isnan(p->mean_abs_dacc) && fabs(p->mean_abs_dacc - mabs) > 0.0051)
                    snprintf(store[1 + 2 * c], 160, "%s (printed %s)", v, pv);   /* two numbers: fits */
                else
                    snprintf(store[1 + 2 * c], 160, "%s", v);
            }
            snprintf(store[2 + 2 * c], 160, "—");
        }
        long r = rp_add_row(t, (const char *const *)cells);
        if (r < 0) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        if (pass == 0) t->rule_before[r] = 1;
    }
    if (nc == 0) {
        snprintf(t->reading, sizeof t->reading, "No DEBA or ablation runs to compare.");
        return DEBA_OK;
    }
    /* fastest condition/arch pair */
    const deba_t3_row *fast = NULL;
    for (size_t i = 0; i < d->n3; i++)
        if (!isnan(d->t3[i].speedup.mean) && (!fast || d->t3[i].speedup.mean > fast->speedup.mean)) fast = &d->t3[i];
    int deg, of;
    double mabs;
    t3_summary(d, labels[worst < 0 ? 0 : worst], &deg, &of, &mabs);
    char fs[256] = "", sp[RP_NUM_MAX], ma[RP_NUM_MAX];
    deba_status st = rp_num(ma, sizeof ma, e, mabs, 2, 0);
    if (!st && fast && !(st = rp_num(sp, sizeof sp, e, fast->speedup.mean, 1, 1)))
        st = rp_text(fs, sizeof fs, e, " Fastest: %s on %s (%s%%).", deba_condition_name(fast->label), fast->arch, sp);
    if (st) return st;
    if (worst >= 0 && wdeg == 0)
        return rp_text(t->reading, sizeof t->reading, e, "No condition costs any architecture ≥1 point; the largest mean "
                       "|ΔAcc| is %s's (%s).%s", deba_condition_name(labels[worst]), ma, fs);
    if (worst >= 0)
        return rp_text(t->reading, sizeof t->reading, e, "Most harmful condition: %s (%d/%d architectures lose ≥1 point, "
                       "mean |ΔAcc| %s).%s", deba_condition_name(labels[worst]), deg, of, ma, fs);
    return rp_text(t->reading, sizeof t->reading, e, "No condition has a baseline to compare with.%s", fs);
}

static deba_status build_t4(const deba_report_data *d, rp_table *t, deba_err *e)
{
    rp_table_init(t, "table4", "Table 4: fixed batch vs DEBA per architecture and dataset (mean ± std over seeds)", 10);
    const char *h[10] = {"Architecture", "Dataset", "Acc fixed (%)", "Acc DEBA (%)", "ΔAcc", "Time fixed (s)",
                         "Time DEBA (s)", "Speedup (%)", "Speedup (×)", "Throughput (×)"};
    for (int c = 0; c < 10; c++) rp_set_head(t, c, h[c], c < 2 ? 'l' : 'r');
    const deba_t4_row *fast = NULL, *gain = NULL;
    int ngain = 0, nd = 0;
    for (size_t i = 0; i < d->n4; i++) {
        const deba_t4_row *r = &d->t4[i];
        char c[8][96], x[2][RP_NUM_MAX];
        if (rp_fmt_ms(c[0], sizeof c[0], r->acc_fixed, 2, 0) || rp_fmt_ms(c[1], sizeof c[1], r->acc_deba, 2, 0) ||
            rp_fmt_ms(c[2], sizeof c[2], r->dacc, 2, 1) || rp_fmt_ms(c[3], sizeof c[3], r->time_fixed, 1, 0) ||
            rp_fmt_ms(c[4], sizeof c[4], r->time_deba, 1, 0) || rp_fmt_ms(c[5], sizeof c[5], r->speedup, 1, 0) ||
            rp_fmt(x[0], sizeof x[0], r->speedup_x, 2, 0) || rp_fmt(x[1], sizeof x[1], r->throughput_x, 2, 0))
            return deba_err_set(e, DEBA_E_RUNTIME, "internal: Table 4 cell too long");
        for (int k = 0; k < 2; k++) {   /* a ratio gets its ×, "—" none */
            deba_status st = rp_text(c[6 + k], sizeof c[6 + k], e, "%s%s", x[k], strcmp(x[k], "—") ? "×" : "");
            if (st) return st;
        }
        ADD(t, r->arch, r->dataset, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]);
        if (!isnan(r->speedup.mean) && (!fast || r->speedup.mean > fast->speedup.mean)) fast = r;
        if (!isnan(r->dacc.mean)) {
            nd++;
            if (r->dacc.mean > 0) ngain++;
            if (!gain || r->dacc.mean > gain->dacc.mean) gain = r;
        }
    }
    char a[256] = "", b[256] = "", n1[RP_NUM_MAX], n2[RP_NUM_MAX];
    deba_status st = DEBA_OK;
    if (fast && !(st = rp_num(n1, sizeof n1, e, fast->speedup.mean, 1, 1)) &&
        !(st = rp_num(n2, sizeof n2, e, 100.0 / (100.0 - fast->speedup.mean), 2, 0)))
        st = rp_text(a, sizeof a, e, "DEBA is fastest on %s/%s (%s%%, %s×). ", fast->arch, fast->dataset, n1, n2);
    if (!st && gain && !(st = rp_num(n1, sizeof n1, e, gain->dacc.mean, 2, 1)))
        st = rp_text(b, sizeof b, e, "Largest accuracy gain on %s/%s (%s points); %d of %d pairs gain accuracy.",
                     gain->arch, gain->dataset, n1, ngain, nd);
    if (st) return st;
    if (!fast && !gain) return rp_text(t->reading, sizeof t->reading, e, "No fixed/DEBA pair to compare.");
    return rp_text(t->reading, sizeof t->reading, e, "%s%s", a, b);
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
        num(f, r->dacc);
        fputc(',', f);
        deba_csv_field(f, r->printed);
        fputc('\n', f);
    }
}

static void w_t3(FILE *f, const void *ctx)
{
    const deba_report_data *d = ctx;
    fputs("arch,dataset,label,condition,dacc,dacc_std,speedup_pct,speedup_pct_std,seeds\n", f);
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
        fprintf(f, ",%d\n", r->dacc.n);
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

static void w_t4(FILE *f, const void *ctx)
{
    const deba_report_data *d = ctx;
    fputs("arch,dataset,acc_fixed,acc_fixed_std,acc_deba,acc_deba_std,dacc,dacc_std,time_fixed_s,"
          "time_fixed_std,time_deba_s,time_deba_std,speedup_pct,speedup_pct_std,speedup_x,throughput_x,"
          "seeds_fixed,seeds_deba\n", f);
    for (size_t i = 0; i < d->n4; i++) {
        const deba_t4_row *r = &d->t4[i];
        deba_csv_field(f, r->arch);
        fputc(',', f);
        deba_csv_field(f, r->dataset);
        ms(f, r->acc_fixed);
        ms(f, r->acc_deba);
        ms(f, r->dacc);
        ms(f, r->time_fixed);
        ms(f, r->time_deba);
        ms(f, r->speedup);
        num(f, r->speedup_x);
        num(f, r->throughput_x);
        fprintf(f, ",%d,%d\n", r->acc_fixed.n, r->acc_deba.n);
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
