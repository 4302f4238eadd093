/* The cuBLAS families: linear layers on the last dim, and multi-head self-attention as
 * nn.MultiheadAttention(D, heads, batch_first=True) without dropout. The GEMMs are the CPU
 * backend's (attention.c) one for one, in row-major form; per-head products are strided
 * batches over the samples, one per head. Saved layout per node, as the CPU: qkv (N, T, 3D),
 * probabilities (N, heads, T, T), heads' output (N, T, D). */
#include "trainer/backend/cuda/cuda_internal.h"

#include <math.h>
#include "trainer/layers/attention_layout.h"

/* ---- linear: y (rows, out) = x (rows, in) W^T + b, rows = n*c*h ---- */

__global__ void k_fill_rows(float *y, const float *b, int64_t rows, int cols)
{
    int64_t total = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = b[i % cols];
}

static void linear_forward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    const tr_tensor *x = &g->tensors[nd->in[0]];
    const int in = nd->attr.linear.in, out = nd->attr.linear.out;
    const int64_t rows = (int64_t)n * x->c * x->h;
    float *y = g->tensors[nd->out].data;
    float beta = 0.f;
    if (nd->attr.linear.bias) {
        k_fill_rows<<<cu_blocks(rows * out, 256), 256>>>(y, cu_param(g, nd, 1), rows, out);
        CU_LAUNCHED();
        beta = 1.f;
    }
    tr_cuda_gemm(c, 0, 1, (int)rows, out, in, 1.f, x->data, in, cu_param(g, nd, 0), in, beta, y, out);
}

static void linear_backward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    const tr_tensor *x = &g->tensors[nd->in[0]];
    const int in = nd->attr.linear.in, out = nd->attr.linear.out;
    const int64_t rows = (int64_t)n * x->c * x->h;
    const float *dy = g->tensors[nd->out].grad;
    /* dW (out, in) += dy^T x; dx (rows, in) += dy W */
    tr_cuda_gemm(c, 1, 0, out, in, (int)rows, 1.f, dy, out, x->data, in, 1.f, cu_pgrad(g, nd, 0), in);
    if (x->grad) tr_cuda_gemm(c, 0, 0, (int)rows, in, out, 1.f, dy, out, cu_param(g, nd, 0), in, 1.f, x->grad, in);
    if (nd->attr.linear.bias) tr_cuda_colsum_add(c, cu_pgrad(g, nd, 1), dy, rows, out, out);
}

/* ---- attention ---- */


static void attention_forward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    const tr_tensor *x = &g->tensors[nd->in[0]];
    float *y = g->tensors[nd->out].data;
    attn_view a = attn_view_of(g, nd);
    const int t = a.t, d = a.d, h = a.heads, dh = a.dh;
    const int64_t rows = (int64_t)n * t, tt = (int64_t)t * t;

    /* qkv = x W_in^T + b_in */
    tr_cuda_gemm(c, 0, 1, (int)rows, 3 * d, d, 1.f, x->data, d, cu_param(g, nd, 0), d, 0.f, a.qkv, 3 * d);
    tr_cuda_add_bias_rows(a.qkv, cu_param(g, nd, 1), rows, 3 * d);

    /* scores = q k^T / sqrt(dh): per head, a batch over samples */
    for (int hh = 0; hh < h; hh++) {
        const float *q = a.qkv + hh * dh;
        tr_cuda_gemm_batched(c, 0, 1, t, t, dh, a.scale, q, 3 * d, (long long)t * 3 * d, q + d, 3 * d,
                             (long long)t * 3 * d, 0.f, a.prob + hh * tt, t, (long long)h * tt, n);
    }
    tr_cuda_softmax_rows(a.prob, (int64_t)n * h * t, t);

    /* ctx[:, head] = P v */
    for (int hh = 0; hh < h; hh++)
        tr_cuda_gemm_batched(c, 0, 0, t, dh, t, 1.f, a.prob + hh * tt, t, (long long)h * tt, a.qkv + 2 * d + hh * dh,
                             3 * d, (long long)t * 3 * d, 0.f, a.ctx + hh * dh, d, (long long)t * d, n);

    /* y = ctx W_out^T + b_out */
    tr_cuda_gemm(c, 0, 1, (int)rows, d, d, 1.f, a.ctx, d, cu_param(g, nd, 2), d, 0.f, y, d);
    tr_cuda_add_bias_rows(y, cu_param(g, nd, 3), rows, d);
}

/* Chunks of at most ws_max_samples samples share g->ws (planned by the graph for every
 * backend): dctx (m, T, D), dqkv (m, T, 3D), dscores (m, heads, T, T). */
static void attention_backward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    tr_tensor *x = &g->tensors[nd->in[0]];
    const tr_tensor *y = &g->tensors[nd->out];
    attn_view a = attn_view_of(g, nd);
    const int t = a.t, d = a.d, h = a.heads, dh = a.dh;
    const int64_t tt = (int64_t)t * t;
    const float *w_in = cu_param(g, nd, 0), *w_out = cu_param(g, nd, 2);
    float *gw_in = cu_pgrad(g, nd, 0), *gb_in = cu_pgrad(g, nd, 1), *gw_out = cu_pgrad(g, nd, 2),
          *gb_out = cu_pgrad(g, nd, 3);
    const int chunk = nd->ws_max_samples > 0 && nd->ws_max_samples < n ? nd->ws_max_samples : n;

    tr_cuda_colsum_add(c, gb_out, y->grad, (int64_t)n * t, d, d);

    for (int s0 = 0; s0 < n; s0 += chunk) {
        const int m = n - s0 < chunk ? n - s0 : chunk;
        const int64_t rows = (int64_t)m * t;
        const float *dy = y->grad + (int64_t)s0 * t * d;
        const float *ctx = a.ctx + (int64_t)s0 * t * d;
        const float *qkv = a.qkv + (int64_t)s0 * t * 3 * d;
        const float *prob = a.prob + (int64_t)s0 * h * tt;
        const float *xs = x->data + (int64_t)s0 * t * d;
        float *dctx = g->ws;
        float *dqkv = dctx + rows * d;
        float *dsc = dqkv + rows * 3 * d;

        /* output projection */
        tr_cuda_gemm(c, 0, 0, (int)rows, d, d, 1.f, dy, d, w_out, d, 0.f, dctx, d);
        tr_cuda_gemm(c, 1, 0, d, d, (int)rows, 1.f, dy, d, ctx, d, 1.f, gw_out, d);

        /* dP = dctx v^T, dv = P^T dctx */
        for (int hh = 0; hh < h; hh++) {
            const long long s3 = (long long)t * 3 * d, sd = (long long)t * d, sp = (long long)h * tt;
            tr_cuda_gemm_batched(c, 0, 1, t, t, dh, 1.f, dctx + hh * dh, d, sd, qkv + 2 * d + hh * dh, 3 * d, s3,
                                 0.f, dsc + hh * tt, t, sp, m);
            tr_cuda_gemm_batched(c, 1, 0, t, dh, t, 1.f, prob + hh * tt, t, sp, dctx + hh * dh, d, sd, 0.f,
                                 dqkv + 2 * d + hh * dh, 3 * d, s3, m);
        }

        tr_cuda_softmax_backward_rows(dsc, prob, (int64_t)m * h * t, t);

        /* dq = scale dS k, dk = scale dS^T q */
        for (int hh = 0; hh < h; hh++) {
            const long long s3 = (long long)t * 3 * d, sp = (long long)h * tt;
            tr_cuda_gemm_batched(c, 0, 0, t, dh, t, a.scale, dsc + hh * tt, t, sp, qkv + d + hh * dh, 3 * d, s3, 0.f,
                                 dqkv + hh * dh, 3 * d, s3, m);
            tr_cuda_gemm_batched(c, 1, 0, t, dh, t, a.scale, dsc + hh * tt, t, sp, qkv + hh * dh, 3 * d, s3, 0.f,
                                 dqkv + d + hh * dh, 3 * d, s3, m);
        }

        /* input projection */
        if (x->grad)
            tr_cuda_gemm(c, 0, 0, (int)rows, d, 3 * d, 1.f, dqkv, 3 * d, w_in, d, 1.f, x->grad + (int64_t)s0 * t * d, d);
        tr_cuda_gemm(c, 1, 0, 3 * d, d, (int)rows, 1.f, dqkv, 3 * d, xs, d, 1.f, gw_in, d);
        tr_cuda_colsum_add(c, gb_in, dqkv, rows, 3 * d, 3 * d);
    }
}

void tr_cuda_register_gemm(tr_backend *be)
{
    be->forward[TR_OP_LINEAR] = linear_forward;
    be->backward[TR_OP_LINEAR] = linear_backward;
    be->forward[TR_OP_ATTENTION] = attention_forward;
    be->backward[TR_OP_ATTENTION] = attention_backward;
}
