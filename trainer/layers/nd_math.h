/* Element-wise math of the general-shape binary and unary ops (TR_OP_BINARY, TR_OP_UNARY),
 * written once for the CPU loops and the CUDA kernels. Gradients follow PyTorch's autograd
 * formulas (tools/autograd/derivatives.yaml, FunctionsManual.cpp) at the special points. */
#ifndef TR_ND_MATH_H
#define TR_ND_MATH_H

#include <math.h>
#include "trainer/graph.h"

#ifndef TR_HD                /* as in elementwise.h */
#ifdef __CUDACC__
#define TR_HD __host__ __device__
#else
#define TR_HD
#endif
#endif

TR_HD static inline float tr_binary_forward(tr_binary_kind k, float a, float b)
{
    switch (k) {
    case TR_BIN_ADD: return a + b;
    case TR_BIN_SUB: return a - b;
    case TR_BIN_MUL: return a * b;
    case TR_BIN_DIV: return a / b;
    case TR_BIN_POW: return powf(a, b);
    default: return 0.f;
    }
}

/* dL/da from a, b, y = a ∘ b and dy. pow: torch's pow_backward_self, 0 where b == 0 (also at
 * a == 0, where b * a^(b-1) would be 0 * inf). */
TR_HD static inline float tr_binary_grad_a(tr_binary_kind k, float a, float b, float y, float dy)
{
    (void)y;
    switch (k) {
    case TR_BIN_ADD:
    case TR_BIN_SUB: return dy;
    case TR_BIN_MUL: return dy * b;
    case TR_BIN_DIV: return dy / b;
    case TR_BIN_POW: return b == 0.f ? 0.f : dy * (b * powf(a, b - 1.f));
    default: return 0.f;
    }
}

/* dL/db. div: torch's -dy * (a / b) / b. pow: torch's pow_backward_exponent, dy * a^b ln a,
 * 0 where a == 0 and b >= 0 (the limit from the right; a^b is 0 or 1 there), NaN where a < 0
 * (ln a is not real), as PyTorch gives. */
TR_HD static inline float tr_binary_grad_b(tr_binary_kind k, float a, float b, float y, float dy)
{
    switch (k) {
    case TR_BIN_ADD: return dy;
    case TR_BIN_SUB: return -dy;
    case TR_BIN_MUL: return dy * a;
    case TR_BIN_DIV: return -dy * (a / b) / b;
    case TR_BIN_POW: return dy * ((a == 0.f && b >= 0.f) ? 0.f : y * logf(a));
    default: return 0.f;
    }
}

TR_HD static inline float tr_unary_forward(tr_unary_kind k, float x, float pa, float pb)
{
    switch (k) {
    case TR_UN_NEG: return -x;
    case TR_UN_SQRT: return sqrtf(x);
    case TR_UN_ERF: return erff(x);
    case TR_UN_EXP: return expf(x);
    case TR_UN_LOG: return logf(x);
    case TR_UN_TANH: return tanhf(x);
    case TR_UN_RECIP: return 1.f / x;
    case TR_UN_POWC: return powf(x, pa);
    case TR_UN_CLIP: { float v = x < pa ? pa : x; return v > pb ? pb : v; }
    case TR_UN_HSIGMOID: { float v = pa * x + pb; return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
    case TR_UN_AFFINE: return pa * x + pb;
    default: return 0.f;
    }
}

/* dL/dx from x, y = f(x) and dy. sqrt: dy / (2y) (inf at 0, as torch); recip: -dy y²; powc:
 * 0 for the exponent 0, else dy a x^(a-1); clip: dy where a <= x <= b, boundaries included
 * (torch's clamp_backward), so nothing passes when a > b; hsigmoid: dy a strictly inside the
 * linear part 0 < a x + b < 1 (torch's hardsigmoid_backward is 0 at -3 and 3). */
TR_HD static inline float tr_unary_backward(tr_unary_kind k, float x, float y, float dy, float pa, float pb)
{
    switch (k) {
    case TR_UN_NEG: return -dy;
    case TR_UN_SQRT: return dy / (2.f * y);
    case TR_UN_ERF: return dy * 1.1283791670955126f * expf(-x * x);
    case TR_UN_EXP: return dy * y;
    case TR_UN_LOG: return dy / x;
    case TR_UN_TANH: return dy * (1.f - y * y);
    case TR_UN_RECIP: return -dy * (y * y);
    case TR_UN_POWC: return pa == 0.f ? 0.f : dy * (pa * powf(x, pa - 1.f));
    case TR_UN_CLIP: return (x >= pa && x <= pb) ? dy : 0.f;
    case TR_UN_HSIGMOID: { float v = pa * x + pb; return (v > 0.f && v < 1.f) ? dy * pa : 0.f; }
    case TR_UN_AFFINE: return dy * pa;
    default: return 0.f;
    }
}

#endif
