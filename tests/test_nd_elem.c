/* The elementwise general-shape ops on the CPU backend (binary with numpy broadcasting, unary,
 * expand, reduce, softmax): finite-difference checks of every backward with batched and
 * batchless operands, forward values and gradients at PyTorch's special points worked out by
 * hand (decimals from python3's math module in double), and the shape errors. */
#include "tests/testutil.h"
#include "tests/gradcheck.h"

#include <math.h>
#include "trainer/layers_nd.h"

/* ---- a small graph with the CPU backend, for forward checks ---- */

typedef struct {
    tr_backend *be;
    tr_graph *g;
    int out;
} fixture;

/* Builds with `build` on an input of dims[rank], allocates and plans n samples. */
static fixture fx_new(int rank, const int *dims, int n, gc_build_fn build, void *arg)
{
    fixture f;
    deba_err e = {0};
    f.be = tr_backend_cpu_new(&e);
    assert_non_null(f.be);
    f.g = tr_graph_new_nd(rank, dims);
    assert_non_null(f.g);
    f.g->input_grad = 1;
    f.out = build(f.g, f.g->input, arg);
    if (f.out < 0) fprintf(stderr, "build: %s\n", f.g->err.msg);
    assert_true(f.out >= 0);
    f.g->output = f.out;
    f.g->classes = f.g->tensors[f.out].w;
    assert_int_equal(tr_graph_alloc(f.g, f.be, 42, &e), DEBA_OK);
    assert_int_equal(tr_graph_plan(f.g, n, &e), DEBA_OK);
    return f;
}

static void fx_free(fixture *f)
{
    tr_graph_free(f->g);
    tr_backend_free(f->be);
}

static void put(fixture *f, int id, const float *v, int n)
{
    tr_tensor *t = &f->g->tensors[id];
    f->be->upload(f->be, t->data, v, (size_t)tr_tensor_elems(t, n) * sizeof(float));
}

/* forward, then backward from dy (NULL: all ones) over n samples */
static void run(fixture *f, int n, const float *dy)
{
    tr_graph_forward(f->g, n);
    tr_graph_zero_act_grads(f->g);
    tr_graph_zero_grads(f->g);
    tr_tensor *o = &f->g->tensors[f->out];
    int64_t m = tr_tensor_elems(o, n);
    float *ones = malloc((size_t)m * sizeof(float));
    for (int64_t i = 0; i < m; i++) ones[i] = dy ? dy[i] : 1.f;
    f->be->upload(f->be, o->grad, ones, (size_t)m * sizeof(float));
    free(ones);
    tr_graph_backward(f->g, n);
}

static void expect_near(const float *got, const double *want, int m, double tol)
{
    for (int i = 0; i < m; i++) {
        if (isnan(want[i])) {
            if (!isnan(got[i])) fail_msg("element %d: %g, want NaN", i, got[i]);
            continue;
        }
        if (!(fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i]))))
            fail_msg("element %d: %.8g, want %.8g", i, got[i], want[i]);
    }
}

static void expect_gradcheck(const char *what, gc_build_fn build, void *arg, gc_opts o)
{
    gc_result r;
    assert_int_equal(gc_check(what, build, arg, o, &r), 0);
    assert_true(r.checked > 0);
}

static const tr_init no_init = {TR_INIT_ZERO, 0.f};

/* ---- binary: gradchecks over every kind and broadcasting layout ---- */

enum { OTHER_LEAF, OTHER_PARAM };   /* batched leaf (gets a gradient), batchless parameter */

typedef struct {
    tr_binary_kind kind;
    int other;                      /* OTHER_* */
    int rank, dims[TR_MAX_RANK];    /* its shape */
    int other_first;                /* other ∘ x instead of x ∘ other */
    int both_params;                /* a second parameter instead of x: a batchless output */
} bin_case;

/* Keeps the finite differences away from the poles: a divisor in [1.5, 2.5], a power's base
 * in [1, 2] (the unary is checked along). */
static int b_binary(tr_graph *g, int x, void *arg)
{
    const bin_case *c = arg;
    int o = c->other == OTHER_LEAF ? tr_graph_add_leaf_nd(g, c->rank, c->dims)
                                   : tr_graph_add_param_tensor(g, "w", c->rank, c->dims, 1, 1, no_init, NULL);
    if (c->both_params) x = tr_graph_add_param_tensor(g, "v", 2, (const int[]){1, 4}, 1, 1, no_init, NULL);
    int a = c->other_first ? o : x, b = c->other_first ? x : o;
    if (c->kind == TR_BIN_DIV) b = tr_unary(g, "den", TR_UN_AFFINE, b, 0.5f, 2.f);
    if (c->kind == TR_BIN_POW) a = tr_unary(g, "base", TR_UN_AFFINE, a, 0.5f, 1.5f);
    return tr_binary(g, "bin", c->kind, a, b);
}

static void test_binary_gradcheck(void **state)
{
    (void)state;
    static const char *kn[] = {"add", "sub", "mul", "div", "pow"};
    const bin_case layouts[] = {
        {0, OTHER_LEAF, 2, {3, 1}, 0, 0},          /* (2,3,4) ∘ (3,1) */
        {0, OTHER_PARAM, 1, {4}, 1, 0},            /* (4) batchless ∘ (2,3,4) */
        {0, OTHER_PARAM, 3, {1, 3, 1}, 0, 0},      /* (2,3,4) ∘ (1,3,1) batchless */
        {0, OTHER_LEAF, 3, {2, 1, 4}, 0, 0},       /* both batched, broadcast in the middle */
        {0, OTHER_LEAF, 3, {2, 3, 4}, 1, 0},       /* same shape: the flat loop */
        {0, OTHER_PARAM, 3, {2, 3, 4}, 0, 0},      /* same dims, batchless: samples broadcast */
        {0, OTHER_PARAM, 0, {0}, 0, 0},            /* a scalar parameter */
        {0, OTHER_PARAM, 2, {3, 1}, 0, 1},         /* (1,4) ∘ (3,1), both batchless */
    };
    const char *ln[] = {"(2,3,4)o(3,1)", "(4)bl o(2,3,4)", "(2,3,4)o(1,3,1)bl", "(2,3,4)o(2,1,4)",
                        "(2,3,4)o(2,3,4)", "(2,3,4)o(2,3,4)bl", "(2,3,4)o()bl", "(1,4)bl o(3,1)bl"};
    for (int k = 0; k < TR_BIN_COUNT; k++)
        for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
            bin_case c = layouts[l];
            c.kind = (tr_binary_kind)k;
            char what[80];
            snprintf(what, sizeof what, "%s %s", kn[k], ln[l]);
            expect_gradcheck(what, b_binary, &c, (gc_opts){.n = 2, .rank = 3, .dims = {2, 3, 4}});
        }
}

/* Long rows: the innermost dimension is cut into runs and the work spread over threads. */
static void test_binary_gradcheck_large(void **state)
{
    (void)state;
    bin_case bias = {TR_BIN_MUL, OTHER_PARAM, 1, {5000}, 0, 0};
    expect_gradcheck("mul (3,5000)o(5000)bl", b_binary, &bias, (gc_opts){.n = 4, .rank = 2, .dims = {3, 5000}});
    bin_case col = {TR_BIN_SUB, OTHER_LEAF, 2, {9000, 1}, 0, 0};
    expect_gradcheck("sub (9000,3)o(9000,1)", b_binary, &col, (gc_opts){.n = 2, .rank = 2, .dims = {9000, 3}});
    /* two broadcast dimensions apart, around a kept one */
    bin_case apart = {TR_BIN_DIV, OTHER_PARAM, 3, {3, 1, 5}, 0, 0};
    expect_gradcheck("div (2,3,4,5)o(3,1,5)bl", b_binary, &apart, (gc_opts){.n = 2, .rank = 4, .dims = {2, 3, 4, 5}});
}

/* x − b and x / b, b a batchless (2, 1): two samples of (2, 3) by hand, and the gradients. */
static int b_sub_col(tr_graph *g, int x, void *arg)
{
    tr_binary_kind k = *(tr_binary_kind *)arg;
    int b = tr_graph_add_param_tensor(g, "b", 2, (const int[]){2, 1}, 1, 1,
                                      (tr_init){TR_INIT_DATA, 0.f}, (const float[]){10.f, 20.f});
    return tr_binary(g, "bin", k, x, b);
}

static void test_binary_forward(void **state)
{
    (void)state;
    const float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    tr_binary_kind k = TR_BIN_SUB;
    fixture f = fx_new(2, (const int[]){2, 3}, 2, b_sub_col, &k);
    assert_false(f.g->tensors[f.out].batchless);
    put(&f, f.g->input, x, 2);
    run(&f, 2, NULL);
    float y[12], db[2], dx[12];
    f.be->download(f.be, y, f.g->tensors[f.out].data, sizeof y);
    f.be->download(f.be, db, f.g->grads, sizeof db);
    f.be->download(f.be, dx, f.g->tensors[f.g->input].grad, sizeof dx);
    const double want[12] = {-9, -8, -7, -16, -15, -14, -3, -2, -1, -10, -9, -8};
    expect_near(y, want, 12, 0);
    const double want_db[2] = {-6, -6};   /* three columns of two samples, each −1 */
    expect_near(db, want_db, 2, 0);
    const double ones[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    expect_near(dx, ones, 12, 0);
    fx_free(&f);

    k = TR_BIN_DIV;
    f = fx_new(2, (const int[]){2, 3}, 1, b_sub_col, &k);
    put(&f, f.g->input, x, 1);
    run(&f, 1, NULL);
    f.be->download(f.be, y, f.g->tensors[f.out].data, 6 * sizeof(float));
    f.be->download(f.be, db, f.g->grads, sizeof db);
    const double want_div[6] = {0.1, 0.2, 0.3, 0.2, 0.25, 0.3};
    expect_near(y, want_div, 6, 1e-6);
    /* d/db Σ x/b = −Σ x / b²: −6/100 and −15/400 */
    const double want_ddiv[2] = {-0.06, -0.0375};
    expect_near(db, want_ddiv, 2, 1e-6);
    fx_free(&f);
}

/* pow at PyTorch's special points: a and b batched (4) leaves. */
static int b_pow(tr_graph *g, int x, void *arg)
{
    (void)arg;
    int b = tr_graph_add_leaf_nd(g, 1, (const int[]){4});
    return tr_binary(g, "pow", TR_BIN_POW, x, b);
}

static void test_pow_special_points(void **state)
{
    (void)state;
    fixture f = fx_new(1, (const int[]){4}, 1, b_pow, NULL);
    int bid = f.g->nodes[0].in[1];
    const float a[4] = {0, 0, -2, 2}, b[4] = {2, 0, 2, 0.5f};
    put(&f, f.g->input, a, 1);
    put(&f, bid, b, 1);
    run(&f, 1, NULL);
    float y[4], da[4], dbv[4];
    f.be->download(f.be, y, f.g->tensors[f.out].data, sizeof y);
    f.be->download(f.be, da, f.g->tensors[f.g->input].grad, sizeof da);
    f.be->download(f.be, dbv, f.g->tensors[bid].grad, sizeof dbv);
    /* torch.pow(a, b) with a = [0, 0, -2, 2], b = [2, 0, 2, 0.5] and .sum().backward():
     * y = [0, 1, 4, √2]; a.grad = b a^(b−1), 0 where b == 0: [0, 0, −4, 0.5/√2];
     * b.grad = y ln a, 0 where a == 0 and b >= 0, NaN for a < 0: [0, 0, nan, √2 ln 2] */
    const double wy[4] = {0, 1, 4, 1.4142135623730951};
    const double wa[4] = {0, 0, -4, 0.3535533905932738};
    const double wb[4] = {0, 0, NAN, 0.9802581434685472};
    expect_near(y, wy, 4, 1e-6);
    expect_near(da, wa, 4, 1e-6);
    expect_near(dbv, wb, 4, 1e-6);
    fx_free(&f);
}

/* Both operands batchless: the output is batchless and computed once. */
static int b_both_batchless(tr_graph *g, int x, void *arg)
{
    (void)x;
    (void)arg;
    int p = tr_graph_add_param_tensor(g, "p", 2, (const int[]){1, 2}, 1, 1, (tr_init){TR_INIT_DATA, 0.f},
                                      (const float[]){1.f, 2.f});
    int q = tr_graph_add_const_tensor(g, 2, (const int[]){3, 1}, (const float[]){10.f, 20.f, 30.f});
    return tr_binary(g, "mul", TR_BIN_MUL, p, q);
}

static void test_binary_batchless_output(void **state)
{
    (void)state;
    fixture f = fx_new(1, (const int[]){1}, 3, b_both_batchless, NULL);
    const tr_tensor *o = &f.g->tensors[f.out];
    assert_true(o->batchless);
    assert_int_equal(o->rank, 2);
    assert_int_equal(o->dims[0], 3);
    assert_int_equal(o->dims[1], 2);
    const float x[3] = {0, 0, 0};
    put(&f, f.g->input, x, 3);
    run(&f, 3, NULL);
    float y[6], dp[2];
    f.be->download(f.be, y, o->data, sizeof y);
    f.be->download(f.be, dp, f.g->grads, sizeof dp);
    const double wy[6] = {10, 20, 20, 40, 30, 60};
    expect_near(y, wy, 6, 0);
    const double wp[2] = {60, 60};   /* once, not once per sample */
    expect_near(dp, wp, 2, 0);
    fx_free(&f);
}

/* ---- unary ---- */

typedef struct {
    tr_unary_kind kind;
    float a, b;
    int positive;                   /* shift x into [1, 2] first */
} un_case;

static int b_unary(tr_graph *g, int x, void *arg)
{
    const un_case *c = arg;
    if (c->positive) x = tr_unary(g, "shift", TR_UN_AFFINE, x, 0.5f, 1.5f);
    return tr_unary(g, "un", c->kind, x, c->a, c->b);
}

static void test_unary_gradcheck(void **state)
{
    (void)state;
    const un_case cases[] = {
        {TR_UN_NEG, 0, 0, 0},       {TR_UN_SQRT, 0, 0, 1},       {TR_UN_ERF, 0, 0, 0},
        {TR_UN_EXP, 0, 0, 0},       {TR_UN_LOG, 0, 0, 1},        {TR_UN_TANH, 0, 0, 0},
        {TR_UN_RECIP, 0, 0, 1},     {TR_UN_POWC, 2.5f, 0, 1},    {TR_UN_POWC, -1.5f, 0, 1},
        {TR_UN_POWC, 3.f, 0, 0},    {TR_UN_CLIP, -0.5f, 0.5f, 0}, {TR_UN_HSIGMOID, 1.5f, 0.5f, 0},
        {TR_UN_AFFINE, -1.5f, 0.3f, 0},
    };
    static const char *names[] = {"neg", "sqrt", "erf", "exp", "log", "tanh", "recip", "pow 2.5",
                                  "pow -1.5", "pow 3", "clip", "hsigmoid", "affine"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* the kinks of clip and hsigmoid: a step that no draw of this seed straddles */
        float step = cases[i].kind == TR_UN_CLIP || cases[i].kind == TR_UN_HSIGMOID ? 1e-3f : 0;
        expect_gradcheck(names[i], b_unary, (void *)&cases[i],
                         (gc_opts){.n = 2, .rank = 3, .dims = {2, 3, 4}, .step = step});
    }
}

typedef struct {
    un_case c;
    float x[4];
    double y[4], dx[4];
} un_value;

static void test_unary_values(void **state)
{
    (void)state;
    /* torch.neg / sqrt / erf / exp / log / tanh / reciprocal / pow / clamp / hardsigmoid-like
     * on x with .sum().backward(); decimals from python3's math in double */
    const un_value cases[] = {
        {{TR_UN_NEG, 0, 0, 0}, {-1, 0, 0.5f, 2}, {1, 0, -0.5, -2}, {-1, -1, -1, -1}},
        {{TR_UN_SQRT, 0, 0, 0}, {4, 1, 2, 0.25f}, {2, 1, 1.4142135623730951, 0.5},
         {0.25, 0.5, 0.35355339059327373, 1}},
        {{TR_UN_ERF, 0, 0, 0}, {0, 0.5f, -1, 0}, {0, 0.5204998778130465, -0.8427007929497149, 0},
         {1.1283791670955126, 0.8787825789354448, 0.41510749742059477, 1.1283791670955126}},
        {{TR_UN_EXP, 0, 0, 0}, {0, 0.5f, -1, 0}, {1, 1.6487212707001282, 0.36787944117144233, 1},
         {1, 1.6487212707001282, 0.36787944117144233, 1}},
        {{TR_UN_LOG, 0, 0, 0}, {1, 2, 0.5f, 4}, {0, 0.6931471805599453, -0.6931471805599453, 1.3862943611198906},
         {1, 0.5, 2, 0.25}},
        {{TR_UN_TANH, 0, 0, 0}, {0, 0.5f, -1, 0}, {0, 0.46211715726000974, -0.7615941559557649, 0},
         {1, 0.7864477329659274, 0.41997434161402614, 1}},
        {{TR_UN_RECIP, 0, 0, 0}, {1, 2, -0.5f, 4}, {1, 0.5, -2, 0.25}, {-1, -0.25, -4, -0.0625}},
        /* x^1.5: 1.5 x^0.5; at 0 the value and the gradient are 0 */
        {{TR_UN_POWC, 1.5f, 0, 0}, {0, 1, 2, 4}, {0, 1, 2.8284271247461903, 8}, {0, 1.5, 2.1213203435596424, 3}},
        /* x^0 = 1 with a zero gradient, also at 0 (torch: pow_backward returns zeros) */
        {{TR_UN_POWC, 0, 0, 0}, {0, 1, -2, 4}, {1, 1, 1, 1}, {0, 0, 0, 0}},
        /* clamp(x, -0.5, 0.5): the gradient passes at both boundaries (torch's clamp_backward) */
        {{TR_UN_CLIP, -0.5f, 0.5f, 0}, {-0.5f, 0.5f, 0.2f, 1}, {-0.5, 0.5, 0.2, 0.5}, {1, 1, 1, 0}},
        /* max(0, min(1, 0.5 x + 0.5)): the gradient 0.5 strictly inside, 0 at the corners */
        {{TR_UN_HSIGMOID, 0.5f, 0.5f, 0}, {-1, 1, 0, 2}, {0, 1, 0.5, 1}, {0, 0, 0.5, 0}},
        {{TR_UN_AFFINE, -2, 0.5f, 0}, {-1, 1, 0, 2}, {2.5, -1.5, 0.5, -3.5}, {-2, -2, -2, -2}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture f = fx_new(1, (const int[]){4}, 1, b_unary, (void *)&cases[i].c);
        put(&f, f.g->input, cases[i].x, 1);
        run(&f, 1, NULL);
        float y[4], dx[4];
        f.be->download(f.be, y, f.g->tensors[f.out].data, sizeof y);
        f.be->download(f.be, dx, f.g->tensors[f.g->input].grad, sizeof dx);
        fprintf(stderr, "unary case %zu\n", i);
        expect_near(y, cases[i].y, 4, 1e-6);
        expect_near(dx, cases[i].dx, 4, 1e-6);
        fx_free(&f);
    }
}

/* ---- expand ---- */

typedef struct {
    int param;                      /* expand a batchless (1, 4) parameter instead of x */
    int rank, dims[TR_MAX_RANK];
} exp_case;

static int b_expand(tr_graph *g, int x, void *arg)
{
    const exp_case *c = arg;
    if (c->param) x = tr_graph_add_param_tensor(g, "p", 2, (const int[]){1, 4}, 1, 1, no_init, NULL);
    return tr_expand(g, "exp", x, c->rank, c->dims);
}

static void test_expand_gradcheck(void **state)
{
    (void)state;
    exp_case from_param = {1, 2, {3, 4}};
    expect_gradcheck("expand (1,4)bl -> (3,4)", b_expand, &from_param, (gc_opts){.n = 3, .rank = 1, .dims = {1}});
    exp_case mid = {0, 3, {2, 3, 4}};
    expect_gradcheck("expand (2,1,4) -> (2,3,4)", b_expand, &mid, (gc_opts){.n = 2, .rank = 3, .dims = {2, 1, 4}});
    exp_case lead = {0, 3, {2, 3, 4}};
    expect_gradcheck("expand (4) -> (2,3,4)", b_expand, &lead, (gc_opts){.n = 2, .rank = 1, .dims = {4}});
    exp_case two_way = {0, 2, {1, 5}};
    expect_gradcheck("expand (3,1) with (1,5)", b_expand, &two_way, (gc_opts){.n = 2, .rank = 2, .dims = {3, 1}});
}

static int b_expand_data(tr_graph *g, int x, void *arg)
{
    (void)x;
    (void)arg;
    int p = tr_graph_add_param_tensor(g, "p", 2, (const int[]){1, 3}, 1, 1, (tr_init){TR_INIT_DATA, 0.f},
                                      (const float[]){1.f, 2.f, 3.f});
    return tr_expand(g, "exp", p, 2, (const int[]){2, 3});
}

static void test_expand_values(void **state)
{
    (void)state;
    fixture f = fx_new(1, (const int[]){1}, 2, b_expand_data, NULL);
    const tr_tensor *o = &f.g->tensors[f.out];
    assert_false(o->batchless);
    assert_int_equal(o->rank, 2);
    const float x[2] = {0, 0};
    put(&f, f.g->input, x, 2);
    const float dy[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    run(&f, 2, dy);
    float y[12], dp[3];
    f.be->download(f.be, y, o->data, sizeof y);
    f.be->download(f.be, dp, f.g->grads, sizeof dp);
    const double wy[12] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3};
    expect_near(y, wy, 12, 0);
    const double wp[3] = {1 + 4 + 7 + 10, 2 + 5 + 8 + 11, 3 + 6 + 9 + 12};   /* over rows and samples */
    expect_near(dp, wp, 3, 0);
    fx_free(&f);
}

/* ---- reduce ---- */

typedef struct {
    tr_reduce_kind kind;
    int axes;
    int param;                      /* reduce a batchless (2,3,4) parameter instead of x */
} red_case;

static int b_reduce(tr_graph *g, int x, void *arg)
{
    const red_case *c = arg;
    if (c->param) x = tr_graph_add_param_tensor(g, "p", 3, (const int[]){2, 3, 4}, 1, 1, no_init, NULL);
    return tr_reduce(g, "red", c->kind, x, c->axes);
}

static void test_reduce_gradcheck(void **state)
{
    (void)state;
    const int axes[] = {1, 6, 7, 2, 5};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof axes / sizeof axes[0]; i++)
            for (int p = 0; p < 2; p++) {
                red_case c = {k ? TR_RED_SUM : TR_RED_MEAN, axes[i], p};
                char what[64];
                snprintf(what, sizeof what, "%s axes 0x%x%s", k ? "sum" : "mean", axes[i], p ? " batchless" : "");
                expect_gradcheck(what, b_reduce, &c, (gc_opts){.n = 2, .rank = 3, .dims = {2, 3, 4}});
            }
    red_case big = {TR_RED_MEAN, 1, 0};
    expect_gradcheck("mean axes 0x1 of (5000,3)", b_reduce, &big, (gc_opts){.n = 2, .rank = 2, .dims = {5000, 3}});
}

static void test_reduce_values(void **state)
{
    (void)state;
    const float x[6] = {1, 2, 3, 4, 5, 6};   /* one sample of (2, 3) */
    const struct { red_case c; int m; double y[3], dx[6]; } cases[] = {
        /* x.mean(0, keepdim=True), .sum().backward() */
        {{TR_RED_MEAN, 1, 0}, 3, {2.5, 3.5, 4.5}, {0.5, 0.5, 0.5, 0.5, 0.5, 0.5}},
        {{TR_RED_SUM, 2, 0}, 2, {6, 15, 0}, {1, 1, 1, 1, 1, 1}},
        {{TR_RED_MEAN, 3, 0}, 1, {3.5, 0, 0}, {1 / 6., 1 / 6., 1 / 6., 1 / 6., 1 / 6., 1 / 6.}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        red_case c = cases[i].c;
        fixture f = fx_new(2, (const int[]){2, 3}, 1, b_reduce, &c);
        assert_int_equal(tr_tensor_numel(&f.g->tensors[f.out]), cases[i].m);
        put(&f, f.g->input, x, 1);
        run(&f, 1, NULL);
        float y[3], dx[6];
        f.be->download(f.be, y, f.g->tensors[f.out].data, (size_t)cases[i].m * sizeof(float));
        f.be->download(f.be, dx, f.g->tensors[f.g->input].grad, sizeof dx);
        expect_near(y, cases[i].y, cases[i].m, 1e-6);
        expect_near(dx, cases[i].dx, 6, 1e-6);
        fx_free(&f);
    }
}

/* ---- softmax ---- */

typedef struct {
    int axis, param;
} sm_case;

static int b_softmax(tr_graph *g, int x, void *arg)
{
    const sm_case *c = arg;
    if (c->param) x = tr_graph_add_param_tensor(g, "p", 3, (const int[]){2, 3, 4}, 1, 1, no_init, NULL);
    return tr_softmax(g, "sm", x, c->axis);
}

static void test_softmax_gradcheck(void **state)
{
    (void)state;
    for (int axis = 0; axis < 3; axis++)
        for (int p = 0; p < 2; p++) {
            sm_case c = {axis, p};
            char what[64];
            snprintf(what, sizeof what, "softmax axis %d%s", axis, p ? " batchless" : "");
            expect_gradcheck(what, b_softmax, &c, (gc_opts){.n = 2, .rank = 3, .dims = {2, 3, 4}});
        }
}

static void test_softmax_values(void **state)
{
    (void)state;
    /* torch.softmax(x, dim) on x = [[1, 2, 3], [3, 1, 2]] (one sample of (2, 3)); along dim 0
     * the pairs are sigmoids: softmax(1, 3) = (1/(1+e²), e²/(1+e²)); then [[1000, 1001, 1002],
     * [0, -1000, 0]] along dim 1, which overflows exp without subtracting the maximum */
    const float x[6] = {1, 2, 3, 3, 1, 2};
    sm_case last = {1, 0}, first = {0, 0};
    fixture f = fx_new(2, (const int[]){2, 3}, 1, b_softmax, &last);
    put(&f, f.g->input, x, 1);
    const float dy[6] = {1, 0, 0, 0, 0, 0};
    run(&f, 1, dy);
    float y[6], dx[6];
    f.be->download(f.be, y, f.g->tensors[f.out].data, sizeof y);
    f.be->download(f.be, dx, f.g->tensors[f.g->input].grad, sizeof dx);
    const double p0 = 0.09003057317038046, p1 = 0.24472847105479767, p2 = 0.6652409557748219;
    const double wy[6] = {p0, p1, p2, p2, p0, p1};
    expect_near(y, wy, 6, 1e-6);
    /* d y0 / d x = y0 (e0 − y): [p0(1−p0), −p0 p1, −p0 p2], nothing into the second row */
    const double wdx[6] = {p0 * (1 - p0), -p0 * p1, -p0 * p2, 0, 0, 0};
    expect_near(dx, wdx, 6, 1e-6);
    fx_free(&f);

    f = fx_new(2, (const int[]){2, 3}, 1, b_softmax, &first);
    put(&f, f.g->input, x, 1);
    run(&f, 1, NULL);
    f.be->download(f.be, y, f.g->tensors[f.out].data, sizeof y);
    f.be->download(f.be, dx, f.g->tensors[f.g->input].grad, sizeof dx);
    const double s2 = 0.8807970779778823, s1 = 0.7310585786300049;   /* sigmoid(2), sigmoid(1) */
    const double wy0[6] = {1 - s2, s1, s1, s2, 1 - s1, 1 - s1};
    expect_near(y, wy0, 6, 1e-6);
    const double zero[6] = {0, 0, 0, 0, 0, 0};   /* Σ softmax is constant */
    expect_near(dx, zero, 6, 1e-6);
    fx_free(&f);

    const float big[6] = {1000, 1001, 1002, 0, -1000, 0};
    f = fx_new(2, (const int[]){2, 3}, 1, b_softmax, &last);
    put(&f, f.g->input, big, 1);
    run(&f, 1, NULL);
    f.be->download(f.be, y, f.g->tensors[f.out].data, sizeof y);
    const double wbig[6] = {p0, p1, p2, 0.5, 0, 0.5};
    expect_near(y, wbig, 6, 1e-6);
    fx_free(&f);
}

/* ---- shape errors: the node and both shapes named, nothing added ---- */

static void test_errors(void **state)
{
    (void)state;
    tr_graph *g = tr_graph_new_nd(3, (const int[]){2, 3, 4});
    int b = tr_graph_add_leaf_nd(g, 2, (const int[]){2, 4});
    int nodes = g->n_nodes;
    assert_int_equal(tr_binary(g, "blocks.0.add", TR_BIN_ADD, g->input, b), -1);
    assert_int_equal(g->n_nodes, nodes);
    assert_non_null(strstr(g->err.msg, "blocks.0.add"));
    assert_non_null(strstr(g->err.msg, "(2, 3, 4)"));
    assert_non_null(strstr(g->err.msg, "(2, 4)"));
    tr_graph_free(g);

    g = tr_graph_new_nd(2, (const int[]){3, 4});
    int p = tr_graph_add_param_tensor(g, "w", 1, (const int[]){5}, 1, 1, no_init, NULL);
    assert_int_equal(tr_binary(g, "mul", TR_BIN_MUL, g->input, p), -1);
    assert_non_null(strstr(g->err.msg, "(5) batchless"));
    tr_graph_free(g);

    g = tr_graph_new_nd(2, (const int[]){3, 4});
    assert_int_equal(tr_expand(g, "ex", g->input, 2, (const int[]){3, 5}), -1);
    assert_non_null(strstr(g->err.msg, "ex: cannot expand shape (3, 4) to (3, 5)"));
    tr_graph_free(g);

    g = tr_graph_new_nd(2, (const int[]){3, 4});
    assert_int_equal(tr_reduce(g, "rm", TR_RED_MEAN, g->input, 4), -1);
    assert_non_null(strstr(g->err.msg, "rm: "));
    tr_graph_free(g);

    g = tr_graph_new_nd(2, (const int[]){3, 4});
    assert_int_equal(tr_softmax(g, "sm", g->input, 2), -1);
    assert_non_null(strstr(g->err.msg, "sm: softmax axis 2"));
    tr_graph_free(g);

    g = tr_graph_new_nd(2, (const int[]){3, 4});
    assert_int_equal(tr_unary(g, "u", TR_UN_COUNT, g->input, 0, 0), -1);
    assert_int_equal(tr_binary(g, "b", TR_BIN_ADD, g->input, g->input), -1);   /* sticky first error */
    assert_non_null(strstr(g->err.msg, "u: unknown unary"));
    tr_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_gradcheck),
        cmocka_unit_test(test_binary_gradcheck_large),
        cmocka_unit_test(test_binary_forward),
        cmocka_unit_test(test_pow_special_points),
        cmocka_unit_test(test_binary_batchless_output),
        cmocka_unit_test(test_unary_gradcheck),
        cmocka_unit_test(test_unary_values),
        cmocka_unit_test(test_expand_gradcheck),
        cmocka_unit_test(test_expand_values),
        cmocka_unit_test(test_reduce_gradcheck),
        cmocka_unit_test(test_reduce_values),
        cmocka_unit_test(test_softmax_gradcheck),
        cmocka_unit_test(test_softmax_values),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
