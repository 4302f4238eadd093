/* The conv2d builder: shape, torchvision-default parameters, FLOPs, and the im2col scratch the
 * CPU backend's GEMMs need. */
#include "trainer/layers.h"
#include "trainer/layers/conv_taps.h"

/* A GEMM over fewer columns than this leaves OpenBLAS starved on small feature maps (4x4 has 16
 * columns per sample), so the CPU backend batches ceil(this / (OH*OW)) samples per GEMM. */
#define TR_CONV_GEMM_COLUMNS 2048

int tr_conv2d(tr_graph *g, const char *name, int x, int cout, int k, int stride, int pad,
              int groups, int bias, const tr_init *w_init, const tr_init *b_init)
{
    if (g->failed) return -1;
    const tr_tensor *t = tr_graph_tensor(g, x);
    if (!t) return tr_graph_fail(g, "%s: input %d is not a tensor of this graph", name, x);
    const int cin = t->c, H = t->h, W = t->w;
    if (k > TR_CONV_MAX_K)
        return tr_graph_fail(g, "%s: kernel size %d is larger than the %d supported", name, k, TR_CONV_MAX_K);
    if (k <= 0 || stride <= 0 || pad < 0 || groups <= 0 || cout <= 0)
        return tr_graph_fail(g, "%s: invalid conv2d arguments (out %d, kernel %d, stride %d, pad %d, groups %d)",
                             name, cout, k, stride, pad, groups);
    if (cin % groups || cout % groups)
        return tr_graph_fail(g, "%s: %d input and %d output channels are not divisible by %d groups", name, cin,
                             cout, groups);
    if (H + 2 * pad < k || W + 2 * pad < k)
        return tr_graph_fail(g, "%s: a %dx%d input with padding %d is smaller than the %dx%d kernel", name, H, W,
                             pad, k, k);
    const int OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
    tr_node *nd = tr_graph_add_node(g, TR_OP_CONV2D, name, &x, 1, cout, OH, OW);
    if (!nd) return -1;
    nd->attr.conv = (tr_conv_attr){cin, cout, k, stride, pad, groups, bias ? 1 : 0};

    const int64_t P = (int64_t)OH * OW, kg = (int64_t)(cin / groups) * k * k;
    nd->flops = 2.0 * (double)cout * (double)P * (double)kg + (bias ? (double)cout * P : 0.0);
    if (groups == cin && cin == cout && groups > 1) {
        nd->ws_per_sample = 0;   /* depthwise: direct loops, no columns */
    } else {
        int taps[TR_CONV_MAX_TAPS];
        const int nt = tr_conv_live_taps(H, W, OH, OW, k, stride, pad, taps);
        const int64_t nb = P >= TR_CONV_GEMM_COLUMNS ? 1 : (TR_CONV_GEMM_COLUMNS + P - 1) / P;
        const int pointwise = k == 1 && stride == 1 && pad == 0;
        /* columns (cin*live taps, nb*P), plus the GEMM output (cout, nb*P) when it is not NCHW;
         * weights and their grads packed to the live taps when some taps only see padding */
        nd->ws_per_sample = nb == 1 && pointwise ? 0 : (int64_t)cin * nt * P + (nb > 1 ? cout * P : 0);
        nd->ws_max_samples = (int)nb;
        nd->ws_fixed = nt < k * k ? 2 * (int64_t)cout * (cin / groups) * nt : 0;
    }

    tr_init wi = w_init ? *w_init : (tr_init){TR_INIT_TORCH_DEFAULT, 0.f};
    /* torch: fan_in = (cin/groups)*k*k, fan_out = cout*k*k; the bias bound uses the weight's fan_in */
    if (tr_graph_add_param(g, nd, "weight", (int64_t)cout * kg, kg, (int64_t)cout * k * k, wi) < 0) return -1;
    if (bias) {
        tr_init bi = b_init ? *b_init : (tr_init){TR_INIT_TORCH_DEFAULT, 0.f};
        if (tr_graph_add_param(g, nd, "bias", cout, kg, (int64_t)cout * k * k, bi) < 0) return -1;
    }
    return nd->out;
}
