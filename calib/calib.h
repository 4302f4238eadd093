/* Calibration of DEBA's thresholds (SPEC §4) from loaded runs: the library half of
 * deba-calibrate, reused by deba-profile. */
#ifndef DEBA_CALIB_H
#define DEBA_CALIB_H

#include <stddef.h>
#include <stdio.h>
#include "deba/error.h"
#include "deba/trace.h"

/* 1 when a run is usable for calibration: meta method `fixed` and status `completed`. */
int deba_calib_usable(const deba_run *run);

/* Groups the usable runs by meta (arch, dataset), pools epochs t >= 2 of all their seeds and
 * calibrates each group. *rows (free() it) holds one row per group sorted by arch, then dataset.
 * No usable run, a usable run without arch or dataset, or a group with no epoch t >= 2 is
 * DEBA_E_INPUT. */
deba_status deba_calib_thresholds(const deba_run *runs, size_t n, deba_thresholds_row **rows,
                                  size_t *nrows, deba_err *e);

/* What the runs are, for a message when none is usable: "3 runs: 2 deba, 1 running" (a run is
 * counted under its method when that is not `fixed`, else under its status). */
void deba_calib_census(const deba_run *runs, size_t n, char *buf, size_t cap);

/* The rows as an aligned table with a header line. */
void deba_calib_print(FILE *f, const deba_thresholds_row *rows, size_t n);

#endif
