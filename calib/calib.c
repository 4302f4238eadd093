/* Threshold calibration over runs (SPEC §4): pool the fixed-batch epochs t >= 2 of every seed of
 * one (arch, dataset) and take τ = P75(norm_var), θ = median(confidence), λ = P75(loss_var). */
#include "calib/calib.h"
#include "deba/stats.h"

#include <stdlib.h>
#include <string.h>

int deba_calib_usable(const deba_run *run)
{
    const char *method = deba_meta_get(&run->meta, "method");
    const char *status = deba_meta_get(&run->meta, "status");
    return method && status && strcmp(method, "fixed") == 0 && strcmp(status, "completed") == 0;
}

static int cmp_row(const void *a, const void *b)
{
    const deba_thresholds_row *x = a, *y = b;
    int c = strcmp(x->arch, y->arch);
    return c ? c : strcmp(x->dataset, y->dataset);
}

/* Checks the usable runs' names and lists each distinct (arch, dataset) once, sorted. */
static deba_status list_groups(const deba_run *runs, size_t n, deba_thresholds_row *groups, size_t *ng,
                               deba_err *e)
{
    *ng = 0;
    for (size_t i = 0; i < n; i++) {
        /* A run that does not say what it is cannot be left out quietly: it may be the very
         * fixed-batch run the user means to calibrate from. */
        static const char *const need[] = { "method", "status" };
        for (int k = 0; k < 2; k++) {
            const char *v = deba_meta_get(&runs[i].meta, need[k]);
            if (!v || !*v)
                return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: key '%s' missing or empty", runs[i].dir,
                                    need[k]);
        }
        if (!deba_calib_usable(&runs[i])) continue;
        const char *keys[2] = { "arch", "dataset" };
        const char *val[2];
        for (int k = 0; k < 2; k++) {
            val[k] = deba_meta_get(&runs[i].meta, keys[k]);
            if (!val[k] || !*val[k] || strlen(val[k]) >= DEBA_NAME_MAX)
                return deba_err_set(e, DEBA_E_INPUT, "%s/meta.csv: key '%s' missing, empty or too long",
                                    runs[i].dir, keys[k]);
        }
        size_t g = 0;
        while (g < *ng && !(strcmp(groups[g].arch, val[0]) == 0 && strcmp(groups[g].dataset, val[1]) == 0)) g++;
        if (g == *ng) {
            memset(&groups[g], 0, sizeof groups[g]);
            strcpy(groups[g].arch, val[0]);
            strcpy(groups[g].dataset, val[1]);
            (*ng)++;
        }
    }
    qsort(groups, *ng, sizeof *groups, cmp_row);
    return DEBA_OK;
}

static deba_status calibrate_group(const deba_run *runs, size_t n, deba_thresholds_row *g, double *buf,
                                   deba_err *e)
{
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) cap += runs[i].trace.n;
    double *nv = buf, *conf = buf + cap, *lv = buf + 2 * cap;
    size_t m = 0;
    int used = 0;
    for (size_t i = 0; i < n; i++) {
        const deba_run *r = &runs[i];
        if (!deba_calib_usable(r) || strcmp(deba_meta_get(&r->meta, "arch"), g->arch) != 0 ||
            strcmp(deba_meta_get(&r->meta, "dataset"), g->dataset) != 0)
            continue;
        used++;
        /* Epoch 1 has no previous epoch: its variations are 0 by definition and its confidence
         * has no window, so it would only bias the percentiles. */
        for (size_t t = 0; t < r->trace.n; t++) {
            const deba_trace_row *row = &r->trace.rows[t];
            if (row->epoch < 2) continue;
            nv[m] = row->norm_var;
            conf[m] = row->confidence;
            lv[m] = row->loss_var;
            m++;
        }
    }
    if (m == 0)
        return deba_err_set(e, DEBA_E_INPUT,
                            "%s/%s: its %d completed fixed-batch run(s) have no epoch t >= 2 to calibrate from",
                            g->arch, g->dataset, used);
    deba_thresholds th;
    deba_status st = deba_calibrate(nv, conf, lv, m, &th, e);
    if (st != DEBA_OK) return st;
    g->tau = th.tau;
    g->theta = th.theta;
    g->lambda = th.lambda;
    g->epochs_used = (int)m;
    g->runs_used = used;
    return DEBA_OK;
}

deba_status deba_calib_thresholds(const deba_run *runs, size_t n, deba_thresholds_row **rows,
                                  size_t *nrows, deba_err *e)
{
    *rows = NULL;
    *nrows = 0;
    size_t usable = 0, cap = 0;
    for (size_t i = 0; i < n; i++) {
        usable += (size_t)deba_calib_usable(&runs[i]);
        cap += runs[i].trace.n;
    }
    if (usable == 0) {
        char census[256];
        deba_calib_census(runs, n, census, sizeof census);
        return deba_err_set(e, DEBA_E_INPUT, "no completed fixed-batch runs (found %s)", census);
    }
    deba_thresholds_row *groups = calloc(usable, sizeof *groups);
    double *buf = malloc(3 * (cap ? cap : 1) * sizeof *buf);
    size_t ng = 0;
    deba_status st = groups && buf ? DEBA_OK : deba_err_set(e, DEBA_E_NOMEM, "calibration: out of memory");
    if (st == DEBA_OK) st = list_groups(runs, n, groups, &ng, e);
    for (size_t g = 0; g < ng && st == DEBA_OK; g++) st = calibrate_group(runs, n, &groups[g], buf, e);
    free(buf);
    if (st != DEBA_OK) {
        free(groups);
        return st;
    }
    *rows = groups;
    *nrows = ng;
    return DEBA_OK;
}

void deba_calib_census(const deba_run *runs, size_t n, char *buf, size_t cap)
{
    const char *label[16];
    size_t count[16], nl = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        const char *method = deba_meta_get(&runs[i].meta, "method");
        const char *status = deba_meta_get(&runs[i].meta, "status");
        const char *l = !method ? "without method"
                        : strcmp(method, "fixed") != 0 ? method
                        : !status ? "fixed without status"
                        : strcmp(status, "completed") != 0 ? status : "usable";
        size_t j = 0;
        while (j < nl && strcmp(label[j], l) != 0) j++;
        if (j == nl && nl == 16) { other++; continue; }
        if (j == nl) { label[nl] = l; count[nl++] = 0; }
        count[j]++;
    }
    int len = snprintf(buf, cap, "%zu run%s%s", n, n == 1 ? "" : "s", n ? ": " : "");
    for (size_t j = 0; j < nl && len >= 0 && (size_t)len < cap; j++)
        len += snprintf(buf + len, cap - (size_t)len, "%s%zu %s", j ? ", " : "", count[j], label[j]);
    if (other && len >= 0 && (size_t)len < cap) snprintf(buf + len, cap - (size_t)len, ", %zu other", other);
}

void deba_calib_print(FILE *f, const deba_thresholds_row *rows, size_t n)
{
    int wa = (int)strlen("arch"), wd = (int)strlen("dataset");
    for (size_t i = 0; i < n; i++) {
        int a = (int)strlen(rows[i].arch), d = (int)strlen(rows[i].dataset);
        if (a > wa) wa = a;
        if (d > wd) wd = d;
    }
    fprintf(f, "%-*s  %-*s  %12s  %12s  %12s  %6s  %4s\n", wa, "arch", wd, "dataset", "tau", "theta",
            "lambda", "epochs", "runs");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%-*s  %-*s  %12.6g  %12.6g  %12.6g  %6d  %4d\n", wa, rows[i].arch, wd, rows[i].dataset,
                rows[i].tau, rows[i].theta, rows[i].lambda, rows[i].epochs_used, rows[i].runs_used);
}
