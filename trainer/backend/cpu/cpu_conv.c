/* 2-D convolution on the CPU for any window (kh x kw, per-axis stride and dilation, padding
 * before/after each axis): im2col + sgemm over chunks of samples, either each thread on its own
 * few samples or the whole team on each GEMM of the builder's chunks (chosen per layer shape, see
 * "GEMM path"), per-group GEMMs, and a direct OpenMP path for depthwise convolution that needs no
 * column buffer. Kernel taps that only ever read padding (a 3x3 conv on a 1x1 map has one live
 * tap) are left out of the columns and the GEMM; the weights are packed to the live taps in
 * scratch for that. */
#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/layers/conv_taps.h"

#include <omp.h>
#include <string.h>

/* One axis of the window: tap t of output o reads input o*s + t*d - p (p: padding before). */
typedef struct {
    int cin, cout, groups;
    int kh, kw, sh, sw, dh, dw, pt, pl;
    int H, W, OH, OW;
    int64_t HW, P;          /* input and output plane sizes */
    int coutg, Kg;          /* per group: output channels, GEMM depth (cin/groups * live taps) */
    int nt, taps[TR_CONV_MAX_TAPS];   /* live taps ki*kw + kj, ascending */
} conv_geo;

static conv_geo geo_of(const tr_graph *g, const tr_node *nd)
{
    const tr_conv_attr *a = &nd->attr.conv;
    const tr_tensor *x = &g->tensors[nd->in[0]], *y = &g->tensors[nd->out];
    conv_geo q;
    q.cin = a->cin, q.cout = a->cout, q.groups = a->groups;
    q.kh = a->kh, q.kw = a->kw, q.sh = a->sh, q.sw = a->sw, q.dh = a->dh, q.dw = a->dw, q.pt = a->pt, q.pl = a->pl;
    q.H = x->h, q.W = x->w, q.OH = y->h, q.OW = y->w;
    q.HW = (int64_t)q.H * q.W;
    q.P = (int64_t)q.OH * q.OW;
    q.coutg = q.cout / q.groups;
    q.nt = tr_conv_live_taps(q.H, q.W, q.OH, q.OW, q.kh, q.kw, q.sh, q.sw, q.dh, q.dw, q.pt, q.pl, q.taps);
    q.Kg = q.cin / q.groups * q.nt;
    return q;
}

static int all_taps(const conv_geo *q) { return q->nt == q->kh * q->kw; }

/* Offsets of tap (ki, kj) from an output's window origin, padding included: the valid-range
 * and row-pointer arithmetic below all start from these. */
static int row_off(const conv_geo *q, int ki) { return ki * q->dh - q->pt; }
static int col_off(const conv_geo *q, int kj) { return kj * q->dw - q->pl; }

/* Samples per GEMM, as the builder planned the scratch for (ws_max_samples). */
static int chunk_of(const tr_node *nd, int n)
{
    int nb = nd->ws_max_samples > 0 ? nd->ws_max_samples : n;
    return nb < n ? nb : n;
}

/* Winograd's F(2x2, 3x3) (cpu_winograd.c) scratch is the builder's: the transformed kernels in the
 * first tr_wino_fixed floats (wino_u), the threads' tiles in the rest (wino_tiles, wino_room). */
static float *wino_u(tr_graph *g) { return g->ws; }
static float *wino_tiles(tr_graph *g, const conv_geo *q) { return g->ws + tr_wino_fixed(q->cin, q->cout); }
static int64_t wino_room(const tr_node *nd, const conv_geo *q, int n)
{
    return nd->ws_fixed + nd->ws_per_sample * chunk_of(nd, n) - tr_wino_fixed(q->cin, q->cout);
}

/* Winograd for this layer under the caller's choice (the rule, chunk -1, and a shape
 * tr_conv_winograd takes): the chunk of samples per thread for a convolution from cin to cout
 * channels (the forward's, or the input gradient's with the two swapped), or 0 (im2col). */
static int wino_chunk(const conv_geo *q, const tr_node *nd, int n, int chunk, int cin, int cout)
{
    const tr_conv_attr *a = &nd->attr.conv;
    if (chunk != -1 || !tr_conv_winograd(q->cin, q->cout, q->groups, q->kh, q->kw, q->sh, q->sw, q->dh, q->dw,
                                         q->pt, q->pl, a->pb, a->pr, q->H, q->W))
        return 0;
    return tr_cpu_wino_chunk(cin, cout, q->H, q->W, n, wino_room(nd, q, n));
}

/* The input already is the column matrix: 1x1 taps, unit strides, no padding (so OH = H). */
static int is_pointwise(const conv_geo *q)
{
    return q->kh == 1 && q->kw == 1 && q->sh == 1 && q->sw == 1 && q->pt == 0 && q->pl == 0 && q->OH == q->H &&
           q->OW == q->W;
}

/* Small output planes (OW below this) copy through a table of input offsets per kernel tap
 * instead of row-wise memcpy: on 4x4, 2x2 and 1x1 maps the per-row calls cost more than the
 * copying. The table holds taps*P ints on the stack. */
#define TR_CONV_TABLE_OW 16
#define TR_CONV_TABLE_MAX 4096

static int use_table(const conv_geo *q) { return q->OW < TR_CONV_TABLE_OW && q->nt * q->P <= TR_CONV_TABLE_MAX; }

/* tab[p] = input offset within a plane that tap (ki, kj) reads for output p, or -1 (padding). */
static void tap_table(int *tab, int ki, int kj, const conv_geo *q)
{
    for (int oh = 0; oh < q->OH; oh++)
        for (int ow = 0; ow < q->OW; ow++) {
            int ih = oh * q->sh + row_off(q, ki), iw = ow * q->sw + col_off(q, kj);
            tab[oh * q->OW + ow] = ih >= 0 && ih < q->H && iw >= 0 && iw < q->W ? ih * q->W + iw : -1;
        }
}

/* Every live tap's table, tab[t*P + p]; NULL when the plane copies row-wise instead. Each thread
 * builds its own (on its stack) at the start of a parallel region. */
static const int *tap_tables(int *tab, const conv_geo *q)
{
    if (!use_table(q)) return NULL;
    for (int t = 0; t < q->nt; t++) tap_table(tab + t * q->P, q->taps[t] / q->kw, q->taps[t] % q->kw, q);
    return tab;
}

/* Row r (channel, live tap) of the columns of samples [0, m) of x (m, cin, H, W): col has rows
 * of ld floats, sample s at column s*P. A parallel loop over rows and a thread working alone on
 * its own samples both come here. */
static void im2col_row(float *col, int64_t ld, const float *x, int m, const conv_geo *q, const int *tab, int r)
{
    const int nt = q->nt, ci = r / nt;
    float *row = col + r * ld;
    if (tab) {
        const int *tb = tab + (r % nt) * q->P;
        for (int s = 0; s < m; s++) {
            float *dst = row + s * q->P;
            const float *xp = x + ((int64_t)s * q->cin + ci) * q->HW;
            for (int64_t i = 0; i < q->P; i++) dst[i] = tb[i] >= 0 ? xp[tb[i]] : 0.f;
        }
        return;
    }
    const int ki = q->taps[r % nt] / q->kw, kj = q->taps[r % nt] % q->kw;
    int oh0, oh1, ow0, ow1;
    tr_cpu_valid_range(row_off(q, ki), q->sh, q->H, q->OH, &oh0, &oh1);
    tr_cpu_valid_range(col_off(q, kj), q->sw, q->W, q->OW, &ow0, &ow1);
    for (int s = 0; s < m; s++) {
        float *dst = row + s * q->P;
        const float *xp = x + ((int64_t)s * q->cin + ci) * q->HW;
        if (oh0 > 0) memset(dst, 0, sizeof(float) * (size_t)oh0 * q->OW);
        for (int oh = oh0; oh < oh1; oh++) {
            float *d = dst + (int64_t)oh * q->OW;
            const float *xr = xp + (int64_t)(oh * q->sh + row_off(q, ki)) * q->W + col_off(q, kj);
            for (int ow = 0; ow < ow0; ow++) d[ow] = 0.f;
            if (q->sw == 1)
                memcpy(d + ow0, xr + ow0, sizeof(float) * (size_t)(ow1 - ow0));
            else
                for (int ow = ow0; ow < ow1; ow++) d[ow] = xr[ow * q->sw];
            for (int ow = ow1; ow < q->OW; ow++) d[ow] = 0.f;
        }
        if (oh1 < q->OH) memset(dst + (int64_t)oh1 * q->OW, 0, sizeof(float) * (size_t)(q->OH - oh1) * q->OW);
    }
}

/* x (m, cin, H, W) -> col (cin*nt, m*P): row (ci, live tap), column (sample, oh, ow). */
static void im2col(float *col, const float *x, int m, const conv_geo *q)
{
    const int rows = q->cin * q->nt;
#pragma omp parallel
    {
        int tab[TR_CONV_TABLE_MAX];
        const int *tb = tap_tables(tab, q);
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++) im2col_row(col, (int64_t)m * q->P, x, m, q, tb, r);
    }
}

/* dx planes (s, ci), s in [s0, s1), += the column rows of channel ci (rows of ld floats, sample
 * s at column s*P): the adjoint of im2col. Every element adds its taps one at a time in
 * ascending order, whichever loop calls this, so the sum does not depend on how the planes are
 * shared out. With tap tables the channel's taps are outermost: each column row is read front
 * to back while the channel's small planes of dx stay in L1. */
static void col2im_channel(float *dx, const float *dcol, int64_t ld, const conv_geo *q, const int *tab, int ci,
                           int s0, int s1)
{
    const int kw = q->kw, nt = q->nt;
    if (tab) {
        for (int t = 0; t < nt; t++) {
            const float *src = dcol + ((int64_t)ci * nt + t) * ld;
            const int *tb = tab + t * q->P;
            for (int s = s0; s < s1; s++) {
                float *dxp = dx + ((int64_t)s * q->cin + ci) * q->HW;
                const float *sp = src + (int64_t)s * q->P;
                for (int64_t i = 0; i < q->P; i++)
                    if (tb[i] >= 0) dxp[tb[i]] += sp[i];
            }
        }
        return;
    }
    for (int s = s0; s < s1; s++) {
        float *dxp = dx + ((int64_t)s * q->cin + ci) * q->HW;
        for (int t = 0; t < nt; t++) {
            const int ki = q->taps[t] / kw, kj = q->taps[t] % kw;
            const float *src = dcol + ((int64_t)ci * nt + t) * ld + s * q->P;
            int oh0, oh1, ow0, ow1;
            tr_cpu_valid_range(row_off(q, ki), q->sh, q->H, q->OH, &oh0, &oh1);
            tr_cpu_valid_range(col_off(q, kj), q->sw, q->W, q->OW, &ow0, &ow1);
            for (int oh = oh0; oh < oh1; oh++) {
                float *d = dxp + (int64_t)(oh * q->sh + row_off(q, ki)) * q->W + col_off(q, kj);
                const float *sr = src + (int64_t)oh * q->OW;
                if (q->sw == 1)
                    for (int ow = ow0; ow < ow1; ow++) d[ow] += sr[ow];
                else
                    for (int ow = ow0; ow < ow1; ow++) d[ow * q->sw] += sr[ow];
            }
        }
    }
}

/* dx (m, cin, H, W) += col2im(dcol), dcol (cin*nt, m*P): one thread per channel on small maps
 * (tap tables), else per (sample, channel) plane, so no two threads add into the same element. */
static void col2im_add(float *dx, const float *dcol, int m, const conv_geo *q)
{
    const int64_t ld = (int64_t)m * q->P;
#pragma omp parallel
    {
        int tab[TR_CONV_TABLE_MAX];
        const int *tb = tap_tables(tab, q);
        if (tb) {
#pragma omp for schedule(static)
            for (int ci = 0; ci < q->cin; ci++) col2im_channel(dx, dcol, ld, q, tb, ci, 0, m);
        } else {
#pragma omp for collapse(2) schedule(static)
            for (int s = 0; s < m; s++)
                for (int ci = 0; ci < q->cin; ci++) col2im_channel(dx, dcol, ld, q, NULL, ci, s, s + 1);
        }
    }
}

/* The weights (cout, cin/g, kh, kw) restricted to the live taps: (cout, cin/g * nt). */
static void pack_live(float *wc, const float *w, const conv_geo *q)
{
    const int kk = q->kh * q->kw, rows = q->cout * (q->cin / q->groups);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < q->nt; t++) wc[(int64_t)r * q->nt + t] = w[(int64_t)r * kk + q->taps[t]];
}

static void unpack_live_add(float *dw, const float *dwc, const conv_geo *q)
{
    const int kk = q->kh * q->kw, rows = q->cout * (q->cin / q->groups);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < q->nt; t++) dw[(int64_t)r * kk + q->taps[t]] += dwc[(int64_t)r * q->nt + t];
}

/* ---- depthwise (groups == cin == cout): direct loops, parallel over planes ---- */

static void dw_forward(const conv_geo *q, float *y, const float *x, const float *w, const float *b, int n)
{
    const int kh = q->kh, kw = q->kw;
#pragma omp parallel for collapse(2) schedule(static)
    for (int s = 0; s < n; s++)
        for (int c = 0; c < q->cin; c++) {
            const float *xp = x + ((int64_t)s * q->cin + c) * q->HW;
            float *yp = y + ((int64_t)s * q->cin + c) * q->P;
            const float *wc = w + (int64_t)c * kh * kw;
            float bv = b ? b[c] : 0.f;
            for (int64_t i = 0; i < q->P; i++) yp[i] = bv;
            for (int ki = 0; ki < kh; ki++)
                for (int kj = 0; kj < kw; kj++) {
                    float wv = wc[ki * kw + kj];
                    int oh0, oh1, ow0, ow1;
                    tr_cpu_valid_range(row_off(q, ki), q->sh, q->H, q->OH, &oh0, &oh1);
                    tr_cpu_valid_range(col_off(q, kj), q->sw, q->W, q->OW, &ow0, &ow1);
                    for (int oh = oh0; oh < oh1; oh++) {
                        float *yr = yp + (int64_t)oh * q->OW;
                        const float *xr = xp + (int64_t)(oh * q->sh + row_off(q, ki)) * q->W + col_off(q, kj);
                        if (q->sw == 1)
                            for (int ow = ow0; ow < ow1; ow++) yr[ow] += wv * xr[ow];
                        else
                            for (int ow = ow0; ow < ow1; ow++) yr[ow] += wv * xr[ow * q->sw];
                    }
                }
        }
}

static void dw_backward(const conv_geo *q, float *dx, float *dw, float *db, const float *dy,
                        const float *x, const float *w, int n)
{
    const int kh = q->kh, kw = q->kw;
    /* parameter grads: one thread per channel, summing over samples */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < q->cin; c++) {
        float *dwc = dw + (int64_t)c * kh * kw;
        double bsum = 0;
        for (int s = 0; s < n; s++) {
            const float *xp = x + ((int64_t)s * q->cin + c) * q->HW;
            const float *dyp = dy + ((int64_t)s * q->cin + c) * q->P;
            if (db) {
                float acc = 0.f;
#pragma omp simd reduction(+ : acc)
                for (int64_t i = 0; i < q->P; i++) acc += dyp[i];
                bsum += acc;
            }
            for (int ki = 0; ki < kh; ki++)
                for (int kj = 0; kj < kw; kj++) {
                    int oh0, oh1, ow0, ow1;
                    tr_cpu_valid_range(row_off(q, ki), q->sh, q->H, q->OH, &oh0, &oh1);
                    tr_cpu_valid_range(col_off(q, kj), q->sw, q->W, q->OW, &ow0, &ow1);
                    float acc = 0.f;
                    for (int oh = oh0; oh < oh1; oh++) {
                        const float *dr = dyp + (int64_t)oh * q->OW;
                        const float *xr = xp + (int64_t)(oh * q->sh + row_off(q, ki)) * q->W + col_off(q, kj);
                        if (q->sw == 1) {
#pragma omp simd reduction(+ : acc)
                            for (int ow = ow0; ow < ow1; ow++) acc += dr[ow] * xr[ow];
                        } else {
                            for (int ow = ow0; ow < ow1; ow++) acc += dr[ow] * xr[ow * q->sw];
                        }
                    }
                    dwc[ki * kw + kj] += acc;
                }
        }
        if (db) db[c] += (float)bsum;
    }
    if (!dx) return;
#pragma omp parallel for collapse(2) schedule(static)
    for (int s = 0; s < n; s++)
        for (int c = 0; c < q->cin; c++) {
            float *dxp = dx + ((int64_t)s * q->cin + c) * q->HW;
            const float *dyp = dy + ((int64_t)s * q->cin + c) * q->P;
            const float *wc = w + (int64_t)c * kh * kw;
            for (int ki = 0; ki < kh; ki++)
                for (int kj = 0; kj < kw; kj++) {
                    float wv = wc[ki * kw + kj];
                    int oh0, oh1, ow0, ow1;
                    tr_cpu_valid_range(row_off(q, ki), q->sh, q->H, q->OH, &oh0, &oh1);
                    tr_cpu_valid_range(col_off(q, kj), q->sw, q->W, q->OW, &ow0, &ow1);
                    for (int oh = oh0; oh < oh1; oh++) {
                        const float *dr = dyp + (int64_t)oh * q->OW;
                        float *xr = dxp + (int64_t)(oh * q->sh + row_off(q, ki)) * q->W + col_off(q, kj);
                        if (q->sw == 1)
                            for (int ow = ow0; ow < ow1; ow++) xr[ow] += wv * dr[ow];
                        else
                            for (int ow = ow0; ow < ow1; ow++) xr[ow * q->sw] += wv * dr[ow];
                    }
                }
        }
}

static int is_depthwise(const conv_geo *q) { return q->groups == q->cin && q->cin == q->cout && q->groups > 1; }

/* ---- GEMM path ---- */

/* The GEMM work of a batch is shared among the threads in one of two ways:
 * - shared: the builder's chunks of ws_max_samples samples, each put through im2col by the whole
 *   team, one GEMM cut into slabs across it (tr_cpu_sgemm) and a copy-out by the team, three or
 *   more parallel regions per chunk, with a chunk's columns (up to 8 MiB) passing through every
 *   core's cache between them;
 * - per thread: one parallel region for the forward and one for the backward (else, when the
 *   scratch is too small for that, one per builder chunk for the input-gradient half), each
 *   thread taking chunks of c samples through im2col, its own single-threaded GEMMs and the
 *   copy-out or col2im, with the chunk's columns in its own L2.
 * A per-thread chunk is the same GEMM whichever thread runs it, and c depends on the layer's
 * shape and the batch alone, so those results do not depend on the thread count. (OpenBLAS's
 * sums do depend on a GEMM's N, e.g. its direct and small-matrix kernels take only some shapes:
 * the two ways may differ in the last bits.) Per thread, the weight and bias gradients, sums
 * over every sample, are added up in a fixed number of parts of consecutive chunks, then the
 * parts in order (backward_per_thread); the shared way keeps one GEMM per builder chunk. */

/* Per-thread chunks: as many samples as keep the chunk's columns and GEMM output within this
 * many bytes (a constant, not the host's L2, so every machine cuts the same chunks). */
#define TR_CONV_THREAD_BYTES ((int64_t)1 << 20)
/* ...but at least this many columns per output channel of a group, as the builder's chunks
 * (trainer/layers/conv.c): every chunk streams the whole weight matrix through its GEMM, 2.4 MB
 * on resnet18's 2x2 stage, so layers with large weights and small maps want many samples. */
#define TR_CONV_COLS_PER_COUT 4
/* Output maps smaller than this stay shared: on 2x2 and 1x1 maps (resnet18's last two stages,
 * DenseNet's and EfficientNet's) the per-thread way measured level to 8% slower, on 4x4 and
 * larger maps its forward 4-42% faster (bench_conv, docs/performance.md). */
#define TR_CONV_THREAD_MIN_P 16

/* Scratch: [packed weights, packed weight grads when taps are dropped | columns | GEMM output] */
typedef struct {
    float *wc, *dwc, *col, *tmp;
} conv_ws;

static conv_ws ws_of(float *ws, const conv_geo *q, int nb)
{
    conv_ws c;
    const int64_t packed = all_taps(q) ? 0 : (int64_t)q->cout * q->Kg;
    c.wc = ws;
    c.dwc = ws + packed;
    c.col = ws + 2 * packed;
    c.tmp = c.col + (int64_t)q->cin * q->nt * nb * q->P;
    return c;
}

/* The per-thread chunk for this layer and a batch of n samples whose scratch holds nb, or 0 for
 * the shared way (want 0, or fewer than two samples' room). want > 0 asks for that many samples
 * (bench_conv's sweep); want < 0 is the rule: shared below TR_CONV_THREAD_MIN_P outputs per map,
 * else as many samples as TR_CONV_THREAD_BYTES holds (or TR_CONV_COLS_PER_COUT asks), evening the
 * chunks out to an even number of nearly equal ones so two threads get the same work. Never more
 * than half the room, so two threads' chunks fit in the scratch; a third thread and more share
 * the slabs that fit. Depends on the shape and the batch only, never on the thread count. */
static int thread_chunk_of(const conv_geo *q, int nb, int n, int want)
{
    const int room = nb < n ? nb : n;
    if (want == 0 || room < 2 || (want < 0 && q->P < TR_CONV_THREAD_MIN_P)) return 0;
    int c = want;
    if (want < 0) {
        const int64_t per = (int64_t)sizeof(float) * ((int64_t)q->cin * q->nt + q->cout) * q->P,
                      by_weights = ((int64_t)TR_CONV_COLS_PER_COUT * q->coutg + q->P - 1) / q->P;
        int64_t cc = TR_CONV_THREAD_BYTES / per;
        if (cc < by_weights) cc = by_weights;
        c = cc < 1 ? 1 : cc > room ? room : (int)cc;
    }
    if (c > room / 2) c = room / 2;
    if (want < 0) {
        int k = (n + c - 1) / c;
        k += k & 1;
        c = (n + k - 1) / k;
    }
    return c;
}

/* Floats of scratch one thread's chunk of c samples uses: its columns, and the GEMM output
 * unless one sample's (cout, P) result is written straight into y. */
static int64_t slab_of(const conv_geo *q, int c)
{
    if (c == 1 && is_pointwise(q)) return 0;
    return (int64_t)c * q->cin * q->nt * q->P + (c > 1 ? (int64_t)c * q->cout * q->P : 0);
}

/* Threads that get a chunk: no more than the chunks, nor than the slabs the scratch holds. */
static int team_of(int chunks, int64_t slab, int64_t room)
{
    int t = omp_get_max_threads();
    if (slab > 0 && room / slab < t) t = (int)(room / slab);
    if (t > chunks) t = chunks;
    return t < 1 ? 1 : t;
}

/* Plane (s, co) of a chunk's output from the GEMM's (cout, m*P) result, adding the bias; with one
 * sample the GEMM wrote straight into y and only the bias is left to add. */
static inline void copy_out_plane(float *ys, const float *dst, int64_t ld, const conv_geo *q, const float *b,
                                  int m, int s, int co)
{
    float *yo = ys + ((int64_t)s * q->cout + co) * q->P;
    const float *src = dst + (int64_t)co * ld + (int64_t)s * q->P;
    const float bv = b ? b[co] : 0.f;
    if (m == 1) {
#pragma omp simd
        for (int64_t i = 0; i < q->P; i++) yo[i] += bv;
    } else {
#pragma omp simd
        for (int64_t i = 0; i < q->P; i++) yo[i] = src[i] + bv;
    }
}

/* y (n, cout, OH, OW) = conv(x) + b, each thread on its own chunks of c samples. */
static void forward_per_thread(const conv_geo *q, float *y, const float *x, const float *w, const float *b,
                               float *scratch, int64_t room, int n, int c)
{
    const int chunks = (n + c - 1) / c;
    const int64_t slab = slab_of(q, c);
#pragma omp parallel num_threads(team_of(chunks, slab, room))
    {
        int tab[TR_CONV_TABLE_MAX];
        const int *tb = tap_tables(tab, q);
        float *col = scratch + omp_get_thread_num() * slab, *tmp = col + (int64_t)c * q->cin * q->nt * q->P;
#pragma omp for schedule(static)
        for (int k = 0; k < chunks; k++) {
            const int s0 = k * c, m = n - s0 < c ? n - s0 : c;
            const int64_t ld = (int64_t)m * q->P;
            const float *xs = x + (int64_t)s0 * q->cin * q->HW, *cp = xs;
            float *ys = y + (int64_t)s0 * q->cout * q->P;
            if (slab > 0) {
                for (int r = 0; r < q->cin * q->nt; r++) im2col_row(col, ld, xs, m, q, tb, r);
                cp = col;
            }
            float *dst = m == 1 ? ys : tmp;
            for (int gi = 0; gi < q->groups; gi++)
                tr_cpu_sgemm(0, 0, q->coutg, (int)ld, q->Kg, 1.f, w + (int64_t)gi * q->coutg * q->Kg, q->Kg,
                             cp + (int64_t)gi * q->Kg * ld, (int)ld, 0.f, dst + (int64_t)gi * q->coutg * ld, (int)ld);
            if (m == 1 && !b) continue;
            for (int s = 0; s < m; s++)
                for (int co = 0; co < q->cout; co++) copy_out_plane(ys, dst, ld, q, b, m, s, co);
        }
    }
}

/* y = conv(x) + b the shared way, chunk by chunk of the builder's nb samples. */
static void forward_shared(const conv_geo *q, float *y, const float *x, const float *w, const float *b,
                           const conv_ws *ws, int n, int nb)
{
    for (int s0 = 0; s0 < n; s0 += nb) {
        const int m = n - s0 < nb ? n - s0 : nb;
        const int64_t ld = (int64_t)m * q->P;
        const float *xs = x + (int64_t)s0 * q->cin * q->HW;
        float *ys = y + (int64_t)s0 * q->cout * q->P;
        const float *cp = xs;
        if (!(m == 1 && is_pointwise(q))) {
            im2col(ws->col, xs, m, q);
            cp = ws->col;
        }
        /* one sample: the GEMM's (cout, P) result already is the NCHW output */
        float *dst = m == 1 ? ys : ws->tmp;
        for (int gi = 0; gi < q->groups; gi++)
            tr_cpu_sgemm(0, 0, q->coutg, (int)ld, q->Kg, 1.f, w + (int64_t)gi * q->coutg * q->Kg, q->Kg,
                         cp + (int64_t)gi * q->Kg * ld, (int)ld, 0.f, dst + (int64_t)gi * q->coutg * ld, (int)ld);
        if (m == 1 && !b) continue;
        /* (cout, m, P) -> (m, cout, P), adding the bias on the way */
#pragma omp parallel for collapse(2) schedule(static)
        for (int s = 0; s < m; s++)
            for (int co = 0; co < q->cout; co++) copy_out_plane(ys, dst, ld, q, b, m, s, co);
    }
}

void tr_cpu_conv2d_forward_as(tr_graph *g, tr_node *nd, int n, int chunk)
{
    conv_geo q = geo_of(g, nd);
    const float *x = g->tensors[nd->in[0]].data;
    float *y = g->tensors[nd->out].data;
    const float *w = tr_cpu_param(g, nd, 0);
    const float *b = nd->attr.conv.bias ? tr_cpu_param(g, nd, 1) : NULL;
    if (is_depthwise(&q)) {
        dw_forward(&q, y, x, w, b, n);
        return;
    }
    const int wc = wino_chunk(&q, nd, n, chunk, q.cin, q.cout);
    if (wc > 0) {
        tr_cpu_wino_weights(wino_u(g), w, q.cout, q.cin, 0);
        tr_cpu_wino_conv(y, x, wino_u(g), b, n, q.cin, q.cout, q.H, q.W, 0, wino_tiles(g, &q), wino_room(nd, &q, n), wc);
        return;
    }
    const int nb = chunk_of(nd, n), c = thread_chunk_of(&q, nb, n, chunk);
    conv_ws ws = ws_of(g->ws, &q, nb);
    if (!all_taps(&q)) {
        pack_live(ws.wc, w, &q);
        w = ws.wc;
    }
    if (c > 0)
        forward_per_thread(&q, y, x, w, b, ws.col, nd->ws_per_sample * nb, n, c);
    else
        forward_shared(&q, y, x, w, b, &ws, n, nb);
}

/* dx (m, cin, H, W) += W^T dy for one chunk of the batch, dy as (cout, m*P) in dyc, each thread
 * on its own chunks of c samples: their dcol (in the thread's slab of the columns' scratch, free
 * once the weight gradient has read it, packed to c*P columns so it spans few pages) is computed
 * and scattered into dx while it is in the thread's L2. */
static void dx_per_thread(const conv_geo *q, float *dx, const float *w, const float *dyc, float *scratch, int m, int c)
{
    const int chunks = (m + c - 1) / c;
    const int64_t ld = (int64_t)m * q->P, slab = (int64_t)c * q->cin * q->nt * q->P;
#pragma omp parallel num_threads(team_of(chunks, slab, (int64_t)m * q->cin * q->nt * q->P))
    {
        int tab[TR_CONV_TABLE_MAX];
        const int *tb = tap_tables(tab, q);
        float *dcol = scratch + omp_get_thread_num() * slab;
#pragma omp for schedule(static)
        for (int k = 0; k < chunks; k++) {
            const int s0 = k * c, mk = m - s0 < c ? m - s0 : c;
            const int64_t lk = (int64_t)mk * q->P;
            for (int gi = 0; gi < q->groups; gi++)
                tr_cpu_sgemm(1, 0, q->Kg, (int)lk, q->coutg, 1.f, w + (int64_t)gi * q->coutg * q->Kg, q->Kg,
                             dyc + (int64_t)gi * q->coutg * ld + (int64_t)s0 * q->P, (int)ld, 0.f,
                             dcol + (int64_t)gi * q->Kg * lk, (int)lk);
            float *dxk = dx + (int64_t)s0 * q->cin * q->HW;
            for (int ci = 0; ci < q->cin; ci++) col2im_channel(dxk, dcol, lk, q, tb, ci, 0, mk);
        }
    }
}

/* The weight gradient of the per-thread backward is summed in this many parts, each over its own
 * consecutive chunks (one GEMM with beta 1 per chunk), then the parts are added in order: the
 * sums depend on the shape and the batch, never on the team, and two to four threads all work. */
#define TR_CONV_WGRAD_PARTS 4

/* The whole backward each thread on its own chunks of up to c samples, in one parallel region: dy's
 * chunk transposed to (cout, m*P) (a sample alone already is), the bias and weight gradients into
 * the chunk's part, its im2col, then W^T dy and col2im into dx while the columns are in the
 * thread's L2. The shared way instead opens five or more regions per builder chunk, and
 * cnn_small's first layer (2 samples per chunk) spent 3.4x its forward there on an idle machine,
 * 12x with one core busy elsewhere (docs/performance.md). Returns 0, having
 * done nothing, when the parts and two single-sample slabs do not fit in the room. */
static int backward_per_thread(const conv_geo *q, float *dx, int set, float *dwg, float *db, const float *dy,
                               const float *x, const float *w, float *scratch, int64_t room, int n, int c)
{
    /* An even number of chunks of nearly equal size, so two threads, and the parts, get the same
     * number of samples (64 in chunks of 6 would leave 30 and 34); and small enough that the parts
     * and two threads' slabs fit beside each other: at B=16 cnn_small's last layer (c = 8) left
     * room for one slab only, and one thread did the whole backward. Shape and batch decide it,
     * never the team; no fit even for single samples: the shared way. */
    int chunks, parts, cmax;
    int64_t slab;
    const int64_t nw = (int64_t)q->cout * q->Kg, part = nw + q->cout;
    for (;; c--) {
        chunks = (n + c - 1) / c;
        chunks += chunks & 1;
        if (chunks > n) chunks = n;
        parts = chunks < TR_CONV_WGRAD_PARTS ? chunks : TR_CONV_WGRAD_PARTS;
        cmax = (n + chunks - 1) / chunks;
        slab = slab_of(q, cmax);
        if (parts * part + 2 * slab <= room) break;
        if (c == 1) return 0;
    }
    const int64_t cols = (int64_t)cmax * q->cin * q->nt * q->P;
    float *acc = scratch, *slabs = scratch + parts * part;
#pragma omp parallel num_threads(team_of(parts, slab, room - parts * part))
    {
        int tab[TR_CONV_TABLE_MAX];
        const int *tb = tap_tables(tab, q);
        float *col = slabs + omp_get_thread_num() * slab, *tmp = col + cols;
#pragma omp for schedule(static)
        for (int j = 0; j < parts; j++) {
            float *dwj = acc + j * part, *dbj = dwj + nw;
            const int k0 = (int)((int64_t)chunks * j / parts), k1 = (int)((int64_t)chunks * (j + 1) / parts);
            memset(dbj, 0, sizeof(float) * (size_t)q->cout);
            for (int k = k0; k < k1; k++) {
                const int s0 = (int)((int64_t)n * k / chunks), m = (int)((int64_t)n * (k + 1) / chunks) - s0;
                const int64_t ld = (int64_t)m * q->P;
                const float *xs = x + (int64_t)s0 * q->cin * q->HW, *dys = dy + (int64_t)s0 * q->cout * q->P;
                const float *dyc = dys, *cp = xs;
                if (m > 1) {
                    for (int co = 0; co < q->cout; co++)
                        for (int s = 0; s < m; s++)
                            memcpy(tmp + (int64_t)co * ld + (int64_t)s * q->P, dys + ((int64_t)s * q->cout + co) * q->P,
                                   sizeof(float) * (size_t)q->P);
                    dyc = tmp;
                }
                if (db)
                    for (int co = 0; co < q->cout; co++) {
                        const float *r = dyc + (int64_t)co * ld;
                        float a = 0.f;
#pragma omp simd reduction(+ : a)
                        for (int64_t i = 0; i < ld; i++) a += r[i];
                        dbj[co] += a;
                    }
                if (slab > 0) {
                    for (int r = 0; r < q->cin * q->nt; r++) im2col_row(col, ld, xs, m, q, tb, r);
                    cp = col;
                }
                for (int gi = 0; gi < q->groups; gi++)
                    tr_cpu_sgemm(0, 1, q->coutg, q->Kg, (int)ld, 1.f, dyc + (int64_t)gi * q->coutg * ld, (int)ld,
                                 cp + (int64_t)gi * q->Kg * ld, (int)ld, k == k0 ? 0.f : 1.f,
                                 dwj + (int64_t)gi * q->coutg * q->Kg, q->Kg);
                if (!dx) continue;
                float *dxs = dx + (int64_t)s0 * q->cin * q->HW;
                /* a gradient this backward sets: zero the chunk's part just before adding into it */
                if (set) memset(dxs, 0, sizeof(float) * (size_t)m * q->cin * q->HW);
                /* pointwise, one sample (no slab): W^T dy is dx's layout, accumulate straight in */
                float *dcol = slab > 0 ? col : dxs;
                for (int gi = 0; gi < q->groups; gi++)
                    tr_cpu_sgemm(1, 0, q->Kg, (int)ld, q->coutg, 1.f, w + (int64_t)gi * q->coutg * q->Kg, q->Kg,
                                 dyc + (int64_t)gi * q->coutg * ld, (int)ld, slab > 0 ? 0.f : 1.f,
                                 dcol + (int64_t)gi * q->Kg * ld, (int)ld);
                if (slab > 0)
                    for (int ci = 0; ci < q->cin; ci++) col2im_channel(dxs, col, ld, q, tb, ci, 0, m);
            }
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nw; i++) {
        float sum = acc[i];
        for (int j = 1; j < parts; j++) sum += acc[j * part + i];
        dwg[i] += sum;
    }
    if (db)
        for (int co = 0; co < q->cout; co++) {
            float sum = acc[nw + co];
            for (int j = 1; j < parts; j++) sum += acc[j * part + nw + co];
            db[co] += sum;
        }
    return 1;
}

/* The weight and bias gradients, and unless dx is NULL the input gradient (set: overwritten), by
 * im2col GEMMs. */
static void backward_gemm(tr_graph *g, tr_node *nd, const conv_geo *gq, int n, int chunk, float *dx, int set)
{
    const conv_geo q = *gq;
    const float *x = g->tensors[nd->in[0]].data;
    const float *dy = g->tensors[nd->out].grad;
    const float *w = tr_cpu_param(g, nd, 0);
    float *dw = tr_cpu_pgrad(g, nd, 0);
    float *db = nd->attr.conv.bias ? tr_cpu_pgrad(g, nd, 1) : NULL;
    const int nb = chunk_of(nd, n);
    conv_ws ws = ws_of(g->ws, &q, nb);
    float *dwg = dw;
    if (!all_taps(&q)) {
        pack_live(ws.wc, w, &q);
        w = ws.wc;
        memset(ws.dwc, 0, sizeof(float) * (size_t)q.cout * q.Kg);
        dwg = ws.dwc;
    }
    const int c = thread_chunk_of(&q, nb, n, chunk);
    if (c > 0 && backward_per_thread(&q, dx, set, dwg, db, dy, x, w, ws.col, nd->ws_per_sample * nb, n, c)) {
        if (dwg != dw) unpack_live_add(dw, dwg, &q);
        return;
    }
    if (dx && set) memset(dx, 0, sizeof(float) * (size_t)n * q.cin * q.HW);
    for (int s0 = 0; s0 < n; s0 += nb) {
        const int m = n - s0 < nb ? n - s0 : nb;
        const int64_t ld = (int64_t)m * q.P;
        const float *xs = x + (int64_t)s0 * q.cin * q.HW;
        const float *dys = dy + (int64_t)s0 * q.cout * q.P;
        const int direct = m == 1 && is_pointwise(&q);
        /* dy as (cout, m*P) */
        const float *dyc = dys;
        if (m > 1) {
#pragma omp parallel for collapse(2) schedule(static)
            for (int co = 0; co < q.cout; co++)
                for (int s = 0; s < m; s++)
                    memcpy(ws.tmp + (int64_t)co * ld + (int64_t)s * q.P, dys + ((int64_t)s * q.cout + co) * q.P,
                           sizeof(float) * (size_t)q.P);
            dyc = ws.tmp;
        }
        if (db) {
#pragma omp parallel for schedule(static)
            for (int co = 0; co < q.cout; co++) {
                const float *r = dyc + (int64_t)co * ld;
                float acc = 0.f;
#pragma omp simd reduction(+ : acc)
                for (int64_t i = 0; i < ld; i++) acc += r[i];
                db[co] += acc;
            }
        }
        const float *cp = xs;
        if (!direct) {
            im2col(ws.col, xs, m, &q);
            cp = ws.col;
        }
        for (int gi = 0; gi < q.groups; gi++)
            tr_cpu_sgemm(0, 1, q.coutg, q.Kg, (int)ld, 1.f, dyc + (int64_t)gi * q.coutg * ld, (int)ld,
                         cp + (int64_t)gi * q.Kg * ld, (int)ld, 1.f, dwg + (int64_t)gi * q.coutg * q.Kg, q.Kg);
        if (!dx) continue;
        float *dxs = dx + (int64_t)s0 * q.cin * q.HW;
        const int c = direct ? 0 : thread_chunk_of(&q, m, m, chunk);
        if (c > 0) {
            dx_per_thread(&q, dxs, w, dyc, ws.col, m, c);
            continue;
        }
        /* pointwise, one sample: W^T dy is dx's layout already, accumulate straight into it */
        float *dcol = direct ? dxs : ws.col;
        for (int gi = 0; gi < q.groups; gi++)
            tr_cpu_sgemm(1, 0, q.Kg, (int)ld, q.coutg, 1.f, w + (int64_t)gi * q.coutg * q.Kg, q.Kg,
                         dyc + (int64_t)gi * q.coutg * ld, (int)ld, direct ? 1.f : 0.f,
                         dcol + (int64_t)gi * q.Kg * ld, (int)ld);
        if (!direct) col2im_add(dxs, ws.col, m, &q);
    }
    if (dwg != dw) unpack_live_add(dw, dwg, &q);
}

void tr_cpu_conv2d_backward_as(tr_graph *g, tr_node *nd, int n, int chunk)
{
    conv_geo q = geo_of(g, nd);
    float *dx = g->tensors[nd->in[0]].grad;
    const int set = dx && tr_cpu_sets(nd, 0);
    if (is_depthwise(&q)) {
        if (set) memset(dx, 0, sizeof(float) * (size_t)n * q.cin * q.HW);
        dw_backward(&q, dx, tr_cpu_pgrad(g, nd, 0), nd->attr.conv.bias ? tr_cpu_pgrad(g, nd, 1) : NULL,
                    g->tensors[nd->out].grad, g->tensors[nd->in[0]].data, tr_cpu_param(g, nd, 0), n);
        return;
    }
    /* Winograd: dx is the 3x3 "same" convolution of dy by the turned kernels, after the weight
     * gradient's im2col GEMMs are done with the scratch. (The weight gradient by Winograd too, 16
     * GEMMs over the tiles of each chunk, measured 1.15-1.25x slower than im2col on resnet18's
     * 8x8 stage: docs/performance.md.) */
    const int wc = dx ? wino_chunk(&q, nd, n, chunk, q.cout, q.cin) : 0;
    backward_gemm(g, nd, &q, n, chunk == -1 ? TR_CONV_IM2COL : chunk, wc > 0 ? NULL : dx, set);
    if (wc > 0) {
        tr_cpu_wino_weights(wino_u(g), tr_cpu_param(g, nd, 0), q.cout, q.cin, 1);
        tr_cpu_wino_conv(dx, g->tensors[nd->out].grad, wino_u(g), NULL, n, q.cout, q.cin, q.H, q.W, !set,
                         wino_tiles(g, &q), wino_room(nd, &q, n), wc);
    }
}

void tr_cpu_conv2d_forward(tr_graph *g, tr_node *nd, int n) { tr_cpu_conv2d_forward_as(g, nd, n, -1); }

void tr_cpu_conv2d_backward(tr_graph *g, tr_node *nd, int n) { tr_cpu_conv2d_backward_as(g, nd, n, -1); }
