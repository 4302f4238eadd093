/* Strings from data written into generated code and documents: one escaper per output language
 * (gnuplot, shell, LaTeX, Markdown, HTML, comment lines), and the one rule for names that become
 * path components or file stems. */
#ifndef DEBA_ESCAPE_H
#define DEBA_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

/* Every escaper works like snprintf: it writes at most cap bytes of the escaped form of s into
 * dst (always NUL-terminated when cap > 0; dst may be NULL when cap is 0, to measure) and returns
 * the length the whole escaped form needs, excluding the NUL. A result >= cap means dst holds a
 * truncated form that must not be used. A negative result means s cannot be written in that
 * language at all (dst then holds ""). */
typedef int (*deba_escaper)(char *dst, size_t cap, const char *s);

/* A gnuplot single-quoted string, quotes included: ' doubled, and each control character
 * (bytes 0x01-0x1f and 0x7f) replaced by a space, since gnuplot ends a command at a newline even
 * inside quotes. Single quotes, unlike double quotes, take no backslash escapes and no `command`
 * substitution. Never negative. */
int deba_esc_gnuplot(char *dst, size_t cap, const char *s);

/* Text for the rest of a '#' comment line in a gnuplot or shell script: control characters
 * become spaces (a newline would start a new, executed line) and a trailing backslash becomes
 * '/' (gnuplot continues a line ending in one, comments included). Never negative. */
int deba_esc_comment(char *dst, size_t cap, const char *s);

/* One POSIX shell word: s itself when it is non-empty and made only of [A-Za-z0-9_./:=+,@%-],
 * else single-quoted with each ' written as '\''. Negative when s holds a control character other
 * than tab: a line-oriented script (one command per line) has no portable way to carry one. */
int deba_esc_shell(char *dst, size_t cap, const char *s);

/* LaTeX text mode: \ & % $ # _ { } ~ ^ escaped, the UTF-8 symbols the report uses (± × τ θ λ σ Δ
 * S̄ ≥ ≤ → — –) as math or dashes, | as $|$, < and > as math, control characters as spaces.
 * Never negative. */
int deba_esc_latex(char *dst, size_t cap, const char *s);

/* Inline Markdown (a table cell, a list item, a heading): \ ` [ ] < | backslash-escaped, so data
 * never makes a link or link definition, an image, raw HTML, a code span or an extra table
 * column; control characters as spaces, so it never ends the line. Emphasis characters (* _)
 * are left as they are: they can only change how text looks. Never negative. */
int deba_esc_markdown(char *dst, size_t cap, const char *s);

/* HTML text or a double- or single-quoted attribute value: & < > " ' as entities, control
 * characters other than tab as spaces. Never negative. */
int deba_esc_html(char *dst, size_t cap, const char *s);

/* Writes esc(s) to f. 0 on success; -1 when s cannot be escaped, memory runs out or f failed. */
int deba_esc_fput(FILE *f, deba_escaper esc, const char *s);

/* The escaped form in a new string (free() it); NULL when s cannot be escaped or memory runs out. */
char *deba_esc_dup(deba_escaper esc, const char *s);

/* 1 when s may become a path component or a file stem: 1 to 63 characters (DEBA_NAME_MAX − 1)
 * from [A-Za-z0-9._-], and neither "." nor "..". */
int deba_name_ok(const char *s);

/* s for an error message: printable ASCII and UTF-8 kept, control characters as \n, \t, \r or
 * \xHH, at most 80 characters of s then "...". Writes into dst like snprintf (truncating is the
 * point here); returns dst. */
const char *deba_esc_msg(char *dst, size_t cap, const char *s);

#endif
