/* The CPU conv's two ways of sharing a layer among the threads (trainer/backend/cpu/cpu_conv.c):
 * the team on each GEMM of the builder's chunks ("shared") against each thread on its own chunks
 * of c samples ("per thread"), forward and backward timed per layer shape of the built-in models
 * at 3x32x32, interleaved, medians; the ratio per-thread/shared is what the path rule rests on.
 * The process CPU time per sample is printed beside the wall clock: with passive OpenMP waiting it
 * is the work done, which other processes on the machine move far less than the wall clock.
 * Usage: bench_conv [batch [reps [chunk,chunk,... [layer-name-filter]]]]  (chunk 0 = shared,
 * -1 = the rule's choice) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "trainer/backend/backend.h"
#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/graph.h"
#include "trainer/layers.h"

typedef struct {
    const char *name;
    int cin, hw, cout, k, stride, pad, groups;
} shape;

/* One of each kind of GEMM conv in the built-in models at 32x32 (trainer/models/). */
static const shape shapes[] = {
    {"cnn_small block1 3->32 32x32", 3, 32, 32, 3, 1, 1, 1},
    {"cnn_small block2 32->64 16x16", 32, 16, 64, 3, 1, 1, 1},
    {"cnn_small block3 64->128 8x8", 64, 8, 128, 3, 1, 1, 1},
    {"resnet stem 7x7/2 3->64 32x32", 3, 32, 64, 7, 2, 3, 1},
    {"resnet18 layer1 64->64 8x8", 64, 8, 64, 3, 1, 1, 1},
    {"resnet18 layer2.0 3x3/2 64->128 8x8", 64, 8, 128, 3, 2, 1, 1},
    {"resnet18 layer2 128->128 4x4", 128, 4, 128, 3, 1, 1, 1},
    {"resnet18 layer3 256->256 2x2", 256, 2, 256, 3, 1, 1, 1},
    {"resnet18 layer4 512->512 1x1", 512, 1, 512, 3, 1, 1, 1},
    {"resnet 1x1/2 64->128 8x8", 64, 8, 128, 1, 2, 0, 1},
    {"resnet50 1x1 64->256 8x8", 64, 8, 256, 1, 1, 0, 1},
    {"resnet50 1x1 256->64 8x8", 256, 8, 64, 1, 1, 0, 1},
    {"resnet50 1x1 512->128 4x4", 512, 4, 128, 1, 1, 0, 1},
    {"resnet50 1x1 1024->256 2x2", 1024, 2, 256, 1, 1, 0, 1},
    {"densenet 3x3 128->32 8x8", 128, 8, 32, 3, 1, 1, 1},
    {"densenet 3x3 128->32 4x4", 128, 4, 32, 3, 1, 1, 1},
    {"densenet 3x3 128->32 2x2", 128, 2, 32, 3, 1, 1, 1},
    {"effnet 1x1 16->96 16x16", 16, 16, 96, 1, 1, 0, 1},
    {"effnet 1x1 144->24 8x8", 144, 8, 24, 1, 1, 0, 1},
    {"effnet 1x1 672->112 2x2", 672, 2, 112, 1, 1, 0, 1},
    {"grouped 3x3 64->64 g4 8x8", 64, 8, 64, 3, 1, 1, 4},
};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define MAX_CHUNKS 8
#define MAX_REPS 31

int main(int argc, char **argv)
{
    const int n = argc > 1 ? atoi(argv[1]) : 64, reps = argc > 2 ? atoi(argv[2]) : 3;
    int chunks[MAX_CHUNKS] = {0, -1}, nc = 2;
    const char *filter = argc > 4 ? argv[4] : NULL;
    if (argc > 3) {
        nc = 0;
        for (char *s = strtok(argv[3], ","); s && nc < MAX_CHUNKS; s = strtok(NULL, ",")) chunks[nc++] = atoi(s);
    }
    if (n <= 0 || reps <= 0 || reps > MAX_REPS || nc == 0) {
        fprintf(stderr, "usage: bench_conv [batch [reps (1-%d) [chunk,chunk,...]]]\n", MAX_REPS);
        return 2;
    }
    printf("conv forward + backward, batch %d, %d threads, median of %d interleaved repeats (>= 0.2 s each)\n", n,
           omp_get_max_threads(), reps);
    printf("(wall us per sample, forward / backward, [CPU us per sample]; last: the last chunk's wall and CPU "
           "ratios to the first's, forward and backward)\n");
    printf("%-38s %5s", "layer", "nb");
    for (int c = 0; c < nc; c++) printf("  %-29s", c == 0 ? "chunk 0 (shared)" : c == 1 ? "chunk -1 (rule)" : "chunk");
    printf("\n");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *sh = &shapes[si];
        if (filter && !strstr(sh->name, filter)) continue;
        deba_err e = {0};
        tr_backend *be = tr_backend_cpu_new(&e);
        tr_graph *g = tr_graph_new(sh->cin, sh->hw, sh->hw);
        if (!be || !g) {
            fprintf(stderr, "bench_conv: %s\n", e.msg);
            return 1;
        }
        g->input_grad = 1;
        int y = tr_conv2d(g, "conv", g->input, sh->cout, sh->k, sh->stride, sh->pad, sh->groups, 0, NULL, NULL);
        if (y < 0) {
            fprintf(stderr, "bench_conv: %s\n", g->err.msg);
            return 1;
        }
        g->output = y;
        g->classes = g->tensors[y].w;
        g->training = 1;
        if (tr_graph_alloc(g, be, 1, &e) || tr_graph_plan(g, n, &e)) {
            fprintf(stderr, "bench_conv: %s\n", e.msg);
            return 1;
        }
        tr_node *nd = &g->nodes[0];
        tr_tensor *xt = &g->tensors[g->input], *yt = &g->tensors[y];
        const size_t nx = (size_t)n * xt->c * xt->h * xt->w, ny = (size_t)n * yt->c * yt->h * yt->w;
        srand(1);
        for (size_t i = 0; i < nx; i++) xt->data[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        for (size_t i = 0; i < ny; i++) yt->grad[i] = (float)rand() / (float)RAND_MAX - 0.5f;
        double t[MAX_CHUNKS][2][MAX_REPS], cpu[MAX_CHUNKS][2][MAX_REPS];
        for (int r = 0; r < reps; r++)
            for (int c = 0; c < nc; c++)
                for (int pass = 0; pass < 2; pass++) {
                    int calls = 0;
                    const double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
                    double el;
                    do {
                        if (pass)
                            tr_cpu_conv2d_backward_as(g, nd, n, chunks[c]);
                        else
                            tr_cpu_conv2d_forward_as(g, nd, n, chunks[c]);
                        calls++;
                    } while ((el = clock_s(CLOCK_MONOTONIC) - t0) < 0.2);
                    t[c][pass][r] = el / calls / n * 1e6;
                    cpu[c][pass][r] = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / calls / n * 1e6;
                }
        printf("%-38s %5d", sh->name, nd->ws_max_samples);
        double base[4] = {0, 0, 0, 0}, f = 0, b = 0, fc = 0, bc = 0;
        for (int c = 0; c < nc; c++) {
            f = median(t[c][0], reps), b = median(t[c][1], reps);
            fc = median(cpu[c][0], reps), bc = median(cpu[c][1], reps);
            if (c == 0) base[0] = f, base[1] = b, base[2] = fc, base[3] = bc;
            printf("  %6.1f / %6.1f [%5.0f/%5.0f]", f, b, fc, bc);
        }
        printf("  wall %.2f, %.2f  cpu %.2f, %.2f\n", f / base[0], b / base[1], fc / base[2], bc / base[3]);
        fflush(stdout);
        tr_graph_free(g);
        tr_backend_free(be);
    }
    return 0;
}
