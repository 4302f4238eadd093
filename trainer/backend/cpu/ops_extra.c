/* CPU kernels of the ops the DenseNet, EfficientNet, MobileNetV3 and ViT models add to the
 * ResNet set: channel concat, SE channel scale, dropout, drop-path, layernorm, patch tokens and
 * token selection (multi-head attention lives in attention.c). Forward and backward sit side by
 * side; backward adds into gradients. */
#include <math.h>
#include <string.h>

#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/backend/cpu/cpu_ops.h"
#include "trainer/backend/cpu/ops_extra.h"

/* A node's k-th input, its output, and the j-th parameter (and gradients). */
static inline tr_tensor *in_t(tr_graph *g, const tr_node *nd, int k) { return &g->tensors[nd->in[k]]; }
static inline tr_tensor *out_t(tr_graph *g, const tr_node *nd) { return &g->tensors[nd->out]; }
static inline float *param_p(tr_graph *g, const tr_node *nd, int j) { return g->params + g->pspecs[nd->param[j]].off; }
static inline float *param_g(tr_graph *g, const tr_node *nd, int j) { return g->grads + g->pspecs[nd->param[j]].off; }

/* ---- concat along channels ---- */

static void concat_forward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *y = out_t(g, nd);
    int64_t hw = (int64_t)y->h * y->w, ystride = (int64_t)y->c * hw;
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        int64_t off = 0;
        for (int k = 0; k < nd->n_in; k++) {
            const tr_tensor *x = in_t(g, nd, k);
            int64_t len = (int64_t)x->c * hw;
            memcpy(y->data + s * ystride + off, x->data + s * len, (size_t)len * sizeof(float));
            off += len;
        }
    }
}

static void concat_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *y = out_t(g, nd);
    int64_t hw = (int64_t)y->h * y->w, ystride = (int64_t)y->c * hw;
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        int64_t off = 0;
        for (int k = 0; k < nd->n_in; k++) {
            tr_tensor *x = in_t(g, nd, k);
            int64_t len = (int64_t)x->c * hw;
            if (x->grad) {
                float *dx = x->grad + s * len;
                const float *dy = y->grad + s * ystride + off;
                for (int64_t i = 0; i < len; i++) dx[i] += dy[i];
            }
            off += len;
        }
    }
}

/* ---- y = x * s, s per (sample, channel) ---- */

static void mul_channel_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0), *sc = in_t(g, nd, 1);
    tr_tensor *y = out_t(g, nd);
    int64_t rows = (int64_t)n * x->c, hw = (int64_t)x->h * x->w;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float s = sc->data[r];
        const float *xr = x->data + r * hw;
        float *yr = y->data + r * hw;
        for (int64_t i = 0; i < hw; i++) yr[i] = xr[i] * s;
    }
}

static void mul_channel_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0), *sc = in_t(g, nd, 1);
    const tr_tensor *y = out_t(g, nd);
    int64_t rows = (int64_t)n * x->c, hw = (int64_t)x->h * x->w;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float s = sc->data[r];
        const float *xr = x->data + r * hw, *dy = y->grad + r * hw;
        if (x->grad) {
            float *dx = x->grad + r * hw;
            for (int64_t i = 0; i < hw; i++) dx[i] += dy[i] * s;
        }
        if (sc->grad) {
            float acc = 0.f;
            for (int64_t i = 0; i < hw; i++) acc += dy[i] * xr[i];
            sc->grad[r] += acc;
        }
    }
}

/* ---- inverted dropout: the mask saved holds 0 or 1/(1-p) per element ---- */

/* The mask is drawn serially from the graph's stream so a run is reproducible whatever the
 * thread count. */
static void dropout_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    int64_t count = (int64_t)n * tr_tensor_numel(x);
    float p = nd->attr.drop.p;
    if (!g->training || p <= 0.f) {
        if (y->data != x->data) memcpy(y->data, x->data, (size_t)count * sizeof(float));
        return;
    }
    float *mask = nd->saved;
    float scale = p < 1.f ? 1.f / (1.f - p) : 0.f;
    for (int64_t i = 0; i < count; i++) mask[i] = tr_rng_uniform(&g->rng) < (double)p ? 0.f : scale;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) y->data[i] = x->data[i] * mask[i];
}

static void dropout_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    int64_t count = (int64_t)n * tr_tensor_numel(x);
    float p = nd->attr.drop.p;
    if (!g->training || p <= 0.f) {
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < count; i++) x->grad[i] += y->grad[i];
        return;
    }
    const float *mask = nd->saved;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) x->grad[i] += y->grad[i] * mask[i];
}

/* ---- stochastic depth, torchvision mode "row": one keep/drop per sample ---- */

static void drop_path_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    int64_t per = tr_tensor_numel(x);
    float p = nd->attr.drop.p;
    if (!g->training || p <= 0.f) {
        if (y->data != x->data) memcpy(y->data, x->data, (size_t)(n * per) * sizeof(float));
        return;
    }
    float *keep = nd->saved;
    float survival = 1.f - p;
    /* bernoulli(survival) then divided by survival, as torchvision (no division when it is 0) */
    for (int s = 0; s < n; s++) {
        float b = tr_rng_uniform(&g->rng) < (double)survival ? 1.f : 0.f;
        keep[s] = survival > 0.f ? b / survival : b;
    }
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        const float *xs = x->data + s * per;
        float *ys = y->data + s * per;
        float k = keep[s];
        for (int64_t i = 0; i < per; i++) ys[i] = xs[i] * k;
    }
}

static void drop_path_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    int64_t per = tr_tensor_numel(x);
    float p = nd->attr.drop.p;
    int identity = !g->training || p <= 0.f;
    const float *keep = nd->saved;
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        float *dx = x->grad + s * per;
        const float *dy = y->grad + s * per;
        float k = identity ? 1.f : keep[s];
        for (int64_t i = 0; i < per; i++) dx[i] += dy[i] * k;
    }
}

/* ---- layernorm over the last dim ---- */

/* One row of each pass, vectorised (OpenMP simd reductions: GCC does not reorder a float or
 * double sum without them, and the scalar loops were a third of vit_tiny's LayerNorm time) and
 * compiled for AVX2 as well; the sums' order depends on the row length only. */
static DEBA_AVX2_CLONES void ln_row_forward(float *y, float *stat, const float *x, const float *weight,
                                            const float *bias, int d, float eps)
{
    double m = 0.0, v = 0.0;
#pragma omp simd reduction(+ : m)
    for (int i = 0; i < d; i++) m += x[i];
    m /= d;
#pragma omp simd reduction(+ : v)
    for (int i = 0; i < d; i++) v += ((double)x[i] - m) * ((double)x[i] - m);
    v /= d;                                  /* biased, as torch */
    const float mean = (float)m, rstd = (float)(1.0 / sqrt(v + (double)eps));
#pragma omp simd
    for (int i = 0; i < d; i++) y[i] = (x[i] - mean) * rstd * weight[i] + bias[i];
    if (stat) {   /* NULL in the inference plan: no backward reads them */
        stat[0] = mean;
        stat[1] = rstd;
    }
}

static DEBA_AVX2_CLONES void ln_row_backward(float *dx, const float *x, const float *dy, const float *weight,
                                             const float *stat, int d)
{
    const float mean = stat[0], rstd = stat[1];
    float s1 = 0.f, s2 = 0.f;              /* mean(dnorm), mean(dnorm * norm) */
#pragma omp simd reduction(+ : s1, s2)
    for (int i = 0; i < d; i++) {
        const float norm = (x[i] - mean) * rstd, dn = weight[i] * dy[i];
        s1 += dn;
        s2 += dn * norm;
    }
    s1 /= d;
    s2 /= d;
#pragma omp simd
    for (int i = 0; i < d; i++) {
        const float norm = (x[i] - mean) * rstd, dn = weight[i] * dy[i];
        dx[i] += rstd * (dn - s1 - norm * s2);
    }
}

void tr_layernorm_forward(float *out, float *stat, const float *inp, const float *weight,
                          const float *bias, int64_t rows, int d, float eps)
{
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        ln_row_forward(out + r * d, stat ? stat + 2 * r : NULL, inp + r * d, weight, bias, d, eps);
}

/* dx from the saved statistics; dweight/dbias as column sums (a second pass over columns keeps
 * the reduction race-free and deterministic without per-thread buffers). */
void tr_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *stat, int64_t rows,
                           int d)
{
    if (dinp) {
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            ln_row_backward(dinp + r * d, inp + r * d, dout + r * d, weight, stat + 2 * r, d);
    }
    /* blocks of columns, rows inner: each row is read in contiguous runs; 32 columns (two cache
     * lines) cut a 192-wide row in 6 blocks, which two threads share evenly (64: 2 + 1) */
    enum { BLK = 32 };
    int nblk = (d + BLK - 1) / BLK;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < nblk; b++) {
        int i0 = b * BLK, i1 = i0 + BLK < d ? i0 + BLK : d;
        float gw[BLK] = {0}, gb[BLK] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *x = inp + r * d, *dy = dout + r * d;
            float mean = stat[2 * r], rstd = stat[2 * r + 1];
            for (int i = i0; i < i1; i++) {
                gw[i - i0] += dy[i] * (x[i] - mean) * rstd;
                gb[i - i0] += dy[i];
            }
        }
        for (int i = i0; i < i1; i++) {
            dweight[i] += gw[i - i0];
            dbias[i] += gb[i - i0];
        }
    }
}

static void layernorm_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    tr_layernorm_forward(y->data, nd->saved, x->data, param_p(g, nd, 0), param_p(g, nd, 1),
                         (int64_t)n * x->c * x->h, x->w, nd->attr.ln.eps);
}

static void layernorm_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    tr_layernorm_backward(x->grad, param_g(g, nd, 0), param_g(g, nd, 1), y->grad, x->data,
                          param_p(g, nd, 0), nd->saved, (int64_t)n * x->c * x->h, x->w);
}

/* ---- (D, h, w) map -> (1 + h*w, 1, D) tokens, class token first, plus position embedding ---- */

static void patch_tokens_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    int d = x->c, p = x->h * x->w, t = p + 1;
    const float *cls = param_p(g, nd, 0), *pos = param_p(g, nd, 1);
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        const float *xs = x->data + (int64_t)s * d * p;
        float *ys = y->data + (int64_t)s * t * d;
        for (int j = 0; j < d; j++) ys[j] = cls[j] + pos[j];
        for (int i = 0; i < p; i++)
            for (int j = 0; j < d; j++)
                ys[(int64_t)(i + 1) * d + j] = xs[(int64_t)j * p + i] + pos[(int64_t)(i + 1) * d + j];
    }
}

static void patch_tokens_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    int d = x->c, p = x->h * x->w, t = p + 1;
    float *dcls = param_g(g, nd, 0), *dpos = param_g(g, nd, 1);
    if (x->grad) {
        #pragma omp parallel for schedule(static)
        for (int s = 0; s < n; s++) {
            float *dx = x->grad + (int64_t)s * d * p;
            const float *dy = y->grad + (int64_t)s * t * d;
            for (int j = 0; j < d; j++)
                for (int i = 0; i < p; i++) dx[(int64_t)j * p + i] += dy[(int64_t)(i + 1) * d + j];
        }
    }
    int64_t td = (int64_t)t * d;
    #pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < td; e++) {
        float acc = 0.f;
        for (int s = 0; s < n; s++) acc += y->grad[(int64_t)s * td + e];
        dpos[e] += acc;
        if (e < d) dcls[e] += acc;
    }
}

/* ---- one channel (token) of each sample ---- */

static void select_token_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    int64_t row = (int64_t)x->h * x->w, per = (int64_t)x->c * row;
    for (int s = 0; s < n; s++)
        memcpy(y->data + s * row, x->data + s * per + nd->attr.token * row, (size_t)row * sizeof(float));
}

static void select_token_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    int64_t row = (int64_t)x->h * x->w, per = (int64_t)x->c * row;
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        float *dx = x->grad + s * per + nd->attr.token * row;
        const float *dy = y->grad + s * row;
        for (int64_t i = 0; i < row; i++) dx[i] += dy[i];
    }
}

void tr_cpu_register_extra(tr_backend *be)
{
    be->forward[TR_OP_CONCAT] = concat_forward;
    be->backward[TR_OP_CONCAT] = concat_backward;
    be->forward[TR_OP_MUL_CHANNEL] = mul_channel_forward;
    be->backward[TR_OP_MUL_CHANNEL] = mul_channel_backward;
    be->forward[TR_OP_DROPOUT] = dropout_forward;
    be->backward[TR_OP_DROPOUT] = dropout_backward;
    be->forward[TR_OP_DROP_PATH] = drop_path_forward;
    be->backward[TR_OP_DROP_PATH] = drop_path_backward;
    be->forward[TR_OP_LAYERNORM] = layernorm_forward;
    be->backward[TR_OP_LAYERNORM] = layernorm_backward;
    be->forward[TR_OP_ATTENTION] = tr_cpu_attention_forward;
    be->backward[TR_OP_ATTENTION] = tr_cpu_attention_backward;
    be->forward[TR_OP_PATCH_TOKENS] = patch_tokens_forward;
    be->backward[TR_OP_PATCH_TOKENS] = patch_tokens_backward;
    be->forward[TR_OP_SELECT_TOKEN] = select_token_forward;
    be->backward[TR_OP_SELECT_TOKEN] = select_token_backward;
}
