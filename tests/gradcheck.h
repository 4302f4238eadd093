/* Finite-difference gradient checks for layers: a graph of one (or a few) ops on the CPU
 * backend, loss L = Σ out·R for a fixed random R, analytical gradients from backward compared
 * with central differences of L for every leaf (input and extra leaves) and every parameter.
 * Header-only so each test program stays one file. */
#ifndef DEBA_GRADCHECK_H
#define DEBA_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/layers.h"
#include "trainer/rng.h"

/* Adds the op(s) under test after input x; returns the output tensor id. */
typedef int (*gc_build_fn)(tr_graph *g, int x, void *arg);

typedef struct {
    int n, c, h, w;       /* batch and input shape */
    int rank, dims[TR_MAX_RANK];   /* rank > 0: a general input shape instead of (c, h, w) */
    float step;           /* finite-difference step (default 1e-2) */
    float tol;            /* bound on ‖analytic − numeric‖₂ / ‖numeric‖₂ (default 1e-2) */
    int training;         /* graph mode (default 1) */
    int keep_init;        /* 1: keep the builder's parameter init instead of U(−1, 1) */
    int max_checks;       /* elements checked per tensor (default 64; 0 = default) */
    uint64_t seed;
} gc_opts;

typedef struct {
    double err_input;     /* worst normalised error over leaves */
    double err_param;     /* worst over parameters */
    int checked;          /* elements compared */
} gc_result;

static double gc_loss(tr_graph *g, int n, const float *r, float *host_out, tr_rng saved_rng)
{
    const tr_tensor *o = &g->tensors[g->output];
    int64_t m = tr_tensor_elems(o, n);
    g->rng = saved_rng;   /* dropout-like ops draw the same masks every time */
    tr_graph_forward(g, n);
    g->be->download(g->be, host_out, o->data, (size_t)m * sizeof(float));
    double l = 0;
    for (int64_t i = 0; i < m; i++) l += (double)host_out[i] * r[i];
    return l;
}

/* Compares analytic and numeric gradients of `count` floats at dev (device values) with
 * gradient buf dgrad; returns the normalised error. */
static double gc_compare(tr_graph *g, int n, float *dev, const float *dgrad, int64_t count,
                         const float *r, float *host_out, tr_rng saved_rng, const gc_opts *o,
                         tr_rng *pick, int *checked)
{
    tr_backend *be = g->be;
    float *host = malloc((size_t)count * sizeof(float));
    float *ga = malloc((size_t)count * sizeof(float));
    be->download(be, host, dev, (size_t)count * sizeof(float));
    be->download(be, ga, dgrad, (size_t)count * sizeof(float));
    int64_t k = count < o->max_checks ? count : o->max_checks;
    double num2 = 0, diff2 = 0;
    for (int64_t j = 0; j < k; j++) {
        int64_t i = count <= o->max_checks ? j : (int64_t)tr_rng_below(pick, (uint32_t)count);
        float v = host[i];
        float vp = v + o->step, vm = v - o->step;
        be->upload(be, dev + i, &vp, sizeof(float));
        double lp = gc_loss(g, n, r, host_out, saved_rng);
        be->upload(be, dev + i, &vm, sizeof(float));
        double lm = gc_loss(g, n, r, host_out, saved_rng);
        be->upload(be, dev + i, &v, sizeof(float));
        double num = (lp - lm) / (2.0 * o->step);
        num2 += num * num;
        diff2 += (num - ga[i]) * (num - ga[i]);
        (*checked)++;
    }
    free(host);
    free(ga);
    return sqrt(diff2) / (sqrt(num2) + 1e-6);
}

/* Builds, runs and checks. Returns 0 when both errors are within tol; prints what it found. */
static int gc_check(const char *what, gc_build_fn build, void *arg, gc_opts o, gc_result *res)
{
    if (o.step <= 0) o.step = 1e-2f;
    if (o.tol <= 0) o.tol = 1e-2f;
    if (o.max_checks <= 0) o.max_checks = 64;
    if (!o.seed) o.seed = 1234;
    gc_result rr = {0, 0, 0};
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    tr_graph *g = o.rank > 0 ? tr_graph_new_nd(o.rank, o.dims) : tr_graph_new(o.c, o.h, o.w);
    if (!be || !g) { fprintf(stderr, "%s: setup failed: %s\n", what, e.msg); return -1; }
    g->input_grad = 1;
    g->training = o.training;
    int out = build(g, g->input, arg);
    if (out < 0 || g->failed) { fprintf(stderr, "%s: build failed: %s\n", what, g->err.msg); return -1; }
    g->output = out;
    g->classes = g->tensors[out].w;
    if (tr_graph_alloc(g, be, o.seed, &e) || tr_graph_plan(g, o.n, &e)) {
        fprintf(stderr, "%s: %s\n", what, e.msg);
        return -1;
    }
    tr_rng rng;
    tr_rng_seed(&rng, o.seed, 99);
    /* leaves: activation tensors no node produces (parameter tensors are checked below with
     * the other parameters; constants have no gradient) */
    char *produced = calloc((size_t)g->n_tensors, 1);
    for (int i = 0; i < g->n_nodes; i++) produced[g->nodes[i].out] = 1;
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].kind != TR_T_ACT) produced[i] = 1;
    for (int i = 0; i < g->n_tensors; i++) {
        if (produced[i]) continue;
        tr_tensor *t = &g->tensors[i];
        int64_t m = tr_tensor_elems(t, o.n);
        float *h = malloc((size_t)m * sizeof(float));
        for (int64_t j = 0; j < m; j++) h[j] = (float)(2 * tr_rng_uniform(&rng) - 1);
        be->upload(be, t->data, h, (size_t)m * sizeof(float));
        free(h);
    }
    if (!o.keep_init && g->n_params) {
        float *h = malloc((size_t)g->n_params * sizeof(float));
        for (int64_t j = 0; j < g->n_params; j++) h[j] = (float)(2 * tr_rng_uniform(&rng) - 1);
        be->upload(be, g->params, h, (size_t)g->n_params * sizeof(float));
        free(h);
    }
    const tr_tensor *ot = &g->tensors[out];
    int64_t m = tr_tensor_elems(ot, o.n);
    float *r = malloc((size_t)m * sizeof(float)), *host_out = malloc((size_t)m * sizeof(float));
    for (int64_t j = 0; j < m; j++) r[j] = (float)(2 * tr_rng_uniform(&rng) - 1);
    tr_rng saved = g->rng;
    gc_loss(g, o.n, r, host_out, saved);
    tr_graph_zero_act_grads(g);
    tr_graph_zero_grads(g);
    be->upload(be, ot->grad, r, (size_t)m * sizeof(float));
    tr_graph_backward(g, o.n);
    tr_rng pick;
    tr_rng_seed(&pick, o.seed, 7);
    for (int i = 0; i < g->n_tensors; i++) {
        if (produced[i]) continue;
        tr_tensor *t = &g->tensors[i];
        double err = gc_compare(g, o.n, t->data, t->grad, tr_tensor_elems(t, o.n), r, host_out,
                                saved, &o, &pick, &rr.checked);
        if (err > rr.err_input) rr.err_input = err;
    }
    for (int p = 0; p < g->n_pspecs; p++) {
        const tr_param_spec *ps = &g->pspecs[p];
        double err = gc_compare(g, o.n, g->params + ps->off, g->grads + ps->off, ps->count, r, host_out,
                                saved, &o, &pick, &rr.checked);
        if (err > rr.err_param) {
            rr.err_param = err;
        }
        if (err > o.tol) fprintf(stderr, "%s: parameter %s error %.3g\n", what, ps->name, err);
    }
    fprintf(stderr, "gradcheck %-40s input err %.2e  param err %.2e  (%d elements)\n", what, rr.err_input,
            rr.err_param, rr.checked);
    free(produced);
    free(r);
    free(host_out);
    tr_graph_free(g);
    tr_backend_free(be);
    if (res) *res = rr;
    return rr.err_input <= o.tol && rr.err_param <= o.tol ? 0 : 1;
}

#endif
