/* The CPU kernels' cache blocking (docs/performance.md, "Cost per sample as the batch grows"):
 * max pooling row by row, batchnorm over blocks of channels and the conv's samples per GEMM,
 * each against a plain reference written here (one output or one channel at a time, in double)
 * and, for batchnorm, bit for bit across thread counts. */
#include "tests/testutil.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/layers.h"
#include "tests/oneop.h"

/* Backward of the whole graph from dy on its output (every other gradient zeroed first). */
static void backward_from(net *o, int out, const float *dy, int n)
{
    tr_graph_zero_act_grads(o->g);
    tr_graph_zero_grads(o->g);
    const tr_tensor *t = &o->g->tensors[out];
    memcpy(t->grad, dy, sizeof *dy * (size_t)n * t->c * t->h * t->w);
    tr_graph_backward(o->g, n);
}

/* A deterministic value in [-1, 1) for index i of stream s. */
static float noise(uint32_t s, uint32_t i)
{
    uint32_t h = (i + 1) * 2654435761u ^ (s + 7) * 2246822519u;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    return (float)(h % 20000) / 10000.f - 1.f;
}

/* ---- max pooling: outputs and the gradient's routing against one output at a time ---- */

/* Output (oh, ow) of one plane as the definition reads: taps in (ki, kj) order, padding never
 * wins, the first maximum wins ties, the first NaN wins outright; *at gets the winner (or -1). */
static float max_ref(const float *xp, int H, int W, const tr_win *w, int oh, int ow, int *at)
{
    float best = -FLT_MAX;
    *at = -1;
    for (int ki = 0; ki < w->kh; ki++)
        for (int kj = 0; kj < w->kw; kj++) {
            int ih = oh * w->sh - w->pt + ki * w->dh, iw = ow * w->sw - w->pl + kj * w->dw;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            float v = xp[ih * W + iw];
            if (*at >= 0 && isnan(best)) return best;
            if (*at < 0 || v > best || isnan(v)) best = v, *at = ih * W + iw;
        }
    return best;
}

static void maxpool_case(const tr_win *w, int n, int c, int H, int W)
{
    net o = net_new(c, H, W);
    int y = tr_maxpool_win(o.g, "mp", o.g->input, w, 0);
    net_ready(&o, y, n);
    const tr_tensor *yt = &o.g->tensors[y];
    const int OH = yt->h, OW = yt->w, HW = H * W, P = OH * OW;
    float *x = malloc(sizeof *x * (size_t)n * c * HW), *dy = malloc(sizeof *dy * (size_t)n * c * P);
    float *dx = calloc((size_t)n * c * HW, sizeof *dx);
    /* few distinct levels, so windows hold ties; ReLU-like zeros; a NaN and -inf in some planes */
    for (int i = 0; i < n * c * HW; i++) x[i] = (float)((int)(noise(1, (uint32_t)i) * 4)) * 0.5f;
    x[5] = NAN;
    x[HW + 7] = -INFINITY;
    if (n * c > 2) x[2 * HW + 3] = NAN, x[2 * HW + 4] = NAN;
    for (int i = 0; i < n * c * P; i++) dy[i] = 1.f + (float)i;   /* distinct: shows where each went */
    tr_graph_set_batch(o.g, x, NULL, n);
    tr_graph_forward(o.g, n);
    for (int pl = 0; pl < n * c; pl++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int at;
                float want = max_ref(x + (int64_t)pl * HW, H, W, w, oh, ow, &at);
                float got = yt->data[(int64_t)pl * P + oh * OW + ow];
                if (!(got == want || (isnan(got) && isnan(want))))
                    fail_msg("maxpool %dx%d s%dx%d: plane %d output (%d, %d): got %g, expected %g", w->kh, w->kw,
                             w->sh, w->sw, pl, oh, ow, got, want);
                if (at >= 0) dx[(int64_t)pl * HW + at] += dy[(int64_t)pl * P + oh * OW + ow];
            }
    backward_from(&o, y, dy, n);
    const float *gx = o.g->tensors[o.g->input].grad;
    for (int i = 0; i < n * c * HW; i++)
        if (gx[i] != dx[i]) fail_msg("maxpool %dx%d: dx[%d] = %g, expected %g", w->kh, w->kw, i, gx[i], dx[i]);
    free(x), free(dy), free(dx);
    net_free(&o);
}

static void test_maxpool_rows_match_reference(void **state)
{
    (void)state;
    const tr_win resnet = {.kh = 3, .kw = 3, .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    const tr_win two = {.kh = 2, .kw = 2, .sh = 2, .sw = 2, .dh = 1, .dw = 1};
    const tr_win same = {.kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    const tr_win odd = {.kh = 3, .kw = 2, .sh = 2, .sw = 3, .dh = 1, .dw = 1, .pt = 2, .pl = 1, .pb = 0, .pr = 1};
    maxpool_case(&resnet, 3, 4, 16, 16);
    maxpool_case(&resnet, 2, 3, 7, 5);
    maxpool_case(&two, 2, 3, 8, 6);
    maxpool_case(&same, 2, 3, 5, 9);
    maxpool_case(&odd, 2, 3, 7, 8);
}

/* ---- batchnorm: blocks of channels against one channel at a time, in double ---- */

typedef struct {
    float *y, *dx, *dw, *db, *rmean, *rvar;
} bn_out;

static bn_out bn_run(int n, int C, int H, int W, const float *x, const float *dy, int threads)
{
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    net o = net_new(C, H, W);
    int y = tr_batchnorm(o.g, "bn", o.g->input, 1e-5f, 0.1f);
    net_ready(&o, y, n);
    float *w = param_of(o.g, "bn.weight"), *b = param_of(o.g, "bn.bias");
    for (int c = 0; c < C; c++) w[c] = 1.f + 0.5f * noise(3, (uint32_t)c), b[c] = noise(4, (uint32_t)c);
    tr_graph_set_batch(o.g, x, NULL, n);
    tr_graph_forward(o.g, n);
    backward_from(&o, y, dy, n);
    const size_t m = (size_t)n * C * H * W;
    bn_out r = {malloc(m * sizeof(float)), malloc(m * sizeof(float)), malloc(C * sizeof(float)),
                malloc(C * sizeof(float)), malloc(C * sizeof(float)), malloc(C * sizeof(float))};
    memcpy(r.y, o.g->tensors[y].data, m * sizeof(float));
    memcpy(r.dx, o.g->tensors[o.g->input].grad, m * sizeof(float));
    memcpy(r.dw, o.g->grads + (w - o.g->params), C * sizeof(float));
    memcpy(r.db, o.g->grads + (b - o.g->params), C * sizeof(float));
    const float *st = o.g->stats + o.g->nodes[0].attr.bn.stat_off;
    memcpy(r.rmean, st, C * sizeof(float));
    memcpy(r.rvar, st + C, C * sizeof(float));
    net_free(&o);
    omp_set_num_threads(saved);
    return r;
}

static void bn_free(bn_out *r) { free(r->y), free(r->dx), free(r->dw), free(r->db), free(r->rmean), free(r->rvar); }

static void near(double got, double want, double tol, const char *what, int i)
{
    if (!(fabs(got - want) <= tol * (1 + fabs(want)))) fail_msg("%s[%d]: got %.9g, expected %.9g", what, i, got, want);
}

static void bn_case(int n, int C, int H, int W)
{
    const int HW = H * W;
    const size_t m = (size_t)n * C * HW;
    float *x = malloc(m * sizeof *x), *dy = malloc(m * sizeof *dy);
    for (size_t i = 0; i < m; i++) x[i] = 3.f + 2.f * noise(5, (uint32_t)i), dy[i] = noise(6, (uint32_t)i);
    bn_out one = bn_run(n, C, H, W, x, dy, 1), two = bn_run(n, C, H, W, x, dy, 2);
    /* the blocks differ with the thread count; every channel's sums run in sample order anyway */
    assert_memory_equal(one.y, two.y, m * sizeof(float));
    assert_memory_equal(one.dx, two.dx, m * sizeof(float));
    assert_memory_equal(one.dw, two.dw, C * sizeof(float));
    assert_memory_equal(one.db, two.db, C * sizeof(float));
    assert_memory_equal(one.rvar, two.rvar, C * sizeof(float));
    const double M = (double)n * HW;
    for (int c = 0; c < C; c++) {
        double s = 0, v = 0, sdy = 0, sdyx = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < HW; j++) s += x[((size_t)i * C + c) * HW + j];
        const double mu = s / M;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < HW; j++) v += pow(x[((size_t)i * C + c) * HW + j] - mu, 2);
        const double rs = 1 / sqrt(v / M + 1e-5), wc = 1.0 + 0.5 * noise(3, (uint32_t)c), bc = noise(4, (uint32_t)c);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < HW; j++) {
                const size_t k = ((size_t)i * C + c) * HW + j;
                sdy += dy[k], sdyx += dy[k] * (x[k] - mu) * rs;
            }
        near(one.rmean[c], 0.1 * mu, 1e-5, "running mean", c);
        near(one.rvar[c], 0.9 + 0.1 * v / (M - 1), 1e-5, "running var", c);
        near(one.db[c], sdy, 1e-4, "dbias", c);
        near(one.dw[c], sdyx, 1e-4, "dweight", c);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < HW; j++) {
                const size_t k = ((size_t)i * C + c) * HW + j;
                const double xh = (x[k] - mu) * rs;
                near(one.y[k], xh * wc + bc, 1e-5, "y", (int)k);
                near(one.dx[k], wc * rs * (dy[k] - sdy / M - xh * sdyx / M), 1e-4, "dx", (int)k);
            }
    }
    bn_free(&one), bn_free(&two);
    free(x), free(dy);
}

/* Shapes whose channel blocks end part way (37 channels of 1x1, 70 of 3x3, 5 of 20x20: blocks
 * of 19+18 or all 37, 35+35 or all 70, 3+2 or 5 with one or two threads). */
static void test_batchnorm_blocks_match_reference(void **state)
{
    (void)state;
    bn_case(3, 37, 1, 1);
    bn_case(2, 70, 3, 3);
    bn_case(4, 5, 20, 20);
    bn_case(5, 3, 2, 2);
}

/* ---- conv: samples per GEMM ---- */

/* The chunk the builder plans, worked out from the rule in trainer/layers/conv.c for resnet18's
 * layers at 32x32: 2048 columns, or fewer if the block of im2col rows and GEMM outputs would pass
 * 8 MiB, but at least 4 per output channel, at most 4096; over the map's columns per sample. */
static void test_conv_chunk_plan(void **state)
{
    (void)state;
    static const struct {
        int cin, hw, cout, k, stride, pad, want;
    } cases[] = {
        /* 7x7/2 stem on 32x32 -> 16x16: 2048 columns (1.7 MiB), 8 samples of 256 */
        {3, 32, 64, 7, 2, 3, 8},
        /* 3x3 on 8x8, 64 -> 64: 2048 columns (5 MiB), 32 samples of 64 */
        {64, 8, 64, 3, 1, 1, 32},
        /* 3x3 on 4x4, 128 -> 128: 8 MiB / (4 * (1152 + 128)) = 1638 columns, 103 samples of 16 */
        {128, 4, 128, 3, 1, 1, 103},
        /* 3x3 on 2x2, 256 -> 256: 8 MiB holds 819 columns, 4 * 256 = 1024 wins, 256 samples of 4 */
        {256, 2, 256, 3, 1, 1, 256},
        /* 3x3 on 1x1 (one live tap), 512 -> 512: 2048 columns, 2048 samples of 1 */
        {512, 1, 512, 3, 1, 1, 2048},
        /* 1x1 on 1x1, 512 -> 2048 (a bottleneck's widening): 4 * 2048 columns, capped at 4096 */
        {512, 1, 2048, 1, 1, 0, 4096},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tr_graph *g = tr_graph_new(cases[i].cin, cases[i].hw, cases[i].hw);
        int y = tr_conv2d(g, "conv", g->input, cases[i].cout, cases[i].k, cases[i].stride, cases[i].pad, 1, 0, NULL,
                          NULL);
        if (y < 0) fail_msg("build: %s", g->err.msg);
        if (g->nodes[0].ws_max_samples != cases[i].want)
            fail_msg("conv %d -> %d, %dx%d on %dx%d: %d samples per GEMM, expected %d", cases[i].cin, cases[i].cout,
                     cases[i].k, cases[i].k, cases[i].hw, cases[i].hw, g->nodes[0].ws_max_samples, cases[i].want);
        tr_graph_free(g);
    }
}

/* A batch cut into several GEMM chunks gives the same output and input gradient as one sample
 * at a time (no chunking), and the weight gradient up to the order of its sums. */
static void test_conv_chunks_agree(void **state)
{
    (void)state;
    const int n = 37, C = 16, H = 4, W = 4, K = 24;
    float *res[2][3];
    for (int pass = 0; pass < 2; pass++) {
        net o = net_new(C, H, W);
        int y = tr_conv2d(o.g, "conv", o.g->input, K, 3, 1, 1, 1, 1, NULL, NULL);
        net_ready(&o, y, n);
        tr_node *nd = &o.g->nodes[0];
        assert_true(nd->ws_max_samples >= n);   /* the plan covers the batch in one GEMM... */
        nd->ws_max_samples = pass ? 5 : 1;      /* ...cut it in chunks of 5 (the last of 2), or 1 */
        float *x = malloc(sizeof *x * n * C * H * W), *dy = malloc(sizeof *dy * n * K * H * W);
        for (int i = 0; i < n * C * H * W; i++) x[i] = noise(7, (uint32_t)i);
        for (int i = 0; i < n * K * H * W; i++) dy[i] = noise(8, (uint32_t)i);
        tr_graph_set_batch(o.g, x, NULL, n);
        tr_graph_forward(o.g, n);
        backward_from(&o, y, dy, n);
        const size_t ny = (size_t)n * K * H * W, nx = (size_t)n * C * H * W, nw = (size_t)K * C * 9;
        res[pass][0] = malloc(ny * sizeof(float)), res[pass][1] = malloc(nx * sizeof(float));
        res[pass][2] = malloc(nw * sizeof(float));
        memcpy(res[pass][0], o.g->tensors[y].data, ny * sizeof(float));
        memcpy(res[pass][1], o.g->tensors[o.g->input].grad, nx * sizeof(float));
        memcpy(res[pass][2], o.g->grads + (param_of(o.g, "conv.weight") - o.g->params), nw * sizeof(float));
        free(x), free(dy);
        net_free(&o);
        if (pass)
            for (int k = 0; k < 3; k++) {
                const size_t cnt = k == 0 ? ny : k == 1 ? nx : nw;
                for (size_t i = 0; i < cnt; i++)
                    near(res[1][k][i], res[0][k][i], 1e-5, k == 0 ? "y" : k == 1 ? "dx" : "dweight", (int)i);
            }
    }
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 3; k++) free(res[p][k]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_rows_match_reference),
        cmocka_unit_test(test_batchnorm_blocks_match_reference),
        cmocka_unit_test(test_conv_chunk_plan),
        cmocka_unit_test(test_conv_chunks_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
