/* The iteration space of a broadcasting general-shape op, shared by the CPU and CUDA kernels:
 * one "big" tensor's (batch, dims...) with every operand's element strides in it (0 where the
 * operand is broadcast), size-1 dimensions dropped and contiguous runs merged, so a same-shape
 * op is one flat dimension and (N, C, H, W) + (C, 1, 1) is three. */
#ifndef TR_ND_ITER_H
#define TR_ND_ITER_H

#include <stdint.h>
#include "trainer/graph.h"

#define TR_ND_OPS 3                 /* the big tensor and up to two broadcast operands */
#define TR_ND_DIMS (TR_MAX_RANK + 1) /* the batch and the per-sample dimensions */

typedef struct {
    int rank;                       /* >= 1 after tr_nd_iter_init */
    int nops;
    int64_t dim[TR_ND_DIMS];
    int64_t st[TR_ND_OPS][TR_ND_DIMS];  /* operand k's stride along dim i; 0: broadcast */
} tr_nd_iter;

/* ops[0] is the big tensor (its shape is the space, it is contiguous in it); ops[1..nops) are
 * aligned at the right of it (numpy), a dimension of 1 against a larger one, a missing leading
 * dimension or a batchless operand's batch read with stride 0. n: the samples (1 when the big
 * tensor is batchless). The builders have checked that the shapes broadcast. */
static inline void tr_nd_iter_init(tr_nd_iter *it, int n, const tr_tensor *const *ops, int nops)
{
    const tr_tensor *big = ops[0];
    int R = big->rank + 1;
    int64_t dim[TR_ND_DIMS], st[TR_ND_OPS][TR_ND_DIMS];
    dim[0] = big->batchless ? 1 : n;
    for (int i = 0; i < big->rank; i++) dim[i + 1] = big->dims[i];
    for (int k = 0; k < nops; k++) {
        const tr_tensor *t = ops[k];
        int64_t s = 1;
        for (int i = R - 1; i >= 1; i--) {
            int ax = i - 1 - (big->rank - t->rank);   /* the operand's own axis, < 0: missing */
            if (ax < 0 || t->dims[ax] != dim[i]) {
                st[k][i] = 0;
            } else {
                st[k][i] = s;
            }
            if (ax >= 0) s *= t->dims[ax];
        }
        st[k][0] = t->batchless ? 0 : s;
    }
    /* drop the dimensions of one element, then merge i into i+1 where every operand steps
     * through both as through one */
    int r = 0;
    for (int i = 0; i < R; i++) {
        if (dim[i] == 1) continue;
        if (r > 0) {
            int merge = 1;
            for (int k = 0; k < nops; k++)
                if (it->st[k][r - 1] != st[k][i] * dim[i]) merge = 0;
            if (merge) {
                it->dim[r - 1] *= dim[i];
                for (int k = 0; k < nops; k++) it->st[k][r - 1] = st[k][i];
                continue;
            }
        }
        it->dim[r] = dim[i];
        for (int k = 0; k < nops; k++) it->st[k][r] = st[k][i];
        r++;
    }
    if (r == 0) {               /* one element in all */
        it->dim[0] = 1;
        for (int k = 0; k < nops; k++) it->st[k][0] = 0;
        r = 1;
    }
    it->rank = r;
    it->nops = nops;
}

static inline int64_t tr_nd_iter_total(const tr_nd_iter *it)
{
    int64_t t = 1;
    for (int i = 0; i < it->rank; i++) t *= it->dim[i];
    return t;
}

/* Elements of the space that map to one element of operand k (those along its stride-0
 * dimensions). */
static inline int64_t tr_nd_iter_fanin(const tr_nd_iter *it, int k)
{
    int64_t m = 1;
    for (int i = 0; i < it->rank; i++)
        if (it->st[k][i] == 0) m *= it->dim[i];
    return m;
}

#endif
