/* Creating the CUDA backend: device memory (cudaMalloc, never managed memory), the cuDNN and
 * cuBLAS handles, the per-node descriptor cache, and the step-level kernels the graph calls
 * directly: softmax cross-entropy, fused SGD and the SPEC §2 gradient moments (deterministic
 * two-pass reductions; the host sees only loss, correct count and the two moments). */
#include "trainer/backend/cuda/cuda_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "trainer/backend/cuda/cuda_module.h"
#include "trainer/layers/elementwise.h"
}

/* Partial sums of the reductions: 8 MiB covers the moments' 2 x 1024 partials, the loss rows of
 * a batch of up to 500k samples and the column chunks of any layer's bias reduction. */
#define CU_RED_BYTES ((size_t)8 << 20)
#define CU_MOMENT_BLOCKS 1024      /* fixed: the same partition (and result) on every GPU */
#define CU_MOMENT_THREADS 256
#define CU_FINAL_THREADS 1024
/* cuBLAS's workspace, NVIDIA's recommendation for Hopper (4 MiB before): allocated with the
 * handle, because cuBLAS otherwise allocates its default pool lazily at the first GEMM, where a
 * plan that filled the device makes it fail and abort instead of reporting out of memory. */
#define CU_BLAS_WS_BYTES ((size_t)32 << 20)

void tr_cuda_fatal(const char *lib, const char *file, int line, const char *call, const char *msg)
{
    fprintf(stderr, "deba: %s error at %s:%d: %s\n  in %s\n", lib, file, line, msg, call);
    fflush(stderr);
    abort();
}

/* ---- memory ---- */

static void *cu_alloc(tr_backend *be, size_t bytes)
{
    (void)be;
    void *p = NULL;
    cudaError_t st = cudaMalloc(&p, bytes ? (bytes + 255) / 256 * 256 : 256);
    if (st == cudaErrorMemoryAllocation) {
        cudaGetLastError();   /* clear it: the trainer treats NULL as out of memory and goes on */
        return NULL;
    }
    CU_CHECK(st);
    return p;
}

static void cu_free(tr_backend *be, void *p)
{
    (void)be;
    if (p) CU_CHECK(cudaFree(p));
}

static void cu_upload(tr_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes) CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

static void cu_download(tr_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes) CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

static void cu_zero(tr_backend *be, void *dst, size_t bytes)
{
    (void)be;
    if (bytes) CU_CHECK(cudaMemsetAsync(dst, 0, bytes, 0));
}

static void cu_sync(tr_backend *be)
{
    (void)be;
    CU_CHECK(cudaDeviceSynchronize());
}

int tr_cuda_ws_reserve(cu_ctx *c, size_t bytes)
{
    if (bytes <= c->ws_bytes) return 0;
    size_t want = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    void *p = NULL;
    cudaError_t st = cudaMalloc(&p, want);
    if (st == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return -1;
    }
    CU_CHECK(st);
    if (c->ws) CU_CHECK(cudaFree(c->ws));   /* cudaFree waits for the kernels still using it */
    c->ws = p;
    c->ws_bytes = want;
    return 0;
}

/* ---- the per-node cache ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t node_sig(const tr_graph *g, const tr_node *nd)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, &nd->op, sizeof nd->op);
    h = fnv(h, &nd->attr, sizeof nd->attr);   /* nodes are memset at creation: no stray bytes */
    h = fnv(h, &nd->n_in, sizeof nd->n_in);
    for (int i = 0; i <= nd->n_in; i++) {
        const tr_tensor *t = &g->tensors[i < nd->n_in ? nd->in[i] : nd->out];
        int s[3] = {t->c, t->h, t->w};
        h = fnv(h, s, sizeof s);
    }
    return h;
}

static void state_clear(cu_state *s)
{
    if (s->xd) DNN_CHECK(cudnnDestroyTensorDescriptor(s->xd));
    if (s->yd) DNN_CHECK(cudnnDestroyTensorDescriptor(s->yd));
    if (s->pdesc) DNN_CHECK(cudnnDestroyTensorDescriptor(s->pdesc));
    if (s->wd) DNN_CHECK(cudnnDestroyFilterDescriptor(s->wd));
    if (s->cd) DNN_CHECK(cudnnDestroyConvolutionDescriptor(s->cd));
    if (s->pool) DNN_CHECK(cudnnDestroyPoolingDescriptor(s->pool));
    memset(s, 0, sizeof *s);
}

static size_t slot_of(const tr_node *nd, int n, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)nd * 0x9e3779b97f4a7c15ULL ^ (uint64_t)n * 0xd1b54a32d192ed03ULL;
    return (size_t)(h >> 17) & (cap - 1);
}

static void states_grow(cu_ctx *c)
{
    size_t cap = c->cap_states ? c->cap_states * 2 : 256;
    cu_state *ns = (cu_state *)calloc(cap, sizeof *ns);
    if (!ns) tr_cuda_fatal("host", __FILE__, __LINE__, "calloc", "out of memory growing the cuDNN descriptor cache");
    for (size_t i = 0; i < c->cap_states; i++) {
        cu_state *s = &c->states[i];
        if (!s->nd) continue;
        size_t j = slot_of(s->nd, s->n, cap);
        while (ns[j].nd) j = (j + 1) & (cap - 1);
        ns[j] = *s;
    }
    free(c->states);
    c->states = ns;
    c->cap_states = cap;
}

cu_state *tr_cuda_state(cu_ctx *c, const tr_graph *g, const tr_node *nd, int n, int *fresh)
{
    uint64_t sig = node_sig(g, nd);
    if ((c->n_states + 1) * 10 > c->cap_states * 7) states_grow(c);
    size_t j = slot_of(nd, n, c->cap_states);
    while (c->states[j].nd && !(c->states[j].nd == nd && c->states[j].n == n)) j = (j + 1) & (c->cap_states - 1);
    cu_state *s = &c->states[j];
    if (s->nd && s->sig == sig) {
        *fresh = 0;
        return s;
    }
    if (s->nd) state_clear(s);   /* a freed graph's node at the same address: rebuild */
    else c->n_states++;
    s->nd = nd;
    s->n = n;
    s->sig = sig;
    *fresh = 1;
    return s;
}

/* ---- GEMM helpers (row-major through column-major cuBLAS) ---- */

void tr_cuda_gemm(cu_ctx *c, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    BLAS_CHECK(cublasSgemm(c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                           &alpha, B, ldb, A, lda, &beta, C, ldc));
}

void tr_cuda_gemm_batched(cu_ctx *c, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                          int lda, long long sa, const float *B, int ldb, long long sb, float beta, float *C,
                          int ldc, long long sc, int batch)
{
    if (M <= 0 || N <= 0 || batch <= 0) return;
    BLAS_CHECK(cublasSgemmStridedBatched(c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                         N, M, K, &alpha, B, ldb, sb, A, lda, sa, &beta, C, ldc, sc, batch));
}

/* ---- column sums ---- */

__global__ void k_colsum_partial(float *part, const float *a, int64_t rows, int cols, int64_t ld,
                                 int64_t rows_per_chunk)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk, r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    float acc = 0.f;
    for (int64_t r = r0; r < r1; r++) acc += a[r * ld + j];
    part[(int64_t)blockIdx.y * cols + j] = acc;
}

__global__ void k_colsum_finish(float *out, const float *part, int chunks, int cols)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float acc = 0.f;
    for (int k = 0; k < chunks; k++) acc += part[(int64_t)k * cols + j];
    out[j] += acc;
}

int tr_cuda_colsum_chunks(const cu_ctx *c, int64_t rows, int cols)
{
    int64_t chunks = (rows + 63) / 64;                    /* at least 64 rows a chunk */
    int64_t cap = (int64_t)(c->red_bytes / sizeof(float)) / (cols > 0 ? cols : 1);
    if (chunks > cap) chunks = cap;
    if (chunks > 4096) chunks = 4096;
    return chunks < 1 ? 1 : (int)chunks;
}

void tr_cuda_colsum_add(cu_ctx *c, float *out, const float *a, int64_t rows, int cols, int64_t ld)
{
    if (rows <= 0 || cols <= 0) return;
    if ((size_t)cols * sizeof(float) > c->red_bytes)
        tr_cuda_fatal("deba", __FILE__, __LINE__, "tr_cuda_colsum_add", "too many columns for the reduction buffer");
    int chunks = tr_cuda_colsum_chunks(c, rows, cols);
    int64_t rpc = (rows + chunks - 1) / chunks;
    chunks = (int)((rows + rpc - 1) / rpc);
    float *part = (float *)c->red;
    dim3 grid((unsigned)((cols + 127) / 128), (unsigned)chunks);
    k_colsum_partial<<<grid, 128>>>(part, a, rows, cols, ld, rpc);
    CU_LAUNCHED();
    k_colsum_finish<<<(cols + 127) / 128, 128>>>(out, part, chunks, cols);
    CU_LAUNCHED();
}

__global__ void k_add_bias_rows(float *y, const float *bias, int64_t rows, int cols)
{
    int64_t total = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += bias[i % cols];
}

void tr_cuda_add_bias_rows(float *y, const float *bias, int64_t rows, int cols)
{
    if (rows <= 0 || cols <= 0) return;
    k_add_bias_rows<<<cu_blocks(rows * cols, 256), 256>>>(y, bias, rows, cols);
    CU_LAUNCHED();
}

/* ---- softmax cross-entropy: one thread per row (classes are few), then a fixed-order sum ---- */

/* Same arithmetic as the CPU: double exp over the row maximum, the first maximum is the
 * prediction, dz = (softmax − onehot) / n in double then rounded. */
__global__ void k_xent_rows(const float *logits, const int *labels, int n, int classes, float *dlogits,
                            double *row_loss, double *row_hit)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n) return;
    const float *z = logits + (int64_t)r * classes;
    float *dz = dlogits + (int64_t)r * classes;
    int best = 0;
    for (int j = 1; j < classes; j++)
        if (z[j] > z[best]) best = j;
    double mx = z[best], se = 0;
    for (int j = 0; j < classes; j++) se += exp((double)z[j] - mx);
    double lse = mx + log(se);
    int y = labels[r];
    row_loss[r] = lse - z[y];
    row_hit[r] = best == y ? 1.0 : 0.0;
    for (int j = 0; j < classes; j++) dz[j] = (float)((exp((double)z[j] - lse) - (j == y ? 1.0 : 0.0)) / n);
}

/* One block: thread t sums a[t], a[t + T], ... in order, then a fixed tree. out[k] for each of
 * the `arrays` arrays of length len laid one after another. */
__global__ void k_sum_fixed(const double *a, int64_t len, int arrays, double *out)
{
    __shared__ double sh[CU_FINAL_THREADS];
    for (int k = 0; k < arrays; k++) {
        double acc = 0;
        for (int64_t i = threadIdx.x; i < len; i += blockDim.x) acc += a[(int64_t)k * len + i];
        sh[threadIdx.x] = acc;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) out[k] = sh[0];
        __syncthreads();
    }
}

static void cu_xent(tr_backend *be, const float *logits, const int *labels, int n, int classes, float *dlogits,
                    double *loss_sum, int64_t *correct)
{
    cu_ctx *c = (cu_ctx *)be->ctx;
    if (n <= 0) {
        *loss_sum = 0;
        *correct = 0;
        return;
    }
    if ((size_t)n * 2 * sizeof(double) + 2 * sizeof(double) > c->red_bytes)
        tr_cuda_fatal("deba", __FILE__, __LINE__, "cu_xent", "batch too large for the loss reduction buffer");
    double *rows = c->red, *res = c->red + 2 * (size_t)n;
    k_xent_rows<<<(n + 127) / 128, 128>>>(logits, labels, n, classes, dlogits, rows, rows + n);
    CU_LAUNCHED();
    k_sum_fixed<<<1, CU_FINAL_THREADS>>>(rows, n, 2, res);
    CU_LAUNCHED();
    CU_CHECK(cudaMemcpy(c->host_res, res, 2 * sizeof(double), cudaMemcpyDeviceToHost));
    *loss_sum = c->host_res[0];
    *correct = (int64_t)(c->host_res[1] + 0.5);
}

/* ---- SGD: one fused pass over the flat buffers ---- */

__global__ void k_sgd(float *p, const float *g, float *m, int64_t count, float lr, float momentum, float wd)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        tr_sgd_update(&p[i], g[i], &m[i], lr, momentum, wd);
}

static void cu_sgd(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr, float momentum,
                   float wd)
{
    (void)be;
    if (count <= 0) return;
    k_sgd<<<cu_blocks(count, 256), 256>>>(p, g, m, count, lr, momentum, wd);
    CU_LAUNCHED();
}

/* ---- Σg, Σg² in double: fixed 1024 blocks of contiguous ranges, then one block in order ---- */

__global__ void k_moments_partial(const float *g, int64_t count, double *part)
{
    __shared__ double s1[CU_MOMENT_THREADS], s2[CU_MOMENT_THREADS];
    int64_t per = (count + gridDim.x - 1) / gridDim.x;
    int64_t lo = (int64_t)blockIdx.x * per, hi = lo + per < count ? lo + per : count;
    double a = 0, b = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        double v = g[i];
        a += v;
        b += v * v;
    }
    s1[threadIdx.x] = a;
    s2[threadIdx.x] = b;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            s1[threadIdx.x] += s1[threadIdx.x + s];
            s2[threadIdx.x] += s2[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        part[blockIdx.x] = s1[0];
        part[gridDim.x + blockIdx.x] = s2[0];
    }
}

static void cu_grad_moments(tr_backend *be, const float *g, int64_t count, double *sum, double *sumsq)
{
    cu_ctx *c = (cu_ctx *)be->ctx;
    double *part = c->red, *res = c->red + 2 * CU_MOMENT_BLOCKS;
    k_moments_partial<<<CU_MOMENT_BLOCKS, CU_MOMENT_THREADS>>>(g, count, part);
    CU_LAUNCHED();
    k_sum_fixed<<<1, CU_FINAL_THREADS>>>(part, CU_MOMENT_BLOCKS, 2, res);
    CU_LAUNCHED();
    CU_CHECK(cudaMemcpy(c->host_res, res, 2 * sizeof(double), cudaMemcpyDeviceToHost));
    *sum = c->host_res[0];
    *sumsq = c->host_res[1];
}

/* ---- creation ---- */

static void cu_destroy(tr_backend *be)
{
    if (!be) return;
    if (be->timing_stop) be->timing_stop(be);   /* CUPTI off before the context goes */
    cu_ctx *c = (cu_ctx *)be->ctx;
    if (c) {
        /* report, never abort, while tearing down */
        cudaDeviceSynchronize();
        for (size_t i = 0; i < c->cap_states; i++)
            if (c->states[i].nd) state_clear(&c->states[i]);
        free(c->states);
        if (c->ws) cudaFree(c->ws);
        if (c->red) cudaFree(c->red);
        if (c->host_res) cudaFreeHost(c->host_res);
        free(c->host_mask);
        if (c->blas) cublasDestroy(c->blas);
        if (c->blas_ws) cudaFree(c->blas_ws);
        if (c->dnn) cudnnDestroy(c->dnn);
        free(c);
    }
    free(be);
}

#define CU_TRY(call, lib, str)                                                                     \
    do {                                                                                           \
        int st_ = (int)(call);                                                                     \
        if (st_ != 0) {                                                                            \
            deba_err_set(e, DEBA_E_RUNTIME, "%s error at %s:%d: %s (in %s)", lib, __FILE__, __LINE__, \
                         str, #call);                                                              \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

extern "C" tr_backend *tr_cuda_backend_new(int device, deba_err *e)
{
    int count = 0;
    cudaError_t st = cudaGetDeviceCount(&count);
    if (st != cudaSuccess) {
        cudaGetLastError();
        deba_err_set(e, DEBA_E_RUNTIME, "no usable GPU: the CUDA runtime says \"%s\": use --device cpu, or auto to fall back",
                     cudaGetErrorString(st));
        return NULL;
    }
    if (count <= 0) {
        deba_err_set(e, DEBA_E_RUNTIME, "no usable GPU: the CUDA runtime finds no device: use --device cpu, or auto to fall back");
        return NULL;
    }
    if (device < 0 || device >= count) {
        deba_err_set(e, DEBA_E_RUNTIME, "no usable GPU: CUDA device %d requested, %d present", device, count);
        return NULL;
    }
    tr_backend *be = (tr_backend *)calloc(1, sizeof *be);
    cu_ctx *c = (cu_ctx *)calloc(1, sizeof *c);
    cudaDeviceProp prop;
    if (!be || !c) {
        free(be);
        free(c);
        deba_err_set(e, DEBA_E_NOMEM, "out of memory creating the CUDA backend");
        return NULL;
    }
    be->ctx = c;
    c->device = device;
    st = cudaSetDevice(device);
    CU_TRY(st, "CUDA", cudaGetErrorString(st));
    st = cudaFree(0);   /* creates the context now, so a broken driver is reported here */
    CU_TRY(st, "CUDA", cudaGetErrorString(st));
    st = cudaGetDeviceProperties(&prop, device);
    CU_TRY(st, "CUDA", cudaGetErrorString(st));
    {
        cudnnStatus_t ds = cudnnCreate(&c->dnn);
        CU_TRY(ds, "cuDNN", cudnnGetErrorString(ds));
        cublasStatus_t bs = cublasCreate(&c->blas);
        CU_TRY(bs, "cuBLAS", cublasGetStatusString(bs));
        /* true FP32: no TF32 tensor-op math, so results match the CPU backend */
        bs = cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
        CU_TRY(bs, "cuBLAS", cublasGetStatusString(bs));
        st = cudaMalloc(&c->blas_ws, CU_BLAS_WS_BYTES);
        CU_TRY(st, "CUDA", cudaGetErrorString(st));
        bs = cublasSetWorkspace(c->blas, c->blas_ws, CU_BLAS_WS_BYTES);
        CU_TRY(bs, "cuBLAS", cublasGetStatusString(bs));
    }
    c->red_bytes = CU_RED_BYTES;
    st = cudaMalloc((void **)&c->red, c->red_bytes);
    CU_TRY(st, "CUDA", cudaGetErrorString(st));
    st = cudaMallocHost((void **)&c->host_res, 16 * sizeof(double));
    CU_TRY(st, "CUDA", cudaGetErrorString(st));

    be->name = "cuda";
    snprintf(be->device_name, sizeof be->device_name, "%.64s, %d SMs, %.0f GiB, cuDNN %zu", prop.name,
             prop.multiProcessorCount, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
             cudnnGetVersion());
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->upload = cu_upload;
    be->download = cu_download;
    be->zero = cu_zero;
    be->sync = cu_sync;
    be->xent = cu_xent;
    be->sgd = cu_sgd;
    be->grad_moments = cu_grad_moments;
    be->destroy = cu_destroy;
    tr_cuda_register_dnn(be);
    tr_cuda_register_ops(be);
    tr_cuda_register_gemm(be);
    tr_cuda_register_nd_layout(be);
    tr_cuda_register_nd_elem(be);
    tr_cuda_register_timing(be);
    return be;
fail:
    cudaGetLastError();
    cu_destroy(be);
    return NULL;
}
