/* The conv2d builder: shape, torchvision-default parameters, FLOPs, and the im2col scratch the
 * CPU backend's GEMMs need. tr_conv2d is the square, symmetric, undilated case of tr_conv2d_win. */
#include "trainer/layers.h"
#include "trainer/layers/conv_taps.h"

/* Samples per GEMM on the CPU (im2col columns of m samples side by side): TR_CONV_GEMM_COLUMNS
 * columns, as many as keep the column block and the GEMM's output within TR_CONV_COL_BYTES when
 * that is fewer, but never fewer than TR_CONV_COLS_PER_COUT per output channel (the weights and
 * their gradient are read and written once per chunk). From sweeping the chunk per resnet18
 * layer (docs/performance.md, "Cost per sample as the batch grows"): 3x3 convs on 2x2 maps with
 * 256 channels (2.4 MB of weights) cost 1.4-2.4x more at 32 columns than at 512-1024, and 14-22%
 * more at 2048 (the 19 MB column block the old 2048-column rule built at batch 512). Those on
 * 8x8 maps with 64 channels ran 6% faster at 512 columns (1.3 MB) than at 2048, but in 4.6x as
 * many chunks of 8 parallel regions each, and a region costs ~100 us, not ~4, when the OpenMP
 * threads spin and another process holds a core: more than the 6% saved. A constant, not the host's cache size, so a plan (and
 * the order of every sum) is the same on every machine. */
#define TR_CONV_GEMM_COLUMNS 2048
#define TR_CONV_COL_BYTES ((int64_t)8 << 20)
#define TR_CONV_COLS_PER_COUT 4
/* The scratch grows with the chunk: wide 1x1 convs (2048 outputs) stop here. */
#define TR_CONV_MAX_COLS 4096

int tr_conv2d_win(tr_graph *g, const char *name, int x, int cout, const tr_win *win, int groups, int bias,
                  const tr_init *w_init, const tr_init *b_init)
{
    if (g->failed) return -1;
    const tr_tensor *t = tr_graph_tensor(g, x);
    if (!t) return tr_graph_fail(g, "%s: input %d is not a tensor of this graph", name, x);
    if (!win) return tr_graph_fail(g, "%s: conv2d without a window", name);
    const tr_win w = *win;
    const int cin = t->c, H = t->h, W = t->w;
    if (w.kh > TR_CONV_MAX_K || w.kw > TR_CONV_MAX_K)
        return tr_graph_fail(g, "%s: kernel %dx%d is larger than the %d supported per axis", name, w.kh, w.kw,
                             TR_CONV_MAX_K);
    if (w.kh <= 0 || w.kw <= 0 || w.sh <= 0 || w.sw <= 0 || w.dh <= 0 || w.dw <= 0 || w.pt < 0 || w.pl < 0 ||
        w.pb < 0 || w.pr < 0 || groups <= 0 || cout <= 0)
        return tr_graph_fail(g,
                             "%s: invalid conv2d arguments (out %d, kernel %dx%d, stride %dx%d, dilation %dx%d, "
                             "pads top %d left %d bottom %d right %d, groups %d)",
                             name, cout, w.kh, w.kw, w.sh, w.sw, w.dh, w.dw, w.pt, w.pl, w.pb, w.pr, groups);
    if (cin % groups || cout % groups)
        return tr_graph_fail(g, "%s: %d input and %d output channels are not divisible by %d groups", name, cin,
                             cout, groups);
    const int OH = tr_win_out(H, w.kh, w.sh, w.dh, w.pt, w.pb, 0), OW = tr_win_out(W, w.kw, w.sw, w.dw, w.pl, w.pr, 0);
    if (OH <= 0 || OW <= 0)
        return tr_graph_fail(g,
                             "%s: a %dx%d input padded by (top %d, left %d, bottom %d, right %d) is smaller than "
                             "the %dx%d kernel dilated by %dx%d",
                             name, H, W, w.pt, w.pl, w.pb, w.pr, w.kh, w.kw, w.dh, w.dw);
    int taps[TR_CONV_MAX_TAPS];
    const int nt = tr_conv_live_taps(H, W, OH, OW, w.kh, w.kw, w.sh, w.sw, w.dh, w.dw, w.pt, w.pl, taps);
    /* an output of biases alone is no convolution, and a GEMM of depth 0 is not one BLAS takes */
    if (nt == 0)
        return tr_graph_fail(g, "%s: every tap of the %dx%d kernel reads only padding on the %dx%d input", name,
                             w.kh, w.kw, H, W);
    tr_node *nd = tr_graph_add_node(g, TR_OP_CONV2D, name, &x, 1, cout, OH, OW);
    if (!nd) return -1;
    nd->attr.conv = (tr_conv_attr){.cin = cin, .cout = cout, .k = w.kh, .stride = w.sh, .pad = w.pt,
                                   .groups = groups, .bias = bias ? 1 : 0, .kh = w.kh, .kw = w.kw, .sh = w.sh,
                                   .sw = w.sw, .dh = w.dh, .dw = w.dw, .pt = w.pt, .pl = w.pl, .pb = w.pb, .pr = w.pr};

    const int kk = w.kh * w.kw;
    const int64_t P = (int64_t)OH * OW, kg = (int64_t)(cin / groups) * kk;
    nd->flops = 2.0 * (double)cout * (double)P * (double)kg + (bias ? (double)cout * P : 0.0);
    if (groups == cin && cin == cout && groups > 1) {
        nd->ws_per_sample = 0;   /* depthwise: direct loops, no columns */
    } else {
        const int64_t by_weights = (int64_t)TR_CONV_COLS_PER_COUT * (cout / groups),
                      by_bytes = TR_CONV_COL_BYTES / ((int64_t)sizeof(float) * ((int64_t)cin * nt + cout));
        int64_t cols = by_bytes < TR_CONV_GEMM_COLUMNS ? by_bytes : TR_CONV_GEMM_COLUMNS;
        if (cols < by_weights) cols = by_weights;
        if (cols > TR_CONV_MAX_COLS) cols = TR_CONV_MAX_COLS;
        const int64_t nb = P >= cols ? 1 : (cols + P - 1) / P;
        const int pointwise = kk == 1 && w.sh == 1 && w.sw == 1 && !(w.pt | w.pl | w.pb | w.pr);
        /* columns (cin*live taps, nb*P), plus the GEMM output (cout, nb*P) when it is not NCHW;
         * weights and their grads packed to the live taps when some taps only see padding */
        nd->ws_per_sample = nb == 1 && pointwise ? 0 : (int64_t)cin * nt * P + (nb > 1 ? cout * P : 0);
        nd->ws_max_samples = (int)nb;
        nd->ws_fixed = nt < kk ? 2 * (int64_t)cout * (cin / groups) * nt : 0;
        if (tr_conv_winograd(cin, cout, groups, w.kh, w.kw, w.sh, w.sw, w.dh, w.dw, w.pt, w.pl, w.pb, w.pr, H, W)) {
            /* transformed kernels, and chunks of Winograd tiles where the columns would be */
            nd->ws_fixed = tr_wino_fixed(cin, cout);
            const int64_t wp = tr_wino_per_sample(cin, cout, H, W);
            if (nd->ws_per_sample < wp) nd->ws_per_sample = wp;
        }
    }

    tr_init wi = w_init ? *w_init : (tr_init){TR_INIT_TORCH_DEFAULT, 0.f};
    /* torch: fan_in = (cin/groups)*kh*kw, fan_out = cout*kh*kw; the bias bound uses the weight's fan_in */
    if (tr_graph_add_param(g, nd, "weight", (int64_t)cout * kg, kg, (int64_t)cout * kk, wi) < 0) return -1;
    if (bias) {
        tr_init bi = b_init ? *b_init : (tr_init){TR_INIT_TORCH_DEFAULT, 0.f};
        if (tr_graph_add_param(g, nd, "bias", cout, kg, (int64_t)cout * kk, bi) < 0) return -1;
    }
    return nd->out;
}

int tr_conv2d(tr_graph *g, const char *name, int x, int cout, int k, int stride, int pad,
              int groups, int bias, const tr_init *w_init, const tr_init *b_init)
{
    const tr_win w = {k, k, stride, stride, 1, 1, pad, pad, pad, pad};
    return tr_conv2d_win(g, name, x, cout, &w, groups, bias, w_init, b_init);
}
