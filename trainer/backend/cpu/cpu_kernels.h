/* Private to the CPU backend: the op functions of each family, registered into the table by
 * tr_cpu_register_core, and small helpers the families share. */
#ifndef TR_CPU_KERNELS_H
#define TR_CPU_KERNELS_H

#include "trainer/graph.h"

/* trainer/backend/cpu/cpu_conv.c */
void tr_cpu_conv2d_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_conv2d_backward(tr_graph *g, tr_node *nd, int n);
/* The same with the way the threads share the work chosen by the caller (tests, bench_conv):
 * chunk 0 = the team on each GEMM of the builder's chunks, chunk > 0 = each thread on its own
 * chunks of that many samples, chunk = TR_CONV_IM2COL (-2) = as the two above choose by the layer's
 * shape, chunk = -1 (the rule) = the same, or Winograd for the shapes tr_conv_winograd takes. */
#define TR_CONV_IM2COL (-2)
void tr_cpu_conv2d_forward_as(tr_graph *g, tr_node *nd, int n, int chunk);
void tr_cpu_conv2d_backward_as(tr_graph *g, tr_node *nd, int n, int chunk);
/* trainer/backend/cpu/cpu_winograd.c: F(2x2, 3x3) for 3x3 stride-1 convolutions with padding 1.
 * The chunk of samples per thread for a scratch of room floats, 0 when not even one sample fits;
 * u (16, cout, cin) (for_dx: (16, cin, cout), the kernels turned) from w (cout, cin, 3, 3); and
 * y (n, cout, H, W) = (add: +=) conv(x (n, cin, H, W)) + b (b may be NULL) in chunks of c
 * samples per thread, with room floats of scratch. */
int tr_cpu_wino_chunk(int cin, int cout, int H, int W, int n, int64_t room);
void tr_cpu_wino_weights(float *u, const float *w, int cout, int cin, int for_dx);
void tr_cpu_wino_conv(float *y, const float *x, const float *u, const float *b, int n, int cin, int cout, int H,
                      int W, int add, float *scratch, int64_t room, int c);
/* trainer/backend/cpu/cpu_norm.c */
void tr_cpu_batchnorm_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_batchnorm_backward(tr_graph *g, tr_node *nd, int n);
/* trainer/backend/cpu/cpu_pool.c */
void tr_cpu_maxpool_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_maxpool_backward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_avgpool_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_avgpool_backward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_adaptive_avgpool_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_adaptive_avgpool_backward(tr_graph *g, tr_node *nd, int n);
/* trainer/backend/cpu/cpu_basic.c */
void tr_cpu_act_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_act_backward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_linear_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_linear_backward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_add_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_add_backward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_xent(tr_backend *be, const float *logits, const int *labels, int n, int classes,
                 float *dlogits, double *loss_sum, int64_t *correct);
void tr_cpu_sgd(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr,
                float momentum, float wd);
void tr_cpu_grad_moments(tr_backend *be, const float *g, int64_t count, double *sum, double *sumsq);
void tr_cpu_sgd_moments(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr,
                        float momentum, float wd, double *sum, double *sumsq);

/* trainer/backend/cpu/cpu_gemm.c: row-major C = alpha op(A) op(B) + beta C, threaded by
 * splitting C across the OpenMP team (OpenBLAS itself is set to one thread by the backend).
 * Use this instead of cblas_sgemm in CPU ops; inside a parallel region it is one
 * single-threaded call on the calling thread. */
void tr_cpu_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                  int ldb, float beta, float *C, int ldc);

/* Whether this backward sets input k's gradient (tr_node.grad_set) instead of adding to it. */
static inline int tr_cpu_sets(const tr_node *nd, int k) { return (int)((nd->grad_set >> k) & 1u); }

static inline float *tr_cpu_param(tr_graph *g, const tr_node *nd, int j)
{
    return g->params + g->pspecs[nd->param[j]].off;
}

static inline float *tr_cpu_pgrad(tr_graph *g, const tr_node *nd, int j)
{
    return g->grads + g->pspecs[nd->param[j]].off;
}

/* Compiled for AVX2 (and AVX-512) as well and picked at load (GCC's function multiversioning);
 * clang builds (fuzzing) use the baseline, which clang 14 does not resolve for C objects here. An
 * OpenMP region's outlined body is not cloned: a region calls a function marked so. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DEBA_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#define DEBA_AVX512_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DEBA_AVX2_CLONES
#define DEBA_AVX512_CLONES
#endif

/* e^v for v <= 0, vectorisable: glibc's expf is a scalar call here (no libmvec without
 * -ffast-math). Cephes' expf polynomial on v = n ln2 + r, |r| <= ln2/2, 2^n built in the exponent
 * bits; within 2 ulp of e^v (tests/test_cpu_fastmath.c). v below -87 (-inf included) gives
 * e^-87 ~ 1.6e-38 instead of less; NaN stays NaN. Clamp and NaN are integer operations on the
 * bits, which vectorise where a float compare-and-select does not (-ftrapping-math). */
static inline float tr_cpu_exp_nonpos(float v)
{
    union { float f; int i; } a = {.f = v};
    const int bits = a.i & 0x7fffffff;
    a.i = (bits < 0x42ae0000 ? bits : 0x42ae0000) | (int)0x80000000;   /* -min(|v|, 87) */
    const float u = a.f, t = u * 1.44269504088896341f;
    const int n = (int)(t - 0.5f);   /* t <= 0: rounds to nearest */
    const float r = (u - (float)n * 0.693359375f) + (float)n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    union { int i; float f; } s = {.i = (n + 127) << 23}, e = {.f = (p * r * r + r + 1.f) * s.f};
    e.i |= -(bits > 0x7f800000) & 0x7fc00000;   /* NaN in, NaN out */
    return e.f;
}

/* trainer/backend/cpu/attention.c: softmax of one row of t floats in place (max-subtracted, the
 * exponentials above, then scaled by 1/sum), and its backward dp = p (dp - <dp, p>). */
void tr_cpu_softmax_row(float *p, int t);
void tr_cpu_softmax_row_backward(float *dp, const float *p, int t);

/* Output positions o in [*lo, *hi) whose input index o*stride + off lies in [0, in). */
static inline void tr_cpu_valid_range(int off, int stride, int in, int out, int *lo, int *hi)
{
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = in - off <= 0 ? 0 : (in - off + stride - 1) / stride;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

#endif
