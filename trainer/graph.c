/* The graph core: building nodes and parameters, planning memory per batch size, and running
 * forward and backward through the backend's table. Knows no op's arithmetic. */
#include "trainer/graph.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TR_ALIGN_FLOATS 16   /* every tensor starts on a 64-byte boundary */

/* The inference plan: its buffers, where each activation and node points into them, and, while
 * it is in use, the training plan's pointers to put back. */
struct tr_infer {
    int n;                       /* batch capacity */
    int on;                      /* between tr_graph_infer_begin and _end */
    float *block;                /* own memory: act | scratch | ws; NULL when borrowed */
    float *act, *scratch, *ws;
    float *dlogits;              /* (n, classes): the loss writes it; nobody reads it */
    int *labels;                 /* (n) */
    float **data;                /* per tensor: its data in this plan (activations only) */
    float **saved;               /* per node: NULL unless its eval forward uses the scratch */
    float **t_data, **t_grad, **t_saved;   /* the training plan's, while on */
    float *t_act, *t_act_grad, *t_saved_arena, *t_ws;
    int *t_labels;
    int t_n, t_training, t_fusing;
};

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

static void free_infer(tr_graph *g);

static void free_plan(tr_graph *g)
{
    tr_backend *be = g->be;
    if (!be) return;
    free_infer(g);   /* it may borrow this plan's memory */
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
    free(g->zero_list);
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

static int base_of(const tr_graph *g, int id);

/* Batch norm + ReLU in one pass each way where the backend can (tr_node.relu_out): a batch
 * norm whose output is read only by the ReLU node right after it, neither of them the graph's
 * output. The batch norm's own output is then never written, and the ReLU's input gradient never
 * read. */
static void plan_fusion(tr_graph *g)
{
    g->fusing = 0;
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].relu_out = 0, g->nodes[i].fused = 0;
    if (!g->be->fuse_bn_relu) return;
    int *readers = calloc((size_t)g->n_tensors, sizeof *readers);   /* of each tensor's memory */
    if (!readers) return;   /* unfused is still right */
    for (int j = 0; j < g->n_nodes; j++)
        for (int k = 0; k < g->nodes[j].n_in; k++) readers[base_of(g, g->nodes[j].in[k])]++;
    for (int i = 0; i + 1 < g->n_nodes; i++) {
        tr_node *bn = &g->nodes[i], *act = &g->nodes[i + 1];
        if (bn->op != TR_OP_BATCHNORM || act->op != TR_OP_ACT || act->attr.act != TR_ACT_RELU ||
            act->in[0] != bn->out || bn->out == g->output || act->out == g->output || readers[bn->out] != 1)
            continue;
        bn->relu_out = act->out;
        act->fused = 1;
        g->fusing = 1;
    }
    free(readers);
}

/* Which backward sets which gradient (tr_node.grad_set), and the list of the others, which
 * tr_graph_loss zeroes: walking the nodes in backward order, the first node to write a
 * gradient's memory claims it; it sets it when its op is in the backend's grad_set_ops and the
 * input is the whole of that memory (itself or a full-size view of it), else the memory goes on
 * the zero list. Later writers add. Memory nobody writes is zeroed too (its producer reads it),
 * except the output's, which the loss writes. The scan is host-only and runs when the plan grows. */
static deba_status plan_grad_set(tr_graph *g, deba_err *e)
{
    free(g->zero_list);
    g->zero_list = NULL;
    g->n_zero = 0;
    char *claimed = calloc((size_t)g->n_tensors, 1);
    int *list = malloc(sizeof(int) * (size_t)(g->n_tensors ? g->n_tensors : 1));
    if (!claimed || !list) {
        free(claimed), free(list);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory planning the gradient zeroing");
    }
    int nz = 0;
    /* the loss writes the output's gradient before backward starts: any later reader adds */
    const int out = base_of(g, g->output);
    claimed[out] = 1;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        tr_node *nd = &g->nodes[i];
        nd->grad_set = 0;
        if (nd->op == TR_OP_VIEW) continue;
        const int can = (int)((g->be->grad_set_ops >> nd->op) & 1);
        for (int k = 0; k < nd->n_in; k++) {
            const int t = nd->in[k], r = base_of(g, t);
            const tr_tensor *tt = &g->tensors[t], *rt = &g->tensors[r];
            if (rt->kind != TR_T_ACT || !rt->grad || claimed[r]) continue;
            claimed[r] = 1;
            if (can && tr_tensor_elems(tt, 1) == tr_tensor_elems(rt, 1) && k < 32)
                nd->grad_set |= 1u << k;
            else
                list[nz++] = r;
        }
    }
    for (int r = 0; r < g->n_tensors; r++) {
        const tr_tensor *t = &g->tensors[r];
        if (t->view_of < 0 && t->kind == TR_T_ACT && t->grad && !claimed[r]) list[nz++] = r;
    }
    free(claimed);
    g->zero_list = list;
    g->n_zero = nz;
    return DEBA_OK;
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
    if (g->infer && g->infer->on)
        return deba_err_set(e, DEBA_E_RUNTIME, "tr_graph_plan: the inference plan is in use (tr_graph_infer_end first)");
    if (n <= g->planned_n) return DEBA_OK;

    tr_plan_size ps;
    tr_graph_plan_size(g, n, 0, &ps);
    int64_t act = ps.act, saved = ps.saved, ws = ps.ws;
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
    plan_fusion(g);
    return plan_grad_set(g, e);
}

/* ---- the inference plan ---- */

/* Ops whose eval-mode forward still uses nd->saved, as scratch nobody reads afterwards:
 * attention keeps q, k, v, the probabilities and the heads' output there (backend/cpu/attention.c,
 * backend/cuda/cuda_gemm.cu). Every other forward writes nd->saved only for backward and skips
 * that when it is NULL (batch norm's mean and rstd, max pooling's argmax, layer norm's
 * statistics; dropout and drop-path draw nothing in eval mode), so a new op that saves in
 * forward fails loudly on NULL instead of writing into memory it was not given. */
static int saved_in_eval(tr_op op) { return op == TR_OP_ATTENTION; }

/* Ops whose planned scratch only backward uses: attention's dctx/dqkv/dscores and matmul's
 * broadcast-gradient sums. Any other op keeps its scratch in inference. */
static int ws_in_forward(tr_op op) { return op != TR_OP_ATTENTION && op != TR_OP_MATMUL; }

static int64_t node_ws(const tr_node *nd, int n)
{
    int m = nd->ws_max_samples > 0 && nd->ws_max_samples < n ? nd->ws_max_samples : n;
    return nd->ws_fixed + (int64_t)m * nd->ws_per_sample;
}

static int base_of(const tr_graph *g, int id)
{
    while (g->tensors[id].view_of >= 0) id = g->tensors[id].view_of;
    return id;
}

typedef struct {
    int id;
    int first, last;             /* node indices; -1: before the first node; n_nodes: to the end */
    int64_t size, off;
} live_t;

static int by_size_desc(const void *a, const void *b)
{
    const live_t *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->id - y->id;
}

static int by_off(const void *a, const void *b)
{
    const live_t *x = *(live_t *const *)a, *y = *(live_t *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Places the base activation tensors for n samples: off[id] (floats from the arena's start) for
 * each, -1 for other tensors; returns the arena's floats, or -1 when out of host memory.
 * Greedy by size (the largest first, each at the lowest offset free of every tensor alive at the
 * same time), which for a chain reaches the largest live set. */
static int64_t infer_layout(const tr_graph *g, int n, int64_t *off)
{
    int T = g->n_tensors, N = g->n_nodes, k = 0;
    live_t *lv = malloc((size_t)T * sizeof *lv);
    live_t **near = malloc((size_t)T * sizeof *near);
    int *slot = malloc((size_t)T * sizeof *slot);
    if (!lv || !near || !slot) {
        free(lv), free(near), free(slot);
        return -1;
    }
    for (int i = 0; i < T; i++) {
        off[i] = -1;
        slot[i] = -1;
        const tr_tensor *t = &g->tensors[i];
        if (t->kind != TR_T_ACT || t->view_of >= 0) continue;
        slot[i] = k;
        lv[k++] = (live_t){i, -1, -1, align_up(tr_tensor_elems(t, n)), 0};
    }
    for (int j = 0; j < N; j++) {
        const tr_node *nd = &g->nodes[j];
        for (int q = 0; q < nd->n_in; q++) {
            int s = slot[base_of(g, nd->in[q])];
            if (s >= 0 && lv[s].last < j) lv[s].last = j;
        }
        int s = nd->op == TR_OP_VIEW ? -1 : slot[nd->out];
        if (s >= 0) lv[s].first = j;
    }
    for (int q = 0; q < k; q++) {
        live_t *l = &lv[q];
        /* leaves (the input, a test's extra inputs) are set from outside; the logits are read
         * by the loss after the last node */
        if (l->first < 0 || l->id == base_of(g, g->input) || l->id == base_of(g, g->output)) l->last = N;
        if (l->last < l->first) l->last = l->first;   /* written, never read */
    }
    qsort(lv, (size_t)k, sizeof *lv, by_size_desc);
    int64_t total = 0;
    for (int q = 0; q < k; q++) {
        int m = 0;
        for (int p = 0; p < q; p++)
            if (lv[p].first <= lv[q].last && lv[q].first <= lv[p].last) near[m++] = &lv[p];
        qsort(near, (size_t)m, sizeof *near, by_off);
        int64_t at = 0;
        for (int p = 0; p < m && near[p]->off < at + lv[q].size; p++)
            if (near[p]->off + near[p]->size > at) at = near[p]->off + near[p]->size;
        lv[q].off = at;
        off[lv[q].id] = at;
        if (at + lv[q].size > total) total = at + lv[q].size;
    }
    free(lv), free(near), free(slot);
    return total;
}

void tr_graph_plan_size(const tr_graph *g, int n, int infer, tr_plan_size *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < g->n_nodes; i++) {
        const tr_node *nd = &g->nodes[i];
        int64_t sv = align_up(nd->saved_per_sample * n + nd->saved_fixed), w = node_ws(nd, n);
        if (!infer) s->saved += sv;
        else if (saved_in_eval(nd->op) && sv > s->saved) s->saved = sv;
        if ((!infer || ws_in_forward(nd->op)) && w > s->ws) s->ws = w;
    }
    if (!infer) {
        s->act = arena_floats(g, n);
        return;
    }
    int64_t *off = malloc((size_t)g->n_tensors * sizeof *off);
    s->act = off ? infer_layout(g, n, off) : -1;
    free(off);
}

static void free_infer(tr_graph *g)
{
    struct tr_infer *p = g->infer;
    if (!p) return;
    if (p->on) tr_graph_infer_end(g);
    g->be->free(g->be, p->block);
    g->be->free(g->be, p->dlogits);
    g->be->free(g->be, p->labels);
    free(p->data), free(p->saved), free(p->t_data), free(p->t_grad), free(p->t_saved);
    free(p);
    g->infer = NULL;
}

int tr_graph_infer_planned(const tr_graph *g) { return g->infer ? g->infer->n : 0; }

deba_status tr_graph_plan_infer(tr_graph *g, int n, deba_err *e)
{
    tr_backend *be = g->be;
    if (n <= 0) return deba_err_set(e, DEBA_E_INPUT, "evaluation batch size must be positive (got %d)", n);
    if (!be) return deba_err_set(e, DEBA_E_RUNTIME, "tr_graph_plan_infer: the graph has no backend (tr_graph_alloc)");
    for (int i = 0; i < g->n_nodes; i++) {
        tr_node *nd = &g->nodes[i];
        if (nd->op != TR_OP_VIEW && !be->forward[nd->op])
            return deba_err_set(e, DEBA_E_UNSUPPORTED, "operation '%s' (layer %s) has no %s implementation",
                                tr_op_name(nd->op), nd->name, be->name);
    }
    if (g->infer && g->infer->on)
        return deba_err_set(e, DEBA_E_RUNTIME, "tr_graph_plan_infer: the inference plan is in use");
    if (g->infer && n <= g->infer->n) return DEBA_OK;

    int T = g->n_tensors, N = g->n_nodes;
    struct tr_infer *p = calloc(1, sizeof *p);
    int64_t *off = malloc((size_t)T * sizeof *off);
    if (p) {
        p->data = calloc((size_t)T, sizeof *p->data);
        p->t_data = calloc((size_t)T, sizeof *p->t_data);
        p->t_grad = calloc((size_t)T, sizeof *p->t_grad);
        p->saved = calloc((size_t)(N ? N : 1), sizeof *p->saved);
        p->t_saved = calloc((size_t)(N ? N : 1), sizeof *p->t_saved);
    }
    int64_t act = off ? infer_layout(g, n, off) : -1;
    if (!p || !p->data || !p->t_data || !p->t_grad || !p->saved || !p->t_saved || act < 0) {
        if (p) free(p->data), free(p->t_data), free(p->t_grad), free(p->saved), free(p->t_saved);
        free(p), free(off);
        return deba_err_set(e, DEBA_E_NOMEM, "out of host memory planning evaluation batch size %d", n);
    }
    tr_plan_size sz;
    tr_graph_plan_size(g, n, 1, &sz);
    int64_t scratch = sz.saved, ws = sz.ws;
    /* the training plan's gradients and scratch are dead outside a step (the loss zeroes the
     * gradients, every forward rewrites the scratch before anyone reads it): borrow them */
    tr_plan_size tsz = {0};
    if (g->planned_n > 0) tr_graph_plan_size(g, g->planned_n, 0, &tsz);
    int share_ws = g->ws && tsz.ws >= ws;
    int64_t need = act + align_up(scratch) + (share_ws ? 0 : ws);
    int borrow = g->act_grad && need <= tsz.act;
    float *block = borrow ? NULL : be->alloc(be, (size_t)(need ? need : 1) * sizeof(float));
    float *dz = be->alloc(be, (size_t)n * (size_t)(g->classes > 0 ? g->classes : 1) * sizeof(float));
    int *lab = be->alloc(be, (size_t)n * sizeof(int));
    if ((!borrow && !block) || !dz || !lab) {
        be->free(be, block), be->free(be, dz), be->free(be, lab);
        free(p->data), free(p->t_data), free(p->t_grad), free(p->saved), free(p->t_saved);
        free(p), free(off);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory planning evaluation batch size %d on %s (%.1f MiB)", n,
                            be->name, (double)need * 4 / 1048576.0);
    }
    free_infer(g);
    float *base = borrow ? g->act_grad : block;
    p->n = n;
    p->block = block;
    p->act = base;
    p->scratch = base + act;
    p->ws = share_ws ? g->ws : p->scratch + align_up(scratch);
    p->dlogits = dz;
    p->labels = lab;
    for (int i = 0; i < T; i++)
        if (off[i] >= 0) p->data[i] = p->act + off[i];
    for (int i = 0; i < T; i++) {
        const tr_tensor *t = &g->tensors[i];
        if (t->kind == TR_T_ACT && t->view_of >= 0) p->data[i] = p->data[base_of(g, i)];
    }
    for (int j = 0; j < N; j++) p->saved[j] = saved_in_eval(g->nodes[j].op) ? p->scratch : NULL;
    free(off);
    g->infer = p;
    return DEBA_OK;
}

void tr_graph_infer_begin(tr_graph *g)
{
    struct tr_infer *p = g->infer;
    if (!p || p->on) return;
    for (int i = 0; i < g->n_tensors; i++) {
        tr_tensor *t = &g->tensors[i];
        p->t_data[i] = t->data;
        p->t_grad[i] = t->grad;
        if (t->kind != TR_T_ACT) continue;   /* parameters and constants stay where they are */
        t->data = p->data[i];
        t->grad = NULL;
    }
    for (int j = 0; j < g->n_nodes; j++) {
        p->t_saved[j] = g->nodes[j].saved;
        g->nodes[j].saved = p->saved[j];
    }
    p->t_act = g->act, p->t_act_grad = g->act_grad, p->t_saved_arena = g->saved_arena, p->t_ws = g->ws;
    p->t_labels = g->labels, p->t_n = g->planned_n, p->t_training = g->training;
    g->act = p->act, g->act_grad = NULL, g->saved_arena = p->scratch, g->ws = p->ws;
    g->labels = p->labels, g->planned_n = p->n, g->training = 0;
    /* the inference arena packs tensors by liveness: a batch norm writing the ReLU's output
     * could land on its own input there, so the plan runs unfused */
    p->t_fusing = g->fusing, g->fusing = 0;
    p->on = 1;
}

void tr_graph_infer_end(tr_graph *g)
{
    struct tr_infer *p = g->infer;
    if (!p || !p->on) return;
    for (int i = 0; i < g->n_tensors; i++) {
        g->tensors[i].data = p->t_data[i];
        g->tensors[i].grad = p->t_grad[i];
    }
    for (int j = 0; j < g->n_nodes; j++) g->nodes[j].saved = p->t_saved[j];
    g->act = p->t_act, g->act_grad = p->t_act_grad, g->saved_arena = p->t_saved_arena, g->ws = p->t_ws;
    g->labels = p->t_labels, g->planned_n = p->t_n, g->training = p->t_training;
    g->fusing = p->t_fusing;
    p->on = 0;
}

void tr_graph_forward(tr_graph *g, int n)
{
    for (int i = 0; i < g->n_nodes; i++) {
        tr_node *nd = &g->nodes[i];
        if (nd->op != TR_OP_VIEW && !(nd->fused && g->fusing)) g->be->forward[nd->op](g, nd, n);
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
        if (nd->op != TR_OP_VIEW && !(nd->fused && g->fusing)) g->be->backward[nd->op](g, nd, n);
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
    /* only the gradients no backward sets (plan_grad_set); without grad_set_ops, all of them */
    if (g->be->grad_set_ops) {
        for (int i = 0; i < g->n_zero; i++) {
            const tr_tensor *t = &g->tensors[g->zero_list[i]];
            g->be->zero(g->be, t->grad, (size_t)tr_tensor_elems(t, n) * sizeof(float));
        }
    } else {
        tr_graph_zero_act_grads(g);
    }
    g->be->xent(g->be, out->data, g->labels, n, g->classes, out->grad, loss_sum, correct);
}

void tr_graph_eval_loss(tr_graph *g, int n, double *loss_sum, int64_t *correct)
{
    tr_tensor *out = &g->tensors[g->output];
    /* the inference plan has no gradients: the loss's dlogits go to a scratch of its own */
    float *dz = out->grad ? out->grad : g->infer && g->infer->on ? g->infer->dlogits : NULL;
    g->be->xent(g->be, out->data, g->labels, n, g->classes, dz, loss_sum, correct);
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
