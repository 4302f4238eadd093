/* One table model (header, cells, rules) rendered as Markdown, LaTeX booktabs or HTML, and the
 * number formatting every table shares. */
#include "report/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "deba/csv.h"
#include "deba/escape.h"

int rp_fmt(char *buf, size_t cap, double v, int prec, int sign)
{
    int n;
    if (isnan(v) || isinf(v)) n = snprintf(buf, cap, "—");
    else {
        if (fabs(v) < 0.5 * pow(10.0, -prec)) v = 0.0; /* no "-0.00" */
        if (fabs(v) >= 1e15) n = snprintf(buf, cap, sign ? "%+.*e" : "%.*e", prec, v);
        else n = snprintf(buf, cap, sign ? "%+.*f" : "%.*f", prec, v);
    }
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int rp_fmt_ms(char *buf, size_t cap, deba_ms m, int prec, int sign)
{
    char a[RP_NUM_MAX], b[RP_NUM_MAX];
    if (rp_fmt(a, sizeof a, m.mean, prec, sign)) return -1;
    int n;
    if (isnan(m.mean) || isnan(m.std)) n = snprintf(buf, cap, "%s", a);
    else if (rp_fmt(b, sizeof b, m.std, prec, 0)) return -1;
    else n = snprintf(buf, cap, "%s ± %s", a, b);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int rp_fmt_pd(char *buf, size_t cap, deba_pd d, int prec, int sign)
{
    char m[RP_NUM_MAX], lo[RP_NUM_MAX], hi[RP_NUM_MAX];
    if (rp_fmt(m, sizeof m, d.mean, prec, sign)) return -1;
    int n;
    if (isnan(d.mean)) n = snprintf(buf, cap, "—");
    else if (d.n >= 2 && !isnan(d.lo) && !isnan(d.hi)) {
        if (rp_fmt(lo, sizeof lo, d.lo, prec, 1) || rp_fmt(hi, sizeof hi, d.hi, prec, 1)) return -1;
        n = snprintf(buf, cap, "%s [%s, %s]", m, lo, hi);
    } else if (d.n == 1) n = snprintf(buf, cap, "%s (n=1)", m);
    else n = snprintf(buf, cap, "%s", m);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int rp_pd_sign(deba_pd d)
{
    if (d.n < 2 || isnan(d.lo) || isnan(d.hi)) return 0;
    return d.lo > 0 ? 1 : d.hi < 0 ? -1 : 0;
}

/* rp_fmt with a sign and a typographic minus, for sentences. */
static int fmt_signed(char *buf, size_t cap, double v, int prec)
{
    char t[RP_NUM_MAX];
    if (rp_fmt(t, sizeof t, v, prec, 1)) return -1;
    int n = t[0] == '-' ? snprintf(buf, cap, "−%s", t + 1) : snprintf(buf, cap, "%s", t);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

deba_status rp_pd_phrase(char *buf, size_t cap, deba_err *e, deba_pd d, int prec, const char *unit)
{
    char m[RP_NUM_MAX + 4], lo[RP_NUM_MAX + 4], hi[RP_NUM_MAX + 4];
    const char *sp = strcmp(unit, "%") ? " " : "";
    if (isnan(d.mean)) return rp_text(buf, cap, e, "no seed ran both");
    if (fmt_signed(m, sizeof m, d.mean, prec)) return deba_err_set(e, DEBA_E_RUNTIME, "internal: number too long");
    if (d.n == 0) return rp_text(buf, cap, e, "%s%s%s (as printed, no interval)", m, sp, unit);
    if (d.n == 1 || isnan(d.lo) || isnan(d.hi))
        return rp_text(buf, cap, e, "%s%s%s, one seed: no uncertainty estimate", m, sp, unit);
    if (fmt_signed(lo, sizeof lo, d.lo, prec) || fmt_signed(hi, sizeof hi, d.hi, prec))
        return deba_err_set(e, DEBA_E_RUNTIME, "internal: number too long");
    if (d.lo == 0 && d.hi == 0)   /* every seed identical to its fixed run (a scheduler that never moved) */
        return rp_text(buf, cap, e, "no difference in any of the %d seeds", d.n);
    if (rp_pd_sign(d) == 0)
        return rp_text(buf, cap, e, "no measurable difference (95%% CI %s to %s%s%s, n = %d)", lo, hi, sp, unit, d.n);
    return rp_text(buf, cap, e, "%s%s%s (95%% CI %s to %s, n = %d)", m, sp, unit, lo, hi, d.n);
}

deba_status rp_num(char *buf, size_t cap, deba_err *e, double v, int prec, int sign)
{
    if (rp_fmt(buf, cap, v, prec, sign))
        return deba_err_set(e, DEBA_E_RUNTIME, "internal: number %g does not fit in %zu bytes", v, cap);
    return DEBA_OK;
}

deba_status rp_path(char *buf, size_t cap, deba_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return deba_err_set(e, DEBA_E_INPUT, "path too long (%d bytes, at most %zu): %.80s...", n, cap - 1, buf);
    return DEBA_OK;
}

deba_status rp_text(char *buf, size_t cap, deba_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return deba_err_set(e, DEBA_E_RUNTIME, "internal: text of %d bytes does not fit its %zu-byte field: %.80s...", n,
                            cap, buf);
    return DEBA_OK;
}

void rp_table_init(rp_table *t, const char *id, const char *title, int ncols)
{
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", id);
    snprintf(t->title, sizeof t->title, "%s", title);
    t->ncols = ncols > RP_MAXCOLS ? RP_MAXCOLS : ncols;
    for (int i = 0; i < t->ncols; i++) t->align[i] = 'r';
}

void rp_table_free(rp_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t->rule_before);
    t->cells = NULL;
    t->rule_before = NULL;
    t->nrows = t->cap = 0;
}

void rp_set_head(rp_table *t, int col, const char *head, char align)
{
    if (col < 0 || col >= t->ncols) return;
    snprintf(t->head[col], sizeof t->head[col], "%s", head);
    t->align[col] = align;
}

long rp_add_row(rp_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        char **c = realloc(t->cells, cap * (size_t)t->ncols * sizeof *c);
        if (!c) return -1;
        t->cells = c;
        int *r = realloc(t->rule_before, cap * sizeof *r);
        if (!r) return -1;
        t->rule_before = r;
        t->cap = cap;
    }
    size_t base = t->nrows * (size_t)t->ncols;
    for (int i = 0; i < t->ncols; i++) {
        t->cells[base + i] = strdup(cells[i] ? cells[i] : "");
        if (!t->cells[base + i]) {
            while (i-- > 0) free(t->cells[base + i]);
            return -1;
        }
    }
    t->rule_before[t->nrows] = 0;
    return (long)t->nrows++;
}

static const char *cell(const rp_table *t, size_t r, int c)
{
    return t->cells[r * (size_t)t->ncols + c];
}

void rp_md(FILE *f, const char *s)
{
    deba_esc_fput(f, deba_esc_markdown, s);
}

void rp_tex(FILE *f, const char *s)
{
    deba_esc_fput(f, deba_esc_latex, s);
}

void rp_html(FILE *f, const char *s)
{
    deba_esc_fput(f, deba_esc_html, s);
}

void rp_table_md(FILE *f, const rp_table *t)
{
    fputc('|', f);
    for (int c = 0; c < t->ncols; c++) {
        fputc(' ', f);
        rp_md(f, t->head[c]);
        fputs(" |", f);
    }
    fputs("\n|", f);
    for (int c = 0; c < t->ncols; c++) fputs(t->align[c] == 'l' ? ":---|" : "---:|", f);
    fputc('\n', f);
    for (size_t r = 0; r < t->nrows; r++) {
        fputc('|', f);
        for (int c = 0; c < t->ncols; c++) {
            fputc(' ', f);
            rp_md(f, cell(t, r, c));
            fputs(" |", f);
        }
        fputc('\n', f);
    }
}

/* The title without its "Table N: " (LaTeX numbers its tables itself: "Table 1: Table 4: ..."). */
static const char *rp_caption(const char *title)
{
    if (strncmp(title, "Table ", 6)) return title;
    const char *p = title + 6;
    size_t nd = strspn(p, "0123456789");
    if (nd == 0 || p[nd] != ':') return title;
    p += nd + 1;
    return p + strspn(p, " ");
}

void rp_table_tex(FILE *f, const rp_table *t)
{
    /* more than six columns do not fit one column of a two-column paper: table* spans both */
    const char *env = t->ncols > 6 ? "table*" : "table";
    fprintf(f, "%% requires \\usepackage{booktabs}\n\\begin{%s}[t]\n\\centering\n\\caption{", env);
    rp_tex(f, rp_caption(t->title));
    fprintf(f, "}\n\\label{tab:%s}\n\\begin{tabular}{", t->id);
    for (int c = 0; c < t->ncols; c++) fputc(t->align[c] == 'l' ? 'l' : 'r', f);
    fputs("}\n\\toprule\n", f);
    if (t->ngroups > 0) {
        int col = 0;
        for (int g = 0; g < t->ngroups; g++) {
            if (g) fputs(" & ", f);
            if (t->span[g] > 1) {
                fprintf(f, "\\multicolumn{%d}{c}{", t->span[g]);
                rp_tex(f, t->group[g]);
                fputc('}', f);
            } else {
                rp_tex(f, t->group[g]);
            }
            col += t->span[g];
        }
        fputs(" \\\\\n", f);
        col = 0;
        for (int g = 0; g < t->ngroups; g++) {
            if (t->span[g] > 1 && t->group[g][0])
                fprintf(f, "\\cmidrule(lr){%d-%d}", col + 1, col + t->span[g]);
            col += t->span[g];
        }
        fputc('\n', f);
    }
    for (int c = 0, g = 0, gend = t->ngroups ? t->span[0] : 0; c < t->ncols; c++) {
        if (c) fputs(" & ", f);
        while (t->ngroups && c >= gend && g + 1 < t->ngroups) gend += t->span[++g];
        /* under a spanning group name the column's own name is enough */
        const char *h = t->head[c];
        size_t gl = t->ngroups ? strlen(t->group[g]) : 0;
        if (gl && !strncmp(h, t->group[g], gl) && h[gl] == ' ') h += gl + 1;
        rp_tex(f, h);
    }
    fputs(" \\\\\n\\midrule\n", f);
    for (size_t r = 0; r < t->nrows; r++) {
        if (t->rule_before[r]) fputs("\\midrule\n", f);
        for (int c = 0; c < t->ncols; c++) {
            if (c) fputs(" & ", f);
            rp_tex(f, cell(t, r, c));
        }
        fputs(" \\\\\n", f);
    }
    fprintf(f, "\\bottomrule\n\\end{tabular}\n\\end{%s}\n", env);
}

void rp_table_html(FILE *f, const rp_table *t)
{
    fputs("<table>\n<thead><tr>", f);
    for (int c = 0; c < t->ncols; c++) {
        fputs("<th>", f);
        rp_html(f, t->head[c]);
        fputs("</th>", f);
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    for (size_t r = 0; r < t->nrows; r++) {
        fputs(t->rule_before[r] ? "<tr class=\"rule\">" : "<tr>", f);
        for (int c = 0; c < t->ncols; c++) {
            fputs(t->align[c] == 'l' ? "<td>" : "<td class=\"n\">", f);
            rp_html(f, cell(t, r, c));
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody>\n</table>\n", f);
}

deba_status rp_write_file(const char *path, rp_writer w, const void *ctx, deba_err *e)
{
    deba_atomic a;
    deba_status s = deba_atomic_open(&a, path, e);
    if (s) return s;
    w(a.f, ctx);
    if (ferror(a.f)) {
        deba_atomic_abort(&a);
        return deba_err_set(e, DEBA_E_IO, "write failed: %s", path);
    }
    return deba_atomic_commit(&a, e);
}
