/* The index arithmetic the layout family (matmul, transpose, slice, concat_axis, pad) shares
 * between its builder, the CPU kernels and the CUDA kernels, so both backends walk memory the
 * same way: matmul's broadcast batch dimensions as per-operand strides, and the strided views
 * that transpose, slice and pad reduce to. Functions marked TR_ND_HD also run in CUDA kernels. */
#ifndef TR_ND_LAYOUT_H
#define TR_ND_LAYOUT_H

#include <stdint.h>
#include "trainer/graph.h"

#ifdef __CUDACC__
#define TR_ND_HD __host__ __device__
#else
#define TR_ND_HD
#endif

/* ---- matmul ---- */

/* C_p (m, n) = A_p (m, k) · B_p (k, n) for every pair p of the extended batch: the sample (when
 * the output is batched) followed by the output's batch dimensions, with dimensions of size 1
 * dropped and neighbours that every operand walks contiguously merged, so the common cases come
 * out as one dimension (or none). sa/sb/sc are float strides; 0 where an operand is broadcast. */
typedef struct {
    int m, k, n;
    int nd;                          /* merged dimensions, ext[0] outermost */
    int64_t ext[TR_MAX_RANK];
    int64_t sa[TR_MAX_RANK], sb[TR_MAX_RANK], sc[TR_MAX_RANK];
    int64_t pairs;                   /* product of ext */
} tr_mm_geom;

/* Stride of batch dim j (of ob output batch dims) in operand x, 0 when x is broadcast there. */
static inline int64_t tr_mm_batch_stride(const tr_tensor *x, int ob, int j, int out_dim)
{
    int xb = x->rank - 2, jj = j - (ob - xb);
    if (jj < 0 || x->dims[jj] != out_dim) return 0;
    int64_t s = 1;
    for (int i = jj + 1; i < x->rank; i++) s *= x->dims[i];
    return s;
}

/* The geometry of a matmul node over n samples (an output that is batchless runs once). */
static inline tr_mm_geom tr_mm_geom_of(const tr_tensor *a, const tr_tensor *b, const tr_tensor *y, int n)
{
    tr_mm_geom gm;
    gm.m = a->dims[a->rank - 2];
    gm.k = a->dims[a->rank - 1];
    gm.n = b->dims[b->rank - 1];
    const int ob = y->rank - 2;
    int64_t ext[TR_MAX_RANK + 1], sa[TR_MAX_RANK + 1], sb[TR_MAX_RANK + 1];
    int cnt = 0;
    ext[cnt] = y->batchless ? 1 : n;
    sa[cnt] = a->batchless ? 0 : tr_tensor_numel(a);
    sb[cnt] = b->batchless ? 0 : tr_tensor_numel(b);
    cnt++;
    for (int j = 0; j < ob; j++, cnt++) {
        ext[cnt] = y->dims[j];
        sa[cnt] = tr_mm_batch_stride(a, ob, j, y->dims[j]);
        sb[cnt] = tr_mm_batch_stride(b, ob, j, y->dims[j]);
    }
    /* C is contiguous over the pairs: its stride is the product of the later extents */
    int64_t sc[TR_MAX_RANK + 1], acc = (int64_t)gm.m * gm.n;
    for (int d = cnt - 1; d >= 0; d--) {
        sc[d] = acc;
        acc *= ext[d];
    }
    gm.nd = 0;
    gm.pairs = 1;
    for (int d = 0; d < cnt; d++) {
        if (ext[d] == 1) continue;
        gm.pairs *= ext[d];
        int last = gm.nd - 1;
        if (last >= 0 && gm.sa[last] == sa[d] * ext[d] && gm.sb[last] == sb[d] * ext[d] &&
            gm.sc[last] == sc[d] * ext[d]) {
            gm.ext[last] *= ext[d];
            gm.sa[last] = sa[d], gm.sb[last] = sb[d], gm.sc[last] = sc[d];
            continue;
        }
        gm.ext[gm.nd] = ext[d];
        gm.sa[gm.nd] = sa[d], gm.sb[gm.nd] = sb[d], gm.sc[gm.nd] = sc[d];
        gm.nd++;
    }
    return gm;
}

/* 1 when the operand with strides s is the same matrix for every pair (a weight). */
static inline int tr_mm_shared(const tr_mm_geom *gm, const int64_t *s)
{
    for (int d = 0; d < gm->nd; d++)
        if (s[d]) return 0;
    return 1;
}

/* 1 when several pairs read the same matrix of the operand (its gradient is a sum). */
static inline int tr_mm_broadcast(const tr_mm_geom *gm, const int64_t *s)
{
    for (int d = 0; d < gm->nd; d++)
        if (!s[d]) return 1;
    return 0;
}

/* Offsets of pair p's matrices in A, B and C. */
static inline void tr_mm_offsets(const tr_mm_geom *gm, int64_t p, int64_t *oa, int64_t *ob, int64_t *oc)
{
    int64_t a = 0, b = 0, c = 0;
    for (int d = gm->nd - 1; d >= 0; d--) {
        int64_t i = p % gm->ext[d];
        p /= gm->ext[d];
        a += i * gm->sa[d], b += i * gm->sb[d], c += i * gm->sc[d];
    }
    *oa = a, *ob = b, *oc = c;
}

/* The pair whose coordinates are q over the dimensions where s != 0 (an operand's own matrices)
 * and r over those where s == 0 (the pairs summed into one of them), both row-major. */
static inline TR_ND_HD int64_t tr_mm_pair(const tr_mm_geom *gm, const int64_t *s, int64_t q, int64_t r)
{
    int64_t p = 0, scale = 1;
    for (int d = gm->nd - 1; d >= 0; d--) {
        int64_t i;
        if (s[d]) i = q % gm->ext[d], q /= gm->ext[d];
        else i = r % gm->ext[d], r /= gm->ext[d];
        p += i * scale;
        scale *= gm->ext[d];
    }
    return p;
}

/* Offset of pair p's matrix in the operand with strides s. */
static inline TR_ND_HD int64_t tr_mm_offset(const tr_mm_geom *gm, const int64_t *s, int64_t p)
{
    int64_t off = 0;
    for (int d = gm->nd - 1; d >= 0; d--) {
        off += (p % gm->ext[d]) * s[d];
        p /= gm->ext[d];
    }
    return off;
}

/* Matrices of an operand with strides s (q's range) and pairs summed into each (r's range). */
static inline void tr_mm_split(const tr_mm_geom *gm, const int64_t *s, int64_t *own, int64_t *summed)
{
    int64_t q = 1, r = 1;
    for (int d = 0; d < gm->nd; d++) {
        if (s[d]) q *= gm->ext[d];
        else r *= gm->ext[d];
    }
    *own = q, *summed = r;
}

/* ---- strided views: transpose, slice, pad ---- */

/* Per sample, element i of the contiguous side (shape dims[rank], row major) pairs with element
 * base + Σ coord_k(i) · stride[k] of the strided side. Transpose and slice gather from the
 * strided input into their output and scatter back in backward; pad scatters its input into
 * the strided output and gathers back. */
typedef struct {
    int rank;
    int dims[TR_MAX_RANK];
    int64_t stride[TR_MAX_RANK];
    int64_t base;
    int64_t contig_numel, strided_numel;   /* per sample; 0 for a batchless side */
} tr_strided;

static inline TR_ND_HD int64_t tr_strided_offset(const tr_strided *v, int64_t i)
{
    int64_t off = v->base;
    for (int k = v->rank - 1; k >= 0; k--) {
        off += (i % v->dims[k]) * v->stride[k];
        i /= v->dims[k];
    }
    return off;
}

/* Row-major strides of a shape. */
static inline void tr_row_strides(int rank, const int *dims, int64_t *st)
{
    int64_t acc = 1;
    for (int k = rank - 1; k >= 0; k--) {
        st[k] = acc;
        acc *= dims[k];
    }
}

/* transpose: output (contiguous) axis k reads input axis perm[k] */
static inline tr_strided tr_strided_transpose(const tr_tensor *x, const tr_tensor *y, const int *perm)
{
    tr_strided v;
    int64_t st[TR_MAX_RANK];
    tr_row_strides(x->rank, x->dims, st);
    v.rank = y->rank;
    for (int k = 0; k < y->rank; k++) v.dims[k] = y->dims[k], v.stride[k] = st[perm[k]];
    v.base = 0;
    v.contig_numel = tr_tensor_numel(y);
    v.strided_numel = tr_tensor_numel(x);
    return v;
}

/* slice: output (contiguous) index i of axis k reads input start[k] + i*step[k] */
static inline tr_strided tr_strided_slice(const tr_tensor *x, const tr_tensor *y, const int *start,
                                          const int *step)
{
    tr_strided v;
    int64_t st[TR_MAX_RANK];
    tr_row_strides(x->rank, x->dims, st);
    v.rank = y->rank;
    v.base = 0;
    for (int k = 0; k < y->rank; k++) {
        v.dims[k] = y->dims[k];
        v.stride[k] = step[k] * st[k];
        v.base += start[k] * st[k];
    }
    v.contig_numel = tr_tensor_numel(y);
    v.strided_numel = tr_tensor_numel(x);
    return v;
}

/* pad: input (contiguous) element lands at begin[k] + i of the output's axis k */
static inline tr_strided tr_strided_pad(const tr_tensor *x, const tr_tensor *y, const int *begin)
{
    tr_strided v;
    int64_t st[TR_MAX_RANK];
    tr_row_strides(y->rank, y->dims, st);
    v.rank = x->rank;
    v.base = 0;
    for (int k = 0; k < x->rank; k++) {
        v.dims[k] = x->dims[k];
        v.stride[k] = st[k];
        v.base += begin[k] * st[k];
    }
    v.contig_numel = tr_tensor_numel(x);
    v.strided_numel = tr_tensor_numel(y);
    return v;
}

/* ---- concat along an axis ---- */

/* Per sample the output is outer rows of (Σ len_k) floats; input k fills len floats of each
 * row from column off. */
static inline void tr_concat_geom(const tr_graph *g, const tr_node *nd, int k, int64_t *outer, int64_t *len,
                                  int64_t *ylen, int64_t *off)
{
    const tr_tensor *y = &g->tensors[nd->out];
    const int axis = nd->attr.axis.axis;
    int64_t o = 1, inner = 1;
    for (int i = 0; i < axis; i++) o *= y->dims[i];
    for (int i = axis + 1; i < y->rank; i++) inner *= y->dims[i];
    int64_t before = 0;
    for (int j = 0; j < k; j++) before += g->tensors[nd->in[j]].dims[axis];
    *outer = o;
    *len = (int64_t)g->tensors[nd->in[k]].dims[axis] * inner;
    *ylen = (int64_t)y->dims[axis] * inner;
    *off = before * inner;
}

#endif
