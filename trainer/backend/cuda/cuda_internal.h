/* Private to the CUDA backend (.cu files only): the backend context (cuDNN/cuBLAS handles,
 * workspaces, per-node descriptor cache), the error-checking macros and the helpers the op
 * families share. Everything runs on the legacy default stream, so host copies order
 * themselves after the kernels without extra synchronisation. */
#ifndef TR_CUDA_INTERNAL_H
#define TR_CUDA_INTERNAL_H

#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "deba/error.h"
#include "trainer/graph.h"
}

/* ---- error checks: print file, line, the call and the library's own message ---- */

/* A failure inside forward/backward leaves the CUDA context unusable (sticky errors) and the
 * op table has no status to return, so it prints and aborts; creation-time failures are
 * returned as deba_err instead (CU_TRY in cuda_backend.cu). */
[[noreturn]] void tr_cuda_fatal(const char *lib, const char *file, int line, const char *call,
                                const char *msg);

#define CU_CHECK(call)                                                                   \
    do {                                                                                 \
        cudaError_t st_ = (call);                                                        \
        if (st_ != cudaSuccess)                                                          \
            tr_cuda_fatal("CUDA", __FILE__, __LINE__, #call, cudaGetErrorString(st_));   \
    } while (0)
#define DNN_CHECK(call)                                                                  \
    do {                                                                                 \
        cudnnStatus_t st_ = (call);                                                      \
        if (st_ != CUDNN_STATUS_SUCCESS)                                                 \
            tr_cuda_fatal("cuDNN", __FILE__, __LINE__, #call, cudnnGetErrorString(st_)); \
    } while (0)
#define BLAS_CHECK(call)                                                                  \
    do {                                                                                  \
        cublasStatus_t st_ = (call);                                                      \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                 \
            tr_cuda_fatal("cuBLAS", __FILE__, __LINE__, #call, cublasGetStatusString(st_)); \
    } while (0)
/* after every kernel launch: a bad configuration shows up here, not at the next sync */
#define CU_LAUNCHED() CU_CHECK(cudaGetLastError())

/* ---- per-node descriptors, cached by (node, batch size) ---- */

typedef struct {
    const tr_node *nd;           /* key, with n; NULL: empty slot */
    int n;
    uint64_t sig;                /* shapes and attributes: a reused node address with other
                                    shapes (a freed graph) is recognised and rebuilt */
    cudnnTensorDescriptor_t xd, yd, pdesc;     /* input, output, per-channel (bias / BN) */
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnPoolingDescriptor_t pool;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_fwd, ws_bwd_data, ws_bwd_filter;  /* bytes each chosen algorithm needs */
} cu_state;

typedef struct {
    int device;
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    void *blas_ws;               /* cuBLAS's workspace, set at creation (see tr_cuda_backend_new) */
    void *ws;                    /* cuDNN workspace shared by all nodes, grown at set-up */
    size_t ws_bytes;
    double *red;                 /* partial sums of the deterministic reductions */
    size_t red_bytes;
    double *host_res;            /* pinned: the few numbers a step returns to the host */
    float *host_mask;            /* dropout masks drawn on the host, then uploaded */
    size_t host_mask_n;
    cu_state *states;            /* open addressing on (node, n) */
    size_t n_states, cap_states;
} cu_ctx;

static inline cu_ctx *cu_ctx_of(const tr_graph *g) { return (cu_ctx *)g->be->ctx; }

/* The cached state of (nd, n); *fresh = 1 when it was just created (descriptors all NULL, to
 * be filled by the caller). Never fails (aborts on host OOM). */
cu_state *tr_cuda_state(cu_ctx *c, const tr_graph *g, const tr_node *nd, int n, int *fresh);
/* Grows the shared cuDNN workspace to at least bytes; returns 0, or -1 when the device is out
 * of memory (the workspace keeps its old size). Synchronises the device when it grows. */
int tr_cuda_ws_reserve(cu_ctx *c, size_t bytes);

/* ---- shared helpers ---- */

static inline unsigned cu_blocks(int64_t total, int threads)
{
    int64_t b = (total + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65535 * 16) b = 65535 * 16;  /* grid-stride loops cover the rest */
    return (unsigned)b;
}

static inline float *cu_param(const tr_graph *g, const tr_node *nd, int j)
{
    return g->params + g->pspecs[nd->param[j]].off;
}

static inline float *cu_pgrad(const tr_graph *g, const tr_node *nd, int j)
{
    return g->grads + g->pspecs[nd->param[j]].off;
}

/* Row-major C (M, N) = alpha op(A) op(B) + beta C through column-major cuBLAS (C^T = op(B)^T
 * op(A)^T), FP32 without TF32. */
void tr_cuda_gemm(cu_ctx *c, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);
void tr_cuda_gemm_batched(cu_ctx *c, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                          int lda, long long sa, const float *B, int ldb, long long sb, float beta, float *C,
                          int ldc, long long sc, int batch);
/* out[j] += Σ_r a[r*ld + j] over rows r, j < cols: fixed chunks of rows, then the chunks in
 * order, so the result does not depend on the launch. */
void tr_cuda_colsum_add(cu_ctx *c, float *out, const float *a, int64_t rows, int cols, int64_t ld);
/* y (rows, cols) += bias broadcast over rows */
void tr_cuda_add_bias_rows(float *y, const float *bias, int64_t rows, int cols);
/* Softmax over each row of p (rows, t) in place, and its backward dS = P (dP − Σ dP·P) in
 * place in dp (cuda_ops.cu). */
void tr_cuda_softmax_rows(float *p, int64_t rows, int t);
void tr_cuda_softmax_backward_rows(float *dp, const float *p, int64_t rows, int t);
/* Largest number of row chunks a column reduction of `cols` columns may use. */
int tr_cuda_colsum_chunks(const cu_ctx *c, int64_t rows, int cols);

/* Registration of the op families into the table. */
void tr_cuda_register_dnn(tr_backend *be);     /* conv2d, batchnorm, maxpool, avgpool */
void tr_cuda_register_ops(tr_backend *be);     /* act, add, adaptive pool, extra ops */
void tr_cuda_register_gemm(tr_backend *be);    /* linear, attention */
void tr_cuda_register_nd_layout(tr_backend *be);   /* matmul, transpose, slice, concat_axis, pad */
void tr_cuda_register_nd_elem(tr_backend *be); /* binary, unary, expand, reduce, softmax (cuda_nd_elem.cu) */

#endif
