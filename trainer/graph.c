/* The graph core: building nodes and parameters, planning memory per batch size, and running
 * forward and backward through the backend's table. Knows no op's arithmetic. */
#include "trainer/graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TR_ALIGN_FLOATS 16   /* every tensor starts on a 64-byte boundary */

static const char *OP_NAMES[TR_OP_COUNT] = {
    "view", "conv2d", "batchnorm", "act", "maxpool", "avgpool", "adaptive_avgpool", "linear",
    "add", "concat", "mul_channel", "dropout", "drop_path", "layernorm", "attention",
    "patch_tokens", "select_token", "binary", "unary", "expand", "reduce", "softmax", "matmul",
    "transpose", "slice", "concat_axis", "pad",
};

static const char *ACT_NAMES[TR_ACT_COUNT] = {
    "relu", "relu6", "sigmoid", "silu", "hardsigmoid", "hardswish", "gelu",
};

const char *tr_op_name(tr_op op) { return (unsigned)op < TR_OP_COUNT ? OP_NAMES[op] : "?"; }
const char *tr_act_name(tr_act a) { return (unsigned)a < TR_ACT_COUNT ? ACT_NAMES[a] : "?"; }

static int grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return 0;
    int nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return -1;
    memset((char *)q + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *p = q;
    *cap = nc;
    return 0;
}

int tr_graph_fail(tr_graph *g, const char *fmt, ...)
{
    if (!g->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err.msg, sizeof g->err.msg, fmt, ap);
        va_end(ap);
        g->err.status = DEBA_E_INPUT;
        g->failed = 1;
    }
    return -1;
}

static int add_tensor_nd(tr_graph *g, int rank, const int *dims_in, int batchless)
{
    if (rank < 0 || rank > TR_MAX_RANK) return tr_graph_fail(g, "rank %d (at most %d)", rank, TR_MAX_RANK);
    /* dims may point into g->tensors (a view's shape taken from its source): copied before the
     * array grows */
    int dims[TR_MAX_RANK];
    for (int i = 0; i < rank; i++) dims[i] = dims_in[i];
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] <= 0) return tr_graph_fail(g, "invalid tensor shape: dimension %d is %d", i, dims[i]);
        numel *= dims[i];
        if (numel > INT32_MAX) return tr_graph_fail(g, "tensor of more than 2^31 elements per sample");
    }
    if (grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors + 1, sizeof(tr_tensor)))
        return tr_graph_fail(g, "out of memory");
    tr_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
    tr_shape_chw(rank, dims, &t->c, &t->h, &t->w);
    t->batchless = batchless ? 1 : 0;
    t->kind = TR_T_ACT;
    t->view_of = -1;
    return g->n_tensors++;
}

static int add_tensor(tr_graph *g, int c, int h, int w)
{
    if (c <= 0 || h <= 0 || w <= 0)
        return tr_graph_fail(g, "invalid tensor shape (%d, %d, %d)", c, h, w);
    return add_tensor_nd(g, 3, (const int[]){c, h, w}, 0);
}

tr_graph *tr_graph_new(int c, int h, int w)
{
    tr_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->output = -1;
    g->input = add_tensor(g, c, h, w);
    if (g->input < 0) {
        tr_graph_free(g);
        return NULL;
    }
    return g;
}

tr_graph *tr_graph_new_nd(int rank, const int *dims)
{
    tr_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->output = -1;
    g->input = add_tensor_nd(g, rank, dims, 0);
    if (g->input < 0) {
        tr_graph_free(g);
        return NULL;
    }
    return g;
}

int tr_graph_add_leaf(tr_graph *g, int c, int h, int w)
{
    return g->failed ? -1 : add_tensor(g, c, h, w);
}

int tr_graph_add_leaf_nd(tr_graph *g, int rank, const int *dims)
{
    return g->failed ? -1 : add_tensor_nd(g, rank, dims, 0);
}

const tr_tensor *tr_graph_tensor(const tr_graph *g, int id)
{
    return id >= 0 && id < g->n_tensors ? &g->tensors[id] : NULL;
}

tr_node *tr_graph_add_node_nd(tr_graph *g, tr_op op, const char *name, const int *in, int n_in,
                              int rank, const int *dims, int batchless)
{
    if (g->failed) return NULL;
    if (n_in < 0 || n_in > TR_MAX_IN) {
        tr_graph_fail(g, "%s: %d inputs (at most %d)", name, n_in, TR_MAX_IN);
        return NULL;
    }
    for (int i = 0; i < n_in; i++)
        if (in[i] < 0 || in[i] >= g->n_tensors) {
            tr_graph_fail(g, "%s: input %d is not a tensor of this graph", name, i);
            return NULL;
        }
    int out = add_tensor_nd(g, rank, dims, batchless);
    if (out < 0) {
        /* name the layer whose shape went wrong (e.g. an image too small for the network) */
        char shape[96] = "";
        for (int i = 0, k = 0; i < rank && k < (int)sizeof shape - 16; i++)
            k += snprintf(shape + k, sizeof shape - k, "%s%d", i ? ", " : "", dims[i]);
        snprintf(g->err.msg, sizeof g->err.msg,
                 "%s: output shape (%s) is empty: the input is too small for this layer", name, shape);
        return NULL;
    }
    if (grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(tr_node))) {
        tr_graph_fail(g, "out of memory");
        return NULL;
    }
    tr_node *nd = &g->nodes[g->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    snprintf(nd->name, sizeof nd->name, "%s", name);
    memcpy(nd->in, in, (size_t)n_in * sizeof(int));
    nd->n_in = n_in;
    nd->out = out;
    if (op == TR_OP_VIEW && n_in == 1) {
        int base = in[0];
        while (g->tensors[base].view_of >= 0) base = g->tensors[base].view_of;
        tr_tensor *b = &g->tensors[base], *t = &g->tensors[out];
        if (tr_tensor_numel(b) != tr_tensor_numel(t)) {
            tr_graph_fail(g, "%s: a view must keep the element count", name);
            return NULL;
        }
        /* a view of a parameter or constant is one too: it shares the batchless memory */
        t->view_of = base;
        t->batchless = b->batchless;
        t->kind = b->kind;
        t->off = b->off;
    }
    return nd;
}

tr_node *tr_graph_add_node(tr_graph *g, tr_op op, const char *name, const int *in, int n_in,
                           int c, int h, int w)
{
    if (g->failed) return NULL;
    if (c <= 0 || h <= 0 || w <= 0) {
        tr_graph_fail(g, "%s: output shape (%d, %d, %d) is empty: the input is too small for this layer",
                      name, c, h, w);
        return NULL;
    }
    return tr_graph_add_node_nd(g, op, name, in, n_in, 3, (const int[]){c, h, w}, 0);
}

/* A parameter spec without its node: the caller attaches it. */
static int add_pspec(tr_graph *g, const char *name, int64_t count, int64_t fan_in, int64_t fan_out,
                     tr_init init)
{
    if (count <= 0) return tr_graph_fail(g, "%s: empty parameter", name);
    if (grow((void **)&g->pspecs, &g->cap_pspecs, g->n_pspecs + 1, sizeof(tr_param_spec)))
        return tr_graph_fail(g, "out of memory");
    tr_param_spec *ps = &g->pspecs[g->n_pspecs];
    snprintf(ps->name, sizeof ps->name, "%s", name);
    ps->off = g->n_params;
    ps->count = count;
    ps->fan_in = fan_in;
    ps->fan_out = fan_out;
    ps->init = init;
    ps->data = NULL;
    g->n_params += count;   /* unpadded: n_params is the count torchvision reports */
    return g->n_pspecs++;
}

int tr_graph_add_param_tensor(tr_graph *g, const char *name, int rank, const int *dims,
                              int64_t fan_in, int64_t fan_out, tr_init init, const float *data)
{
    if (g->failed) return -1;
    int id = add_tensor_nd(g, rank, dims, 1);
    if (id < 0) return -1;
    int64_t count = tr_tensor_numel(&g->tensors[id]);
    int ps = add_pspec(g, name, count, fan_in, fan_out, init);
    if (ps < 0) return -1;
    if (init.kind == TR_INIT_DATA) {
        float *d = malloc((size_t)count * sizeof(float));
        if (!d) return tr_graph_fail(g, "out of memory");
        memcpy(d, data, (size_t)count * sizeof(float));
        g->pspecs[ps].data = d;
    }
    g->tensors[id].kind = TR_T_PARAM;
    g->tensors[id].off = ps;
    return id;
}

int tr_graph_add_const_tensor(tr_graph *g, int rank, const int *dims, const float *data)
{
    if (g->failed) return -1;
    int id = add_tensor_nd(g, rank, dims, 1);
    if (id < 0) return -1;
    int64_t count = tr_tensor_numel(&g->tensors[id]);
    float *p = realloc(g->consts_init, (size_t)(g->n_consts + count) * sizeof(float));
    if (!p) return tr_graph_fail(g, "out of memory");
    g->consts_init = p;
    memcpy(p + g->n_consts, data, (size_t)count * sizeof(float));
    g->tensors[id].kind = TR_T_CONST;
    g->tensors[id].off = g->n_consts;
    g->n_consts += count;
    return id;
}

int tr_graph_add_param(tr_graph *g, tr_node *nd, const char *suffix, int64_t count,
                       int64_t fan_in, int64_t fan_out, tr_init init)
{
    if (g->failed) return -1;
    if (nd->n_params >= TR_MAX_PARAMS) return tr_graph_fail(g, "%s: too many parameters", nd->name);
    char name[sizeof g->pspecs[0].name];
    snprintf(name, sizeof name, "%s.%s", nd->name, suffix);
    int ps = add_pspec(g, name, count, fan_in, fan_out, init);
    if (ps < 0) return -1;
    nd->param[nd->n_params++] = ps;
    return ps;
}

int64_t tr_graph_add_stats(tr_graph *g, int64_t count, float v)
{
    if (g->failed) return -1;
    float *p = realloc(g->stats_init, (size_t)(g->n_stats + count) * sizeof(float));
    if (!p) return tr_graph_fail(g, "out of memory");
    g->stats_init = p;
    for (int64_t i = 0; i < count; i++) p[g->n_stats + i] = v;
    int64_t off = g->n_stats;
    g->n_stats += count;
    return off;
}

static void free_plan(tr_graph *g)
{
    tr_backend *be = g->be;
    if (!be) return;
    be->free(be, g->act);
    be->free(be, g->act_grad);
    be->free(be, g->saved_arena);
    be->free(be, g->ws);
    be->free(be, g->labels);
    g->act = g->act_grad = g->saved_arena = g->ws = NULL;
    g->labels = NULL;
    g->planned_n = 0;
}

void tr_graph_free(tr_graph *g)
{
    if (!g) return;
    if (g->be) {
        free_plan(g);
        g->be->free(g->be, g->params);
        g->be->free(g->be, g->grads);
        g->be->free(g->be, g->momentum);
        g->be->free(g->be, g->stats);
        g->be->free(g->be, g->consts);
    }
    for (int i = 0; i < g->n_pspecs; i++) free(g->pspecs[i].data);
    free(g->consts_init);
    free(g->tensors);
    free(g->nodes);
    free(g->pspecs);
    free(g->stats_init);
    free(g);
}

void tr_init_fill(float *dst, const tr_param_spec *ps, tr_rng *rng)
{
    double a = ps->init.a, fi = (double)(ps->fan_in > 0 ? ps->fan_in : 1);
    double fo = (double)(ps->fan_out > 0 ? ps->fan_out : 1);
    if (ps->init.kind == TR_INIT_DATA) {   /* the model's own values: no draws */
        if (ps->data) memcpy(dst, ps->data, (size_t)ps->count * sizeof(float));
        else memset(dst, 0, (size_t)ps->count * sizeof(float));
        return;
    }
    for (int64_t i = 0; i < ps->count; i++) {
        double v;
        switch (ps->init.kind) {
        case TR_INIT_ZERO: v = 0; break;
        case TR_INIT_ONE: v = 1; break;
        case TR_INIT_CONST: v = a; break;
        case TR_INIT_UNIFORM: v = (2 * tr_rng_uniform(rng) - 1) * a; break;
        case TR_INIT_NORMAL: v = tr_rng_normal(rng) * a; break;
        case TR_INIT_TRUNC_NORMAL:
            do v = tr_rng_normal(rng); while (fabs(v) > 2.0);
            v *= a;
            break;
        case TR_INIT_KAIMING_NORMAL_OUT: v = tr_rng_normal(rng) * sqrt(2.0 / fo); break;
        case TR_INIT_KAIMING_NORMAL_IN: v = tr_rng_normal(rng) * sqrt(2.0 / fi); break;
        case TR_INIT_TORCH_DEFAULT: v = (2 * tr_rng_uniform(rng) - 1) / sqrt(fi); break;
        case TR_INIT_XAVIER_UNIFORM: v = (2 * tr_rng_uniform(rng) - 1) * sqrt(6.0 / (fi + fo)); break;
        default: v = 0;
        }
        dst[i] = (float)v;
    }
}

deba_status tr_graph_alloc(tr_graph *g, tr_backend *be, uint64_t seed, deba_err *e)
{
    if (g->failed) return deba_err_set(e, g->err.status, "%s", g->err.msg);
    if (g->output < 0) return deba_err_set(e, DEBA_E_RUNTIME, "graph has no output");
    g->be = be;
    size_t pbytes = (size_t)(g->n_params ? g->n_params : 1) * sizeof(float);
    size_t sbytes = (size_t)(g->n_stats ? g->n_stats : 1) * sizeof(float);
    g->params = be->alloc(be, pbytes);
    g->grads = be->alloc(be, pbytes);
    g->momentum = be->alloc(be, pbytes);
    g->stats = be->alloc(be, sbytes);
    g->consts = be->alloc(be, (size_t)(g->n_consts ? g->n_consts : 1) * sizeof(float));
    float *host = calloc(1, pbytes > sbytes ? pbytes : sbytes);
    if (!g->params || !g->grads || !g->momentum || !g->stats || !g->consts || !host) {
        free(host);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory allocating %lld parameters on %s",
                            (long long)g->n_params, be->name);
    }
    tr_rng rng;
    tr_rng_seed(&rng, seed, 0);
    for (int i = 0; i < g->n_pspecs; i++) tr_init_fill(host + g->pspecs[i].off, &g->pspecs[i], &rng);
    be->upload(be, g->params, host, pbytes);
    if (g->n_stats) be->upload(be, g->stats, g->stats_init, (size_t)g->n_stats * sizeof(float));
    if (g->n_consts) be->upload(be, g->consts, g->consts_init, (size_t)g->n_consts * sizeof(float));
    free(host);
    for (int i = 0; i < g->n_pspecs; i++) {   /* uploaded: an imported model's copy is not kept */
        free(g->pspecs[i].data);
        g->pspecs[i].data = NULL;
    }
    be->zero(be, g->grads, pbytes);
    be->zero(be, g->momentum, pbytes);
    tr_rng_seed(&g->rng, seed, 3);
    return DEBA_OK;
}

static int64_t align_up(int64_t n) { return (n + TR_ALIGN_FLOATS - 1) / TR_ALIGN_FLOATS * TR_ALIGN_FLOATS; }

/* The activation arena: every ACT tensor that is not a view, n samples each (one if batchless). */
static int64_t arena_floats(const tr_graph *g, int n)
{
    int64_t act = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        const tr_tensor *t = &g->tensors[i];
        if (t->view_of < 0 && t->kind == TR_T_ACT) act += align_up(tr_tensor_elems(t, n));
    }
    return act;
}

static int has_grad(const tr_graph *g, int id)
{
    return id != g->input || g->input_grad;
}

deba_status tr_graph_plan(tr_graph *g, int n, deba_err *e)
{
    tr_backend *be = g->be;
    if (n <= 0) return deba_err_set(e, DEBA_E_INPUT, "batch size must be positive (got %d)", n);
    for (int i = 0; i < g->n_nodes; i++) {
        tr_node *nd = &g->nodes[i];
        if (nd->op != TR_OP_VIEW && (!be->forward[nd->op] || !be->backward[nd->op]))
            return deba_err_set(e, DEBA_E_UNSUPPORTED,
                                "operation '%s' (layer %s) has no %s implementation", tr_op_name(nd->op),
                                nd->name, be->name);
    }
    if (n <= g->planned_n) return DEBA_OK;

    int64_t act = arena_floats(g, n), saved = 0, ws = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        tr_node *nd = &g->nodes[i];
        saved += align_up(nd->saved_per_sample * n + nd->saved_fixed);
        int m = nd->ws_max_samples > 0 && nd->ws_max_samples < n ? nd->ws_max_samples : n;
        int64_t w = nd->ws_fixed + (int64_t)m * nd->ws_per_sample;
        if (w > ws) ws = w;
    }
    float *a = be->alloc(be, (size_t)(act ? act : 1) * sizeof(float));
    float *ag = be->alloc(be, (size_t)(act ? act : 1) * sizeof(float));
    float *sv = be->alloc(be, (size_t)(saved ? saved : 1) * sizeof(float));
    float *w = be->alloc(be, (size_t)(ws ? ws : 1) * sizeof(float));
    int *lab = be->alloc(be, (size_t)n * sizeof(int));
    if (!a || !ag || !sv || !w || !lab) {
        be->free(be, a), be->free(be, ag), be->free(be, sv), be->free(be, w), be->free(be, lab);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory planning batch size %d on %s (%.1f MiB)", n,
                            be->name, (double)(2 * act + saved + ws) * 4 / 1048576.0);
    }
    free_plan(g);
    g->act = a, g->act_grad = ag, g->saved_arena = sv, g->ws = w, g->labels = lab;
    g->planned_n = n;
    int64_t off = 0;
    for (int i = 0; i < g->n_tensors; i++) {
        tr_tensor *t = &g->tensors[i];
        if (t->view_of >= 0) continue;
        if (t->kind == TR_T_PARAM) {
            t->data = g->params + g->pspecs[t->off].off;
            t->grad = g->grads + g->pspecs[t->off].off;
            continue;
        }
        if (t->kind == TR_T_CONST) {
            t->data = g->consts + t->off;
            t->grad = NULL;
            continue;
        }
        t->data = a + off;
        t->grad = has_grad(g, i) ? ag + off : NULL;
        off += align_up(tr_tensor_elems(t, n));
    }
    for (int i = 0; i < g->n_tensors; i++) {
        tr_tensor *t = &g->tensors[i];
        if (t->view_of < 0) continue;
        t->data = g->tensors[t->view_of].data;
        t->grad = g->tensors[t->view_of].grad;
    }
    off = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        tr_node *nd = &g->nodes[i];
        nd->saved = sv + off;
        off += align_up(nd->saved_per_sample * n + nd->saved_fixed);
    }
    return DEBA_OK;
}

void tr_graph_forward(tr_graph *g, int n)
{
    for (int i = 0; i < g->n_nodes; i++) {
        tr_node *nd = &g->nodes[i];
        if (nd->op != TR_OP_VIEW) g->be->forward[nd->op](g, nd, n);
    }
}

void tr_graph_zero_act_grads(tr_graph *g)
{
    int64_t act = arena_floats(g, g->planned_n);
    g->be->zero(g->be, g->act_grad, (size_t)act * sizeof(float));
}

void tr_graph_backward(tr_graph *g, int n)
{
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        tr_node *nd = &g->nodes[i];
        if (nd->op != TR_OP_VIEW) g->be->backward[nd->op](g, nd, n);
    }
}

void tr_graph_zero_grads(tr_graph *g)
{
    g->be->zero(g->be, g->grads, (size_t)g->n_params * sizeof(float));
}

void tr_graph_set_batch(tr_graph *g, const float *x, const int *y, int n)
{
    tr_tensor *in = &g->tensors[g->input];
    g->be->upload(g->be, in->data, x, (size_t)n * (size_t)tr_tensor_numel(in) * sizeof(float));
    if (y) g->be->upload(g->be, g->labels, y, (size_t)n * sizeof(int));
}

void tr_graph_loss(tr_graph *g, int n, double *loss_sum, int64_t *correct)
{
    tr_tensor *out = &g->tensors[g->output];
    tr_graph_zero_act_grads(g);
    g->be->xent(g->be, out->data, g->labels, n, g->classes, out->grad, loss_sum, correct);
}

void tr_graph_eval_loss(tr_graph *g, int n, double *loss_sum, int64_t *correct)
{
    tr_tensor *out = &g->tensors[g->output];
    g->be->xent(g->be, out->data, g->labels, n, g->classes, out->grad, loss_sum, correct);
}

void tr_graph_sgd(tr_graph *g, float lr, float momentum, float wd)
{
    g->be->sgd(g->be, g->params, g->grads, g->momentum, g->n_params, lr, momentum, wd);
}

double tr_graph_flops(const tr_graph *g)
{
    double f = 0;
    for (int i = 0; i < g->n_nodes; i++) f += g->nodes[i].flops;
    return f;
}

static int64_t node_params(const tr_graph *g, const tr_node *nd)
{
    int64_t p = 0;
    for (int j = 0; j < nd->n_params; j++) p += g->pspecs[nd->param[j]].count;
    return p;
}

static void shape_str(char *buf, size_t cap, const tr_tensor *t)
{
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < t->rank && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%d", i ? ", " : "", t->dims[i]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
}

void tr_graph_summary(const tr_graph *g, FILE *f)
{
    const tr_tensor *in = &g->tensors[g->input];
    fprintf(f, "%-44s %-16s %-18s %12s %12s\n", "layer", "op", "output (C,H,W)", "params", "MFLOPs");
    char ishape[48];
    shape_str(ishape, sizeof ishape, in);
    fprintf(f, "%-44s %-16s %-18s %12d %12.3f\n", "input", "-", ishape, 0, 0.0);
    for (int i = 0; i < g->n_nodes; i++) {
        const tr_node *nd = &g->nodes[i];
        const tr_tensor *t = &g->tensors[nd->out];
        char shape[48], op[32];
        shape_str(shape, sizeof shape, t);
        snprintf(op, sizeof op, "%s", nd->op == TR_OP_ACT ? tr_act_name(nd->attr.act) : tr_op_name(nd->op));
        fprintf(f, "%-44s %-16s %-18s %12lld %12.3f\n", nd->name, op, shape, (long long)node_params(g, nd),
                nd->flops / 1e6);
    }
    fprintf(f, "forward GFLOPs per sample %.4f\n", tr_graph_flops(g) / 1e9);
    fprintf(f, "params %lld\n", (long long)g->n_params);
}
