/* The CPU conv's two ways of sharing a layer among threads (trainer/backend/cpu/cpu_conv.c): each
 * thread on its own chunks of samples, and the team on each GEMM, against a direct convolution in
 * double, and the per-thread way's output and input gradient bit for bit across 1, 2 and 3
 * threads, on odd shapes; the same for the Winograd path the rule takes on 3x3 "same" layers. */
#include "tests/testutil.h"

#include <math.h>
#include <omp.h>
#include "trainer/backend/cpu/cpu_kernels.h"
#include "trainer/layers.h"
#include "trainer/layers/conv_taps.h"
#include "tests/oneop.h"

typedef struct {
    const char *what;
    int cin, H, W, cout, groups, bias, n;
    tr_win w;
    int nb;   /* the builder's samples per GEMM cut to this (0: as planned), so backward runs in chunks */
} conv_case;

/* A deterministic value in [-1, 1) for index i of stream s. */
static float noise(uint32_t s, uint32_t i)
{
    uint32_t h = (i + 1) * 2654435761u ^ (s + 7) * 2246822519u;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    return (float)(h % 20000) / 10000.f - 1.f;
}

typedef struct {
    float *y, *dx, *dw, *db;
    size_t ny, nx, nw;
} conv_out;

/* Forward and backward of the one conv with `chunk` (see tr_cpu_conv2d_forward_as) on `threads`
 * threads; dy is the output's gradient. */
static conv_out conv_run(const conv_case *k, const float *x, const float *dy, int chunk, int threads)
{
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    net o = net_new(k->cin, k->H, k->W);
    int y = tr_conv2d_win(o.g, "conv", o.g->input, k->cout, &k->w, k->groups, k->bias, NULL, NULL);
    net_ready(&o, y, k->n);
    tr_node *nd = &o.g->nodes[0];
    if (k->nb) {
        assert_true(nd->ws_max_samples >= k->nb);
        nd->ws_max_samples = k->nb;
    }
    float *w = param_of(o.g, "conv.weight"), *b = k->bias ? param_of(o.g, "conv.bias") : NULL;
    const tr_tensor *yt = &o.g->tensors[y], *xt = &o.g->tensors[o.g->input];
    conv_out r;
    r.nx = (size_t)k->n * k->cin * k->H * k->W;
    r.ny = (size_t)k->n * yt->c * yt->h * yt->w;
    r.nw = (size_t)k->cout * (k->cin / k->groups) * k->w.kh * k->w.kw;
    for (size_t i = 0; i < r.nw; i++) w[i] = noise(11, (uint32_t)i);
    for (int i = 0; b && i < k->cout; i++) b[i] = noise(12, (uint32_t)i);
    tr_graph_set_batch(o.g, x, NULL, k->n);
    tr_cpu_conv2d_forward_as(o.g, nd, k->n, chunk);
    tr_graph_zero_act_grads(o.g);
    tr_graph_zero_grads(o.g);
    memcpy(yt->grad, dy, r.ny * sizeof(float));
    tr_cpu_conv2d_backward_as(o.g, nd, k->n, chunk);
    r.y = malloc(r.ny * sizeof(float)), r.dx = malloc(r.nx * sizeof(float));
    r.dw = malloc(r.nw * sizeof(float)), r.db = malloc((size_t)k->cout * sizeof(float));
    memcpy(r.y, yt->data, r.ny * sizeof(float));
    memcpy(r.dx, xt->grad, r.nx * sizeof(float));
    memcpy(r.dw, o.g->grads + (w - o.g->params), r.nw * sizeof(float));
    if (b) memcpy(r.db, o.g->grads + (b - o.g->params), (size_t)k->cout * sizeof(float));
    net_free(&o);
    omp_set_num_threads(saved);
    return r;
}

static void out_free(conv_out *r) { free(r->y), free(r->dx), free(r->dw), free(r->db); }

/* The convolution as its definition reads, in double, with each output's sum of |terms| beside
 * it (the scale a float sum's rounding error is relative to). */
typedef struct {
    double *y, *ya, *dx, *dxa, *dw, *dwa, *db, *dba;
    int OH, OW;
} conv_ref;

static conv_ref ref_run(const conv_case *k, const float *x, const float *dy)
{
    const tr_win *w = &k->w;
    conv_ref r;
    r.OH = tr_win_out(k->H, w->kh, w->sh, w->dh, w->pt, w->pb, 0);
    r.OW = tr_win_out(k->W, w->kw, w->sw, w->dw, w->pl, w->pr, 0);
    const int cg = k->cin / k->groups, og = k->cout / k->groups, P = r.OH * r.OW, HW = k->H * k->W;
    const size_t ny = (size_t)k->n * k->cout * P, nx = (size_t)k->n * k->cin * HW,
                 nw = (size_t)k->cout * cg * w->kh * w->kw;
    r.y = calloc(ny, sizeof(double)), r.ya = calloc(ny, sizeof(double));
    r.dx = calloc(nx, sizeof(double)), r.dxa = calloc(nx, sizeof(double));
    r.dw = calloc(nw, sizeof(double)), r.dwa = calloc(nw, sizeof(double));
    r.db = calloc((size_t)k->cout, sizeof(double)), r.dba = calloc((size_t)k->cout, sizeof(double));
    for (int s = 0; s < k->n; s++)
        for (int co = 0; co < k->cout; co++)
            for (int p = 0; p < P; p++) {
                const size_t yi = ((size_t)s * k->cout + co) * P + p;
                const int oh = p / r.OW, ow = p % r.OW, gi = co / og;
                const double g = dy[yi];
                if (k->bias) {
                    const double bv = noise(12, (uint32_t)co);
                    r.y[yi] += bv, r.ya[yi] += fabs(bv);
                    r.db[co] += g, r.dba[co] += fabs(g);
                }
                for (int c = 0; c < cg; c++)
                    for (int ki = 0; ki < w->kh; ki++)
                        for (int kj = 0; kj < w->kw; kj++) {
                            const int ih = oh * w->sh - w->pt + ki * w->dh, iw = ow * w->sw - w->pl + kj * w->dw;
                            if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W) continue;
                            const size_t wi = (((size_t)co * cg + c) * w->kh + ki) * w->kw + kj;
                            const size_t xi = ((size_t)s * k->cin + gi * cg + c) * HW + (size_t)ih * k->W + iw;
                            const double wv = noise(11, (uint32_t)wi), xv = x[xi];
                            r.y[yi] += wv * xv, r.ya[yi] += fabs(wv * xv);
                            r.dx[xi] += wv * g, r.dxa[xi] += fabs(wv * g);
                            r.dw[wi] += xv * g, r.dwa[wi] += fabs(xv * g);
                        }
            }
    return r;
}

static void ref_free(conv_ref *r)
{
    free(r->y), free(r->ya), free(r->dx), free(r->dxa), free(r->dw), free(r->dwa), free(r->db), free(r->dba);
}

static void close_to(const char *what, const char *name, int chunk, const float *got, const double *want,
                     const double *scale, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-5 * scale[i] + 1e-6))
            fail_msg("%s, chunk %d: %s[%zu] = %.9g, expected %.9g (terms' scale %.3g)", what, chunk, name, i,
                     got[i], want[i], scale[i]);
}

static void bits_equal(const char *what, const char *name, int chunk, int threads, const float *a, const float *b,
                       size_t cnt)
{
    for (size_t i = 0; i < cnt; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)))
            fail_msg("%s, chunk %d: %s[%zu] is %.9g on 1 thread and %.9g on %d", what, chunk, name, i, a[i], b[i],
                     threads);
}

static void run_case(const conv_case *k)
{
    const int OH = tr_win_out(k->H, k->w.kh, k->w.sh, k->w.dh, k->w.pt, k->w.pb, 0),
              OW = tr_win_out(k->W, k->w.kw, k->w.sw, k->w.dw, k->w.pl, k->w.pr, 0);
    const size_t nx = (size_t)k->n * k->cin * k->H * k->W, ny = (size_t)k->n * k->cout * OH * OW;
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy);
    for (size_t i = 0; i < nx; i++) x[i] = noise(13, (uint32_t)i);
    for (size_t i = 0; i < ny; i++) dy[i] = noise(14, (uint32_t)i);
    conv_ref ref = ref_run(k, x, dy);
    /* 0: the team on each GEMM; -1: the rule's choice (shared on maps under 16 outputs, else
     * per-thread chunks evened out); then per-thread chunks of 1, 2 and 3 samples, whose last
     * chunk is partial for most batches here */
    static const int chunks[] = {0, -1, 1, 2, 3};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        conv_out one = conv_run(k, x, dy, chunks[c], 1);
        close_to(k->what, "y", chunks[c], one.y, ref.y, ref.ya, ny);
        close_to(k->what, "dx", chunks[c], one.dx, ref.dx, ref.dxa, nx);
        close_to(k->what, "dweight", chunks[c], one.dw, ref.dw, ref.dwa, one.nw);
        if (k->bias) close_to(k->what, "dbias", chunks[c], one.db, ref.db, ref.dba, (size_t)k->cout);
        /* per-thread chunks are cut by the shape and batch alone: the same bits on any team (the
         * bias and weight gradients are summed in a fixed number of parts of consecutive
         * chunks, added in order) */
        const int wino = tr_conv_winograd(k->cin, k->cout, k->groups, k->w.kh, k->w.kw, k->w.sh, k->w.sw, k->w.dh,
                                          k->w.dw, k->w.pt, k->w.pl, k->w.pb, k->w.pr, k->H, k->W);
        for (int t = 2; (chunks[c] > 0 || (chunks[c] == -1 && wino)) && t <= 3; t++) {
            conv_out more = conv_run(k, x, dy, chunks[c], t);
            bits_equal(k->what, "y", chunks[c], t, one.y, more.y, ny);
            bits_equal(k->what, "dx", chunks[c], t, one.dx, more.dx, nx);
            bits_equal(k->what, "dweight", chunks[c], t, one.dw, more.dw, one.nw);
            if (k->bias) bits_equal(k->what, "dbias", chunks[c], t, one.db, more.db, (size_t)k->cout);
            out_free(&more);
        }
        out_free(&one);
    }
    ref_free(&ref);
    free(x), free(dy);
}

#define WIN(kh_, kw_, sh_, sw_, dh_, dw_, pt_, pl_, pb_, pr_) \
    {.kh = kh_, .kw = kw_, .sh = sh_, .sw = sw_, .dh = dh_, .dw = dw_, .pt = pt_, .pl = pl_, .pb = pb_, .pr = pr_}

/* Small maps (OW < 16) copy through tap tables, wider ones row by row: both are here. */
static void test_conv_threads_match_reference(void **state)
{
    (void)state;
    static const conv_case cases[] = {
        {"3x3 same, 5x6 map, 7 samples, bias", 4, 5, 6, 6, 1, 1, 7, WIN(3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0},
        {"the same in backward chunks of 4 (4 + 3)", 4, 5, 6, 6, 1, 1, 7, WIN(3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 4},
        {"3x2 kernel, stride 2x1, dilation 2x1, pads 1/0/2/1", 3, 9, 11, 5, 1, 0, 5,
         WIN(3, 2, 2, 1, 2, 1, 1, 0, 2, 1), 0},
        {"2 groups, 3x3 on 20x18 (row copies)", 6, 20, 18, 4, 2, 1, 5, WIN(3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0},
        {"1x5 kernel, stride 1x2, 17x19 map, 9 samples", 3, 17, 19, 4, 1, 0, 9, WIN(1, 5, 1, 2, 1, 1, 0, 2, 0, 2),
         0},
        {"one sample", 4, 6, 5, 3, 1, 1, 1, WIN(3, 3, 2, 2, 1, 1, 1, 1, 1, 1), 0},
        {"two samples", 4, 6, 5, 3, 1, 1, 2, WIN(3, 3, 2, 2, 1, 1, 1, 1, 1, 1), 0},
        {"1x1, 8x8, 6 samples", 8, 8, 8, 5, 1, 1, 6, WIN(1, 1, 1, 1, 1, 1, 0, 0, 0, 0), 0},
        {"1x1 stride 2, 7x7", 6, 7, 7, 4, 1, 0, 5, WIN(1, 1, 2, 2, 1, 1, 0, 0, 0, 0), 0},
        {"3x3 on a 1x1 map (one live tap), 9 samples", 8, 1, 1, 5, 1, 1, 9, WIN(3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0},
        /* OpenBLAS 0.3.21 sums this layer's GEMM of 100 columns (one sample) and of 200 in a
         * different order (checked outside: chunks of 1 and 2 differ in the last bits), so chunks
         * cut by the thread count would show here */
        {"16 -> 32, 3x3 on 10x10, 5 samples", 16, 10, 10, 32, 1, 0, 5, WIN(3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0},
        {"3x3/2 on 2x2 (four live taps), 4 groups", 8, 2, 2, 12, 4, 0, 11, WIN(3, 3, 2, 2, 1, 1, 1, 1, 1, 1), 0},
        /* the rule (chunk -1) runs these by Winograd (cpu_winograd.c): odd sides leave half tiles */
        {"Winograd 64 -> 32 on 9x11, 3 samples, bias", 64, 9, 11, 32, 1, 1, 3, WIN(3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0},
        {"Winograd 64 -> 40 on 8x8, 5 samples", 64, 8, 8, 40, 1, 0, 5, WIN(3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

/* The Winograd kernels called directly, so the path is known to be the one tested, on a shape the
 * rule would leave to im2col (odd sides, 17 and 19 channels): y = conv + b written, and the input
 * gradient added onto what dx held, against the double definition, with the same bits for chunks
 * of 2 on 1, 2 and 3 threads. */
static void test_winograd_matches_definition(void **state)
{
    (void)state;
    const int n = 5, cin = 17, cout = 19, H = 9, W = 6, HW = H * W;
    const size_t nx = (size_t)n * cin * HW, ny = (size_t)n * cout * HW, nw = (size_t)cout * cin * 9;
    float *x = malloc(nx * sizeof *x), *dy = malloc(ny * sizeof *dy), *w = malloc(nw * sizeof *w),
          *b = malloc((size_t)cout * sizeof *b), *u = malloc(16 * (size_t)cin * cout * sizeof *u);
    for (size_t i = 0; i < nx; i++) x[i] = noise(21, (uint32_t)i);
    for (size_t i = 0; i < ny; i++) dy[i] = noise(22, (uint32_t)i);
    for (size_t i = 0; i < nw; i++) w[i] = noise(23, (uint32_t)i);
    for (int i = 0; i < cout; i++) b[i] = noise(24, (uint32_t)i);
    const int64_t room = 3 * tr_wino_per_sample(cin, cout, H, W) * 2;
    float *scratch = malloc((size_t)room * sizeof *scratch);
    float *y[4], *dx[4];
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        y[t] = malloc(ny * sizeof(float)), dx[t] = malloc(nx * sizeof(float));
        tr_cpu_wino_weights(u, w, cout, cin, 0);
        tr_cpu_wino_conv(y[t], x, u, b, n, cin, cout, H, W, 0, scratch, room, 2);
        for (size_t i = 0; i < nx; i++) dx[t][i] = 0.5f;   /* the input gradient accumulates */
        tr_cpu_wino_weights(u, w, cout, cin, 1);
        tr_cpu_wino_conv(dx[t], dy, u, NULL, n, cout, cin, H, W, 1, scratch, room, 2);
    }
    omp_set_num_threads(1);
    for (int s = 0; s < n; s++)
        for (int co = 0; co < cout; co++)
            for (int oh = 0; oh < H; oh++)
                for (int ow = 0; ow < W; ow++) {
                    double want = b[co], scale = fabs(b[co]);
                    for (int ci = 0; ci < cin; ci++)
                        for (int ki = 0; ki < 3; ki++)
                            for (int kj = 0; kj < 3; kj++) {
                                const int ih = oh - 1 + ki, iw = ow - 1 + kj;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                const double t = (double)w[((co * cin + ci) * 3 + ki) * 3 + kj] *
                                                 x[((size_t)s * cin + ci) * HW + ih * W + iw];
                                want += t, scale += fabs(t);
                            }
                    const float got = y[1][((size_t)s * cout + co) * HW + oh * W + ow];
                    if (!(fabs(got - want) <= 1e-5 * scale + 1e-6))
                        fail_msg("y[%d,%d,%d,%d] = %.9g, expected %.9g", s, co, oh, ow, got, want);
                }
    for (int s = 0; s < n; s++)
        for (int ci = 0; ci < cin; ci++)
            for (int ih = 0; ih < H; ih++)
                for (int iw = 0; iw < W; iw++) {
                    double want = 0.5, scale = 0.5;
                    for (int co = 0; co < cout; co++)
                        for (int ki = 0; ki < 3; ki++)
                            for (int kj = 0; kj < 3; kj++) {
                                const int oh = ih + 1 - ki, ow = iw + 1 - kj;
                                if (oh < 0 || oh >= H || ow < 0 || ow >= W) continue;
                                const double t = (double)w[((co * cin + ci) * 3 + ki) * 3 + kj] *
                                                 dy[((size_t)s * cout + co) * HW + oh * W + ow];
                                want += t, scale += fabs(t);
                            }
                    const float got = dx[1][((size_t)s * cin + ci) * HW + ih * W + iw];
                    if (!(fabs(got - want) <= 1e-5 * scale + 1e-6))
                        fail_msg("dx[%d,%d,%d,%d] = %.9g, expected %.9g", s, ci, ih, iw, got, want);
                }
    for (int t = 2; t <= 3; t++) {
        bits_equal("Winograd", "y", 2, t, y[1], y[t], ny);
        bits_equal("Winograd", "dx", 2, t, dx[1], dx[t], nx);
    }
    for (int t = 1; t <= 3; t++) free(y[t]), free(dx[t]);
    free(x), free(dy), free(w), free(b), free(u), free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_threads_match_reference),
        cmocka_unit_test(test_winograd_matches_definition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
