/* BatchNorm2d on the CPU, one thread per channel. Forward saves the mean and 1/sqrt(var + eps)
 * it normalised with (nd->saved: mean (C), then rstd (C)); backward uses them. */
#include "trainer/backend/cpu/cpu_kernels.h"

#include <math.h>

void tr_cpu_batchnorm_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]];
    const float *x = xt->data;
    float *y = g->tensors[nd->out].data;
    const int C = xt->c;
    const int64_t HW = (int64_t)xt->h * xt->w, M = (int64_t)n * HW;
    const float *w = tr_cpu_param(g, nd, 0), *b = tr_cpu_param(g, nd, 1);
    float *rmean = g->stats + nd->attr.bn.stat_off, *rvar = rmean + C;
    float *mean = nd->saved, *rstd = nd->saved + C;
    const float eps = nd->attr.bn.eps, mom = nd->attr.bn.momentum;
    const int training = g->training;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        double mu, var;
        if (training) {
            double s = 0;
            for (int i = 0; i < n; i++) {
                const float *xp = x + ((int64_t)i * C + c) * HW;
#pragma omp simd reduction(+ : s)
                for (int64_t j = 0; j < HW; j++) s += xp[j];
            }
            mu = s / (double)M;
            /* two passes: the variance does not lose digits to a large mean */
            double v = 0;
            for (int i = 0; i < n; i++) {
                const float *xp = x + ((int64_t)i * C + c) * HW;
#pragma omp simd reduction(+ : v)
                for (int64_t j = 0; j < HW; j++) {
                    double d = xp[j] - mu;
                    v += d * d;
                }
            }
            var = v / (double)M;
            /* PyTorch keeps the unbiased variance in the running estimate */
            double unbiased = M > 1 ? v / (double)(M - 1) : var;
            rmean[c] = (float)((1.0 - mom) * rmean[c] + mom * mu);
            rvar[c] = (float)((1.0 - mom) * rvar[c] + mom * unbiased);
        } else {
            mu = rmean[c];
            var = rvar[c];
        }
        float rs = (float)(1.0 / sqrt(var + eps));
        mean[c] = (float)mu;
        rstd[c] = rs;
        const float scale = w[c] * rs, shift = b[c] - (float)mu * scale;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)i * C + c) * HW;
            float *yp = y + ((int64_t)i * C + c) * HW;
#pragma omp simd
            for (int64_t j = 0; j < HW; j++) yp[j] = xp[j] * scale + shift;
        }
    }
}

void tr_cpu_batchnorm_backward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *xt = &g->tensors[nd->in[0]];
    const float *x = xt->data;
    float *dx = xt->grad;
    const float *dy = g->tensors[nd->out].grad;
    const int C = xt->c;
    const int64_t HW = (int64_t)xt->h * xt->w, M = (int64_t)n * HW;
    const float *w = tr_cpu_param(g, nd, 0);
    float *dw = tr_cpu_pgrad(g, nd, 0), *db = tr_cpu_pgrad(g, nd, 1);
    const float *mean = nd->saved, *rstd = nd->saved + C;
    const int training = g->training;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float mu = mean[c], rs = rstd[c];
        double sdy = 0, sdyx = 0;   /* Σ dy, Σ dy * xhat */
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)i * C + c) * HW;
            const float *dp = dy + ((int64_t)i * C + c) * HW;
            float a = 0.f, bb = 0.f;
#pragma omp simd reduction(+ : a, bb)
            for (int64_t j = 0; j < HW; j++) {
                a += dp[j];
                bb += dp[j] * (xp[j] - mu);
            }
            sdy += a;
            sdyx += bb;
        }
        sdyx *= rs;
        db[c] += (float)sdy;
        dw[c] += (float)sdyx;
        if (!dx) continue;
        const float k = w[c] * rs;
        /* train: the batch statistics depend on x too; eval: a fixed affine map */
        const float ma = training ? (float)(sdy / (double)M) : 0.f;
        const float mb = training ? (float)(sdyx / (double)M) * rs : 0.f;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((int64_t)i * C + c) * HW;
            const float *dp = dy + ((int64_t)i * C + c) * HW;
            float *gp = dx + ((int64_t)i * C + c) * HW;
#pragma omp simd
            for (int64_t j = 0; j < HW; j++) gp[j] += k * (dp[j] - ma - (xp[j] - mu) * mb);
        }
    }
}
