/* One table model (header, cells, rules) rendered as Markdown, LaTeX booktabs or HTML, and the
 * number formatting every table shares. */
#include "report/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "deba/csv.h"

void rp_fmt(char *buf, size_t cap, double v, int prec, int sign)
{
    if (isnan(v) || isinf(v)) {
        snprintf(buf, cap, "—");
        return;
    }
    if (fabs(v) < 0.5 * pow(10.0, -prec)) v = 0.0; /* no "-0.00" */
    snprintf(buf, cap, sign ? "%+.*f" : "%.*f", prec, v);
}

void rp_fmt_ms(char *buf, size_t cap, deba_ms m, int prec, int sign)
{
    char a[64], b[64];
    rp_fmt(a, sizeof a, m.mean, prec, sign);
    if (isnan(m.mean) || isnan(m.std)) {
        snprintf(buf, cap, "%s", a);
        return;
    }
    rp_fmt(b, sizeof b, m.std, prec, 0);
    snprintf(buf, cap, "%s ± %s", a, b);
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

/* Markdown: a pipe in a cell would end it. */
static void md_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else fputc(*s, f);
    }
}

void rp_table_md(FILE *f, const rp_table *t)
{
    fputc('|', f);
    for (int c = 0; c < t->ncols; c++) {
        fputc(' ', f);
        md_cell(f, t->head[c]);
        fputs(" |", f);
    }
    fputs("\n|", f);
    for (int c = 0; c < t->ncols; c++) fputs(t->align[c] == 'l' ? ":---|" : "---:|", f);
    fputc('\n', f);
    for (size_t r = 0; r < t->nrows; r++) {
        fputc('|', f);
        for (int c = 0; c < t->ncols; c++) {
            fputc(' ', f);
            md_cell(f, cell(t, r, c));
            fputs(" |", f);
        }
        fputc('\n', f);
    }
}

/* UTF-8 symbols the tables use, and TeX's special characters. */
static void tex_text(FILE *f, const char *s)
{
    static const struct {
        const char *u, *tex;
    } map[] = {
        {"±", "$\\pm$"}, {"×", "$\\times$"}, {"τ", "$\\tau$"}, {"θ", "$\\theta$"}, {"λ", "$\\lambda$"},
        {"σ", "$\\sigma$"}, {"Δ", "$\\Delta$"}, {"S̄", "$\\bar{S}$"}, {"≥", "$\\geq$"}, {"≤", "$\\leq$"},
        {"—", "---"}, {"–", "--"}, {"|", "$|$"}, {"%", "\\%"}, {"&", "\\&"}, {"_", "\\_"}, {"#", "\\#"},
        {"$", "\\$"}, {"{", "\\{"}, {"}", "\\}"}, {"~", "\\textasciitilde{}"}, {"^", "\\textasciicircum{}"},
        {"\\", "\\textbackslash{}"}, {"→", "$\\rightarrow$"},
    };
    while (*s) {
        size_t i, n = sizeof map / sizeof map[0];
        for (i = 0; i < n; i++) {
            size_t l = strlen(map[i].u);
            if (strncmp(s, map[i].u, l) == 0) {
                fputs(map[i].tex, f);
                s += l;
                break;
            }
        }
        if (i == n) fputc(*s++, f);
    }
}

void rp_table_tex(FILE *f, const rp_table *t)
{
    fputs("% requires \\usepackage{booktabs}\n\\begin{table}[t]\n\\centering\n\\caption{", f);
    tex_text(f, t->title);
    fprintf(f, "}\n\\label{tab:%s}\n\\begin{tabular}{", t->id);
    for (int c = 0; c < t->ncols; c++) fputc(t->align[c] == 'l' ? 'l' : 'r', f);
    fputs("}\n\\toprule\n", f);
    if (t->ngroups > 0) {
        int col = 0;
        for (int g = 0; g < t->ngroups; g++) {
            if (g) fputs(" & ", f);
            if (t->span[g] > 1) {
                fprintf(f, "\\multicolumn{%d}{c}{", t->span[g]);
                tex_text(f, t->group[g]);
                fputc('}', f);
            } else {
                tex_text(f, t->group[g]);
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
        tex_text(f, h);
    }
    fputs(" \\\\\n\\midrule\n", f);
    for (size_t r = 0; r < t->nrows; r++) {
        if (t->rule_before[r]) fputs("\\midrule\n", f);
        for (int c = 0; c < t->ncols; c++) {
            if (c) fputs(" & ", f);
            tex_text(f, cell(t, r, c));
        }
        fputs(" \\\\\n", f);
    }
    fputs("\\bottomrule\n\\end{tabular}\n\\end{table}\n", f);
}

void rp_html_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

void rp_table_html(FILE *f, const rp_table *t)
{
    fputs("<table>\n<thead><tr>", f);
    for (int c = 0; c < t->ncols; c++) {
        fputs("<th>", f);
        rp_html_escape(f, t->head[c]);
        fputs("</th>", f);
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    for (size_t r = 0; r < t->nrows; r++) {
        fputs(t->rule_before[r] ? "<tr class=\"rule\">" : "<tr>", f);
        for (int c = 0; c < t->ncols; c++) {
            fputs(t->align[c] == 'l' ? "<td>" : "<td class=\"n\">", f);
            rp_html_escape(f, cell(t, r, c));
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
