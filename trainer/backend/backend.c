/* Choosing a backend by --device name, and the kernel-timing dispatchers: the table's timing
 * entries are optional, so every call checks for NULL here and nowhere else. */
#include "trainer/backend/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "deba/csv.h"

tr_backend *tr_backend_new(const char *device, deba_err *e)
{
    if (device && !strcmp(device, "cpu")) return tr_backend_cpu_new(e);
    if (device && !strcmp(device, "cuda")) return tr_backend_cuda_new(0, e);
    if (device && !strcmp(device, "auto")) {
        deba_err why = {0};
        tr_backend *be = tr_backend_cuda_driver_present(&why) ? tr_backend_cuda_new(0, &why) : NULL;
        if (be) return be;
        if ((be = tr_backend_cpu_new(e))) snprintf(be->note, sizeof be->note, "--device auto chose the CPU: %.470s", why.msg);
        return be;
    }
    deba_err_set(e, DEBA_E_INPUT, "--device: unknown device '%s' (expected cpu, cuda or auto)",
                 device ? device : "(null)");
    return NULL;
}

void tr_backend_free(tr_backend *be)
{
    if (!be) return;
    tr_backend_timing_stop(be);
    if (be->destroy) be->destroy(be);
}

/* ---- kernel timing ---- */

deba_status tr_backend_timing_start(tr_backend *be, deba_err *e)
{
    return be && be->timing_start ? be->timing_start(be, e) : DEBA_OK;
}

void tr_backend_timing_epoch_begin(tr_backend *be)
{
    if (be && be->timing_epoch_begin) be->timing_epoch_begin(be);
}

double tr_backend_timing_epoch_end(tr_backend *be)
{
    return be && be->timing_epoch_end ? be->timing_epoch_end(be) : 0.0;
}

int tr_backend_timing_on_device(const tr_backend *be)
{
    return be && be->timing_epoch_end ? be->timing_on_device : 0;
}

uint64_t tr_backend_timing_read(tr_backend *be, tr_timing_row_fn fn, void *arg)
{
    return be && be->timing_read ? be->timing_read(be, fn, arg) : 0;
}

void tr_backend_timing_stop(tr_backend *be)
{
    if (be && be->timing_stop) be->timing_stop(be);
}

typedef struct {
    char *name;
    uint64_t calls;
    double total_s;
} csv_row;

typedef struct {
    csv_row *rows;
    size_t n, cap;
    int oom;
} csv_rows;

static void collect(void *arg, const char *name, uint64_t calls, double total_s)
{
    csv_rows *c = arg;
    if (c->oom) return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        csv_row *nr = realloc(c->rows, cap * sizeof *nr);
        if (!nr) {
            c->oom = 1;
            return;
        }
        c->rows = nr;
        c->cap = cap;
    }
    if (!(c->rows[c->n].name = strdup(name))) {
        c->oom = 1;
        return;
    }
    c->rows[c->n].calls = calls;
    c->rows[c->n++].total_s = total_s;
}

static int by_total_desc(const void *a, const void *b)
{
    const csv_row *x = a, *y = b;
    if (x->total_s != y->total_s) return x->total_s < y->total_s ? 1 : -1;
    return strcmp(x->name, y->name);   /* a total order: the file does not depend on the hash */
}

deba_status tr_backend_timing_write_csv(tr_backend *be, const char *path, deba_err *e)
{
    csv_rows c = {0};
    tr_backend_timing_read(be, collect, &c);
    deba_status st = DEBA_OK;
    if (c.oom) {
        st = deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    double sum = 0;
    for (size_t i = 0; i < c.n; i++) sum += c.rows[i].total_s;
    if (c.n) qsort(c.rows, c.n, sizeof *c.rows, by_total_desc);
    deba_atomic a;
    if ((st = deba_atomic_open(&a, path, e))) goto done;
    fputs("name,calls,total_s,mean_us,share\n", a.f);
    for (size_t i = 0; i < c.n; i++) {
        deba_csv_field(a.f, c.rows[i].name);
        fprintf(a.f, ",%llu,", (unsigned long long)c.rows[i].calls);
        deba_csv_double(a.f, c.rows[i].total_s);
        fputc(',', a.f);
        deba_csv_double(a.f, c.rows[i].calls ? c.rows[i].total_s / (double)c.rows[i].calls * 1e6 : 0.0);
        fputc(',', a.f);
        deba_csv_double(a.f, sum > 0 ? c.rows[i].total_s / sum : 0.0);
        fputc('\n', a.f);
    }
    st = deba_atomic_commit(&a, e);
done:
    for (size_t i = 0; i < c.n; i++) free(c.rows[i].name);
    free(c.rows);
    return st;
}
