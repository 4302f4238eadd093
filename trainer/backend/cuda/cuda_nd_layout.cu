/* CUDA kernels of the layout family of general-shape ops, the twins of backend/cpu/cpu_nd_layout.c
 * over the same index arithmetic (layers/nd_layout.h): numpy matmul on cuBLAS strided batches,
 * and the copies of transpose, slice, concat along an axis and constant pad. A batchless input
 * is read by every sample and its gradient summed over them in a fixed order; a batchless
 * output runs once. Backward adds into gradients. */
#include "trainer/backend/cuda/cuda_internal.h"

#include "trainer/layers/nd_layout.h"

#define GRID_STRIDE(i, total) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (total); i += (int64_t)gridDim.x * blockDim.x)

static inline tr_tensor *in_t(tr_graph *g, const tr_node *nd, int k) { return &g->tensors[nd->in[k]]; }
static inline tr_tensor *out_t(tr_graph *g, const tr_node *nd) { return &g->tensors[nd->out]; }

/* ---- matmul ---- */

/* C_p = op(A_p) op(B_p) (+ C_p when beta = 1) over every pair of gm, the operands' matrices at
 * strides sA, sB, sC: a strided batch over the innermost merged dimension, a host loop over the
 * others (none in the common cases). C's matrices must be distinct across pairs. */
static void mm_pairs(cu_ctx *c, const tr_mm_geom *gm, int ta, int tb, int M, int N, int K, const float *A, int lda,
                     const int64_t *sA, const float *B, int ldb, const int64_t *sB, float beta, float *C, int ldc,
                     const int64_t *sC)
{
    if (gm->nd == 0) {
        tr_cuda_gemm(c, ta, tb, M, N, K, 1.f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int last = gm->nd - 1;
    const int64_t outer = gm->pairs / gm->ext[last];
    for (int64_t o = 0; o < outer; o++) {
        int64_t oa = 0, ob = 0, oc = 0, r = o;
        for (int d = last - 1; d >= 0; d--) {
            int64_t i = r % gm->ext[d];
            r /= gm->ext[d];
            oa += i * sA[d], ob += i * sB[d], oc += i * sC[d];
        }
        tr_cuda_gemm_batched(c, ta, tb, M, N, K, 1.f, A + oa, lda, sA[last], B + ob, ldb, sB[last], beta, C + oc, ldc,
                             sC[last], (int)gm->ext[last]);
    }
}

typedef struct {
    tr_mm_geom gm;
    int64_t s[TR_MAX_RANK];      /* the operand's strides over gm's dimensions */
    int64_t own, summed, mat;    /* its matrices, pairs per matrix, floats per matrix */
} mm_reduce_args;

/* dX_q += Σ_r W_pair(q, r): the per-pair products in ws (contiguous over the pairs) summed into
 * the operand's matrices, pairs in a fixed order. */
__global__ void k_mm_reduce(float *dx, const float *ws, mm_reduce_args a)
{
    GRID_STRIDE(i, a.own * a.mat) {
        const int64_t q = i / a.mat, e = i % a.mat;
        float acc = 0.f;
        for (int64_t r = 0; r < a.summed; r++) acc += ws[tr_mm_pair(&a.gm, a.s, q, r) * a.mat + e];
        dx[tr_mm_offset(&a.gm, a.s, tr_mm_pair(&a.gm, a.s, q, 0)) + e] += acc;
    }
}

static void matmul_forward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    const tr_tensor *a = in_t(g, nd, 0), *b = in_t(g, nd, 1);
    tr_tensor *y = out_t(g, nd);
    const tr_mm_geom gm = tr_mm_geom_of(a, b, y, n);
    if (tr_mm_shared(&gm, gm.sb) && !tr_mm_broadcast(&gm, gm.sa)) {
        /* a weight: every pair's rows of A stacked, one GEMM */
        tr_cuda_gemm(c, 0, 0, (int)(gm.pairs * gm.m), gm.n, gm.k, 1.f, a->data, gm.k, b->data, gm.n, 0.f, y->data, gm.n);
        return;
    }
    mm_pairs(c, &gm, 0, 0, gm.m, gm.n, gm.k, a->data, gm.k, gm.sa, b->data, gm.n, gm.sb, 0.f, y->data, gm.n, gm.sc);
}

/* The gradient of operand `which` (0: A, 1: B): straight into it when each pair owns its
 * matrix, else each pair's product into the scratch (planned by the builder) and then summed. */
static void matmul_grad(tr_graph *g, const tr_mm_geom *gm, int which, const float *a,
                        const float *b, const float *dy, float *dx)
{
    cu_ctx *c = cu_ctx_of(g);
    const int m = gm->m, k = gm->k, nn = gm->n;
    const int64_t *s = which ? gm->sb : gm->sa;
    const int64_t mat = which ? (int64_t)k * nn : (int64_t)m * k;
    float *dst = dx, beta = 1.f;
    int64_t sw[TR_MAX_RANK];
    const int64_t *sd = s;
    const int bcast = tr_mm_broadcast(gm, s);
    if (bcast) {
        int64_t acc = mat;
        for (int d = gm->nd - 1; d >= 0; d--) {
            sw[d] = acc;
            acc *= gm->ext[d];
        }
        dst = g->ws, beta = 0.f, sd = sw;
    }
    if (which == 0)
        mm_pairs(c, gm, 0, 1, m, k, nn, dy, nn, gm->sc, b, nn, gm->sb, beta, dst, k, sd);
    else
        mm_pairs(c, gm, 1, 0, k, nn, m, a, k, gm->sa, dy, nn, gm->sc, beta, dst, nn, sd);
    if (!bcast) return;
    mm_reduce_args ra;
    ra.gm = *gm;
    for (int d = 0; d < TR_MAX_RANK; d++) ra.s[d] = d < gm->nd ? s[d] : 0;
    tr_mm_split(gm, s, &ra.own, &ra.summed);
    ra.mat = mat;
    k_mm_reduce<<<cu_blocks(ra.own * mat, 256), 256>>>(dx, g->ws, ra);
    CU_LAUNCHED();
}

static void matmul_backward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    tr_tensor *a = in_t(g, nd, 0), *b = in_t(g, nd, 1);
    const tr_tensor *y = out_t(g, nd);
    const tr_mm_geom gm = tr_mm_geom_of(a, b, y, n);
    const int m = gm.m, k = gm.k, nn = gm.n;
    if (tr_mm_shared(&gm, gm.sb) && !tr_mm_broadcast(&gm, gm.sa)) {
        /* the weight's gradient sums over all pairs: one GEMM with pairs*m as the inner size */
        const int rows = (int)(gm.pairs * m);
        if (a->grad) tr_cuda_gemm(c, 0, 1, rows, k, nn, 1.f, y->grad, nn, b->data, nn, 1.f, a->grad, k);
        if (b->grad) tr_cuda_gemm(c, 1, 0, k, nn, rows, 1.f, a->data, k, y->grad, nn, 1.f, b->grad, nn);
        return;
    }
    if (a->grad) matmul_grad(g, &gm, 0, a->data, b->data, y->grad, a->grad);
    if (b->grad) matmul_grad(g, &gm, 1, a->data, b->data, y->grad, b->grad);
}

/* ---- strided copies: transpose, slice, pad ---- */

/* gather: contig[i] (+)= strided[offset(i)]; scatter: strided[offset(i)] (+)= contig[i]. The
 * scatters are one-to-one, so no two threads write one element. */
template <bool GATHER, bool ADD>
__global__ void k_strided(float *contig, float *strided, tr_strided v, int64_t total)
{
    GRID_STRIDE(i, total) {
        const int64_t s = i / v.contig_numel, j = i % v.contig_numel;
        float *p = strided + s * v.strided_numel + tr_strided_offset(&v, j);
        if (GATHER) {
            if (ADD) contig[i] += *p;
            else contig[i] = *p;
        } else {
            if (ADD) *p += contig[i];
            else *p = contig[i];
        }
    }
}

template <bool GATHER, bool ADD>
static void strided_copy(float *contig, float *strided, const tr_strided &v, int n)
{
    const int64_t total = (int64_t)n * v.contig_numel;
    if (total <= 0) return;
    k_strided<GATHER, ADD><<<cu_blocks(total, 256), 256>>>(contig, strided, v, total);
    CU_LAUNCHED();
}

static void transpose_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    strided_copy<true, false>(y->data, x->data, tr_strided_transpose(x, y, nd->attr.perm.perm), y->batchless ? 1 : n);
}

static void transpose_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    strided_copy<false, true>(y->grad, x->grad, tr_strided_transpose(x, y, nd->attr.perm.perm), y->batchless ? 1 : n);
}

static void slice_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    strided_copy<true, false>(y->data, x->data, tr_strided_slice(x, y, nd->attr.slice.start, nd->attr.slice.step),
                              y->batchless ? 1 : n);
}

static void slice_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    strided_copy<false, true>(y->grad, x->grad, tr_strided_slice(x, y, nd->attr.slice.start, nd->attr.slice.step),
                              y->batchless ? 1 : n);
}

__global__ void k_fill(float *y, float v, int64_t total)
{
    GRID_STRIDE(i, total) y[i] = v;
}

static void pad_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    const int ns = y->batchless ? 1 : n;
    const int64_t total = ns * tr_tensor_numel(y);
    k_fill<<<cu_blocks(total, 256), 256>>>(y->data, nd->attr.pad.value, total);
    CU_LAUNCHED();
    strided_copy<false, false>(x->data, y->data, tr_strided_pad(x, y, nd->attr.pad.begin), ns);
}

static void pad_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    strided_copy<true, true>(x->grad, y->grad, tr_strided_pad(x, y, nd->attr.pad.begin), y->batchless ? 1 : n);
}

/* ---- concat along an axis ---- */

/* y row r (sample r / outer, row r % outer) gets len floats from x at column off; a batchless
 * x (xs = 0) is the same for every sample. */
__global__ void k_concat_axis_forward(float *y, const float *x, int64_t outer, int64_t len, int64_t ylen, int64_t off,
                                      int64_t xs, int64_t total)
{
    GRID_STRIDE(i, total) {
        const int64_t r = i / len, j = i % len;
        y[r * ylen + off + j] = x[(r / outer) * xs + (r % outer) * len + j];
    }
}

/* dx element i (row r = i / len) adds dy's row r of each of the reps samples, in sample order
 * (reps = 1 for a batched input, whose rows run over all samples) */
__global__ void k_concat_axis_backward(float *dx, const float *dy, int64_t outer, int64_t len, int64_t ylen,
                                       int64_t off, int reps, int64_t total)
{
    GRID_STRIDE(i, total) {
        const int64_t r = i / len, j = i % len;
        float acc = 0.f;
        for (int s = 0; s < reps; s++) acc += dy[((int64_t)s * outer + r) * ylen + off + j];
        dx[i] += acc;
    }
}

static void concat_axis_forward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *y = out_t(g, nd);
    const int ns = y->batchless ? 1 : n;
    for (int k = 0; k < nd->n_in; k++) {
        const tr_tensor *x = in_t(g, nd, k);
        int64_t outer, len, ylen, off;
        tr_concat_geom(g, nd, k, &outer, &len, &ylen, &off);
        const int64_t total = ns * outer * len;
        k_concat_axis_forward<<<cu_blocks(total, 256), 256>>>(y->data, x->data, outer, len, ylen, off,
                                                              x->batchless ? 0 : outer * len, total);
        CU_LAUNCHED();
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
        /* a batched input: one dy row per dx row; a batchless one sums the samples' rows */
        const int reps = x->batchless ? ns : 1;
        const int64_t total = (x->batchless ? 1 : ns) * outer * len;
        k_concat_axis_backward<<<cu_blocks(total, 256), 256>>>(x->grad, y->grad, outer, len, ylen, off, reps, total);
        CU_LAUNCHED();
    }
}

void tr_cuda_register_nd_layout(tr_backend *be)
{
#define OP(op, fam) be->forward[op] = fam##_forward, be->backward[op] = fam##_backward
    OP(TR_OP_MATMUL, matmul);
    OP(TR_OP_TRANSPOSE, transpose);
    OP(TR_OP_SLICE, slice);
    OP(TR_OP_CONCAT_AXIS, concat_axis);
    OP(TR_OP_PAD, pad);
#undef OP
}
