/* The issue-4 layers on the CPU backend: finite-difference checks of every backward (input and
 * parameter gradients), forward values computed by hand or by a plain double-precision
 * reference written here, dropout / drop-path masks and rates, concat chaining. */
#include "tests/testutil.h"
#include "tests/gradcheck.h"

#include <math.h>

/* ---- a small graph with the CPU backend, for forward checks ---- */

typedef struct {
    tr_backend *be;
    tr_graph *g;
} fixture;

/* Builds with `build`, allocates and plans n samples; fails the test on any error. */
static fixture fx_new(int c, int h, int w, int n, gc_build_fn build, void *arg, int training)
{
    fixture f;
    deba_err e = {0};
    f.be = tr_backend_cpu_new(&e);
    assert_non_null(f.be);
    f.g = tr_graph_new(c, h, w);
    assert_non_null(f.g);
    f.g->input_grad = 1;
    f.g->training = training;
    int out = build(f.g, f.g->input, arg);
    if (out < 0) fprintf(stderr, "build: %s\n", f.g->err.msg);
    assert_true(out >= 0);
    f.g->output = out;
    f.g->classes = f.g->tensors[out].w;
    assert_int_equal(tr_graph_alloc(f.g, f.be, 42, &e), DEBA_OK);
    assert_int_equal(tr_graph_plan(f.g, n, &e), DEBA_OK);
    return f;
}

static void fx_free(fixture *f)
{
    tr_graph_free(f->g);
    tr_backend_free(f->be);
}

static void set_tensor(fixture *f, int id, const float *v, int n)
{
    tr_tensor *t = &f->g->tensors[id];
    f->be->upload(f->be, t->data, v, (size_t)n * (size_t)tr_tensor_numel(t) * sizeof(float));
}

static void get(fixture *f, float *dst, const float *src, int64_t count)
{
    f->be->download(f->be, dst, src, (size_t)count * sizeof(float));
}

/* The parameter whose name ends with suffix. */
static tr_param_spec *param_named(tr_graph *g, const char *suffix)
{
    size_t ls = strlen(suffix);
    for (int i = 0; i < g->n_pspecs; i++) {
        size_t ln = strlen(g->pspecs[i].name);
        if (ln >= ls && !strcmp(g->pspecs[i].name + ln - ls, suffix)) return &g->pspecs[i];
    }
    fail_msg("no parameter named *%s", suffix);
    return NULL;
}

static void set_param(fixture *f, const char *suffix, const float *v)
{
    tr_param_spec *ps = param_named(f->g, suffix);
    f->be->upload(f->be, f->g->params + ps->off, v, (size_t)ps->count * sizeof(float));
}

static void random_fill(float *v, int64_t n, uint64_t seed, double scale)
{
    tr_rng r;
    tr_rng_seed(&r, seed, 5);
    for (int64_t i = 0; i < n; i++) v[i] = (float)((2 * tr_rng_uniform(&r) - 1) * scale);
}

/* ---- builders used by the checks ---- */

typedef struct {
    int n;           /* inputs to concat */
    int chans[40];   /* channels of inputs 1..n-1 (input 0 is the graph input) */
} concat_arg;

static int build_concat(tr_graph *g, int x, void *arg)
{
    concat_arg *a = arg;
    int ids[40];
    ids[0] = x;
    const tr_tensor *t = tr_graph_tensor(g, x);
    int h = t->h, w = t->w;
    for (int i = 1; i < a->n; i++) ids[i] = tr_graph_add_leaf(g, a->chans[i], h, w);
    return tr_concat(g, "cat", ids, a->n);
}

static int build_mul_channel(tr_graph *g, int x, void *arg)
{
    (void)arg;
    int s = tr_graph_add_leaf(g, tr_graph_tensor(g, x)->c, 1, 1);
    return tr_mul_channel(g, "se.scale", x, s);
}

static int build_dropout(tr_graph *g, int x, void *arg) { return tr_dropout(g, "drop", x, *(float *)arg); }
static int build_drop_path(tr_graph *g, int x, void *arg) { return tr_drop_path(g, "sd", x, *(float *)arg); }
static int build_layernorm(tr_graph *g, int x, void *arg) { (void)arg; return tr_layernorm(g, "ln", x, 1e-6f); }

typedef struct {
    int heads, chunk;  /* chunk > 0 forces the backward to run in chunks of that many samples */
} attn_arg;

static int build_attention(tr_graph *g, int x, void *arg)
{
    attn_arg *a = arg;
    int y = tr_attention(g, "self_attention", x, a->heads);
    if (y >= 0 && a->chunk > 0) g->nodes[g->n_nodes - 1].ws_max_samples = a->chunk;
    return y;
}

static int build_patch_tokens(tr_graph *g, int x, void *arg) { (void)arg; return tr_patch_tokens(g, "vit", x); }
static int build_select_token(tr_graph *g, int x, void *arg) { return tr_select_token(g, "cls", x, *(int *)arg); }

static void expect_gradcheck(const char *what, gc_build_fn build, void *arg, gc_opts o)
{
    gc_result r;
    assert_int_equal(gc_check(what, build, arg, o, &r), 0);
    assert_true(r.checked > 0);
}

/* ---- concat ---- */

static void test_concat_gradcheck(void **state)
{
    (void)state;
    concat_arg two = {2, {0, 3}};
    expect_gradcheck("concat 2", build_concat, &two, (gc_opts){.n = 2, .c = 2, .h = 3, .w = 2});
    concat_arg ten = {10, {0, 1, 2, 1, 3, 1, 2, 1, 1, 2}};
    expect_gradcheck("concat 10", build_concat, &ten, (gc_opts){.n = 2, .c = 2, .h = 2, .w = 2});
}

/* Channel order survives the chaining of more than TR_MAX_IN inputs. */
static void test_concat_forward_chained(void **state)
{
    (void)state;
    concat_arg a = {10, {0, 1, 2, 1, 3, 1, 2, 1, 1, 2}};
    int n = 2, hw = 3, total = 2;
    for (int i = 1; i < a.n; i++) total += a.chans[i];
    fixture f = fx_new(2, 1, 3, n, build_concat, &a, 1);
    assert_int_equal(f.g->tensors[f.g->output].c, total);
    int concats = 0;
    for (int i = 0; i < f.g->n_nodes; i++) {
        assert_true(f.g->nodes[i].n_in <= TR_MAX_IN);
        concats += f.g->nodes[i].op == TR_OP_CONCAT;
    }
    assert_int_equal(concats, 2);   /* 10 inputs: one run of 3 merged first, then 8 */
    /* input k, sample s, channel ch, position p holds 1000k + 100s + 10ch + p */
    for (int k = 0; k < 10; k++) {
        /* the leaves were added in order right after the input: tensor ids 1..9 */
        int id = k == 0 ? f.g->input : k;
        const tr_tensor *t = &f.g->tensors[id];
        float v[64];
        for (int s = 0; s < n; s++)
            for (int ch = 0; ch < t->c; ch++)
                for (int p = 0; p < hw; p++) v[(s * t->c + ch) * hw + p] = 1000.f * k + 100.f * s + 10.f * ch + p;
        set_tensor(&f, id, v, n);
    }
    tr_graph_forward(f.g, n);
    float y[2 * 32 * 3];
    get(&f, y, f.g->tensors[f.g->output].data, (int64_t)n * total * hw);
    for (int s = 0; s < n; s++) {
        int c0 = 0;
        for (int k = 0; k < 10; k++) {
            int ck = k == 0 ? 2 : a.chans[k];
            for (int ch = 0; ch < ck; ch++)
                for (int p = 0; p < hw; p++)
                    assert_float_equal(y[(s * total + c0 + ch) * hw + p],
                                       1000.f * k + 100.f * s + 10.f * ch + p, 0);
            c0 += ck;
        }
    }
    fx_free(&f);
}

/* DenseNet's widest block: 32 inputs in nodes of at most 8, each input copied at most twice. */
static void test_concat_32_structure(void **state)
{
    (void)state;
    concat_arg a = {32, {0}};
    for (int i = 1; i < 32; i++) a.chans[i] = 1 + i % 3;
    tr_graph *g = tr_graph_new(4, 2, 2);
    int out = build_concat(g, g->input, &a);
    assert_true(out >= 0);
    int total = 4;
    for (int i = 1; i < 32; i++) total += a.chans[i];
    assert_int_equal(g->tensors[out].c, total);
    assert_int_equal(g->n_nodes, 5);
    /* a leaf (id < 32) feeds exactly one node; only the last node takes part outputs */
    for (int i = 0; i < g->n_nodes; i++) assert_true(g->nodes[i].n_in <= TR_MAX_IN);
    int uses[32] = {0};
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] < 32) uses[g->nodes[i].in[k]]++;
    for (int i = 0; i < 32; i++) assert_int_equal(uses[i], 1);
    tr_graph_free(g);
}

static void test_concat_errors(void **state)
{
    (void)state;
    tr_graph *g = tr_graph_new(2, 4, 4);
    int b = tr_graph_add_leaf(g, 2, 3, 4);
    int ids[2] = {g->input, b};
    assert_int_equal(tr_concat(g, "cat", ids, 2), -1);
    assert_true(g->failed);
    assert_non_null(strstr(g->err.msg, "cat"));
    tr_graph_free(g);
    g = tr_graph_new(2, 4, 4);
    assert_int_equal(tr_concat(g, "cat", ids, 0), -1);
    tr_graph_free(g);
    g = tr_graph_new(2, 4, 4);
    assert_int_equal(tr_concat(g, "cat", ids, 1), g->input);   /* one input: itself, no node */
    assert_int_equal(g->n_nodes, 0);
    tr_graph_free(g);
}

/* ---- mul_channel ---- */

static void test_mul_channel(void **state)
{
    (void)state;
    expect_gradcheck("mul_channel", build_mul_channel, NULL, (gc_opts){.n = 2, .c = 3, .h = 2, .w = 3});
    fixture f = fx_new(2, 1, 2, 1, build_mul_channel, NULL, 1);
    float x[4] = {1, 2, 3, 4}, s[2] = {10, -1}, y[4];
    set_tensor(&f, f.g->input, x, 1);
    set_tensor(&f, f.g->nodes[0].in[1], s, 1);
    tr_graph_forward(f.g, 1);
    get(&f, y, f.g->tensors[f.g->output].data, 4);
    float want[4] = {10, 20, -3, -4};
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], want[i], 0);
    fx_free(&f);
    tr_graph *g = tr_graph_new(3, 2, 2);
    int bad = tr_graph_add_leaf(g, 2, 1, 1);
    assert_int_equal(tr_mul_channel(g, "se", g->input, bad), -1);
    tr_graph_free(g);
}

/* ---- dropout ---- */

static void test_dropout_gradcheck(void **state)
{
    (void)state;
    float p = 0.3f;
    expect_gradcheck("dropout train", build_dropout, &p, (gc_opts){.n = 2, .c = 3, .h = 2, .w = 2, .training = 1});
    expect_gradcheck("dropout eval", build_dropout, &p, (gc_opts){.n = 2, .c = 3, .h = 2, .w = 2, .training = 0});
}

/* Each output is 0 or x/(1-p); the gradient is the same mask times dy; eval is the identity;
 * the dropped fraction is p within 5 binomial standard deviations. */
static void test_dropout_mask(void **state)
{
    (void)state;
    float p = 0.25f;
    int n = 4, per = 25000;
    int64_t m = (int64_t)n * per;
    fixture f = fx_new(1, 1, per, n, build_dropout, &p, 1);
    float *x = malloc(m * sizeof(float)), *y = malloc(m * sizeof(float));
    float *dy = malloc(m * sizeof(float)), *dx = malloc(m * sizeof(float));
    for (int64_t i = 0; i < m; i++) x[i] = 1.f + (float)(i % 7), dy[i] = 0.5f - (float)(i % 5);
    set_tensor(&f, f.g->input, x, n);
    tr_graph_forward(f.g, n);
    get(&f, y, f.g->tensors[f.g->output].data, m);
    tr_graph_zero_act_grads(f.g);
    f.be->upload(f.be, f.g->tensors[f.g->output].grad, dy, m * sizeof(float));
    tr_graph_backward(f.g, n);
    get(&f, dx, f.g->tensors[f.g->input].grad, m);
    int64_t dropped = 0;
    float scale = 1.f / (1.f - p);
    for (int64_t i = 0; i < m; i++) {
        if (y[i] == 0.f) {
            dropped++;
            assert_float_equal(dx[i], 0.f, 0);
        } else {
            assert_float_equal(y[i], x[i] * scale, 1e-6f * y[i]);
            assert_float_equal(dx[i], dy[i] * scale, 1e-6f);
        }
    }
    double frac = (double)dropped / (double)m, sd = sqrt(p * (1 - p) / (double)m);
    assert_true(fabs(frac - p) < 5 * sd);
    /* a second step draws a different mask */
    float *y2 = malloc(m * sizeof(float));
    tr_graph_forward(f.g, n);
    get(&f, y2, f.g->tensors[f.g->output].data, m);
    assert_memory_not_equal(y, y2, m * sizeof(float));
    /* eval: identity forward and backward */
    f.g->training = 0;
    tr_graph_forward(f.g, n);
    get(&f, y, f.g->tensors[f.g->output].data, m);
    assert_memory_equal(x, y, m * sizeof(float));
    tr_graph_zero_act_grads(f.g);
    f.be->upload(f.be, f.g->tensors[f.g->output].grad, dy, m * sizeof(float));
    tr_graph_backward(f.g, n);
    get(&f, dx, f.g->tensors[f.g->input].grad, m);
    assert_memory_equal(dx, dy, m * sizeof(float));
    free(x), free(y), free(y2), free(dy), free(dx);
    fx_free(&f);
}

/* ---- drop path ---- */

static void test_drop_path_gradcheck(void **state)
{
    (void)state;
    float p = 0.4f;
    expect_gradcheck("drop_path train", build_drop_path, &p, (gc_opts){.n = 6, .c = 2, .h = 2, .w = 2, .training = 1});
    expect_gradcheck("drop_path eval", build_drop_path, &p, (gc_opts){.n = 3, .c = 2, .h = 2, .w = 2, .training = 0});
}

/* Whole samples are kept (scaled by 1/(1-p)) or zeroed; about p of them are zeroed. */
static void test_drop_path_rows(void **state)
{
    (void)state;
    float p = 0.2f;
    int n = 8000, per = 6;
    int64_t m = (int64_t)n * per;
    fixture f = fx_new(2, 1, 3, n, build_drop_path, &p, 1);
    float *x = malloc(m * sizeof(float)), *y = malloc(m * sizeof(float));
    float *dy = malloc(m * sizeof(float)), *dx = malloc(m * sizeof(float));
    for (int64_t i = 0; i < m; i++) x[i] = 1.f + (float)(i % 11), dy[i] = (float)(i % 3) - 1.5f;
    set_tensor(&f, f.g->input, x, n);
    tr_graph_forward(f.g, n);
    get(&f, y, f.g->tensors[f.g->output].data, m);
    tr_graph_zero_act_grads(f.g);
    f.be->upload(f.be, f.g->tensors[f.g->output].grad, dy, m * sizeof(float));
    tr_graph_backward(f.g, n);
    get(&f, dx, f.g->tensors[f.g->input].grad, m);
    int dropped = 0;
    for (int s = 0; s < n; s++) {
        int kept = y[s * per] != 0.f;
        dropped += !kept;
        float k = kept ? 1.f / (1.f - p) : 0.f;
        for (int i = s * per; i < (s + 1) * per; i++) {
            assert_float_equal(y[i], x[i] * k, 1e-5f);
            assert_float_equal(dx[i], dy[i] * k, 1e-6f);
        }
    }
    double frac = (double)dropped / n, sd = sqrt(p * (1 - p) / n);
    assert_true(fabs(frac - p) < 5 * sd);
    f.g->training = 0;
    tr_graph_forward(f.g, n);
    get(&f, y, f.g->tensors[f.g->output].data, m);
    assert_memory_equal(x, y, m * sizeof(float));
    free(x), free(y), free(dy), free(dx);
    fx_free(&f);
}

static void test_drop_errors(void **state)
{
    (void)state;
    tr_graph *g = tr_graph_new(2, 2, 2);
    assert_int_equal(tr_dropout(g, "drop", g->input, 1.5f), -1);
    assert_non_null(strstr(g->err.msg, "drop"));
    tr_graph_free(g);
    g = tr_graph_new(2, 2, 2);
    assert_int_equal(tr_drop_path(g, "sd", g->input, -0.1f), -1);
    tr_graph_free(g);
}

/* ---- layernorm ---- */

static void test_layernorm_gradcheck(void **state)
{
    (void)state;
    expect_gradcheck("layernorm", build_layernorm, NULL, (gc_opts){.n = 2, .c = 3, .h = 1, .w = 6});
    expect_gradcheck("layernorm (c,h,w)", build_layernorm, NULL, (gc_opts){.n = 2, .c = 2, .h = 2, .w = 5});
}

/* [1,2,3,4]: mean 2.5, biased variance 1.25, so y = (x - 2.5)/sqrt(1.25 + eps) * w + b. */
static void test_layernorm_forward(void **state)
{
    (void)state;
    fixture f = fx_new(1, 1, 4, 1, build_layernorm, NULL, 1);
    assert_int_equal(f.g->n_params, 8);
    float w0[4], b0[4];
    get(&f, w0, f.g->params + param_named(f.g, "ln.weight")->off, 4);
    get(&f, b0, f.g->params + param_named(f.g, "ln.bias")->off, 4);
    for (int i = 0; i < 4; i++) assert_true(w0[i] == 1.f && b0[i] == 0.f);
    float x[4] = {1, 2, 3, 4}, y[4];
    set_tensor(&f, f.g->input, x, 1);
    tr_graph_forward(f.g, 1);
    get(&f, y, f.g->tensors[f.g->output].data, 4);
    float want[4] = {-1.3416408f, -0.4472136f, 0.4472136f, 1.3416408f};
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], want[i], 1e-5f);
    float w[4] = {2, 1, 1, 0.5f}, b[4] = {0, 1, -1, 0};
    set_param(&f, "ln.weight", w);
    set_param(&f, "ln.bias", b);
    tr_graph_forward(f.g, 1);
    get(&f, y, f.g->tensors[f.g->output].data, 4);
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], want[i] * w[i] + b[i], 1e-5f);
    fx_free(&f);
}

/* ---- attention ---- */

/* nn.MultiheadAttention forward in double, written plainly: x (T, D) -> y (T, D). */
static void ref_attention(double *y, const float *x, const float *w_in, const float *b_in,
                          const float *w_out, const float *b_out, int t, int d, int heads)
{
    int dh = d / heads;
    double *qkv = calloc((size_t)t * 3 * d, sizeof(double)), *ctx = calloc((size_t)t * d, sizeof(double));
    double *sc = calloc((size_t)t, sizeof(double));
    for (int i = 0; i < t; i++)
        for (int o = 0; o < 3 * d; o++) {
            double acc = b_in[o];
            for (int k = 0; k < d; k++) acc += (double)x[i * d + k] * w_in[o * d + k];
            qkv[i * 3 * d + o] = acc;
        }
    for (int hh = 0; hh < heads; hh++)
        for (int i = 0; i < t; i++) {
            double mx = -1e300, sum = 0;
            for (int j = 0; j < t; j++) {
                double s = 0;
                for (int k = 0; k < dh; k++)
                    s += qkv[i * 3 * d + hh * dh + k] * qkv[j * 3 * d + d + hh * dh + k];
                sc[j] = s / sqrt((double)dh);
                if (sc[j] > mx) mx = sc[j];
            }
            for (int j = 0; j < t; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int k = 0; k < dh; k++) {
                double acc = 0;
                for (int j = 0; j < t; j++) acc += sc[j] / sum * qkv[j * 3 * d + 2 * d + hh * dh + k];
                ctx[i * d + hh * dh + k] = acc;
            }
        }
    for (int i = 0; i < t; i++)
        for (int o = 0; o < d; o++) {
            double acc = b_out[o];
            for (int k = 0; k < d; k++) acc += ctx[i * d + k] * w_out[o * d + k];
            y[i * d + o] = acc;
        }
    free(qkv), free(ctx), free(sc);
}

static void test_attention_gradcheck(void **state)
{
    (void)state;
    attn_arg a = {2, 0};
    expect_gradcheck("attention T=5 D=8 heads=2", build_attention, &a,
                     (gc_opts){.n = 2, .c = 5, .h = 1, .w = 8, .step = 1e-2f});
    attn_arg one = {1, 0};
    expect_gradcheck("attention T=3 D=4 heads=1", build_attention, &one,
                     (gc_opts){.n = 2, .c = 3, .h = 1, .w = 4});
    /* backward in chunks of one sample through the shared scratch */
    attn_arg chunked = {4, 1};
    expect_gradcheck("attention chunked heads=4", build_attention, &chunked,
                     (gc_opts){.n = 3, .c = 4, .h = 1, .w = 8});
}

/* T = 2, D = 1, one head, all projection weights 1, out bias 0.5: q = k = v = x = (1, 2),
 * y_0 = (1·e^1 + 2·e^2)/(e^1 + e^2) + 0.5, y_1 = (1·e^2 + 2·e^4)/(e^2 + e^4) + 0.5. */
static void test_attention_by_hand(void **state)
{
    (void)state;
    attn_arg a = {1, 0};
    fixture f = fx_new(2, 1, 1, 1, build_attention, &a, 1);
    float w_in[3] = {1, 1, 1}, b_in[3] = {0, 0, 0}, w_out[1] = {1}, b_out[1] = {0.5f};
    set_param(&f, "in_proj_weight", w_in);
    set_param(&f, "in_proj_bias", b_in);
    set_param(&f, "out_proj.weight", w_out);
    set_param(&f, "out_proj.bias", b_out);
    float x[2] = {1, 2}, y[2];
    set_tensor(&f, f.g->input, x, 1);
    tr_graph_forward(f.g, 1);
    get(&f, y, f.g->tensors[f.g->output].data, 2);
    double e = exp(1.0);
    assert_float_equal(y[0], (1 + 2 * e) / (1 + e) + 0.5, 1e-6);
    assert_float_equal(y[1], (1 + 2 * e * e) / (1 + e * e) + 0.5, 1e-6);
    fx_free(&f);
}

/* Against the double reference with the builder's own init (xavier, torch default, zeros)
 * plus random biases, several samples and heads. */
static void test_attention_reference(void **state)
{
    (void)state;
    enum { N = 3, T = 7, D = 12, H = 3 };
    attn_arg a = {H, 0};
    fixture f = fx_new(T, 1, D, N, build_attention, &a, 1);
    assert_int_equal(f.g->n_params, 3 * D * D + 3 * D + D * D + D);
    float w_in[3 * D * D], b_in[3 * D], w_out[D * D], b_out[D];
    get(&f, w_in, f.g->params + param_named(f.g, "in_proj_weight")->off, 3 * D * D);
    get(&f, w_out, f.g->params + param_named(f.g, "out_proj.weight")->off, D * D);
    /* init ranges: xavier U(±sqrt(6/(D+3D))), out_proj U(±1/sqrt(D)) */
    double xb = sqrt(6.0 / (4 * D)), ob = 1 / sqrt((double)D), xmax = 0, omax = 0;
    for (int i = 0; i < 3 * D * D; i++) xmax = fmax(xmax, fabs(w_in[i]));
    for (int i = 0; i < D * D; i++) omax = fmax(omax, fabs(w_out[i]));
    assert_true(xmax <= xb && xmax > 0.8 * xb);
    assert_true(omax <= ob && omax > 0.8 * ob);
    random_fill(b_in, 3 * D, 3, 0.5);
    random_fill(b_out, D, 4, 0.5);
    set_param(&f, "in_proj_bias", b_in);
    set_param(&f, "out_proj.bias", b_out);
    float x[N * T * D], y[N * T * D];
    random_fill(x, N * T * D, 5, 2.0);
    set_tensor(&f, f.g->input, x, N);
    tr_graph_forward(f.g, N);
    get(&f, y, f.g->tensors[f.g->output].data, N * T * D);
    double ref[T * D];
    for (int s = 0; s < N; s++) {
        ref_attention(ref, x + s * T * D, w_in, b_in, w_out, b_out, T, D, H);
        for (int i = 0; i < T * D; i++) assert_float_equal(y[s * T * D + i], ref[i], 1e-5);
    }
    /* fewer samples than planned run too */
    tr_graph_forward(f.g, 1);
    get(&f, y, f.g->tensors[f.g->output].data, T * D);
    ref_attention(ref, x, w_in, b_in, w_out, b_out, T, D, H);
    for (int i = 0; i < T * D; i++) assert_float_equal(y[i], ref[i], 1e-5);
    fx_free(&f);
}

static void test_attention_errors(void **state)
{
    (void)state;
    tr_graph *g = tr_graph_new(5, 1, 10);
    assert_int_equal(tr_attention(g, "attn", g->input, 3), -1);
    assert_non_null(strstr(g->err.msg, "attn"));
    tr_graph_free(g);
    g = tr_graph_new(5, 2, 8);
    assert_int_equal(tr_attention(g, "attn", g->input, 2), -1);
    tr_graph_free(g);
}

/* ---- patch tokens, select token ---- */

static void test_patch_tokens_gradcheck(void **state)
{
    (void)state;
    expect_gradcheck("patch_tokens", build_patch_tokens, NULL, (gc_opts){.n = 3, .c = 4, .h = 2, .w = 3});
}

/* (D=2, h=2, w=3) -> 7 tokens: token 0 is class_token + pos[0], token 1+i is the map at
 * position i (row-major) across channels, plus pos[1+i]. */
static void test_patch_tokens_order(void **state)
{
    (void)state;
    enum { D = 2, P = 6, T = 7 };
    fixture f = fx_new(D, 2, 3, 2, build_patch_tokens, NULL, 1);
    const tr_tensor *o = &f.g->tensors[f.g->output];
    assert_true(o->c == T && o->h == 1 && o->w == D);
    assert_int_equal(f.g->n_params, D + T * D);
    float cls0[D], pos0[T * D];
    get(&f, cls0, f.g->params + param_named(f.g, "class_token")->off, D);
    get(&f, pos0, f.g->params + param_named(f.g, "pos_embedding")->off, T * D);
    assert_true(cls0[0] == 0.f && cls0[1] == 0.f);
    double ss = 0;
    for (int i = 0; i < T * D; i++) ss += (double)pos0[i] * pos0[i];
    assert_true(ss > 0 && sqrt(ss / (T * D)) < 0.06);
    float x[2 * D * P], cls[D] = {7, 8}, pos[T * D], y[2 * T * D];
    for (int s = 0; s < 2; s++)
        for (int d = 0; d < D; d++)
            for (int i = 0; i < P; i++) x[(s * D + d) * P + i] = 100.f * s + 10.f * d + i;
    for (int i = 0; i < T * D; i++) pos[i] = 0.25f * i;
    set_param(&f, "class_token", cls);
    set_param(&f, "pos_embedding", pos);
    set_tensor(&f, f.g->input, x, 2);
    tr_graph_forward(f.g, 2);
    get(&f, y, o->data, 2 * T * D);
    for (int s = 0; s < 2; s++) {
        for (int d = 0; d < D; d++) assert_float_equal(y[s * T * D + d], cls[d] + pos[d], 0);
        for (int i = 0; i < P; i++)
            for (int d = 0; d < D; d++)
                assert_float_equal(y[s * T * D + (1 + i) * D + d],
                                   100.f * s + 10.f * d + i + pos[(1 + i) * D + d], 0);
    }
    fx_free(&f);
}

static void test_select_token(void **state)
{
    (void)state;
    int tok = 0;
    expect_gradcheck("select_token 0", build_select_token, &tok, (gc_opts){.n = 2, .c = 4, .h = 1, .w = 3});
    tok = 2;
    expect_gradcheck("select_token 2", build_select_token, &tok, (gc_opts){.n = 2, .c = 4, .h = 1, .w = 3});
    fixture f = fx_new(3, 1, 2, 2, build_select_token, &tok, 1);
    float x[12], y[4];
    for (int i = 0; i < 12; i++) x[i] = (float)i;
    set_tensor(&f, f.g->input, x, 2);
    tr_graph_forward(f.g, 2);
    get(&f, y, f.g->tensors[f.g->output].data, 4);
    float want[4] = {4, 5, 10, 11};
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], want[i], 0);
    fx_free(&f);
    tr_graph *g = tr_graph_new(3, 1, 2);
    assert_int_equal(tr_select_token(g, "cls", g->input, 3), -1);
    tr_graph_free(g);
}

/* The torchvision ViT head: tokens -> encoder block pieces -> class token, end to end. */
static int build_vit_piece(tr_graph *g, int x, void *arg)
{
    (void)arg;
    int t = tr_patch_tokens(g, "encoder", x);
    int h = tr_layernorm(g, "encoder.layers.0.ln_1", t, 1e-6f);
    h = tr_attention(g, "encoder.layers.0.self_attention", h, 2);
    h = tr_drop_path(g, "encoder.layers.0.sd", h, 0.1f);
    h = tr_dropout(g, "encoder.layers.0.dropout", h, 0.2f);
    return tr_select_token(g, "cls", h, 0);
}

static void test_vit_piece_gradcheck(void **state)
{
    (void)state;
    expect_gradcheck("patch+ln+attention+drops+select", build_vit_piece, NULL,
                     (gc_opts){.n = 4, .c = 4, .h = 2, .w = 2, .training = 1});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concat_gradcheck),
        cmocka_unit_test(test_concat_forward_chained),
        cmocka_unit_test(test_concat_32_structure),
        cmocka_unit_test(test_concat_errors),
        cmocka_unit_test(test_mul_channel),
        cmocka_unit_test(test_dropout_gradcheck),
        cmocka_unit_test(test_dropout_mask),
        cmocka_unit_test(test_drop_path_gradcheck),
        cmocka_unit_test(test_drop_path_rows),
        cmocka_unit_test(test_drop_errors),
        cmocka_unit_test(test_layernorm_gradcheck),
        cmocka_unit_test(test_layernorm_forward),
        cmocka_unit_test(test_attention_gradcheck),
        cmocka_unit_test(test_attention_by_hand),
        cmocka_unit_test(test_attention_reference),
        cmocka_unit_test(test_attention_errors),
        cmocka_unit_test(test_patch_tokens_gradcheck),
        cmocka_unit_test(test_patch_tokens_order),
        cmocka_unit_test(test_select_token),
        cmocka_unit_test(test_vit_piece_gradcheck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
