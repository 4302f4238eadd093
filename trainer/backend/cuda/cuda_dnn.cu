/* The cuDNN families: convolution (forward, backward data, backward filter, bias), batch norm
 * (training with running statistics, inference) and max/average pooling. Descriptors and the
 * convolution algorithms are chosen once per (node, batch size) and cached; the choice prefers
 * deterministic FP32 (FMA, no TF32) algorithms, in the order cuDNN's heuristics rank them.
 * Windows cuDNN cannot express (a conv with asymmetric padding; pools with dilation, asymmetric
 * padding, ceil_mode or windows of padding only) go through explicit padding or own kernels. */
#include "trainer/backend/cuda/cuda_internal.h"
#include "trainer/layers/conv_taps.h"

#include <float.h>
#include <stdio.h>

static const float ONE = 1.f, ZERO = 0.f;

/* Workspace an algorithm may ask for: at most 1 GiB and a quarter of the free memory. */
static size_t ws_limit(void)
{
    size_t free_b = 0, total_b = 0;
    CU_CHECK(cudaMemGetInfo(&free_b, &total_b));
    size_t lim = free_b / 4;
    return lim < ((size_t)1 << 30) ? lim : ((size_t)1 << 30);
}

static cudnnTensorDescriptor_t tensor4d(int n, int c, int h, int w)
{
    cudnnTensorDescriptor_t d;
    DNN_CHECK(cudnnCreateTensorDescriptor(&d));
    DNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
    return d;
}

/* Picks from heuristic results: the first usable deterministic one within the limit, else the
 * first usable one, else -1. Usable: succeeded and FP32 FMA math (TF32 would break parity; with
 * an FMA descriptor cuDNN reports FMA, as PyTorch asserts when allow_tf32 is off). */
template <class Perf>
static int pick(const Perf *perf, int count, size_t limit)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < count; i++) {
            const Perf &p = perf[i];
            if (p.status != CUDNN_STATUS_SUCCESS || p.memory > limit) continue;
            if (p.mathType != CUDNN_FMA_MATH) continue;
            if (pass == 0 && p.determinism != CUDNN_DETERMINISTIC) continue;
            return i;
        }
    return -1;
}

/* ---- convolution ---- */

/* cuDNN pads both sides of an axis alike: other paddings are applied explicitly, into the
 * front of the workspace, and cuDNN convolves the padded input without padding. */
static int conv_padded(const tr_conv_attr *a) { return a->pt != a->pb || a->pl != a->pr; }

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Bytes of the explicitly padded input (and, in backward, its gradient) at the workspace's front. */
static size_t conv_pad_bytes(const tr_graph *g, const tr_node *nd, int n)
{
    const tr_conv_attr *a = &nd->attr.conv;
    if (!conv_padded(a)) return 0;
    const tr_tensor *x = &g->tensors[nd->in[0]];
    return align256((size_t)n * x->c * (size_t)(x->h + a->pt + a->pb) * (size_t)(x->w + a->pl + a->pr) * sizeof(float));
}

/* xp (planes, H + pt + pb, W + pl + pr) = x (planes, H, W) surrounded by zeros */
__global__ void k_pad2d(float *xp, const float *x, int64_t planes, int H, int W, int pt, int pl, int Hp, int Wp)
{
    const int64_t total = planes * Hp * Wp;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t pl_ = i / ((int64_t)Hp * Wp);
        const int r = (int)(i / Wp % Hp) - pt, col = (int)(i % Wp) - pl;
        xp[i] = r >= 0 && r < H && col >= 0 && col < W ? x[(pl_ * H + r) * W + col] : 0.f;
    }
}

/* dx (planes, H, W) += the interior of dxp (planes, Hp, Wp) */
__global__ void k_crop_add2d(float *dx, const float *dxp, int64_t planes, int H, int W, int pt, int pl, int Hp, int Wp)
{
    const int64_t total = planes * H * W;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t pl_ = i / ((int64_t)H * W);
        const int r = (int)(i / W % H), col = (int)(i % W);
        dx[i] += dxp[(pl_ * Hp + r + pt) * Wp + col + pl];
    }
}

static void conv_setup(cu_ctx *c, const tr_graph *g, const tr_node *nd, int n, cu_state *s)
{
    const tr_conv_attr *a = &nd->attr.conv;
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    const int padded = conv_padded(a);
    const size_t pad_bytes = conv_pad_bytes(g, nd, n);
    s->xd = padded ? tensor4d(n, x->c, x->h + a->pt + a->pb, x->w + a->pl + a->pr) : tensor4d(n, x->c, x->h, x->w);
    s->yd = tensor4d(n, y->c, y->h, y->w);
    if (a->bias) s->pdesc = tensor4d(1, a->cout, 1, 1);
    DNN_CHECK(cudnnCreateFilterDescriptor(&s->wd));
    DNN_CHECK(cudnnSetFilter4dDescriptor(s->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, a->cout, a->cin / a->groups, a->kh,
                                         a->kw));
    DNN_CHECK(cudnnCreateConvolutionDescriptor(&s->cd));
    DNN_CHECK(cudnnSetConvolution2dDescriptor(s->cd, padded ? 0 : a->pt, padded ? 0 : a->pl, a->sh, a->sw, a->dh,
                                              a->dw, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    DNN_CHECK(cudnnSetConvolutionGroupCount(s->cd, a->groups));
    DNN_CHECK(cudnnSetConvolutionMathType(s->cd, CUDNN_FMA_MATH));
    int on, oc, oh, ow;
    DNN_CHECK(cudnnGetConvolution2dForwardOutputDim(s->cd, s->xd, s->wd, &on, &oc, &oh, &ow));
    if (on != n || oc != y->c || oh != y->h || ow != y->w) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s: cuDNN output (%d,%d,%d,%d) differs from the graph's (%d,%d,%d,%d)", nd->name,
                 on, oc, oh, ow, n, y->c, y->h, y->w);
        tr_cuda_fatal("deba", __FILE__, __LINE__, "conv_setup", msg);
    }

    size_t limit = ws_limit();
    enum { MAXP = 16 };
    int got = 0, i;
    {
        cudnnConvolutionFwdAlgoPerf_t perf[MAXP];
        DNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, s->xd, s->wd, s->cd, s->yd, MAXP, &got, perf));
        i = pick(perf, got, limit);
        s->fwd = i >= 0 ? perf[i].algo : CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
        DNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(c->dnn, s->xd, s->wd, s->cd, s->yd, s->fwd, &s->ws_fwd));
    }
    {
        cudnnConvolutionBwdDataAlgoPerf_t perf[MAXP];
        DNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->dnn, s->wd, s->yd, s->cd, s->xd, MAXP, &got, perf));
        i = pick(perf, got, limit);
        s->bwd_data = i >= 0 ? perf[i].algo : CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
        DNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(c->dnn, s->wd, s->yd, s->cd, s->xd, s->bwd_data,
                                                               &s->ws_bwd_data));
    }
    {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[MAXP];
        DNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->dnn, s->xd, s->yd, s->cd, s->wd, MAXP, &got, perf));
        i = pick(perf, got, limit);
        s->bwd_filter = i >= 0 ? perf[i].algo : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
        DNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(c->dnn, s->xd, s->yd, s->cd, s->wd, s->bwd_filter,
                                                                 &s->ws_bwd_filter));
    }
    size_t need = s->ws_fwd;
    if (s->ws_bwd_data > need) need = s->ws_bwd_data;
    if (s->ws_bwd_filter > need) need = s->ws_bwd_filter;
    if (tr_cuda_ws_reserve(c, pad_bytes + need) == 0) return;
    /* out of memory for the workspace: fall back to the algorithms that need none */
    s->fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    s->bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
    s->bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
    DNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(c->dnn, s->xd, s->wd, s->cd, s->yd, s->fwd, &s->ws_fwd));
    DNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(c->dnn, s->wd, s->yd, s->cd, s->xd, s->bwd_data,
                                                           &s->ws_bwd_data));
    DNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(c->dnn, s->xd, s->yd, s->cd, s->wd, s->bwd_filter,
                                                             &s->ws_bwd_filter));
    need = s->ws_fwd > s->ws_bwd_data ? s->ws_fwd : s->ws_bwd_data;
    if (s->ws_bwd_filter > need) need = s->ws_bwd_filter;
    if (tr_cuda_ws_reserve(c, pad_bytes + need) != 0)
        tr_cuda_fatal("CUDA", __FILE__, __LINE__, "tr_cuda_ws_reserve", "out of memory for the convolution workspace");
}

static cu_state *conv_state(const tr_graph *g, const tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    int fresh;
    cu_state *s = tr_cuda_state(c, g, nd, n, &fresh);
    if (fresh) conv_setup(c, g, nd, n, s);
    return s;
}

/* The input cuDNN convolves: x itself, or x padded into the workspace's front. */
static const float *conv_input(cu_ctx *c, const tr_graph *g, const tr_node *nd, int n)
{
    const tr_conv_attr *a = &nd->attr.conv;
    const tr_tensor *x = &g->tensors[nd->in[0]];
    if (!conv_padded(a)) return x->data;
    const int Hp = x->h + a->pt + a->pb, Wp = x->w + a->pl + a->pr;
    const int64_t planes = (int64_t)n * x->c;
    k_pad2d<<<cu_blocks(planes * Hp * Wp, 256), 256>>>((float *)c->ws, x->data, planes, x->h, x->w, a->pt, a->pl, Hp,
                                                       Wp);
    CU_LAUNCHED();
    return (const float *)c->ws;
}

static void conv2d_forward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    cu_state *s = conv_state(g, nd, n);
    const tr_tensor *y = &g->tensors[nd->out];
    const float *xin = conv_input(c, g, nd, n);
    void *ws = (char *)c->ws + conv_pad_bytes(g, nd, n);
    DNN_CHECK(cudnnConvolutionForward(c->dnn, &ONE, s->xd, xin, s->wd, cu_param(g, nd, 0), s->cd, s->fwd, ws,
                                      s->ws_fwd, &ZERO, s->yd, y->data));
    if (nd->attr.conv.bias)
        DNN_CHECK(cudnnAddTensor(c->dnn, &ONE, s->pdesc, cu_param(g, nd, 1), &ONE, s->yd, y->data));
}

static void conv2d_backward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    cu_state *s = conv_state(g, nd, n);
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    if (nd->attr.conv.bias)
        DNN_CHECK(cudnnConvolutionBackwardBias(c->dnn, &ONE, s->yd, y->grad, &ONE, s->pdesc, cu_pgrad(g, nd, 1)));
    const float *xin = conv_input(c, g, nd, n);
    void *ws = (char *)c->ws + conv_pad_bytes(g, nd, n);
    DNN_CHECK(cudnnConvolutionBackwardFilter(c->dnn, &ONE, s->xd, xin, s->yd, y->grad, s->cd, s->bwd_filter, ws,
                                             s->ws_bwd_filter, &ONE, s->wd, cu_pgrad(g, nd, 0)));
    if (!x->grad) return;
    if (!conv_padded(&nd->attr.conv)) {
        DNN_CHECK(cudnnConvolutionBackwardData(c->dnn, &ONE, s->wd, cu_param(g, nd, 0), s->yd, y->grad, s->cd,
                                               s->bwd_data, ws, s->ws_bwd_data, &ONE, s->xd, x->grad));
        return;
    }
    /* the padded input is no longer needed: its gradient takes its place, then its interior is
     * added to dx */
    const tr_conv_attr *a = &nd->attr.conv;
    const int Hp = x->h + a->pt + a->pb, Wp = x->w + a->pl + a->pr;
    const int64_t planes = (int64_t)n * x->c;
    DNN_CHECK(cudnnConvolutionBackwardData(c->dnn, &ONE, s->wd, cu_param(g, nd, 0), s->yd, y->grad, s->cd,
                                           s->bwd_data, ws, s->ws_bwd_data, &ZERO, s->xd, c->ws));
    k_crop_add2d<<<cu_blocks(planes * x->h * x->w, 256), 256>>>(x->grad, (const float *)c->ws, planes, x->h, x->w, a->pt,
                                                                a->pl, Hp, Wp);
    CU_LAUNCHED();
}

/* ---- batch norm ---- */

static cu_state *bn_state(const tr_graph *g, const tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    int fresh;
    cu_state *s = tr_cuda_state(c, g, nd, n, &fresh);
    if (fresh) {
        const tr_tensor *x = &g->tensors[nd->in[0]];
        s->xd = tensor4d(n, x->c, x->h, x->w);
        DNN_CHECK(cudnnCreateTensorDescriptor(&s->pdesc));
        DNN_CHECK(cudnnDeriveBNTensorDescriptor(s->pdesc, s->xd, CUDNN_BATCHNORM_SPATIAL));
    }
    return s;
}

/* Evaluation mode: the running statistics are constants, so backward is a per-channel affine
 * map; dw and db are per-channel sums (one block per channel, fixed tree). As the CPU, the rstd
 * comes from the running variance in double. */
__global__ void k_bn_eval_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                                   const float *rmean, const float *rvar, float eps, int n, int C, int64_t HW)
{
    __shared__ float s1[256], s2[256];
    int c = blockIdx.x;
    float mu = rmean[c], rs = (float)(1.0 / sqrt((double)rvar[c] + (double)eps));
    float a = 0.f, b = 0.f, k = w[c] * rs;
    int64_t M = (int64_t)n * HW;
    for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
        int64_t s = i / HW, j = i % HW, at = (s * C + c) * HW + j;
        float d = dy[at];
        a += d;
        b += d * (x[at] - mu);
        if (dx) dx[at] += k * d;
    }
    s1[threadIdx.x] = a;
    s2[threadIdx.x] = b;
    __syncthreads();
    for (int st = blockDim.x / 2; st > 0; st >>= 1) {
        if ((int)threadIdx.x < st) {
            s1[threadIdx.x] += s1[threadIdx.x + st];
            s2[threadIdx.x] += s2[threadIdx.x + st];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        db[c] += s1[0];
        dw[c] += s2[0] * rs;
    }
}

static void batchnorm_forward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    cu_state *s = bn_state(g, nd, n);
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    const int C = x->c;
    float *rmean = g->stats + nd->attr.bn.stat_off, *rvar = rmean + C;
    const double eps = nd->attr.bn.eps < CUDNN_BN_MIN_EPSILON ? CUDNN_BN_MIN_EPSILON : nd->attr.bn.eps;
    if (g->training)
        /* exponentialAverageFactor = momentum; cuDNN keeps the unbiased variance, as PyTorch */
        DNN_CHECK(cudnnBatchNormalizationForwardTraining(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, &ZERO, s->xd, x->data,
                                                         s->xd, y->data, s->pdesc, cu_param(g, nd, 0),
                                                         cu_param(g, nd, 1), (double)nd->attr.bn.momentum, rmean,
                                                         rvar, eps, nd->saved, nd->saved + C));
    else
        DNN_CHECK(cudnnBatchNormalizationForwardInference(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, &ZERO, s->xd,
                                                          x->data, s->xd, y->data, s->pdesc, cu_param(g, nd, 0),
                                                          cu_param(g, nd, 1), rmean, rvar, eps));
}

static void batchnorm_backward(tr_graph *g, tr_node *nd, int n)
{
    cu_ctx *c = cu_ctx_of(g);
    cu_state *s = bn_state(g, nd, n);
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    const int C = x->c;
    const double eps = nd->attr.bn.eps < CUDNN_BN_MIN_EPSILON ? CUDNN_BN_MIN_EPSILON : nd->attr.bn.eps;
    if (!g->training) {
        const float *rmean = g->stats + nd->attr.bn.stat_off;
        k_bn_eval_backward<<<C, 256>>>(x->grad, cu_pgrad(g, nd, 0), cu_pgrad(g, nd, 1), y->grad, x->data,
                                       cu_param(g, nd, 0), rmean, rmean + C, (float)eps, n, C,
                                       (int64_t)x->h * x->w);
        CU_LAUNCHED();
        return;
    }
    /* an input without gradient still needs somewhere for cuDNN's dx: the workspace, grown the
     * first time only (a no-op afterwards) */
    if (!x->grad && tr_cuda_ws_reserve(c, (size_t)n * (size_t)tr_tensor_numel(x) * sizeof(float)) != 0)
        tr_cuda_fatal("CUDA", __FILE__, __LINE__, "tr_cuda_ws_reserve", "out of memory for batch-norm scratch");
    /* saved mean and 1/sqrt(var + eps) from the forward; everything accumulates (beta = 1) */
    float *dx = x->grad ? x->grad : (float *)c->ws;
    const float *beta_dx = x->grad ? &ONE : &ZERO;
    DNN_CHECK(cudnnBatchNormalizationBackward(c->dnn, CUDNN_BATCHNORM_SPATIAL, &ONE, beta_dx, &ONE, &ONE, s->xd,
                                              x->data, s->xd, y->grad, s->xd, dx, s->pdesc, cu_param(g, nd, 0),
                                              cu_pgrad(g, nd, 0), cu_pgrad(g, nd, 1), eps, nd->saved,
                                              nd->saved + C));
}

/* ---- pooling: max (padding never wins, NaN propagates) and average ----
 * cuDNN takes the windows of the built-in models (symmetric padding at most half the window,
 * no dilation, no ceil_mode window): every window then holds input, and cuDNN's divisors
 * (k*k, or the input elements) are PyTorch's. Other windows run the kernels below, the CPU's
 * arithmetic: max saves its argmax (an int32 per output, as the CPU) and both backward passes
 * gather per input element, so no atomics and the same result every run. */

static int pool_cudnn(const tr_graph *g, const tr_node *nd)
{
    const tr_pool_attr *a = &nd->attr.pool;
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    return a->dh == 1 && a->dw == 1 && a->pt == a->pb && a->pl == a->pr && 2 * a->pt <= a->kh &&
           2 * a->pl <= a->kw && y->h == tr_win_out(x->h, a->kh, a->sh, 1, a->pt, a->pb, 0) &&
           y->w == tr_win_out(x->w, a->kw, a->sw, 1, a->pl, a->pr, 0);
}

__global__ void k_maxpool_fwd(float *y, int32_t *arg, const float *x, int64_t planes, int H, int W, int OH, int OW,
                              tr_pool_attr a)
{
    const int64_t total = planes * OH * OW;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t p = i / ((int64_t)OH * OW);
        const int oh = (int)(i / OW % OH), ow = (int)(i % OW);
        const float *xp = x + p * H * W;
        float best = -FLT_MAX;   /* a window of padding only: the lowest float, no gradient */
        int32_t bi = -1;
        for (int ki = 0; ki < a.kh && !(bi >= 0 && best != best); ki++) {
            const int ih = oh * a.sh - a.pt + ki * a.dh;
            if (ih < 0 || ih >= H) continue;
            for (int kj = 0; kj < a.kw; kj++) {
                const int iw = ow * a.sw - a.pl + kj * a.dw;
                if (iw < 0 || iw >= W) continue;
                const float v = xp[ih * W + iw];
                if (bi < 0 || v > best || v != v) {
                    best = v;
                    bi = ih * W + iw;
                    if (v != v) break;   /* NaN propagates */
                }
            }
        }
        y[i] = best;
        if (arg) arg[i] = bi;   /* NULL in the inference plan: no backward follows */
    }
}

/* The outputs whose window holds input row ih: oh = (ih + pt - ki*dh) / sh for the taps ki that
 * divide evenly; visited with ki ascending. */
__global__ void k_maxpool_bwd(float *dx, const float *dy, const int32_t *arg, int64_t planes, int H, int W, int OH,
                              int OW, tr_pool_attr a)
{
    const int64_t total = planes * H * W;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t p = i / ((int64_t)H * W);
        const int ih = (int)(i / W % H), iw = (int)(i % W), self = ih * W + iw;
        const float *dyp = dy + p * OH * OW;
        const int32_t *ap = arg + p * OH * OW;
        float acc = 0.f;
        for (int ki = 0; ki < a.kh; ki++) {
            const int nh = ih + a.pt - ki * a.dh;
            if (nh < 0 || nh % a.sh || nh / a.sh >= OH) continue;
            for (int kj = 0; kj < a.kw; kj++) {
                const int nw = iw + a.pl - kj * a.dw;
                if (nw < 0 || nw % a.sw || nw / a.sw >= OW) continue;
                const int o = nh / a.sh * OW + nw / a.sw;
                if (ap[o] == self) acc += dyp[o];
            }
        }
        dx[i] += acc;
    }
}

__global__ void k_avgpool_fwd(float *y, const float *x, int64_t planes, int H, int W, int OH, int OW, tr_pool_attr a)
{
    const int64_t total = planes * OH * OW;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t p = i / ((int64_t)OH * OW);
        const int oh = (int)(i / OW % OH), ow = (int)(i % OW);
        const float *xp = x + p * H * W;
        const int cnt = tr_pool_avg_count(a.kh, a.kw, a.sh, a.sw, a.dh, a.dw, a.pt, a.pl, a.pb, a.pr,
                                          a.count_include_pad, H, W, oh, ow);
        float s = 0.f;
        for (int ki = 0; ki < a.kh; ki++) {
            const int ih = oh * a.sh - a.pt + ki * a.dh;
            if (ih < 0 || ih >= H) continue;
            for (int kj = 0; kj < a.kw; kj++) {
                const int iw = ow * a.sw - a.pl + kj * a.dw;
                if (iw >= 0 && iw < W) s += xp[ih * W + iw];
            }
        }
        y[i] = cnt ? s * (1.f / (float)cnt) : 0.f;
    }
}

__global__ void k_avgpool_bwd(float *dx, const float *dy, int64_t planes, int H, int W, int OH, int OW, tr_pool_attr a)
{
    const int64_t total = planes * H * W;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t p = i / ((int64_t)H * W);
        const int ih = (int)(i / W % H), iw = (int)(i % W);
        const float *dyp = dy + p * OH * OW;
        float acc = 0.f;
        for (int ki = 0; ki < a.kh; ki++) {
            const int nh = ih + a.pt - ki * a.dh;
            if (nh < 0 || nh % a.sh || nh / a.sh >= OH) continue;
            for (int kj = 0; kj < a.kw; kj++) {
                const int nw = iw + a.pl - kj * a.dw;
                if (nw < 0 || nw % a.sw || nw / a.sw >= OW) continue;
                const int oh = nh / a.sh, ow = nw / a.sw;
                const int cnt = tr_pool_avg_count(a.kh, a.kw, a.sh, a.sw, a.dh, a.dw, a.pt, a.pl, a.pb, a.pr,
                                                  a.count_include_pad, H, W, oh, ow);
                acc += dyp[oh * OW + ow] * (1.f / (float)cnt);   /* cnt >= 1: this window holds (ih, iw) */
            }
        }
        dx[i] += acc;
    }
}

static cu_state *pool_state(const tr_graph *g, const tr_node *nd, int n, cudnnPoolingMode_t mode)
{
    cu_ctx *c = cu_ctx_of(g);
    int fresh;
    cu_state *s = tr_cuda_state(c, g, nd, n, &fresh);
    if (fresh) {
        const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
        const tr_pool_attr *a = &nd->attr.pool;
        s->xd = tensor4d(n, x->c, x->h, x->w);
        s->yd = tensor4d(n, y->c, y->h, y->w);
        DNN_CHECK(cudnnCreatePoolingDescriptor(&s->pool));
        DNN_CHECK(cudnnSetPooling2dDescriptor(s->pool, mode, CUDNN_PROPAGATE_NAN, a->kh, a->kw, a->pt, a->pl, a->sh,
                                              a->sw));
        int on, oc, oh, ow;
        DNN_CHECK(cudnnGetPooling2dForwardOutputDim(s->pool, s->xd, &on, &oc, &oh, &ow));
        if (on != n || oc != y->c || oh != y->h || ow != y->w)
            tr_cuda_fatal("deba", __FILE__, __LINE__, "pool_state", "cuDNN pooling output shape differs from the graph's");
    }
    return s;
}

static void pool_forward(tr_graph *g, tr_node *nd, int n, cudnnPoolingMode_t mode)
{
    cu_ctx *c = cu_ctx_of(g);
    cu_state *s = pool_state(g, nd, n, mode);
    DNN_CHECK(cudnnPoolingForward(c->dnn, s->pool, &ONE, s->xd, g->tensors[nd->in[0]].data, &ZERO, s->yd,
                                  g->tensors[nd->out].data));
}

static void pool_backward(tr_graph *g, tr_node *nd, int n, cudnnPoolingMode_t mode)
{
    cu_ctx *c = cu_ctx_of(g);
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    if (!x->grad) return;
    cu_state *s = pool_state(g, nd, n, mode);
    DNN_CHECK(cudnnPoolingBackward(c->dnn, s->pool, &ONE, s->yd, y->data, s->yd, y->grad, s->xd, x->data, &ONE, s->xd,
                                   x->grad));
}

/* CUDNN_POOLING_MAX_DETERMINISTIC: the same gradient routing every run */
static void maxpool_forward(tr_graph *g, tr_node *nd, int n)
{
    if (pool_cudnn(g, nd)) {
        pool_forward(g, nd, n, CUDNN_POOLING_MAX_DETERMINISTIC);
        return;
    }
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    const int64_t planes = (int64_t)n * x->c;
    k_maxpool_fwd<<<cu_blocks(planes * y->h * y->w, 256), 256>>>(y->data, (int32_t *)nd->saved, x->data, planes, x->h,
                                                                 x->w, y->h, y->w, nd->attr.pool);
    CU_LAUNCHED();
}

static void maxpool_backward(tr_graph *g, tr_node *nd, int n)
{
    if (pool_cudnn(g, nd)) {
        pool_backward(g, nd, n, CUDNN_POOLING_MAX_DETERMINISTIC);
        return;
    }
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    if (!x->grad) return;
    const int64_t planes = (int64_t)n * x->c;
    k_maxpool_bwd<<<cu_blocks(planes * x->h * x->w, 256), 256>>>(x->grad, y->grad, (const int32_t *)nd->saved, planes,
                                                                 x->h, x->w, y->h, y->w, nd->attr.pool);
    CU_LAUNCHED();
}

/* count_include_pad = 1 is cuDNN's INCLUDE_PADDING (divisor k*k: no window passes the padding
 * on this path), 0 is EXCLUDE_PADDING */
static cudnnPoolingMode_t avg_mode(const tr_node *nd)
{
    return nd->attr.pool.count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                           : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
}

static void avgpool_forward(tr_graph *g, tr_node *nd, int n)
{
    if (pool_cudnn(g, nd)) {
        pool_forward(g, nd, n, avg_mode(nd));
        return;
    }
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    const int64_t planes = (int64_t)n * x->c;
    k_avgpool_fwd<<<cu_blocks(planes * y->h * y->w, 256), 256>>>(y->data, x->data, planes, x->h, x->w, y->h, y->w,
                                                                 nd->attr.pool);
    CU_LAUNCHED();
}

static void avgpool_backward(tr_graph *g, tr_node *nd, int n)
{
    if (pool_cudnn(g, nd)) {
        pool_backward(g, nd, n, avg_mode(nd));
        return;
    }
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    if (!x->grad) return;
    const int64_t planes = (int64_t)n * x->c;
    k_avgpool_bwd<<<cu_blocks(planes * x->h * x->w, 256), 256>>>(x->grad, y->grad, planes, x->h, x->w, y->h, y->w,
                                                                 nd->attr.pool);
    CU_LAUNCHED();
}

void tr_cuda_register_dnn(tr_backend *be)
{
    be->forward[TR_OP_CONV2D] = conv2d_forward;
    be->backward[TR_OP_CONV2D] = conv2d_backward;
    be->forward[TR_OP_BATCHNORM] = batchnorm_forward;
    be->backward[TR_OP_BATCHNORM] = batchnorm_backward;
    be->forward[TR_OP_MAXPOOL] = maxpool_forward;
    be->backward[TR_OP_MAXPOOL] = maxpool_backward;
    be->forward[TR_OP_AVGPOOL] = avgpool_forward;
    be->backward[TR_OP_AVGPOOL] = avgpool_backward;
}
