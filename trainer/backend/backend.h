/* Choosing and creating a backend: cpu, cuda (a module loaded on demand, see registry.c), or
 * auto (cuda when the module loads and a GPU is usable, else cpu); and the dispatchers of the
 * table's optional kernel-timing entries. */
#ifndef TR_BACKEND_H
#define TR_BACKEND_H

#include <stdint.h>
#include "deba/error.h"
#include "trainer/graph.h"

tr_backend *tr_backend_cpu_new(deba_err *e);
/* Loads libdeba-cuda.so (registry.c: $DEBA_CUDA_MODULE, else <exe dir>/../lib/deba/, else
 * $(PREFIX)/lib/deba/) and asks it for a backend on `device`. DEBA_E_RUNTIME naming the paths
 * tried and the loader's message when the module is missing or broken (no entry point, another
 * ABI), or the driver's message when no GPU is usable. */
tr_backend *tr_backend_cuda_new(int device, deba_err *e);
/* 1 when the NVIDIA driver (libcuda.so.1) loads; else 0 and why says so. --device auto asks
 * this first, so a machine without a driver never maps the module and its CUDA libraries
 * (about 150 MB resident). */
int tr_backend_cuda_driver_present(deba_err *why);
/* "cpu" | "cuda" | "auto"; anything else is DEBA_E_INPUT naming --device. auto falls back to
 * the CPU silently and leaves the reason in be->note. */
tr_backend *tr_backend_new(const char *device, deba_err *e);
void tr_backend_free(tr_backend *be);   /* stops kernel timing first; NULL is a no-op */

/* ---- kernel timing through the table (no-ops, 0 and an empty table where the backend has
 * none). Only work between epoch_begin and epoch_end is counted (evaluation is not). ---- */
/* DEBA_E_RUNTIME when timing is already on for this backend, or (CUDA) another backend in the
 * process holds CUPTI or CUPTI refuses (the message names the call and its error string). */
deba_status tr_backend_timing_start(tr_backend *be, deba_err *e);
void tr_backend_timing_epoch_begin(tr_backend *be);
/* Synchronises the device and returns the seconds recorded since epoch_begin: device kernels,
 * copies and sets on CUDA, the ops' wall time on the CPU. */
double tr_backend_timing_epoch_end(tr_backend *be);
/* 1 when the times are device activity (CUPTI): SPEC §7 compute_time_s takes them then. */
int tr_backend_timing_on_device(const tr_backend *be);
/* Each recorded row (unordered); returns the records lost (full buffers, host OOM). */
uint64_t tr_backend_timing_read(tr_backend *be, tr_timing_row_fn fn, void *arg);
void tr_backend_timing_stop(tr_backend *be);
/* kernels.csv (SPEC §8): name,calls,total_s,mean_us,share sorted by total_s (largest first,
 * then by name); share is total_s over the sum of all rows. Atomic (temporary file, rename). */
deba_status tr_backend_timing_write_csv(tr_backend *be, const char *path, deba_err *e);

#endif
