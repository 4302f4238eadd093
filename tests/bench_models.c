/* Training throughput of the model zoo on the CPU backend: samples/s of a full SGD step
 * (forward, loss, backward, update) at batch 64, and the FLOP rate it implies against OpenBLAS's
 * own sgemm rate measured in the same run. Usage: bench_models [arch[:channels:size]] ... */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/models/models.h"

#define BATCH 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Square 1024 sgemm: the ceiling a GEMM-bound training step can approach on this machine. */
static double sgemm_gflops(void)
{
    const int n = 1024;
    float *a = malloc(sizeof *a * n * n), *b = malloc(sizeof *b * n * n), *c = malloc(sizeof *c * n * n);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = 1e-3f * (float)(i % 97);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    int reps = 0;
    double t0 = now(), t;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
        reps++;
    } while ((t = now() - t0) < 1.0);
    free(a); free(b); free(c);
    return 2.0 * n * n * n * reps / t / 1e9;
}

/* Returns 0 when measured, 1 when the model could not be built or run here. */
static int bench(tr_backend *be, const char *arch, int c, int size, double peak)
{
    deba_err e = {0};
    tr_graph *g = tr_model_build(arch, c, size, 10, &e);
    if (!g || tr_graph_alloc(g, be, 1, &e) != DEBA_OK || tr_graph_plan(g, BATCH, &e) != DEBA_OK) {
        printf("%-20s skipped: %s\n", arch, e.msg);
        tr_graph_free(g);
        return 1;
    }
    g->training = 1;
    size_t per = (size_t)c * size * size;
    float *x = malloc(sizeof *x * per * BATCH);
    int y[BATCH];
    tr_rng rng;
    tr_rng_seed(&rng, 1, 0);
    for (size_t i = 0; i < per * BATCH; i++) x[i] = (float)tr_rng_normal(&rng);
    for (int i = 0; i < BATCH; i++) y[i] = (int)tr_rng_below(&rng, 10);
    tr_graph_set_batch(g, x, y, BATCH);

    double fwd = tr_graph_flops(g), t = 0, loss = 0;
    int steps = 0;
    for (int s = -1; s < 20 && t < 3.0; s++) {     /* one untimed warm-up step, then ≥ 3 s */
        double t0 = now(), l;
        int64_t correct;
        tr_graph_zero_grads(g);
        tr_graph_forward(g, BATCH);
        tr_graph_loss(g, BATCH, &l, &correct);
        tr_graph_backward(g, BATCH);
        tr_graph_sgd(g, 0.01f, 0.9f, 5e-4f);
        be->sync(be);
        if (s >= 0) { t += now() - t0; steps++; }
        loss = l / BATCH;
    }
    /* backward costs about twice the forward (input and weight gradients), so a step ≈ 3x */
    double sps = steps * BATCH / t, rate = 3.0 * fwd * sps / 1e9;
    printf("%-20s %2dx%3dx%-3d %8.1f %9.1f %10.4f %9.1f %7.1f%%  loss %.3f%s\n", arch, c, size, size,
           1e3 * t / steps, sps, fwd / 1e9, rate, 100.0 * rate / peak, loss,
           isfinite(loss) ? "" : " (not finite!)");
    free(x);
    tr_graph_free(g);
    return 0;
}

int main(int argc, char **argv)
{
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    if (!be) {
        fprintf(stderr, "bench_models: error: %s\n", e.msg);
        return 1;
    }
    double peak = sgemm_gflops();
    printf("device: %s\nsgemm 1024^3: %.1f GFLOP/s, the reference for the last column (GFLOP/s\n"
           "counts a step as 3x the forward FLOPs; a step can beat this mid-size sgemm)\n",
           be->device_name, peak);
    printf("%-20s %-10s %8s %9s %10s %9s %8s\n", "arch", "input", "ms/step", "samples/s",
           "GFLOP/img", "GFLOP/s", "vs sgemm");
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            char arch[64];
            int c = 3, size = 0;
            if (sscanf(argv[i], "%63[^:]:%d:%d", arch, &c, &size) < 1) continue;
            const tr_model_desc *m = tr_model_find(arch);
            bench(be, arch, c, size ? size : m ? m->default_image : 32, peak);
        }
    } else {
        /* every model at its default size that a CPU steps through in seconds, and cnn_small on
         * Fashion-MNIST's 1x28x28 */
        size_t n;
        const tr_model_desc *m = tr_model_list(&n);
        for (size_t i = 0; i < n; i++)
            if (m[i].default_image <= 64) bench(be, m[i].name, 3, m[i].default_image, peak);
        bench(be, "cnn_small", 1, 28, peak);
    }
    tr_backend_free(be);
    return 0;
}
