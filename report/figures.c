/* The report's figures: each one a .dat (data blocks, one per series) and a .gp script that
 * users can restyle, rendered to PNG, SVG, PDF and cairolatex (.tex + .pdf) by gnuplot run as a
 * child process in a private directory, so no predictable file name in the output folder is ever
 * written; each with a reading that says no more than its data support. */
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
#include "profiler/profile.h"

/* How a series is drawn. Bands are drawn first and markers last, so every line (the fixed
 * baseline included) stays visible over every band. */
typedef enum {
    SK_LINE,        /* lines and points */
    SK_ERR,         /* lines and points with error bars lo..hi */
    SK_BAND,        /* a line at y over a shaded band lo..hi */
    SK_STEP,        /* a step plot (a batch size holds for the whole epoch) */
    SK_STEP_THIN,   /* a thin step plot (one seed), no legend entry of its own */
    SK_UP,          /* ▲ markers: the batch was increased at this epoch */
    SK_DOWN,        /* ▼ markers: the batch was rolled back at this epoch */
    SK_COUNT
} series_kind;

typedef struct {
    char name[160];          /* legend entry; "" for none */
    series_kind kind;
    int color;               /* index into palette */
    double *x, *y, *lo, *hi; /* lo, hi: SK_BAND, SK_ERR (NULL: lo = hi = y) */
    size_t n;
} series;

typedef struct {
    char stem[192], title[256], xlabel[64], ylabel[64];
    int logx, logy;          /* log base, 0: linear */
    const char *key;         /* where the legend goes inside the plot: "top right", ... */
    series *s;
    size_t ns;
    deba_fig_style style;
} figspec;

/* Okabe & Ito's colour-blind-safe palette; black first for the fixed-batch baseline. */
enum { C_BLACK, C_BLUE, C_VERMILLION, C_GREEN, C_ORANGE, C_PURPLE, C_SKY, C_YELLOW, C_COUNT };
static const char *const palette[C_COUNT] = {"#000000", "#0072B2", "#D55E00", "#009E73",
                                             "#E69F00", "#CC79A7", "#56B4E9", "#F0E442"};
/* the colours a list of series takes in turn (yellow last: faint on white) */
static int nth_color(size_t i)
{
    static const int order[] = {C_BLUE, C_VERMILLION, C_GREEN, C_ORANGE, C_PURPLE, C_SKY, C_BLACK, C_YELLOW};
    return order[i % (sizeof order / sizeof order[0])];
}

static void series_free(series *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].x);
        free(s[i].y);
        free(s[i].lo);
        free(s[i].hi);
    }
    free(s);
}

/* Room for n points (lo and hi too when bounds). */
static int series_alloc(series *se, size_t n, int bounds)
{
    size_t m = n ? n : 1;
    se->x = malloc(m * sizeof *se->x);
    se->y = malloc(m * sizeof *se->y);
    if (bounds) {
        se->lo = malloc(m * sizeof *se->lo);
        se->hi = malloc(m * sizeof *se->hi);
    }
    return se->x && se->y && (!bounds || (se->lo && se->hi));
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

/* A gnuplot string literal holding LaTeX text (cairolatex sets its strings with LaTeX):
 * deba_esc_latex, then deba_esc_gnuplot. Out of memory: an empty string. */
static void gp_tex(FILE *f, const char *s)
{
    char *t = deba_esc_dup(deba_esc_latex, s);
    gp_str(f, t ? t : "");
    free(t);
}

static void w_dat(FILE *f, const void *ctx)
{
    const figspec *fs = ctx;
    comment(f, "# ", fs->title, "\n");
    fputs("# one block per series (gnuplot 'index i'), columns: x y lo hi (lo = hi = y without a band)\n", f);
    for (size_t i = 0; i < fs->ns; i++) {
        const series *s = &fs->s[i];
        fprintf(f, "# series %zu: ", i);
        comment(f, "", s->name[0] ? s->name : "(no legend entry)", "\n");
        for (size_t k = 0; k < s->n; k++)
            fprintf(f, "%.9g %.9g %.9g %.9g\n", s->x[k], s->y[k], s->lo ? s->lo[k] : s->y[k], s->hi ? s->hi[k] : s->y[k]);
        if (!s->n) fputs("# (empty)\n", f);
        fputs("\n\n", f);
    }
}

/* Sizes and fonts per style: screen for the HTML report, paper for one column of a
 * two-column paper (3.5 in wide; the PNG at 300 dpi). */
typedef struct {
    const char *png, *svg, *pdf, *tex;
    double lw, thin;
    int title;
} style_terms;

static const style_terms STYLES[DEBA_FIG_STYLE_COUNT] = {
    [DEBA_FIG_SCREEN] = {"pngcairo size 960,600 enhanced font 'sans,10'",
                         "svg size 960,600 dynamic enhanced font 'sans,10'",
                         "pdfcairo size 6.4in,4in enhanced font 'sans,10'",
                         "cairolatex pdf size 6.4in,4in", 2.0, 0.8, 1},
    [DEBA_FIG_PAPER] = {"pngcairo size 1050,735 enhanced font 'sans,8' fontscale 3.2 linewidth 3 pointscale 2.5",
                        "svg size 504,353 dynamic enhanced font 'sans,8'",
                        "pdfcairo size 3.5in,2.45in enhanced font 'sans,8'",
                        "cairolatex pdf size 3.5in,2.45in", 1.5, 0.6, 0},
};

/* The plot command: bands, thin steps, lines, then markers, so nothing hides a line. Legend
 * entries are the gnuplot variables t<i>, set per terminal (plain text, then LaTeX). */
static void w_plot(FILE *f, const figspec *fs)
{
    static const int pass_of[SK_COUNT] = {[SK_BAND] = 0, [SK_STEP_THIN] = 1, [SK_LINE] = 2, [SK_ERR] = 2,
                                          [SK_STEP] = 2, [SK_UP] = 3, [SK_DOWN] = 3};
    const style_terms *st = &STYLES[fs->style];
    int first = 1;
    fputs("plot ", f);
    for (int pass = 0; pass < 4; pass++)
        for (size_t i = 0; i < fs->ns; i++) {
            const series *s = &fs->s[i];
            if (pass_of[s->kind] != pass || !s->n) continue;
            const char *c = palette[s->color];
            if (!first) fputs(", \\\n     ", f);
            first = 0;
            fprintf(f, "'%s.dat' index %zu ", fs->stem, i);
            switch (s->kind) {
            case SK_BAND:
                /* the band, then its line over it; the legend goes on the line */
                fprintf(f, "using 1:3:4 with filledcurves fc rgb '%s' fs transparent solid 0.2 noborder notitle, \\\n"
                           "     '%s.dat' index %zu using 1:2 with lines lw %g lc rgb '%s'", c, fs->stem, i, st->lw, c);
                break;
            case SK_STEP_THIN: fprintf(f, "using 1:2 with steps lw %g lc rgb '%s'", st->thin, c); break;
            case SK_STEP: fprintf(f, "using 1:2 with steps lw %g lc rgb '%s'", 1.5 * st->lw, c); break;
            case SK_LINE: fprintf(f, "using 1:2 with linespoints lw %g pt 7 ps 0.8 lc rgb '%s'", st->lw, c); break;
            case SK_ERR:
                fprintf(f, "using 1:2:3:4 with yerrorlines lw %g pt 7 ps 0.8 lc rgb '%s'", st->lw, c);
                break;
            case SK_UP: fprintf(f, "using 1:2 with points pt 9 ps 1.3 lc rgb '%s'", c); break;
            case SK_DOWN: fprintf(f, "using 1:2 with points pt 11 ps 1.3 lc rgb '%s'", c); break;
            case SK_COUNT: break;
            }
            if (s->name[0]) fprintf(f, " title t%zu noenhanced", i);
            else fputs(" notitle", f);
        }
    if (first) fputs("NaN notitle", f);   /* every series empty: an empty frame, not a gnuplot error */
    fputc('\n', f);
}

/* Axis labels, title and legend texts: plain (PNG, SVG, PDF; noenhanced, so data never turns
 * into sub- or superscripts) or LaTeX (cairolatex). */
static void w_texts(FILE *f, const figspec *fs, int latex)
{
    void (*str)(FILE *, const char *) = latex ? gp_tex : gp_str;
    const char *ne = latex ? "" : " noenhanced";
    if (STYLES[fs->style].title) {
        fputs("set title ", f);
        str(f, fs->title);
        fprintf(f, "%s\n", ne);
    } else
        fputs("unset title\n", f);
    fputs("set xlabel ", f);
    str(f, fs->xlabel);
    fprintf(f, "%s\nset ylabel ", ne);
    str(f, fs->ylabel);
    fprintf(f, "%s\n", ne);
    for (size_t i = 0; i < fs->ns; i++)
        if (fs->s[i].name[0]) {
            fprintf(f, "t%zu = ", i);
            str(f, fs->s[i].name);
            fputc('\n', f);
        }
    /* log ticks as powers of ten (10^{-3}), never 0.001000; base-2 axes (batch sizes) as integers */
    if (fs->logy == 10) fprintf(f, "set format y %s\n", latex ? "'$10^{%T}$'" : "'10^{%T}'");
}

/* The stem is a checked name (deba_name_ok), so it is written as is inside quotes; every other
 * string goes through gp_str, gp_tex or comment. */
static void w_gp(FILE *f, const void *ctx)
{
    const figspec *fs = ctx;
    const style_terms *st = &STYLES[fs->style];
    comment(f, "# ", fs->title, "");
    fprintf(f, ": regenerate with `gnuplot %s.gp` in this directory; restyle freely.\n", fs->stem);
    fprintf(f, "# outputs: %s.png, %s.svg, %s.pdf, and %s_latex.tex with %s_latex.pdf (cairolatex:\n"
               "# \\input{%s_latex.tex} in LaTeX, text set by the document)\n",
            fs->stem, fs->stem, fs->stem, fs->stem, fs->stem, fs->stem);
    fputs("set grid lc rgb '#dddddd'\nset autoscale xfix\n", f);
    fprintf(f, "set key inside %s opaque box lc rgb '#bbbbbb' samplen 2 spacing 1.1\n", fs->key ? fs->key : "top right");
    if (fs->logx) fprintf(f, "set logscale x %d\nset format x '%%g'\n", fs->logx);
    if (fs->logy) fprintf(f, "set logscale y %d\n", fs->logy);
    if (fs->logy == 2) fputs("set format y '%g'\n", f);
    fprintf(f, "set terminal %s\nset output '%s.png'\n", st->png, fs->stem);
    w_texts(f, fs, 0);
    w_plot(f, fs);
    fprintf(f, "set terminal %s\nset output '%s.svg'\nreplot\n", st->svg, fs->stem);
    fprintf(f, "set terminal %s\nset output '%s.pdf'\nreplot\n", st->pdf, fs->stem);
    fprintf(f, "set terminal %s\nset output '%s_latex.tex'\n", st->tex, fs->stem);
    w_texts(f, fs, 1);
    fputs("replot\nunset output\n", f);
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

/* Figure 1's reading: what each (arch, dataset) sweep supports (deba_sweep_reading); one series
 * is its sentence, several are named, as many as fit, then how many more there are. */
static deba_status sweep_reading(const deba_sweep_row *rows, size_t n, char *out, size_t cap, deba_err *e)
{
    size_t nser = 0, said = 0, len = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && !strcmp(rows[j].arch, rows[i].arch) && !strcmp(rows[j].dataset, rows[i].dataset)) j++;
        nser++;
        i = j;
    }
    out[0] = '\0';
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && !strcmp(rows[j].arch, rows[i].arch) && !strcmp(rows[j].dataset, rows[i].dataset)) j++;
        deba_sweep_cmp c;
        char part[400];
        deba_sweep_compare(rows + i, j - i, rows[i].arch, rows[i].dataset, &c);
        if (deba_sweep_reading(part, sizeof part, &c)) return deba_err_set(e, DEBA_E_RUNTIME, "sweep reading too long");
        int m = nser == 1 ? snprintf(out, cap, "%s", part)
                          : snprintf(out + len, cap - len, "%s%s/%s: %s", len ? " " : "", rows[i].arch, rows[i].dataset,
                                     part);
        /* 40 bytes kept for the count of what did not fit */
        if (m < 0 || len + (size_t)m + 40 >= cap) {
            out[len] = '\0';
            break;
        }
        len += (size_t)m;
        said++;
        i = j;
    }
    if (said < nser) return rp_text(out + len, cap - len, e, "%s(%zu more series in the figure)", len ? " " : "",
                                    nser - said);
    return DEBA_OK;
}

/* Figures 4 and 5's reading: the last epoch's mean ± std of each group, and a difference only
 * where the ±1 std bands are apart, both groups having two seeds or more. */
static deba_status curve_reading(char *out, size_t cap, int acc, const double fin[2], const double lo[2],
                                 const double hi[2], const int n[2], deba_err *e)
{
    const char *what = acc ? "Final test accuracy" : "Final training loss", *unit = acc ? "%" : "";
    int prec = acc ? 2 : 4;
    char v[2][2 * RP_NUM_MAX + 8];
    for (int k = 0; k < 2; k++) {
        char m[RP_NUM_MAX], sd[RP_NUM_MAX];
        deba_status s;
        if ((s = rp_num(m, sizeof m, e, fin[k], prec, 0)) || (s = rp_num(sd, sizeof sd, e, (hi[k] - lo[k]) / 2, prec, 0)))
            return s;
        if (n[k] >= 2) snprintf(v[k], sizeof v[k], "%s ± %s%s", m, sd, unit);
        else snprintf(v[k], sizeof v[k], "%s%s", m, unit);
    }
    if (!n[0] || !n[1]) {
        int k = n[1] > 0;
        return rp_text(out, cap, e, "%s of %s (%d seed%s): %s; no %s runs to compare with.", what, k ? "DEBA" : "fixed",
                       n[k], n[k] == 1 ? "" : "s", v[k], k ? "fixed" : "DEBA");
    }
    if (n[0] < 2 || n[1] < 2)
        return rp_text(out, cap, e, "%s: fixed %s, DEBA %s (%s seed%s): one seed gives no spread, so no difference is "
                       "claimed.", what, v[0], v[1], n[0] == 1 && n[1] == 1 ? "one" : n[0] == 1 ? "one and more" : "more and one",
                       n[0] == 1 && n[1] == 1 ? " each" : "s");
    if (!(hi[1] < lo[0]) && !(lo[1] > hi[0]))
        return rp_text(out, cap, e, "%s: fixed %s, DEBA %s (mean ± std, %d and %d seeds): the bands overlap at the "
                       "last epoch, so the figure shows no difference.", what, v[0], v[1], n[0], n[1]);
    return rp_text(out, cap, e, "%s: DEBA's ±1 std band lies %s fixed's at the last epoch (fixed %s, DEBA %s; %d and %d "
                   "seeds); separate ±1 std bands are not a test of a difference: the paired 95%% confidence interval in "
                   "the tables is.", what, lo[1] > hi[0] ? "above" : "below",
                   v[0], v[1], n[0], n[1]);
}

/* Figures 1 and 2: time per epoch (median, min-max over the repeats) and gradient variance
 * against batch size, one series per (arch, dataset). The reading says a throughput gain only
 * where deba_sweep_compare finds non-overlapping intervals. */
static deba_status sweep_figs(const deba_analysis *a, figlist *L, deba_fig_style style, deba_err *e)
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
        fs.style = style;
        snprintf(fs.stem, sizeof fs.stem, "%s", which ? "fig2_grad_var_vs_batch" : "fig1_time_vs_batch");
        snprintf(fs.title, sizeof fs.title, "%s",
                 which ? "Gradient variance vs batch size"
                       : "Time per epoch vs batch size (median and min-max over repeats)");
        snprintf(fs.xlabel, sizeof fs.xlabel, "batch size");
        snprintf(fs.ylabel, sizeof fs.ylabel, "%s", which ? "gradient variance" : "time per epoch (s)");
        fs.logx = 2;
        fs.logy = which ? 10 : 0;
        fs.key = "top right";
        fs.s = calloc(a->nsweep, sizeof *fs.s);
        if (!fs.s) { s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); break; }
        char reading[512] = "";
        double best_ratio = -1;
        char best[200] = "";
        for (size_t i = 0; i < a->nsweep && !s;) {
            size_t j = i;
            while (j < a->nsweep && !strcmp(rows[j].arch, rows[i].arch) && !strcmp(rows[j].dataset, rows[i].dataset)) j++;
            series *se = &fs.s[fs.ns];
            se->kind = which ? SK_LINE : SK_ERR;
            se->color = nth_color(fs.ns++);
            if ((s = rp_text(se->name, sizeof se->name, e, "%s/%s", rows[i].arch, rows[i].dataset))) break;
            if (!series_alloc(se, j - i, !which)) { s = deba_err_set(e, DEBA_E_NOMEM, "out of memory"); break; }
            for (size_t k = i; k < j; k++) {
                const deba_sweep_row *r = &rows[k];
                if (r->steps < 1) continue;   /* did not fit: no point */
                se->x[se->n] = r->batch_size;
                se->y[se->n] = which ? r->grad_var : r->epoch_time_s;
                if (!which) {
                    /* epoch time is samples per epoch / samples per s: its interval from the
                     * samples/s interval (an older file without one: the median alone) */
                    double num = r->epoch_time_s * r->samples_per_s;
                    int spread = r->repeats >= 2 && r->samples_per_s_min > 0 && r->samples_per_s_max > 0;
                    se->lo[se->n] = spread ? num / r->samples_per_s_max : r->epoch_time_s;
                    se->hi[se->n] = spread ? num / r->samples_per_s_min : r->epoch_time_s;
                }
                se->n++;
            }
            if (which == 0) {
                /* the reading is made after the loop */
            } else if (se->n > 1 && se->y[0] > 0) {
                double ratio = se->y[se->n - 1] / se->y[0];
                if (ratio > best_ratio) {
                    best_ratio = ratio;
                    if ((s = rp_text(best, sizeof best, e, "%s, B = %g to %g", se->name, se->x[0], se->x[se->n - 1])))
                        break;
                }
            }
            i = j;
        }
        if (!s && which == 0) s = sweep_reading(rows, a->nsweep, reading, sizeof reading, e);
        if (s) {
        } else if (which == 1 && best_ratio < 0)
            s = rp_text(reading, sizeof reading, e, "Each series has a single batch size that fit: nothing to compare.");
        else if (which == 1)
            s = rp_text(reading, sizeof reading, e, "Gradient variance at the largest batch is at most %.3g× that at "
                        "the smallest (%s); it is measured on the same samples from the same weights, not timed.",
                        best_ratio, best);
        if (s || (s = add_fig(L, &fs, reading, e))) series_free(fs.s, fs.ns);
    }
    free(rows);
    return s;
}

/* Per-epoch mean and ±1 sample std over a group's seeds of one trace column. */
enum { COL_BATCH, COL_LOSS, COL_ACC };

static double col_of(const deba_trace_row *r, int col)
{
    return col == COL_BATCH ? r->batch_size : col == COL_LOSS ? r->train_loss : r->test_acc;
}

static size_t group_len(const deba_analysis *a, const deba_group *g)
{
    size_t len = 0;
    for (int k = 0; k < g->nseeds; k++) {
        size_t n = a->runs[g->members[k]].run->trace.n;
        if (n > len) len = n;
    }
    return len;
}

/* Column col at epoch t + 1 of every seed of the group that reached it, into v; returns how many. */
static size_t group_epoch(const deba_analysis *a, const deba_group *g, size_t t, int col, double *v)
{
    size_t m = 0;
    for (int k = 0; k < g->nseeds; k++) {
        const deba_trace *tr = &a->runs[g->members[k]].run->trace;
        if (t < tr->n) v[m++] = col_of(&tr->rows[t], col);
    }
    return m;
}

static deba_status group_band(const deba_analysis *a, const deba_group *g, int col, series *se, deba_err *e)
{
    size_t len = group_len(a, g);
    double *v = malloc(((size_t)g->nseeds + 1) * sizeof *v);
    if (!v || !series_alloc(se, len, 1)) {
        free(v);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    for (size_t t = 0; t < len; t++) {
        size_t m = group_epoch(a, g, t, col, v);
        double mean = deba_mean(v, m), sd = m >= 2 ? deba_std_sample(v, m) : 0.0;
        se->x[se->n] = (double)(t + 1);
        se->y[se->n] = mean;
        se->lo[se->n] = mean - sd;
        se->hi[se->n] = mean + sd;
        se->n++;
    }
    free(v);
    return DEBA_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* The per-epoch median batch size over a group's seeds; for an even count the lower median, so
 * every point is a batch size some seed used (an average would draw sizes that never existed). */
static deba_status group_median_batch(const deba_analysis *a, const deba_group *g, series *se, deba_err *e)
{
    size_t len = group_len(a, g);
    double *v = malloc(((size_t)g->nseeds + 1) * sizeof *v);
    if (!v || !series_alloc(se, len + 1, 0)) {
        free(v);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    for (size_t t = 0; t < len; t++) {
        size_t m = group_epoch(a, g, t, COL_BATCH, v);
        qsort(v, m, sizeof *v, cmp_double);
        se->x[se->n] = (double)(t + 1);
        se->y[se->n++] = v[(m - 1) / 2];
    }
    /* a step plot holds each value until the next x: one more point closes the last epoch */
    if (se->n) {
        se->x[se->n] = se->x[se->n - 1] + 1;
        se->y[se->n] = se->y[se->n - 1];
        se->n++;
    }
    free(v);
    return DEBA_OK;
}

/* One seed's batch size per epoch, closed like the median. */
static deba_status run_batches(const deba_trace *tr, series *se, deba_err *e)
{
    if (!series_alloc(se, tr->n + 1, 0)) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    for (size_t t = 0; t < tr->n; t++) {
        se->x[se->n] = (double)(t + 1);
        se->y[se->n++] = tr->rows[t].batch_size;
    }
    if (se->n) {
        se->x[se->n] = se->x[se->n - 1] + 1;
        se->y[se->n] = se->y[se->n - 1];
        se->n++;
    }
    return DEBA_OK;
}

/* Figure 3 per dataset: each architecture's DEBA batch size per epoch, one thin step line per
 * seed and the per-epoch median as a thick one. */
static deba_status trajectory_figs(const deba_analysis *a, figlist *L, deba_fig_style style, deba_err *e)
{
    for (size_t i = 0; i < a->ngroups; i++) {
        const deba_group *g0 = &a->groups[i];
        if (strcmp(g0->label, "deba")) continue;
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(a->groups[j].label, "deba") && !strcmp(a->groups[j].dataset, g0->dataset)) seen = 1;
        if (seen) continue;
        figspec fs;
        memset(&fs, 0, sizeof fs);
        fs.style = style;
        deba_status s;
        if (!deba_name_ok(g0->dataset))
            return deba_err_set(e, DEBA_E_INPUT, "dataset name of group %zu is not a file name", i);
        if ((s = rp_text(fs.stem, sizeof fs.stem, e, "fig3_batch_trajectory_%s", g0->dataset)) ||
            (s = rp_text(fs.title, sizeof fs.title, e, "Batch size under DEBA per architecture, %s (per seed and "
                         "median)", g0->dataset)))
            return s;
        snprintf(fs.xlabel, sizeof fs.xlabel, "epoch");
        snprintf(fs.ylabel, sizeof fs.ylabel, "batch size");
        fs.logy = 2;
        fs.key = "bottom right";   /* the batch grows: the lower right stays empty */
        size_t cap = 0;
        for (size_t j = i; j < a->ngroups; j++) cap += 1 + (size_t)a->groups[j].nseeds;
        fs.s = calloc(cap, sizeof *fs.s);
        if (!fs.s) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        double hi = -1, lo = INFINITY;
        const char *hin = "", *lon = "";
        size_t narch = 0;
        for (size_t j = i; j < a->ngroups && !s; j++) {
            const deba_group *g = &a->groups[j];
            if (strcmp(g->label, "deba") || strcmp(g->dataset, g0->dataset)) continue;
            int color = nth_color(narch++);
            for (int k = 0; k < g->nseeds && !s; k++) {
                series *se = &fs.s[fs.ns++];
                se->kind = SK_STEP_THIN;
                se->color = color;
                if (fs.ns == 1) snprintf(se->name, sizeof se->name, "one seed (thin)");   /* one key entry for all */
                s = run_batches(&a->runs[g->members[k]].run->trace, se, e);
            }
            series *se = &fs.s[fs.ns++];
            se->kind = SK_STEP;
            se->color = color;
            if (!s) s = rp_text(se->name, sizeof se->name, e, "%s (median of %d seed%s)", g->arch, g->nseeds,
                                g->nseeds == 1 ? "" : "s");
            if (!s) s = group_median_batch(a, g, se, e);
            double last = se->n ? se->y[se->n - 1] : NAN;
            if (last > hi) { hi = last; hin = g->arch; }
            if (last < lo) { lo = last; lon = g->arch; }
        }
        char reading[512], his[64], los[64];
        if (!s) s = rp_num(his, sizeof his, e, hi, 0, 0);
        if (!s) s = rp_num(los, sizeof los, e, lo, 0, 0);
        if (s) {
        } else if (narch == 1)
            s = rp_text(reading, sizeof reading, e, "%s ends at a median batch size of %s.", hin, his);
        else if (hi == lo)
            s = rp_text(reading, sizeof reading, e, "Every architecture ends at the same median batch size (%s).", his);
        else
            s = rp_text(reading, sizeof reading, e, "%s ends at the largest median batch size (%s), %s at the smallest "
                        "(%s).", hin, his, lon, los);
        if (s || (s = add_fig(L, &fs, reading, e))) {
            series_free(fs.s, fs.ns);
            return s;
        }
    }
    return DEBA_OK;
}

/* ▲/▼ where any seed of group g increased or rolled back its batch, on the curve y (per epoch). */
static deba_status decision_marks(const deba_analysis *a, const deba_group *g, const series *curve, series *up,
                                  series *down, deba_err *e)
{
    if (!series_alloc(up, curve->n, 0) || !series_alloc(down, curve->n, 0))
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    for (size_t t = 0; t < curve->n; t++) {
        int inc = 0, rb = 0;
        for (int k = 0; k < g->nseeds; k++) {
            const deba_trace *tr = &a->runs[g->members[k]].run->trace;
            if (t >= tr->n) continue;
            inc |= tr->rows[t].decision == DEBA_DEC_INCREASE;
            rb |= tr->rows[t].decision == DEBA_DEC_ROLLBACK;
        }
        if (inc) up->x[up->n] = curve->x[t], up->y[up->n++] = curve->y[t];
        if (rb) down->x[down->n] = curve->x[t], down->y[down->n++] = curve->y[t];
    }
    return DEBA_OK;
}

/* Figures 4 and 5 per (arch, dataset): training loss and test accuracy, fixed and DEBA as mean
 * ± 1 std over seeds, with DEBA's batch decisions marked. */
static deba_status curve_figs(const deba_analysis *a, figlist *L, deba_fig_style style, deba_err *e)
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
            fs.style = style;
            deba_status s;
            if ((s = rp_text(fs.stem, sizeof fs.stem, e, "%s_%s_%s", which ? "fig5_test_acc" : "fig4_train_loss", g0->arch,
                             g0->dataset)) ||
                (s = rp_text(fs.title, sizeof fs.title, e, "%s, %s/%s: fixed vs DEBA (mean ± std over seeds)",
                             which ? "Test accuracy" : "Training loss", g0->arch, g0->dataset)))
                return s;
            snprintf(fs.xlabel, sizeof fs.xlabel, "epoch");
            snprintf(fs.ylabel, sizeof fs.ylabel, "%s", which ? "test accuracy (%)" : "training loss");
            fs.key = which ? "bottom right" : "top right";
            fs.s = calloc(4, sizeof *fs.s);
            if (!fs.s) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
            double fin[2] = {NAN, NAN}, lo[2] = {NAN, NAN}, hi[2] = {NAN, NAN};
            int idx[2] = {fi, di}, n[2] = {0, 0};
            for (int k = 0; k < 2 && !s; k++) {
                if (idx[k] < 0) continue;
                const deba_group *g = &a->groups[idx[k]];
                series *se = &fs.s[fs.ns++];
                se->kind = SK_BAND;
                se->color = k ? C_BLUE : C_BLACK;
                n[k] = g->nseeds;
                snprintf(se->name, sizeof se->name, "%s (%d seed%s)", k ? "DEBA" : "fixed", g->nseeds,
                         g->nseeds == 1 ? "" : "s");
                s = group_band(a, g, which ? COL_ACC : COL_LOSS, se, e);
                if (!s && se->n) {
                    fin[k] = se->y[se->n - 1];
                    lo[k] = se->lo[se->n - 1];
                    hi[k] = se->hi[se->n - 1];
                }
                if (!s && k == 1) {
                    series *up = &fs.s[fs.ns++], *down = &fs.s[fs.ns++];
                    up->kind = SK_UP;
                    up->color = C_GREEN;
                    down->kind = SK_DOWN;
                    down->color = C_VERMILLION;
                    s = decision_marks(a, g, se, up, down, e);
                    if (!s && up->n) snprintf(up->name, sizeof up->name, "batch increase");
                    if (!s && down->n) snprintf(down->name, sizeof down->name, "rollback");
                }
            }
            char reading[512];
            if (!s) s = curve_reading(reading, sizeof reading, which, fin, lo, hi, n, e);
            if (s || (s = add_fig(L, &fs, reading, e))) {
                series_free(fs.s, fs.ns);
                return s;
            }
        }
    }
    return DEBA_OK;
}

deba_status rp_write_figures(const deba_analysis *a, const char *dir, deba_fig_style style, rp_figure **figs,
                             size_t *nfigs, deba_report_result *res, deba_err *e)
{
    figlist L = {0};
    if ((unsigned)style >= DEBA_FIG_STYLE_COUNT) return deba_err_set(e, DEBA_E_INPUT, "unknown figure style %d", (int)style);
    deba_status s = sweep_figs(a, &L, style, e);
    if (!s) s = trajectory_figs(a, &L, style, e);
    if (!s) s = curve_figs(a, &L, style, e);
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
                    char latex[sizeof f->name + 8];
                    snprintf(latex, sizeof latex, "%s_latex", f->name);   /* fits: 192 + 6 */
                    f->has_png = move_out(priv, dir, f->name, "png", ok);
                    f->has_svg = move_out(priv, dir, f->name, "svg", ok);
                    f->has_pdf = move_out(priv, dir, f->name, "pdf", ok);
                    /* cairolatex: the .tex and the .pdf it includes, both or neither */
                    int tex = ok && move_out(priv, dir, latex, "pdf", 1);
                    f->has_tex = move_out(priv, dir, latex, "tex", tex);
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
