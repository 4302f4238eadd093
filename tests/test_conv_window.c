/* General conv/pool windows (tr_conv2d_win, tr_maxpool_win, tr_avgpool_win) on the CPU backend:
 * rectangular kernels, per-axis strides and dilations, asymmetric pads, ceil_mode and
 * count_include_pad, checked against PyTorch values, hand-worked cases and finite differences. */
#include "tests/testutil.h"
#include "tests/gradcheck.h"

#include <float.h>
#include <math.h>
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/layers.h"
#include "tests/oneop.h"

static void expect_near(const float *got, const float *want, int64_t m, double tol, const char *what)
{
    for (int64_t i = 0; i < m; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1 + fabs((double)want[i]))))
            fail_msg("%s[%lld]: got %.9g, expected %.9g", what, (long long)i, got[i], want[i]);
}

static void expect_shape(const tr_tensor *t, int c, int h, int w, const char *what)
{
    if (t->c != c || t->h != h || t->w != w)
        fail_msg("%s: shape (%d, %d, %d), expected (%d, %d, %d)", what, t->c, t->h, t->w, c, h, w);
}

/* The inputs and weights of the PyTorch cases: small multiples of 1/8 and 1/4, exact in float. */
static float xa(int i) { return (float)((i * 37) % 17 - 8) / 8.f; }
static float wa(int i) { return (float)((i * 11) % 13 - 6) / 4.f; }
/* A permutation of 0.25-spaced values, so no max-pool window has a tie. */
static float xperm(int i, int m) { return (float)((i * 7919) % m) * 0.25f - 16.f; }

/* ---- forward against PyTorch (1.13, computed once offline with /usr/bin/python3) ---- */

/* F.conv2d(F.pad(x, (0, 1, 1, 2)), w, b, stride=(2, 1), dilation=(2, 1), groups=2) with
 * x (1, 4, 5, 7) = xa(i), w (6, 2, 2, 3) = wa(i), b = [0.5, -0.25, 1, 0, -1.5, 0.75]: pads top 1,
 * left 0, bottom 2, right 1. */
static void test_conv_rect_torch(void **state)
{
    (void)state;
    static const float want[108] = {
        -0.15625f, -0.4375f, 0.34375f, 1.65625f, 0.84375f, 0.21875f, 3.6875f, 3.53125f, 1.25f, -3.15625f,
        -2.78125f, 1.84375f, -2.71875f, -2.0625f, 1.78125f, 2.4375f, 3.09375f, 1.625f, -0.71875f, 0.125f,
        0.96875f, 1.28125f, -0.53125f, -1.28125f, 2.71875f, 0.25f, -4.34375f, -4.15625f, 0.8125f, 2.8125f,
        -3.46875f, 0.65625f, 2.125f, 1.46875f, 0.8125f, -3.15625f, 0.71875f, 2.6875f, 3.59375f, 2.90625f,
        0.09375f, -0.78125f, 1.3125f, -3.46875f, -3.46875f, 1.3125f, 3.96875f, 4.5625f, 2.25f, 2.9375f,
        2.03125f, 0.0625f, -1.90625f, -0.65625f, 1.125f, -3.f, -2.34375f, 1.5f, 2.15625f, 1.125f,
        0.4375f, 2.90625f, 3.25f, 0.9375f, -4.03125f, -2.34375f, 0.09375f, -0.75f, -1.59375f, -0.84375f,
        0.96875f, 0.28125f, -4.28125f, -4.9375f, -0.8125f, 0.65625f, 0.f, -3.28125f, 1.40625f, 1.5625f,
        -0.40625f, -5.03125f, -5.40625f, 0.125f, -2.34375f, -2.0625f, -1.78125f, -0.96875f, -0.15625f, -1.65625f,
        -1.46875f, 1.34375f, 2.03125f, 1.125f, -0.84375f, -0.28125f, 3.6875f, 1.53125f, -2.75f, -2.78125f,
        1.4375f, 2.6875f, -1.03125f, 0.375f, 1.78125f, 2.65625f, 2.46875f, 0.15625f};
    net o = net_new(4, 5, 7);
    const tr_win win = {.kh = 2, .kw = 3, .sh = 2, .sw = 1, .dh = 2, .dw = 1, .pt = 1, .pl = 0, .pb = 2, .pr = 1};
    int y = tr_conv2d_win(o.g, "conv", o.g->input, 6, &win, 2, 1, NULL, NULL);
    net_ready(&o, y, 1);
    expect_shape(&o.g->tensors[y], 6, 3, 6, "conv");
    float *w = param_of(o.g, "conv.weight"), *b = param_of(o.g, "conv.bias");
    for (int i = 0; i < 6 * 2 * 2 * 3; i++) w[i] = wa(i);
    const float bias[6] = {0.5f, -0.25f, 1.f, 0.f, -1.5f, 0.75f};
    memcpy(b, bias, sizeof bias);
    float x[140];
    for (int i = 0; i < 140; i++) x[i] = xa(i);
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    expect_near(o.g->tensors[y].data, want, 108, 1e-6, "conv 2x3");
    net_free(&o);
}

/* F.conv2d(F.pad(x, (2, 0, 0, 1)), w, None, stride=(1, 2), dilation=(1, 2), groups=3) with
 * x (2, 3, 6, 5) = xa(i), w (3, 1, 3, 2) = wa(i): depthwise, pads top 0, left 2, bottom 1,
 * right 0. */
static void test_depthwise_torch(void **state)
{
    (void)state;
    static const float want[90] = {
        -1.5f, 2.125f, 0.875f, 0.96875f, -1.f, 0.9375f, 0.78125f, -2.53125f, 0.46875f, 0.59375f,
        -1.9375f, 2.125f, 0.125f, 0.96875f, -1.65625f, -0.4375f, 0.53125f, -1.71875f, -1.875f, 0.21875f,
        1.15625f, -1.1875f, 2.03125f, 0.84375f, 1.625f, -0.9375f, 0.53125f, 1.375f, -1.8125f, 0.03125f,
        -0.3125f, -1.375f, 0.375f, -0.0625f, -1.25f, -0.03125f, 0.1875f, -1.125f, 1.6875f, 0.4375f,
        -1.f, -1.375f, 0.375f, -0.6875f, -1.0625f, 0.96875f, -1.f, 0.9375f, 0.78125f, -2.53125f,
        0.46875f, 0.59375f, -1.9375f, 2.125f, 0.40625f, 0.78125f, -1.f, -0.25f, 0.78125f, -1.84375f,
        -1.875f, 0.21875f, 1.15625f, -1.1875f, 2.03125f, 0.84375f, 1.625f, -0.9375f, 0.53125f, 1.25f,
        -2.3125f, 0.21875f, 0.875f, -1.1875f, 1.71875f, -0.0625f, -1.25f, -0.03125f, 0.1875f, -1.125f,
        1.6875f, 0.4375f, -1.f, -1.375f, 0.15625f, -0.34375f, -1.25f, 2.15625f, 2.09375f, -0.9375f};
    net o = net_new(3, 6, 5);
    const tr_win win = {.kh = 3, .kw = 2, .sh = 1, .sw = 2, .dh = 1, .dw = 2, .pt = 0, .pl = 2, .pb = 1, .pr = 0};
    int y = tr_conv2d_win(o.g, "dw", o.g->input, 3, &win, 3, 0, NULL, NULL);
    net_ready(&o, y, 2);
    expect_shape(&o.g->tensors[y], 3, 5, 3, "depthwise");
    float *w = param_of(o.g, "dw.weight");
    for (int i = 0; i < 3 * 3 * 2; i++) w[i] = wa(i);
    float x[180];
    for (int i = 0; i < 180; i++) x[i] = xa(i);
    tr_graph_set_batch(o.g, x, NULL, 2);
    tr_graph_forward(o.g, 2);
    expect_near(o.g->tensors[y].data, want, 90, 1e-6, "depthwise");
    net_free(&o);
}

/* x (1, 2, 8, 8) = xperm(i, 128). Window (3, 2), stride (2, 3), padding (1, 1), ceil_mode: the
 * rows gain a fifth (fourth with dilation) window from ceil_mode; the columns' ceil window would
 * start in the right padding and is dropped, as PyTorch does.
 *   F.max_pool2d(x, (3, 2), (2, 3), (1, 1), (2, 1), ceil_mode=True)
 *   F.avg_pool2d(x, (3, 2), (2, 3), (1, 1), ceil_mode=True, count_include_pad=True / False) */
static void test_pools_torch(void **state)
{
    (void)state;
    static const float want_max[24] = {14.f, 5.5f, -7.25f, 14.f, 5.5f, 12.5f, 10.f, 1.5f, 12.75f, 6.f, -2.5f, 12.75f,
                                       -2.f, 13.25f, 8.75f, -2.f, 13.5f, 8.75f, -6.f, 13.5f, 4.75f, -10.f, 13.5f, 0.75f};
    static const float want_inc[30] = {
        -0.333333343f, 2.91666675f, -5.58333349f, 6.f, 1.375f, -11.375f, 4.f, -2.625f, -4.70833349f, 2.f,
        -6.625f, 7.29166651f, 0.5f, -4.3125f, 5.3125f, -0.333333343f, -7.75f, 5.08333349f, -2.f, -3.95833325f,
        4.625f, -4.f, 8.04166698f, 0.625f, -6.f, 9.375f, -3.375f, -3.5f, 3.6875f, -2.6875f};
    static const float want_exc[30] = {
        -1.f, 4.375f, -8.375f, 12.f, 1.375f, -11.375f, 8.f, -2.625f, -4.70833349f, 4.f,
        -6.625f, 7.29166651f, 2.f, -8.625f, 10.625f, -1.f, -11.625f, 7.625f, -4.f, -3.95833325f,
        4.625f, -8.f, 8.04166698f, 0.625f, -12.f, 9.375f, -3.375f, -14.f, 7.375f, -5.375f};
    net o = net_new(2, 8, 8);
    const tr_win wmax = {.kh = 3, .kw = 2, .sh = 2, .sw = 3, .dh = 2, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    const tr_win wavg = {.kh = 3, .kw = 2, .sh = 2, .sw = 3, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    int mp = tr_maxpool_win(o.g, "mp", o.g->input, &wmax, 1);
    int ai = tr_avgpool_win(o.g, "ai", o.g->input, &wavg, 1, 1);
    int ae = tr_avgpool_win(o.g, "ae", o.g->input, &wavg, 1, 0);
    net_ready(&o, ae, 1);
    expect_shape(&o.g->tensors[mp], 2, 4, 3, "maxpool");
    expect_shape(&o.g->tensors[ai], 2, 5, 3, "avgpool");
    float x[128];
    for (int i = 0; i < 128; i++) x[i] = xperm(i, 128);
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    expect_near(o.g->tensors[mp].data, want_max, 24, 0, "maxpool");
    expect_near(o.g->tensors[ai].data, want_inc, 30, 1e-6, "avgpool count_include_pad");
    expect_near(o.g->tensors[ae].data, want_exc, 30, 1e-6, "avgpool exclude pad");
    net_free(&o);
}

/* ---- hand-worked edge cases ---- */

/* A 3x3 image 1..9, window 2x2 at stride 2, padding top 2 and left 1 only: the first output row
 * reads padding only, (1, 0) covers column 0 of rows 0-1 (1 + 4) and column -1, (1, 1) covers
 * 2 3 / 5 6. PyTorch refuses such pads (more than half the window); onnxruntime takes them. An
 * all-padding window averages to 0 with or without count_include_pad (no 0/0), max-pools to
 * the lowest float, and passes no gradient back. */
static void test_padding_only_windows(void **state)
{
    (void)state;
    net o = net_new(1, 3, 3);
    const tr_win win = {.kh = 2, .kw = 2, .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 2, .pl = 1, .pb = 0, .pr = 0};
    int ai = tr_avgpool_win(o.g, "ai", o.g->input, &win, 0, 1);
    int ae = tr_avgpool_win(o.g, "ae", o.g->input, &win, 0, 0);
    int mp = tr_maxpool_win(o.g, "mp", o.g->input, &win, 0);
    net_ready(&o, mp, 1);
    expect_shape(&o.g->tensors[ae], 1, 2, 2, "avgpool");
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    const float want_inc[4] = {0, 0, 5 / 4.f, 16 / 4.f}, want_exc[4] = {0, 0, 5 / 2.f, 16 / 4.f};
    const float want_max[4] = {-FLT_MAX, -FLT_MAX, 4, 6};
    expect_near(o.g->tensors[ai].data, want_inc, 4, 1e-7, "avgpool count_include_pad");
    expect_near(o.g->tensors[ae].data, want_exc, 4, 1e-7, "avgpool exclude pad");
    expect_near(o.g->tensors[mp].data, want_max, 4, 0, "maxpool");
    /* dy = 1 everywhere: max sends 1 to the 4 and the 6; the excluding average sends 1/2 to
     * 1 and 4 and 1/4 to 2 3 5 6 */
    tr_graph_zero_act_grads(o.g);
    for (int t = 0; t < 3; t++) {
        float *dy = o.g->tensors[(int[]){ai, ae, mp}[t]].grad;
        for (int i = 0; i < 4; i++) dy[i] = t == 0 ? 0.f : 1.f;
    }
    tr_graph_backward(o.g, 1);
    const float want_dx[9] = {0.5f, 0.25f, 0.25f, 1.5f, 0.25f, 1.25f, 0, 0, 0};
    expect_near(o.g->tensors[o.g->input].grad, want_dx, 9, 1e-7, "dx");
    net_free(&o);
}

/* ceil_mode along one axis of 5 with window 2, stride 2, padding 1 each side: floor gives 3
 * windows (starting at -1, 1, 3); ceil would add one starting at 5, in the right padding, which
 * PyTorch drops; with padding 0 ceil adds a window at 4 that overhangs the input, and the
 * average of that window divides by the 1 element it covers. */
static void test_ceil_mode_by_hand(void **state)
{
    (void)state;
    net o = net_new(1, 1, 5);
    const tr_win p1 = {.kh = 1, .kw = 2, .sh = 1, .sw = 2, .dh = 1, .dw = 1, .pt = 0, .pl = 1, .pb = 0, .pr = 1};
    const tr_win p0 = {.kh = 1, .kw = 2, .sh = 1, .sw = 2, .dh = 1, .dw = 1};
    int m1 = tr_maxpool_win(o.g, "m1", o.g->input, &p1, 1);
    int a1 = tr_avgpool_win(o.g, "a1", o.g->input, &p1, 1, 1);
    int a0 = tr_avgpool_win(o.g, "a0", o.g->input, &p0, 1, 1);
    int f0 = tr_avgpool_win(o.g, "f0", o.g->input, &p0, 0, 1);
    net_ready(&o, f0, 1);
    expect_shape(&o.g->tensors[m1], 1, 1, 3, "maxpool ceil, pad 1");
    expect_shape(&o.g->tensors[a0], 1, 1, 3, "avgpool ceil, pad 0");
    expect_shape(&o.g->tensors[f0], 1, 1, 2, "avgpool floor, pad 0");
    const float x[5] = {1, 2, 3, 4, 5};
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    const float want_m1[3] = {1, 3, 5}, want_a1[3] = {0.5f, 2.5f, 4.5f}, want_a0[3] = {1.5f, 3.5f, 5};
    expect_near(o.g->tensors[m1].data, want_m1, 3, 0, "maxpool");
    expect_near(o.g->tensors[a1].data, want_a1, 3, 1e-7, "avgpool pad 1");
    expect_near(o.g->tensors[a0].data, want_a0, 3, 1e-7, "avgpool overhang");
    net_free(&o);
}

/* A 1x1 conv with padding after only: the output is larger than the input, so the input is not
 * the column matrix (one sample, where the GEMM would read it directly). */
static void test_pointwise_padded(void **state)
{
    (void)state;
    net o = net_new(2, 2, 2);
    const tr_win win = {.kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .pt = 0, .pl = 0, .pb = 1, .pr = 1};
    int y = tr_conv2d_win(o.g, "conv", o.g->input, 1, &win, 1, 1, NULL, NULL);
    net_ready(&o, y, 1);
    expect_shape(&o.g->tensors[y], 1, 3, 3, "conv");
    float *w = param_of(o.g, "conv.weight");
    w[0] = 1.f, w[1] = -2.f;
    param_of(o.g, "conv.bias")[0] = 0.5f;
    const float x[8] = {1, 2, 3, 4, 10, 20, 30, 40};
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    const float want[9] = {-18.5f, -37.5f, 0.5f, -56.5f, -75.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    expect_near(o.g->tensors[y].data, want, 9, 1e-7, "pointwise padded");
    net_free(&o);
}

/* The builders refuse what no window can be, naming the layer. */
static void test_builder_refusals(void **state)
{
    (void)state;
    static const struct {
        tr_win w;
        int op;   /* 0 conv, 1 max, 2 avg */
        const char *msg;
    } cases[] = {
        {{3, 3, 0, 1, 1, 1, 0, 0, 0, 0}, 0, "bad: invalid conv2d arguments"},
        {{3, 3, 1, 1, 0, 1, 0, 0, 0, 0}, 1, "bad: invalid maxpool"},
        {{3, 3, 1, 1, 1, 1, -1, 0, 0, 0}, 2, "bad: invalid avgpool"},
        {{17, 1, 1, 1, 1, 1, 0, 0, 0, 0}, 0, "bad: kernel 17x1 is larger than the 16 supported per axis"},
        /* dilated 3x3 spans 5 rows: a 4x4 input is too small */
        {{3, 3, 1, 1, 2, 2, 0, 0, 0, 0}, 0, "bad: a 4x4 input padded by (top 0, left 0, bottom 0, right 0) is smaller"},
        {{3, 3, 1, 1, 2, 2, 0, 0, 0, 0}, 1, "bad: a 4x4 input padded by (top 0, left 0, bottom 0, right 0) is smaller"},
        /* a 1x1 kernel at stride 10 after 5 rows and columns of padding: one output, at (-5, -5) */
        {{1, 1, 10, 10, 1, 1, 5, 5, 0, 0}, 0, "bad: every tap of the 1x1 kernel reads only padding on the 4x4 input"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tr_graph *g = tr_graph_new(2, 4, 4);
        int y = cases[i].op == 0   ? tr_conv2d_win(g, "bad", g->input, 2, &cases[i].w, 1, 1, NULL, NULL)
                : cases[i].op == 1 ? tr_maxpool_win(g, "bad", g->input, &cases[i].w, 0)
                                   : tr_avgpool_win(g, "bad", g->input, &cases[i].w, 0, 1);
        assert_int_equal(y, -1);
        if (!strstr(g->err.msg, cases[i].msg)) fail_msg("case %zu: message '%s'", i, g->err.msg);
        tr_graph_free(g);
    }
    tr_graph *g = tr_graph_new(2, 4, 4);
    const tr_win ok = {2, 2, 2, 2, 1, 1, 0, 0, 0, 0};
    assert_int_equal(tr_avgpool_win(g, "bad", g->input, &ok, 2, 1), -1);   /* ceil_mode 2 */
    assert_non_null(strstr(g->err.msg, "ceil_mode 2"));
    tr_graph_free(g);
}

/* ---- finite differences ---- */

typedef struct {
    tr_win w;
    int cout, groups, bias;
} conv_case;

static int build_conv(tr_graph *g, int x, void *arg)
{
    const conv_case *c = arg;
    return tr_conv2d_win(g, "conv", x, c->cout, &c->w, c->groups, c->bias, NULL, NULL);
}

static void gc_ok(const char *what, gc_build_fn fn, void *arg, gc_opts o)
{
    gc_result r;
    int rc = gc_check(what, fn, arg, o, &r);
    if (rc != 0)
        fail_msg("%s: gradient check failed (input err %.3g, param err %.3g)", what, r.err_input, r.err_param);
    assert_true(r.checked > 0);
}

static void test_gc_conv_win(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        int n, c, h, w;
        conv_case cc;
    } cases[] = {
        /* window kh kw sh sw dh dw pt pl pb pr */
        {"conv 2x3 s2x1 d2x1 pads 1,0,2,1 g2 bias", 2, 4, 5, 7, {{2, 3, 2, 1, 2, 1, 1, 0, 2, 1}, 6, 2, 1}},
        {"conv 3x2 s2 d1x2 pads 0,1,1,0", 2, 3, 6, 6, {{3, 2, 2, 2, 1, 2, 0, 1, 1, 0}, 4, 1, 0}},
        {"conv 3x3 s2 d2 pads 2,1,0,3 g3", 3, 3, 7, 6, {{3, 3, 2, 2, 2, 2, 2, 1, 0, 3}, 6, 3, 1}},
        /* output rows of 16+: row copies instead of the offset table, unit and strided */
        {"conv 3x3 s1 d1x2 wide rows", 2, 2, 3, 20, {{3, 3, 1, 1, 1, 2, 1, 2, 0, 3}, 2, 1, 1}},
        {"conv 2x3 s1x2 d2 wide rows", 2, 2, 4, 40, {{2, 3, 1, 2, 2, 2, 0, 1, 2, 3}, 3, 1, 0}},
        /* taps 0 and 2 of each axis only see padding: dropped from the GEMM */
        {"conv 3x3 d2 pads 2 on 2x2 (dead taps)", 2, 3, 2, 2, {{3, 3, 1, 1, 2, 2, 2, 2, 2, 2}, 4, 1, 1}},
        {"conv 1x1 pads after only, one sample", 1, 3, 3, 2, {{1, 1, 1, 1, 1, 1, 0, 0, 1, 2}, 2, 1, 1}},
        {"conv 1x1 pads after only", 3, 3, 3, 2, {{1, 1, 1, 1, 1, 1, 0, 0, 1, 2}, 2, 1, 0}},
        {"depthwise 3x2 s1x2 d1x2 pads 0,2,1,0", 2, 3, 6, 5, {{3, 2, 1, 2, 1, 2, 0, 2, 1, 0}, 3, 3, 0}},
        {"depthwise 5x5 s2 pads 2,1,0,3 bias", 2, 2, 7, 7, {{5, 5, 2, 2, 1, 1, 2, 1, 0, 3}, 2, 2, 1}},
        {"depthwise 3x3 d3 s1 pads 3,0,1,2 wide", 2, 2, 5, 18, {{3, 3, 1, 1, 3, 3, 3, 0, 1, 2}, 2, 2, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gc_opts o = {.n = cases[i].n, .c = cases[i].c, .h = cases[i].h, .w = cases[i].w, .training = 1};
        conv_case cc = cases[i].cc;
        gc_ok(cases[i].what, build_conv, &cc, o);
    }
}

typedef struct {
    tr_win w;
    int ceil_mode, count_include_pad;
} pool_case;

static int build_avg(tr_graph *g, int x, void *arg)
{
    const pool_case *p = arg;
    return tr_avgpool_win(g, "pool", x, &p->w, p->ceil_mode, p->count_include_pad);
}

static void test_gc_avgpool_win(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        int h, w;
        pool_case p;
    } cases[] = {
        {"avgpool 3x2 s2x3 pads 1 ceil include", 8, 8, {{3, 2, 2, 3, 1, 1, 1, 1, 1, 1}, 1, 1}},
        {"avgpool 3x2 s2x3 pads 1 ceil exclude", 8, 8, {{3, 2, 2, 3, 1, 1, 1, 1, 1, 1}, 1, 0}},
        {"avgpool 3x3 s2 pads 1,0,2,1 exclude", 7, 6, {{3, 3, 2, 2, 1, 1, 1, 0, 2, 1}, 0, 0}},
        {"avgpool 2x3 s1x2 d2x1 pads 0,2,1,1 ceil include", 6, 7, {{2, 3, 1, 2, 2, 1, 0, 2, 1, 1}, 1, 1}},
        {"avgpool 2x2 s2 pads 2,1 only (empty windows)", 3, 3, {{2, 2, 2, 2, 1, 1, 2, 1, 0, 0}, 0, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pool_case p = cases[i].p;
        gc_ok(cases[i].what, build_avg, &p,
              (gc_opts){.n = 2, .c = 2, .h = cases[i].h, .w = cases[i].w, .training = 1, .max_checks = 200});
    }
}

static double dot_out(tr_graph *g, int y, const float *r, int64_t m)
{
    tr_graph_forward(g, 1);
    double l = 0;
    for (int64_t i = 0; i < m; i++) l += (double)g->tensors[y].data[i] * r[i];
    return l;
}

/* Max pooling has a kink wherever two values of a window tie, so its check uses a permutation
 * of values 0.25 apart, probed with a step of 0.05 that never reorders them. */
static void maxpool_fd(const char *what, int c, int h, int w, const tr_win *win, int ceil_mode)
{
    net o = net_new(c, h, w);
    int y = tr_maxpool_win(o.g, "mp", o.g->input, win, ceil_mode);
    net_ready(&o, y, 1);
    const int m = c * h * w;
    const int64_t my = tr_tensor_numel(&o.g->tensors[y]);
    assert_true(m < 7919);
    float *x = o.g->tensors[o.g->input].data, *r = malloc((size_t)my * sizeof(float));
    for (int i = 0; i < m; i++) x[i] = xperm(i, m);
    for (int64_t i = 0; i < my; i++) r[i] = wa((int)i) + 0.125f;
    tr_graph_forward(o.g, 1);
    /* a window of padding only outputs -FLT_MAX whatever x is: weighting it would bury the
     * differences under 1e38 */
    for (int64_t i = 0; i < my; i++)
        if (o.g->tensors[y].data[i] == -FLT_MAX) r[i] = 0.f;
    tr_graph_zero_act_grads(o.g);
    memcpy(o.g->tensors[y].grad, r, (size_t)my * sizeof(float));
    tr_graph_backward(o.g, 1);
    const float *ga = o.g->tensors[o.g->input].grad;
    const float step = 0.05f;
    double num2 = 0, diff2 = 0;
    for (int i = 0; i < m; i++) {
        float v = x[i];
        x[i] = v + step;
        double lp = dot_out(o.g, y, r, my);
        x[i] = v - step;
        double lm = dot_out(o.g, y, r, my);
        x[i] = v;
        double num = (lp - lm) / (2.0 * step);
        num2 += num * num;
        diff2 += (num - ga[i]) * (num - ga[i]);
    }
    double err = sqrt(diff2) / (sqrt(num2) + 1e-6);
    fprintf(stderr, "gradcheck %-40s input err %.2e  (%d elements)\n", what, err, m);
    if (!(num2 > 0) || err > 1e-3) fail_msg("%s: input gradient error %.3g", what, err);
    free(r);
    net_free(&o);
}

static void test_gc_maxpool_win(void **state)
{
    (void)state;
    const tr_win a = {.kh = 3, .kw = 2, .sh = 2, .sw = 3, .dh = 2, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    const tr_win b = {.kh = 2, .kw = 3, .sh = 1, .sw = 2, .dh = 1, .dw = 2, .pt = 0, .pl = 2, .pb = 1, .pr = 0};
    const tr_win e = {.kh = 2, .kw = 2, .sh = 2, .sw = 2, .dh = 1, .dw = 1, .pt = 2, .pl = 1, .pb = 0, .pr = 0};
    maxpool_fd("maxpool 3x2 s2x3 d2x1 pads 1 ceil", 2, 8, 8, &a, 1);
    maxpool_fd("maxpool 2x3 s1x2 d1x2 pads 0,2,1,0", 2, 5, 7, &b, 0);
    maxpool_fd("maxpool 2x3 s1x2 d1x2 pads 0,2,1,0 ceil", 2, 5, 8, &b, 1);
    maxpool_fd("maxpool 2x2 s2 pads 2,1 only (empty windows)", 2, 3, 3, &e, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_rect_torch),
        cmocka_unit_test(test_depthwise_torch),
        cmocka_unit_test(test_pools_torch),
        cmocka_unit_test(test_padding_only_windows),
        cmocka_unit_test(test_ceil_mode_by_hand),
        cmocka_unit_test(test_pointwise_padded),
        cmocka_unit_test(test_builder_refusals),
        cmocka_unit_test(test_gc_conv_win),
        cmocka_unit_test(test_gc_avgpool_win),
        cmocka_unit_test(test_gc_maxpool_win),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
