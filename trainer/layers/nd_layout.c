/* Builders of the layout family of general-shape ops (layers_nd.h): matmul, transpose, slice,
 * concat along an axis and constant pad. Shape checks, the output's shape and batchlessness,
 * scratch sizes and FLOPs; kernels in backend/cpu/cpu_nd_layout.c and backend/cuda/cuda_nd_layout.cu. */
#include <stdio.h>
#include <string.h>

#include "trainer/layers/nd_layout.h"
#include "trainer/layers_nd.h"

/* The input tensor, or NULL after recording an error naming the node. */
static const tr_tensor *input_of(tr_graph *g, const char *name, int x, const char *which)
{
    if (x < 0 || x >= g->n_tensors) {
        tr_graph_fail(g, "%s: %s tensor %d does not exist", name, which, x);
        return NULL;
    }
    return &g->tensors[x];
}

/* "(2, 3, 4)" for error messages */
static const char *shape_str(char *buf, size_t cap, int rank, const int *dims)
{
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < rank && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%d", i ? ", " : "", dims[i]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
    return buf;
}

/* ---- matmul ---- */

int tr_matmul(tr_graph *g, const char *name, int a, int b)
{
    if (g->failed) return -1;
    const tr_tensor *ta = input_of(g, name, a, "left"), *tb = input_of(g, name, b, "right");
    if (!ta || !tb) return -1;
    char sa[80], sb[80];
    shape_str(sa, sizeof sa, ta->rank, ta->dims);
    shape_str(sb, sizeof sb, tb->rank, tb->dims);
    if (ta->rank < 2 || tb->rank < 2)
        return tr_graph_fail(g, "%s: matmul operands must have rank >= 2 (got %s and %s)", name, sa, sb);
    const int m = ta->dims[ta->rank - 2], k = ta->dims[ta->rank - 1];
    const int kb = tb->dims[tb->rank - 2], n = tb->dims[tb->rank - 1];
    if (k != kb)
        return tr_graph_fail(g, "%s: matmul of %s and %s: inner dimensions %d and %d differ", name, sa, sb, k, kb);
    /* numpy broadcast of the leading (batch) dimensions, aligned at the right */
    const int ab = ta->rank - 2, bb = tb->rank - 2, ob = ab > bb ? ab : bb;
    int dims[TR_MAX_RANK];
    for (int j = 0; j < ob; j++) {
        int da = j - (ob - ab) >= 0 ? ta->dims[j - (ob - ab)] : 1;
        int db = j - (ob - bb) >= 0 ? tb->dims[j - (ob - bb)] : 1;
        if (da != db && da != 1 && db != 1)
            return tr_graph_fail(g, "%s: matmul of %s and %s: batch dimensions %d and %d do not broadcast", name,
                                 sa, sb, da, db);
        dims[j] = da > db ? da : db;
    }
    dims[ob] = m;
    dims[ob + 1] = n;
    const int batchless = ta->batchless && tb->batchless;
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_MATMUL, name, (const int[]){a, b}, 2, ob + 2, dims, batchless);
    if (!nd) return -1;
    /* adding the node may have moved g->tensors: take the pointers again */
    ta = &g->tensors[a], tb = &g->tensors[b];
    const tr_tensor *y = &g->tensors[nd->out];
    int64_t per = 1;   /* pairs per sample (per run when batchless) */
    for (int j = 0; j < ob; j++) per *= dims[j];
    nd->flops = 2.0 * (double)per * m * n * k;
    /* The CUDA backward writes each pair's product of a broadcast operand into the scratch and
     * sums it there (cuBLAS cannot accumulate several batch entries into one matrix); a weight
     * shared by every pair gets its gradient from one GEMM instead and needs none. Sized with
     * two samples, the worst case of the geometry. */
    tr_mm_geom gm = tr_mm_geom_of(ta, tb, y, 2);
    int64_t mat = 0;
    if (tr_mm_broadcast(&gm, gm.sa)) mat = (int64_t)m * k;
    if (tr_mm_broadcast(&gm, gm.sb) && !tr_mm_shared(&gm, gm.sb) && (int64_t)k * n > mat) mat = (int64_t)k * n;
    if (batchless) nd->ws_fixed = per * mat;
    else nd->ws_per_sample = per * mat;
    return nd->out;
}

/* ---- transpose ---- */

int tr_transpose(tr_graph *g, const char *name, int x, const int *perm)
{
    if (g->failed) return -1;
    const tr_tensor *t = input_of(g, name, x, "input");
    if (!t) return -1;
    if (!perm) return tr_graph_fail(g, "%s: transpose needs a permutation", name);
    int seen[TR_MAX_RANK] = {0}, dims[TR_MAX_RANK];
    for (int i = 0; i < t->rank; i++) {
        if (perm[i] < 0 || perm[i] >= t->rank || seen[perm[i]]++)
            return tr_graph_fail(g, "%s: transpose perm[%d] = %d is not a permutation of the %d axes", name, i,
                                 perm[i], t->rank);
        dims[i] = t->dims[perm[i]];
    }
    const int rank = t->rank;   /* t points into g->tensors, which adding the node may move */
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_TRANSPOSE, name, &x, 1, rank, dims, t->batchless);
    if (!nd) return -1;
    for (int i = 0; i < TR_MAX_RANK; i++) nd->attr.perm.perm[i] = i < rank ? perm[i] : i;
    nd->flops = 0.0;
    return nd->out;
}

/* ---- slice ---- */

int tr_slice(tr_graph *g, const char *name, int x, const int *start, const int *step, const int *out_dims)
{
    if (g->failed) return -1;
    const tr_tensor *t = input_of(g, name, x, "input");
    if (!t) return -1;
    if (!start || !step || !out_dims) return tr_graph_fail(g, "%s: slice needs start, step and out_dims", name);
    for (int k = 0; k < t->rank; k++) {
        if (step[k] == 0) return tr_graph_fail(g, "%s: slice step of axis %d is 0", name, k);
        if (out_dims[k] < 1) return tr_graph_fail(g, "%s: slice of axis %d is empty (%d elements)", name, k, out_dims[k]);
        int64_t last = (int64_t)start[k] + (int64_t)(out_dims[k] - 1) * step[k];
        if (start[k] < 0 || start[k] >= t->dims[k] || last < 0 || last >= t->dims[k])
            return tr_graph_fail(g, "%s: slice of axis %d (size %d) from %d by %d for %d elements leaves the axis",
                                 name, k, t->dims[k], start[k], step[k], out_dims[k]);
    }
    const int rank = t->rank;   /* t points into g->tensors, which adding the node may move */
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_SLICE, name, &x, 1, rank, out_dims, t->batchless);
    if (!nd) return -1;
    for (int k = 0; k < TR_MAX_RANK; k++) {
        nd->attr.slice.start[k] = k < rank ? start[k] : 0;
        nd->attr.slice.step[k] = k < rank ? step[k] : 1;
    }
    nd->flops = 0.0;
    return nd->out;
}

/* ---- concat along an axis ---- */

int tr_concat_axis(tr_graph *g, const char *name, const int *xs, int n, int axis)
{
    if (g->failed) return -1;
    if (!xs || n < 1 || n > TR_MAX_IN)
        return tr_graph_fail(g, "%s: concat takes 1 to %d inputs (got %d)", name, TR_MAX_IN, n);
    const tr_tensor *t0 = input_of(g, name, xs[0], "input");
    if (!t0) return -1;
    if (axis < 0 || axis >= t0->rank)
        return tr_graph_fail(g, "%s: concat axis %d is outside the %d axes of input 0", name, axis, t0->rank);
    int dims[TR_MAX_RANK], batchless = 1;
    memcpy(dims, t0->dims, sizeof dims);
    dims[axis] = 0;
    for (int i = 0; i < n; i++) {
        const tr_tensor *t = input_of(g, name, xs[i], "input");
        if (!t) return -1;
        char s0[80], si[80];
        if (t->rank != t0->rank)
            return tr_graph_fail(g, "%s: concat input %d %s and input 0 %s differ in rank", name, i,
                                 shape_str(si, sizeof si, t->rank, t->dims), shape_str(s0, sizeof s0, t0->rank, t0->dims));
        for (int k = 0; k < t->rank; k++)
            if (k != axis && t->dims[k] != t0->dims[k])
                return tr_graph_fail(g, "%s: concat along axis %d: input %d %s and input 0 %s differ on axis %d", name,
                                     axis, i, shape_str(si, sizeof si, t->rank, t->dims),
                                     shape_str(s0, sizeof s0, t0->rank, t0->dims), k);
        dims[axis] += t->dims[axis];
        batchless &= t->batchless;
    }
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_CONCAT_AXIS, name, xs, n, t0->rank, dims, batchless);
    if (!nd) return -1;
    nd->attr.axis.axis = axis;
    nd->flops = 0.0;
    return nd->out;
}

/* ---- constant pad ---- */

int tr_pad(tr_graph *g, const char *name, int x, const int *begin, const int *end, float value)
{
    if (g->failed) return -1;
    const tr_tensor *t = input_of(g, name, x, "input");
    if (!t) return -1;
    if (!begin || !end) return tr_graph_fail(g, "%s: pad needs begin and end", name);
    int dims[TR_MAX_RANK];
    for (int k = 0; k < t->rank; k++) {
        if (begin[k] < 0 || end[k] < 0)
            return tr_graph_fail(g, "%s: pad of axis %d is %d before, %d after (negative pads are not supported)",
                                 name, k, begin[k], end[k]);
        dims[k] = t->dims[k] + begin[k] + end[k];
    }
    const int rank = t->rank;   /* t points into g->tensors, which adding the node may move */
    tr_node *nd = tr_graph_add_node_nd(g, TR_OP_PAD, name, &x, 1, rank, dims, t->batchless);
    if (!nd) return -1;
    for (int k = 0; k < TR_MAX_RANK; k++) nd->attr.pad.begin[k] = k < rank ? begin[k] : 0;
    nd->attr.pad.value = value;
    nd->flops = 0.0;
    return nd->out;
}
