/* The report's figures: each one a .dat (data blocks, one per series) and a .gp script that
 * users can restyle, rendered to PNG (pngcairo) and SVG by gnuplot run as a child process in a
 * private directory, so no predictable file name in the output folder is ever written. */
#include "report/report.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "deba/csv.h"
#include "deba/escape.h"

typedef struct {
    char name[160];
    double *x, *y, *sd;  /* sd NULL: no band */
    size_t n;
} series;

typedef struct {
    char stem[192], title[256], xlabel[64], ylabel[64];
    int logx, logy, band;
    series *s;
    size_t ns;
} figspec;

static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void series_free(series *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].x);
        free(s[i].y);
        free(s[i].sd);
    }
    free(s);
}

/* A '#' comment line: data never ends it early (deba_esc_comment). */
static void comment(FILE *f, const char *prefix, const char *text, const char *suffix)
{
    fputs(prefix, f);
    deba_esc_fput(f, deba_esc_comment, text);
    fputs(suffix, f);
}

/* A gnuplot string literal (deba_esc_gnuplot). */
static void gp_str(FILE *f, const char *s)
{
    deba_esc_fput(f, deba_esc_gnuplot, s);
}

static void w_dat(FILE *f, const void *ctx)
{
    const figspec *fs = ctx;
    comment(f, "# ", fs->title, "\n");
    fprintf(f, "# one block per series (gnuplot 'index i'), columns: x y%s\n", fs->band ? " std" : "");
    for (size_t i = 0; i < fs->ns; i++) {
        const series *s = &fs->s[i];
        fprintf(f, "# series %zu: ", i);
        comment(f, "", s->name, "\n");
        for (size_t k = 0; k < s->n; k++) {
            fprintf(f, "%.9g %.9g", s->x[k], s->y[k]);
            if (fs->band) fprintf(f, " %.9g", s->sd ? s->sd[k] : 0.0);
            fputc('\n', f);
        }
        fputs("\n\n", f);
    }
}

/* The stem is a checked name (deba_name_ok), so it is written as is inside quotes; every other
 * string goes through gp_str or comment. */
static void w_gp(FILE *f, const void *ctx)
{
    const figspec *fs = ctx;
    comment(f, "# ", fs->title, "");
    fprintf(f, ": regenerate with `gnuplot %s.gp` in this directory; restyle freely.\n", fs->stem);
    fprintf(f, "set terminal pngcairo size 960,600 noenhanced font 'sans,10'\n");
    fprintf(f, "set output '%s.png'\n", fs->stem);
    fputs("set title ", f);
    gp_str(f, fs->title);
    fputs("\nset xlabel ", f);
    gp_str(f, fs->xlabel);
    fputs("\nset ylabel ", f);
    gp_str(f, fs->ylabel);
    fputs("\nset grid\nset key outside right top\n", f);
    if (fs->logx) fputs("set logscale x 2\n", f);
    if (fs->logy) fputs("set logscale y\n", f);
    if (fs->band) fputs("set style fill transparent solid 0.25 noborder\n", f);
    fputs("plot ", f);
    for (size_t i = 0; i < fs->ns; i++) {
        const char *c = colors[i % (sizeof colors / sizeof colors[0])];
        if (i) fputs(", \\\n     ", f);
        if (fs->band)
            fprintf(f, "'%s.dat' index %zu using 1:($2-$3):($2+$3) with filledcurves lc rgb '%s' notitle, \\\n"
                       "     '' index %zu using 1:2 with lines lw 2 lc rgb '%s' title ",
                    fs->stem, i, c, i, c);
        else
            fprintf(f, "'%s.dat' index %zu using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title ", fs->stem, i, c);
        gp_str(f, fs->s[i].name);
    }
    fprintf(f, "\nset terminal svg size 960,600 dynamic noenhanced font 'sans,10'\n"
               "set output '%s.svg'\nreplot\nunset output\n", fs->stem);
}

static deba_status write_fig(const char *dir, const figspec *fs, deba_err *e)
{
    char path[PATH_MAX];
    deba_status s;
    if ((s = rp_path(path, sizeof path, e, "%s/%s.dat", dir, fs->stem))) return s;
    if ((s = rp_write_file(path, w_dat, fs, e))) return s;
    if ((s = rp_path(path, sizeof path, e, "%s/%s.gp", dir, fs->stem))) return s;
    return rp_write_file(path, w_gp, fs, e);
}

/* ---- gnuplot ---- */

static int find_gnuplot(char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    if (!path) return 0;
    while (*path) {
        const char *end = strchr(path, ':');
        size_t l = end ? (size_t)(end - path) : strlen(path);
        int n = l > 0 ? snprintf(buf, cap, "%.*s/gnuplot", (int)l, path) : -1;
        if (n > 0 && (size_t)n < cap && access(buf, X_OK) == 0) return 1;
        path += l;
        if (*path == ':') path++;
    }
    return 0;
}

/* gnuplot on <stem>.gp with the private directory as its working directory: the script's
 * outputs (<stem>.png, <stem>.svg) land there, where no one else can plant a name. */
static pid_t spawn_gnuplot(const char *gnuplot, const char *priv, const char *stem)
{
    char gp[256];
    int n = snprintf(gp, sizeof gp, "%s.gp", stem);
    if (n < 0 || (size_t)n >= sizeof gp) return -1;
    pid_t pid = fork();
    if (pid != 0) return pid;
    if (chdir(priv) != 0) _exit(127);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, 1);
        dup2(null, 2);
    }
    execl(gnuplot, "gnuplot", gp, (char *)NULL);
    _exit(127);
}

/* Moves priv/<stem>.<ext> into dir when keep, else removes it. 1 when it is in place. rename
 * replaces whatever dir/<stem>.<ext> was, a symlink included, without following it. */
static int move_out(const char *priv, const char *dir, const char *stem, const char *ext, int keep)
{
    char from[PATH_MAX], to[PATH_MAX];
    int a = snprintf(from, sizeof from, "%s/%s.%s", priv, stem, ext);
    int b = snprintf(to, sizeof to, "%s/%s.%s", dir, stem, ext);
    if (a < 0 || b < 0 || (size_t)a >= sizeof from || (size_t)b >= sizeof to) return 0;
    if (keep && rename(from, to) == 0) return 1;
    int err = errno;   /* for the caller's message, not unlink's */
    unlink(from);
    errno = err;
    return 0;
}

/* Removes the private directory and anything left in it (a failed gnuplot's partial output). */
static void remove_private(const char *priv)
{
    DIR *d = opendir(priv);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            char p[PATH_MAX];
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            int n = snprintf(p, sizeof p, "%s/%s", priv, de->d_name);
            if (n > 0 && (size_t)n < sizeof p) unlink(p);
        }
        closedir(d);
    }
    rmdir(priv);
}

/* ---- the figures themselves ---- */

typedef struct {
    rp_figure *figs;
    size_t n, cap;
    figspec *specs;
} figlist;

static deba_status add_fig(figlist *L, figspec *fs, const char *reading, deba_err *e)
{
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 16;
        rp_figure *f = realloc(L->figs, cap * sizeof *f);
        if (!f) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        L->figs = f;
        figspec *s = realloc(L->specs, cap * sizeof *s);
        if (!s) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        L->specs = s;
        L->cap = cap;
    }
    rp_figure *f = &L->figs[L->n];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", fs->stem);
    snprintf(f->title, sizeof f->title, "%s", fs->title);
    snprintf(f->reading, sizeof f->reading, "%s", reading);
    L->specs[L->n++] = *fs;
    return DEBA_OK;
}

static int cmp_sweep(const void *x, const void *y)
{
    const deba_sweep_row *a = x, *b = y;
    int c = strcmp(a->arch, b->arch);
    if (c) return c;
    if ((c = strcmp(a->dataset, b->dataset))) return c;
    return (a->batch_size > b->batch_size) - (a->batch_size < b->batch_size);
}

static deba_status sweep_figs(const deba_analysis *a, figlist *L, deba_err *e)
{
    if (!a->nsweep) return DEBA_OK;
    deba_sweep_row *rows = malloc(a->nsweep * sizeof *rows);
    if (!rows) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    memcpy(rows, a->sweep, a->nsweep * sizeof *rows);
    qsort(rows, a->nsweep, sizeof *rows, cmp_sweep);
    deba_status s = DEBA_OK;
    for (int which = 0; which < 2 && !s; which++) {
        figspec fs;
        memset(&fs, 0, sizeof fs);
        snprintf(fs.stem, sizeof fs.stem, "%s", which ? "fig2_grad_var_vs_batch" : "fig1_time_vs_batch");
        snprintf(fs.title, sizeof fs.title, "%s",
                 which ? "Figure 2: gradient variance vs batch size" : "Figure 1: time per epoch vs batch size");
        snprintf(fs.xlabel, sizeof fs.xlabel, "batch size");
        snprintf(fs.ylabel, sizeof fs.ylabel, "%s", which ? "gradient variance" : "time per epoch (s)");
        fs.logx = 1;
        fs.logy = which == 1;
        fs.s = calloc(a->nsweep, sizeof *fs.s);
        if (!fs.s) { s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); break; }
        double best_ratio = -1;
        char best[200] = "";
        for (size_t i = 0; i < a->nsweep;) {
            size_t j = i;
            while (j < a->nsweep && !strcmp(rows[j].arch, rows[i].arch) && !strcmp(rows[j].dataset, rows[i].dataset)) j++;
            series *se = &fs.s[fs.ns++];
            if ((s = rp_text(se->name, sizeof se->name, e, "%s/%s", rows[i].arch, rows[i].dataset))) break;
            se->x = malloc((j - i) * sizeof *se->x);
            se->y = malloc((j - i) * sizeof *se->y);
            if (!se->x || !se->y) { s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); break; }
            for (size_t k = i; k < j; k++) {
                se->x[se->n] = rows[k].batch_size;
                se->y[se->n++] = which ? rows[k].grad_var : rows[k].epoch_time_s;
            }
            double first = se->y[0], last = se->y[se->n - 1];
            double ratio = which ? (first > 0 ? last / first : NAN) : (last > 0 ? first / last : NAN);
            if (se->n > 1 && !isnan(ratio) && ratio > best_ratio) {
                best_ratio = ratio;
                if ((s = rp_text(best, sizeof best, e, "%s (B=%g → %g)", se->name, se->x[0], se->x[se->n - 1]))) break;
            }
            i = j;
        }
        if (s) { series_free(fs.s, fs.ns); break; }
        char reading[512], ratio[64];
        if (!s && best_ratio >= 0 && which == 0) s = rp_num(ratio, sizeof ratio, e, best_ratio, 2, 0);
        if (s) {
        } else if (best_ratio < 0)
            s = rp_text(reading, sizeof reading, e, "Each series has a single batch size; nothing to compare.");
        else if (which == 0)
            s = rp_text(reading, sizeof reading, e, "Time per epoch falls most on %s: %s× from the smallest to the largest "
                        "batch.", best, ratio);
        else
            s = rp_text(reading, sizeof reading, e, "Gradient variance at the largest batch is at most %.3g× that at the "
                        "smallest (%s).", best_ratio, best);
        if (s || (s = add_fig(L, &fs, reading, e))) series_free(fs.s, fs.ns);
    }
    free(rows);
    return s;
}

/* Per-epoch mean and sample std over a group's seeds of one trace column. */
enum { COL_BATCH, COL_LOSS, COL_ACC };

static double col_of(const deba_trace_row *r, int col)
{
    return col == COL_BATCH ? r->batch_size : col == COL_LOSS ? r->train_loss : r->test_acc;
}

static deba_status group_series(const deba_analysis *a, const deba_group *g, int col, int want_sd, series *se,
                                deba_err *e)
{
    size_t len = 0;
    for (int k = 0; k < g->nseeds; k++) {
        size_t n = a->runs[g->members[k]].run->trace.n;
        if (n > len) len = n;
    }
    se->x = malloc((len + 1) * sizeof *se->x);
    se->y = malloc((len + 1) * sizeof *se->y);
    se->sd = want_sd ? malloc((len + 1) * sizeof *se->sd) : NULL;
    double *v = malloc(((size_t)g->nseeds + 1) * sizeof *v);
    if (!se->x || !se->y || (want_sd && !se->sd) || !v) {
        free(v);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    for (size_t t = 0; t < len; t++) {
        size_t m = 0;
        for (int k = 0; k < g->nseeds; k++) {
            const deba_trace *tr = &a->runs[g->members[k]].run->trace;
            if (t < tr->n) v[m++] = col_of(&tr->rows[t], col);
        }
        se->x[se->n] = (double)(t + 1);
        se->y[se->n] = deba_mean(v, m);
        if (se->sd) se->sd[se->n] = m >= 2 ? deba_std_sample(v, m) : 0.0;
        se->n++;
    }
    free(v);
    return DEBA_OK;
}

static deba_status trajectory_figs(const deba_analysis *a, figlist *L, deba_err *e)
{
    /* one figure per dataset, one series per architecture's "deba" group */
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *g0 = &a->groups[i];
        if (strcmp(g0->label, "deba")) continue;
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(a->groups[j].label, "deba") && !strcmp(a->groups[j].dataset, g0->dataset)) seen = 1;
        if (seen) continue;
        figspec fs;
        memset(&fs, 0, sizeof fs);
        deba_status s;
        if (!deba_name_ok(g0->dataset))
            return deba_err_set(e, DEBA_E_INPUT, "dataset name of group %zu is not a file name", i);
        if ((s = rp_text(fs.stem, sizeof fs.stem, e, "fig3_batch_trajectory_%s", g0->dataset)) ||
            (s = rp_text(fs.title, sizeof fs.title, e, "Batch size under DEBA per architecture, %s (mean over seeds)",
                         g0->dataset)))
            return s;
        snprintf(fs.xlabel, sizeof fs.xlabel, "epoch");
        snprintf(fs.ylabel, sizeof fs.ylabel, "batch size");
        fs.logy = 1;
        fs.s = calloc(a->ngroups, sizeof *fs.s);
        if (!fs.s) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        double hi = -1, lo = INFINITY;
        const char *hin = "", *lon = "";
        for (size_t j = i; j < a->ngroups && !s; j++) {
            const deba_group *g = &a->groups[j];
            if (strcmp(g->label, "deba") || strcmp(g->dataset, g0->dataset)) continue;
            series *se = &fs.s[fs.ns++];
            snprintf(se->name, sizeof se->name, "%s", g->arch);   /* a name: shorter than DEBA_NAME_MAX */
            if ((s = group_series(a, g, COL_BATCH, 0, se, e))) break;
            double last = se->n ? se->y[se->n - 1] : NAN;
            if (last > hi) { hi = last; hin = g->arch; }
            if (last < lo) { lo = last; lon = g->arch; }
        }
        char reading[512], his[64], los[64];
        if (!s) s = rp_num(his, sizeof his, e, hi, 0, 0);
        if (!s) s = rp_num(los, sizeof los, e, lo, 0, 0);
        if (s) {
        } else if (hi == lo)
            s = rp_text(reading, sizeof reading, e, "Every architecture ends at the same mean batch size (%s).", his);
        else
            s = rp_text(reading, sizeof reading, e, "%s ends at the largest mean batch size (%s), %s at the smallest (%s).",
                        hin, his, lon, los);
        if (s || (s = add_fig(L, &fs, reading, e))) {
            series_free(fs.s, fs.ns);
            return s;
        }
    }
    return DEBA_OK;
}

static deba_status curve_figs(const deba_analysis *a, figlist *L, deba_err *e)
{
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *g0 = &a->groups[i];
        /* first group of each (arch, dataset) */
        if (i > 0 && !strcmp(a->groups[i - 1].arch, g0->arch) && !strcmp(a->groups[i - 1].dataset, g0->dataset))
            continue;
        int fi = deba_analysis_find(a, g0->arch, g0->dataset, "fixed");
        int di = deba_analysis_find(a, g0->arch, g0->dataset, "deba");
        if (fi < 0 && di < 0) continue;
        if (!deba_name_ok(g0->arch) || !deba_name_ok(g0->dataset))
            return deba_err_set(e, DEBA_E_INPUT, "arch or dataset name of group %zu is not a file name", i);
        for (int which = 0; which < 2; which++) {
            figspec fs;
            memset(&fs, 0, sizeof fs);
            fs.band = 1;
            deba_status s;
            if ((s = rp_text(fs.stem, sizeof fs.stem, e, "%s_%s_%s", which ? "fig5_test_acc" : "fig4_train_loss", g0->arch,
                             g0->dataset)) ||
                (s = rp_text(fs.title, sizeof fs.title, e, "%s, %s/%s: fixed vs DEBA (mean ± std over seeds)",
                             which ? "Test accuracy" : "Training loss", g0->arch, g0->dataset)))
                return s;
            snprintf(fs.xlabel, sizeof fs.xlabel, "epoch");
            snprintf(fs.ylabel, sizeof fs.ylabel, "%s", which ? "test accuracy (%)" : "training loss");
            fs.s = calloc(2, sizeof *fs.s);
            if (!fs.s) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
            double fin[2] = {NAN, NAN};
            int idx[2] = {fi, di};
            for (int k = 0; k < 2 && !s; k++) {
                if (idx[k] < 0) continue;
                series *se = &fs.s[fs.ns++];
                snprintf(se->name, sizeof se->name, "%s (%d seeds)", k ? "DEBA" : "fixed", a->groups[idx[k]].nseeds);
                s = group_series(a, &a->groups[idx[k]], which ? COL_ACC : COL_LOSS, 1, se, e);
                if (!s && se->n) fin[k] = se->y[se->n - 1];
            }
            char reading[512], f0[64], f1[64], df[64];
            if (s) {
            } else if (which == 0) {
                s = rp_text(reading, sizeof reading, e, "Final training loss: fixed %.4g, DEBA %.4g.", fin[0], fin[1]);
            } else if (!(s = rp_num(f0, sizeof f0, e, fin[0], 2, 0)) && !(s = rp_num(f1, sizeof f1, e, fin[1], 2, 0)) &&
                       !(s = rp_num(df, sizeof df, e, fin[1] - fin[0], 2, 1))) {
                s = rp_text(reading, sizeof reading, e, "Final test accuracy: fixed %s%%, DEBA %s%% (%s points).", f0, f1, df);
            }
            if (s || (s = add_fig(L, &fs, reading, e))) {
                series_free(fs.s, fs.ns);
                return s;
            }
        }
    }
    return DEBA_OK;
}

deba_status rp_write_figures(const deba_analysis *a, const char *dir, rp_figure **figs, size_t *nfigs,
                             deba_report_result *res, deba_err *e)
{
    figlist L = {0};
    deba_status s = sweep_figs(a, &L, e);
    if (!s) s = trajectory_figs(a, &L, e);
    if (!s) s = curve_figs(a, &L, e);
    /* Everything is made in a private directory (mkdtemp: 0700, unpredictable name) and renamed
     * into place: gnuplot opens its outputs by name, without O_EXCL or O_NOFOLLOW. */
    char priv[PATH_MAX] = "";
    if (!s && L.n && !(s = rp_path(priv, sizeof priv, e, "%s/.deba-figures-XXXXXX", dir)) && !mkdtemp(priv)) {
        s = deba_err_set(e, DEBA_E_IO, "%s: cannot create a private directory: %s", dir, strerror(errno));
        priv[0] = '\0';
    }
    for (size_t i = 0; i < L.n && !s; i++) s = write_fig(priv, &L.specs[i], e);
    char gnuplot[4096];
    if (!s && L.n) {
        if (!find_gnuplot(gnuplot, sizeof gnuplot)) {
            res->gnuplot_missing = 1;
        } else {
            /* a few gnuplots at a time: each spends most of its life starting up */
            enum { BATCH = 8 };
            for (size_t i = 0; i < L.n; i += BATCH) {
                pid_t pids[BATCH];
                size_t m = L.n - i < BATCH ? L.n - i : BATCH;
                for (size_t k = 0; k < m; k++) pids[k] = spawn_gnuplot(gnuplot, priv, L.figs[i + k].name);
                for (size_t k = 0; k < m; k++) {
                    int st = 0, ok = pids[k] > 0;
                    if (ok) {
                        while (waitpid(pids[k], &st, 0) < 0 && errno == EINTR) {}
                        ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
                    }
                    rp_figure *f = &L.figs[i + k];
                    f->has_png = move_out(priv, dir, f->name, "png", ok);
                    f->has_svg = move_out(priv, dir, f->name, "svg", ok);
                    if (!ok) res->gnuplot_failed++;
                    res->pngs += f->has_png;
                }
            }
        }
    }
    for (size_t i = 0; i < L.n && !s; i++) {
        if (!move_out(priv, dir, L.figs[i].name, "dat", 1) || !move_out(priv, dir, L.figs[i].name, "gp", 1))
            s = deba_err_set(e, DEBA_E_IO, "%s/%s: cannot move the figure's files into place: %s", dir, L.figs[i].name,
                             strerror(errno));
    }
    if (priv[0]) remove_private(priv);
    for (size_t i = 0; i < L.n; i++) series_free(L.specs[i].s, L.specs[i].ns);
    free(L.specs);
    if (s) {
        free(L.figs);
        return s;
    }
    res->figures = (int)L.n;
    *figs = L.figs;
    *nfigs = L.n;
    return DEBA_OK;
}
