/* Element-wise math written once: the CPU loops and the CUDA kernels both call these, so the
 * CPU tests exercise the arithmetic the GPU runs. */
#ifndef TR_ELEMENTWISE_H
#define TR_ELEMENTWISE_H

#include <math.h>
#include "trainer/graph.h"

#ifdef __CUDACC__
#define TR_HD __host__ __device__
#else
#define TR_HD
#endif

/* y = f(x) */
TR_HD static inline float tr_act_forward(tr_act kind, float x)
{
    switch (kind) {
    case TR_ACT_RELU: return x > 0.f ? x : 0.f;
    case TR_ACT_RELU6: return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
    case TR_ACT_SIGMOID: return 1.f / (1.f + expf(-x));
    case TR_ACT_SILU: return x / (1.f + expf(-x));
    case TR_ACT_HSIGMOID: return x <= -3.f ? 0.f : (x >= 3.f ? 1.f : x / 6.f + 0.5f);
    case TR_ACT_HSWISH: return x <= -3.f ? 0.f : (x >= 3.f ? x : x * (x + 3.f) / 6.f);
    case TR_ACT_GELU: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    default: return x;
    }
}

/* dL/dx from x and dL/dy. PyTorch's conventions at the kinks: relu'(0) = 0, relu6' is 0 at 0
 * and 6, hardsigmoid' is 1/6 only strictly inside (-3, 3), hardswish' = x/3 + 0.5 on [-3, 3]
 * ... as torch's hardswish_backward: 0 below -3, 1 above 3, else x/3 + 0.5. */
TR_HD static inline float tr_act_backward(tr_act kind, float x, float dy)
{
    switch (kind) {
    case TR_ACT_RELU: return x > 0.f ? dy : 0.f;
    case TR_ACT_RELU6: return (x > 0.f && x < 6.f) ? dy : 0.f;
    case TR_ACT_SIGMOID: { float s = 1.f / (1.f + expf(-x)); return dy * s * (1.f - s); }
    case TR_ACT_SILU: { float s = 1.f / (1.f + expf(-x)); return dy * s * (1.f + x * (1.f - s)); }
    case TR_ACT_HSIGMOID: return (x > -3.f && x < 3.f) ? dy / 6.f : 0.f;
    case TR_ACT_HSWISH: return x < -3.f ? 0.f : (x > 3.f ? dy : dy * (x / 3.f + 0.5f));
    case TR_ACT_GELU: {
        float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
        float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
        return dy * (cdf + x * pdf);
    }
    default: return dy;
    }
}

/* PyTorch SGD for one element (momentum buffer m, weight decay wd, no dampening/nesterov). */
TR_HD static inline void tr_sgd_update(float *p, float g, float *m, float lr, float momentum, float wd)
{
    float d = g + wd * *p;
    *m = momentum * *m + d;
    *p -= lr * *m;
}

#endif
