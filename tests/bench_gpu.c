/* Training-step throughput of the CUDA backend: samples/s of a full step (forward, loss,
 * backward, gradient moments, SGD) for resnet18 and mobilenet_v3_large on 32x32 inputs at batch
 * 64 ... 1024, each batch compared with batch 64 in the same run, plus the share of the step's
 * wall time the GPU spent in kernels and copies (CUPTI). tests/gpu/check.sh puts PyTorch's figures
 * for the same steps beside these. Input stays on the device (uploaded once), as in the PyTorch
 * reference, so both measure the step and not the host-to-device copy.
 *
 * Usage: bench_gpu [results.csv [kernels.csv]]. Without a usable GPU it says so and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "profiler/kernels.h"
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/models/models.h"
#include "trainer/rng.h"

#define WARMUP 3
#define STEPS 10

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void step(tr_graph *g, int n)
{
    double loss, sum, sumsq;
    int64_t correct;
    tr_graph_forward(g, n);
    tr_graph_loss(g, n, &loss, &correct);
    tr_graph_zero_grads(g);
    tr_graph_backward(g, n);
    g->be->grad_moments(g->be, g->grads, g->n_params, &sum, &sumsq);
    tr_graph_sgd(g, 0.01f, 0.9f, 5e-4f);
}

int main(int argc, char **argv)
{
    const char *csv = argc > 1 ? argv[1] : NULL, *kcsv = argc > 2 ? argv[2] : NULL;
    deba_err e = {0};
    tr_backend *be = tr_backend_cuda_new(0, &e);
    if (!be) {
        printf("bench_gpu: no usable GPU (%s): skipping\n", e.msg);
        return 0;
    }
    tr_kprof *kp = tr_kprof_new(be, &e);
    if (!kp) fprintf(stderr, "bench_gpu: no kernel timing: %s\n", e.msg);
    FILE *out = csv ? fopen(csv, "w") : NULL;
    if (csv && !out) {
        fprintf(stderr, "bench_gpu: cannot write %s\n", csv);
        return 1;
    }
    if (out) fprintf(out, "model,batch,status,samples_per_s,step_ms,kernel_share,vs_batch64\n");
    printf("bench_gpu on %s: training steps at 32x32, %d timed after %d warm-up\n", be->device_name, STEPS, WARMUP);
    printf("%-20s %6s %12s %10s %13s %11s\n", "model", "batch", "samples/s", "step ms", "kernel share", "vs batch 64");
    static const char *models[] = {"resnet18", "mobilenet_v3_large"};
    static const int batches[] = {64, 128, 256, 512, 1024};
    int rc = 0;
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        double base = 0;
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            const int B = batches[bi];
            tr_graph *g = tr_model_build(models[mi], 3, 32, 10, &e);
            if (!g || tr_graph_alloc(g, be, 1, &e) || tr_graph_plan(g, B, &e)) {
                int oom = e.status == DEBA_E_NOMEM;
                printf("%-20s %6d %s\n", models[mi], B, oom ? "out of memory" : e.msg);
                if (out) fprintf(out, "%s,%d,%s,,,,\n", models[mi], B, oom ? "oom" : "error");
                rc |= !oom;
                tr_graph_free(g);
                continue;
            }
            g->training = 1;
            size_t nx = (size_t)B * 3 * 32 * 32;
            float *x = malloc(nx * sizeof(float));
            int *y = malloc((size_t)B * sizeof(int));
            tr_rng rng;
            tr_rng_seed(&rng, 9, 0);
            for (size_t i = 0; i < nx; i++) x[i] = (float)tr_rng_normal(&rng);
            for (int i = 0; i < B; i++) y[i] = (int)tr_rng_below(&rng, 10);
            tr_graph_set_batch(g, x, y, B);
            for (int s = 0; s < WARMUP; s++) step(g, B);
            be->sync(be);
            tr_kprof_epoch_begin(kp);
            double t0 = now();
            for (int s = 0; s < STEPS; s++) step(g, B);
            be->sync(be);
            double wall = now() - t0;
            double busy = tr_kprof_epoch_end(kp);
            double sps = (double)B * STEPS / wall;
            if (bi == 0) base = sps;
            double share = kp ? busy / wall : -1;
            printf("%-20s %6d %12.0f %10.2f %12.1f%% %10.2fx\n", models[mi], B, sps, wall / STEPS * 1e3, share * 100,
                   base > 0 ? sps / base : 0);
            if (out) fprintf(out, "%s,%d,ok,%.1f,%.3f,%.4f,%.3f\n", models[mi], B, sps, wall / STEPS * 1e3, share,
                             base > 0 ? sps / base : 0);
            free(x);
            free(y);
            tr_graph_free(g);
        }
    }
    if (out) fclose(out);
    if (kp && kcsv && tr_kprof_write_csv(kp, kcsv, &e)) {
        fprintf(stderr, "bench_gpu: %s\n", e.msg);
        rc = 1;
    }
    if (kp && tr_kprof_dropped(kp)) fprintf(stderr, "bench_gpu: %llu CUPTI records dropped\n",
                                            (unsigned long long)tr_kprof_dropped(kp));
    tr_kprof_free(kp);
    tr_backend_free(be);
    return rc;
}
