/* CPU kernels of the layout family of general-shape ops: numpy matmul on tr_cpu_sgemm, and the
 * copies of transpose, slice, concat along an axis and constant pad. A batchless input is read
 * by every sample and its gradient summed over them; a batchless output runs once. Backward
 * adds into gradients. */
#include <omp.h>
#include <string.h>

#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/backend/cpu/cpu_ops.h"
#include "trainer/layers/nd_layout.h"

static inline tr_tensor *in_t(tr_graph *g, const tr_node *nd, int k) { return &g->tensors[nd->in[k]]; }
static inline tr_tensor *out_t(tr_graph *g, const tr_node *nd) { return &g->tensors[nd->out]; }

/* ---- matmul ---- */

/* Below this many multiply-adds per product, whole products go to the threads instead of
 * slabs of one product (tr_cpu_sgemm's own split threshold). */
#define MM_SMALL 1.5e6

/* Many products, or small ones: one thread per product. Few large ones: each threaded. */
static int mm_parallel_over(int64_t count, const tr_mm_geom *gm)
{
    int nt = omp_get_max_threads();
    return count > 1 && (count >= 2 * nt || (double)gm->m * gm->n * gm->k < MM_SMALL);
}

static void matmul_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *a = in_t(g, nd, 0), *b = in_t(g, nd, 1);
    tr_tensor *y = out_t(g, nd);
    const tr_mm_geom gm = tr_mm_geom_of(a, b, y, n);
    const int m = gm.m, k = gm.k, nn = gm.n;
    if (tr_mm_shared(&gm, gm.sb) && !tr_mm_broadcast(&gm, gm.sa)) {
        /* a weight: every pair's rows of A stacked, one GEMM over pairs*m rows */
        tr_cpu_sgemm(0, 0, (int)(gm.pairs * m), nn, k, 1.f, a->data, k, b->data, nn, 0.f, y->data, nn);
        return;
    }
    const int64_t pairs = gm.pairs;
    #pragma omp parallel for schedule(static) if (mm_parallel_over(pairs, &gm))
    for (int64_t p = 0; p < pairs; p++) {
        int64_t oa, ob, oc;
        tr_mm_offsets(&gm, p, &oa, &ob, &oc);
        tr_cpu_sgemm(0, 0, m, nn, k, 1.f, a->data + oa, k, b->data + ob, nn, 0.f, y->data + oc, nn);
    }
}

/* dA_q += Σ_r dY_p B_p^T (which = 0) or dB_q += Σ_r A_p^T dY_p (which = 1) over the pairs p
 * that read operand matrix q. Each matrix is written by one thread, the pairs summed in a fixed
 * order, so the result does not depend on the thread count. */
static void matmul_grad(const tr_mm_geom *gm, int which, const float *a, const float *b, const float *dy, float *dx)
{
    const int64_t *s = which ? gm->sb : gm->sa;
    int64_t own, summed;
    tr_mm_split(gm, s, &own, &summed);
    const int m = gm->m, k = gm->k, nn = gm->n;
    #pragma omp parallel for schedule(static) if (mm_parallel_over(own, gm))
    for (int64_t q = 0; q < own; q++) {
        for (int64_t r = 0; r < summed; r++) {
            int64_t oa, ob, oc;
            tr_mm_offsets(gm, tr_mm_pair(gm, s, q, r), &oa, &ob, &oc);
            if (which == 0)
                tr_cpu_sgemm(0, 1, m, k, nn, 1.f, dy + oc, nn, b + ob, nn, 1.f, dx + oa, k);
            else
                tr_cpu_sgemm(1, 0, k, nn, m, 1.f, a + oa, k, dy + oc, nn, 1.f, dx + ob, nn);
        }
    }
}

static void matmul_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *a = in_t(g, nd, 0), *b = in_t(g, nd, 1);
    const tr_tensor *y = out_t(g, nd);
    const tr_mm_geom gm = tr_mm_geom_of(a, b, y, n);
    const int m = gm.m, k = gm.k, nn = gm.n;
    if (tr_mm_shared(&gm, gm.sb) && !tr_mm_broadcast(&gm, gm.sa)) {
        /* the weight's gradient sums over all pairs: one GEMM with pairs*m as the inner size */
        const int rows = (int)(gm.pairs * m);
        if (a->grad) tr_cpu_sgemm(0, 1, rows, k, nn, 1.f, y->grad, nn, b->data, nn, 1.f, a->grad, k);
        if (b->grad) tr_cpu_sgemm(1, 0, k, nn, rows, 1.f, a->data, k, y->grad, nn, 1.f, b->grad, nn);
        return;
    }
    if (a->grad) matmul_grad(&gm, 0, a->data, b->data, y->grad, a->grad);
    if (b->grad) matmul_grad(&gm, 1, a->data, b->data, y->grad, b->grad);
}

/* ---- strided copies: transpose, slice, pad ---- */

/* For each sample and each element i of the contiguous side: gather (contig[i] (+)= strided[off])
 * or scatter (strided[off] (+)= contig[i]). The walk is over rows of the last axis so the offset
 * arithmetic is paid once per row. Scatters here are one-to-one, so rows never collide. */
static void strided_copy(float *contig, float *strided, const tr_strided *v, int n, int gather, int add)
{
    const int last = v->rank > 0 ? v->dims[v->rank - 1] : 1;
    const int64_t ls = v->rank > 0 ? v->stride[v->rank - 1] : 0;
    const int64_t rows_per = v->contig_numel / last, rows = (int64_t)n * rows_per;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t s = r / rows_per, row = r % rows_per;
        float *c = contig + s * v->contig_numel + row * last;
        /* the row's first element: the last axis' coordinate is 0 */
        float *p = strided + s * v->strided_numel + tr_strided_offset(v, row * last);
        if (gather && add) for (int i = 0; i < last; i++) c[i] += p[i * ls];
        else if (gather) for (int i = 0; i < last; i++) c[i] = p[i * ls];
        else if (add) for (int i = 0; i < last; i++) p[i * ls] += c[i];
        else for (int i = 0; i < last; i++) p[i * ls] = c[i];
    }
}

static void transpose_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    tr_strided v = tr_strided_transpose(x, y, nd->attr.perm.perm);
    strided_copy(y->data, x->data, &v, y->batchless ? 1 : n, 1, 0);
}

static void transpose_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    tr_strided v = tr_strided_transpose(x, y, nd->attr.perm.perm);
    strided_copy(y->grad, x->grad, &v, y->batchless ? 1 : n, 0, 1);
}

static void slice_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    tr_strided v = tr_strided_slice(x, y, nd->attr.slice.start, nd->attr.slice.step);
    strided_copy(y->data, x->data, &v, y->batchless ? 1 : n, 1, 0);
}

static void slice_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    tr_strided v = tr_strided_slice(x, y, nd->attr.slice.start, nd->attr.slice.step);
    strided_copy(y->grad, x->grad, &v, y->batchless ? 1 : n, 0, 1);
}

static void pad_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    const int ns = y->batchless ? 1 : n;
    const int64_t total = ns * tr_tensor_numel(y);
    const float value = nd->attr.pad.value;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < total; i++) y->data[i] = value;
    tr_strided v = tr_strided_pad(x, y, nd->attr.pad.begin);
    strided_copy(x->data, y->data, &v, ns, 0, 0);
}

static void pad_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    tr_strided v = tr_strided_pad(x, y, nd->attr.pad.begin);
    strided_copy(x->grad, y->grad, &v, y->batchless ? 1 : n, 1, 1);
}

/* ---- concat along an axis ---- */

static void concat_axis_forward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *y = out_t(g, nd);
    const int ns = y->batchless ? 1 : n;
    for (int k = 0; k < nd->n_in; k++) {
        const tr_tensor *x = in_t(g, nd, k);
        int64_t outer, len, ylen, off;
        tr_concat_geom(g, nd, k, &outer, &len, &ylen, &off);
        const int64_t xs = x->batchless ? 0 : outer * len, rows = ns * outer;
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            int64_t s = r / outer, o = r % outer;
            memcpy(y->data + r * ylen + off, x->data + s * xs + o * len, (size_t)len * sizeof(float));
        }
    }
}

static void concat_axis_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *y = out_t(g, nd);
    const int ns = y->batchless ? 1 : n;
    for (int k = 0; k < nd->n_in; k++) {
        tr_tensor *x = in_t(g, nd, k);
        if (!x->grad) continue;
        int64_t outer, len, ylen, off;
        tr_concat_geom(g, nd, k, &outer, &len, &ylen, &off);
        /* a batchless input among batched ones sums its rows over the samples */
        const int reps = x->batchless ? ns : 1;
        const int64_t rows = x->batchless ? outer : ns * outer;
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            float *dx = x->grad + r * len;
            for (int s = 0; s < reps; s++) {
                const float *dy = y->grad + ((int64_t)s * outer + r) * ylen + off;
                for (int64_t i = 0; i < len; i++) dx[i] += dy[i];
            }
        }
    }
}

void tr_cpu_register_nd_layout(tr_backend *be)
{
#define OP(op, fam) be->forward[op] = fam##_forward, be->backward[op] = fam##_backward
    OP(TR_OP_MATMUL, matmul);
    OP(TR_OP_TRANSPOSE, transpose);
    OP(TR_OP_SLICE, slice);
    OP(TR_OP_CONCAT_AXIS, concat_axis);
    OP(TR_OP_PAD, pad);
#undef OP
}
