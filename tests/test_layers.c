/* The core layers on the CPU backend: every op's backward against central finite differences
 * (inputs and parameters), forwards against values worked out by hand, the loss, SGD and the
 * gradient moments, the builders' checks and the backend selection. */
#include "tests/testutil.h"
#include "tests/gradcheck.h"
#include "tests/oneop.h"

#include <math.h>
#include <omp.h>
#include "deba/stats.h"
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/layers.h"

/* A one-op graph on the CPU backend (tests/oneop.h), for the checks that set inputs and
 * parameters here: no input gradient unless a test asks for one, and training mode chosen when
 * the graph is finished. */
typedef net one_op;

static one_op setup_graph(int c, int h, int w)
{
    one_op o = net_new(c, h, w);
    o.g->input_grad = 0;
    return o;
}

static void finish_graph(one_op *o, int out, int n, int training)
{
    net_ready(o, out, n);   /* allocating and planning do not depend on the mode */
    o->g->training = training;
}

static void teardown_graph(one_op *o) { net_free(o); }

static void expect_near(const float *got, const float *want, int64_t m, double tol, const char *what)
{
    for (int64_t i = 0; i < m; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1 + fabs((double)want[i]))))
            fail_msg("%s[%lld]: got %.7g, expected %.7g", what, (long long)i, got[i], want[i]);
}

/* ---- finite differences ---- */

typedef struct {
    int cout, k, stride, pad, groups, bias;
} conv_case;

static int build_conv(tr_graph *g, int x, void *arg)
{
    const conv_case *c = arg;
    return tr_conv2d(g, "conv", x, c->cout, c->k, c->stride, c->pad, c->groups, c->bias, NULL, NULL);
}

static void gc_ok(const char *what, gc_build_fn fn, void *arg, gc_opts o)
{
    gc_result r;
    int rc = gc_check(what, fn, arg, o, &r);
    if (rc != 0)
        fail_msg("%s: gradient check failed (input err %.3g, param err %.3g)", what, r.err_input, r.err_param);
    assert_true(r.checked > 0);
}

static void test_gc_conv(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        int n, c, h, w;
        conv_case cc;
    } cases[] = {
        {"conv k3 s1 p1 bias", 2, 2, 5, 5, {3, 3, 1, 1, 1, 1}},
        {"conv k3 s2 p1 no bias", 2, 3, 6, 5, {4, 3, 2, 1, 1, 0}},
        {"conv k3 s1 p0 groups 2", 2, 4, 5, 5, {6, 3, 1, 0, 2, 1}},
        {"conv k3 s2 p0 groups 2 no bias", 3, 4, 7, 6, {2, 3, 2, 0, 2, 0}},
        {"conv depthwise k3 s1 p1 bias", 2, 4, 5, 5, {4, 3, 1, 1, 4, 1}},
        {"conv depthwise k3 s2 p1", 2, 3, 6, 7, {3, 3, 2, 1, 3, 0}},
        {"conv depthwise k5 s2 p2 bias", 2, 2, 7, 7, {2, 5, 2, 2, 2, 1}},
        {"conv k1 s1 p0 bias", 2, 3, 4, 4, {5, 1, 1, 0, 1, 1}},
        {"conv k1 s2 p0 no bias", 2, 3, 5, 5, {2, 1, 2, 0, 1, 0}},
        {"conv k1 s1 groups 3", 2, 6, 3, 3, {3, 1, 1, 0, 3, 1}},
        /* one sample per GEMM (output plane >= 2048): NCHW written by the GEMM directly */
        {"conv k3 s1 p1 large plane", 2, 1, 46, 46, {2, 3, 1, 1, 1, 1}},
        {"conv k1 s1 p0 large plane", 2, 2, 46, 46, {2, 1, 1, 0, 1, 1}},
        /* 32x32 output: 2 samples per GEMM, and 3 samples leave a chunk of one */
        {"conv k3 s1 p1 chunk remainder", 3, 2, 32, 32, {2, 3, 1, 1, 1, 1}},
        /* taps that only see padding are dropped from the GEMM */
        {"conv k3 p1 on 1x1 maps", 3, 4, 1, 1, {5, 3, 1, 1, 1, 1}},
        {"conv k3 s2 p1 2x2 -> 1x1", 2, 3, 2, 2, {4, 3, 2, 1, 1, 0}},
        {"conv k5 p2 on 1x1 groups 2", 2, 4, 1, 1, {6, 5, 1, 2, 2, 1}},
        {"conv k3 p1 on 1x3 maps", 2, 2, 1, 3, {3, 3, 1, 1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gc_opts o = {.n = cases[i].n, .c = cases[i].c, .h = cases[i].h, .w = cases[i].w, .training = 1};
        conv_case cc = cases[i].cc;
        gc_ok(cases[i].what, build_conv, &cc, o);
    }
}

static int build_bn(tr_graph *g, int x, void *arg)
{
    (void)arg;
    return tr_batchnorm(g, "bn", x, 1e-5f, 0.1f);
}

static void test_gc_batchnorm(void **state)
{
    (void)state;
    gc_ok("batchnorm train", build_bn, NULL, (gc_opts){.n = 3, .c = 3, .h = 4, .w = 3, .training = 1});
    gc_ok("batchnorm train 1x1 planes", build_bn, NULL, (gc_opts){.n = 5, .c = 2, .h = 1, .w = 1, .training = 1});
    gc_ok("batchnorm eval", build_bn, NULL, (gc_opts){.n = 2, .c = 3, .h = 3, .w = 3, .training = 0});
}

/* The harness draws inputs in (-1, 1); a per-channel affine map in front (a depthwise 1x1 conv
 * with constant weight a and bias b) moves them into one smooth piece of the activation, so no
 * finite difference straddles a kink. */
typedef struct {
    tr_act kind;
    float a, b;
    int pool;        /* 0: activation; 1: max pool; 2: avg pool */
    int k, stride, pad;
} pre_case;

static int affine(tr_graph *g, int x, float a, float b)
{
    int c = tr_graph_tensor(g, x)->c;
    tr_init wi = {TR_INIT_CONST, a}, bi = {TR_INIT_CONST, b};
    return tr_conv2d(g, "affine", x, c, 1, 1, 0, c, 1, &wi, &bi);
}

static int build_pre(tr_graph *g, int x, void *arg)
{
    const pre_case *p = arg;
    x = affine(g, x, p->a, p->b);
    if (x < 0) return -1;
    if (p->pool == 1) return tr_maxpool(g, "pool", x, p->k, p->stride, p->pad);
    if (p->pool == 2) return tr_avgpool(g, "pool", x, p->k, p->stride, p->pad);
    return tr_activation(g, "act", x, p->kind);
}

static void test_gc_activations(void **state)
{
    (void)state;
    /* (a, b) maps (-1, 1) onto (b - a, b + a): each piece of each activation, away from its
     * kinks at 0, ±3 and 6 */
    static const struct { const char *what; pre_case p; } cases[] = {
        {"relu x>0", {TR_ACT_RELU, 0.4f, 0.6f, 0, 0, 0, 0}},
        {"relu x<0", {TR_ACT_RELU, 0.4f, -0.6f, 0, 0, 0, 0}},
        {"relu6 0<x<6", {TR_ACT_RELU6, 2.5f, 3.f, 0, 0, 0, 0}},
        {"relu6 x<0", {TR_ACT_RELU6, 0.4f, -0.6f, 0, 0, 0, 0}},
        {"relu6 x>6", {TR_ACT_RELU6, 0.5f, 7.f, 0, 0, 0, 0}},
        {"sigmoid", {TR_ACT_SIGMOID, 4.f, 0.f, 0, 0, 0, 0}},
        {"silu", {TR_ACT_SILU, 4.f, 0.f, 0, 0, 0, 0}},
        {"hardsigmoid -3<x<3", {TR_ACT_HSIGMOID, 2.5f, 0.f, 0, 0, 0, 0}},
        {"hardsigmoid x<-3", {TR_ACT_HSIGMOID, 0.5f, -4.f, 0, 0, 0, 0}},
        {"hardsigmoid x>3", {TR_ACT_HSIGMOID, 0.5f, 4.f, 0, 0, 0, 0}},
        {"hardswish -3<x<3", {TR_ACT_HSWISH, 2.5f, 0.f, 0, 0, 0, 0}},
        {"hardswish x<-3", {TR_ACT_HSWISH, 0.5f, -4.f, 0, 0, 0, 0}},
        {"hardswish x>3", {TR_ACT_HSWISH, 0.5f, 4.f, 0, 0, 0, 0}},
        {"gelu", {TR_ACT_GELU, 3.f, 0.f, 0, 0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pre_case p = cases[i].p;
        gc_ok(cases[i].what, build_pre, &p,
              (gc_opts){.n = 2, .c = 3, .h = 3, .w = 4, .training = 1, .keep_init = 1, .max_checks = 200});
    }
}

static double dot_out(tr_graph *g, int y, const float *r, int64_t m)
{
    tr_graph_forward(g, g->planned_n);
    double l = 0;
    for (int64_t i = 0; i < m; i++) l += (double)g->tensors[y].data[i] * r[i];
    return l;
}

/* Max pooling has a kink wherever two values of a window tie, so its check picks the inputs:
 * a permutation of values 0.05 apart, probed with a step of 0.01 that never reorders them. */
static void maxpool_fd(int n, int c, int h, int w, int k, int stride, int pad)
{
    one_op o = setup_graph(c, h, w);
    o.g->input_grad = 1;
    int y = tr_maxpool(o.g, "mp", o.g->input, k, stride, pad);
    finish_graph(&o, y, n, 1);
    const int64_t m = (int64_t)n * c * h * w, my = (int64_t)n * tr_tensor_numel(&o.g->tensors[y]);
    assert_true(m < 7919);   /* 7919 is prime: i -> 7919*i mod m is a permutation */
    float *x = o.g->tensors[o.g->input].data, *r = malloc((size_t)my * sizeof(float));
    for (int64_t i = 0; i < m; i++) x[i] = (float)((i * 7919) % m) * 0.05f - (float)m * 0.025f;
    tr_rng rng;
    tr_rng_seed(&rng, 5, 0);
    for (int64_t i = 0; i < my; i++) r[i] = (float)(2 * tr_rng_uniform(&rng) - 1);
    tr_graph_forward(o.g, n);
    tr_graph_zero_act_grads(o.g);
    memcpy(o.g->tensors[y].grad, r, (size_t)my * sizeof(float));
    tr_graph_backward(o.g, n);
    const float *ga = o.g->tensors[o.g->input].grad;
    const float step = 0.01f;
    double num2 = 0, diff2 = 0;
    for (int64_t i = 0; i < m; i++) {
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
    fprintf(stderr, "gradcheck maxpool k%d s%d p%d %dx%d: input err %.2e (%lld elements)\n", k, stride, pad, h, w,
            err, (long long)m);
    if (err > 1e-3) fail_msg("maxpool k%d s%d p%d: input gradient error %.3g", k, stride, pad, err);
    free(r);
    teardown_graph(&o);
}

static void test_gc_pools(void **state)
{
    (void)state;
    maxpool_fd(2, 2, 7, 6, 3, 2, 1);
    maxpool_fd(2, 2, 4, 6, 2, 2, 0);
    maxpool_fd(2, 3, 5, 5, 3, 1, 0);
    maxpool_fd(1, 2, 8, 8, 3, 2, 1);
    static const struct { const char *what; pre_case p; int h, w; } cases[] = {
        {"avgpool k3 s2 p1", {TR_ACT_RELU, 1.f, 0.f, 2, 3, 2, 1}, 7, 6},
        {"avgpool k3 s1 p1", {TR_ACT_RELU, 1.f, 0.f, 2, 3, 1, 1}, 4, 5},
        {"avgpool k2 s2 p0", {TR_ACT_RELU, 1.f, 0.f, 2, 2, 2, 0}, 4, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pre_case p = cases[i].p;
        gc_ok(cases[i].what, build_pre, &p,
              (gc_opts){.n = 2, .c = 2, .h = cases[i].h, .w = cases[i].w, .training = 1, .keep_init = 1,
                        .max_checks = 200});
    }
}

typedef struct { int oh, ow; } ada_case;

static int build_ada(tr_graph *g, int x, void *arg)
{
    const ada_case *a = arg;
    return tr_adaptive_avgpool(g, "pool", x, a->oh, a->ow);
}

static void test_gc_adaptive(void **state)
{
    (void)state;
    ada_case a = {3, 3};
    gc_ok("adaptive avgpool 5x5->3x3", build_ada, &a, (gc_opts){.n = 2, .c = 2, .h = 5, .w = 5, .training = 1});
    a = (ada_case){2, 3};
    gc_ok("adaptive avgpool 5x7->2x3", build_ada, &a, (gc_opts){.n = 2, .c = 2, .h = 5, .w = 7, .training = 1});
    a = (ada_case){1, 1};
    gc_ok("adaptive avgpool global", build_ada, &a, (gc_opts){.n = 3, .c = 4, .h = 3, .w = 2, .training = 1});
}

typedef struct { int out, bias; } lin_case;

static int build_linear(tr_graph *g, int x, void *arg)
{
    const lin_case *l = arg;
    return tr_linear(g, "fc", x, l->out, l->bias, NULL, NULL);
}

static void test_gc_linear(void **state)
{
    (void)state;
    lin_case l = {4, 1};
    gc_ok("linear vector bias", build_linear, &l, (gc_opts){.n = 3, .c = 1, .h = 1, .w = 6, .training = 1});
    l = (lin_case){5, 0};
    gc_ok("linear vector no bias", build_linear, &l, (gc_opts){.n = 2, .c = 1, .h = 1, .w = 3, .training = 1});
    l = (lin_case){4, 1};
    gc_ok("linear tokens (T=3, D=5)", build_linear, &l, (gc_opts){.n = 2, .c = 3, .h = 1, .w = 5, .training = 1});
    l = (lin_case){70, 1};   /* more than one 64-column block of bias sums */
    gc_ok("linear 70 outputs", build_linear, &l,
          (gc_opts){.n = 2, .c = 2, .h = 1, .w = 3, .training = 1, .max_checks = 300});
}

static int build_add_leaf(tr_graph *g, int x, void *arg)
{
    (void)arg;
    const tr_tensor *t = tr_graph_tensor(g, x);
    int y = tr_graph_add_leaf(g, t->c, t->h, t->w);
    return tr_add(g, "add", x, y);
}

static int build_add_self(tr_graph *g, int x, void *arg)
{
    (void)arg;
    return tr_add(g, "add", x, x);
}

static int build_views(tr_graph *g, int x, void *arg)
{
    (void)arg;
    x = tr_conv2d(g, "conv", x, 2, 3, 1, 1, 1, 1, NULL, NULL);
    x = tr_flatten(g, "flatten", x);
    x = tr_linear(g, "fc", x, 3, 1, NULL, NULL);
    return tr_reshape(g, "reshape", x, 3, 1, 1);
}

static int build_reshape(tr_graph *g, int x, void *arg)
{
    (void)arg;
    x = tr_reshape(g, "r1", x, 6, 1, 2);
    return tr_linear(g, "fc", x, 3, 1, NULL, NULL);
}

static void test_gc_add_views(void **state)
{
    (void)state;
    gc_ok("add two leaves", build_add_leaf, NULL, (gc_opts){.n = 2, .c = 2, .h = 3, .w = 3, .training = 1});
    gc_ok("add x + x", build_add_self, NULL, (gc_opts){.n = 2, .c = 2, .h = 2, .w = 3, .training = 1});
    gc_ok("conv-flatten-linear-reshape", build_views, NULL, (gc_opts){.n = 2, .c = 2, .h = 4, .w = 4, .training = 1});
    gc_ok("reshape-linear", build_reshape, NULL, (gc_opts){.n = 2, .c = 3, .h = 2, .w = 2, .training = 1});
}

/* ---- forwards by hand ---- */

/* x = 1..9 in a 3x3 image (and 2x it as a second sample), a plus-shaped kernel, bias 0.5,
 * padding 1: each output is the sum of the pixel and its in-bounds 4-neighbours. */
static void test_conv_forward_by_hand(void **state)
{
    (void)state;
    static const float plus[9] = {0, 1, 0, 1, 1, 1, 0, 1, 0};
    static const float s1[9] = {7, 11, 11, 17, 25, 23, 19, 29, 23};
    for (int stride = 1; stride <= 2; stride++) {
        one_op o = setup_graph(1, 3, 3);
        int y = tr_conv2d(o.g, "conv", o.g->input, 1, 3, stride, 1, 1, 1, NULL, NULL);
        finish_graph(&o, y, 2, 1);
        memcpy(param_of(o.g, "conv.weight"), plus, sizeof plus);
        param_of(o.g, "conv.bias")[0] = 0.5f;
        float x[18];
        for (int i = 0; i < 9; i++) x[i] = (float)(i + 1), x[9 + i] = 2.f * (float)(i + 1);
        tr_graph_set_batch(o.g, x, NULL, 2);
        tr_graph_forward(o.g, 2);
        float want[18];
        int m = 0;
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 3; i += stride)
                for (int j = 0; j < 3; j += stride) want[m++] = (float)(s + 1) * s1[i * 3 + j] + 0.5f;
        assert_int_equal(o.g->tensors[y].h, stride == 1 ? 3 : 2);
        expect_near(o.g->tensors[y].data, want, m, 1e-6, stride == 1 ? "conv s1" : "conv s2");
        teardown_graph(&o);
    }
}

/* A 3x3 kernel with padding 1 on 1x1 maps only ever multiplies its centre tap. */
static void test_conv_forward_dead_taps(void **state)
{
    (void)state;
    one_op o = setup_graph(2, 1, 1);
    int y = tr_conv2d(o.g, "conv", o.g->input, 3, 3, 1, 1, 1, 1, NULL, NULL);
    finish_graph(&o, y, 2, 1);
    float *w = param_of(o.g, "conv.weight"), *b = param_of(o.g, "conv.bias");
    for (int i = 0; i < 3 * 2 * 9; i++) w[i] = 100.f;   /* the dead taps must not count */
    for (int co = 0; co < 3; co++) {
        w[(co * 2 + 0) * 9 + 4] = (float)(co + 1);
        w[(co * 2 + 1) * 9 + 4] = -1.f;
        b[co] = 0.25f;
    }
    const float x[4] = {2.f, 3.f, -1.f, 0.5f};
    tr_graph_set_batch(o.g, x, NULL, 2);
    tr_graph_forward(o.g, 2);
    const float want[6] = {1 * 2 - 3 + 0.25f, 2 * 2 - 3 + 0.25f, 3 * 2 - 3 + 0.25f,
                           -1 - 0.5f + 0.25f, -2 - 0.5f + 0.25f, -3 - 0.5f + 0.25f};
    expect_near(o.g->tensors[y].data, want, 6, 1e-6, "conv on 1x1");
    teardown_graph(&o);
}

/* All-ones image and kernel: an output counts the in-bounds taps, 9 inside, 6 on an edge,
 * 4 in a corner, times the input channels. Large planes (one sample per GEMM) and 32x32
 * planes (two per GEMM, three samples: a remainder chunk). */
static void test_conv_forward_ones(void **state)
{
    (void)state;
    static const int sizes[][2] = {{48, 3}, {32, 3}, {5, 4}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        const int H = sizes[t][0], n = sizes[t][1], cin = 2, cout = 3;
        one_op o = setup_graph(cin, H, H);
        int y = tr_conv2d(o.g, "conv", o.g->input, cout, 3, 1, 1, 1, 0, NULL, NULL);
        finish_graph(&o, y, n, 1);
        float *w = param_of(o.g, "conv.weight");
        for (int i = 0; i < cout * cin * 9; i++) w[i] = 1.f;
        size_t m = (size_t)n * cin * H * H;
        float *x = malloc(m * sizeof(float));
        for (size_t i = 0; i < m; i++) x[i] = 1.f;
        tr_graph_set_batch(o.g, x, NULL, n);
        tr_graph_forward(o.g, n);
        const float *out = o.g->tensors[y].data;
        for (int s = 0; s < n; s++)
            for (int co = 0; co < cout; co++)
                for (int i = 0; i < H; i++)
                    for (int j = 0; j < H; j++) {
                        int rows = 3 - (i == 0) - (i == H - 1), cols = 3 - (j == 0) - (j == H - 1);
                        float want = (float)(cin * rows * cols);
                        float got = out[(((size_t)s * cout + co) * H + i) * H + j];
                        if (got != want) fail_msg("H=%d (%d,%d,%d,%d): got %g, expected %g", H, s, co, i, j, got, want);
                    }
        free(x);
        teardown_graph(&o);
    }
}

/* y = (x - mean) / sqrt(var + eps) * weight + bias with given running statistics. */
static void test_bn_eval_by_hand(void **state)
{
    (void)state;
    one_op o = setup_graph(2, 1, 2);
    int y = tr_batchnorm(o.g, "bn", o.g->input, 1e-5f, 0.1f);
    finish_graph(&o, y, 1, 0);
    const tr_node *nd = &o.g->nodes[0];
    float *st = o.g->stats + nd->attr.bn.stat_off;
    st[0] = 1.f, st[1] = 2.f, st[2] = 4.f, st[3] = 9.f;   /* mean (1, 2), var (4, 9) */
    float *w = param_of(o.g, "bn.weight"), *b = param_of(o.g, "bn.bias");
    w[0] = 2.f, w[1] = 1.f, b[0] = 0.5f, b[1] = -1.f;
    const float x[4] = {3.f, -1.f, 2.f, 8.f};
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    const double r0 = 1 / sqrt(4 + 1e-5), r1 = 1 / sqrt(9 + 1e-5);
    const float want[4] = {(float)(2 * r0 * 2 + 0.5), (float)(-2 * r0 * 2 + 0.5), (float)(0 * r1 - 1),
                           (float)(6 * r1 - 1)};
    expect_near(o.g->tensors[y].data, want, 4, 1e-6, "bn eval");
    /* eval leaves the running statistics alone */
    assert_true(st[0] == 1.f && st[3] == 9.f);
    teardown_graph(&o);
}

/* One train forward: channel 0 holds {1, 2, 3, 6} over two samples (mean 3, biased var 3.5,
 * unbiased 14/3); running stats move by momentum 0.1 from (0, 1). */
static void test_bn_running_update(void **state)
{
    (void)state;
    one_op o = setup_graph(2, 1, 2);
    int y = tr_batchnorm(o.g, "bn", o.g->input, 1e-5f, 0.1f);
    finish_graph(&o, y, 2, 1);
    const float x[8] = {1, 2, 0, 0, 3, 6, 4, 4};   /* sample 0: c0 {1,2}, c1 {0,0}; sample 1: c0 {3,6}, c1 {4,4} */
    tr_graph_set_batch(o.g, x, NULL, 2);
    tr_graph_forward(o.g, 2);
    const float *st = o.g->stats + o.g->nodes[0].attr.bn.stat_off;
    /* channel 1: {0, 0, 4, 4}: mean 2, biased var 4, unbiased 16/3 */
    const float want_stats[4] = {0.3f, 0.2f, (float)(0.9 + 0.1 * 14.0 / 3), (float)(0.9 + 0.1 * 16.0 / 3)};
    expect_near(st, want_stats, 4, 1e-6, "running stats");
    const double r0 = 1 / sqrt(3.5 + 1e-5), r1 = 1 / sqrt(4 + 1e-5);
    const float want[8] = {(float)(-2 * r0), (float)(-1 * r0), (float)(-2 * r1), (float)(-2 * r1),
                           (float)(0 * r0),  (float)(3 * r0),  (float)(2 * r1),  (float)(2 * r1)};
    expect_near(o.g->tensors[y].data, want, 8, 1e-5, "bn train output");
    teardown_graph(&o);
}

static void test_pool_forward_by_hand(void **state)
{
    (void)state;
    /* 4x4 image 0..15; max pool 3/2/1 takes the bottom-right of each window; avg pool 3/2/1
     * divides by 9 including the zero padding; adaptive 4->3 uses bins [0,2) [1,3) [2,4), 4->2
     * the windows of a 2x2 average pool. */
    one_op o = setup_graph(1, 4, 4);
    int mp = tr_maxpool(o.g, "mp", o.g->input, 3, 2, 1);
    int ap = tr_avgpool(o.g, "ap", o.g->input, 3, 2, 1);
    int ad = tr_adaptive_avgpool(o.g, "ad", o.g->input, 3, 3);
    int ad2 = tr_adaptive_avgpool(o.g, "ad2", o.g->input, 2, 2);   /* 4 divides by 2: plain 2x2 windows */
    finish_graph(&o, ad, 1, 1);
    (void)ap;
    float x[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i;
    tr_graph_set_batch(o.g, x, NULL, 1);
    tr_graph_forward(o.g, 1);
    const float want_mp[4] = {5, 7, 13, 15};
    expect_near(o.g->tensors[mp].data, want_mp, 4, 0, "maxpool");
    const float want_ap[4] = {(0 + 1 + 4 + 5) / 9.f, (1 + 2 + 3 + 5 + 6 + 7) / 9.f, (4 + 5 + 8 + 9 + 12 + 13) / 9.f,
                              (5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15) / 9.f};
    expect_near(o.g->tensors[ap].data, want_ap, 4, 1e-6, "avgpool");
    const float want_ad[9] = {2.5f, 3.5f, 4.5f, 6.5f, 7.5f, 8.5f, 10.5f, 11.5f, 12.5f};
    expect_near(o.g->tensors[ad].data, want_ad, 9, 1e-6, "adaptive avgpool");
    const float want_ad2[4] = {2.5f, 4.5f, 10.5f, 12.5f};
    expect_near(o.g->tensors[ad2].data, want_ad2, 4, 0, "adaptive avgpool 4->2");
    teardown_graph(&o);
}

/* cnn_small's 2x2 stride-2 max pool by hand: the first of tied maxima wins, a NaN wins and the
 * first NaN stays, a window of -inf gives -inf at its first tap; the gradient goes to the winner.
 * A 5x5 input: its last row and column are in no window. */
static void test_maxpool_2x2_by_hand(void **state)
{
    (void)state;
    one_op o = setup_graph(1, 5, 5);
    o.g->input_grad = 1;
    int y = tr_maxpool(o.g, "mp", o.g->input, 2, 2, 0);
    finish_graph(&o, y, 1, 1);
    const float N = NAN, I = -INFINITY;
    const float x[25] = {1, 1, N, 5, 99,   /* windows: {1,1;0,0} {N,5;7,8} */
                         0, 0, 7, 8, 99,
                         3, N, I, I, 99,   /*          {3,N;N,9} {-inf x4}  */
                         N, 9, I, I, 99,
                         99, 99, 99, 99, 99};
    memcpy(o.g->tensors[o.g->input].data, x, sizeof x);
    tr_graph_forward(o.g, 1);
    const float *yv = o.g->tensors[y].data;
    assert_true(yv[0] == 1.f && isnan(yv[1]) && isnan(yv[2]) && yv[3] == -INFINITY);
    tr_graph_zero_act_grads(o.g);
    const float dy[4] = {1, 2, 3, 4};
    memcpy(o.g->tensors[y].grad, dy, sizeof dy);
    tr_graph_backward(o.g, 1);
    float want[25] = {0};
    want[0] = 1, want[2] = 2, want[11] = 3, want[12] = 4;
    expect_near(o.g->tensors[o.g->input].grad, want, 25, 0, "maxpool 2x2 gradient");
    teardown_graph(&o);
}

static void test_act_forward_by_hand(void **state)
{
    (void)state;
    static const struct { tr_act k; float x, y; } cases[] = {
        {TR_ACT_RELU, -1.f, 0.f},    {TR_ACT_RELU, 2.f, 2.f},       {TR_ACT_RELU6, 7.f, 6.f},
        {TR_ACT_RELU6, 3.f, 3.f},    {TR_ACT_SIGMOID, 0.f, 0.5f},   {TR_ACT_SILU, 1.f, 0.7310585786f},
        {TR_ACT_HSIGMOID, 1.5f, 0.75f}, {TR_ACT_HSIGMOID, -4.f, 0.f}, {TR_ACT_HSWISH, 1.f, 4.f / 6.f},
        {TR_ACT_HSWISH, 4.f, 4.f},   {TR_ACT_GELU, 1.f, 0.8413447461f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        one_op o = setup_graph(1, 1, 1);
        int y = tr_activation(o.g, "act", o.g->input, cases[i].k);
        finish_graph(&o, y, 1, 1);
        tr_graph_set_batch(o.g, &cases[i].x, NULL, 1);
        tr_graph_forward(o.g, 1);
        expect_near(o.g->tensors[y].data, &cases[i].y, 1, 1e-6, tr_act_name(cases[i].k));
        teardown_graph(&o);
    }
}

/* Rows [1 2 3] label 2 and [1 1 1] label 0: losses 3 - lse and log 3; the tie in row 2 goes
 * to the first maximum, so both rows count as correct. */
static void test_xent_by_hand(void **state)
{
    (void)state;
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    assert_non_null(be);
    const float z[6] = {1, 2, 3, 1, 1, 1};
    const int y[2] = {2, 0};
    float dz[6];
    double loss;
    int64_t correct;
    be->xent(be, z, y, 2, 3, dz, &loss, &correct);
    double s = 1 + exp(-1.0) + exp(-2.0);
    double l0 = log(s);   /* lse - 3 */
    assert_true(fabs(loss - (l0 + log(3.0))) < 1e-6);
    assert_int_equal(correct, 2);
    const float want[6] = {(float)(exp(-2.0) / s / 2), (float)(exp(-1.0) / s / 2), (float)((1 / s - 1) / 2),
                           (float)((1 / 3.0 - 1) / 2), (float)(1 / 6.0), (float)(1 / 6.0)};
    expect_near(dz, want, 6, 1e-6, "dlogits");
    tr_backend_free(be);
}

/* p = 1, g = 0.5, lr 0.1, momentum 0.9, wd 0.01:
 * step 1: d = 0.51, m = 0.51, p = 0.949; step 2: d = 0.50949, m = 0.96849, p = 0.852151.
 * N spans three units of 16384, ragged blocks of 1024 and a tail shorter than one lane row, so
 * every element of every partition piece must come out so. */
static void test_sgd_by_hand(void **state)
{
    (void)state;
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    enum { N = 3 * 16384 + 1000 + 7 };
    float *p = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float)), *m = calloc(N, sizeof(float));
    for (int i = 0; i < N; i++) p[i] = 1.f, g[i] = 0.5f;
    be->sgd(be, p, g, m, N, 0.1f, 0.9f, 0.01f);
    assert_true(fabsf(p[0] - 0.949f) < 1e-6f && fabsf(m[0] - 0.51f) < 1e-6f);
    be->sgd(be, p, g, m, N, 0.1f, 0.9f, 0.01f);
    for (int i = 0; i < N; i++)
        if (fabsf(p[i] - 0.852151f) > 1e-6f || fabsf(m[i] - 0.96849f) > 1e-6f)
            fail_msg("sgd[%d]: p %.7g m %.7g", i, p[i], m[i]);
    free(p), free(g), free(m);
    tr_backend_free(be);
}

/* g_i = (i mod 255) - 127 for i < 100000: integers whose squares sum to under 2^24 in any block of
 * 1024, so the float lanes (core/moments.h) are exact and both sums must equal the closed form,
 * taken here in double, to the bit. */
static void test_grad_moments(void **state)
{
    (void)state;
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    const float small[4] = {1, 2, 3, -4};
    double s, ss;
    be->grad_moments(be, small, 4, &s, &ss);
    assert_true(s == 2.0 && ss == 30.0);
    enum { N = 100000 };
    float *g = malloc(N * sizeof(float));
    double want_s = 0, want_q = 0;
    for (int i = 0; i < N; i++) {
        int k = i % 255 - 127;
        g[i] = (float)k;
        want_s += k;
        want_q += (double)k * k;
    }
    be->grad_moments(be, g, N, &s, &ss);
    /* 392 full cycles of -127..127 sum to 0; the 40 left over are -127..-88 */
    assert_true(want_s == -4300.0);
    assert_true(s == want_s);
    assert_true(ss == want_q);
    free(g);
    tr_backend_free(be);
}

/* The fused SGD + moments pass: moments bit-identical to the separate pass (and to libdeba's
 * deba_grad_moments, whatever the thread count, and to deba_grad_moments_many, the Python
 * Monitor's pass), within the float lanes' 1e-6 of a long-double sum computed here,
 * and parameters and momentum bit-identical to the plain SGD update. Sizes: part of one lane row,
 * ragged blocks of 1024 and units of 16384, and 183 units over both threads. */
static void test_sgd_moments_fused(void **state)
{
    (void)state;
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    assert_non_null(be->sgd_moments);
    const int64_t sizes[] = { 5, 8191, 3 * 8192 + 7, 3000001 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k];
        float *g = malloc((size_t)n * sizeof(float)), *p1 = malloc((size_t)n * sizeof(float)),
              *p2 = malloc((size_t)n * sizeof(float)), *m1 = malloc((size_t)n * sizeof(float)),
              *m2 = malloc((size_t)n * sizeof(float));
        uint64_t x = 88172645463325252ull + (uint64_t)k;
        long double ls = 0, lq = 0, la = 0;
        for (int64_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            g[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 1e-2f;
            p1[i] = p2[i] = (float)i * 1e-7f - 0.1f;
            m1[i] = m2[i] = 0.01f;
            ls += g[i];
            lq += (long double)g[i] * g[i];
            la += fabsl((long double)g[i]);
        }
        double s_sep, q_sep, s_fused, q_fused, s_lib1, q_lib1, s_lib2, q_lib2;
        be->grad_moments(be, g, n, &s_sep, &q_sep);
        be->sgd(be, p1, g, m1, n, 0.01f, 0.9f, 5e-4f);
        be->sgd_moments(be, p2, g, m2, n, 0.01f, 0.9f, 5e-4f, &s_fused, &q_fused);
        assert_true(s_fused == s_sep && q_fused == q_sep);
        assert_memory_equal(p1, p2, (size_t)n * sizeof(float));
        assert_memory_equal(m1, m2, (size_t)n * sizeof(float));
        int threads = omp_get_max_threads();
        omp_set_num_threads(1);
        deba_grad_moments(g, n, &s_lib1, &q_lib1);
        omp_set_num_threads(threads > 1 ? threads : 3);
        deba_grad_moments(g, n, &s_lib2, &q_lib2);
        omp_set_num_threads(threads);
        assert_true(s_lib1 == s_sep && q_lib1 == q_sep && s_lib2 == s_sep && q_lib2 == q_sep);
        double s_many, q_many;
        const float *arrays[1] = {g};
        deba_grad_moments_many(arrays, &n, 1, &s_many, &q_many);
        assert_true(s_many == s_sep && q_many == q_sep);
        /* float lanes of at most 64 values: error bounded by about 80 float roundings of Σ|g| */
        assert_true(fabsl((long double)s_sep - ls) <= 1e-6L * la);
        assert_true(fabsl((long double)q_sep - lq) <= 1e-6L * lq);
        free(g), free(p1), free(p2), free(m1), free(m2);
    }
    tr_backend_free(be);
}

/* ---- builders ---- */

static void test_builders(void **state)
{
    (void)state;
    tr_graph *g = tr_graph_new(3, 32, 32);
    int y = tr_conv2d(g, "conv1", g->input, 64, 3, 1, 1, 1, 1, NULL, NULL);
    assert_true(y > 0);
    const tr_node *nd = &g->nodes[0];
    assert_true(nd->flops == 2.0 * 64 * 1024 * 27 + 64 * 1024);
    assert_int_equal(g->n_params, 64 * 27 + 64);
    assert_int_equal(g->pspecs[0].fan_in, 27);
    assert_int_equal(g->pspecs[0].fan_out, 64 * 9);
    assert_string_equal(g->pspecs[1].name, "conv1.bias");
    /* stride 2, pad 3, 7x7: (32 + 6 - 7)/2 + 1 = 16 */
    y = tr_conv2d(g, "conv2", y, 8, 7, 2, 3, 1, 0, NULL, NULL);
    assert_int_equal(tr_graph_tensor(g, y)->h, 16);
    int bn = tr_batchnorm(g, "bn", y, 1e-5f, 0.1f);
    assert_int_equal(g->n_stats, 16);
    assert_true(g->stats_init[0] == 0.f && g->stats_init[8] == 1.f);
    int f = tr_flatten(g, "flat", bn);
    assert_int_equal(tr_graph_tensor(g, f)->w, 8 * 16 * 16);
    assert_int_equal(tr_graph_tensor(g, f)->view_of, bn);
    int l = tr_linear(g, "fc", f, 10, 1, NULL, NULL);
    assert_int_equal(tr_graph_tensor(g, l)->w, 10);
    assert_false(g->failed);
    /* failures name the layer */
    assert_int_equal(tr_conv2d(g, "bad", l, 4, 3, 1, 1, 4, 1, NULL, NULL), -1);
    assert_true(g->failed);
    assert_non_null(strstr(g->err.msg, "bad"));
    tr_graph_free(g);

    g = tr_graph_new(3, 4, 4);
    assert_int_equal(tr_conv2d(g, "c", g->input, 4, 7, 1, 1, 1, 1, NULL, NULL), -1);
    assert_non_null(strstr(g->err.msg, "smaller than"));
    tr_graph_free(g);
    g = tr_graph_new(3, 4, 4);
    assert_int_equal(tr_add(g, "a", g->input, tr_maxpool(g, "mp", g->input, 2, 2, 0)), -1);
    assert_non_null(strstr(g->err.msg, "cannot add"));
    tr_graph_free(g);
    g = tr_graph_new(3, 4, 4);
    assert_int_equal(tr_reshape(g, "r", g->input, 5, 1, 10), -1);
    tr_graph_free(g);
}

static void test_backend_select(void **state)
{
    (void)state;
    deba_err e = {0};
    tr_backend *be = tr_backend_new("cpu", &e);
    assert_non_null(be);
    assert_string_equal(be->name, "cpu");
    assert_non_null(strstr(be->device_name, "OpenBLAS"));
    tr_backend_free(be);
    tr_backend_free(NULL);
    be = tr_backend_new("gpu0", &e);
    assert_null(be);
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "--device"));
#ifndef DEBA_CUDA
    deba_err_clear(&e);
    assert_null(tr_backend_new("cuda", &e));
    assert_int_equal(e.status, DEBA_E_RUNTIME);
    assert_non_null(strstr(e.msg, "no CUDA backend"));
    deba_err_clear(&e);
    be = tr_backend_new("auto", &e);
    assert_non_null(be);
    assert_string_equal(be->name, "cpu");
    assert_int_equal(e.status, DEBA_OK);
    tr_backend_free(be);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gc_conv),
        cmocka_unit_test(test_gc_batchnorm),
        cmocka_unit_test(test_gc_activations),
        cmocka_unit_test(test_gc_pools),
        cmocka_unit_test(test_gc_adaptive),
        cmocka_unit_test(test_gc_linear),
        cmocka_unit_test(test_gc_add_views),
        cmocka_unit_test(test_conv_forward_by_hand),
        cmocka_unit_test(test_conv_forward_ones),
        cmocka_unit_test(test_conv_forward_dead_taps),
        cmocka_unit_test(test_bn_eval_by_hand),
        cmocka_unit_test(test_bn_running_update),
        cmocka_unit_test(test_pool_forward_by_hand),
        cmocka_unit_test(test_maxpool_2x2_by_hand),
        cmocka_unit_test(test_act_forward_by_hand),
        cmocka_unit_test(test_xent_by_hand),
        cmocka_unit_test(test_sgd_by_hand),
        cmocka_unit_test(test_grad_moments),
        cmocka_unit_test(test_sgd_moments_fused),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_backend_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
