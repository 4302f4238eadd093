/* Window geometry shared by the conv/pool builders and the CPU kernels: the output size of a
 * window, and which taps of a convolution kernel ever read the input rather than the padding
 * (so the builder's scratch sizes and the kernels' GEMM shapes agree). */
#ifndef TR_CONV_TAPS_H
#define TR_CONV_TAPS_H

#define TR_CONV_MAX_K 16
#define TR_CONV_MAX_TAPS (TR_CONV_MAX_K * TR_CONV_MAX_K)

/* The pooling divisor below is shared with the CUDA kernels (cuda_dnn.cu). */
#ifdef __CUDACC__
#define TR_WIN_HD __host__ __device__
#else
#define TR_WIN_HD
#endif

/* Outputs along one axis of `in` elements for a window of k taps at stride s, dilation d, with
 * pa padding before and pb after: floor or ceil of (in + pa + pb - d*(k-1) - 1)/s, plus one;
 * ceil_mode drops a last window that would start in the trailing padding (as PyTorch). 0 when
 * even one window does not fit. */
static inline int tr_win_out(int in, int k, int s, int d, int pa, int pb, int ceil_mode)
{
    const long long span = (long long)in + pa + pb - (long long)d * (k - 1) - 1;
    if (span < 0) return 0;
    long long o = (ceil_mode ? span + s - 1 : span) / s + 1;
    if (ceil_mode && (o - 1) * s >= (long long)in + pa) o--;
    return o > 0x7fffffff ? 0 : (int)o;
}

/* Whether tap `t` (offset t*d - pa from a window's start) reads the input for some output along
 * an axis: some o in [0, out) with 0 <= o*s - pa + t*d < in. */
static inline int tr_tap_live(int t, int in, int out, int s, int d, int pa)
{
    for (int o = 0; o < out; o++) {
        const int i = o * s - pa + t * d;
        if (i >= 0 && i < in) return 1;
    }
    return 0;
}

/* Fills taps[] with ki*kw + kj for every tap that lands inside the H x W input for at least one
 * of the OH x OW outputs; returns how many (kh*kw unless the map is smaller than the padding
 * around it, e.g. one live tap for a 3x3 kernel with padding 1 on a 1x1 map). */
static inline int tr_conv_live_taps(int H, int W, int OH, int OW, int kh, int kw, int sh, int sw, int dh, int dw,
                                    int pt, int pl, int *taps)
{
    int n = 0;
    for (int ki = 0; ki < kh; ki++) {
        if (!tr_tap_live(ki, H, OH, sh, dh, pt)) continue;
        for (int kj = 0; kj < kw; kj++)
            if (tr_tap_live(kj, W, OW, sw, dw, pl)) taps[n++] = ki * kw + kj;
    }
    return n;
}

/* Whether the CPU backend runs this convolution by Winograd's F(2x2, 3x3)
 * (trainer/backend/cpu/cpu_winograd.c): 3x3, stride 1, undilated, ungrouped, padding 1 on every
 * side (so the output is H x W), maps of at least TR_WINO_MIN_HW per side, at least
 * TR_WINO_MIN_CIN input and TR_WINO_MIN_COUT output channels (bench_conv, docs/performance.md:
 * on 4x4 maps and with 32 input channels the 16 small GEMMs and the transforms cost more than the
 * 2.25x fewer multiplies save). The builder sizes the scratch by the same rule. */
#define TR_WINO_MIN_HW 8
#ifndef TR_WINO_MIN_CIN   /* -DTR_WINO_MIN_CIN=... : bench builds without Winograd */
#define TR_WINO_MIN_CIN 64
#endif
#define TR_WINO_MIN_COUT 32
#define TR_WINO_MAX_W 256   /* the transforms' row strips live on the stack */
static inline int tr_conv_winograd(int cin, int cout, int groups, int kh, int kw, int sh, int sw, int dh, int dw,
                                   int pt, int pl, int pb, int pr, int H, int W)
{
    return groups == 1 && kh == 3 && kw == 3 && sh == 1 && sw == 1 && dh == 1 && dw == 1 && pt == 1 && pl == 1 &&
           pb == 1 && pr == 1 && H >= TR_WINO_MIN_HW && W >= TR_WINO_MIN_HW && W <= TR_WINO_MAX_W && cin >= TR_WINO_MIN_CIN &&
           cout >= TR_WINO_MIN_COUT;
}

/* Floats of the Winograd scratch: the transformed kernels (fixed), and per sample a chunk's
 * transformed inputs and GEMM results, 16 per 2x2 tile and channel on either side. */
static inline long long tr_wino_fixed(int cin, int cout) { return 16LL * cin * cout; }
static inline long long tr_wino_per_sample(int cin, int cout, int H, int W)
{
    return 16LL * ((H + 1) / 2) * ((W + 1) / 2) * (cin + cout);
}

/* The taps t in [*t0, *t1) of a window starting at `start` (taps start + t*d, t < k) that fall
 * in [lo, hi); an empty range when none does. */
static inline TR_WIN_HD void tr_win_tap_range(int start, int k, int d, int lo, int hi, int *t0, int *t1)
{
    int a, b;
    if (d == 1) {   /* no divisions for the undilated windows of the built-in models */
        a = start >= lo ? 0 : lo - start;
        b = start >= hi ? 0 : hi - start;
    } else {
        a = start >= lo ? 0 : (lo - start + d - 1) / d;
        b = start >= hi ? 0 : (hi - start + d - 1) / d;
    }
    if (b > k) b = k;
    if (a > b) a = b;
    *t0 = a;
    *t1 = b;
}

static inline TR_WIN_HD int tr_win_taps_in(int start, int k, int d, int lo, int hi)
{
    int t0, t1;
    tr_win_tap_range(start, k, d, lo, hi, &t0, &t1);
    return t1 - t0;
}

/* The divisor of average-pool output (oh, ow), as PyTorch: with count_include_pad, the taps
 * inside the padded input (a ceil_mode window's overhang past the bottom/right padding does not
 * count); without, the taps inside the input. 0 for a window of padding only without
 * count_include_pad (PyTorch refuses such pads; the output is then 0, not 0/0). */
static inline TR_WIN_HD int tr_pool_avg_count(int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                                              int pb, int pr, int count_include_pad, int H, int W, int oh, int ow)
{
    const int hs = oh * sh - pt, ws = ow * sw - pl;
    if (count_include_pad) return tr_win_taps_in(hs, kh, dh, -pt, H + pb) * tr_win_taps_in(ws, kw, dw, -pl, W + pr);
    return tr_win_taps_in(hs, kh, dh, 0, H) * tr_win_taps_in(ws, kw, dw, 0, W);
}

#endif
