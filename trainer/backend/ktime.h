/* Time per named piece of work (an op of the CPU table, a CUDA kernel), summed for the run and
 * for the current epoch: what a backend's timing entries record into. Compiled into the
 * trainer and into the CUDA module alike; thread-safe (CUPTI delivers on its own thread). */
#ifndef TR_BACKEND_KTIME_H
#define TR_BACKEND_KTIME_H

#include <stdint.h>
#include "trainer/graph.h"

typedef struct tr_ktime tr_ktime;

tr_ktime *tr_ktime_new(void);                     /* NULL when out of memory */
void tr_ktime_free(tr_ktime *kt);                 /* NULL is a no-op */
/* on = 1 zeroes the epoch sum and starts counting; on = 0 stops. Nothing counts outside. */
void tr_ktime_epoch(tr_ktime *kt, int on);
double tr_ktime_epoch_seconds(tr_ktime *kt);
/* One call of `name` taking `seconds`: counted only inside an epoch; a row that cannot be
 * stored (host OOM) is counted as lost. */
void tr_ktime_add(tr_ktime *kt, const char *name, double seconds);
void tr_ktime_lost(tr_ktime *kt, uint64_t records);
/* Calls fn for each row (in no particular order); returns the records lost. */
uint64_t tr_ktime_read(tr_ktime *kt, tr_timing_row_fn fn, void *arg);

#endif
