/* CPU kernels of the elementwise general-shape ops: binary (numpy broadcasting), unary, expand,
 * mean/sum reduction and softmax. Broadcast operands are walked through tr_nd_iter strides; a
 * batchless input is read with sample stride 0 and its gradient summed over the samples; an
 * op whose output is batchless runs once. Backward adds into gradients. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "trainer/backend/cpu/cpu_ops.h"
#include "trainer/backend/nd_iter.h"
#include "trainer/layers/nd_math.h"

static inline tr_tensor *in_t(tr_graph *g, const tr_node *nd, int k) { return &g->tensors[nd->in[k]]; }
static inline tr_tensor *out_t(tr_graph *g, const tr_node *nd) { return &g->tensors[nd->out]; }

/* ---- walking a broadcast space ---- */

/* A run: len elements along the innermost dimension, operand k at base[k] + i * st[k]. */
typedef void (*run_fn)(void *arg, int64_t len, const int64_t *off, const int64_t *st);

#define RUN_CHUNK 4096       /* elements of one run, so a single long dimension still splits */
#define PAR_MIN 16384        /* below this many elements one thread does it all */

/* Visits every element of the space once in runs along its innermost dimension. The work is
 * split over operand k's elements (and chunks of the innermost dimension when k is not
 * broadcast along it), k's broadcast dimensions walked inside one work item: an element of
 * operand k is only ever touched by one thread, in a fixed order. k = 0 (the big tensor) is a
 * plain parallel map. */
static void nd_runs(const tr_nd_iter *it, int k, run_fn fn, void *arg)
{
    const int R = it->rank, nops = it->nops;
    int kept[TR_ND_DIMS], red[TR_ND_DIMS], nk = 0, nr = 0;
    for (int i = 0; i < R - 1; i++) {
        if (it->st[k][i]) kept[nk++] = i;
        else red[nr++] = i;
    }
    const int64_t inner = it->dim[R - 1];
    const int inner_kept = it->st[k][R - 1] != 0;
    int64_t outer = 1, nred = 1;
    for (int j = 0; j < nk; j++) outer *= it->dim[kept[j]];
    /* runs of RUN_CHUNK, shorter (down to 64) when there would be fewer than four work items
     * per thread: a bias gradient is one row of targets over the whole batch */
    int64_t chunk = RUN_CHUNK;
    if (inner_kept) {
        int64_t want = 4 * (int64_t)omp_get_max_threads(), per_row = (want + outer - 1) / outer;
        int64_t c = (inner + per_row - 1) / per_row;
        chunk = c < 64 ? 64 : (c > RUN_CHUNK ? RUN_CHUNK : c);
    }
    const int64_t chunks = inner_kept ? (inner + chunk - 1) / chunk : 1;
    int64_t items = chunks * outer;
    for (int j = 0; j < nr; j++) nred *= it->dim[red[j]];
    int64_t st_in[TR_ND_OPS];
    for (int op = 0; op < nops; op++) st_in[op] = it->st[op][R - 1];

    #pragma omp parallel for schedule(static) if (items > 1 && items * nred * inner >= PAR_MIN)
    for (int64_t w = 0; w < items; w++) {
        int64_t off[TR_ND_OPS] = {0, 0, 0};
        int64_t rest = w / chunks, start = (w % chunks) * chunk;
        for (int j = nk - 1; j >= 0; j--) {
            int d = kept[j];
            int64_t c = rest % it->dim[d];
            rest /= it->dim[d];
            for (int op = 0; op < nops; op++) off[op] += c * it->st[op][d];
        }
        for (int op = 0; op < nops; op++) off[op] += start * st_in[op];
        int64_t len = inner_kept ? (inner - start < chunk ? inner - start : chunk) : inner;
        int64_t cr[TR_ND_DIMS] = {0};
        for (int64_t m = 0; m < nred; m++) {
            fn(arg, len, off, st_in);
            for (int j = nr - 1; j >= 0; j--) {       /* odometer over the broadcast dims */
                int d = red[j];
                for (int op = 0; op < nops; op++) off[op] += it->st[op][d];
                if (++cr[j] < it->dim[d]) break;
                for (int op = 0; op < nops; op++) off[op] -= it->dim[d] * it->st[op][d];
                cr[j] = 0;
            }
        }
    }
}

/* Same per-sample shape and the same batchedness as the output: no broadcasting at all. */
static int same_shape(const tr_tensor *x, const tr_tensor *y)
{
    if (x->batchless != y->batchless || tr_tensor_numel(x) != tr_tensor_numel(y)) return 0;
    /* equal counts with a broadcast would need a dimension of 1 against a larger one */
    int r = x->rank > y->rank ? x->rank : y->rank;
    for (int i = 0; i < r; i++) {
        int ix = i - (r - x->rank), iy = i - (r - y->rank);
        if ((ix >= 0 ? x->dims[ix] : 1) != (iy >= 0 ? y->dims[iy] : 1)) return 0;
    }
    return 1;
}

/* ---- binary ---- */

typedef struct {
    tr_binary_kind kind;
    float *y, *dy, *grad;           /* grad: the operand's being accumulated */
    const float *a, *b;
    int k;                          /* 1: grad of a, 2: of b */
} bin_ctx;

/* one loop per kind, so the switch is outside the loop */
#define BIN_KINDS(LOOP)                          \
    switch (kind) {                              \
    case TR_BIN_ADD: LOOP(TR_BIN_ADD); break;    \
    case TR_BIN_SUB: LOOP(TR_BIN_SUB); break;    \
    case TR_BIN_MUL: LOOP(TR_BIN_MUL); break;    \
    case TR_BIN_DIV: LOOP(TR_BIN_DIV); break;    \
    case TR_BIN_POW: LOOP(TR_BIN_POW); break;    \
    default: break;                              \
    }

static void bin_fwd_run(void *arg, int64_t len, const int64_t *off, const int64_t *st)
{
    const bin_ctx *c = arg;
    float *y = c->y + off[0];
    const float *a = c->a + off[1], *b = c->b + off[2];
    const int64_t sa = st[1], sb = st[2];
    const tr_binary_kind kind = c->kind;
#define LOOP(K) for (int64_t i = 0; i < len; i++) y[i] = tr_binary_forward(K, a[i * sa], b[i * sb])
    BIN_KINDS(LOOP)
#undef LOOP
}

static void bin_grad_run(void *arg, int64_t len, const int64_t *off, const int64_t *st)
{
    const bin_ctx *c = arg;
    const float *y = c->y + off[0], *dy = c->dy + off[0], *a = c->a + off[1], *b = c->b + off[2];
    const int64_t s0 = st[0], sa = st[1], sb = st[2], sg = st[c->k];
    float *gr = c->grad + off[c->k];
    const tr_binary_kind kind = c->kind;
    if (sg == 0) {       /* the whole run lands on one element */
        float s = 0.f;
        if (c->k == 1) {
#define LOOP(K) for (int64_t i = 0; i < len; i++) s += tr_binary_grad_a(K, a[i * sa], b[i * sb], y[i * s0], dy[i * s0])
            BIN_KINDS(LOOP)
#undef LOOP
        } else {
#define LOOP(K) for (int64_t i = 0; i < len; i++) s += tr_binary_grad_b(K, a[i * sa], b[i * sb], y[i * s0], dy[i * s0])
            BIN_KINDS(LOOP)
#undef LOOP
        }
        *gr += s;
    } else if (c->k == 1) {
#define LOOP(K) for (int64_t i = 0; i < len; i++) gr[i * sg] += tr_binary_grad_a(K, a[i * sa], b[i * sb], y[i * s0], dy[i * s0])
        BIN_KINDS(LOOP)
#undef LOOP
    } else {
#define LOOP(K) for (int64_t i = 0; i < len; i++) gr[i * sg] += tr_binary_grad_b(K, a[i * sa], b[i * sb], y[i * s0], dy[i * s0])
        BIN_KINDS(LOOP)
#undef LOOP
    }
}

static void binary_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *a = in_t(g, nd, 0), *b = in_t(g, nd, 1);
    tr_tensor *y = out_t(g, nd);
    if (y->batchless) n = 1;
    const tr_binary_kind kind = nd->attr.binary.kind;
    if (same_shape(a, y) && same_shape(b, y)) {
        const int64_t total = tr_tensor_elems(y, n);
        float *yd = y->data;
        const float *ad = a->data, *bd = b->data;
#define LOOP(K)                                                               \
    _Pragma("omp parallel for schedule(static) if (total >= PAR_MIN)")       \
    for (int64_t i = 0; i < total; i++) yd[i] = tr_binary_forward(K, ad[i], bd[i])
        BIN_KINDS(LOOP)
#undef LOOP
        return;
    }
    tr_nd_iter it;
    const tr_tensor *ops[3] = {y, a, b};
    tr_nd_iter_init(&it, n, ops, 3);
    bin_ctx c = {kind, y->data, y->grad, NULL, a->data, b->data, 0};
    nd_runs(&it, 0, bin_fwd_run, &c);
}

static void binary_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *a = in_t(g, nd, 0), *b = in_t(g, nd, 1);
    const tr_tensor *y = out_t(g, nd);
    if (y->batchless) n = 1;
    const tr_binary_kind kind = nd->attr.binary.kind;
    if (same_shape(a, y) && same_shape(b, y)) {
        const int64_t total = tr_tensor_elems(y, n);
        const float *ad = a->data, *bd = b->data, *yd = y->data, *dy = y->grad;
        /* per kind, so add and sub read only dy */
        if (a->grad) {
            float *ga = a->grad;
#define LOOP(K)                                                               \
    _Pragma("omp parallel for schedule(static) if (total >= PAR_MIN)")       \
    for (int64_t i = 0; i < total; i++) ga[i] += tr_binary_grad_a(K, ad[i], bd[i], yd[i], dy[i])
            BIN_KINDS(LOOP)
#undef LOOP
        }
        if (b->grad) {
            float *gb = b->grad;
#define LOOP(K)                                                               \
    _Pragma("omp parallel for schedule(static) if (total >= PAR_MIN)")       \
    for (int64_t i = 0; i < total; i++) gb[i] += tr_binary_grad_b(K, ad[i], bd[i], yd[i], dy[i])
            BIN_KINDS(LOOP)
#undef LOOP
        }
        return;
    }
    tr_nd_iter it;
    const tr_tensor *ops[3] = {y, a, b};
    tr_nd_iter_init(&it, n, ops, 3);
    bin_ctx c = {kind, y->data, y->grad, NULL, a->data, b->data, 0};
    for (int k = 1; k <= 2; k++) {
        c.grad = (k == 1 ? a : b)->grad;
        if (!c.grad) continue;
        c.k = k;
        nd_runs(&it, k, bin_grad_run, &c);
    }
}

/* ---- unary ---- */

static void unary_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    if (y->batchless) n = 1;
    const int64_t total = tr_tensor_elems(y, n);
    const tr_unary_attr at = nd->attr.unary;
    const float *xd = x->data;
    float *yd = y->data;
    #pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (int64_t i = 0; i < total; i++) yd[i] = tr_unary_forward(at.kind, xd[i], at.a, at.b);
}

static void unary_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    if (y->batchless) n = 1;
    const int64_t total = tr_tensor_elems(y, n);
    const tr_unary_attr at = nd->attr.unary;
    const float *xd = x->data, *yd = y->data, *dy = y->grad;
    float *dx = x->grad;
    #pragma omp parallel for schedule(static) if (total >= PAR_MIN)
    for (int64_t i = 0; i < total; i++) dx[i] += tr_unary_backward(at.kind, xd[i], yd[i], dy[i], at.a, at.b);
}

/* ---- expand and reduce: a copy along broadcast dims and the sum that undoes it ---- */

typedef struct {
    float *dst;                     /* operand `k` of the walk: written (map) or summed into */
    const float *src;               /* the big tensor (operand 0) or the small one (map) */
    float scale;
} sum_ctx;

/* dst (operand 1, small) += Σ src (operand 0, big) */
static void sum_run(void *arg, int64_t len, const int64_t *off, const int64_t *st)
{
    const sum_ctx *c = arg;
    const float *s = c->src + off[0];
    float *d = c->dst + off[1];
    const int64_t s0 = st[0], sd = st[1];
    if (sd == 0) {
        float acc = 0.f;
        for (int64_t i = 0; i < len; i++) acc += s[i * s0];
        *d += acc;
    } else {
        for (int64_t i = 0; i < len; i++) d[i * sd] += s[i * s0];
    }
}

/* dst (operand 0, big) = or += scale * src (operand 1, small, broadcast) */
static void bcast_set_run(void *arg, int64_t len, const int64_t *off, const int64_t *st)
{
    const sum_ctx *c = arg;
    const float *s = c->src + off[1];
    float *d = c->dst + off[0];
    const int64_t ss = st[1];
    for (int64_t i = 0; i < len; i++) d[i] = s[i * ss];
}

static void bcast_add_run(void *arg, int64_t len, const int64_t *off, const int64_t *st)
{
    const sum_ctx *c = arg;
    const float *s = c->src + off[1];
    float *d = c->dst + off[0];
    const int64_t ss = st[1];
    const float k = c->scale;
    for (int64_t i = 0; i < len; i++) d[i] += k * s[i * ss];
}

static void expand_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    tr_nd_iter it;
    const tr_tensor *ops[2] = {y, x};
    tr_nd_iter_init(&it, n, ops, 2);
    sum_ctx c = {y->data, x->data, 1.f};
    nd_runs(&it, 0, bcast_set_run, &c);
}

static void expand_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    tr_nd_iter it;
    const tr_tensor *ops[2] = {y, x};
    tr_nd_iter_init(&it, n, ops, 2);
    sum_ctx c = {x->grad, y->grad, 1.f};
    nd_runs(&it, 1, sum_run, &c);
}

/* 1 / (elements summed into one output) for a mean, 1 for a sum */
static float reduce_scale(const tr_tensor *x, const tr_node *nd)
{
    if (nd->attr.reduce.kind != TR_RED_MEAN) return 1.f;
    int64_t m = 1;
    for (int i = 0; i < x->rank; i++)
        if ((nd->attr.reduce.axes >> i) & 1) m *= x->dims[i];
    return 1.f / (float)m;
}

static void reduce_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    if (y->batchless) n = 1;
    const int64_t ny = tr_tensor_elems(y, n);
    memset(y->data, 0, (size_t)ny * sizeof(float));
    tr_nd_iter it;
    const tr_tensor *ops[2] = {x, y};
    tr_nd_iter_init(&it, n, ops, 2);
    sum_ctx c = {y->data, x->data, 1.f};
    nd_runs(&it, 1, sum_run, &c);
    const float k = reduce_scale(x, nd);
    if (k != 1.f) {
        float *yd = y->data;
        #pragma omp parallel for schedule(static) if (ny >= PAR_MIN)
        for (int64_t i = 0; i < ny; i++) yd[i] *= k;
    }
}

static void reduce_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    if (y->batchless) n = 1;
    tr_nd_iter it;
    const tr_tensor *ops[2] = {x, y};
    tr_nd_iter_init(&it, n, ops, 2);
    sum_ctx c = {x->grad, y->grad, reduce_scale(x, nd)};
    nd_runs(&it, 0, bcast_add_run, &c);
}

/* ---- softmax along one axis: rows of `len` elements `stride` apart ---- */

/* (outer, len, inner) of the axis: outer counts the samples too */
static void softmax_geometry(const tr_tensor *x, int axis, int n, int64_t *outer, int *len, int64_t *inner)
{
    int64_t o = x->batchless ? 1 : n, in = 1;
    for (int i = 0; i < axis; i++) o *= x->dims[i];
    for (int i = axis + 1; i < x->rank; i++) in *= x->dims[i];
    *outer = o;
    *len = x->dims[axis];
    *inner = in;
}

static void softmax_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    int64_t outer, inner;
    int len;
    softmax_geometry(x, nd->attr.axis.axis, n, &outer, &len, &inner);
    const int64_t rows = outer * inner;
    const float *xd = x->data;
    float *yd = y->data;
    #pragma omp parallel for schedule(static) if (rows * len >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t base = (r / inner) * len * inner + r % inner;
        const float *xr = xd + base;
        float *yr = yd + base;
        float m = -INFINITY;
        for (int j = 0; j < len; j++) m = fmaxf(m, xr[j * inner]);
        float s = 0.f;
        for (int j = 0; j < len; j++) {
            float e = expf(xr[j * inner] - m);
            yr[j * inner] = e;
            s += e;
        }
        const float is = 1.f / s;
        for (int j = 0; j < len; j++) yr[j * inner] *= is;
    }
}

/* dx = y (dy − Σ dy·y) */
static void softmax_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    int64_t outer, inner;
    int len;
    softmax_geometry(x, nd->attr.axis.axis, n, &outer, &len, &inner);
    const int64_t rows = outer * inner;
    const float *yd = y->data, *dyd = y->grad;
    float *dxd = x->grad;
    #pragma omp parallel for schedule(static) if (rows * len >= PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t base = (r / inner) * len * inner + r % inner;
        const float *yr = yd + base, *dy = dyd + base;
        float *dx = dxd + base;
        float dot = 0.f;
        for (int j = 0; j < len; j++) dot += dy[j * inner] * yr[j * inner];
        for (int j = 0; j < len; j++) dx[j * inner] += yr[j * inner] * (dy[j * inner] - dot);
    }
}

void tr_cpu_register_nd_elem(tr_backend *be)
{
    be->forward[TR_OP_BINARY] = binary_forward;
    be->backward[TR_OP_BINARY] = binary_backward;
    be->forward[TR_OP_UNARY] = unary_forward;
    be->backward[TR_OP_UNARY] = unary_backward;
    be->forward[TR_OP_EXPAND] = expand_forward;
    be->backward[TR_OP_EXPAND] = expand_backward;
    be->forward[TR_OP_REDUCE] = reduce_forward;
    be->backward[TR_OP_REDUCE] = reduce_backward;
    be->forward[TR_OP_SOFTMAX] = softmax_forward;
    be->backward[TR_OP_SOFTMAX] = softmax_backward;
}
