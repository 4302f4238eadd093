/* CPU multi-head self-attention as nn.MultiheadAttention(D, heads, batch_first=True) without
 * dropout: the projections are batched GEMMs over all N*T rows, the per-head products small
 * GEMMs issued serially (OpenBLAS threads them), softmax and its backward OpenMP loops over
 * vectorised rows. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/backend/cpu/ops_extra.h"
#include "trainer/layers/attention_layout.h"


/* Vectorised (the exponentials too: tr_cpu_exp_nonpos), where expf's scalar calls made the
 * softmax about as dear as vit_tiny's per-head GEMMs. */
DEBA_AVX2_CLONES void tr_cpu_softmax_row(float *p, int t)
{
    float m = p[0];
#pragma omp simd reduction(max : m)
    for (int j = 1; j < t; j++) m = p[j] > m ? p[j] : m;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < t; j++) {
        p[j] = tr_cpu_exp_nonpos(p[j] - m);
        sum += p[j];
    }
    const float inv = 1.f / sum;
#pragma omp simd
    for (int j = 0; j < t; j++) p[j] *= inv;
}

DEBA_AVX2_CLONES void tr_cpu_softmax_row_backward(float *dp, const float *p, int t)
{
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j < t; j++) dot += dp[j] * p[j];
#pragma omp simd
    for (int j = 0; j < t; j++) dp[j] = p[j] * (dp[j] - dot);
}

/* y (rows, cols) += bias broadcast over rows */
static void add_bias_rows(float *y, const float *bias, int64_t rows, int cols)
{
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) y[r * cols + j] += bias[j];
}

/* db (cols) += column sums of dy (rows, cols), in column blocks so rows are read contiguously;
 * blocks of 32 (two cache lines a row) give vit_tiny's 192 and 576 columns 6 and 18 blocks, so
 * two threads get equal shares (64 left one thread two blocks of 3). Each column is summed over
 * the rows in order whatever the block. */
static void col_sums_add(float *db, const float *dy, int64_t rows, int cols)
{
    enum { BLK = 32 };
    int nblk = (cols + BLK - 1) / BLK;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < nblk; b++) {
        int j0 = b * BLK, j1 = j0 + BLK < cols ? j0 + BLK : cols;
        float acc[BLK] = {0};
        for (int64_t r = 0; r < rows; r++)
            for (int j = j0; j < j1; j++) acc[j - j0] += dy[r * cols + j];
        for (int j = j0; j < j1; j++) db[j] += acc[j - j0];
    }
}

void tr_cpu_attention_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = &g->tensors[nd->in[0]];
    tr_tensor *y = &g->tensors[nd->out];
    attn_view a = attn_view_of(g, nd);
    int t = a.t, d = a.d, h = a.heads, dh = a.dh;
    const float *w_in = g->params + g->pspecs[nd->param[0]].off;     /* (3D, D) */
    const float *b_in = g->params + g->pspecs[nd->param[1]].off;     /* (3D) */
    const float *w_out = g->params + g->pspecs[nd->param[2]].off;    /* (D, D) */
    const float *b_out = g->params + g->pspecs[nd->param[3]].off;    /* (D) */
    int64_t rows = (int64_t)n * t;

    /* qkv = x W_in^T + b_in */
    tr_cpu_sgemm(0, 1, (int)rows, 3 * d, d, 1.f, x->data, d,
                w_in, d, 0.f, a.qkv, 3 * d);
    add_bias_rows(a.qkv, b_in, rows, 3 * d);

    /* scores = q k^T / sqrt(dh), per sample and head */
    #pragma omp parallel for collapse(2) schedule(static)
    for (int s = 0; s < n; s++)
        for (int hh = 0; hh < h; hh++) {
            const float *q = a.qkv + (int64_t)s * t * 3 * d + hh * dh;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, dh, a.scale, q, 3 * d,
                        q + d, 3 * d, 0.f, a.prob + ((int64_t)s * h + hh) * t * t, t);
        }

    /* softmax over each row of scores, in place */
    int64_t prow = (int64_t)n * h * t;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < prow; r++) tr_cpu_softmax_row(a.prob + r * t, t);

    /* ctx[:, head] = P v */
    #pragma omp parallel for collapse(2) schedule(static)
    for (int s = 0; s < n; s++)
        for (int hh = 0; hh < h; hh++) {
            const float *v = a.qkv + (int64_t)s * t * 3 * d + 2 * d + hh * dh;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, dh, t, 1.f,
                        a.prob + ((int64_t)s * h + hh) * t * t, t, v, 3 * d, 0.f,
                        a.ctx + (int64_t)s * t * d + hh * dh, d);
        }

    /* y = ctx W_out^T + b_out */
    tr_cpu_sgemm(0, 1, (int)rows, d, d, 1.f, a.ctx, d, w_out, d,
                0.f, y->data, d);
    add_bias_rows(y->data, b_out, rows, d);
}

/* Chunks of samples bounded by the node's ws_max_samples share the scratch: dctx (m, T, D),
 * dqkv (m, T, 3D), dscores (m, heads, T, T). */
void tr_cpu_attention_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = &g->tensors[nd->in[0]];
    const tr_tensor *y = &g->tensors[nd->out];
    attn_view a = attn_view_of(g, nd);
    int t = a.t, d = a.d, h = a.heads, dh = a.dh;
    const float *w_in = g->params + g->pspecs[nd->param[0]].off;
    const float *w_out = g->params + g->pspecs[nd->param[2]].off;
    float *gw_in = g->grads + g->pspecs[nd->param[0]].off;
    float *gb_in = g->grads + g->pspecs[nd->param[1]].off;
    float *gw_out = g->grads + g->pspecs[nd->param[2]].off;
    float *gb_out = g->grads + g->pspecs[nd->param[3]].off;
    int chunk = nd->ws_max_samples > 0 && nd->ws_max_samples < n ? nd->ws_max_samples : n;

    col_sums_add(gb_out, y->grad, (int64_t)n * t, d);

    for (int s0 = 0; s0 < n; s0 += chunk) {
        int m = n - s0 < chunk ? n - s0 : chunk;
        int64_t rows = (int64_t)m * t;
        const float *dy = y->grad + (int64_t)s0 * t * d;
        const float *ctx = a.ctx + (int64_t)s0 * t * d;
        const float *qkv = a.qkv + (int64_t)s0 * t * 3 * d;
        const float *prob = a.prob + (int64_t)s0 * h * t * t;
        const float *xs = x->data + (int64_t)s0 * t * d;
        float *dctx = g->ws;
        float *dqkv = dctx + rows * d;
        float *dsc = dqkv + rows * 3 * d;

        /* output projection */
        tr_cpu_sgemm(0, 0, (int)rows, d, d, 1.f, dy, d, w_out,
                    d, 0.f, dctx, d);
        tr_cpu_sgemm(1, 0, d, d, (int)rows, 1.f, dy, d, ctx, d,
                    1.f, gw_out, d);

        /* dP = dctx v^T, dv = P^T dctx */
        #pragma omp parallel for collapse(2) schedule(static)
        for (int s = 0; s < m; s++)
            for (int hh = 0; hh < h; hh++) {
                int64_t ho = (int64_t)s * t * 3 * d + hh * dh;
                const float *dc = dctx + (int64_t)s * t * d + hh * dh;
                const float *p = prob + ((int64_t)s * h + hh) * t * t;
                float *dp = dsc + ((int64_t)s * h + hh) * t * t;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, t, dh, 1.f, dc, d,
                            qkv + ho + 2 * d, 3 * d, 0.f, dp, t);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, dh, t, 1.f, p, t, dc, d,
                            0.f, dqkv + ho + 2 * d, 3 * d);
            }

        /* softmax backward: dS = P * (dP - sum(dP * P)), in place */
        int64_t prow = (int64_t)m * h * t;
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < prow; r++) tr_cpu_softmax_row_backward(dsc + r * t, prob + r * t, t);

        /* dq = scale dS k, dk = scale dS^T q */
        #pragma omp parallel for collapse(2) schedule(static)
        for (int s = 0; s < m; s++)
            for (int hh = 0; hh < h; hh++) {
                int64_t ho = (int64_t)s * t * 3 * d + hh * dh;
                const float *ds = dsc + ((int64_t)s * h + hh) * t * t;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, dh, t, a.scale, ds, t,
                            qkv + ho + d, 3 * d, 0.f, dqkv + ho, 3 * d);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, t, dh, t, a.scale, ds, t,
                            qkv + ho, 3 * d, 0.f, dqkv + ho + d, 3 * d);
            }

        /* input projection */
        if (x->grad)
            tr_cpu_sgemm(0, 0, (int)rows, d, 3 * d, 1.f, dqkv,
                        3 * d, w_in, d, 1.f, x->grad + (int64_t)s0 * t * d, d);
        tr_cpu_sgemm(1, 0, 3 * d, d, (int)rows, 1.f, dqkv, 3 * d,
                    xs, d, 1.f, gw_in, d);
        col_sums_add(gb_in, dqkv, rows, 3 * d);
    }
}
