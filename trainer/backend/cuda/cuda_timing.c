/* The CUDA backend's kernel timing: CUPTI activity records of every kernel, memcpy and memset,
 * summed per epoch and aggregated by (demangled) name into a tr_ktime. CUPTI's buffer callbacks
 * are process-wide and carry no user pointer, so one CUDA backend at a time may time itself. */
#include "trainer/backend/cuda/cuda_module.h"

#include <cupti.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/backend/ktime.h"

#define CUPTI_BUF_BYTES ((size_t)8 << 20)

/* The backend whose timing is on, and its table; guarded by mu (CUPTI delivers buffers on its
 * own thread). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tr_backend *owner;
static tr_ktime *table;

/* A failed CUPTI call after start only loses timing: report it and go on. */
#define CUPTI_WARN(call)                                                                                  \
    do {                                                                                                  \
        CUptiResult r_ = (call);                                                                          \
        if (r_ != CUPTI_SUCCESS) {                                                                        \
            const char *s_ = NULL;                                                                        \
            cuptiGetResultString(r_, &s_);                                                                \
            fprintf(stderr, "deba: CUPTI error at %s:%d: %s\n  in %s\n", __FILE__, __LINE__, s_ ? s_ : "?", \
                    #call);                                                                               \
        }                                                                                                 \
    } while (0)
#define CUPTI_TRY(call)                                                                                    \
    do {                                                                                                   \
        CUptiResult r_ = (call);                                                                           \
        if (r_ != CUPTI_SUCCESS) {                                                                         \
            const char *s_ = NULL;                                                                         \
            cuptiGetResultString(r_, &s_);                                                                 \
            deba_err_set(e, DEBA_E_RUNTIME, "CUPTI error at %s:%d: %s (in %s)", __FILE__, __LINE__,        \
                         s_ ? s_ : "?", #call);                                                            \
            goto fail;                                                                                     \
        }                                                                                                  \
    } while (0)

/* libstdc++'s demangler (C linkage; the module links -lstdc++). */
extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

/* "void ns::k<float>(float*, int)" -> "void ns::k<float>": the argument list adds nothing. */
static void kernel_name(char *out, size_t cap, const char *mangled)
{
    int status = -1;
    char *dm = mangled ? __cxa_demangle(mangled, NULL, NULL, &status) : NULL;
    snprintf(out, cap, "%s", status == 0 && dm ? dm : (mangled ? mangled : "?"));
    free(dm);
    size_t len = strlen(out);
    if (len && out[len - 1] == ')') {
        int depth = 0;
        for (size_t i = len; i-- > 0;) {
            if (out[i] == ')') depth++;
            else if (out[i] == '(' && --depth == 0) {
                if (i > 0) out[i] = '\0';
                break;
            }
        }
    }
}

static const char *memcpy_name(uint8_t kind)
{
    switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "[CUDA memcpy HtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "[CUDA memcpy DtoH]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "[CUDA memcpy DtoD]";
    default: return "[CUDA memcpy other]";
    }
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *buffer = aligned_alloc(8, CUPTI_BUF_BYTES);
    *size = *buffer ? CUPTI_BUF_BYTES : 0;
    *max_records = 0;
}

/* Records reach the table only inside an epoch (tr_ktime_add checks): what ran before
 * epoch_begin was flushed while the epoch was off. */
static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid)
{
    (void)size;
    pthread_mutex_lock(&mu);
    tr_ktime *kt = table;
    if (kt && buffer) {
        CUpti_Activity *rec = NULL;
        char name[512];
        while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
            switch (rec->kind) {
            case CUPTI_ACTIVITY_KIND_KERNEL:
            case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
                const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
                kernel_name(name, sizeof name, k->name);
                tr_ktime_add(kt, name, (double)(k->end - k->start) * 1e-9);
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMCPY: {
                const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
                tr_ktime_add(kt, memcpy_name(m->copyKind), (double)(m->end - m->start) * 1e-9);
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMSET: {
                const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
                tr_ktime_add(kt, "[CUDA memset]", (double)(m->end - m->start) * 1e-9);
                break;
            }
            default: break;
            }
        }
        size_t lost = 0;
        if (cuptiActivityGetNumDroppedRecords(ctx, stream, &lost) == CUPTI_SUCCESS) tr_ktime_lost(kt, lost);
    }
    pthread_mutex_unlock(&mu);
    free(buffer);
}

static deba_status cu_timing_start(tr_backend *be, deba_err *e)
{
    pthread_mutex_lock(&mu);
    tr_backend *busy = owner;
    tr_ktime *kt = busy ? NULL : tr_ktime_new();
    if (kt) {
        owner = be;
        table = kt;
    }
    pthread_mutex_unlock(&mu);
    if (busy)
        return deba_err_set(e, DEBA_E_RUNTIME, "kernel timing: CUPTI is already collecting for %s backend in this "
                            "process (one at a time)", busy == be ? "this" : "another");
    if (!kt) return deba_err_set(e, DEBA_E_NOMEM, "out of memory starting kernel timing");
    CUPTI_TRY(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
    CUPTI_TRY(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
    CUPTI_TRY(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY));
    CUPTI_TRY(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET));
    return DEBA_OK;
fail:
    cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
    cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY);
    cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET);
    pthread_mutex_lock(&mu);
    owner = NULL;
    table = NULL;
    pthread_mutex_unlock(&mu);
    tr_ktime_free(kt);
    return e ? e->status : DEBA_E_RUNTIME;
}

static tr_ktime *table_of(tr_backend *be)
{
    pthread_mutex_lock(&mu);
    tr_ktime *kt = owner == be ? table : NULL;
    pthread_mutex_unlock(&mu);
    return kt;
}

static void cu_timing_epoch_begin(tr_backend *be)
{
    tr_ktime *kt = table_of(be);
    if (!kt) return;
    be->sync(be);
    /* what ran before the epoch is delivered now, while the epoch is off, and not counted */
    CUPTI_WARN(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
    tr_ktime_epoch(kt, 1);
}

static double cu_timing_epoch_end(tr_backend *be)
{
    tr_ktime *kt = table_of(be);
    if (!kt) return 0;
    be->sync(be);
    CUPTI_WARN(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
    tr_ktime_epoch(kt, 0);
    return tr_ktime_epoch_seconds(kt);
}

static uint64_t cu_timing_read(tr_backend *be, tr_timing_row_fn fn, void *arg)
{
    tr_ktime *kt = table_of(be);
    return kt ? tr_ktime_read(kt, fn, arg) : 0;
}

static void cu_timing_stop(tr_backend *be)
{
    if (!table_of(be)) return;
    CUPTI_WARN(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
    CUPTI_WARN(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
    CUPTI_WARN(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY));
    CUPTI_WARN(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET));
    pthread_mutex_lock(&mu);
    tr_ktime *kt = table;
    owner = NULL;
    table = NULL;
    pthread_mutex_unlock(&mu);
    tr_ktime_free(kt);
}

void tr_cuda_register_timing(tr_backend *be)
{
    be->timing_on_device = 1;
    be->timing_start = cu_timing_start;
    be->timing_epoch_begin = cu_timing_epoch_begin;
    be->timing_epoch_end = cu_timing_epoch_end;
    be->timing_read = cu_timing_read;
    be->timing_stop = cu_timing_stop;
}
