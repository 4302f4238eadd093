/* Stability profiling (SPEC §5): fixed-batch runs over seeds trained through the library (or
 * reused, or resumed), S and its terms per seed from the traces, S̄ ± σ_S, the archetype, the
 * SPEC §4 thresholds from the same traces through calib/calib.h, and the verdict: how sure the
 * archetype is (a bootstrap), whether the runs are long enough, and what to do. */
#include "profiler/profile.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "calib/calib.h"
#include "deba/deba.h"
#include "deba/escape.h"
#include "trainer/data/dataset.h"
#include "trainer/rng.h"

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
    for (size_t i = 0; p->seeds && i < p->n_seeds; i++) free(p->seeds[i].signals);
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
    double *buf = malloc(3 * (t->n ? t->n : 1) * sizeof *buf);   /* kept as s->signals */
    if (!buf) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    double *gv = buf, *nv = buf + t->n, *lv = buf + 2 * t->n;
    for (size_t i = 0; i < t->n; i++) {
        gv[i] = t->rows[i].grad_var;
        nv[i] = t->rows[i].norm_var;
        lv[i] = t->rows[i].loss_var;
    }
    deba_stability sc;
    st = deba_stability_score(gv, nv, lv, t->n, &sc, e);
    if (st) free(buf);
    else s->signals = buf;
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

/* ---- the verdict ---- */

deba_status deba_profile_bootstrap(const deba_profile *p, int B, uint64_t seed, double share[DEBA_ARCHETYPE_COUNT],
                                   deba_err *e)
{
    for (int a = 0; a < DEBA_ARCHETYPE_COUNT; a++) share[a] = 0;
    if (B < 1) return deba_err_set(e, DEBA_E_INPUT, "--bootstrap must be at least 1 (got %d)", B);
    const deba_profile_seed **used = malloc((p->n_seeds ? p->n_seeds : 1) * sizeof *used);
    size_t k = 0, longest = 0;
    for (size_t i = 0; used && i < p->n_seeds; i++)
        if (p->seeds[i].used) {
            used[k++] = &p->seeds[i];
            if ((size_t)p->seeds[i].row.epochs > longest) longest = (size_t)p->seeds[i].row.epochs;
        }
    /* one resampled trace (3 columns of longest rows; index 0, epoch 1, is never read) and one S
     * per drawn seed */
    double *buf = malloc((3 * longest + k + 1) * sizeof *buf);
    if (!used || !buf) {
        free(used);
        free(buf);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    if (k == 0) {
        free(used);
        free(buf);
        return deba_err_set(e, DEBA_E_INPUT, "%s/%s: no completed seed to bootstrap", p->arch, p->dataset);
    }
    double *gv = buf, *nv = buf + longest, *lv = buf + 2 * longest, *S = buf + 3 * longest;
    tr_rng rng;
    tr_rng_seed(&rng, seed, 0);
    long count[DEBA_ARCHETYPE_COUNT] = { 0 };
    deba_status st = DEBA_OK;
    for (int b = 0; b < B && !st; b++) {
        for (size_t j = 0; j < k && !st; j++) {
            const deba_profile_seed *sd = used[tr_rng_below(&rng, (uint32_t)k)];
            size_t n = (size_t)sd->row.epochs, m = n - 1;   /* n >= 2: seed_row checked */
            const double *sg = sd->signals, *sn = sg + n, *sl = sg + 2 * n;
            gv[0] = nv[0] = lv[0] = 0;
            for (size_t t = 1; t < n; t++) {
                size_t from = 1 + tr_rng_below(&rng, (uint32_t)m);
                gv[t] = sg[from];
                nv[t] = sn[from];
                lv[t] = sl[from];
            }
            deba_stability sc;
            st = deba_stability_score(gv, nv, lv, n, &sc, e);
            S[j] = sc.S;
        }
        if (!st) count[deba_archetype_classify(deba_mean(S, k), deba_std_sample(S, k))]++;
    }
    for (int a = 0; a < DEBA_ARCHETYPE_COUNT; a++) share[a] = (double)count[a] / B;
    free(used);
    free(buf);
    return st;
}

/* A growing single-line text; a sentence that does not fit is cut at the buffer's end and the
 * verdict says so by its length check below (DEBA_TEXT_MAX leaves room for every sentence). */
typedef struct {
    char *buf;
    size_t cap, len;
    int cut;
} text;

__attribute__((format(printf, 2, 3))) static void say(text *t, const char *fmt, ...)
{
    if (t->len + 2 >= t->cap) {
        t->cut = 1;
        return;
    }
    if (t->len) t->buf[t->len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= t->cap - t->len) {
        t->cut = 1;
        t->len = strlen(t->buf);
    } else
        t->len += (size_t)n;
}

static const char *pct(char *buf, size_t cap, double share)
{
    double v = 100 * share;
    /* a share that rounds to 100 or 0 but is not: say so, never "100%" for 99.96% */
    if (v > 99.5 && v < 100) snprintf(buf, cap, ">99%%");
    else if (v > 0 && v < 0.5) snprintf(buf, cap, "<1%%");
    else snprintf(buf, cap, "%.0f%%", v);
    return buf;
}

deba_status deba_profile_verdict(deba_profile *p, const deba_sweep_row *sweep, size_t nsweep, int B, uint64_t seed,
                                 deba_err *e)
{
    deba_summary_row *s = &p->summary;
    const deba_thresholds_row *th = &p->thresholds;
    if (seed > INT_MAX)
        return deba_err_set(e, DEBA_E_INPUT, "--bootstrap-seed must be at most %d (got %llu)", INT_MAX,
                            (unsigned long long)seed);
    deba_status st = deba_profile_bootstrap(p, B, seed, s->share, e);
    if (st) return st;
    s->bootstrap = B;
    s->bootstrap_seed = (int)seed;
    s->epochs = 0;
    for (size_t i = 0; i < p->n_rows; i++)
        if (!s->epochs || p->rows[i].epochs < s->epochs) s->epochs = p->rows[i].epochs;
    s->enough_epochs = s->epochs >= DEBA_VERDICT_MIN_EPOCHS;
    s->enough_seeds = s->seeds >= DEBA_VERDICT_MIN_SEEDS;
    s->tau = th->tau;
    s->theta = th->theta;
    s->lambda = th->lambda;
    deba_sweep_cmp cmp;
    deba_sweep_compare(sweep, nsweep, p->arch, p->dataset, &cmp);
    s->throughput_gain = cmp.gain;

    text t = { s->recommendation, sizeof s->recommendation, 0, 0 };
    s->recommendation[0] = '\0';
    char a[16], b[16];
    deba_archetype best = s->archetype;
    /* the archetype of S̄ and σ_S, how often the resamples agree, and the runner-up */
    int second = -1;
    for (int k = 0; k < DEBA_ARCHETYPE_COUNT; k++)
        if (k != (int)best && s->share[k] > 0 && (second < 0 || s->share[k] > s->share[second])) second = k;
    say(&t, "%s in %s of %d bootstrap resamples over seeds and epochs", deba_archetype_name(best),
        pct(a, sizeof a, s->share[best]), B);
    if (second >= 0) say(&t, "(%s %s).", deba_archetype_name((deba_archetype)second), pct(b, sizeof b, s->share[second]));
    else t.buf[t.len++] = '.', t.buf[t.len] = '\0';
    say(&t, "%s", deba_archetype_advice(best));
    if (!s->enough_epochs || !s->enough_seeds) {
        char what[160];
        if (!s->enough_epochs && !s->enough_seeds)
            snprintf(what, sizeof what, "the shortest run has %d epoch%s and %d seed%s completed", s->epochs,
                     s->epochs == 1 ? "" : "s", s->seeds, s->seeds == 1 ? "" : "s");
        else if (!s->enough_epochs)
            snprintf(what, sizeof what, "the shortest run has %d epoch%s", s->epochs, s->epochs == 1 ? "" : "s");
        else
            snprintf(what, sizeof what, "only %d seed%s completed", s->seeds, s->seeds == 1 ? "" : "s");
        say(&t, "Warning: %s; below %d epochs or %d seeds the paper's cut-offs (S̄ 0.26 and 0.54, σ_S 0.10, set on "
            "100-epoch runs) do not apply yet, so read the archetype as provisional and profile again with%s%s%s.",
            what, DEBA_VERDICT_MIN_EPOCHS, DEBA_VERDICT_MIN_SEEDS, s->enough_epochs ? "" : " --epochs 30 or more",
            !s->enough_epochs && !s->enough_seeds ? " and" : "", s->enough_seeds ? "" : " 3 or more --seeds");
    }
    say(&t, "Thresholds: tau = %.4g, theta = %.4g, lambda = %.4g, calibrated from %d epochs of %d run%s "
        "(deba-train --method deba --thresholds .../%s/%s/thresholds.csv); not the universal 0.25, 0.5, 0.10, which "
        "made training slower on 5 of 6 architectures in the paper's Table 3.",
        th->tau, th->theta, th->lambda, th->epochs_used, th->runs_used, th->runs_used == 1 ? "" : "s", p->arch,
        p->dataset);
    /* Paper §6.4: "a minimum cooldown of 5, increasing to 10 for high-seed-sensitivity models";
     * the numbers quoted are Table 3's own (the prose's ranges disagree with it in places). */
    if (s->S_std >= DEBA_ARCH_SIGMA_DYN)
        say(&t, "Cooldown: 10 epochs, as the paper recommends for seed-sensitive networks (σ_S = %.3f >= 0.10);", s->S_std);
    else
        say(&t, "Cooldown: at least 5 epochs, the paper's minimum (its baseline and DEBA's default is 10);");
    say(&t, "in its Table 3 a cooldown of 2 lost accuracy on 5 of 6 architectures (ResNet-50 -12.62 points). "
        "Window: keep the 15-epoch sliding window; full history cut the speedup of every architecture in Table 3 "
        "(EfficientNet-B0 43.3%% to 7.1%%).");
    char reading[512];
    if (cmp.gain == 0) {
        say(&t, "Device: the batch sweep shows no throughput gain from larger batches (samples/s min-max intervals of "
            "B = %d to %d overlap or lie below B = %d's, %d repeats): DEBA cannot speed training up on this device; "
            "it may still change accuracy, through the gradient noise the batch size sets, and memory use, so judge "
            "it by accuracy, not time.", cmp.ref_batch, cmp.largest_batch, cmp.ref_batch, cmp.repeats);
    } else if (cmp.gain == 1) {
        if (deba_sweep_reading(reading, sizeof reading, &cmp)) reading[0] = '\0';
        say(&t, "Device: %s Larger batches can save time here.", reading);
    } else if (!strcmp(cmp.why, "no sweep")) {
        say(&t, "Device: no batch sweep for %s/%s yet: deba-profile --sweep 32,64,128,256 tells whether larger "
            "batches are faster on this device (run this profile again afterwards; completed runs are reused).",
            p->arch, p->dataset);
    } else {
        if (deba_sweep_reading(reading, sizeof reading, &cmp)) reading[0] = '\0';
        say(&t, "Device: %s", reading);
    }
    if (t.cut) return deba_err_set(e, DEBA_E_RUNTIME, "the recommendation is longer than %d bytes", DEBA_TEXT_MAX - 1);
    return DEBA_OK;
}

/* The verdict with <out>/<arch>/<dataset>/sweep.csv when there is one. */
static deba_status verdict_with_sweep_file(const char *out, deba_profile *p, int B, uint64_t seed, deba_err *e)
{
    char path[4400];
    int len = snprintf(path, sizeof path, "%s/%s/%s/sweep.csv", out, p->arch, p->dataset);
    if (len < 0 || (size_t)len >= sizeof path) return deba_err_set(e, DEBA_E_INPUT, "--out: path too long");
    deba_sweep_row *rows = NULL;
    size_t n = 0;
    deba_status st = file_exists(path) ? deba_sweep_read(path, &rows, &n, e) : DEBA_OK;
    if (!st) st = deba_profile_verdict(p, rows, n, B, seed, e);
    free(rows);
    return st;
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
    if (!st) p->n_seeds = n;   /* from here deba_profile_free frees what seed_row kept */
    for (size_t i = 0; i < n && !st; i++) st = seed_row(&runs[i], arch, dataset, &p->seeds[i], e);
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
    if (!st) st = verdict_with_sweep_file(out, p, DEBA_BOOTSTRAP_B, DEBA_BOOTSTRAP_SEED, e);
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
    if (!s->bootstrap) return;
    /* the recommendation column, one topic a line */
    static const char *const topics[] = { " Warning: ", " Thresholds: ", " Cooldown: ", " Window: ", " Device: " };
    fputs("recommendation (should I use DEBA on this network, and with which thresholds?):\n  ", f);
    for (const char *r = s->recommendation; *r;) {
        const char *next = NULL;
        for (size_t k = 0; k < sizeof topics / sizeof topics[0]; k++) {
            const char *q = strstr(r, topics[k]);
            if (q && (!next || q < next)) next = q;
        }
        if (!next) {
            fprintf(f, "%s\n", r);
            break;
        }
        fprintf(f, "%.*s\n  ", (int)(next - r), r);
        r = next + 1;
    }
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
    deba_status st = deba_profile_compute(c->train.out, c->train.arch, c->train.dataset, c->seeds, (size_t)c->n_seeds,
                                          p, e);
    /* other bootstrap settings than compute's defaults: the verdict again with them */
    if (!st && c->bootstrap > 0 && (c->bootstrap != DEBA_BOOTSTRAP_B || c->bootstrap_seed != DEBA_BOOTSTRAP_SEED))
        st = verdict_with_sweep_file(c->train.out, p, c->bootstrap, c->bootstrap_seed, e);
    if (st) deba_profile_free(p);
    return st;
}
