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
 * chunks of that many samples, chunk < 0 = as the two above choose by the layer's shape. */
void tr_cpu_conv2d_forward_as(tr_graph *g, tr_node *nd, int n, int chunk);
void tr_cpu_conv2d_backward_as(tr_graph *g, tr_node *nd, int n, int chunk);
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

static inline float *tr_cpu_param(tr_graph *g, const tr_node *nd, int j)
{
    return g->params + g->pspecs[nd->param[j]].off;
}

static inline float *tr_cpu_pgrad(tr_graph *g, const tr_node *nd, int j)
{
    return g->grads + g->pspecs[nd->param[j]].off;
}

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
