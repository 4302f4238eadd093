/* The layout family of general-shape ops (matmul, transpose, slice, concat_axis, pad) on the
 * CPU backend: finite-difference checks of every backward, batched and batchless operands,
 * forward values against numbers worked out by hand (the torch call that gives the same is in
 * the comment beside each), and the builders' refusals. */
#include "tests/testutil.h"
#include "tests/gradcheck.h"

#include <math.h>
#include "trainer/layers_nd.h"

/* ---- operands: the graph input, a batched leaf, or a batchless parameter ---- */

enum { OPD_INPUT, OPD_LEAF, OPD_PARAM };

typedef struct {
    int kind, rank, dims[TR_MAX_RANK];
} opd;

/* The tensor of an operand, for a graph whose input is x. */
static int make_opd(tr_graph *g, int x, const opd *o, const char *name)
{
    if (o->kind == OPD_INPUT) return x;
    if (o->kind == OPD_LEAF) return tr_graph_add_leaf_nd(g, o->rank, o->dims);
    int64_t count = 1;
    for (int i = 0; i < o->rank; i++) count *= o->dims[i];
    return tr_graph_add_param_tensor(g, name, o->rank, o->dims, count, count, (tr_init){TR_INIT_UNIFORM, 1.f}, NULL);
}

/* gc_opts for n samples of the operands' input shape (a scalar-like (1) input when neither
 * operand is the input: it is then unused, and its gradient 0 both ways). */
static gc_opts opts_for(int n, const opd *ops, int count)
{
    gc_opts o = {.n = n, .rank = 1, .dims = {1}};
    for (int i = 0; i < count; i++)
        if (ops[i].kind == OPD_INPUT) {
            o.rank = ops[i].rank;
            memcpy(o.dims, ops[i].dims, sizeof o.dims);
        }
    return o;
}

static void expect_gradcheck(const char *what, gc_build_fn build, void *arg, gc_opts o)
{
    gc_result r;
    assert_int_equal(gc_check(what, build, arg, o, &r), 0);
    assert_true(r.checked > 0);
}

/* ---- forward runs on the CPU backend ---- */

typedef struct {
    tr_backend *be;
    tr_graph *g;
    int n;
} fixture;

static fixture fx_new(int rank, const int *dims, int n, gc_build_fn build, void *arg)
{
    fixture f;
    deba_err e = {0};
    f.be = tr_backend_cpu_new(&e);
    assert_non_null(f.be);
    f.g = tr_graph_new_nd(rank, dims);
    assert_non_null(f.g);
    f.g->input_grad = 1;
    int out = build(f.g, f.g->input, arg);
    if (out < 0) fprintf(stderr, "build: %s\n", f.g->err.msg);
    assert_true(out >= 0);
    f.g->output = out;
    f.g->classes = f.g->tensors[out].w;
    assert_int_equal(tr_graph_alloc(f.g, f.be, 42, &e), DEBA_OK);
    assert_int_equal(tr_graph_plan(f.g, n, &e), DEBA_OK);
    f.n = n;
    return f;
}

static void fx_free(fixture *f)
{
    tr_graph_free(f->g);
    tr_backend_free(f->be);
}

/* Uploads v into tensor id (n samples, or one copy when batchless). */
static void fx_set(fixture *f, int id, const float *v)
{
    tr_tensor *t = &f->g->tensors[id];
    f->be->upload(f->be, t->data, v, (size_t)tr_tensor_elems(t, f->n) * sizeof(float));
}

/* Runs forward and compares the output with want (exact: the cases are small integers or
 * halves, which float products and sums of a few terms keep exact). */
static void fx_expect(fixture *f, const float *want, int64_t count)
{
    tr_graph_forward(f->g, f->n);
    const tr_tensor *o = &f->g->tensors[f->g->output];
    assert_int_equal(tr_tensor_elems(o, f->n), count);
    float got[256];
    assert_true(count <= 256);
    f->be->download(f->be, got, o->data, (size_t)count * sizeof(float));
    for (int64_t i = 0; i < count; i++) {
        if (got[i] != want[i]) fprintf(stderr, "element %lld: got %g, want %g\n", (long long)i, got[i], want[i]);
        assert_true(got[i] == want[i]);
    }
}

/* ---- matmul ---- */

typedef struct { opd a, b; } mm_arg;

static int build_mm(tr_graph *g, int x, void *arg)
{
    mm_arg *m = arg;
    int a = make_opd(g, x, &m->a, "a");
    int b = make_opd(g, x, &m->b, "b");
    return tr_matmul(g, "mm", a, b);
}

static void check_mm(const char *what, int n, mm_arg m)
{
    opd ops[2] = {m.a, m.b};
    expect_gradcheck(what, build_mm, &m, opts_for(n, ops, 2));
}

static void test_matmul_gradcheck(void **state)
{
    (void)state;
    /* activation · weight: one GEMM over the stacked rows, the weight's gradient summed over
     * the samples */
    check_mm("matmul (2,3)·(3,4) weight", 3,
             (mm_arg){{OPD_INPUT, 2, {2, 3}}, {OPD_PARAM, 2, {3, 4}}});
    check_mm("matmul (2,3,4)·(2,4,5) batched", 2,
             (mm_arg){{OPD_INPUT, 3, {2, 3, 4}}, {OPD_LEAF, 3, {2, 4, 5}}});
    check_mm("matmul (1,3,4)·(2,4,5) batchless left", 3,
             (mm_arg){{OPD_PARAM, 3, {1, 3, 4}}, {OPD_INPUT, 3, {2, 4, 5}}});
    /* weight · activation (a 1x1 convolution): the left gradient sums every pair */
    check_mm("matmul (3,4)·(2,4,5) weight left", 2,
             (mm_arg){{OPD_PARAM, 2, {3, 4}}, {OPD_INPUT, 3, {2, 4, 5}}});
    /* a batchless right operand with batch dims: broadcast over samples, not shared by pairs */
    check_mm("matmul (2,3,4)·(2,4,5) batchless right", 3,
             (mm_arg){{OPD_INPUT, 3, {2, 3, 4}}, {OPD_PARAM, 3, {2, 4, 5}}});
    /* both sides broadcast, different ranks */
    check_mm("matmul (2,1,3,4)·(3,4,2)", 2,
             (mm_arg){{OPD_INPUT, 4, {2, 1, 3, 4}}, {OPD_LEAF, 3, {3, 4, 2}}});
    /* attention scores: (h, T, d)·(h, d, T), both batched */
    check_mm("matmul (2,5,3)·(2,3,5) attention", 2,
             (mm_arg){{OPD_INPUT, 3, {2, 5, 3}}, {OPD_LEAF, 3, {2, 3, 5}}});
    /* both batchless: a batchless output that runs once */
    check_mm("matmul (2,3)·(3,2) batchless", 3,
             (mm_arg){{OPD_PARAM, 2, {2, 3}}, {OPD_PARAM, 2, {3, 2}}});
}

/* torch.arange(1., 7.).view(2, 3) @ (torch.arange(12.).view(3, 4) - 5) on one sample;
 * the second sample is the first times -2 */
static void test_matmul_forward_weight(void **state)
{
    (void)state;
    mm_arg m = {{OPD_INPUT, 2, {2, 3}}, {OPD_PARAM, 2, {3, 4}}};
    fixture f = fx_new(2, (int[]){2, 3}, 2, build_mm, &m);
    const tr_tensor *y = &f.g->tensors[f.g->output];
    assert_int_equal(y->rank, 2);
    assert_int_equal(y->dims[0], 2);
    assert_int_equal(y->dims[1], 4);
    assert_false(y->batchless);
    /* a weight's gradient is one GEMM on every backend: no scratch planned */
    assert_int_equal(f.g->nodes[0].ws_per_sample, 0);
    assert_int_equal(f.g->nodes[0].ws_fixed, 0);
    float x[12], w[12];
    for (int i = 0; i < 6; i++) x[i] = (float)(i + 1), x[6 + i] = -2.f * (float)(i + 1);
    for (int i = 0; i < 12; i++) w[i] = (float)(i - 5);
    fx_set(&f, f.g->input, x);
    f.be->upload(f.be, f.g->params, w, sizeof w);
    const float want[16] = {2, 8, 14, 20, -7, 8, 23, 38, -4, -16, -28, -40, 14, -16, -46, -76};
    fx_expect(&f, want, 16);
    fx_free(&f);
}

/* batchless (1,2,3) · batched (2,3,2): A = 0.5 * torch.arange(6.).view(1, 2, 3),
 * B = torch.arange(24.).view(2, 2, 3, 2) - 6 (sample, batch, k, n); torch.matmul(A, B) */
static void test_matmul_forward_broadcast(void **state)
{
    (void)state;
    mm_arg m = {{OPD_PARAM, 3, {1, 2, 3}}, {OPD_INPUT, 3, {2, 3, 2}}};
    fixture f = fx_new(3, (int[]){2, 3, 2}, 2, build_mm, &m);
    const tr_tensor *y = &f.g->tensors[f.g->output];
    assert_int_equal(y->rank, 3);
    assert_int_equal(y->dims[0], 2);
    assert_int_equal(y->dims[1], 2);
    assert_int_equal(y->dims[2], 2);
    /* the broadcast left operand's per-pair gradients (2 pairs of 2x3 per sample) have scratch
     * for the CUDA backend to sum them in */
    assert_int_equal(f.g->nodes[0].ws_per_sample, 2 * 2 * 3);
    float a[6], b[24];
    for (int i = 0; i < 6; i++) a[i] = 0.5f * (float)i;
    for (int i = 0; i < 24; i++) b[i] = (float)(i - 6);
    f.be->upload(f.be, f.g->params, a, sizeof a);
    fx_set(&f, f.g->input, b);
    const float want[16] = {-4, -2.5f, -22, -16, 5, 6.5f, 14, 20, 14, 15.5f, 50, 56, 23, 24.5f, 86, 92};
    fx_expect(&f, want, 16);
    fx_free(&f);
}

/* ---- transpose ---- */

typedef struct { opd x; int perm[TR_MAX_RANK]; } tp_arg;

static int build_tp(tr_graph *g, int x, void *arg)
{
    tp_arg *t = arg;
    return tr_transpose(g, "tp", make_opd(g, x, &t->x, "x"), t->perm);
}

static void test_transpose_gradcheck(void **state)
{
    (void)state;
    tp_arg a = {{OPD_INPUT, 2, {3, 4}}, {1, 0}};
    expect_gradcheck("transpose (3,4) (1,0)", build_tp, &a, opts_for(2, &a.x, 1));
    tp_arg b = {{OPD_INPUT, 3, {2, 3, 4}}, {2, 0, 1}};
    expect_gradcheck("transpose (2,3,4) (2,0,1)", build_tp, &b, opts_for(2, &b.x, 1));
    tp_arg c = {{OPD_INPUT, 4, {2, 3, 2, 4}}, {0, 2, 1, 3}};
    expect_gradcheck("transpose (2,3,2,4) (0,2,1,3)", build_tp, &c, opts_for(2, &c.x, 1));
    tp_arg d = {{OPD_INPUT, 4, {2, 3, 2, 2}}, {3, 1, 0, 2}};
    expect_gradcheck("transpose (2,3,2,2) (3,1,0,2)", build_tp, &d, opts_for(2, &d.x, 1));
    tp_arg e = {{OPD_PARAM, 3, {2, 3, 4}}, {1, 2, 0}};
    expect_gradcheck("transpose batchless (2,3,4) (1,2,0)", build_tp, &e, opts_for(2, &e.x, 1));
}

static void test_transpose_forward(void **state)
{
    (void)state;
    /* torch.arange(6.).view(2, 3).t() on sample 0; sample 1 is sample 0 + 100 */
    tp_arg a = {{OPD_INPUT, 2, {2, 3}}, {1, 0}};
    fixture f = fx_new(2, (int[]){2, 3}, 2, build_tp, &a);
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = (float)(i % 6 + 100 * (i / 6));
    fx_set(&f, f.g->input, x);
    const float want_a[12] = {0, 3, 1, 4, 2, 5, 100, 103, 101, 104, 102, 105};
    fx_expect(&f, want_a, 12);
    fx_free(&f);

    /* torch.arange(12.).view(2, 3, 2).permute(2, 0, 1) */
    tp_arg b = {{OPD_INPUT, 3, {2, 3, 2}}, {2, 0, 1}};
    f = fx_new(3, (int[]){2, 3, 2}, 1, build_tp, &b);
    for (int i = 0; i < 12; i++) x[i] = (float)i;
    fx_set(&f, f.g->input, x);
    const float want_b[12] = {0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11};
    fx_expect(&f, want_b, 12);
    const tr_tensor *y = &f.g->tensors[f.g->output];
    assert_int_equal(y->dims[0], 2);
    assert_int_equal(y->dims[1], 2);
    assert_int_equal(y->dims[2], 3);
    fx_free(&f);

    /* torch.arange(24.).view(2, 3, 2, 2).permute(0, 2, 1, 3): heads and tokens swap */
    tp_arg c = {{OPD_INPUT, 4, {2, 3, 2, 2}}, {0, 2, 1, 3}};
    f = fx_new(4, (int[]){2, 3, 2, 2}, 1, build_tp, &c);
    float x24[24];
    for (int i = 0; i < 24; i++) x24[i] = (float)i;
    fx_set(&f, f.g->input, x24);
    const float want_c[24] = {0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11, 12, 13, 16, 17, 20, 21, 14, 15, 18, 19, 22, 23};
    fx_expect(&f, want_c, 24);
    fx_free(&f);
}

/* ---- slice ---- */

typedef struct { opd x; int start[TR_MAX_RANK], step[TR_MAX_RANK], out[TR_MAX_RANK]; } sl_arg;

static int build_sl(tr_graph *g, int x, void *arg)
{
    sl_arg *s = arg;
    return tr_slice(g, "sl", make_opd(g, x, &s->x, "x"), s->start, s->step, s->out);
}

static void test_slice_gradcheck(void **state)
{
    (void)state;
    sl_arg a = {{OPD_INPUT, 2, {4, 7}}, {0, 1}, {1, 2}, {4, 3}};
    expect_gradcheck("slice step 2", build_sl, &a, opts_for(2, &a.x, 1));
    sl_arg b = {{OPD_INPUT, 2, {4, 5}}, {3, 4}, {-1, -2}, {3, 3}};
    expect_gradcheck("slice negative steps", build_sl, &b, opts_for(2, &b.x, 1));
    sl_arg c = {{OPD_INPUT, 3, {2, 6, 3}}, {0, 1, 0}, {1, 1, 1}, {2, 4, 3}};
    expect_gradcheck("slice middle axis", build_sl, &c, opts_for(2, &c.x, 1));
    sl_arg d = {{OPD_PARAM, 3, {2, 6, 3}}, {1, 5, 0}, {1, -3, 2}, {1, 2, 2}};
    expect_gradcheck("slice batchless", build_sl, &d, opts_for(2, &d.x, 1));
}

static void test_slice_forward(void **state)
{
    (void)state;
    /* torch.arange(20.).view(4, 5)[1::2].flip(1)[:, ::2]: rows 1, 3 and columns 4, 2, 0 */
    sl_arg a = {{OPD_INPUT, 2, {4, 5}}, {1, 4}, {2, -2}, {2, 3}};
    fixture f = fx_new(2, (int[]){4, 5}, 1, build_sl, &a);
    float x[30];
    for (int i = 0; i < 20; i++) x[i] = (float)i;
    fx_set(&f, f.g->input, x);
    const float want_a[6] = {9, 7, 5, 19, 17, 15};
    fx_expect(&f, want_a, 6);
    fx_free(&f);

    /* torch.arange(30.).view(2, 5, 3)[:, 1:4] */
    sl_arg b = {{OPD_INPUT, 3, {2, 5, 3}}, {0, 1, 0}, {1, 1, 1}, {2, 3, 3}};
    f = fx_new(3, (int[]){2, 5, 3}, 1, build_sl, &b);
    for (int i = 0; i < 30; i++) x[i] = (float)i;
    fx_set(&f, f.g->input, x);
    const float want_b[18] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23, 24, 25, 26};
    fx_expect(&f, want_b, 18);
    fx_free(&f);
}

/* ---- concat along an axis ---- */

typedef struct { int n, axis; opd x[TR_MAX_IN]; } cat_arg;

static int build_cat(tr_graph *g, int x, void *arg)
{
    cat_arg *c = arg;
    int ids[TR_MAX_IN];
    for (int i = 0; i < c->n; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        ids[i] = make_opd(g, x, &c->x[i], name);
    }
    return tr_concat_axis(g, "cat", ids, c->n, c->axis);
}

static void test_concat_axis_gradcheck(void **state)
{
    (void)state;
    cat_arg a0 = {3, 0, {{OPD_INPUT, 3, {2, 3, 2}}, {OPD_LEAF, 3, {1, 3, 2}}, {OPD_LEAF, 3, {3, 3, 2}}}};
    expect_gradcheck("concat axis 0", build_cat, &a0, opts_for(2, a0.x, 3));
    cat_arg a1 = {3, 1, {{OPD_LEAF, 3, {2, 1, 3}}, {OPD_INPUT, 3, {2, 2, 3}}, {OPD_LEAF, 3, {2, 3, 3}}}};
    expect_gradcheck("concat axis 1", build_cat, &a1, opts_for(2, a1.x, 3));
    cat_arg a2 = {3, 2, {{OPD_INPUT, 3, {2, 3, 2}}, {OPD_LEAF, 3, {2, 3, 1}}, {OPD_LEAF, 3, {2, 3, 4}}}};
    expect_gradcheck("concat axis 2", build_cat, &a2, opts_for(2, a2.x, 3));
    /* a class token (batchless) in front of batched patch tokens: its gradient sums samples */
    cat_arg tok = {2, 0, {{OPD_PARAM, 2, {1, 4}}, {OPD_INPUT, 2, {3, 4}}}};
    expect_gradcheck("concat batchless + batched", build_cat, &tok, opts_for(3, tok.x, 2));
    cat_arg bl = {2, 1, {{OPD_PARAM, 2, {2, 2}}, {OPD_PARAM, 2, {2, 3}}}};
    expect_gradcheck("concat all batchless", build_cat, &bl, opts_for(2, bl.x, 2));
}

static void test_concat_axis_forward(void **state)
{
    (void)state;
    /* torch.cat([torch.arange(4.).view(2, 1, 2), 10 + torch.arange(8.).view(2, 2, 2)], 1) */
    cat_arg c = {2, 1, {{OPD_INPUT, 3, {2, 1, 2}}, {OPD_LEAF, 3, {2, 2, 2}}}};
    fixture f = fx_new(3, (int[]){2, 1, 2}, 1, build_cat, &c);
    const float x0[4] = {0, 1, 2, 3}, x1[8] = {10, 11, 12, 13, 14, 15, 16, 17};
    fx_set(&f, f.g->input, x0);
    fx_set(&f, f.g->input + 1, x1);
    const float want[12] = {0, 1, 10, 11, 12, 13, 2, 3, 14, 15, 16, 17};
    fx_expect(&f, want, 12);
    fx_free(&f);

    /* torch.cat([tok.expand(2, 1, 2), x], 1) with tok = [[-1, -2]], x = torch.arange(8.).view(2, 2, 2) */
    cat_arg t = {2, 0, {{OPD_PARAM, 2, {1, 2}}, {OPD_INPUT, 2, {2, 2}}}};
    f = fx_new(2, (int[]){2, 2}, 2, build_cat, &t);
    const float tok[2] = {-1, -2}, x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    f.be->upload(f.be, f.g->params, tok, sizeof tok);
    fx_set(&f, f.g->input, x);
    const float want_t[12] = {-1, -2, 0, 1, 2, 3, -1, -2, 4, 5, 6, 7};
    fx_expect(&f, want_t, 12);
    fx_free(&f);
}

/* ---- pad ---- */

typedef struct { opd x; int begin[TR_MAX_RANK], end[TR_MAX_RANK]; float value; } pad_arg;

static int build_pad(tr_graph *g, int x, void *arg)
{
    pad_arg *p = arg;
    return tr_pad(g, "pad", make_opd(g, x, &p->x, "x"), p->begin, p->end, p->value);
}

static void test_pad_gradcheck(void **state)
{
    (void)state;
    pad_arg a = {{OPD_INPUT, 3, {2, 3, 4}}, {0, 1, 2}, {0, 2, 0}, 0.5f};
    expect_gradcheck("pad asymmetric on two axes", build_pad, &a, opts_for(2, &a.x, 1));
    pad_arg b = {{OPD_PARAM, 2, {2, 3}}, {1, 0}, {2, 1}, 0.f};
    expect_gradcheck("pad batchless", build_pad, &b, opts_for(2, &b.x, 1));
}

static void test_pad_forward(void **state)
{
    (void)state;
    /* torch.nn.functional.pad(torch.arange(6.).view(2, 3), (0, 2, 1, 0), value=-1): one row
     * above, two columns after */
    pad_arg a = {{OPD_INPUT, 2, {2, 3}}, {1, 0}, {0, 2}, -1.f};
    fixture f = fx_new(2, (int[]){2, 3}, 2, build_pad, &a);
    const float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    fx_set(&f, f.g->input, x);
    const float want[30] = {-1, -1, -1, -1, -1, 0, 1, 2, -1, -1, 3, 4, 5, -1, -1,
                            -1, -1, -1, -1, -1, 6, 7, 8, -1, -1, 9, 10, 11, -1, -1};
    fx_expect(&f, want, 30);
    fx_free(&f);
}

/* ---- several consumers: every backward adds into its input's gradient ---- */

/* x (4, 6): s = x[:, :3] · transpose(x[:, 3:][:, ::-1]); out = concat(pad(s), s, x) along 1:
 * x and s each feed several nodes, so a backward that overwrote instead of adding would lose
 * the contributions of the nodes after it */
static int build_composite(tr_graph *g, int x, void *arg)
{
    (void)arg;
    int a = tr_slice(g, "q", x, (int[]){0, 0}, (int[]){1, 1}, (int[]){4, 3});
    int b = tr_slice(g, "k", x, (int[]){0, 5}, (int[]){1, -1}, (int[]){4, 3});
    int bt = tr_transpose(g, "kt", b, (int[]){1, 0});
    int s = tr_matmul(g, "scores", a, bt);
    int p = tr_pad(g, "pad", s, (int[]){0, 1}, (int[]){0, 0}, 0.f);
    return tr_concat_axis(g, "cat", (int[]){p, s, x}, 3, 1);
}

static void test_composite_gradcheck(void **state)
{
    (void)state;
    expect_gradcheck("slice/transpose/matmul/pad/concat", build_composite, NULL,
                     (gc_opts){.n = 2, .rank = 2, .dims = {4, 6}});
}

/* ---- refusals: the first error names the node and what is wrong ---- */

static void expect_refusal(int rank, const int *dims, gc_build_fn build, void *arg, const char *needle)
{
    tr_graph *g = tr_graph_new_nd(rank, dims);
    assert_non_null(g);
    int out = build(g, g->input, arg);
    assert_int_equal(out, -1);
    assert_true(g->failed);
    if (!strstr(g->err.msg, needle)) fprintf(stderr, "message '%s' lacks '%s'\n", g->err.msg, needle);
    assert_non_null(strstr(g->err.msg, needle));
    tr_graph_free(g);
}

static void test_refusals(void **state)
{
    (void)state;
    mm_arg k = {{OPD_INPUT, 2, {2, 3}}, {OPD_PARAM, 2, {4, 5}}};
    expect_refusal(2, (int[]){2, 3}, build_mm, &k, "mm: matmul of (2, 3) and (4, 5): inner dimensions 3 and 4");
    mm_arg bd = {{OPD_INPUT, 3, {2, 3, 4}}, {OPD_LEAF, 3, {3, 4, 5}}};
    expect_refusal(3, (int[]){2, 3, 4}, build_mm, &bd, "batch dimensions 2 and 3 do not broadcast");
    mm_arg r1 = {{OPD_INPUT, 1, {4}}, {OPD_PARAM, 2, {4, 5}}};
    expect_refusal(1, (int[]){4}, build_mm, &r1, "rank >= 2");
    tp_arg tp = {{OPD_INPUT, 3, {2, 3, 4}}, {0, 2, 0}};
    expect_refusal(3, (int[]){2, 3, 4}, build_tp, &tp, "tp: transpose perm[2] = 0 is not a permutation");
    sl_arg s0 = {{OPD_INPUT, 2, {4, 5}}, {0, 0}, {1, 0}, {4, 5}};
    expect_refusal(2, (int[]){4, 5}, build_sl, &s0, "sl: slice step of axis 1 is 0");
    sl_arg so = {{OPD_INPUT, 2, {4, 5}}, {0, 1}, {1, 2}, {4, 3}};
    expect_refusal(2, (int[]){4, 5}, build_sl, &so, "axis 1 (size 5) from 1 by 2 for 3 elements leaves the axis");
    sl_arg sn = {{OPD_INPUT, 2, {4, 5}}, {0, 1}, {1, -1}, {4, 3}};
    expect_refusal(2, (int[]){4, 5}, build_sl, &sn, "leaves the axis");
    cat_arg cd = {2, 1, {{OPD_INPUT, 3, {2, 3, 2}}, {OPD_LEAF, 3, {2, 3, 3}}}};
    expect_refusal(3, (int[]){2, 3, 2}, build_cat, &cd, "cat: concat along axis 1: input 1 (2, 3, 3) and input 0 (2, 3, 2) differ on axis 2");
    cat_arg ca = {2, 3, {{OPD_INPUT, 3, {2, 3, 2}}, {OPD_LEAF, 3, {2, 3, 2}}}};
    expect_refusal(3, (int[]){2, 3, 2}, build_cat, &ca, "concat axis 3 is outside");
    pad_arg pn = {{OPD_INPUT, 2, {2, 3}}, {0, -1}, {0, 0}, 0.f};
    expect_refusal(2, (int[]){2, 3}, build_pad, &pn, "pad: pad of axis 1 is -1 before");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_gradcheck),
        cmocka_unit_test(test_matmul_forward_weight),
        cmocka_unit_test(test_matmul_forward_broadcast),
        cmocka_unit_test(test_transpose_gradcheck),
        cmocka_unit_test(test_transpose_forward),
        cmocka_unit_test(test_slice_gradcheck),
        cmocka_unit_test(test_slice_forward),
        cmocka_unit_test(test_concat_axis_gradcheck),
        cmocka_unit_test(test_concat_axis_forward),
        cmocka_unit_test(test_pad_gradcheck),
        cmocka_unit_test(test_pad_forward),
        cmocka_unit_test(test_composite_gradcheck),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
