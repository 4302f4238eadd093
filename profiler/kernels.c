/* Kernel timing: CUPTI activity records on the CUDA backend, clock_gettime around the CPU
 * backend's ops otherwise, aggregated by name into kernels.csv (see kernels.h). Built into every
 * build; the CUPTI half only when DEBA_CUDA is defined. */
#include "profiler/kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "deba/csv.h"

#ifdef DEBA_CUDA
#include <cupti.h>
#endif

typedef struct {
    char *name;                  /* NULL: empty slot */
    uint64_t calls;
    double total_s;
} kp_row;

struct tr_kprof {
    tr_backend *be;
    int cupti;
    int epoch_on;
    double epoch_s;
    kp_row *rows;                /* open addressing by name */
    size_t n_rows, cap_rows;
    uint64_t dropped;
    /* CPU: the backend's own table, called by the trampolines */
    tr_op_fn fwd[TR_OP_COUNT], bwd[TR_OP_COUNT];
    void (*xent)(tr_backend *, const float *, const int *, int, int, float *, double *, int64_t *);
    void (*sgd)(tr_backend *, float *, const float *, float *, int64_t, float, float, float);
    void (*moments)(tr_backend *, const float *, int64_t, double *, double *);
    char names[TR_OP_COUNT][2][48];
};

/* The one active profiler: CUPTI's buffer callbacks and the CPU trampolines carry no user
 * pointer. Guarded by the mutex (CUPTI delivers buffers on its own thread). */
static tr_kprof *active;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* Caller holds mu. Returns 0, or -1 on host OOM (the record is dropped and counted). */
static int add_row(tr_kprof *kp, const char *name, double secs)
{
    if ((kp->n_rows + 1) * 10 > kp->cap_rows * 7) {
        size_t cap = kp->cap_rows ? kp->cap_rows * 2 : 256;
        kp_row *nr = calloc(cap, sizeof *nr);
        if (!nr) return -1;
        for (size_t i = 0; i < kp->cap_rows; i++) {
            if (!kp->rows[i].name) continue;
            size_t j = hash_str(kp->rows[i].name) & (cap - 1);
            while (nr[j].name) j = (j + 1) & (cap - 1);
            nr[j] = kp->rows[i];
        }
        free(kp->rows);
        kp->rows = nr;
        kp->cap_rows = cap;
    }
    size_t j = hash_str(name) & (kp->cap_rows - 1);
    while (kp->rows[j].name && strcmp(kp->rows[j].name, name)) j = (j + 1) & (kp->cap_rows - 1);
    kp_row *r = &kp->rows[j];
    if (!r->name) {
        r->name = strdup(name);
        if (!r->name) return -1;
        kp->n_rows++;
    }
    r->calls++;
    r->total_s += secs;
    kp->epoch_s += secs;
    return 0;
}

void tr_kprof_cpu_record(tr_kprof *kp, const char *name, double seconds)
{
    if (!kp) return;
    pthread_mutex_lock(&mu);
    if (kp->epoch_on && add_row(kp, name, seconds)) kp->dropped++;
    pthread_mutex_unlock(&mu);
}

/* ---- CPU: trampolines around the backend's table ---- */

static void time_forward(tr_graph *g, tr_node *nd, int n)
{
    tr_kprof *kp = active;
    double t0 = now_s();
    kp->fwd[nd->op](g, nd, n);
    tr_kprof_cpu_record(kp, kp->names[nd->op][0], now_s() - t0);
}

static void time_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_kprof *kp = active;
    double t0 = now_s();
    kp->bwd[nd->op](g, nd, n);
    tr_kprof_cpu_record(kp, kp->names[nd->op][1], now_s() - t0);
}

static void time_xent(tr_backend *be, const float *logits, const int *labels, int n, int classes, float *dlogits,
                      double *loss_sum, int64_t *correct)
{
    tr_kprof *kp = active;
    double t0 = now_s();
    kp->xent(be, logits, labels, n, classes, dlogits, loss_sum, correct);
    tr_kprof_cpu_record(kp, "xent", now_s() - t0);
}

static void time_sgd(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr, float momentum,
                     float wd)
{
    tr_kprof *kp = active;
    double t0 = now_s();
    kp->sgd(be, p, g, m, count, lr, momentum, wd);
    tr_kprof_cpu_record(kp, "sgd", now_s() - t0);
}

static void time_moments(tr_backend *be, const float *g, int64_t count, double *sum, double *sumsq)
{
    tr_kprof *kp = active;
    double t0 = now_s();
    kp->moments(be, g, count, sum, sumsq);
    tr_kprof_cpu_record(kp, "grad_moments", now_s() - t0);
}

static void wrap_cpu(tr_kprof *kp)
{
    tr_backend *be = kp->be;
    for (int op = 0; op < TR_OP_COUNT; op++) {
        snprintf(kp->names[op][0], sizeof kp->names[op][0], "%s.forward", tr_op_name((tr_op)op));
        snprintf(kp->names[op][1], sizeof kp->names[op][1], "%s.backward", tr_op_name((tr_op)op));
        kp->fwd[op] = be->forward[op];
        kp->bwd[op] = be->backward[op];
        /* NULL stays NULL: the planner must still report a missing op by name */
        if (be->forward[op]) be->forward[op] = time_forward;
        if (be->backward[op]) be->backward[op] = time_backward;
    }
    kp->xent = be->xent;
    kp->sgd = be->sgd;
    kp->moments = be->grad_moments;
    if (be->xent) be->xent = time_xent;
    if (be->sgd) be->sgd = time_sgd;
    if (be->grad_moments) be->grad_moments = time_moments;
}

static void unwrap_cpu(tr_kprof *kp)
{
    tr_backend *be = kp->be;
    for (int op = 0; op < TR_OP_COUNT; op++) {
        be->forward[op] = kp->fwd[op];
        be->backward[op] = kp->bwd[op];
    }
    be->xent = kp->xent;
    be->sgd = kp->sgd;
    be->grad_moments = kp->moments;
}

/* ---- CUDA: CUPTI activity records ---- */

#ifdef DEBA_CUDA
#define CUPTI_BUF_BYTES ((size_t)8 << 20)

/* A failed CUPTI call outside tr_kprof_new only loses timing: report it and go on. */
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

/* libstdc++'s demangler (C linkage; the CUDA build links -lstdc++). */
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

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid)
{
    (void)size;
    pthread_mutex_lock(&mu);
    tr_kprof *kp = active;
    if (kp && kp->epoch_on && buffer) {
        CUpti_Activity *rec = NULL;
        char name[512];
        while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
            switch (rec->kind) {
            case CUPTI_ACTIVITY_KIND_KERNEL:
            case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
                const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
                kernel_name(name, sizeof name, k->name);
                if (add_row(kp, name, (double)(k->end - k->start) * 1e-9)) kp->dropped++;
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMCPY: {
                const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
                if (add_row(kp, memcpy_name(m->copyKind), (double)(m->end - m->start) * 1e-9)) kp->dropped++;
                break;
            }
            case CUPTI_ACTIVITY_KIND_MEMSET: {
                const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
                if (add_row(kp, "[CUDA memset]", (double)(m->end - m->start) * 1e-9)) kp->dropped++;
                break;
            }
            default: break;
            }
        }
    }
    if (kp) {
        size_t lost = 0;
        if (cuptiActivityGetNumDroppedRecords(ctx, stream, &lost) == CUPTI_SUCCESS) kp->dropped += lost;
    }
    pthread_mutex_unlock(&mu);
    free(buffer);
}

static deba_status cupti_start(deba_err *e)
{
    CUPTI_TRY(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed));
    CUPTI_TRY(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
    CUPTI_TRY(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY));
    CUPTI_TRY(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET));
    return DEBA_OK;
fail:
    return e ? e->status : DEBA_E_RUNTIME;
}

static void cupti_stop(void)
{
    CUPTI_WARN(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
    CUPTI_WARN(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
    CUPTI_WARN(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMCPY));
    CUPTI_WARN(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_MEMSET));
}
#endif

/* ---- the API ---- */

tr_kprof *tr_kprof_new(tr_backend *be, deba_err *e)
{
    if (!be) {
        deba_err_set(e, DEBA_E_INPUT, "kernel profiler: no backend");
        return NULL;
    }
    tr_kprof *kp = calloc(1, sizeof *kp);
    if (!kp) {
        deba_err_set(e, DEBA_E_NOMEM, "out of memory creating the kernel profiler");
        return NULL;
    }
    kp->be = be;
    pthread_mutex_lock(&mu);
    int busy = active != NULL;
    if (!busy) active = kp;
    pthread_mutex_unlock(&mu);
    if (busy) {
        free(kp);
        deba_err_set(e, DEBA_E_RUNTIME, "kernel profiler: another one is active in this process");
        return NULL;
    }
#ifdef DEBA_CUDA
    if (be->name && !strcmp(be->name, "cuda")) {
        kp->cupti = 1;
        if (cupti_start(e) != DEBA_OK) {
            pthread_mutex_lock(&mu);
            active = NULL;
            pthread_mutex_unlock(&mu);
            free(kp);
            return NULL;
        }
        return kp;
    }
#endif
    wrap_cpu(kp);
    return kp;
}

void tr_kprof_epoch_begin(tr_kprof *kp)
{
    if (!kp) return;
    kp->be->sync(kp->be);
#ifdef DEBA_CUDA
    /* what ran before the epoch is delivered now, while epoch_on is 0, and not counted */
    if (kp->cupti) CUPTI_WARN(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
#endif
    pthread_mutex_lock(&mu);
    kp->epoch_on = 1;
    kp->epoch_s = 0;
    pthread_mutex_unlock(&mu);
}

double tr_kprof_epoch_end(tr_kprof *kp)
{
    if (!kp) return 0;
    kp->be->sync(kp->be);
#ifdef DEBA_CUDA
    if (kp->cupti) CUPTI_WARN(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED));
#endif
    pthread_mutex_lock(&mu);
    kp->epoch_on = 0;
    double s = kp->epoch_s;
    pthread_mutex_unlock(&mu);
    return s;
}

int tr_kprof_uses_cupti(const tr_kprof *kp) { return kp ? kp->cupti : 0; }

uint64_t tr_kprof_dropped(const tr_kprof *kp) { return kp ? kp->dropped : 0; }

static int by_total_desc(const void *a, const void *b)
{
    const kp_row *x = a, *y = b;
    if (x->total_s != y->total_s) return x->total_s < y->total_s ? 1 : -1;
    return strcmp(x->name, y->name);   /* a total order: the file does not depend on the hash */
}

deba_status tr_kprof_write_csv(tr_kprof *kp, const char *path, deba_err *e)
{
    if (!kp) return deba_err_set(e, DEBA_E_INPUT, "kernel profiler: none to write");
    pthread_mutex_lock(&mu);
    size_t n = 0;
    kp_row *rows = malloc((kp->n_rows ? kp->n_rows : 1) * sizeof *rows);
    double sum = 0;
    if (rows)
        for (size_t i = 0; i < kp->cap_rows; i++)
            if (kp->rows[i].name) {
                rows[n++] = kp->rows[i];
                sum += kp->rows[i].total_s;
            }
    pthread_mutex_unlock(&mu);
    if (!rows) return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
    qsort(rows, n, sizeof *rows, by_total_desc);
    deba_atomic a;
    deba_status st = deba_atomic_open(&a, path, e);
    if (st) {
        free(rows);
        return st;
    }
    fputs("name,calls,total_s,mean_us,share\n", a.f);
    for (size_t i = 0; i < n; i++) {
        deba_csv_field(a.f, rows[i].name);
        fprintf(a.f, ",%llu,", (unsigned long long)rows[i].calls);
        deba_csv_double(a.f, rows[i].total_s);
        fputc(',', a.f);
        deba_csv_double(a.f, rows[i].calls ? rows[i].total_s / (double)rows[i].calls * 1e6 : 0.0);
        fputc(',', a.f);
        deba_csv_double(a.f, sum > 0 ? rows[i].total_s / sum : 0.0);
        fputc('\n', a.f);
    }
    free(rows);   /* the names still belong to kp */
    return deba_atomic_commit(&a, e);
}

void tr_kprof_free(tr_kprof *kp)
{
    if (!kp) return;
#ifdef DEBA_CUDA
    if (kp->cupti) cupti_stop();
#endif
    if (!kp->cupti) unwrap_cpu(kp);
    pthread_mutex_lock(&mu);
    if (active == kp) active = NULL;
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < kp->cap_rows; i++) free(kp->rows[i].name);
    free(kp->rows);
    free(kp);
}
