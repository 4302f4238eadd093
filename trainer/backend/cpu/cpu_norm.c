/* BatchNorm2d on the CPU, one thread per block of channels. Forward saves the mean and
 * 1/sqrt(var + eps) it normalised with (nd->saved: mean (C), then rstd (C); not when NULL, in
 * the inference plan); backward uses them.
 * Sums run in float within one (sample, channel) plane and in double across planes, always in
 * sample order, so results do not depend on the thread count. */
#include "trainer/backend/cpu/cpu_kernels.h"

#include <math.h>
#include <omp.h>

/* Channels per work item: enough neighbouring channels that each sample's slice is a contiguous
 * run of at least BN_RUN floats (4 KiB, a page), so the passes stream through memory instead of
 * hopping between short strided planes. Once the batch's tensor no longer stays in cache from
 * the op before, that is what BN costs: resnet18's BNs, forward and backward on one thread, per
 * sample from batch 16 to 512 went 150 -> 385 us with one plane (or 16 floats) per run, 144 ->
 * 256 with 256-float runs and 164 -> 199 with 1024 (bench_scaling, docs/performance.md).
 * Blocks stay few enough to share out among the threads. Each channel's sums run in sample
 * order whatever the block, so the results do not depend on it. */
#define BN_RUN 1024

static int bn_block(int64_t HW, int C)
{
    int cb = HW >= BN_RUN ? 1 : (int)((BN_RUN + HW - 1) / HW);
    const int T = omp_get_max_threads(), per_thread = (C + T - 1) / T;
    if (cb > per_thread) cb = per_thread;
    return cb < 1 ? 1 : cb;
}

static float plane_sum(const float *p, int64_t len)
{
    float a = 0.f;
#pragma omp simd reduction(+ : a)
    for (int64_t j = 0; j < len; j++) a += p[j];
    return a;
}

static float plane_sqdev(const float *p, int64_t len, float mu)
{
    float a = 0.f;
#pragma omp simd reduction(+ : a)
    for (int64_t j = 0; j < len; j++) a += (p[j] - mu) * (p[j] - mu);
    return a;
}

void tr_cpu_batchnorm_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]];
    const float *x = xt->data;
    /* fused with the ReLU after it (tr_node.relu_out): write relu(bn(x)) into the ReLU's output */
    const int fuse = nd->relu_out && g->fusing;
    float *y = g->tensors[fuse ? nd->relu_out : nd->out].data;
    const int C = xt->c;
    const int64_t HW = (int64_t)xt->h * xt->w, M = (int64_t)n * HW;
    const float *w = tr_cpu_param(g, nd, 0), *b = tr_cpu_param(g, nd, 1);
    float *rmean = g->stats + nd->attr.bn.stat_off, *rvar = rmean + C;
    /* NULL in the inference plan: nobody runs backward, nothing is saved */
    float *mean = nd->saved, *rstd = nd->saved ? nd->saved + C : NULL;
    const float eps = nd->attr.bn.eps, mom = nd->attr.bn.momentum;
    const int training = g->training, cb = bn_block(HW, C), blocks = (C + cb - 1) / cb;
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < blocks; bk++) {
        const int c0 = bk * cb, c1 = c0 + cb < C ? c0 + cb : C;
        float scale[BN_RUN], shift[BN_RUN];
        double acc[BN_RUN], mu[BN_RUN];
        if (training) {
            for (int c = c0; c < c1; c++) acc[c - c0] = 0;
            for (int i = 0; i < n; i++)
                for (int c = c0; c < c1; c++) acc[c - c0] += plane_sum(x + ((int64_t)i * C + c) * HW, HW);
            for (int c = c0; c < c1; c++) mu[c - c0] = acc[c - c0] / (double)M, acc[c - c0] = 0;
            /* two passes: the variance does not lose digits to a large mean */
            for (int i = 0; i < n; i++)
                for (int c = c0; c < c1; c++)
                    acc[c - c0] += plane_sqdev(x + ((int64_t)i * C + c) * HW, HW, (float)mu[c - c0]);
        }
        for (int c = c0; c < c1; c++) {
            double m = rmean[c], var = rvar[c];
            if (training) {
                const double v = acc[c - c0];
                m = mu[c - c0];
                var = v / (double)M;
                /* PyTorch keeps the unbiased variance in the running estimate */
                const double unbiased = M > 1 ? v / (double)(M - 1) : var;
                rmean[c] = (float)((1.0 - mom) * rmean[c] + mom * m);
                rvar[c] = (float)((1.0 - mom) * rvar[c] + mom * unbiased);
            }
            const float rs = (float)(1.0 / sqrt(var + eps));
            if (mean) {
                mean[c] = (float)m;
                rstd[c] = rs;
            }
            scale[c - c0] = w[c] * rs;
            shift[c - c0] = b[c] - (float)m * scale[c - c0];
        }
        for (int i = 0; i < n; i++)
            for (int c = c0; c < c1; c++) {
                const float *xp = x + ((int64_t)i * C + c) * HW;
                float *yp = y + ((int64_t)i * C + c) * HW;
                const float sc = scale[c - c0], sh = shift[c - c0];
                if (fuse) {
#pragma omp simd
                    for (int64_t j = 0; j < HW; j++) {
                        const float v = xp[j] * sc + sh;
                        yp[j] = v > 0.f ? v : 0.f;   /* tr_act_forward's ReLU */
                    }
                } else {
#pragma omp simd
                    for (int64_t j = 0; j < HW; j++) yp[j] = xp[j] * sc + sh;
                }
            }
    }
}

void tr_cpu_batchnorm_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]];
    const float *x = xt->data;
    float *dx = xt->grad;
    /* fused (tr_node.relu_out): the ReLU's gradient, masked by its output as the ReLU's backward
     * would (y > 0 exactly when its input was) */
    const int fuse = nd->relu_out && g->fusing;
    const float *dy = g->tensors[fuse ? nd->relu_out : nd->out].grad, *ry = fuse ? g->tensors[nd->relu_out].data : NULL;
    const int C = xt->c;
    const int64_t HW = (int64_t)xt->h * xt->w, M = (int64_t)n * HW;
    const float *w = tr_cpu_param(g, nd, 0);
    float *dw = tr_cpu_pgrad(g, nd, 0), *db = tr_cpu_pgrad(g, nd, 1);
    const float *mean = nd->saved, *rstd = nd->saved + C;
    const int training = g->training, cb = bn_block(HW, C), blocks = (C + cb - 1) / cb;
    const int set = tr_cpu_sets(nd, 0);
#pragma omp parallel for schedule(static)
    for (int bk = 0; bk < blocks; bk++) {
        const int c0 = bk * cb, c1 = c0 + cb < C ? c0 + cb : C;
        double sdy[BN_RUN], sdyx[BN_RUN];   /* Σ dy, Σ dy * xhat */
        for (int c = c0; c < c1; c++) sdy[c - c0] = sdyx[c - c0] = 0;
        for (int i = 0; i < n; i++)
            for (int c = c0; c < c1; c++) {
                const float *xp = x + ((int64_t)i * C + c) * HW;
                const float *dp = dy + ((int64_t)i * C + c) * HW;
                const float mu = mean[c];
                float a = 0.f, bb = 0.f;
                if (fuse) {
                    const float *rp = ry + ((int64_t)i * C + c) * HW;
#pragma omp simd reduction(+ : a, bb)
                    for (int64_t j = 0; j < HW; j++) {
                        /* both loads unconditional, so the select vectorises */
                        const float dv = dp[j], r = rp[j], d = r > 0.f ? dv : 0.f;
                        a += d;
                        bb += d * (xp[j] - mu);
                    }
                } else {
#pragma omp simd reduction(+ : a, bb)
                    for (int64_t j = 0; j < HW; j++) {
                        a += dp[j];
                        bb += dp[j] * (xp[j] - mu);
                    }
                }
                sdy[c - c0] += a;
                sdyx[c - c0] += bb;
            }
        float k[BN_RUN], ma[BN_RUN], mb[BN_RUN];
        for (int c = c0; c < c1; c++) {
            const float rs = rstd[c];
            sdyx[c - c0] *= rs;
            db[c] += (float)sdy[c - c0];
            dw[c] += (float)sdyx[c - c0];
            k[c - c0] = w[c] * rs;
            /* train: the batch statistics depend on x too; eval: a fixed affine map */
            ma[c - c0] = training ? (float)(sdy[c - c0] / (double)M) : 0.f;
            mb[c - c0] = training ? (float)(sdyx[c - c0] / (double)M) * rs : 0.f;
        }
        if (!dx) continue;
        for (int i = 0; i < n; i++)
            for (int c = c0; c < c1; c++) {
                const float *xp = x + ((int64_t)i * C + c) * HW;
                const float *dp = dy + ((int64_t)i * C + c) * HW;
                float *gp = dx + ((int64_t)i * C + c) * HW;
                const float kc = k[c - c0], mac = ma[c - c0], mbc = mb[c - c0], mu = mean[c];
                if (fuse) {
                    const float *rp = ry + ((int64_t)i * C + c) * HW;
                    if (set) {
#pragma omp simd
                        for (int64_t j = 0; j < HW; j++) {
                            const float dv = dp[j], r = rp[j];
                            gp[j] = kc * ((r > 0.f ? dv : 0.f) - mac - (xp[j] - mu) * mbc);
                        }
                    } else {
#pragma omp simd
                        for (int64_t j = 0; j < HW; j++) {
                            const float dv = dp[j], r = rp[j];
                            gp[j] += kc * ((r > 0.f ? dv : 0.f) - mac - (xp[j] - mu) * mbc);
                        }
                    }
                } else if (set) {
#pragma omp simd
                    for (int64_t j = 0; j < HW; j++) gp[j] = kc * (dp[j] - mac - (xp[j] - mu) * mbc);
                } else {
#pragma omp simd
                    for (int64_t j = 0; j < HW; j++) gp[j] += kc * (dp[j] - mac - (xp[j] - mu) * mbc);
                }
            }
    }
}
