/* Training-step throughput of the CPU backend, measured against what OpenBLAS's sgemm reaches
 * on this machine in the same run: samples/s and achieved GFLOP/s of a full step (forward,
 * loss, backward, gradient moments, SGD) for cnn_small and resnet18 on 32x32 inputs. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "trainer/backend/backend.h"
#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/graph.h"
#include "trainer/models/models.h"
#include "tools/cli.h"
#include "trainer/train.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *rand_floats(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof(float));
    srand(seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / (float)RAND_MAX * 2.f - 1.f;
    return p;
}

/* Best of a few timed repetitions, after one warm-up call. */
static void gemm(int ours, int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                 float *c)
{
    if (ours)
        tr_cpu_sgemm(ta, tb, m, n, k, 1.f, a, lda, b, ldb, 0.f, c, n);
    else
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.f, a,
                    lda, b, ldb, 0.f, c, n);
}

/* ours: tr_cpu_sgemm (OpenMP team, OpenBLAS single-threaded inside); else OpenBLAS's threads */
static double sgemm_gflops(int ours, int m, int n, int k, int ta, int tb)
{
    float *a = rand_floats((size_t)m * k, 1), *b = rand_floats((size_t)k * n, 2), *c = calloc((size_t)m * n, 4);
    int lda = ta ? m : k, ldb = tb ? k : n;
    gemm(ours, ta, tb, m, n, k, a, lda, b, ldb, c);
    double flop = 2.0 * m * n * k, best = 1e30, t0 = now();
    int reps = 0;
    while (reps < 3 || (now() - t0 < 0.5 && reps < 200)) {
        double t = now();
        gemm(ours, ta, tb, m, n, k, a, lda, b, ldb, c);
        t = now() - t;
        if (t < best) best = t;
        reps++;
    }
    free(a), free(b), free(c);
    return flop / best / 1e9;
}

/* What the DEBA signals add to a step: the fused update with the SPEC §2 moments against the plain
 * update, best of several (both write the same parameters; the bench does not care about them). */
static double signal_cost_s(tr_graph *g)
{
    tr_backend *be = g->be;
    double best_plain = 1e30, best_fused = 1e30, s, q;
    for (int r = 0; r < 7; r++) {
        double t = now();
        be->sgd(be, g->params, g->grads, g->momentum, g->n_params, 0.01f, 0.9f, 5e-4f);
        t = now() - t;
        if (t < best_plain) best_plain = t;
        t = now();
        if (be->sgd_moments)
            be->sgd_moments(be, g->params, g->grads, g->momentum, g->n_params, 0.01f, 0.9f, 5e-4f, &s, &q);
        else {
            be->grad_moments(be, g->grads, g->n_params, &s, &q);
            be->sgd(be, g->params, g->grads, g->momentum, g->n_params, 0.01f, 0.9f, 5e-4f);
        }
        t = now() - t;
        if (t < best_fused) best_fused = t;
    }
    return best_fused > best_plain ? best_fused - best_plain : 0;
}

int main(int argc, char **argv)
{
    /* the tools' waiting policy (a bounded spin, tools/cli.h), so the bench times what they run */
    cli_omp_wait_policy(argv);
    /* optional: bench_train MODEL BATCH [STEPS] for profiling one configuration */
    const char *only = argc > 1 ? argv[1] : NULL;
    int only_b = argc > 2 ? atoi(argv[2]) : 0, only_steps = argc > 3 ? atoi(argv[3]) : 0;
    /* the reference: OpenBLAS with its own threads, before the backend creates its thread team */
    double ref = sgemm_gflops(0, 1024, 1024, 1024, 0, 0);
    deba_err e = {0};
    tr_backend *be = tr_backend_new("cpu", &e);
    if (!be) {
        fprintf(stderr, "bench_train: %s\n", e.msg);
        return 1;
    }
    double load[3] = {0, 0, 0};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
        fclose(lf);
    }
    const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    printf("bench_train: %s (%s)\nOMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s, load average %.2f (figures are "
           "wall-clock: other load lowers them)\n", be->device_name, openblas_get_config(), policy ? policy : "unset",
           spin ? spin : "unset", load[0]);
    printf("sgemm 1024x1024x1024, OpenBLAS threads     %7.1f GFLOP/s  (reference)\n", ref);
    if (!only) {
        static const struct { const char *what; int m, n, k, ta, tb; } shapes[] = {
            {"1024x1024x1024", 1024, 1024, 1024, 0, 0},
            {"conv fwd  64x2048x576 (layer1)", 64, 2048, 576, 0, 0},
            {"conv fwd 256x2048x2304 (layer3)", 256, 2048, 2304, 0, 0},
            {"conv dW  256x2304x2048 (layer3)", 256, 2304, 2048, 0, 1},
            {"conv dX 2304x2048x256 (layer3)", 2304, 2048, 256, 1, 0},
            {"conv fwd 512x128x4608 (layer4)", 512, 128, 4608, 0, 0},
        };
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            double gf = sgemm_gflops(1, shapes[i].m, shapes[i].n, shapes[i].k, shapes[i].ta, shapes[i].tb);
            printf("tr_cpu_sgemm %-31s %7.1f GFLOP/s  %5.1f%% of reference\n", shapes[i].what, gf, 100 * gf / ref);
        }
    }

    /* the default pair, or any built-in model named on the command line (3x32x32, as bench_torch) */
    static const char *defaults[] = {"cnn_small", "resnet18"};
    const char *const *models = only ? &only : defaults;
    const size_t n_models = only ? 1 : sizeof defaults / sizeof defaults[0];
    static const int batches[] = {32, 64, 128, 256, 512};
    typedef struct { const char *model; int n; double ms, sps, gf, sig; } result;
    result res[16];
    int nres = 0, status = 0;
    for (size_t mi = 0; mi < n_models; mi++) {
        tr_graph *g = tr_model_build(models[mi], 3, 32, 10, &e);
        if (!g || tr_graph_alloc(g, be, 42, &e)) {
            fprintf(stderr, "bench_train: %s: %s\n", models[mi], e.msg);
            tr_graph_free(g);
            status = 1;
            continue;
        }
        g->training = 1;
        /* training step ≈ forward + backward (data and weight grads, 2x forward) */
        const double flop_per_sample = 3.0 * tr_graph_flops(g);
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            const int n = batches[bi];
            if (only_b && n != only_b) continue;
            if (tr_graph_plan(g, n, &e)) {
                fprintf(stderr, "bench_train: %s batch %d: %s\n", models[mi], n, e.msg);
                status = 1;
                break;
            }
            float *x = rand_floats((size_t)n * 3 * 32 * 32, 7);
            int *y = malloc((size_t)n * sizeof(int));
            for (int i = 0; i < n; i++) y[i] = i % 10;
            tr_graph_set_batch(g, x, y, n);
            tr_step st;
            tr_train_step(g, n, 0.01f, 0.9f, 5e-4f, &st);   /* warm-up: first touch of the planned buffers */
            /* the fastest step: the machine may be shared, and load only ever slows a step down */
            int steps = 0;
            double t0 = now(), per = 1e30;
            do {
                double t = now();
                tr_train_step(g, n, 0.01f, 0.9f, 5e-4f, &st);
                t = now() - t;
                if (t < per) per = t;
                steps++;
            } while (only_steps ? steps < only_steps : (steps < 3 || now() - t0 < 1.5));
            if (nres < 16)
                res[nres++] = (result){models[mi], n, 1e3 * per, n / per, flop_per_sample * n / per / 1e9,
                                       signal_cost_s(g) / per};
            free(x);
            free(y);
        }
        tr_graph_free(g);
    }
    /* the reference again after the models, and the better of the two, for the same reason */
    openblas_set_num_threads(omp_get_max_threads());
    double ref2 = sgemm_gflops(0, 1024, 1024, 1024, 0, 0);
    openblas_set_num_threads(1);
    if (ref2 > ref) ref = ref2;
    printf("sgemm 1024x1024x1024, OpenBLAS threads, best of start and end: %.1f GFLOP/s\n", ref);
    printf("\n%-18s %6s %12s %12s %10s %10s %10s\n", "model", "batch", "step ms", "samples/s", "GFLOP/s", "vs sgemm",
           "signals");
    for (int i = 0; i < nres; i++)
        printf("%-18s %6d %12.1f %12.1f %10.1f %9.1f%% %9.2f%%\n", res[i].model, res[i].n, res[i].ms, res[i].sps,
               res[i].gf, 100 * res[i].gf / ref, 100 * res[i].sig);
    printf("(signals: what the SPEC §2 gradient moments add to a step, the fused update minus the plain update, "
           "as a share of the step)\n");
    printf("(GFLOP/s: 3x the forward FLOPs of tr_graph_flops per sample, which count every kernel tap; the CPU "
           "backend skips taps that only see padding, e.g. 8 of 9 in resnet18's layer4 at 32x32)\n");
    tr_backend_free(be);
    return status;
}
