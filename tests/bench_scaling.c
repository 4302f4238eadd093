/* How the CPU engine's cost per sample moves with the batch size: full training steps
 * (tr_train_step) of one model at B = 16 ... 512, interleaved repeats, medians and ranges, and
 * per op kind (every kind the CPU backend timed) the time per sample at each B, relative to B = 16,
 * so it shows which op stops scaling; the process CPU time per sample beside the wall clock.
 * Usage: bench_scaling [arch[:c:size]] [B,B,...] [reps] [s] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/models/models.h"
#include "trainer/train.h"

#define MAX_B 16
#define MAX_REPS 15
#define MAX_OPS 48

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

/* The timing rows are cumulative for the run: a snapshot before and after a measurement. */
typedef struct {
    int n;
    char name[MAX_OPS][48];
    double total[MAX_OPS];
} op_rows;

static void take_row(void *arg, const char *name, uint64_t calls, double total_s)
{
    (void)calls;
    op_rows *r = arg;
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->name[i], name)) {
            r->total[i] = total_s;
            return;
        }
    if (r->n == MAX_OPS) return;
    snprintf(r->name[r->n], sizeof r->name[r->n], "%s", name);
    r->total[r->n++] = total_s;
}

static double row_of(const op_rows *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->name[i], name)) return r->total[i];
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, sizeof *v * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static double min_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
    return m;
}

static double max_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

/* Steps at batch n for at least `secs` seconds (and at least two steps); samples/s of the timed
 * steps, in *cpu_ms the process CPU time per sample of those steps (with passive OpenMP waiting
 * this is the work done, which a competing process on the machine changes far less than the
 * wall clock), and in *done every sample stepped, the warm-up step's included. */
static double run_steps(tr_graph *g, int n, double secs, double *cpu_ms, double *done)
{
    tr_step st;
    tr_train_step(g, n, 0.01f, 0.9f, 5e-4f, &st);   /* untimed: caches and pages warm at this n */
    int steps = 0;
    double t0 = now(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t;
    do {
        tr_train_step(g, n, 0.01f, 0.9f, 5e-4f, &st);
        steps++;
    } while ((t = now() - t0) < secs || steps < 2);
    *cpu_ms = 1e3 * (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / ((double)steps * n);
    *done = (double)(steps + 1) * n;
    return steps * n / t;
}

/* Index of name in the breakdown's rows, added on first sight (every op kind the backend timed,
 * in the order first seen), or -1 when the table is full. */
static int row_index(op_rows *names, const char *name)
{
    for (int i = 0; i < names->n; i++)
        if (!strcmp(names->name[i], name)) return i;
    if (names->n == MAX_OPS) return -1;
    snprintf(names->name[names->n], sizeof names->name[names->n], "%s", name);
    return names->n++;
}

int main(int argc, char **argv)
{
    char arch[64] = "resnet18";
    int c = 3, size = 32, bs[MAX_B] = {16, 32, 64, 128, 256, 512}, nb = 6, reps = 3;
    double secs = 1.0;
    if (argc > 1 && sscanf(argv[1], "%63[^:]:%d:%d", arch, &c, &size) < 1) {
        fprintf(stderr, "bench_scaling: error: bad model '%s' (arch[:channels:size])\n", argv[1]);
        return 2;
    }
    if (argc > 2) {
        nb = 0;
        for (char *s = argv[2]; *s && nb < MAX_B;) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s || v <= 0 || v > 1 << 16 || (*end && *end != ',')) {
                fprintf(stderr, "bench_scaling: error: bad batch list '%s' (e.g. 16,64,256)\n", argv[2]);
                return 2;
            }
            bs[nb++] = (int)v;
            s = *end ? end + 1 : end;
        }
    }
    if (argc > 3 && (reps = atoi(argv[3])) < 1) reps = 1;
    if (reps > MAX_REPS) reps = MAX_REPS;
    if (argc > 4 && (secs = atof(argv[4])) <= 0) secs = 1.0;

    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    if (!be) {
        fprintf(stderr, "bench_scaling: error: %s\n", e.msg);
        return 1;
    }
    int bmax = 0;
    for (int i = 0; i < nb; i++) bmax = bs[i] > bmax ? bs[i] : bmax;
    /* one graph planned for the largest batch, as deba-train keeps one plan while B changes */
    tr_graph *g = tr_model_build(arch, c, size, 10, &e);
    if (!g || tr_graph_alloc(g, be, 1, &e) != DEBA_OK || tr_graph_plan(g, bmax, &e) != DEBA_OK) {
        printf("bench_scaling: %s skipped: %s\n", arch, e.msg);
        tr_graph_free(g);
        tr_backend_free(be);
        return 0;
    }
    g->training = 1;
    const size_t per = (size_t)c * size * size;
    float *x = malloc(sizeof *x * per * (size_t)bmax);
    int *y = malloc(sizeof *y * (size_t)bmax);
    if (!x || !y) {
        fprintf(stderr, "bench_scaling: error: out of memory for a batch of %d\n", bmax);
        return 1;
    }
    tr_rng rng;
    tr_rng_seed(&rng, 1, 0);
    for (size_t i = 0; i < per * (size_t)bmax; i++) x[i] = (float)tr_rng_normal(&rng);
    for (int i = 0; i < bmax; i++) y[i] = (int)tr_rng_below(&rng, 10);
    tr_graph_set_batch(g, x, y, bmax);

    static double sps[MAX_B][MAX_REPS], cpu[MAX_B][MAX_REPS];
    static op_rows names;   /* the op kinds of the breakdown, as cpu_timing.c names them */
    static double op_us[MAX_B][MAX_OPS];   /* µs per sample, summed over reps */
    if (tr_backend_timing_start(be, &e) != DEBA_OK) {
        fprintf(stderr, "bench_scaling: error: %s\n", e.msg);
        return 1;
    }
    /* interleaved: every batch once per repeat, so a load change on the machine hits all B alike;
     * op timing is on throughout (one clock read per op call, the same for every B) */
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < nb; i++) {
            op_rows before = {0}, after = {0};
            tr_backend_timing_epoch_begin(be);
            tr_backend_timing_read(be, take_row, &before);
            double samples;
            sps[i][r] = run_steps(g, bs[i], secs, &cpu[i][r], &samples);
            tr_backend_timing_read(be, take_row, &after);
            tr_backend_timing_epoch_end(be);
            for (int k = 0; k < after.n; k++) {
                const int j = row_index(&names, after.name[k]);
                if (j >= 0) op_us[i][j] += 1e6 * (after.total[k] - row_of(&before, after.name[k])) / samples;
            }
        }

    printf("bench_scaling: %s %dx%dx%d, %s, %d interleaved repeats of >= %.1f s per batch\n", arch, c, size,
           size, be->device_name, reps, secs);
    printf("%6s %12s %12s %12s %10s %12s %14s %12s\n", "batch", "samples/s", "min", "max", "ms/sample",
           "vs B=first", "cpu ms/sample", "vs B=first");
    const double base = median(sps[0], reps), cbase = median(cpu[0], reps);
    for (int i = 0; i < nb; i++) {
        double m = median(sps[i], reps), c = median(cpu[i], reps);
        printf("%6d %12.1f %12.1f %12.1f %10.3f %11.2fx %14.3f %11.2fx\n", bs[i], m, min_of(sps[i], reps),
               max_of(sps[i], reps), 1e3 / m, m / base, c, c / cbase);
    }
    printf("\nper op kind, us per sample (mean over repeats; ratio to B=%d in brackets)\n%-26s", bs[0], "op");
    for (int i = 0; i < nb; i++) printf(" %14d", bs[i]);
    printf("\n");
    for (int k = 0; k < names.n; k++) {
        double any = 0;
        for (int i = 0; i < nb; i++) any += op_us[i][k];
        if (any <= 0) continue;
        printf("%-26s", names.name[k]);
        for (int i = 0; i < nb; i++) {
            double v = op_us[i][k] / reps, v0 = op_us[0][k] / reps;
            printf(" %7.1f (%4.2f)", v, v0 > 0 ? v / v0 : 0);
        }
        printf("\n");
    }
    tr_backend_timing_stop(be);
    free(x);
    free(y);
    tr_graph_free(g);
    tr_backend_free(be);
    return 0;
}
