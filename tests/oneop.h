/* A graph on the CPU backend whose ops a kernel test adds, then allocates for a batch of n,
 * shared by the tests that check values by hand (test_conv_window.c, test_cpu_blocking.c,
 * test_layers.c). */
#ifndef DEBA_TESTS_ONEOP_H
#define DEBA_TESTS_ONEOP_H

#include <string.h>
#include "tests/testutil.h"
#include "trainer/backend/backend.h"
#include "trainer/graph.h"

typedef struct {
    tr_backend *be;
    tr_graph *g;
} net;

static net net_new(int c, int h, int w)
{
    deba_err e = {0};
    net o = {tr_backend_cpu_new(&e), tr_graph_new(c, h, w)};
    if (!o.be || !o.g) fail_msg("setup: %s", e.msg);
    o.g->input_grad = 1;
    return o;
}

static void net_ready(net *o, int out, int n)
{
    deba_err e = {0};
    if (out < 0) fail_msg("build: %s", o->g->err.msg);
    o->g->output = out;
    o->g->classes = o->g->tensors[out].w;
    o->g->training = 1;
    if (tr_graph_alloc(o->g, o->be, 1, &e) || tr_graph_plan(o->g, n, &e)) fail_msg("%s", e.msg);
}

static void net_free(net *o)
{
    tr_graph_free(o->g);
    tr_backend_free(o->be);
}

static float *param_of(tr_graph *g, const char *name)
{
    for (int i = 0; i < g->n_pspecs; i++)
        if (!strcmp(g->pspecs[i].name, name)) return g->params + g->pspecs[i].off;
    fail_msg("no parameter %s", name);
    return NULL;
}

#endif
