/* The CPU conv's two ways of sharing a layer among threads (trainer/backend/cpu/cpu_conv.c): each
 * thread on its own chunks of samples, and the team on each GEMM, against a direct convolution in
 * double, and the per-thread way's output and input gradient bit for bit across 1, 2 and 3
 * threads, on odd shapes. */
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
        for (int t = 2; chunks[c] > 0 && t <= 3; t++) {
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
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_threads_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
