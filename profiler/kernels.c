/* Kernel timing for the profiler's benchmarks (see kernels.h): a handle over the backend's own
 * timing entries, which record; this file only starts, reads and stops them. */
#include "profiler/kernels.h"

#include <stdlib.h>
#include "trainer/backend/backend.h"

struct tr_kprof {
    tr_backend *be;
};

tr_kprof *tr_kprof_new(tr_backend *be, deba_err *e)
{
    if (!be) {
        deba_err_set(e, DEBA_E_INPUT, "kernel profiler: no backend");
        return NULL;
    }
    if (!be->timing_start) {
        deba_err_set(e, DEBA_E_UNSUPPORTED, "kernel profiler: the %s backend records no kernel times", be->name);
        return NULL;
    }
    tr_kprof *kp = calloc(1, sizeof *kp);
    if (!kp) {
        deba_err_set(e, DEBA_E_NOMEM, "out of memory creating the kernel profiler");
        return NULL;
    }
    if (tr_backend_timing_start(be, e)) {
        free(kp);
        return NULL;
    }
    kp->be = be;
    return kp;
}

void tr_kprof_epoch_begin(tr_kprof *kp)
{
    if (kp) tr_backend_timing_epoch_begin(kp->be);
}

double tr_kprof_epoch_end(tr_kprof *kp)
{
    return kp ? tr_backend_timing_epoch_end(kp->be) : 0.0;
}

deba_status tr_kprof_write_csv(tr_kprof *kp, const char *path, deba_err *e)
{
    if (!kp) return deba_err_set(e, DEBA_E_INPUT, "kernel profiler: none to write");
    return tr_backend_timing_write_csv(kp->be, path, e);
}

int tr_kprof_uses_cupti(const tr_kprof *kp) { return kp ? tr_backend_timing_on_device(kp->be) : 0; }

static void skip_row(void *arg, const char *name, uint64_t calls, double total_s)
{
    (void)arg, (void)name, (void)calls, (void)total_s;
}

uint64_t tr_kprof_dropped(tr_kprof *kp) { return kp ? tr_backend_timing_read(kp->be, skip_row, NULL) : 0; }

void tr_kprof_free(tr_kprof *kp)
{
    if (!kp) return;
    tr_backend_timing_stop(kp->be);
    free(kp);
}
