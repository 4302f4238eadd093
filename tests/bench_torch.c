/* Our side of `make bench-torch` (scripts/bench_torch.py drives it): one model at one batch size on
 * the CPU backend, training steps on a fixed random 3xSxS batch timed on request, so the driver
 * can interleave them with the identical steps in PyTorch and read this process's peak RSS alone.
 *
 * bench_torch MODEL BATCH [IMAGE]  prints "ready <parameters> <threads> <warm-up step s>", then
 * for each line "K" on stdin runs K steps and prints their wall-clock seconds; EOF ends it. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/models/models.h"
#include "trainer/train.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The step the driver times in PyTorch as well: SGD lr 0.01, momentum 0.9, weight decay 5e-4. */
static double steps_s(tr_graph *g, int n, int k)
{
    tr_step st;
    double t = now();
    for (int i = 0; i < k; i++) tr_train_step(g, n, 0.01f, 0.9f, 5e-4f, &st);
    return now() - t;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bench_torch MODEL BATCH [IMAGE]  (run by scripts/bench_torch.py, make bench-torch)\n");
        return 2;
    }
    const char *model = argv[1];
    char *end;
    long n = strtol(argv[2], &end, 10), image = 32;
    if (*end || n < 1 || n > 65536) {
        fprintf(stderr, "bench_torch: batch: expected an integer in [1, 65536], got '%s'\n", argv[2]);
        return 2;
    }
    if (argc == 4 && ((image = strtol(argv[3], &end, 10)) < 1 || *end || image > 4096)) {
        fprintf(stderr, "bench_torch: image: expected an integer in [1, 4096], got '%s'\n", argv[3]);
        return 2;
    }
    deba_err e = {0};
    tr_backend *be = tr_backend_new("cpu", &e);
    tr_graph *g = be ? tr_model_build(model, 3, (int)image, 10, &e) : NULL;
    if (!g || tr_graph_alloc(g, be, 42, &e) || tr_graph_plan(g, (int)n, &e)) {
        fprintf(stderr, "bench_torch: %s batch %ld: %s\n", model, n, e.msg);
        tr_graph_free(g);
        tr_backend_free(be);
        return 1;
    }
    g->training = 1;
    size_t nx = (size_t)n * 3 * (size_t)image * (size_t)image;
    float *x = malloc(nx * sizeof(float));
    int *y = malloc((size_t)n * sizeof(int));
    if (!x || !y) {
        fprintf(stderr, "bench_torch: %s batch %ld: out of memory for the batch\n", model, n);
        return 1;
    }
    srand(7);
    for (size_t i = 0; i < nx; i++) x[i] = (float)rand() / (float)RAND_MAX * 2.f - 1.f;
    for (long i = 0; i < n; i++) y[i] = (int)(i % 10);
    tr_graph_set_batch(g, x, y, (int)n);
    /* the warm-up step touches the planned buffers for the first time; the driver sizes the
     * timed repetitions from it */
    double warm = steps_s(g, (int)n, 1);
    printf("ready %lld %d %.6f\n", (long long)g->n_params, omp_get_max_threads(), warm);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        int k = atoi(line);
        if (k < 1) break;
        printf("%.6f\n", steps_s(g, (int)n, k));
        fflush(stdout);
    }
    free(x);
    free(y);
    tr_graph_free(g);
    tr_backend_free(be);
    return 0;
}
