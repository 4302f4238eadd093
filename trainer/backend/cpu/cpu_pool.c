/* Pooling on the CPU, one thread per (sample, channel) plane. Max pooling saves, per output
 * element, the index of the winning input element within its plane as an int32 stored in the
 * float-sized slots of nd->saved (same size, reinterpreted; never read as a float). */
#include "trainer/backend/cpu/cpu_kernels.h"

#include <float.h>

void tr_cpu_maxpool_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    const int k = nd->attr.pool.k, st = nd->attr.pool.stride, pad = nd->attr.pool.pad;
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
    int32_t *arg = (int32_t *)nd->saved;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = xt->data + pl * HW;
        float *yp = yt->data + pl * P;
        int32_t *ap = arg + pl * P;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                /* padding counts as -inf, as in PyTorch; the first maximum wins */
                float best = -FLT_MAX;
                int32_t bi = -1;
                for (int ki = 0; ki < k; ki++) {
                    int ih = oh * st - pad + ki;
                    if (ih < 0 || ih >= H) continue;
                    for (int kj = 0; kj < k; kj++) {
                        int iw = ow * st - pad + kj;
                        if (iw < 0 || iw >= W) continue;
                        float v = xp[ih * W + iw];
                        if (bi < 0 || v > best || v != v) {
                            best = v;
                            bi = ih * W + iw;
                            if (v != v) goto done;   /* NaN propagates */
                        }
                    }
                }
            done:
                yp[oh * OW + ow] = best;
                ap[oh * OW + ow] = bi;
            }
    }
}

void tr_cpu_maxpool_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    if (!xt->grad) return;
    const int planes = n * xt->c;
    const int64_t HW = (int64_t)xt->h * xt->w, P = (int64_t)yt->h * yt->w;
    const int32_t *arg = (const int32_t *)nd->saved;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *dxp = xt->grad + pl * HW;
        const float *dyp = yt->grad + pl * P;
        const int32_t *ap = arg + pl * P;
        for (int64_t i = 0; i < P; i++) dxp[ap[i]] += dyp[i];
    }
}

/* count_include_pad: the divisor is always k*k (windows never pass the padded border when the
 * output size is floor((H + 2p - k)/s) + 1). */
void tr_cpu_avgpool_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    const int k = nd->attr.pool.k, st = nd->attr.pool.stride, pad = nd->attr.pool.pad;
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
    const float inv = 1.f / (float)(k * k);
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = xt->data + pl * HW;
        float *yp = yt->data + pl * P;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float s = 0.f;
                for (int ki = 0; ki < k; ki++) {
                    int ih = oh * st - pad + ki;
                    if (ih < 0 || ih >= H) continue;
                    for (int kj = 0; kj < k; kj++) {
                        int iw = ow * st - pad + kj;
                        if (iw >= 0 && iw < W) s += xp[ih * W + iw];
                    }
                }
                yp[oh * OW + ow] = s * inv;
            }
    }
}

void tr_cpu_avgpool_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    if (!xt->grad) return;
    const int k = nd->attr.pool.k, st = nd->attr.pool.stride, pad = nd->attr.pool.pad;
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
    const float inv = 1.f / (float)(k * k);
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *dxp = xt->grad + pl * HW;
        const float *dyp = yt->grad + pl * P;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float d = dyp[oh * OW + ow] * inv;
                for (int ki = 0; ki < k; ki++) {
                    int ih = oh * st - pad + ki;
                    if (ih < 0 || ih >= H) continue;
                    for (int kj = 0; kj < k; kj++) {
                        int iw = ow * st - pad + kj;
                        if (iw >= 0 && iw < W) dxp[ih * W + iw] += d;
                    }
                }
            }
    }
}

/* PyTorch's bins: rows [floor(i*H/oh), ceil((i+1)*H/oh)), likewise for columns. */
static inline int bin_start(int i, int in, int out) { return (int)((int64_t)i * in / out); }
static inline int bin_end(int i, int in, int out) { return (int)(((int64_t)(i + 1) * in + out - 1) / out); }

void tr_cpu_adaptive_avgpool_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = xt->data + pl * HW;
        float *yp = yt->data + pl * P;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
            for (int ow = 0; ow < OW; ow++) {
                int w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
                float s = 0.f;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) s += xp[ih * W + iw];
                yp[oh * OW + ow] = s / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

void tr_cpu_adaptive_avgpool_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    if (!xt->grad) return;
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *dxp = xt->grad + pl * HW;
        const float *dyp = yt->grad + pl * P;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = bin_start(oh, H, OH), h1 = bin_end(oh, H, OH);
            for (int ow = 0; ow < OW; ow++) {
                int w0 = bin_start(ow, W, OW), w1 = bin_end(ow, W, OW);
                float d = dyp[oh * OW + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) dxp[ih * W + iw] += d;
            }
        }
    }
}
