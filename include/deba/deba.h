/* libdeba: everything a program needs to compute DEBA's signals, schedule batch sizes and read
 * or write the toolkit's CSV files. */
#ifndef DEBA_DEBA_H
#define DEBA_DEBA_H
#include "deba/error.h"
#include "deba/stats.h"
#include "deba/sched.h"
#include "deba/csv.h"
#include "deba/trace.h"
#include "deba/runlock.h"
#include "deba/run.h"
#endif
