/* Which taps of a convolution kernel ever read the input rather than the padding: shared by
 * the conv2d builder (scratch sizes) and the CPU kernels, so both agree on the GEMM shapes. */
#ifndef TR_CONV_TAPS_H
#define TR_CONV_TAPS_H

#define TR_CONV_MAX_K 16
#define TR_CONV_MAX_TAPS (TR_CONV_MAX_K * TR_CONV_MAX_K)

/* Fills taps[] with ki*k + kj for every tap that lands inside the H x W input for at least one
 * of the OH x OW outputs; returns how many (k*k unless the map is smaller than the padding
 * around it, e.g. one live tap for a 3x3 kernel with padding 1 on a 1x1 map). */
static inline int tr_conv_live_taps(int H, int W, int OH, int OW, int k, int stride, int pad, int *taps)
{
    int n = 0;
    for (int ki = 0; ki < k; ki++) {
        /* some oh in [0, OH) with 0 <= oh*stride - pad + ki < H */
        int row = 0;
        for (int oh = 0; oh < OH && !row; oh++) row = oh * stride - pad + ki >= 0 && oh * stride - pad + ki < H;
        for (int kj = 0; kj < k; kj++) {
            int col = 0;
            for (int ow = 0; ow < OW && !col; ow++) col = ow * stride - pad + kj >= 0 && ow * stride - pad + kj < W;
            if (row && col) taps[n++] = ki * k + kj;
        }
    }
    return n;
}

#endif
