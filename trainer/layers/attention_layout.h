/* Where the attention node keeps what forward saves for backward: one layout shared by the
 * builder's size, the CPU kernels and the CUDA kernels. */
#ifndef TR_ATTENTION_LAYOUT_H
#define TR_ATTENTION_LAYOUT_H

#include <math.h>
#include "trainer/graph.h"

typedef struct {
    int t, d, heads, dh;
    float scale;                 /* 1/sqrt(dh) */
    float *qkv;                  /* (planned_n, T, 3D): q | k | v per row, head h at h*dh */
    float *prob;                 /* (planned_n, heads, T, T) */
    float *ctx;                  /* (planned_n, T, D): heads' outputs, concatenated */
} attn_view;

static inline attn_view attn_view_of(const tr_graph *g, const tr_node *nd)
{
    const tr_tensor *x = &g->tensors[nd->in[0]];
    attn_view a;
    a.t = x->c;
    a.d = x->w;
    a.heads = nd->attr.attn.heads;
    a.dh = a.d / a.heads;
    a.scale = 1.f / sqrtf((float)a.dh);
    int64_t pn = g->planned_n;
    a.qkv = nd->saved;
    a.prob = a.qkv + pn * a.t * 3 * a.d;
    a.ctx = a.prob + pn * a.heads * a.t * a.t;
    return a;
}

#endif
