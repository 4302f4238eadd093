/* Builders of the elementwise family of general-shape ops (trainer/layers_nd.h): binary ops
 * with numpy broadcasting, unary functions, expand, mean/sum reductions and softmax. Shape
 * checks and the output shape here; kernels in backend/cpu/cpu_nd_elem.c and
 * backend/cuda/cuda_nd_elem.cu. */
#include <stdio.h>

#include "trainer/layers_nd.h"

/* The input tensor, or NULL after recording an error naming the node. */
static const tr_tensor *input_of(tr_graph *g, const char *name, int x)
{
    if (x < 0 || x >= g->n_tensors) {
        tr_graph_fail(g, "%s: input tensor %d does not exist", name, x);
        return NULL;
    }
    return &g->tensors[x];
}

/* "(2, 3, 4)", "() batchless" for the error messages. */
static const char *shape_str(const tr_tensor *t, char *buf, size_t len)
{
    int k = snprintf(buf, len, "(");
    for (int i = 0; i < t->rank && k < (int)len; i++)
        k += snprintf(buf + k, len - (size_t)k, "%s%d", i ? ", " : "", t->dims[i]);
    if (k < (int)len) snprintf(buf + k, len - (size_t)k, ")%s", t->batchless ? " batchless" : "");
    return buf;
}

/* numpy broadcast of two shapes aligned at the right into out (rank max(ra, rb)); -1 when a
 * dimension differs and neither is 1. */
static int broadcast_dims(int ra, const int *da, int rb, const int *db, int *rank, int *out)
{
    int r = ra > rb ? ra : rb;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - ra), ib = i - (r - rb);
        int a = ia >= 0 ? da[ia] : 1, b = ib >= 0 ? db[ib] : 1;
        if (a != b && a != 1 && b != 1) return -1;
        out[i] = a == 1 ? b : a;
    }
    *rank = r;
    return 0;
}

int tr_binary(tr_graph *g, const char *name, tr_binary_kind kind, int a, int b)
{
    if (g->failed) return -1;
    const tr_tensor *ta = input_of(g, name, a), *tb = input_of(g, name, b);
    if (!ta || !tb) return -1;
    if ((int)kind < 0 || kind >= TR_BIN_COUNT) return tr_graph_fail(g, "%s: unknown binary op kind %d", name, (int)kind);
    int rank, dims[TR_MAX_RANK];
    if (broadcast_dims(ta->rank, ta->dims, tb->rank, tb->dims, &rank, dims)) {
        char sa[128], sb[128];
        return tr_graph_fail(g, "%s: cannot broadcast shapes %s and %s", name, shape_str(ta, sa, sizeof sa),
                             shape_str(tb, sb, sizeof sb));
    }
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_BINARY, name, (const int[]){a, b}, 2, rank, dims,
                                       ta->batchless && tb->batchless);
    if (!nd) return -1;
    nd->attr.binary.kind = kind;
    nd->flops = (double)tr_tensor_numel(&g->tensors[nd->out]);
    return nd->out;
}

int tr_unary(tr_graph *g, const char *name, tr_unary_kind kind, int x, float a, float b)
{
    if (g->failed) return -1;
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if ((int)kind < 0 || kind >= TR_UN_COUNT) return tr_graph_fail(g, "%s: unknown unary op kind %d", name, (int)kind);
    int rank = t->rank, dims[TR_MAX_RANK];
    for (int i = 0; i < rank; i++) dims[i] = t->dims[i];
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_UNARY, name, &x, 1, rank, dims, t->batchless);
    if (!nd) return -1;
    nd->attr.unary.kind = kind;
    nd->attr.unary.a = a;
    nd->attr.unary.b = b;
    nd->flops = (double)tr_tensor_numel(&g->tensors[nd->out]);
    return nd->out;
}

/* As ONNX Expand, the output shape is the broadcast of x's shape and dims (so dims may also
 * hold 1 where x is larger). The output is batched: a batchless x becomes one copy per sample. */
int tr_expand(tr_graph *g, const char *name, int x, int rank, const int *dims)
{
    if (g->failed) return -1;
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if (rank < 0 || rank > TR_MAX_RANK || (rank > 0 && !dims))
        return tr_graph_fail(g, "%s: expand to rank %d (at most %d)", name, rank, TR_MAX_RANK);
    for (int i = 0; i < rank; i++)
        if (dims[i] <= 0) return tr_graph_fail(g, "%s: expand to a dimension of %d (axis %d)", name, dims[i], i);
    int r, out[TR_MAX_RANK];
    if (broadcast_dims(t->rank, t->dims, rank, dims, &r, out)) {
        char sx[128], sd[128];
        int k = snprintf(sd, sizeof sd, "(");
        for (int i = 0; i < rank && k < (int)sizeof sd; i++)
            k += snprintf(sd + k, sizeof sd - (size_t)k, "%s%d", i ? ", " : "", dims[i]);
        if (k < (int)sizeof sd) snprintf(sd + k, sizeof sd - (size_t)k, ")");
        return tr_graph_fail(g, "%s: cannot expand shape %s to %s", name, shape_str(t, sx, sizeof sx), sd);
    }
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_EXPAND, name, &x, 1, r, out, 0);
    if (!nd) return -1;
    nd->flops = 0.0;
    return nd->out;
}

/* axes == 0 reduces nothing (a copy). */
int tr_reduce(tr_graph *g, const char *name, tr_reduce_kind kind, int x, int axes)
{
    if (g->failed) return -1;
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if (kind != TR_RED_MEAN && kind != TR_RED_SUM) return tr_graph_fail(g, "%s: unknown reduce kind %d", name, (int)kind);
    if (axes < 0 || (axes >> t->rank) != 0) {
        char sx[128];
        return tr_graph_fail(g, "%s: reduce axes mask 0x%x names an axis beyond the shape %s", name,
                             (unsigned)axes, shape_str(t, sx, sizeof sx));
    }
    int dims[TR_MAX_RANK];
    for (int i = 0; i < t->rank; i++) dims[i] = (axes >> i) & 1 ? 1 : t->dims[i];
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_REDUCE, name, &x, 1, t->rank, dims, t->batchless);
    if (!nd) return -1;
    nd->attr.reduce.kind = kind;
    nd->attr.reduce.axes = axes;
    nd->flops = (double)tr_tensor_numel(t);
    return nd->out;
}

int tr_softmax(tr_graph *g, const char *name, int x, int axis)
{
    if (g->failed) return -1;
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if (axis < 0 || axis >= t->rank) {
        char sx[128];
        return tr_graph_fail(g, "%s: softmax axis %d outside the shape %s", name, axis, shape_str(t, sx, sizeof sx));
    }
    int dims[TR_MAX_RANK];
    for (int i = 0; i < t->rank; i++) dims[i] = t->dims[i];
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_SOFTMAX, name, &x, 1, t->rank, dims, t->batchless);
    if (!nd) return -1;
    nd->attr.axis.axis = axis;
    nd->flops = 5.0 * (double)tr_tensor_numel(t);   /* max, exp, sum, divide */
    return nd->out;
}
