/* The paper's tables (Markdown, LaTeX booktabs, CSV) and figures (gnuplot .dat/.gp, PNG and
 * SVG) rendered from an analysis of run directories, or from the paper's own published numbers
 * (paper mode), with index.md / index.html listing each with a computed one-line reading. */
#ifndef DEBA_REPORT_H
#define DEBA_REPORT_H

#include <stddef.h>
#include <stdio.h>
#include "deba/error.h"
#include "deba/stats.h"
#include "analyze/analyze.h"

enum { DEBA_REPORT_MD = 1, DEBA_REPORT_TEX = 2, DEBA_REPORT_CSV = 4 };

/* "md,tex,csv" (any subset, any order) into a bit set; the message names the bad word. */
deba_status deba_report_parse_formats(const char *s, unsigned *out, deba_err *e);

/* ---- the tables' inputs, wherever they came from ---- */
typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    double tau, theta, lambda;          /* NAN when not known (the paper prints no λ) */
} deba_t1_row;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    int seeds;                          /* 0 when unknown */
    double S_mean, S_std;
    deba_archetype archetype;           /* always recomputed from (S_mean, S_std) */
    deba_pd dacc;                       /* ΔAcc of DEBA (paper: mean only), mean NAN when none */
    char printed[64];                   /* archetype the source printed ("" when none) */
} deba_t2_row;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX], label[DEBA_NAME_MAX];
    const char *config;                 /* the group's configuration tag (deba_group.config) or NULL */
    deba_pd dacc, speedup;              /* speedup %; paper mode: mean only (n = 0) */
} deba_t3_row;

/* What the paper prints below Table 3 for one condition (paper mode only). */
typedef struct {
    char label[DEBA_NAME_MAX];
    int degraded, of;                   /* "3/6" */
    double mean_abs_dacc;
} deba_t3_printed;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    const char *config;                 /* configuration tag of the DEBA (else fixed) group, or NULL */
    deba_ms acc_fixed, acc_deba, time_fixed, time_deba;   /* per group: mean ± std */
    deba_pd dacc, speedup;              /* paired per seed: mean [95% CI]; paper mode: mean only */
    double speedup_x;                   /* T_fixed / T_deba, or from speedup % */
    double throughput_x;                /* mean samples/s ratio (printed in paper mode) */
} deba_t4_row;

typedef struct {
    deba_t1_row *t1; size_t n1;
    deba_t2_row *t2; size_t n2;
    deba_t3_row *t3; size_t n3;
    deba_t3_printed *t3p; size_t n3p;
    deba_t4_row *t4; size_t n4;
    const deba_analysis *analysis;      /* runs mode: curves, sweep, warnings; NULL in paper mode */
    char **notes; size_t nnotes;        /* paper mode: inconsistencies found, one per place */
    int *note_cause;                    /* paper mode: nnotes indices into causes */
    char **causes; size_t ncauses;      /* paper mode: root causes (the tool's explanation) */
    size_t nchecks;                     /* paper mode: how many checks were made */
    int paper;
} deba_report_data;

/* Builds the tables' rows from an analysis (Table 1 from thresholds.csv, else the DEBA runs'
 * meta; Table 2 from profile_summary.csv, else the fixed runs' stability scores). */
deba_status deba_report_from_analysis(const deba_analysis *a, deba_report_data *d, deba_err *e);
/* Reads data/paper/ CSVs, recomputes every derived number and fills d->notes with each place
 * where the printed paper disagrees with itself. */
deba_status deba_report_from_paper(const char *dir, deba_report_data *d, deba_err *e);
void deba_report_data_free(deba_report_data *d);

/* Figure sizes and fonts (--style): screen (960×600 px, 10 pt, titled) or paper (one column,
 * 3.5 in × 2.45 in, 8 pt, no title: the caption carries it). */
typedef enum { DEBA_FIG_SCREEN, DEBA_FIG_PAPER, DEBA_FIG_STYLE_COUNT } deba_fig_style;

typedef struct {
    const char *out_dir;
    unsigned formats;
    int figures;                        /* 0: --no-figures */
    int quiet;
    deba_fig_style style;               /* figures' style; 0 (screen) when not set */
} deba_report_opts;

/* Paper mode's root causes with their places: "1. <cause>" then its items, in Markdown. */
void rp_causes_md(FILE *f, const deba_report_data *d);

/* What deba_report_write did, for the tool's summary. */
typedef struct {
    int tables, figures, pngs;
    int gnuplot_missing, gnuplot_failed;
} deba_report_result;

/* Writes <out>/tables/, <out>/figures/, index.md, index.html (and inconsistencies.md in
 * paper mode). Every file is written atomically. out_dir must exist. */
deba_status deba_report_write(const deba_report_data *d, const deba_report_opts *o, deba_report_result *res,
                              deba_err *e);

/* ---- internals shared by the report/ sources ---- */
#define RP_MAXCOLS 24
typedef struct {
    char id[32], title[256], reading[2048];   /* title: "Table N: caption" (Markdown, HTML) */
    int ncols;
    char head[RP_MAXCOLS][96];          /* a condition name (< DEBA_NAME_MAX) and " Speedup (%)" */
    char align[RP_MAXCOLS];
    /* LaTeX only: a spanning header row above head (Table 3's condition names) */
    int ngroups;
    char group[RP_MAXCOLS][64];
    int span[RP_MAXCOLS];
    char **cells;                       /* nrows × ncols, malloc'd strings */
    int *rule_before;
    size_t nrows, cap;
} rp_table;

void rp_table_init(rp_table *t, const char *id, const char *title, int ncols);
void rp_table_free(rp_table *t);
void rp_set_head(rp_table *t, int col, const char *head, char align);
/* Appends a row of ncols cells; returns its index or -1 when out of memory. */
long rp_add_row(rp_table *t, const char *const *cells);
/* Every cell, header, title and reading goes through deba/escape.h's escaper of the format. */
void rp_table_md(FILE *f, const rp_table *t);
void rp_table_tex(FILE *f, const rp_table *t);
void rp_table_html(FILE *f, const rp_table *t);
/* Text into Markdown, LaTeX or HTML (deba_esc_markdown, deba_esc_latex, deba_esc_html). */
void rp_md(FILE *f, const char *s);
void rp_tex(FILE *f, const char *s);
void rp_html(FILE *f, const char *s);

/* Number formatting: "—" for NAN or an infinity; sign adds '+' on non-negative values; a
 * magnitude of 1e15 or more in exponent notation, so one number never takes more than
 * RP_NUM_MAX bytes. 0, or -1 when cap is too small (buf then holds a cut form: do not use it). */
#define RP_NUM_MAX 32
int rp_fmt(char *buf, size_t cap, double v, int prec, int sign);
/* "v ± sd" (the ± part left out when sd is NAN); at most 2 RP_NUM_MAX + 4 bytes. 0 or -1 as rp_fmt. */
int rp_fmt_ms(char *buf, size_t cap, deba_ms m, int prec, int sign);
/* A paired comparison as a table cell: "+2.50 [-3.85, +8.85]" (mean [95% CI]; sign as rp_fmt for
 * the mean, the bounds always signed), "+2.50 (n=1)" with
 * one seed, the mean alone when no seed data exist (paper mode), "—" without a mean; at most
 * 3 RP_NUM_MAX + 8 bytes. 0 or -1 as rp_fmt. */
int rp_fmt_pd(char *buf, size_t cap, deba_pd d, int prec, int sign);
/* A paired comparison in a sentence, in `unit` ("points", "%"): "+2.5 points (95% CI +1.2 to +3.8,
 * n = 3)" when the interval excludes 0, "no measurable difference (95% CI −3.1 to +4.2 points,
 * n = 3)" when it spans 0, "no difference in any of the 3 seeds" when every difference is 0,
 * "+2.5 points, one seed: no uncertainty estimate" for n = 1, "no
 * seed ran both" for n = 0 with no mean, "+2.5 points (as printed, no interval)" for paper mode. */
deba_status rp_pd_phrase(char *buf, size_t cap, deba_err *e, deba_pd d, int prec, const char *unit);
/* 1 when the interval lies above 0, -1 below 0, 0 when it spans 0 or there is none. */
int rp_pd_sign(deba_pd d);
/* rp_fmt that fails with DEBA_E_RUNTIME instead of leaving a cut number. */
deba_status rp_num(char *buf, size_t cap, deba_err *e, double v, int prec, int sign);
/* snprintf that fails instead of cutting: rp_path with DEBA_E_INPUT naming the start of the
 * path (a long --out or run directory), rp_text with DEBA_E_RUNTIME (a text field whose
 * formats are bounded: a cut would be a bug here). */
deba_status rp_path(char *buf, size_t cap, deba_err *e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
deba_status rp_text(char *buf, size_t cap, deba_err *e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Builds the four tables (rp_table[4], ids table1..table4), each with its reading. */
deba_status rp_build_tables(const deba_report_data *d, rp_table tables[4], deba_err *e);
/* Writes the tables' CSV forms (raw numbers, mean and std in separate columns). */
deba_status rp_write_csv(const deba_report_data *d, const char *tables_dir, deba_err *e);

typedef struct {
    char name[192];                     /* file stem in figures/ */
    char title[256];
    char reading[512];
    int has_png, has_svg;
    int has_pdf, has_tex;               /* <name>.pdf; <name>_latex.tex with <name>_latex.pdf */
} rp_figure;

/* Writes each figure's .dat and .gp under fig_dir and runs gnuplot on them when found. */
deba_status rp_write_figures(const deba_analysis *a, const char *fig_dir, deba_fig_style style, rp_figure **figs,
                             size_t *nfigs, deba_report_result *res, deba_err *e);

/* Atomic write of a whole text file built by a callback. */
typedef void (*rp_writer)(FILE *f, const void *ctx);
deba_status rp_write_file(const char *path, rp_writer w, const void *ctx, deba_err *e);

#endif
