/* Imported against built-in (issue 10, item 10): torchvision's resnet18 exported to ONNX by
 * PyTorch (scripts/onnx_torchvision.py) and lowered onto the engine, against `--arch resnet18`,
 * both training on the CPU backend at the same batch: samples/s of a full SGD step, measured in
 * alternating rounds so both see the same machine. The target is a ratio >= 0.95.
 * Usage: bench_onnx [batch [rounds]]; skips (exit 0) without Debian's PyTorch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tests/testutil.h"
#include "trainer/backend/backend.h"
#include "trainer/models/models.h"
#include "trainer/onnx/lower.h"
#include "trainer/train.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Seconds per step: one warm-up step, then steps until at least `min_s` seconds (and 3 steps). */
static double time_steps(tr_graph *g, int n, double min_s)
{
    tr_step st;
    tr_train_step(g, n, 0.01f, 0.9f, 5e-4f, &st);
    int steps = 0;
    double t0 = now(), t;
    do {
        tr_train_step(g, n, 0.01f, 0.9f, 5e-4f, &st);
        steps++;
    } while ((t = now() - t0) < min_s || steps < 3);
    return t / steps;
}

static int setup(tr_graph *g, tr_backend *be, int n, const float *x, const int *y, deba_err *e)
{
    if (tr_graph_alloc(g, be, 1, e) || tr_graph_plan(g, n, e)) return -1;
    g->training = 1;
    tr_graph_set_batch(g, x, y, n);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 64, rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (n < 1 || rounds < 1) {
        fprintf(stderr, "usage: bench_onnx [batch [rounds]]\n");
        return 2;
    }
    if (tu_run("/usr/bin/python3 -c 'import torch, torchvision, onnx' 2>/dev/null")) {
        printf("bench_onnx: skipped (no python3-torch, python3-torchvision, python3-onnx)\n");
        return 0;
    }
    char *dir = tu_mkdtemp(), cmd[8400], path[4200];
    const char *src = getenv("DEBA_SRC");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/onnx_torchvision.py' '%s' resnet18 >/dev/null 2>&1",
             src && *src ? src : ".", dir);
    if (tu_run(cmd)) {
        fprintf(stderr, "bench_onnx: exporting resnet18 failed\n");
        tu_rmtree(dir);
        return 1;
    }
    snprintf(path, sizeof path, "%s/resnet18/model.onnx", dir);
    deba_err e = {0};
    onnx_model *m = NULL;
    onnx_net *net = NULL;
    /* the file's weights: torchvision's init, as the built-in's (kaiming normal), so both train
     * from weights of the same kind */
    onnx_lower_opts lo = {ONNX_LOWER_MODEL, ONNX_INIT_ONNX, NULL, NULL, 3};
    tr_backend *be = tr_backend_cpu_new(&e);
    tr_graph *builtin = tr_model_build("resnet18", 3, 32, 10, &e);
    double t0 = now();
    int ok = be && builtin && !onnx_load(path, ONNX_PARSE_MODEL, &m, &e) && !onnx_lower(m, &lo, &net, &e);
    double import_s = now() - t0;
    size_t per = 3 * 32 * 32;
    float *x = malloc(sizeof *x * per * (size_t)n);
    int *y = malloc(sizeof *y * (size_t)n);
    tr_rng rng;
    tr_rng_seed(&rng, 1, 0);
    for (size_t i = 0; i < per * (size_t)n; i++) x[i] = (float)tr_rng_normal(&rng);
    for (int i = 0; i < n; i++) y[i] = (int)tr_rng_below(&rng, 10);
    ok = ok && !setup(builtin, be, n, x, y, &e) && !setup(net->g, be, n, x, y, &e);
    if (!ok) {
        fprintf(stderr, "bench_onnx: %s\n", e.msg);
        return 1;
    }
    printf("bench_onnx: resnet18 3x32x32, batch %d, CPU (%s); import %.2f s; params built-in %lld, imported %lld\n", n,
           be->device_name, import_s, (long long)builtin->n_params, (long long)net->g->n_params);
    /* the same kernels, or the ratio has a structural reason: the op histograms side by side */
    int hb[TR_OP_COUNT] = {0}, hi[TR_OP_COUNT] = {0};
    for (int i = 0; i < builtin->n_nodes; i++) hb[builtin->nodes[i].op]++;
    for (int i = 0; i < net->g->n_nodes; i++) hi[net->g->nodes[i].op]++;
    printf("  engine nodes by op (built-in / imported):");
    for (int op = 0; op < TR_OP_COUNT; op++)
        if (hb[op] || hi[op]) printf(" %s %d/%d", tr_op_name((tr_op)op), hb[op], hi[op]);
    printf("\n");
    /* one ratio per round, each from back-to-back measurements; their median is the figure */
    double ratio[64];
    if (rounds > 64) rounds = 64;
    for (int r = 0; r < rounds; r++) {
        double tb, ti;   /* the order alternates: neither side always runs on a warmer machine */
        if (r % 2) ti = time_steps(net->g, n, 1.5), tb = time_steps(builtin, n, 1.5);
        else tb = time_steps(builtin, n, 1.5), ti = time_steps(net->g, n, 1.5);
        ratio[r] = tb / ti;
        printf("  round %d: built-in %.1f samples/s, imported %.1f samples/s, ratio %.3f\n", r + 1, n / tb, n / ti,
               ratio[r]);
    }
    for (int i = 1; i < rounds; i++)   /* insertion sort: a handful of rounds */
        for (int j = i; j > 0 && ratio[j] < ratio[j - 1]; j--) {
            double t = ratio[j];
            ratio[j] = ratio[j - 1], ratio[j - 1] = t;
        }
    double med = rounds % 2 ? ratio[rounds / 2] : 0.5 * (ratio[rounds / 2 - 1] + ratio[rounds / 2]);
    printf("bench_onnx: imported/built-in samples/s %.3f (median of %d rounds, range %.3f-%.3f; target >= 0.95)\n", med,
           rounds, ratio[0], ratio[rounds - 1]);
    tr_graph_free(builtin);
    onnx_net_free(net);
    onnx_model_free(m);
    tr_backend_free(be);
    free(x);
    free(y);
    tu_rmtree(dir);
    return 0;
}
