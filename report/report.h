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
    double dacc;                        /* ΔAcc of DEBA, NAN when none */
    char printed[64];                   /* archetype the source printed ("" when none) */
} deba_t2_row;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX], label[DEBA_NAME_MAX];
    deba_ms dacc, speedup;              /* speedup % */
} deba_t3_row;

/* What the paper prints below Table 3 for one condition (paper mode only). */
typedef struct {
    char label[DEBA_NAME_MAX];
    int degraded, of;                   /* "3/6" */
    double mean_abs_dacc;
} deba_t3_printed;

typedef struct {
    char arch[DEBA_NAME_MAX], dataset[DEBA_NAME_MAX];
    deba_ms acc_fixed, acc_deba, dacc, time_fixed, time_deba, speedup;
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
    char **notes; size_t nnotes;        /* paper mode: inconsistencies found */
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

typedef struct {
    const char *out_dir;
    unsigned formats;
    int figures;                        /* 0: --no-figures */
    int quiet;
} deba_report_opts;

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
    char id[32], title[256], reading[1024];
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
} rp_figure;

/* Writes each figure's .dat and .gp under fig_dir and runs gnuplot on them when found. */
deba_status rp_write_figures(const deba_analysis *a, const char *fig_dir, rp_figure **figs, size_t *nfigs,
                             deba_report_result *res, deba_err *e);

/* Atomic write of a whole text file built by a callback. */
typedef void (*rp_writer)(FILE *f, const void *ctx);
deba_status rp_write_file(const char *path, rp_writer w, const void *ctx, deba_err *e);

#endif
