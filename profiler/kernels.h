/* Kernel timing per epoch and per run (SPEC §7 compute_time_s, §8 kernels.csv). On the CUDA
 * backend: CUPTI activity records of every kernel, memcpy and memset, summed per epoch and
 * aggregated by (demangled) name. On the CPU backend: the same API from clock_gettime, by
 * wrapping the backend's op table (forward/backward of each op type, xent, sgd, grad_moments)
 * with timing trampolines for the profiler's lifetime; rows are named "<op>.forward",
 * "<op>.backward", "xent", "sgd", "grad_moments".
 *
 * Use:
 *     tr_kprof *kp = tr_kprof_new(be, &e);          // after the backend, before training
 *     for each epoch:
 *         tr_kprof_epoch_begin(kp);
 *         ... training steps ...
 *         es.compute = tr_kprof_epoch_end(kp);      // seconds of device work in the epoch
 *     tr_kprof_write_csv(kp, "<run dir>/kernels.csv", &e);
 *     tr_kprof_free(kp);                            // restores the CPU table; before the backend
 *
 * Only work between epoch_begin and epoch_end is counted (evaluation between epochs is not).
 * One profiler per process at a time: CUPTI's buffer callbacks are process-wide, and the CPU
 * trampolines find their profiler through the same process-wide pointer. */
#ifndef DEBA_PROFILER_KERNELS_H
#define DEBA_PROFILER_KERNELS_H

#include <stdint.h>
#include "deba/error.h"
#include "trainer/graph.h"

typedef struct tr_kprof tr_kprof;

/* DEBA_E_RUNTIME when another profiler is active or CUPTI refuses (message names the CUPTI
 * call and its error string). */
tr_kprof *tr_kprof_new(tr_backend *be, deba_err *e);
void tr_kprof_epoch_begin(tr_kprof *kp);
/* Synchronises the device, flushes CUPTI's buffers and returns the summed durations (seconds)
 * of the kernels, copies and sets recorded since tr_kprof_epoch_begin. */
double tr_kprof_epoch_end(tr_kprof *kp);
/* Adds one timed call to row `name` (counted only inside an epoch): for host-side work the lead
 * wants in the table, and what the CPU trampolines call. */
void tr_kprof_cpu_record(tr_kprof *kp, const char *name, double seconds);
/* kernels.csv: name,calls,total_s,mean_us,share sorted by total_s (largest first); share is
 * total_s over the sum of all rows. Atomic (temporary file, then rename). */
deba_status tr_kprof_write_csv(tr_kprof *kp, const char *path, deba_err *e);
/* 1 when timing comes from CUPTI, 0 from clock_gettime. */
int tr_kprof_uses_cupti(const tr_kprof *kp);
/* CUPTI records lost because buffers were full (0 on the CPU). */
uint64_t tr_kprof_dropped(const tr_kprof *kp);
void tr_kprof_free(tr_kprof *kp);   /* NULL is a no-op */

#endif
