/* Pooling on the CPU for any window (kh x kw, per-axis stride and dilation, padding before and
 * after each axis, ceil_mode, count_include_pad), one thread per (sample, channel) plane. Max
 * pooling saves, per output element, the index of the winning input element within its plane as
 * an int32 stored in the float-sized slots of nd->saved (same size, reinterpreted; never read as
 * a float). */
#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/layers/conv_taps.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* The window of a pooling node: output (oh, ow) reads rows oh*sh - pt + ki*dh, ki < kh, and
 * columns likewise. */
typedef struct {
    int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
} pool_win;

static pool_win win_of(const tr_node *nd)
{
    const tr_pool_attr *a = &nd->attr.pool;
    return (pool_win){a->kh, a->kw, a->sh, a->sw, a->dh, a->dw, a->pt, a->pl, a->pb, a->pr};
}

/* Two loops per op: the undilated windows of the built-in models check each tap against the
 * borders (on 2x2 and 3x3 windows that costs less than working out each output's range of taps,
 * and the averages divide by a constant); any other window takes the range of live taps per
 * output. The window's numbers are copied to locals so the stores into the outputs cannot be
 * taken to change them. */

/* Max: padding counts as -inf, as in PyTorch; the first maximum wins, NaN propagates. A window
 * of padding only (ONNX allows pads beyond half the window) gives the lowest float, as
 * onnxruntime, and no gradient (index -1). */
static void maxpool_plane_undilated(float *yp, int32_t *ap, const float *xp, int H, int W, int OH, int OW,
                                    const pool_win *q)
{
    const int kh = q->kh, kw = q->kw, sh = q->sh, sw = q->sw, pt = q->pt, pl = q->pl;
    /* Tap by tap over a whole output row, each output keeping its running maximum in yp/ap: the
     * outputs are independent, so the compare-and-select chains of neighbouring outputs overlap
     * instead of one output's nine taps waiting on each other (scanned one output at a time, with
     * a branch per tap, resnet18's maxpool took as long as its first conv). Each output still
     * sees its taps in (ki, kj) order. Selects, not branches: "v > best" is a coin toss on real
     * activations. A NaN, once taken, is never replaced, as if the scan stopped there. */
    for (int oh = 0; oh < OH; oh++) {
        float *restrict yr = yp + (int64_t)oh * OW;
        int32_t *restrict ar = ap + (int64_t)oh * OW;
        for (int ow = 0; ow < OW; ow++) yr[ow] = -FLT_MAX, ar[ow] = -1;
        for (int ki = 0; ki < kh; ki++) {
            const int ih = oh * sh - pt + ki;
            if (ih < 0 || ih >= H) continue;
            for (int kj = 0; kj < kw; kj++) {
                int ow0, ow1;
                tr_cpu_valid_range(kj - pl, sw, W, OW, &ow0, &ow1);
                const int base = ih * W + kj - pl;
                const float *restrict xr = xp + base;
#pragma omp simd
                for (int ow = ow0; ow < ow1; ow++) {
                    const int at = base + ow * sw;
                    const float v = xr[ow * sw], b = yr[ow];
                    const int32_t a = ar[ow];
                    const int take = (a < 0) | (v > b) | ((v != v) & (b == b));
                    yr[ow] = take ? v : b;
                    ar[ow] = take ? at : a;
                }
            }
        }
    }
}

/* The same maxima without the argmax, for the inference plan (nd->saved NULL): each output's
 * running maximum starts at -inf instead of "no tap yet", which changes no value (a first tap
 * of -inf leaves -inf either way, a NaN is taken over any number and then kept), and the outputs
 * whose window holds no input element get the lowest float afterwards, as above. */
static void maxpool_plane_undilated_eval(float *yp, const float *xp, int H, int W, int OH, int OW,
                                         const pool_win *q)
{
    const int kh = q->kh, kw = q->kw, sh = q->sh, sw = q->sw, pt = q->pt, pl = q->pl;
    for (int oh = 0; oh < OH; oh++) {
        float *restrict yr = yp + (int64_t)oh * OW;
        for (int ow = 0; ow < OW; ow++) yr[ow] = -INFINITY;
        for (int ki = 0; ki < kh; ki++) {
            const int ih = oh * sh - pt + ki;
            if (ih < 0 || ih >= H) continue;
            for (int kj = 0; kj < kw; kj++) {
                int ow0, ow1;
                tr_cpu_valid_range(kj - pl, sw, W, OW, &ow0, &ow1);
                const float *restrict xr = xp + ih * W + kj - pl;
#pragma omp simd
                for (int ow = ow0; ow < ow1; ow++) {
                    const float v = xr[ow * sw], b = yr[ow];
                    yr[ow] = (v > b) | ((v != v) & (b == b)) ? v : b;
                }
            }
        }
        const int rows = oh * sh - pt + kh - 1 >= 0 && oh * sh - pt < H;
        for (int ow = 0; ow < OW; ow++)
            if (!rows || ow * sw - pl + kw - 1 < 0 || ow * sw - pl >= W) yr[ow] = -FLT_MAX;
    }
}

/* ap NULL: the maxima only (the inference plan). */
static void maxpool_plane(float *yp, int32_t *ap, const float *xp, int H, int W, int OH, int OW, const pool_win *q)
{
    const int kh = q->kh, kw = q->kw, sh = q->sh, sw = q->sw, dh = q->dh, dw = q->dw, pt = q->pt, pl = q->pl;
    for (int oh = 0; oh < OH; oh++) {
        const int hs = oh * sh - pt;
        int ki0, ki1;
        tr_win_tap_range(hs, kh, dh, 0, H, &ki0, &ki1);
        for (int ow = 0; ow < OW; ow++) {
            const int ws = ow * sw - pl;
            int kj0, kj1;
            tr_win_tap_range(ws, kw, dw, 0, W, &kj0, &kj1);
            float best = -FLT_MAX;
            int32_t bi = -1;
            for (int ki = ki0; ki < ki1; ki++) {
                const int row = (hs + ki * dh) * W + ws;
                for (int kj = kj0; kj < kj1; kj++) {
                    const int at = row + kj * dw;
                    const float v = xp[at];
                    if (bi < 0 || v > best || v != v) {
                        best = v;
                        bi = at;
                        if (v != v) goto done;
                    }
                }
            }
        done:
            yp[oh * OW + ow] = best;
            if (ap) ap[oh * OW + ow] = bi;
        }
    }
}

void tr_cpu_maxpool_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    const pool_win q = win_of(nd);
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
    const int undilated = q.dh == 1 && q.dw == 1;
    int32_t *arg = (int32_t *)nd->saved;   /* NULL in the inference plan: no backward follows */
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        if (undilated && arg)
            maxpool_plane_undilated(yt->data + pl * P, arg + pl * P, xt->data + pl * HW, H, W, OH, OW, &q);
        else if (undilated)
            maxpool_plane_undilated_eval(yt->data + pl * P, xt->data + pl * HW, H, W, OH, OW, &q);
        else
            maxpool_plane(yt->data + pl * P, arg ? arg + pl * P : NULL, xt->data + pl * HW, H, W, OH, OW, &q);
    }
}

void tr_cpu_maxpool_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    if (!xt->grad) return;
    const int planes = n * xt->c;
    const int64_t HW = (int64_t)xt->h * xt->w, P = (int64_t)yt->h * yt->w;
    const int32_t *arg = (const int32_t *)nd->saved;
    const int set = tr_cpu_sets(nd, 0);
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *dxp = xt->grad + pl * HW;
        const float *dyp = yt->grad + pl * P;
        const int32_t *ap = arg + pl * P;
        if (set) memset(dxp, 0, sizeof(float) * (size_t)HW);   /* this plane, while it is in cache */
        for (int64_t i = 0; i < P; i++)
            if (ap[i] >= 0) dxp[ap[i]] += dyp[i];
    }
}

/* Average: the divisor is tr_pool_avg_count's (PyTorch's). It is kh*kw for every output when
 * the padding counts, there is no dilation and no window passes the padded border (no ceil_mode
 * overhang): the built-in models' case, with the constant divisor and per-tap border checks. */
static int avg_constant(const pool_win *q, int cip, int H, int W, int OH, int OW)
{
    return cip && q->dh == 1 && q->dw == 1 && (OH - 1) * q->sh + q->kh <= H + q->pt + q->pb &&
           (OW - 1) * q->sw + q->kw <= W + q->pl + q->pr;
}

static inline int avg_count(const pool_win *q, int cip, int H, int W, int oh, int ow)
{
    return tr_pool_avg_count(q->kh, q->kw, q->sh, q->sw, q->dh, q->dw, q->pt, q->pl, q->pb, q->pr, cip, H, W, oh, ow);
}

static void avgpool_plane_constant(float *yp, const float *xp, int H, int W, int OH, int OW, const pool_win *q)
{
    const int kh = q->kh, kw = q->kw, sh = q->sh, sw = q->sw, pt = q->pt, pl = q->pl;
    const float inv = 1.f / (float)(kh * kw);
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            float s = 0.f;
            for (int ki = 0; ki < kh; ki++) {
                int ih = oh * sh - pt + ki;
                if (ih < 0 || ih >= H) continue;
                for (int kj = 0; kj < kw; kj++) {
                    int iw = ow * sw - pl + kj;
                    if (iw >= 0 && iw < W) s += xp[ih * W + iw];
                }
            }
            yp[oh * OW + ow] = s * inv;
        }
}

static void avgpool_plane(float *yp, const float *xp, int H, int W, int OH, int OW, const pool_win *q, int cip)
{
    const int kh = q->kh, kw = q->kw, sh = q->sh, sw = q->sw, dh = q->dh, dw = q->dw, pt = q->pt, pl = q->pl;
    for (int oh = 0; oh < OH; oh++) {
        const int hs = oh * sh - pt;
        int ki0, ki1;
        tr_win_tap_range(hs, kh, dh, 0, H, &ki0, &ki1);
        for (int ow = 0; ow < OW; ow++) {
            const int ws = ow * sw - pl;
            int kj0, kj1;
            tr_win_tap_range(ws, kw, dw, 0, W, &kj0, &kj1);
            const int cnt = avg_count(q, cip, H, W, oh, ow);
            float s = 0.f;
            for (int ki = ki0; ki < ki1; ki++) {
                const float *xr = xp + (hs + ki * dh) * W + ws;
                for (int kj = kj0; kj < kj1; kj++) s += xr[kj * dw];
            }
            yp[oh * OW + ow] = cnt ? s * (1.f / (float)cnt) : 0.f;   /* padding only: 0, not 0/0 */
        }
    }
}

static void avgpool_plane_constant_backward(float *dxp, const float *dyp, int H, int W, int OH, int OW,
                                            const pool_win *q)
{
    const int kh = q->kh, kw = q->kw, sh = q->sh, sw = q->sw, pt = q->pt, pl = q->pl;
    const float inv = 1.f / (float)(kh * kw);
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            float d = dyp[oh * OW + ow] * inv;
            for (int ki = 0; ki < kh; ki++) {
                int ih = oh * sh - pt + ki;
                if (ih < 0 || ih >= H) continue;
                for (int kj = 0; kj < kw; kj++) {
                    int iw = ow * sw - pl + kj;
                    if (iw >= 0 && iw < W) dxp[ih * W + iw] += d;
                }
            }
        }
}

static void avgpool_plane_backward(float *dxp, const float *dyp, int H, int W, int OH, int OW, const pool_win *q,
                                   int cip)
{
    const int kh = q->kh, kw = q->kw, sh = q->sh, sw = q->sw, dh = q->dh, dw = q->dw, pt = q->pt, pl = q->pl;
    for (int oh = 0; oh < OH; oh++) {
        const int hs = oh * sh - pt;
        int ki0, ki1;
        tr_win_tap_range(hs, kh, dh, 0, H, &ki0, &ki1);
        for (int ow = 0; ow < OW; ow++) {
            const int ws = ow * sw - pl;
            int kj0, kj1;
            tr_win_tap_range(ws, kw, dw, 0, W, &kj0, &kj1);
            const int cnt = avg_count(q, cip, H, W, oh, ow);
            if (!cnt) continue;
            const float d = dyp[oh * OW + ow] * (1.f / (float)cnt);
            for (int ki = ki0; ki < ki1; ki++) {
                float *xr = dxp + (hs + ki * dh) * W + ws;
                for (int kj = kj0; kj < kj1; kj++) xr[kj * dw] += d;
            }
        }
    }
}

void tr_cpu_avgpool_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    const pool_win q = win_of(nd);
    const int cip = nd->attr.pool.count_include_pad;
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
    const int constant = avg_constant(&q, cip, H, W, OH, OW);
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        if (constant)
            avgpool_plane_constant(yt->data + pl * P, xt->data + pl * HW, H, W, OH, OW, &q);
        else
            avgpool_plane(yt->data + pl * P, xt->data + pl * HW, H, W, OH, OW, &q, cip);
    }
}

void tr_cpu_avgpool_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    if (!xt->grad) return;
    const pool_win q = win_of(nd);
    const int cip = nd->attr.pool.count_include_pad;
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
    const int constant = avg_constant(&q, cip, H, W, OH, OW), set = tr_cpu_sets(nd, 0);
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        if (set) memset(xt->grad + pl * HW, 0, sizeof(float) * (size_t)HW);
        if (constant)
            avgpool_plane_constant_backward(xt->grad + pl * HW, yt->grad + pl * P, H, W, OH, OW, &q);
        else
            avgpool_plane_backward(xt->grad + pl * HW, yt->grad + pl * P, H, W, OH, OW, &q, cip);
    }
}

/* PyTorch's bins: rows [floor(i*H/oh), ceil((i+1)*H/oh)), likewise for columns. */
static inline int bin_start(int i, int in, int out) { return (int)((int64_t)i * in / out); }
static inline int bin_end(int i, int in, int out) { return (int)(((int64_t)(i + 1) * in + out - 1) / out); }

/* When the output divides the input, PyTorch's bins are the windows of an average pool with
 * kernel = stride = in/out and no padding: the constant-divisor loops above, without the four
 * integer divisions per output that made cnn_small's 8x8 -> 4x4 pool cost 8-11 us a sample. */
static int adaptive_uniform(int H, int W, int OH, int OW, pool_win *q)
{
    if (H % OH || W % OW) return 0;
    *q = (pool_win){H / OH, W / OW, H / OH, W / OW, 1, 1, 0, 0, 0, 0};
    return 1;
}

void tr_cpu_adaptive_avgpool_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]], *yt = &g->tensors[nd->out];
    const int H = xt->h, W = xt->w, OH = yt->h, OW = yt->w, planes = n * xt->c;
    const int64_t HW = (int64_t)H * W, P = (int64_t)OH * OW;
    pool_win q;
    const int uniform = adaptive_uniform(H, W, OH, OW, &q);
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = xt->data + pl * HW;
        float *yp = yt->data + pl * P;
        if (uniform) {
            avgpool_plane_constant(yp, xp, H, W, OH, OW, &q);
            continue;
        }
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
    pool_win q;
    const int uniform = adaptive_uniform(H, W, OH, OW, &q), set = tr_cpu_sets(nd, 0);
#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *dxp = xt->grad + pl * HW;
        const float *dyp = yt->grad + pl * P;
        if (set) memset(dxp, 0, sizeof(float) * (size_t)HW);
        if (uniform) {
            avgpool_plane_constant_backward(dxp, dyp, H, W, OH, OW, &q);
            continue;
        }
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
