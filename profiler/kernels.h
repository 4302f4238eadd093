/* The profiler's view of kernel timing (SPEC §7 compute_time_s, §8 kernels.csv) for benchmarks
 * and tools that hold a backend themselves: it starts the backend's own timing and reads what
 * the backend recorded. The recording belongs to the backends (their table's timing entries,
 * trainer/backend/backend.h): CUPTI activity of every kernel, memcpy and memset inside the CUDA
 * module, clock_gettime around each op of the CPU table ("<op>.forward", "<op>.backward",
 * "xent", "sgd", "grad_moments").
 *
 * Use:
 *     tr_kprof *kp = tr_kprof_new(be, &e);          // after the backend, before the work
 *     for each epoch:
 *         tr_kprof_epoch_begin(kp);
 *         ... training steps ...
 *         busy = tr_kprof_epoch_end(kp);            // seconds of device work in the epoch
 *     tr_kprof_write_csv(kp, "<dir>/kernels.csv", &e);
 *     tr_kprof_free(kp);                            // stops timing; before the backend
 *
 * Only work between epoch_begin and epoch_end is counted. One profiler per backend, and on
 * CUDA one per process (CUPTI's callbacks are process-wide). */
#ifndef DEBA_PROFILER_KERNELS_H
#define DEBA_PROFILER_KERNELS_H

#include <stdint.h>
#include "deba/error.h"
#include "trainer/graph.h"

typedef struct tr_kprof tr_kprof;

/* DEBA_E_UNSUPPORTED when the backend records no times; DEBA_E_RUNTIME when its timing is
 * already on or CUPTI refuses (the message names the CUPTI call and its error string). */
tr_kprof *tr_kprof_new(tr_backend *be, deba_err *e);
void tr_kprof_epoch_begin(tr_kprof *kp);
/* Synchronises the device and returns the seconds recorded since tr_kprof_epoch_begin. */
double tr_kprof_epoch_end(tr_kprof *kp);
/* kernels.csv: name,calls,total_s,mean_us,share sorted by total_s (largest first); share is
 * total_s over the sum of all rows. Atomic (temporary file, then rename). */
deba_status tr_kprof_write_csv(tr_kprof *kp, const char *path, deba_err *e);
/* 1 when timing comes from CUPTI (device activity), 0 from the host clock. */
int tr_kprof_uses_cupti(const tr_kprof *kp);
/* Records lost because buffers were full or the host ran out of memory. */
uint64_t tr_kprof_dropped(tr_kprof *kp);
void tr_kprof_free(tr_kprof *kp);   /* NULL is a no-op */

#endif
