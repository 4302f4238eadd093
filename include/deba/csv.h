/* CSV tables read with libcsv (columns found by header name) and written atomically
 * (temporary file, then rename). Every error names the file, line and column. */
#ifndef DEBA_CSV_H
#define DEBA_CSV_H

#include <stddef.h>
#include <stdio.h>
#include "deba/error.h"

/* ---- reading ---- */
typedef struct deba_table deba_table;

/* Parses the whole file. Errors (DEBA_E_INPUT): missing or unreadable file, empty file, no
 * header, empty or duplicate header name, ragged row (line named), malformed quoting. */
deba_status deba_table_read(const char *path, deba_table **out, deba_err *e);
void deba_table_free(deba_table *t);
const char *deba_table_path(const deba_table *t);
size_t deba_table_nrows(const deba_table *t);      /* data rows, header excluded */
size_t deba_table_ncols(const deba_table *t);
const char *deba_table_header(const deba_table *t, size_t col);
/* 1-based physical line number of data row `row` in the file (for messages). */
size_t deba_table_line(const deba_table *t, size_t row);
/* Column index by header name; a missing column is DEBA_E_INPUT naming file and column. */
deba_status deba_table_col(const deba_table *t, const char *name, size_t *col, deba_err *e);
const char *deba_table_str(const deba_table *t, size_t row, size_t col);
/* Number cells: non-numeric, trailing junk, empty, NaN or infinite are DEBA_E_INPUT with
 * "<file>:<line>: column '<name>' (<col>): ...". */
deba_status deba_table_double(const deba_table *t, size_t row, size_t col, double *v, deba_err *e);
deba_status deba_table_int(const deba_table *t, size_t row, size_t col, long *v, deba_err *e);

/* ---- writing ---- */
/* An atomic writer: rows go to ".<name>.tmp.<pid>.<random>" beside path, created with
 * O_EXCL|O_NOFOLLOW (a planted file or symlink is never followed); deba_atomic_commit fsyncs it,
 * renames it over path and fsyncs the directory; deba_atomic_abort removes it. A crash never
 * leaves a half-written path, only a temporary file that deba_atomic_clean_stale removes. */
typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4200];
} deba_atomic;

deba_status deba_atomic_open(deba_atomic *a, const char *path, deba_err *e);
deba_status deba_atomic_commit(deba_atomic *a, deba_err *e);
void deba_atomic_abort(deba_atomic *a);
/* Removes from dir the temporary files of atomic writers whose process is gone (a kill -9 in
 * the middle of a write); a live writer's are left alone. *removed (may be NULL) counts them. */
deba_status deba_atomic_clean_stale(const char *dir, int *removed, deba_err *e);

/* Writes one CSV field, quoting it when it holds a comma, quote or newline. */
void deba_csv_field(FILE *f, const char *s);
/* Shortest round-tripping representation of a double (%.17g trimmed), "nan" never written:
 * callers check finiteness first. */
void deba_csv_double(FILE *f, double v);

#endif
