/* The escapers of deba/escape.h: each language's rules in one place, so a string from a CSV
 * file or the command line never becomes code in a generated script or document. */
#include "deba/escape.h"

#include <stdlib.h>
#include <string.h>
#include "deba/trace.h"

/* snprintf-style output: counts every byte, stores what fits. */
typedef struct {
    char *dst;
    size_t cap, n;
} out;

static void put(out *o, char c)
{
    if (o->n + 1 < o->cap) o->dst[o->n] = c;
    o->n++;
}

static void puts_(out *o, const char *s)
{
    for (; *s; s++) put(o, *s);
}

static int done(out *o)
{
    if (o->cap) o->dst[o->n < o->cap ? o->n : o->cap - 1] = '\0';
    return o->n > (size_t)0x7fffffff ? -1 : (int)o->n;
}

static int fail(out *o)
{
    if (o->cap) o->dst[0] = '\0';
    return -1;
}

static int is_ctrl(unsigned char c)
{
    return (c > 0 && c < 0x20) || c == 0x7f;
}

int deba_esc_gnuplot(char *dst, size_t cap, const char *s)
{
    out o = {dst, cap, 0};
    put(&o, '\'');
    for (; *s; s++) {
        if (*s == '\'') puts_(&o, "''");
        else put(&o, is_ctrl((unsigned char)*s) ? ' ' : *s);
    }
    put(&o, '\'');
    return done(&o);
}

int deba_esc_comment(char *dst, size_t cap, const char *s)
{
    out o = {dst, cap, 0};
    for (; *s; s++) {
        if (is_ctrl((unsigned char)*s)) put(&o, ' ');
        else if (*s == '\\' && s[1] == '\0') put(&o, '/');
        else put(&o, *s);
    }
    return done(&o);
}

int deba_esc_shell(char *dst, size_t cap, const char *s)
{
    out o = {dst, cap, 0};
    int safe = *s != '\0';
    for (const char *c = s; *c; c++) {
        if (*c != '\t' && is_ctrl((unsigned char)*c)) return fail(&o);
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr("_./:=+,@%-", *c)))
            safe = 0;
    }
    if (safe) {
        puts_(&o, s);
        return done(&o);
    }
    put(&o, '\'');
    for (; *s; s++) {
        if (*s == '\'') puts_(&o, "'\\''");
        else put(&o, *s);
    }
    put(&o, '\'');
    return done(&o);
}

int deba_esc_latex(char *dst, size_t cap, const char *s)
{
    static const struct {
        const char *u, *tex;
    } map[] = {
        {"±", "$\\pm$"}, {"×", "$\\times$"}, {"τ", "$\\tau$"}, {"θ", "$\\theta$"}, {"λ", "$\\lambda$"},
        {"σ", "$\\sigma$"}, {"Δ", "$\\Delta$"}, {"S̄", "$\\bar{S}$"}, {"≥", "$\\geq$"}, {"≤", "$\\leq$"},
        {"—", "---"}, {"–", "--"}, {"→", "$\\rightarrow$"}, {"|", "$|$"}, {"<", "$<$"}, {">", "$>$"},
        {"%", "\\%"}, {"&", "\\&"}, {"_", "\\_"}, {"#", "\\#"}, {"$", "\\$"}, {"{", "\\{"}, {"}", "\\}"},
        {"~", "\\textasciitilde{}"}, {"^", "\\textasciicircum{}"}, {"\\", "\\textbackslash{}"},
    };
    out o = {dst, cap, 0};
    while (*s) {
        size_t i, n = sizeof map / sizeof map[0];
        for (i = 0; i < n; i++) {
            size_t l = strlen(map[i].u);
            if (strncmp(s, map[i].u, l) == 0) {
                puts_(&o, map[i].tex);
                s += l;
                break;
            }
        }
        if (i == n) {
            put(&o, is_ctrl((unsigned char)*s) ? ' ' : *s);
            s++;
        }
    }
    return done(&o);
}

int deba_esc_markdown(char *dst, size_t cap, const char *s)
{
    out o = {dst, cap, 0};
    for (; *s; s++) {
        if (is_ctrl((unsigned char)*s)) {
            put(&o, ' ');
            continue;
        }
        if (strchr("\\`[]<|", *s)) put(&o, '\\');
        put(&o, *s);
    }
    return done(&o);
}

int deba_esc_html(char *dst, size_t cap, const char *s)
{
    out o = {dst, cap, 0};
    for (; *s; s++) {
        switch (*s) {
        case '&': puts_(&o, "&amp;"); break;
        case '<': puts_(&o, "&lt;"); break;
        case '>': puts_(&o, "&gt;"); break;
        case '"': puts_(&o, "&quot;"); break;
        case '\'': puts_(&o, "&#39;"); break;
        case '\t': put(&o, '\t'); break;
        default: put(&o, is_ctrl((unsigned char)*s) ? ' ' : *s);
        }
    }
    return done(&o);
}

char *deba_esc_dup(deba_escaper esc, const char *s)
{
    int n = esc(NULL, 0, s);
    if (n < 0) return NULL;
    char *d = malloc((size_t)n + 1);
    if (d && esc(d, (size_t)n + 1, s) != n) {
        free(d);
        return NULL;
    }
    return d;
}

int deba_esc_fput(FILE *f, deba_escaper esc, const char *s)
{
    char small[512];
    int n = esc(small, sizeof small, s);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return fwrite(small, 1, (size_t)n, f) == (size_t)n ? 0 : -1;
    char *d = deba_esc_dup(esc, s);
    if (!d) return -1;
    int rc = fwrite(d, 1, (size_t)n, f) == (size_t)n ? 0 : -1;
    free(d);
    return rc;
}

int deba_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= DEBA_NAME_MAX || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

const char *deba_esc_msg(char *dst, size_t cap, const char *s)
{
    out o = {dst, cap, 0};
    size_t k = 0;
    for (; *s && k < 80; s++, k++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n') puts_(&o, "\\n");
        else if (c == '\t') puts_(&o, "\\t");
        else if (c == '\r') puts_(&o, "\\r");
        else if (is_ctrl(c)) {
            static const char hex[] = "0123456789abcdef";
            puts_(&o, "\\x");
            put(&o, hex[c >> 4]);
            put(&o, hex[c & 15]);
        } else
            put(&o, *s);
    }
    if (*s) puts_(&o, "...");
    done(&o);
    return cap ? dst : "";
}
