/* The named time table behind every backend's kernel timing (see ktime.h): open addressing by
 * name under one mutex. */
#include "trainer/backend/ktime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;                  /* NULL: empty slot */
    uint64_t calls;
    double total_s;
} kt_row;

struct tr_ktime {
    pthread_mutex_t mu;
    int epoch_on;
    double epoch_s;
    kt_row *rows;
    size_t n_rows, cap_rows;
    uint64_t lost;
};

tr_ktime *tr_ktime_new(void)
{
    tr_ktime *kt = calloc(1, sizeof *kt);
    if (kt) pthread_mutex_init(&kt->mu, NULL);
    return kt;
}

void tr_ktime_free(tr_ktime *kt)
{
    if (!kt) return;
    for (size_t i = 0; i < kt->cap_rows; i++) free(kt->rows[i].name);
    free(kt->rows);
    pthread_mutex_destroy(&kt->mu);
    free(kt);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* Caller holds mu. 0, or -1 on host OOM. */
static int add_row(tr_ktime *kt, const char *name, double secs)
{
    if ((kt->n_rows + 1) * 10 > kt->cap_rows * 7) {
        size_t cap = kt->cap_rows ? kt->cap_rows * 2 : 256;
        kt_row *nr = calloc(cap, sizeof *nr);
        if (!nr) return -1;
        for (size_t i = 0; i < kt->cap_rows; i++) {
            if (!kt->rows[i].name) continue;
            size_t j = hash_str(kt->rows[i].name) & (cap - 1);
            while (nr[j].name) j = (j + 1) & (cap - 1);
            nr[j] = kt->rows[i];
        }
        free(kt->rows);
        kt->rows = nr;
        kt->cap_rows = cap;
    }
    size_t j = hash_str(name) & (kt->cap_rows - 1);
    while (kt->rows[j].name && strcmp(kt->rows[j].name, name)) j = (j + 1) & (kt->cap_rows - 1);
    kt_row *r = &kt->rows[j];
    if (!r->name) {
        r->name = strdup(name);
        if (!r->name) return -1;
        kt->n_rows++;
    }
    r->calls++;
    r->total_s += secs;
    kt->epoch_s += secs;
    return 0;
}

void tr_ktime_add(tr_ktime *kt, const char *name, double seconds)
{
    if (!kt) return;
    pthread_mutex_lock(&kt->mu);
    if (kt->epoch_on && add_row(kt, name, seconds)) kt->lost++;
    pthread_mutex_unlock(&kt->mu);
}

void tr_ktime_lost(tr_ktime *kt, uint64_t records)
{
    if (!kt) return;
    pthread_mutex_lock(&kt->mu);
    kt->lost += records;
    pthread_mutex_unlock(&kt->mu);
}

void tr_ktime_epoch(tr_ktime *kt, int on)
{
    if (!kt) return;
    pthread_mutex_lock(&kt->mu);
    kt->epoch_on = on;
    if (on) kt->epoch_s = 0;
    pthread_mutex_unlock(&kt->mu);
}

double tr_ktime_epoch_seconds(tr_ktime *kt)
{
    if (!kt) return 0;
    pthread_mutex_lock(&kt->mu);
    double s = kt->epoch_s;
    pthread_mutex_unlock(&kt->mu);
    return s;
}

uint64_t tr_ktime_read(tr_ktime *kt, tr_timing_row_fn fn, void *arg)
{
    if (!kt) return 0;
    pthread_mutex_lock(&kt->mu);
    for (size_t i = 0; i < kt->cap_rows; i++)
        if (kt->rows[i].name) fn(arg, kt->rows[i].name, kt->rows[i].calls, kt->rows[i].total_s);
    uint64_t lost = kt->lost;
    pthread_mutex_unlock(&kt->mu);
    return lost;
}
