/* Element-wise activations, linear layers, residual addition, the loss, SGD and the gradient
 * moments on the CPU. The arithmetic of activations and SGD comes from layers/elementwise.h,
 * except GELU's, which is vectorised here (its erf/exp polynomials, below). */
#include "core/moments.h"
#include "deba/stats.h"
#include "trainer/backend/cpu/cpu_kernels.h"

#include <math.h>
#include <omp.h>
#include "trainer/layers/elementwise.h"

/* GELU, vectorisable: glibc's erff and expf are scalar calls here (no libmvec without
 * -ffast-math), which made vit_tiny's GELUs 21% of its training step. erf is Abramowitz & Stegun
 * 7.1.26 (|error| <= 1.5e-7), the formula PyTorch's own vectorised CPU erf uses, and
 * exp(-x^2/2), which both it and the backward's normal density need, is tr_cpu_exp_nonpos. For
 * x < 0 the CDF comes straight from the erfc term, without forming 1 + erf.
 * tests/test_cpu_fastmath.c holds both against double precision. The update passes below are
 * also compiled for AVX2 (DEBA_AVX2_CLONES). */

/* |x| is clamped to 13 (e^(-x^2/2) >= e^-84.5, a normal float) by an integer min on the bits,
 * which vectorises where a float compare-and-select does not (-ftrapping-math); beyond it the
 * CDF is within 1e-38 of 0 or 1 and the density 0 (*g is 0 there). NaN stays NaN through x. */
#define GELU_ZMAX_BITS 0x41500000   /* 13.0f */

/* The standard normal CDF at x, and in *g e^(-x^2/2) for the density. */
static inline float gelu_cdf(float x, float *g)
{
    union { float f; int i; } a = {.f = x};
    const int bits = a.i & 0x7fffffff;
    a.i = bits < GELU_ZMAX_BITS ? bits : GELU_ZMAX_BITS;
    const float e = tr_cpu_exp_nonpos(-0.5f * a.f * a.f);
    const float t = 1.f / (1.f + 0.3275911f * 0.70710678118654752f * a.f);
    const float q = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
                     0.254829592f) * t * e;   /* erfc(|x|/sqrt 2) */
    union { float f; int i; } d = {.f = e};
    d.i &= -(bits < GELU_ZMAX_BITS);
    *g = d.f;
    const float pos = (float)(x >= 0.f);   /* 1 - q/2 for x >= 0, q/2 below, exactly */
    return pos + (1.f - 2.f * pos) * (0.5f * q);
}

static inline float gelu_fwd(float x)
{
    float e;
    return x * gelu_cdf(x, &e);
}

static inline float gelu_bwd(float x, float dy)
{
    float e;
    const float cdf = gelu_cdf(x, &e);
    return dy * (cdf + x * 0.3989422804014327f * e);
}

/* The GELU loops over one thread's span, compiled for AVX2 as well (8 lanes): OpenMP's outlined
 * region would not be cloned, so each thread calls these on its static share. Element-wise, so
 * the split does not change any result. */
static DEBA_AVX2_CLONES void gelu_fwd_span(float *y, const float *x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = gelu_fwd(x[i]);
}

static DEBA_AVX2_CLONES void gelu_bwd_span(float *dx, const float *x, const float *dy, int64_t n, int set)
{
    if (set) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dx[i] = gelu_bwd(x[i], dy[i]);
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dx[i] += gelu_bwd(x[i], dy[i]);
    }
}

/* [*i0, *i1): this thread's static share of total elements, in multiples of 16 floats. */
static void thread_span(int64_t total, int64_t *i0, int64_t *i1)
{
    const int64_t t = omp_get_num_threads(), k = omp_get_thread_num(), blocks = (total + 15) / 16;
    const int64_t b0 = blocks * k / t, b1 = blocks * (k + 1) / t;
    *i0 = b0 * 16 < total ? b0 * 16 : total;
    *i1 = b1 * 16 < total ? b1 * 16 : total;
}

/* One loop per kind, so the switch inside tr_act_* folds away and the loop can vectorise. */
#define ACT_LOOP(KIND, BODY)                                         \
    case KIND: {                                                     \
        const tr_act kind_ = KIND;                                   \
        _Pragma("omp parallel for simd schedule(static)")            \
        for (int64_t i = 0; i < total; i++) BODY;                    \
        break;                                                       \
    }
#define ACT_SWITCH(kind, BODY)                                       \
    switch (kind) {                                                  \
        ACT_LOOP(TR_ACT_RELU, BODY)                                  \
        ACT_LOOP(TR_ACT_RELU6, BODY)                                 \
        ACT_LOOP(TR_ACT_SIGMOID, BODY)                               \
        ACT_LOOP(TR_ACT_SILU, BODY)                                  \
        ACT_LOOP(TR_ACT_HSIGMOID, BODY)                              \
        ACT_LOOP(TR_ACT_HSWISH, BODY)                                \
        ACT_LOOP(TR_ACT_GELU, BODY)                                  \
    default: break;                                                  \
    }

void tr_cpu_act_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]];
    const float *x = xt->data;
    float *y = g->tensors[nd->out].data;
    const int64_t total = n * tr_tensor_numel(xt);
    if (nd->attr.act == TR_ACT_GELU) {
#pragma omp parallel
        {
            int64_t i0, i1;
            thread_span(total, &i0, &i1);
            gelu_fwd_span(y + i0, x + i0, i1 - i0);
        }
        return;
    }
    ACT_SWITCH(nd->attr.act, y[i] = tr_act_forward(kind_, x[i]))
}

void tr_cpu_act_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]];
    if (!xt->grad) return;
    const float *x = xt->data, *dy = g->tensors[nd->out].grad;
    float *dx = xt->grad;
    const int64_t total = n * tr_tensor_numel(xt);
    const int set = tr_cpu_sets(nd, 0);
    if (nd->attr.act == TR_ACT_GELU) {
#pragma omp parallel
        {
            int64_t i0, i1;
            thread_span(total, &i0, &i1);
            gelu_bwd_span(dx + i0, x + i0, dy + i0, i1 - i0, set);
        }
        return;
    }
    if (set) {
        ACT_SWITCH(nd->attr.act, dx[i] = tr_act_backward(kind_, x[i], dy[i]))
    } else {
        ACT_SWITCH(nd->attr.act, dx[i] += tr_act_backward(kind_, x[i], dy[i]))
    }
}

/* y (rows, out) = x (rows, in) W^T + b, rows = n*c*h. */
void tr_cpu_linear_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]];
    const int in = nd->attr.linear.in, out = nd->attr.linear.out;
    const int rows = n * xt->c * xt->h;
    const float *w = tr_cpu_param(g, nd, 0);
    float *y = g->tensors[nd->out].data;
    float beta = 0.f;
    if (nd->attr.linear.bias) {
        const float *b = tr_cpu_param(g, nd, 1);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < out; o++) y[(int64_t)r * out + o] = b[o];
        beta = 1.f;
    }
    tr_cpu_sgemm(0, 1, rows, out, in, 1.f, xt->data, in, w, in, beta, y, out);
}

void tr_cpu_linear_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]];
    const int in = nd->attr.linear.in, out = nd->attr.linear.out;
    const int rows = n * xt->c * xt->h;
    const float *w = tr_cpu_param(g, nd, 0), *dy = g->tensors[nd->out].grad;
    float *dw = tr_cpu_pgrad(g, nd, 0);
    /* dW (out, in) += dy^T x; dx (rows, in) += dy W, or = when this backward sets it */
    tr_cpu_sgemm(1, 0, out, in, rows, 1.f, dy, out, xt->data, in, 1.f, dw, in);
    if (xt->grad)
        tr_cpu_sgemm(0, 0, rows, in, out, 1.f, dy, out, w, in, tr_cpu_sets(nd, 0) ? 0.f : 1.f, xt->grad, in);
    if (nd->attr.linear.bias) {
        float *db = tr_cpu_pgrad(g, nd, 1);
        /* column sums in blocks of 32 columns (two cache lines a row, and enough blocks for the
         * threads on 192-wide layers): rows are read contiguously, threads own columns */
        const int blocks = (out + 31) / 32;
#pragma omp parallel for schedule(static)
        for (int bk = 0; bk < blocks; bk++) {
            int o0 = bk * 32, o1 = o0 + 32 < out ? o0 + 32 : out;
            float acc[32] = {0};
            for (int r = 0; r < rows; r++) {
                const float *dr = dy + (int64_t)r * out;
                for (int o = o0; o < o1; o++) acc[o - o0] += dr[o];
            }
            for (int o = o0; o < o1; o++) db[o] += acc[o - o0];
        }
    }
}

void tr_cpu_add_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *at = &g->tensors[nd->in[0]];
    const float *a = at->data, *b = g->tensors[nd->in[1]].data;
    float *y = g->tensors[nd->out].data;
    const int64_t total = n * tr_tensor_numel(at);
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < total; i++) y[i] = a[i] + b[i];
}

void tr_cpu_add_backward(tr_graph *g, tr_node *nd, int n)
{
    const float *dy = g->tensors[nd->out].grad;
    const int64_t total = n * tr_tensor_numel(&g->tensors[nd->out]);
    for (int j = 0; j < 2; j++) {
        float *d = g->tensors[nd->in[j]].grad;
        if (!d) continue;
        if (tr_cpu_sets(nd, j)) {
#pragma omp parallel for simd schedule(static)
            for (int64_t i = 0; i < total; i++) d[i] = dy[i];
            continue;
        }
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < total; i++) d[i] += dy[i];
    }
}

/* Log-softmax through the row maximum, so exp never overflows. */
void tr_cpu_xent(tr_backend *be, const float *logits, const int *labels, int n, int classes,
                 float *dlogits, double *loss_sum, int64_t *correct)
{
    (void)be;
    double loss = 0;
    int64_t hits = 0;
#pragma omp parallel for schedule(static) reduction(+ : loss, hits)
    for (int r = 0; r < n; r++) {
        const float *z = logits + (int64_t)r * classes;
        float *dz = dlogits + (int64_t)r * classes;
        int best = 0;
        for (int j = 1; j < classes; j++)
            if (z[j] > z[best]) best = j;   /* ties: the first maximum */
        double mx = z[best], se = 0;
        for (int j = 0; j < classes; j++) se += exp((double)z[j] - mx);
        double lse = mx + log(se);
        int y = labels[r];
        loss += lse - z[y];
        hits += best == y;
        for (int j = 0; j < classes; j++)
            dz[j] = (float)((exp((double)z[j] - lse) - (j == y)) / n);
    }
    *loss_sum = loss;
    *correct = hits;
}

void tr_cpu_grad_moments(tr_backend *be, const float *g, int64_t count, double *sum, double *sumsq)
{
    (void)be;
    deba_grad_moments(g, count, sum, sumsq);
}

/* The SGD update, plain or with the SPEC §2 moments fused in, over the units of the moment
 * partition (core/moments.h): each 16 gradient values go into the moments' float lanes right
 * before they are applied, so the gradient is read once per step instead of twice and the
 * moments keep deba_grad_moments' bits. The update streams three arrays (gradient in, parameters
 * and momentum in and out), too large for the caches in the bigger models; software prefetches a
 * fixed distance ahead keep more of their lines in flight than the hardware prefetcher alone
 * (resnet50's 25.6 M values update in 6 % less time; docs/performance.md, "DEBA signals fused into
 * the update"). The plain and the fused pass share this loop, so the fused one's extra cost is
 * the moments' alone. */
#define TR_SGD_PREFETCH 256   /* values ahead */
typedef struct {
    float *p, *m;
    const float *g;
    float lr, momentum, wd;
} sgd_ctx;

static inline __attribute__((always_inline)) void sgd_unit(const sgd_ctx *c, int64_t off, int64_t n, double *sum,
                                                           double *sumsq, int moments)
{
    float *p = c->p + off, *m = c->m + off;
    const float *g = c->g + off;
    const float lr = c->lr, momentum = c->momentum, wd = c->wd;
    double s = 0.0, q = 0.0;
    for (int64_t lo = 0; lo < n; lo += DEBA_MOMENT_FOLD) {
        int64_t hi = n - lo < DEBA_MOMENT_FOLD ? n : lo + DEBA_MOMENT_FOLD, i = lo;
        float ls[DEBA_MOMENT_FLANES] = {0}, lq[DEBA_MOMENT_FLANES] = {0};
        for (; i + DEBA_MOMENT_FLANES <= hi; i += DEBA_MOMENT_FLANES) {
            __builtin_prefetch(g + i + TR_SGD_PREFETCH, 0);
            __builtin_prefetch(p + i + TR_SGD_PREFETCH, 1);
            __builtin_prefetch(m + i + TR_SGD_PREFETCH, 1);
            if (moments) deba_moment_lanes(ls, lq, g + i);
#pragma omp simd
            for (int k = 0; k < DEBA_MOMENT_FLANES; k++)
                tr_sgd_update(&p[i + k], g[i + k], &m[i + k], lr, momentum, wd);
        }
        if (moments) deba_moment_block_end(ls, lq, g + i, hi - i, &s, &q);
        for (; i < hi; i++) tr_sgd_update(&p[i], g[i], &m[i], lr, momentum, wd);
    }
    *sum = s;
    *sumsq = q;
}

/* the two specialisations, compiled for AVX-512 and AVX2 too: the same bits (no FMA contraction in C11) */
static DEBA_AVX512_CLONES void sgd_plain_unit(const void *ctx, int t, int64_t off, int64_t n, double *s, double *q)
{
    (void)t;
    sgd_unit(ctx, off, n, s, q, 0);
}

static DEBA_AVX512_CLONES void sgd_moments_unit(const void *ctx, int t, int64_t off, int64_t n, double *s, double *q)
{
    (void)t;
    sgd_unit(ctx, off, n, s, q, 1);
}

void tr_cpu_sgd(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr,
                float momentum, float wd)
{
    (void)be;
    sgd_ctx c = {.p = p, .m = m, .g = g, .lr = lr, .momentum = momentum, .wd = wd};
    double s = 0.0, q = 0.0;
    moment_units(&count, 1, sgd_plain_unit, &c, &s, &q);
}

void tr_cpu_sgd_moments(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr,
                        float momentum, float wd, double *sum, double *sumsq)
{
    (void)be;
    sgd_ctx c = {.p = p, .m = m, .g = g, .lr = lr, .momentum = momentum, .wd = wd};
    *sum = 0.0;
    *sumsq = 0.0;
    moment_units(&count, 1, sgd_moments_unit, &c, sum, sumsq);
}
