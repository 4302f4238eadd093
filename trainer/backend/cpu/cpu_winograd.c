/* 3x3 stride-1 "same" convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray,
 * 2016): each 2x2 block of outputs costs 16 multiplies per (input, output) channel pair instead
 * of 36, as 16 GEMMs of (cout x cin) by (cin x tiles). The forward pass and the input gradient
 * (a 3x3 "same" convolution of dy by the flipped, transposed kernel) both run here; the weight
 * gradient stays on im2col (cpu_conv.c). Each thread takes chunks of c samples through the input
 * transform, its own single-threaded GEMMs and the output transform, c depending on the shape and
 * the batch alone, so the results do not depend on the thread count. */
#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/layers/conv_taps.h"

#include <omp.h>

/* One chunk's transformed inputs and GEMM results, (16, cin, T) and (16, cout, T), within this
 * many bytes: a thread's working set stays in its L2 (a constant: every machine cuts alike). */
#define TR_WINO_CHUNK_BYTES ((int64_t)1 << 20)

static int64_t tiles_of(int H, int W) { return (int64_t)((H + 1) / 2) * ((W + 1) / 2); }

int tr_cpu_wino_chunk(int cin, int cout, int H, int W, int n, int64_t room)
{
    const int64_t per = tr_wino_per_sample(cin, cout, H, W);   /* the builder sizes the scratch by it too */
    if (n < 1 || room < per) return 0;
    int64_t c = TR_WINO_CHUNK_BYTES / ((int64_t)sizeof(float) * per);
    if (c < 1) c = 1;
    if (c > n) c = n;
    if (n >= 2 && 2 * c * per > room) c = room / (2 * per);   /* two threads' slabs side by side */
    if (c < 1) c = 1;
    /* an even number of nearly equal chunks, so two threads get the same work */
    int64_t k = (n + c - 1) / c;
    if (k > 1) k += k & 1;
    if (k > n) k = n;
    return (int)((n + k - 1) / k);
}

/* u (16, rows, cols) from w (cout, cin, 3, 3): U = G g G^T per kernel, G = [1 0 0; .5 .5 .5;
 * .5 -.5 .5; 0 0 1]. For the forward rows = cout, cols = cin and g = w[co][ci]; for the input
 * gradient rows = cin, cols = cout and g = w[co][ci] turned by 180 degrees. */
void tr_cpu_wino_weights(float *u, const float *w, int cout, int cin, int for_dx)
{
    const int rows = for_dx ? cin : cout, cols = for_dx ? cout : cin;
    const int64_t plane = (int64_t)rows * cols;
#pragma omp parallel for schedule(static)
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++) {
            const float *k = w + ((int64_t)co * cin + ci) * 9;
            float g[3][3], t[4][3];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = for_dx ? k[(2 - i) * 3 + (2 - j)] : k[i * 3 + j];
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            const int64_t at = for_dx ? (int64_t)ci * cols + co : (int64_t)co * cols + ci;
            for (int i = 0; i < 4; i++) {
                float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                              t[i][2]};
                for (int j = 0; j < 4; j++) u[(i * 4 + j) * plane + at] = r[j];
            }
        }
}

/* v[xi*ldv + t] = (B^T d B)[xi] for every tile t of one (H, W) plane, d the 4x4 input window at
 * rows 2*ti-1.., columns 2*tj-1.. (zero outside), B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]:
 * per row of tiles, B^T down the columns of a zero-padded strip of four rows, then B along the
 * tiles, each step a loop over contiguous values the compiler vectorizes. */
DEBA_AVX2_CLONES
static void input_tiles(float *v, int64_t ldv, const float *x, int H, int W)
{
    const int th = (H + 1) / 2, tw = (W + 1) / 2, pw = 2 * tw + 2;   /* input columns -1 .. 2*tw */
    float pad[4][TR_WINO_MAX_W + 4], t[4][TR_WINO_MAX_W + 4];
    for (int ti = 0; ti < th; ti++) {
        for (int i = 0; i < 4; i++) {
            const int r = 2 * ti - 1 + i;
            float *p = pad[i];
            if (r < 0 || r >= H) {
                for (int c = 0; c < pw; c++) p[c] = 0.f;
                continue;
            }
            p[0] = 0.f;
            for (int c = 0; c < W; c++) p[c + 1] = x[(int64_t)r * W + c];
            for (int c = W + 1; c < pw; c++) p[c] = 0.f;
        }
#pragma omp simd
        for (int c = 0; c < pw; c++) {
            t[0][c] = pad[0][c] - pad[2][c];
            t[1][c] = pad[1][c] + pad[2][c];
            t[2][c] = pad[2][c] - pad[1][c];
            t[3][c] = pad[1][c] - pad[3][c];
        }
        float *o = v + (int64_t)ti * tw;
        for (int k = 0; k < 4; k++) {
            const float *r = t[k];
            float *o0 = o + (4 * k) * ldv, *o1 = o0 + ldv, *o2 = o1 + ldv, *o3 = o2 + ldv;
#pragma omp simd
            for (int tj = 0; tj < tw; tj++) {
                const float a = r[2 * tj], b = r[2 * tj + 1], c = r[2 * tj + 2], d = r[2 * tj + 3];
                o0[tj] = a - c;
                o1[tj] = b + c;
                o2[tj] = c - b;
                o3[tj] = b - d;
            }
        }
    }
}

/* One output plane from its tiles' 16 GEMM results m[xi*ldm + t]: Y = A^T M A + bias,
 * A^T = [1 1 1 0; 0 1 -1 -1], written (add = 0) or added (add = 1) into y, edges clipped; per row
 * of tiles, vectorized along the tiles into two output rows, then copied out. */
DEBA_AVX2_CLONES
static void output_tiles(float *y, const float *m, int64_t ldm, int H, int W, float bias, int add)
{
    const int th = (H + 1) / 2, tw = (W + 1) / 2;
    float out[2][TR_WINO_MAX_W + 2];
    for (int ti = 0; ti < th; ti++) {
        const float *s = m + (int64_t)ti * tw;
#pragma omp simd
        for (int tj = 0; tj < tw; tj++) {
            float a[16];
            for (int k = 0; k < 16; k++) a[k] = s[k * ldm + tj];
            float r0[4], r1[4];
            for (int j = 0; j < 4; j++) {
                r0[j] = a[j] + a[4 + j] + a[8 + j];
                r1[j] = a[4 + j] - a[8 + j] - a[12 + j];
            }
            out[0][2 * tj] = r0[0] + r0[1] + r0[2] + bias;
            out[0][2 * tj + 1] = r0[1] - r0[2] - r0[3] + bias;
            out[1][2 * tj] = r1[0] + r1[1] + r1[2] + bias;
            out[1][2 * tj + 1] = r1[1] - r1[2] - r1[3] + bias;
        }
        for (int i = 0; i < 2 && 2 * ti + i < H; i++) {
            float *yr = y + (int64_t)(2 * ti + i) * W;
            const float *src = out[i];
            if (add) {
#pragma omp simd
                for (int c = 0; c < W; c++) yr[c] += src[c];
            } else {
#pragma omp simd
                for (int c = 0; c < W; c++) yr[c] = src[c];
            }
        }
    }
}

/* y (n, cout, H, W) = (or +=, add = 1) conv3x3(x (n, cin, H, W)) with padding 1 + b, from the
 * transformed kernels u (16, cout, cin). The scratch holds room floats, at least one slab of c. */
void tr_cpu_wino_conv(float *y, const float *x, const float *u, const float *b, int n, int cin, int cout, int H,
                      int W, int add, float *scratch, int64_t room, int c)
{
    const int chunks = (n + c - 1) / c;
    const int64_t slab = c * tr_wino_per_sample(cin, cout, H, W), tp = tiles_of(H, W), HW = (int64_t)H * W;
    int team = omp_get_max_threads();
    if (room / slab < team) team = (int)(room / slab);
    if (team > chunks) team = chunks;
    if (team < 1) team = 1;
#pragma omp parallel num_threads(team)
    {
        float *v = scratch + omp_get_thread_num() * slab, *m = v + 16 * (int64_t)c * tp * cin;
#pragma omp for schedule(static)
        for (int k = 0; k < chunks; k++) {
            const int s0 = k * c, mk = n - s0 < c ? n - s0 : c;
            const int64_t T = mk * tp;
            for (int s = 0; s < mk; s++)
                for (int ci = 0; ci < cin; ci++)
                    input_tiles(v + (int64_t)ci * T + s * tp, (int64_t)cin * T, x + ((int64_t)(s0 + s) * cin + ci) * HW,
                                H, W);
            for (int xi = 0; xi < 16; xi++)
                tr_cpu_sgemm(0, 0, cout, (int)T, cin, 1.f, u + (int64_t)xi * cout * cin, cin, v + (int64_t)xi * cin * T,
                             (int)T, 0.f, m + (int64_t)xi * cout * T, (int)T);
            for (int s = 0; s < mk; s++)
                for (int co = 0; co < cout; co++)
                    output_tiles(y + ((int64_t)(s0 + s) * cout + co) * HW, m + (int64_t)co * T + s * tp,
                                 (int64_t)cout * T, H, W, b ? b[co] : 0.f, add);
        }
    }
}
