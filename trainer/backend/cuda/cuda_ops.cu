/* The CUDA backend's own kernels: activations (the arithmetic of layers/elementwise.h, so the
 * CPU tests exercise it), residual add, adaptive average pooling, channel concat, the SE channel
 * scale, dropout and drop-path (masks drawn on the host from g->rng exactly as the CPU draws
 * them, then uploaded), layernorm, patch tokens and token selection. Backward adds into
 * gradients; every reduction has a fixed partition and order, so results repeat run to run. */
#include "trainer/backend/cuda/cuda_internal.h"

#include <stdlib.h>

extern "C" {
#include "trainer/layers/elementwise.h"
#include "trainer/rng.h"
}

/* one warp per row, warps striding over the rows: a warp always runs whole, so the shuffles
 * see all 32 lanes */
#define WARP_ROWS(r, rows)                                                   \
    const int lane = threadIdx.x % 32;                                      \
    for (int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32; r < (rows); \
         r += (int64_t)gridDim.x * (blockDim.x / 32))

#define GRID_STRIDE(i, total) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (total); i += (int64_t)gridDim.x * blockDim.x)

static inline tr_tensor *in_t(tr_graph *g, const tr_node *nd, int k) { return &g->tensors[nd->in[k]]; }
static inline tr_tensor *out_t(tr_graph *g, const tr_node *nd) { return &g->tensors[nd->out]; }

/* ---- activations: one instantiation per kind, so the switch folds away ---- */

template <tr_act K>
__global__ void k_act_forward(float *y, const float *x, int64_t total)
{
    GRID_STRIDE(i, total) y[i] = tr_act_forward(K, x[i]);
}

template <tr_act K>
__global__ void k_act_backward(float *dx, const float *x, const float *dy, int64_t total)
{
    GRID_STRIDE(i, total) dx[i] += tr_act_backward(K, x[i], dy[i]);
}

#define ACT_DISPATCH(kind, KERNEL, ...)                                                         \
    switch (kind) {                                                                             \
    case TR_ACT_RELU: KERNEL<TR_ACT_RELU><<<cu_blocks(total, 256), 256>>>(__VA_ARGS__); break;     \
    case TR_ACT_RELU6: KERNEL<TR_ACT_RELU6><<<cu_blocks(total, 256), 256>>>(__VA_ARGS__); break;   \
    case TR_ACT_SIGMOID: KERNEL<TR_ACT_SIGMOID><<<cu_blocks(total, 256), 256>>>(__VA_ARGS__); break; \
    case TR_ACT_SILU: KERNEL<TR_ACT_SILU><<<cu_blocks(total, 256), 256>>>(__VA_ARGS__); break;     \
    case TR_ACT_HSIGMOID: KERNEL<TR_ACT_HSIGMOID><<<cu_blocks(total, 256), 256>>>(__VA_ARGS__); break; \
    case TR_ACT_HSWISH: KERNEL<TR_ACT_HSWISH><<<cu_blocks(total, 256), 256>>>(__VA_ARGS__); break; \
    case TR_ACT_GELU: KERNEL<TR_ACT_GELU><<<cu_blocks(total, 256), 256>>>(__VA_ARGS__); break;     \
    default: tr_cuda_fatal("deba", __FILE__, __LINE__, #KERNEL, "unknown activation kind");      \
    }

static void act_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    const int64_t total = n * tr_tensor_numel(x);
    if (total <= 0) return;
    ACT_DISPATCH(nd->attr.act, k_act_forward, out_t(g, nd)->data, x->data, total);
    CU_LAUNCHED();
}

static void act_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    if (!x->grad) return;
    const int64_t total = n * tr_tensor_numel(x);
    if (total <= 0) return;
    ACT_DISPATCH(nd->attr.act, k_act_backward, x->grad, x->data, out_t(g, nd)->grad, total);
    CU_LAUNCHED();
}

/* ---- residual add ---- */

__global__ void k_add(float *y, const float *a, const float *b, int64_t total)
{
    GRID_STRIDE(i, total) y[i] = a[i] + b[i];
}

__global__ void k_accum(float *dx, const float *dy, int64_t total)
{
    GRID_STRIDE(i, total) dx[i] += dy[i];
}

static void add_forward(tr_graph *g, tr_node *nd, int n)
{
    const int64_t total = n * tr_tensor_numel(in_t(g, nd, 0));
    k_add<<<cu_blocks(total, 256), 256>>>(out_t(g, nd)->data, in_t(g, nd, 0)->data, in_t(g, nd, 1)->data, total);
    CU_LAUNCHED();
}

static void add_backward(tr_graph *g, tr_node *nd, int n)
{
    const float *dy = out_t(g, nd)->grad;
    const int64_t total = n * tr_tensor_numel(out_t(g, nd));
    for (int j = 0; j < 2; j++) {
        float *d = in_t(g, nd, j)->grad;
        if (!d) continue;
        k_accum<<<cu_blocks(total, 256), 256>>>(d, dy, total);
        CU_LAUNCHED();
    }
}

/* ---- adaptive average pooling, PyTorch's bins [floor(i*H/oh), ceil((i+1)*H/oh)) ---- */

__device__ static inline int bin_start(int i, int in, int out) { return (int)((int64_t)i * in / out); }
__device__ static inline int bin_end(int i, int in, int out) { return (int)(((int64_t)(i + 1) * in + out - 1) / out); }

__global__ void k_adapool_forward(float *y, const float *x, int64_t planes, int H, int W, int OH, int OW)
{
    GRID_STRIDE(i, planes * OH * OW)
    {
        int64_t pl = i / ((int64_t)OH * OW);
        int o = (int)(i % ((int64_t)OH * OW)), oh = o / OW, ow = o % OW;
        int h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH), w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
        const float *xp = x + pl * H * W;
        float s = 0.f;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) s += xp[ih * W + iw];
        y[i] = s / (float)((h1 - h0) * (w1 - w0));
    }
}

/* One thread per input element gathers from every bin holding it (bins may overlap), in the
 * CPU's order, so no two threads write the same element. */
__global__ void k_adapool_backward(float *dx, const float *dy, int64_t planes, int H, int W, int OH, int OW)
{
    GRID_STRIDE(i, planes * H * W)
    {
        int64_t pl = i / ((int64_t)H * W);
        int e = (int)(i % ((int64_t)H * W)), ih = e / W, iw = e % W;
        const float *dyp = dy + pl * OH * OW;
        float acc = 0.f;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
            if (ih < h0 || ih >= h1) continue;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
                if (iw < w0 || iw >= w1) continue;
                acc += dyp[oh * OW + ow] / (float)((h1 - h0) * (w1 - w0));
            }
        }
        dx[i] += acc;
    }
}

static void adaptive_avgpool_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0), *y = out_t(g, nd);
    int64_t planes = (int64_t)n * x->c;
    k_adapool_forward<<<cu_blocks(planes * y->h * y->w, 256), 256>>>(y->data, x->data, planes, x->h, x->w, y->h, y->w);
    CU_LAUNCHED();
}

static void adaptive_avgpool_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0), *y = out_t(g, nd);
    if (!x->grad) return;
    int64_t planes = (int64_t)n * x->c;
    k_adapool_backward<<<cu_blocks(planes * x->h * x->w, 256), 256>>>(x->grad, y->grad, planes, x->h, x->w, y->h,
                                                                        y->w);
    CU_LAUNCHED();
}

/* ---- concat along channels: one copy per input into its slice of every sample ---- */

__global__ void k_concat_forward(float *y, const float *x, int64_t len, int64_t ystride, int64_t off, int64_t total)
{
    GRID_STRIDE(i, total) y[(i / len) * ystride + off + i % len] = x[i];
}

__global__ void k_concat_backward(float *dx, const float *dy, int64_t len, int64_t ystride, int64_t off,
                                  int64_t total)
{
    GRID_STRIDE(i, total) dx[i] += dy[(i / len) * ystride + off + i % len];
}

static void concat_forward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *y = out_t(g, nd);
    int64_t hw = (int64_t)y->h * y->w, ystride = (int64_t)y->c * hw, off = 0;
    for (int k = 0; k < nd->n_in; k++) {
        const tr_tensor *x = in_t(g, nd, k);
        int64_t len = (int64_t)x->c * hw, total = n * len;
        k_concat_forward<<<cu_blocks(total, 256), 256>>>(y->data, x->data, len, ystride, off, total);
        CU_LAUNCHED();
        off += len;
    }
}

static void concat_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *y = out_t(g, nd);
    int64_t hw = (int64_t)y->h * y->w, ystride = (int64_t)y->c * hw, off = 0;
    for (int k = 0; k < nd->n_in; k++) {
        const tr_tensor *x = in_t(g, nd, k);
        int64_t len = (int64_t)x->c * hw, total = n * len;
        if (x->grad) {
            k_concat_backward<<<cu_blocks(total, 256), 256>>>(x->grad, y->grad, len, ystride, off, total);
            CU_LAUNCHED();
        }
        off += len;
    }
}

/* ---- y = x * s per (sample, channel) ---- */

__global__ void k_mul_channel_forward(float *y, const float *x, const float *s, int64_t hw, int64_t total)
{
    GRID_STRIDE(i, total) y[i] = x[i] * s[i / hw];
}

/* One block per (sample, channel) row: dx += dy*s, and ds = Σ dy*x by a fixed tree. */
__global__ void k_mul_channel_backward(float *dx, float *ds, const float *dy, const float *x, const float *s,
                                       int64_t hw)
{
    __shared__ float sh[256];
    int64_t r = blockIdx.x;
    const float *dyr = dy + r * hw, *xr = x + r * hw;
    float sv = s[r], acc = 0.f;
    for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) {
        if (dx) dx[r * hw + i] += dyr[i] * sv;
        acc += dyr[i] * xr[i];
    }
    if (!ds) return;
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int st = blockDim.x / 2; st > 0; st >>= 1) {
        if ((int)threadIdx.x < st) sh[threadIdx.x] += sh[threadIdx.x + st];
        __syncthreads();
    }
    if (threadIdx.x == 0) ds[r] += sh[0];
}

static void mul_channel_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0), *sc = in_t(g, nd, 1);
    int64_t hw = (int64_t)x->h * x->w, total = (int64_t)n * x->c * hw;
    k_mul_channel_forward<<<cu_blocks(total, 256), 256>>>(out_t(g, nd)->data, x->data, sc->data, hw, total);
    CU_LAUNCHED();
}

static void mul_channel_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0), *sc = in_t(g, nd, 1);
    if (!x->grad && !sc->grad) return;
    int64_t rows = (int64_t)n * x->c, hw = (int64_t)x->h * x->w;
    k_mul_channel_backward<<<(unsigned)rows, 256>>>(x->grad, sc->grad, out_t(g, nd)->grad, x->data, sc->data, hw);
    CU_LAUNCHED();
}

/* ---- dropout and drop-path: host-drawn masks ---- */

__global__ void k_scale(float *y, const float *x, const float *mask, int64_t total)
{
    GRID_STRIDE(i, total) y[i] = x[i] * mask[i];
}

__global__ void k_scale_accum(float *dx, const float *dy, const float *mask, int64_t total)
{
    GRID_STRIDE(i, total) dx[i] += dy[i] * mask[i];
}

__global__ void k_scale_rows(float *y, const float *x, const float *keep, int64_t per, int64_t total)
{
    GRID_STRIDE(i, total) y[i] = x[i] * keep[i / per];
}

__global__ void k_scale_rows_accum(float *dx, const float *dy, const float *keep, int64_t per, int64_t total)
{
    GRID_STRIDE(i, total) dx[i] += dy[i] * keep[i / per];
}

/* The host staging buffer for masks, grown the first time a size is needed. */
static float *host_mask(cu_ctx *c, int64_t count)
{
    if ((size_t)count > c->host_mask_n) {
        float *p = (float *)realloc(c->host_mask, (size_t)count * sizeof(float));
        if (!p) tr_cuda_fatal("host", __FILE__, __LINE__, "realloc", "out of memory for a dropout mask");
        c->host_mask = p;
        c->host_mask_n = (size_t)count;
    }
    return c->host_mask;
}

static void copy_through(tr_tensor *y, const tr_tensor *x, int64_t count)
{
    if (y->data != x->data)
        CU_CHECK(cudaMemcpyAsync(y->data, x->data, (size_t)count * sizeof(float), cudaMemcpyDeviceToDevice, 0));
}

static void dropout_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    int64_t count = (int64_t)n * tr_tensor_numel(x);
    float p = nd->attr.drop.p;
    if (!g->training || p <= 0.f) {
        copy_through(y, x, count);
        return;
    }
    /* the CPU's draws, in its order, from the same stream: identical masks on both backends */
    float *mask = host_mask(cu_ctx_of(g), count);
    float scale = p < 1.f ? 1.f / (1.f - p) : 0.f;
    for (int64_t i = 0; i < count; i++) mask[i] = tr_rng_uniform(&g->rng) < (double)p ? 0.f : scale;
    CU_CHECK(cudaMemcpy(nd->saved, mask, (size_t)count * sizeof(float), cudaMemcpyHostToDevice));
    k_scale<<<cu_blocks(count, 256), 256>>>(y->data, x->data, nd->saved, count);
    CU_LAUNCHED();
}

static void dropout_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0), *y = out_t(g, nd);
    if (!x->grad) return;
    int64_t count = (int64_t)n * tr_tensor_numel(x);
    float p = nd->attr.drop.p;
    if (!g->training || p <= 0.f)
        k_accum<<<cu_blocks(count, 256), 256>>>(x->grad, y->grad, count);
    else
        k_scale_accum<<<cu_blocks(count, 256), 256>>>(x->grad, y->grad, nd->saved, count);
    CU_LAUNCHED();
}

static void drop_path_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    int64_t per = tr_tensor_numel(x), count = n * per;
    float p = nd->attr.drop.p;
    if (!g->training || p <= 0.f) {
        copy_through(y, x, count);
        return;
    }
    float *keep = host_mask(cu_ctx_of(g), n);
    float survival = 1.f - p;
    for (int s = 0; s < n; s++) {
        float b = tr_rng_uniform(&g->rng) < (double)survival ? 1.f : 0.f;
        keep[s] = survival > 0.f ? b / survival : b;
    }
    CU_CHECK(cudaMemcpy(nd->saved, keep, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    k_scale_rows<<<cu_blocks(count, 256), 256>>>(y->data, x->data, nd->saved, per, count);
    CU_LAUNCHED();
}

static void drop_path_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0), *y = out_t(g, nd);
    if (!x->grad) return;
    int64_t per = tr_tensor_numel(x), count = n * per;
    float p = nd->attr.drop.p;
    if (!g->training || p <= 0.f)
        k_accum<<<cu_blocks(count, 256), 256>>>(x->grad, y->grad, count);
    else
        k_scale_rows_accum<<<cu_blocks(count, 256), 256>>>(x->grad, y->grad, nd->saved, per, count);
    CU_LAUNCHED();
}

/* ---- layernorm over the last dim: one warp per row; statistics in double as the CPU ---- */

__device__ static inline double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static inline float warp_sum_f(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static inline float warp_max_f(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__global__ void k_ln_forward(float *y, float *stat, const float *x, const float *w, const float *b, int64_t rows,
                             int d, float eps)
{
    WARP_ROWS(r, rows)
    {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        double m = 0;
        for (int i = lane; i < d; i += 32) m += xr[i];
        m = warp_sum_d(m) / d;
        double v = 0;
        for (int i = lane; i < d; i += 32) v += ((double)xr[i] - m) * ((double)xr[i] - m);
        v = warp_sum_d(v) / d;   /* biased, as torch */
        float mean = (float)m, rstd = (float)(1.0 / sqrt(v + (double)eps));
        for (int i = lane; i < d; i += 32) yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
        if (lane == 0 && stat) {   /* NULL in the inference plan: no backward reads them */
            stat[2 * r] = mean;
            stat[2 * r + 1] = rstd;
        }
    }
}

__global__ void k_ln_backward_dx(float *dx, const float *dy, const float *x, const float *w, const float *stat,
                                 int64_t rows, int d)
{
    WARP_ROWS(r, rows)
    {
        const float *xr = x + r * d, *dyr = dy + r * d;
        float *dxr = dx + r * d;
        float mean = stat[2 * r], rstd = stat[2 * r + 1], s1 = 0.f, s2 = 0.f;
        for (int i = lane; i < d; i += 32) {
            float norm = (xr[i] - mean) * rstd, dn = w[i] * dyr[i];
            s1 += dn;
            s2 += dn * norm;
        }
        s1 = warp_sum_f(s1) / d;
        s2 = warp_sum_f(s2) / d;
        for (int i = lane; i < d; i += 32) {
            float norm = (xr[i] - mean) * rstd, dn = w[i] * dyr[i];
            dxr[i] += rstd * (dn - s1 - norm * s2);
        }
    }
}

/* dweight and dbias as column sums over fixed chunks of rows, then the chunks in order */
__global__ void k_ln_wgrad_partial(float *pw, float *pb, const float *dy, const float *x, const float *stat,
                                   int64_t rows, int d, int64_t rpc)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    int64_t r0 = (int64_t)blockIdx.y * rpc, r1 = r0 + rpc < rows ? r0 + rpc : rows;
    float aw = 0.f, ab = 0.f;
    for (int64_t r = r0; r < r1; r++) {
        float g = dy[r * d + j];
        aw += g * (x[r * d + j] - stat[2 * r]) * stat[2 * r + 1];
        ab += g;
    }
    pw[(int64_t)blockIdx.y * d + j] = aw;
    pb[(int64_t)blockIdx.y * d + j] = ab;
}

__global__ void k_ln_wgrad_finish(float *dw, float *db, const float *pw, const float *pb, int chunks, int d)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    float aw = 0.f, ab = 0.f;
    for (int k = 0; k < chunks; k++) {
        aw += pw[(int64_t)k * d + j];
        ab += pb[(int64_t)k * d + j];
    }
    dw[j] += aw;
    db[j] += ab;
}

static void layernorm_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    int64_t rows = (int64_t)n * x->c * x->h;
    k_ln_forward<<<cu_blocks(rows * 32, 256), 256>>>(out_t(g, nd)->data, nd->saved, x->data, cu_param(g, nd, 0),
                                                     cu_param(g, nd, 1), rows, x->w, nd->attr.ln.eps);
    CU_LAUNCHED();
}

static void layernorm_backward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    const tr_tensor *x = in_t(g, nd, 0), *y = out_t(g, nd);
    int64_t rows = (int64_t)n * x->c * x->h;
    int d = x->w;
    if (x->grad) {
        k_ln_backward_dx<<<cu_blocks(rows * 32, 256), 256>>>(x->grad, y->grad, x->data, cu_param(g, nd, 0), nd->saved,
                                                             rows, d);
        CU_LAUNCHED();
    }
    int chunks = tr_cuda_colsum_chunks(c, rows, 2 * d);
    int64_t rpc = (rows + chunks - 1) / chunks;
    chunks = (int)((rows + rpc - 1) / rpc);
    float *pw = (float *)c->red, *pb = pw + (int64_t)chunks * d;
    dim3 grid((unsigned)((d + 127) / 128), (unsigned)chunks);
    k_ln_wgrad_partial<<<grid, 128>>>(pw, pb, y->grad, x->data, nd->saved, rows, d, rpc);
    CU_LAUNCHED();
    k_ln_wgrad_finish<<<(d + 127) / 128, 128>>>(cu_pgrad(g, nd, 0), cu_pgrad(g, nd, 1), pw, pb, chunks, d);
    CU_LAUNCHED();
}

/* ---- (D, h, w) map -> (1 + h*w, 1, D) tokens: class token first, plus position embedding ---- */

__global__ void k_patch_forward(float *y, const float *x, const float *cls, const float *pos, int d, int p,
                                int64_t total)
{
    const int64_t td = (int64_t)(p + 1) * d;
    GRID_STRIDE(i, total)
    {
        int64_t s = i / td, e = i % td;
        int tok = (int)(e / d), j = (int)(e % d);
        y[i] = (tok == 0 ? cls[j] : x[s * d * p + (int64_t)j * p + (tok - 1)]) + pos[e];
    }
}

__global__ void k_patch_backward(float *dx, const float *dy, int d, int p, int64_t total)
{
    const int64_t dp = (int64_t)d * p, td = (int64_t)(p + 1) * d;
    GRID_STRIDE(i, total)
    {
        int64_t s = i / dp, e = i % dp;
        int j = (int)(e / p), t = (int)(e % p);
        dx[i] += dy[s * td + (int64_t)(t + 1) * d + j];
    }
}

static void patch_tokens_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    int d = x->c, p = x->h * x->w;
    int64_t total = (int64_t)n * (p + 1) * d;
    k_patch_forward<<<cu_blocks(total, 256), 256>>>(out_t(g, nd)->data, x->data, cu_param(g, nd, 0),
                                                    cu_param(g, nd, 1), d, p, total);
    CU_LAUNCHED();
}

static void patch_tokens_backward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    const tr_tensor *x = in_t(g, nd, 0), *y = out_t(g, nd);
    int d = x->c, p = x->h * x->w;
    int64_t td = (int64_t)(p + 1) * d;
    if (x->grad) {
        int64_t total = (int64_t)n * d * p;
        k_patch_backward<<<cu_blocks(total, 256), 256>>>(x->grad, y->grad, d, p, total);
        CU_LAUNCHED();
    }
    tr_cuda_colsum_add(c, cu_pgrad(g, nd, 1), y->grad, n, (int)td, td);   /* position embedding */
    tr_cuda_colsum_add(c, cu_pgrad(g, nd, 0), y->grad, n, d, td);         /* class token: token 0 */
}

/* ---- token selection ---- */

__global__ void k_select_forward(float *y, const float *x, int64_t row, int64_t per, int64_t off, int64_t total)
{
    GRID_STRIDE(i, total) y[i] = x[(i / row) * per + off + i % row];
}

__global__ void k_select_backward(float *dx, const float *dy, int64_t row, int64_t per, int64_t off, int64_t total)
{
    GRID_STRIDE(i, total) dx[(i / row) * per + off + i % row] += dy[i];
}

static void select_token_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    int64_t row = (int64_t)x->h * x->w, per = (int64_t)x->c * row, total = n * row;
    k_select_forward<<<cu_blocks(total, 256), 256>>>(out_t(g, nd)->data, x->data, row, per, nd->attr.token * row,
                                                     total);
    CU_LAUNCHED();
}

static void select_token_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    if (!x->grad) return;
    int64_t row = (int64_t)x->h * x->w, per = (int64_t)x->c * row, total = n * row;
    k_select_backward<<<cu_blocks(total, 256), 256>>>(x->grad, out_t(g, nd)->grad, row, per, nd->attr.token * row,
                                                      total);
    CU_LAUNCHED();
}

/* ---- attention softmax (used by cuda_gemm.cu): one warp per row of scores ---- */

__global__ void k_softmax_rows(float *p, int64_t rows, int t)
{
    WARP_ROWS(r, rows)
    {
        float *pr = p + r * t;
        float m = -INFINITY;
        for (int j = lane; j < t; j += 32) m = fmaxf(m, pr[j]);
        m = warp_max_f(m);
        float sum = 0.f;
        for (int j = lane; j < t; j += 32) {
            float e = expf(pr[j] - m);
            pr[j] = e;
            sum += e;
        }
        float inv = 1.f / warp_sum_f(sum);
        for (int j = lane; j < t; j += 32) pr[j] *= inv;
    }
}

/* dS = P * (dP − Σ dP·P), in place in dp */
__global__ void k_softmax_backward_rows(float *dp, const float *p, int64_t rows, int t)
{
    WARP_ROWS(r, rows)
    {
        const float *pr = p + r * t;
        float *dr = dp + r * t;
        float dot = 0.f;
        for (int j = lane; j < t; j += 32) dot += dr[j] * pr[j];
        dot = warp_sum_f(dot);
        for (int j = lane; j < t; j += 32) dr[j] = pr[j] * (dr[j] - dot);
    }
}

void tr_cuda_softmax_rows(float *p, int64_t rows, int t)
{
    k_softmax_rows<<<cu_blocks(rows * 32, 256), 256>>>(p, rows, t);
    CU_LAUNCHED();
}

void tr_cuda_softmax_backward_rows(float *dp, const float *p, int64_t rows, int t)
{
    k_softmax_backward_rows<<<cu_blocks(rows * 32, 256), 256>>>(dp, p, rows, t);
    CU_LAUNCHED();
}

void tr_cuda_register_ops(tr_backend *be)
{
#define OP(op, fam) be->forward[op] = fam##_forward, be->backward[op] = fam##_backward
    OP(TR_OP_ACT, act);
    OP(TR_OP_ADD, add);
    OP(TR_OP_ADAPTIVE_AVGPOOL, adaptive_avgpool);
    OP(TR_OP_CONCAT, concat);
    OP(TR_OP_MUL_CHANNEL, mul_channel);
    OP(TR_OP_DROPOUT, dropout);
    OP(TR_OP_DROP_PATH, drop_path);
    OP(TR_OP_LAYERNORM, layernorm);
    OP(TR_OP_PATCH_TOKENS, patch_tokens);
    OP(TR_OP_SELECT_TOKEN, select_token);
#undef OP
}
