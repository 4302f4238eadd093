/* The fold and lower passes (docs/onnx.md): walk the nodes once in file order; a node whose
 * inputs are all constant is evaluated here on the host (shape subgraphs, arithmetic on
 * constants), every other node becomes engine nodes: the fused layers of layers.h where the
 * pattern is theirs (Conv, BatchNormalization, activations, pools, Gemm, LayerNormalization,
 * residual Add, SE Mul, channel Concat), the general-shape ops of layers_nd.h otherwise.
 *
 * The batch. In MODEL mode the model input's first dimension is the batch. The graph is lowered
 * at a probe batch size and every value computed from the input must keep that batch as its
 * first dimension (a Reshape that merges it, a Transpose that moves it, a Concat along it are
 * refused); the engine then runs any batch size from the same graph. To tell the batch from a
 * dimension that happens to equal it, the lowering runs twice, at two probe sizes, and the two
 * graphs must agree. */
#include "trainer/onnx/lower.h"
#include "trainer/layers.h"
#include "trainer/layers_nd.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_A 3
#define PROBE_B 5
/* constants larger than this are not evaluated on the host (a weight-sized Transpose would be;
 * it runs as an engine op on a constant tensor instead) */
#define FOLD_MAX (1 << 24)

/* LV_LAZY: a Transpose that moved the batch axis, not built: only an op that takes one slice
 * of the new first axis (qkv[0] after permute(2, 0, 3, 1, 4), as timm-style attention writes it)
 * may read it, and that op slices the source and transposes the rest, batch first again. */
typedef enum { LV_NONE, LV_CONST, LV_INIT, LV_RT, LV_LAZY } lv_kind;

/* What the lowering knows of one ONNX value. */
typedef struct {
    lv_kind kind;
    int rank;
    int64_t d[ONNX_MAX_DIMS];
    int64_t numel;
    /* CONST and INIT: the data (owned here), float or integer */
    int is_int;
    float *f;
    int64_t *i;
    /* RT: the tensor; INIT: its parameter tensor once an op read it as one (-1 before) */
    int tid;
    int batched;     /* RT: d[0] is the batch */
    int vsrc;        /* INIT: the value whose parameter this is (the initializer itself, an Identity
                        copy of it; a Transpose of it keeps its source); -1 otherwise */
    /* LAZY: tid is the (batched) source, of rank src_rank and dims src_d; output axis k is
     * source axis perm[k] */
    int perm[ONNX_MAX_DIMS];
    int src_rank;
    int64_t src_d[ONNX_MAX_DIMS];
} lv;

typedef struct {
    const onnx_model *m;
    const onnx_lower_opts *o;
    int B;                   /* the batch as it appears in shapes; 0: no batch axis */
    tr_graph *g;
    lv *v;
    char *trainable;
    const onnx_node *node;
    deba_err *e;
    deba_status st;
    int n_fused;
    int uniq;                /* for names of engine nodes a node expands into */
    int bn_training;         /* VERIFY: training_mode of the BatchNormalization nodes, -1 none */
    char *taken;             /* per value: its parameter is in the graph already (a layer's or a
                                parameter tensor): a second use would count it twice */
} L;

/* ---- messages ---- */

static int fail(L *l, deba_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(L *l, deba_status st, const char *fmt, ...)
{
    if (l->st) return -1;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (l->node) deba_err_set(l->e, st, "%s: node '%.80s' (%.40s): %s", l->m->path, l->node->name, l->node->op, msg);
    else deba_err_set(l->e, st, "%s: %s", l->m->path, msg);
    l->st = st;
    return -1;
}

#define UNSUP(l, ...) fail((l), DEBA_E_UNSUPPORTED, __VA_ARGS__)
#define BAD(l, ...) fail((l), DEBA_E_INPUT, __VA_ARGS__)

/* An engine node's name: the ONNX node's, printable ASCII only (names reach terminals). */
static void node_name(const L *l, char *buf, size_t cap, const char *suffix)
{
    size_t k = 0;
    for (const char *s = l->node ? l->node->name : "input"; *s && k + 1 < cap; s++)
        buf[k++] = *s >= 0x20 && *s < 0x7f ? *s : '?';
    buf[k] = '\0';
    if (suffix && k + strlen(suffix) + 1 < cap) strcat(buf, suffix);
}

static void shape_str(char *buf, size_t cap, int rank, const int64_t *d)
{
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < rank && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
}

/* ---- attributes and inputs ---- */

static int64_t attr_i(const onnx_node *n, const char *name, int64_t dflt)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    return a && a->type == ONNX_ATTR_INT ? a->i : dflt;
}

static float attr_f(const onnx_node *n, const char *name, float dflt)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    return a && a->type == ONNX_ATTR_FLOAT ? a->f : dflt;
}

static const onnx_attr *attr_ints(const onnx_node *n, const char *name)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    return a && a->type == ONNX_ATTR_INTS ? a : NULL;
}

static const char *attr_s(const onnx_node *n, const char *name, const char *dflt)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    return a && a->type == ONNX_ATTR_STRING ? a->s : dflt;
}

/* Input j's value, or NULL when omitted. */
static lv *in_v(L *l, int j)
{
    const onnx_node *n = l->node;
    return j < n->n_in && n->in[j] >= 0 ? &l->v[n->in[j]] : NULL;
}

static lv *out_v(L *l, int j)
{
    const onnx_node *n = l->node;
    return j < n->n_out && n->out[j] >= 0 ? &l->v[n->out[j]] : NULL;
}

static int is_const(const lv *x) { return x && x->kind == LV_CONST; }

/* Element k of a constant as double / int64. */
static double cf(const lv *x, int64_t k) { return x->is_int ? (double)x->i[k] : (double)x->f[k]; }
static int64_t ci(const lv *x, int64_t k) { return x->is_int ? x->i[k] : (int64_t)x->f[k]; }

/* An integer list input (a shape, axes, pads): a constant of rank <= 1. */
static int int_list(L *l, const lv *x, const char *what, int64_t *out, int cap)
{
    if (!is_const(x)) return UNSUP(l, "%s is computed at run time (it must be constant once the batch is known)", what);
    if (x->rank > 1 || x->numel > cap) return UNSUP(l, "%s has %lld values (at most %d)", what, (long long)x->numel, cap);
    for (int64_t k = 0; k < x->numel; k++) out[k] = ci(x, k);
    return (int)x->numel;
}

static int norm_axis(L *l, int64_t axis, int rank)
{
    if (axis < -rank || axis >= rank) return BAD(l, "axis %lld is outside rank %d", (long long)axis, rank);
    return (int)(axis < 0 ? axis + rank : axis);
}

/* ---- values ---- */

static int64_t numel_of(int rank, const int64_t *d)
{
    int64_t n = 1;
    for (int k = 0; k < rank; k++) n *= d[k];
    return n;
}

static void lv_clear(lv *x)
{
    free(x->f);
    free(x->i);
    memset(x, 0, sizeof *x);
    x->tid = -1;
    x->vsrc = -1;
}

/* Makes x a constant of the given shape with zeroed storage. */
static int lv_new_const(L *l, lv *x, int rank, const int64_t *d, int is_int)
{
    lv_clear(x);
    int64_t n = numel_of(rank, d);
    if (n < 0 || n > FOLD_MAX) return UNSUP(l, "constant of %lld elements is too large to fold", (long long)n);
    x->kind = LV_CONST;
    x->rank = rank;
    for (int k = 0; k < rank && k < ONNX_MAX_DIMS; k++) x->d[k] = d[k];
    x->numel = n;
    x->is_int = is_int;
    if (is_int) x->i = calloc((size_t)(n ? n : 1), sizeof(int64_t));
    else x->f = calloc((size_t)(n ? n : 1), sizeof(float));
    if (!x->i && !x->f) return fail(l, DEBA_E_NOMEM, "out of memory");
    return 0;
}

static int lv_rt(L *l, lv *x, int tid, int rank, const int64_t *d, int batched)
{
    if (tid < 0) {
        if (!l->st) {
            deba_err_set(l->e, l->g->err.status ? l->g->err.status : DEBA_E_INPUT, "%s: node '%.80s' (%.40s): %s",
                         l->m->path, l->node ? l->node->name : "?", l->node ? l->node->op : "?", l->g->err.msg);
            l->st = l->e->status;
        }
        return -1;
    }
    lv_clear(x);
    x->kind = LV_RT;
    x->tid = tid;
    x->rank = rank;
    for (int k = 0; k < rank && k < ONNX_MAX_DIMS; k++) x->d[k] = d[k];
    x->numel = numel_of(rank, d);
    x->batched = batched;
    return 0;
}

/* The per-sample dims of a runtime value, as ints. */
static int ps_dims(L *l, const lv *x, int *dims)
{
    int r = x->rank - (x->batched ? 1 : 0);
    if (r > TR_MAX_RANK) return UNSUP(l, "a value of rank %d (the engine takes %d dimensions per sample)", x->rank, TR_MAX_RANK);
    for (int k = 0; k < r; k++) {
        int64_t v = x->d[k + (x->batched ? 1 : 0)];
        if (v <= 0) return UNSUP(l, "an empty tensor (dimension %d is %lld)", k, (long long)v);
        if (v > INT32_MAX) return UNSUP(l, "dimension %lld is too large", (long long)v);
        dims[k] = (int)v;
    }
    return r;
}

/* A tensor for input x as an engine op reads it: runtime values as they are; constants become
 * constant tensors and trainable initializers parameter tensors (once each). */
static int tensor_of(L *l, lv *x, int vidx)
{
    if (x->kind == LV_RT) return x->tid;
    if (x->kind != LV_CONST && x->kind != LV_INIT) return BAD(l, "input is missing");
    if (x->tid >= 0) return x->tid;
    int dims[TR_MAX_RANK];
    int r = ps_dims(l, x, dims);
    if (r < 0) return -1;
    float *tmp = NULL;
    const float *data = x->f;
    if (x->is_int) {
        tmp = malloc((size_t)(x->numel ? x->numel : 1) * sizeof(float));
        if (!tmp) return fail(l, DEBA_E_NOMEM, "out of memory");
        for (int64_t k = 0; k < x->numel; k++) tmp[k] = (float)x->i[k];
        data = tmp;
    }
    int id;
    if (x->kind == LV_INIT) {
        if (x->vsrc >= 0 && l->taken[x->vsrc]) {
            free(tmp);
            return UNSUP(l, "initializer '%.80s' is read in two layouts or by a layer and another op",
                         l->m->values[x->vsrc].name);
        }
        if (x->vsrc >= 0) l->taken[x->vsrc] = 1, vidx = x->vsrc;
        char name[112] = "";
        const char *vn = l->m->values[vidx].name;
        size_t k = 0;
        for (; vn[k] && k + 1 < sizeof name; k++) name[k] = vn[k] >= 0x20 && vn[k] < 0x7f ? vn[k] : '?';
        name[k] = '\0';
        tr_init init = {TR_INIT_DATA, 0.f};
        if (l->o->init == ONNX_INIT_SEEDED) {
            /* a tensor learned outside a layer (a class token, a position embedding, a layer
             * scale) has no PyTorch default: redraw it from a normal with the exported tensor's
             * spread, or keep its constant value */
            double s = 0, s2 = 0;
            for (int64_t j = 0; j < x->numel; j++) s += data[j], s2 += (double)data[j] * data[j];
            double mean = s / (double)x->numel, var = s2 / (double)x->numel - mean * mean;
            init = var > 1e-20 ? (tr_init){TR_INIT_NORMAL, (float)sqrt(var)} : (tr_init){TR_INIT_CONST, (float)mean};
        }
        id = tr_graph_add_param_tensor(l->g, name, r, dims, r ? dims[r - 1] : 1, r ? dims[0] : 1, init, data);
    } else {
        id = tr_graph_add_const_tensor(l->g, r, dims, data);
    }
    free(tmp);
    if (id < 0) return lv_rt(l, x, -1, 0, NULL, 0);
    x->tid = id;
    return id;
}

/* ---- constant evaluation ---- */

/* Strides of a (rank ri, dims id) operand read at the positions of a broadcast output (rank r,
 * dims od): 0 along broadcast dimensions. */
static void bstrides(int r, const int64_t *od, int ri, const int64_t *id, int64_t *st)
{
    int64_t s = 1;
    for (int k = r - 1; k >= 0; k--) {
        int j = k - (r - ri);
        if (j < 0) { st[k] = 0; continue; }
        st[k] = id[j] == 1 && od[k] != 1 ? 0 : s;
        s *= id[j];
    }
}

/* numpy broadcast of shapes; -1 when they do not. */
static int bshape(int ra, const int64_t *a, int rb, const int64_t *b, int64_t *o)
{
    int r = ra > rb ? ra : rb;
    for (int k = 0; k < r; k++) {
        int ia = k - (r - ra), ib = k - (r - rb);
        int64_t x = ia >= 0 ? a[ia] : 1, y = ib >= 0 ? b[ib] : 1;
        if (x != y && x != 1 && y != 1) return -1;
        o[k] = x == 1 ? y : x;
    }
    return r;
}

/* Offset into an operand with strides st for output linear index q (output dims od, rank r). */
static int64_t boff(int64_t q, int r, const int64_t *od, const int64_t *st)
{
    int64_t off = 0;
    for (int k = r - 1; k >= 0; k--) {
        off += (q % od[k]) * st[k];
        q /= od[k];
    }
    return off;
}

static double apply_bin(const char *op, double x, double y, int is_int, int *bad)
{
    if (!strcmp(op, "Add")) return x + y;
    if (!strcmp(op, "Sub")) return x - y;
    if (!strcmp(op, "Mul")) return x * y;
    if (!strcmp(op, "Div")) {
        if (is_int) {
            if (y == 0) { *bad = 1; return 0; }
            return (double)((int64_t)x / (int64_t)y);
        }
        return x / y;
    }
    if (!strcmp(op, "Pow")) return pow(x, y);
    if (!strcmp(op, "Equal")) return x == y;
    *bad = 1;
    return 0;
}

/* Add, Sub, Mul, Div, Pow, Equal on two constants. */
static int fold_binary(L *l, lv *o, const lv *a, const lv *b)
{
    int64_t od[ONNX_MAX_DIMS], sa[ONNX_MAX_DIMS], sb[ONNX_MAX_DIMS];
    int r = bshape(a->rank, a->d, b->rank, b->d, od);
    if (r < 0) return BAD(l, "operands do not broadcast");
    int is_int = a->is_int && b->is_int;
    int eq = !strcmp(l->node->op, "Equal");
    if (lv_new_const(l, o, r, od, is_int || eq)) return -1;
    bstrides(r, od, a->rank, a->d, sa);
    bstrides(r, od, b->rank, b->d, sb);
    int bad = 0;
    for (int64_t q = 0; q < o->numel; q++) {
        double v = apply_bin(l->node->op, cf(a, boff(q, r, od, sa)), cf(b, boff(q, r, od, sb)), is_int, &bad);
        if (o->is_int) o->i[q] = (int64_t)v;
        else o->f[q] = (float)v;
    }
    if (bad) return BAD(l, "integer division by zero");
    return 0;
}

/* Where(cond, x, y) on constants. */
static int fold_where(L *l, lv *o, const lv *c, const lv *x, const lv *y)
{
    int64_t t[ONNX_MAX_DIMS], od[ONNX_MAX_DIMS], sc[ONNX_MAX_DIMS], sx[ONNX_MAX_DIMS], sy[ONNX_MAX_DIMS];
    int r1 = bshape(c->rank, c->d, x->rank, x->d, t);
    int r = r1 < 0 ? -1 : bshape(r1, t, y->rank, y->d, od);
    if (r < 0) return BAD(l, "operands do not broadcast");
    int is_int = x->is_int && y->is_int;
    if (lv_new_const(l, o, r, od, is_int)) return -1;
    bstrides(r, od, c->rank, c->d, sc);
    bstrides(r, od, x->rank, x->d, sx);
    bstrides(r, od, y->rank, y->d, sy);
    for (int64_t q = 0; q < o->numel; q++) {
        double v = cf(c, boff(q, r, od, sc)) != 0 ? cf(x, boff(q, r, od, sx)) : cf(y, boff(q, r, od, sy));
        if (is_int) o->i[q] = (int64_t)v;
        else o->f[q] = (float)v;
    }
    return 0;
}

/* A copy of constant a with new dims (same element count): Reshape, Flatten, Unsqueeze, Squeeze. */
static int fold_reshape(L *l, lv *o, const lv *a, int rank, const int64_t *d)
{
    lv tmp = *a;   /* a may be o's own input: copy the data first */
    lv t2 = {0};
    t2.tid = -1;
    if (lv_new_const(l, &t2, rank, d, tmp.is_int)) return -1;
    if (t2.numel != tmp.numel) {
        lv_clear(&t2);
        return BAD(l, "reshape of %lld elements to %lld", (long long)tmp.numel, (long long)t2.numel);
    }
    if (tmp.is_int) memcpy(t2.i, tmp.i, (size_t)tmp.numel * sizeof(int64_t));
    else memcpy(t2.f, tmp.f, (size_t)tmp.numel * sizeof(float));
    lv_clear(o);
    *o = t2;
    return 0;
}

/* General gather of constant a by per-output-element source offsets (Transpose, Slice, Gather,
 * Expand, Concat pieces): src[q] for q < numel of o. */
static void copy_from(lv *o, const lv *a, const int64_t *src)
{
    for (int64_t q = 0; q < o->numel; q++) {
        if (o->is_int) o->i[q] = ci(a, src[q]);
        else o->f[q] = (float)cf(a, src[q]);
    }
}

/* ---- the engine side: shapes of runtime values ---- */

/* A view of runtime value x (tensor tx) with per-sample dims pd[pr]; returns its tensor id. */
static int view_nd(L *l, int tx, int pr, const int *pd, const char *suffix)
{
    char nm[96];
    node_name(l, nm, sizeof nm, suffix);
    const tr_tensor *t = tr_graph_tensor(l->g, tx);
    tr_node *nd = tr_graph_add_node_nd(l->g, TR_OP_VIEW, nm, &tx, 1, pr, pd, t ? t->batchless : 0);
    return nd ? nd->out : -1;
}

/* Output o of the current node := engine tensor id with full ONNX dims (batch first when
 * batched). */
static int set_out(L *l, lv *o, int tid, int batched)
{
    if (tid < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    const tr_tensor *t = tr_graph_tensor(l->g, tid);
    int64_t d[ONNX_MAX_DIMS];
    int r = 0;
    if (batched) d[r++] = l->B;
    for (int k = 0; k < t->rank; k++) d[r++] = t->dims[k];
    return lv_rt(l, o, tid, r, d, batched);
}

/* The per-sample view of x for an op that broadcasts it against a batched value of full rank
 * `full`: a constant or batchless value of that full rank must have 1 on the batch axis, which
 * is dropped. Returns the tensor id. */
static int operand(L *l, lv *x, int vidx, int batched_ctx, int full)
{
    int t = tensor_of(l, x, vidx);
    if (t < 0) return -1;
    if (!batched_ctx || x->batched || x->rank < full || x->rank == 0) return t;
    if (x->d[0] != 1) {
        char s[96];
        shape_str(s, sizeof s, x->rank, x->d);
        return UNSUP(l, "a constant of shape %s varies along the batch axis", s);
    }
    const tr_tensor *tt = tr_graph_tensor(l->g, t);
    return view_nd(l, t, tt->rank - 1, tt->dims + 1, ".unbatch");
}

/* ---- per-op lowering ---- */

/* Kernel window of a Conv or pool node with input spatial dims (H, W) (1-D: H = 1). */
static int window(L *l, const lv *x, int kh0, int kw0, tr_win *w, int *ceil_mode)
{
    const onnx_node *n = l->node;
    int sp = x->rank - 2;
    const onnx_attr *ks = attr_ints(n, "kernel_shape"), *st = attr_ints(n, "strides"),
                    *dl = attr_ints(n, "dilations"), *pd = attr_ints(n, "pads");
    int64_t k[2] = {kh0, kw0}, s[2] = {1, 1}, dd[2] = {1, 1}, p0[2] = {0, 0}, p1[2] = {0, 0};
    for (int a = 0; a < sp; a++) {
        if (ks && ks->n == sp) k[a] = ks->ints[a];
        if (st && st->n == sp) s[a] = st->ints[a];
        if (dl && dl->n == sp) dd[a] = dl->ints[a];
        if (pd && pd->n == 2 * sp) p0[a] = pd->ints[a], p1[a] = pd->ints[a + sp];
    }
    if (sp == 1) {   /* 1-D: the window runs along W of a (C, 1, L) view */
        k[1] = k[0], s[1] = s[0], dd[1] = dd[0], p0[1] = p0[0], p1[1] = p1[0];
        k[0] = 1, s[0] = 1, dd[0] = 1, p0[0] = p1[0] = 0;
    }
    const char *ap = attr_s(n, "auto_pad", "NOTSET");
    int64_t in[2] = {sp == 2 ? x->d[2] : 1, x->d[x->rank - 1]};
    if (!strcmp(ap, "VALID")) p0[0] = p0[1] = p1[0] = p1[1] = 0;
    else if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        for (int a = 0; a < 2; a++) {
            int64_t outn = (in[a] + s[a] - 1) / s[a];
            int64_t total = (outn - 1) * s[a] + dd[a] * (k[a] - 1) + 1 - in[a];
            if (total < 0) total = 0;
            p0[a] = !strcmp(ap, "SAME_UPPER") ? total / 2 : total - total / 2;
            p1[a] = total - p0[a];
        }
    }
    for (int a = 0; a < 2; a++)
        if (k[a] < 1 || s[a] < 1 || dd[a] < 1 || p0[a] < 0 || p1[a] < 0 || k[a] > 1 << 16 || p0[a] > 1 << 16 ||
            p1[a] > 1 << 16 || s[a] > 1 << 16 || dd[a] > 1 << 16)
            return UNSUP(l, "window (kernel %lld, stride %lld, dilation %lld, pads %lld/%lld) is not supported",
                         (long long)k[a], (long long)s[a], (long long)dd[a], (long long)p0[a], (long long)p1[a]);
    *w = (tr_win){(int)k[0], (int)k[1], (int)s[0], (int)s[1], (int)dd[0], (int)dd[1], (int)p0[0], (int)p0[1],
                  (int)p1[0], (int)p1[1]};
    if (ceil_mode) *ceil_mode = (int)attr_i(n, "ceil_mode", 0);
    return 0;
}

/* Spatial input of a window op as a (C, H, W) engine tensor: rank 4 as it is, rank 3 (N, C, L)
 * as (C, 1, L). */
static int spatial_in(L *l, lv *x)
{
    if (!x || x->kind != LV_RT || !x->batched) {
        if (x && x->kind == LV_RT && !x->batched && x->rank >= 1 && x->d[0] == 1 && l->B == 0) {
            /* no batch axis (a conformance graph with N = 1 on the leading axis): drop it */
        } else {
            return UNSUP(l, "input 0 must be the batch of activations (a runtime value with the batch first)");
        }
    }
    if (x->rank != 3 && x->rank != 4) return UNSUP(l, "input 0 has rank %d (supported: 3 or 4)", x->rank);
    int dims[3] = {(int)x->d[1], x->rank == 4 ? (int)x->d[2] : 1, (int)x->d[x->rank - 1]};
    if (x->batched && x->rank == 4) return x->tid;
    return view_nd(l, x->tid, 3, dims, ".nchw");
}

/* The window op's output back in the input's rank. */
static int spatial_out(L *l, lv *o, const lv *x, int tid)
{
    if (tid < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    if (x->batched && x->rank == 4) return set_out(l, o, tid, 1);
    const tr_tensor *t = tr_graph_tensor(l->g, tid);
    int r = 0, dims[4];
    if (!x->batched) dims[r++] = 1;
    dims[r++] = t->c;
    if (x->rank == 4) dims[r++] = t->h;
    dims[r++] = t->w;
    int v = view_nd(l, tid, r, dims, ".out");
    return set_out(l, o, v, x->batched);
}

static int batched_rt(const lv *x) { return x && x->kind == LV_RT && x->batched; }

/* Sets a parameter spec registered by a fused builder to the initializer's data (or leaves the
 * builder's PyTorch default under --init seeded) and names it after the initializer. */
static int take_param(L *l, int ps, const lv *x, int vidx, const float *data)
{
    tr_param_spec *p = &l->g->pspecs[ps];
    if (x->vsrc >= 0) vidx = x->vsrc;
    if (x->numel != p->count)
        return BAD(l, "initializer '%.80s' has %lld values, the layer needs %lld", l->m->values[vidx].name,
                   (long long)x->numel, (long long)p->count);
    size_t k = 0;
    const char *vn = l->m->values[vidx].name;
    for (; vn[k] && k + 1 < sizeof p->name; k++) p->name[k] = vn[k] >= 0x20 && vn[k] < 0x7f ? vn[k] : '?';
    p->name[k] = '\0';
    if (l->o->init == ONNX_INIT_SEEDED) return 0;
    p->data = malloc((size_t)p->count * sizeof(float));
    if (!p->data) return fail(l, DEBA_E_NOMEM, "out of memory");
    memcpy(p->data, data ? data : x->f, (size_t)p->count * sizeof(float));
    p->init = (tr_init){TR_INIT_DATA, 0.f};
    return 0;
}

/* A layer's weight or bias: a float initializer read by this node only. */
static lv *layer_param(L *l, int j, const char *what)
{
    lv *x = in_v(l, j);
    if (!x) return NULL;
    /* a conformance graph gives weights as inputs (constants here): inference only, so they
     * can be a layer's */
    int ok = x->kind == LV_INIT || (x->kind == LV_CONST && l->o->mode == ONNX_LOWER_VERIFY);
    if (!ok || x->is_int) {
        UNSUP(l, "the %s must be a float initializer (a learned tensor of the file)", what);
        return NULL;
    }
    if (x->tid >= 0 || (x->vsrc >= 0 && l->taken[x->vsrc])) {
        UNSUP(l, "the %s is shared with another op", what);
        return NULL;
    }
    x->tid = -2;   /* taken by a layer: no other op may read it as a tensor */
    if (x->vsrc >= 0) l->taken[x->vsrc] = 1;
    return x;
}

static int lower_conv(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    lv *w = layer_param(l, 1, "weight");
    if (!w) return -1;
    lv *b = NULL;
    if (in_v(l, 2) && !(b = layer_param(l, 2, "bias"))) return -1;
    if (!batched_rt(x) && !(x && x->kind == LV_RT)) return UNSUP(l, "input 0 must be a runtime activation");
    if (w->rank != x->rank) return BAD(l, "weight rank %d does not match input rank %d", w->rank, x->rank);
    int64_t groups = attr_i(l->node, "group", 1);
    tr_win win;
    if (window(l, x, (int)w->d[2], (int)w->d[w->rank - 1], &win, NULL)) return -1;
    int xin = spatial_in(l, x);
    if (xin < 0) return -1;
    if (groups < 1 || x->d[1] != w->d[1] * groups)
        return BAD(l, "%lld input channels do not match weight (%lld per group, %lld groups)", (long long)x->d[1],
                   (long long)w->d[1], (long long)groups);
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int ps0 = l->g->n_pspecs;
    int y = tr_conv2d_win(l->g, nm, xin, (int)w->d[0], &win, (int)groups, b != NULL, NULL, NULL);
    if (y < 0) return spatial_out(l, o, x, -1);
    if (take_param(l, ps0, w, l->node->in[1], NULL)) return -1;
    if (b && take_param(l, ps0 + 1, b, l->node->in[2], NULL)) return -1;
    l->n_fused++;
    return spatial_out(l, o, x, y);
}

static int lower_pool(L *l, int max)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (l->node->n_out > 1 && l->node->out[1] >= 0) return UNSUP(l, "the Indices output is not supported");
    if (!x || x->kind != LV_RT) return UNSUP(l, "input 0 must be a runtime activation");
    tr_win win;
    int ceil_mode = 0;
    if (window(l, x, 1, 1, &win, &ceil_mode)) return -1;
    int xin = spatial_in(l, x);
    if (xin < 0) return -1;
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int y = max ? tr_maxpool_win(l->g, nm, xin, &win, ceil_mode)
                : tr_avgpool_win(l->g, nm, xin, &win, ceil_mode, (int)attr_i(l->node, "count_include_pad", 0));
    l->n_fused++;
    return spatial_out(l, o, x, y);
}

static int lower_gap(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x || x->kind != LV_RT) return UNSUP(l, "input 0 must be a runtime activation");
    int xin = spatial_in(l, x);
    if (xin < 0) return -1;
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    l->n_fused++;
    return spatial_out(l, o, x, tr_adaptive_avgpool(l->g, nm, xin, 1, 1));
}

static int lower_bn(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    for (int j = 1; j < l->node->n_out; j++)
        if (l->node->out[j] >= 0 && l->m->values[l->node->out[j]].is_output)
            return UNSUP(l, "the running statistics outputs are not supported as graph outputs");
    if (l->o->mode == ONNX_LOWER_VERIFY) {
        /* a conformance run computes what the file says: batch statistics under training_mode=1,
         * for the whole graph (the engine's mode is one flag) */
        int tm = attr_i(l->node, "training_mode", 0) != 0, extra = 0;
        for (int j = 1; j < l->node->n_out; j++) extra |= l->node->out[j] >= 0;
        if (l->m->opset < 14) tm = extra;   /* BatchNormalization-9: the optional outputs say it */
        if (l->bn_training >= 0 && l->bn_training != tm)
            return UNSUP(l, "BatchNormalization nodes with training_mode 0 and 1 in one graph");
        l->bn_training = tm;
    }
    lv *sc = layer_param(l, 1, "scale");
    if (!sc) return -1;
    lv *bi = layer_param(l, 2, "bias");
    if (!bi) return -1;
    lv *mean = in_v(l, 3), *var = in_v(l, 4);
    if (!mean || !var || (mean->kind != LV_CONST && mean->kind != LV_INIT) ||
        (var->kind != LV_CONST && var->kind != LV_INIT) || mean->is_int || var->is_int)
        return UNSUP(l, "the running mean and variance must be float initializers");
    if (!x || x->kind != LV_RT) return UNSUP(l, "input 0 must be a runtime activation");
    if (x->rank < 2 || x->rank > 4) return UNSUP(l, "input 0 has rank %d (supported: 2 to 4)", x->rank);
    int64_t C = x->d[1];
    if (sc->numel != C || bi->numel != C || mean->numel != C || var->numel != C)
        return BAD(l, "scale, bias, mean and variance must have %lld values", (long long)C);
    int xin = x->tid;
    if (!(x->batched && x->rank == 4)) {
        if (!x->batched && x->d[0] != 1) return UNSUP(l, "input 0 has no batch axis");
        int dims[3] = {(int)C, x->rank == 4 ? (int)x->d[2] : 1, x->rank >= 3 ? (int)x->d[x->rank - 1] : 1};
        xin = view_nd(l, x->tid, 3, dims, ".nchw");
    }
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    /* ONNX: running = running*momentum + batch*(1 - momentum); PyTorch's momentum is 1 - that */
    float mom = 1.f - attr_f(l->node, "momentum", 0.9f);
    int ps0 = l->g->n_pspecs;
    int y = tr_batchnorm(l->g, nm, xin, attr_f(l->node, "epsilon", 1e-5f), mom);
    if (y < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    if (take_param(l, ps0, sc, l->node->in[1], NULL) || take_param(l, ps0 + 1, bi, l->node->in[2], NULL)) return -1;
    const tr_node *nd = &l->g->nodes[l->g->n_nodes - 1];
    for (int64_t c = 0; c < C; c++) {
        l->g->stats_init[nd->attr.bn.stat_off + c] = (float)cf(mean, c);
        l->g->stats_init[nd->attr.bn.stat_off + C + c] = (float)cf(var, c);
    }
    l->n_fused++;
    if (x->batched && x->rank == 4) return set_out(l, o, y, 1);
    int pd[TR_MAX_RANK];
    int pr = ps_dims(l, x, pd);
    return set_out(l, o, view_nd(l, y, pr, pd, ".out"), x->batched);
}

/* Restores the general shape on the output of a layer builder that keeps (c, h, w). */
static void set_dims(L *l, int y, int rank, const int *dims)
{
    if (y < 0) return;
    tr_tensor *t = &l->g->tensors[y];
    t->rank = rank;
    memcpy(t->dims, dims, (size_t)rank * sizeof(int));
}

/* An activation on a batched value: the engine's fused activation; otherwise the general unary. */
static int lower_act(L *l, tr_act act, tr_unary_kind uk, float a, float b, int fused_ok)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x || x->kind == LV_NONE) return BAD(l, "input 0 is missing");
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int tx = tensor_of(l, x, l->node->in[0]);
    if (tx < 0) return -1;
    const tr_tensor *t = tr_graph_tensor(l->g, tx);
    int y;
    if (uk == TR_UN_COUNT && (t->batchless || !fused_ok))
        return UNSUP(l, "%s of a value that is the same for every sample", tr_act_name(act));
    if (fused_ok && !t->batchless) {
        int rank = t->rank, dims[TR_MAX_RANK];   /* t may move when the node is added */
        memcpy(dims, t->dims, sizeof dims);
        y = tr_activation(l->g, nm, tx, act);
        l->n_fused++;
        set_dims(l, y, rank, dims);   /* tr_activation keeps (c, h, w): restore the general shape */
    } else {
        y = tr_unary(l->g, nm, uk, tx, a, b);
    }
    return set_out(l, o, y, !tr_graph_tensor(l->g, tx)->batchless && (x->kind == LV_RT ? x->batched : 0));
}

/* Binary arithmetic: folded on constants; the engine's residual add and SE channel scale where
 * the pattern is theirs; the general broadcasting op otherwise. */
static int lower_binary(L *l, tr_binary_kind kind)
{
    lv *a = in_v(l, 0), *b = in_v(l, 1), *o = out_v(l, 0);
    if (!a || !b) return BAD(l, "an input is missing");
    if (is_const(a) && is_const(b)) return fold_binary(l, o, a, b);
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    if (kind == TR_BIN_POW && is_const(b) && b->numel == 1 && !is_const(a)) {
        int ta = tensor_of(l, a, l->node->in[0]);
        if (ta < 0) return -1;
        int bat = a->kind == LV_RT && a->batched;
        if (b->rank > a->rank) return UNSUP(l, "the exponent has a higher rank than the base");
        return set_out(l, o, tr_unary(l->g, nm, TR_UN_POWC, ta, (float)cf(b, 0), 0.f), bat);
    }
    if (kind == TR_BIN_ADD && batched_rt(a) && batched_rt(b) && a->rank == b->rank &&
        !memcmp(a->d, b->d, (size_t)a->rank * sizeof a->d[0])) {
        l->n_fused++;
        int y = tr_add(l->g, nm, a->tid, b->tid);
        if (y >= 0) {
            tr_tensor *t = &l->g->tensors[y];
            const tr_tensor *ta = tr_graph_tensor(l->g, a->tid);
            t->rank = ta->rank;
            memcpy(t->dims, ta->dims, sizeof t->dims);
        }
        return set_out(l, o, y, 1);
    }
    if (kind == TR_BIN_MUL && batched_rt(a) && batched_rt(b) && a->rank == 4 && b->rank == 4) {
        lv *x = a->d[2] * a->d[3] >= b->d[2] * b->d[3] ? a : b, *s = x == a ? b : a;
        if (s->d[1] == x->d[1] && s->d[2] == 1 && s->d[3] == 1) {
            l->n_fused++;
            return set_out(l, o, tr_mul_channel(l->g, nm, x->tid, s->tid), 1);
        }
    }
    int64_t od[ONNX_MAX_DIMS];
    int r = bshape(a->rank, a->d, b->rank, b->d, od);
    if (r < 0) return BAD(l, "operands do not broadcast");
    int bat = (a->kind == LV_RT && a->batched) || (b->kind == LV_RT && b->batched);
    if (bat && ((a->kind == LV_RT && a->batched && a->rank != r) || (b->kind == LV_RT && b->batched && b->rank != r)))
        return UNSUP(l, "broadcasting would move the batch axis");
    int ta = operand(l, a, l->node->in[0], bat, r);
    int tb = ta < 0 ? -1 : operand(l, b, l->node->in[1], bat, r);
    if (tb < 0) return -1;
    return set_out(l, o, tr_binary(l->g, nm, kind, ta, tb), bat);
}

/* x (..., K) · w (K, N) with w a float initializer: the engine's linear layer (weight stored
 * as (N, K), as nn.Linear), bias from c when given. transposed: w is already (N, K). */
static int linear_of(L *l, lv *x, lv *w, int wv, lv *c, int cv, int transposed, lv *o)
{
    int K = (int)w->d[transposed ? 1 : 0], N = (int)w->d[transposed ? 0 : 1];
    int tx = tensor_of(l, x, l->node->in[0]);
    if (tx < 0) return -1;
    const tr_tensor *t = tr_graph_tensor(l->g, tx);
    if (t->batchless) return UNSUP(l, "a product of two constant tensors");
    if (t->w != K) return BAD(l, "inner dimensions %d and %d differ", t->w, K);
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int ps0 = l->g->n_pspecs;
    int y = tr_linear(l->g, nm, tx, N, c != NULL, NULL, NULL);
    if (y < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    float *wt = NULL;
    if (!transposed) {
        wt = malloc((size_t)K * N * sizeof(float));
        if (!wt) return fail(l, DEBA_E_NOMEM, "out of memory");
        for (int i = 0; i < K; i++)
            for (int j = 0; j < N; j++) wt[(int64_t)j * K + i] = w->f[(int64_t)i * N + j];
    }
    int rc = take_param(l, ps0, w, wv, wt);
    free(wt);
    if (rc || (c && take_param(l, ps0 + 1, c, cv, NULL))) return -1;
    t = tr_graph_tensor(l->g, tx);   /* adding the node may have moved the tensors */
    int dims[TR_MAX_RANK];
    memcpy(dims, t->dims, sizeof dims);
    dims[t->rank - 1] = N;
    set_dims(l, y, t->rank, dims);
    l->n_fused++;
    return set_out(l, o, y, x->kind == LV_RT && x->batched);
}

/* a · b, numpy matmul; rank-1 operands get a 1 prepended (a) or appended (b) and dropped after. */
static int matmul_of(L *l, lv *a, int av, lv *b, int bv, int *out_rank, int64_t *od)
{
    if (a->rank < 1 || b->rank < 1) return BAD(l, "a scalar operand");
    int bat = (a->kind == LV_RT && a->batched) || (b->kind == LV_RT && b->batched);
    int ra = a->rank < 2 ? 2 : a->rank, rb = b->rank < 2 ? 2 : b->rank;
    int64_t da[ONNX_MAX_DIMS], db[ONNX_MAX_DIMS];
    if (a->rank == 1) da[0] = 1, da[1] = a->d[0];
    else memcpy(da, a->d, sizeof da);
    if (b->rank == 1) db[0] = b->d[0], db[1] = 1;
    else memcpy(db, b->d, sizeof db);
    if (da[ra - 1] != db[rb - 2]) return BAD(l, "inner dimensions %lld and %lld differ", (long long)da[ra - 1], (long long)db[rb - 2]);
    int64_t bd[ONNX_MAX_DIMS];
    int r = bshape(ra - 2, da, rb - 2, db, bd);
    if (r < 0) return BAD(l, "batch dimensions do not broadcast");
    bd[r] = da[ra - 2], bd[r + 1] = db[rb - 1];
    r += 2;
    if (bat && ((a->kind == LV_RT && a->batched && (a->rank < 3 || ra != r)) ||
                (b->kind == LV_RT && b->batched && (b->rank < 3 || rb != r))))
        return UNSUP(l, "the product would move the batch axis");
    int ta = operand(l, a, av, bat, r), tb = ta < 0 ? -1 : operand(l, b, bv, bat, r);
    if (tb < 0) return -1;
    if (a->rank == 1) {
        const tr_tensor *t = tr_graph_tensor(l->g, ta);
        ta = view_nd(l, ta, 2, (const int[]){1, t->dims[0]}, ".row");
    }
    if (b->rank == 1) {
        const tr_tensor *t = tr_graph_tensor(l->g, tb);
        tb = view_nd(l, tb, 2, (const int[]){t->dims[0], 1}, ".col");
    }
    if (ta < 0 || tb < 0) return -1;
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int y = tr_matmul(l->g, nm, ta, tb);
    if (y < 0) return -1;
    /* drop the 1s rank-1 operands added */
    int64_t fd[ONNX_MAX_DIMS];
    int fr = 0;
    for (int k = 0; k < r; k++) {
        if ((k == r - 2 && a->rank == 1) || (k == r - 1 && b->rank == 1)) continue;
        fd[fr++] = bd[k];
    }
    *out_rank = fr;
    memcpy(od, fd, sizeof fd);
    if (a->rank == 1 || b->rank == 1) {
        int pd[TR_MAX_RANK], pr = 0;
        for (int k = bat ? 1 : 0; k < fr; k++) pd[pr++] = (int)fd[k];
        if (pr == 0) pd[pr++] = 1;
        y = view_nd(l, y, pr, pd, ".vec");
    }
    return y;
}

static int lower_matmul(L *l)
{
    lv *a = in_v(l, 0), *b = in_v(l, 1), *o = out_v(l, 0);
    if (!a || !b) return BAD(l, "an input is missing");
    if (a->kind == LV_RT && b->kind == LV_INIT && b->rank == 2 && b->tid == -1 && !b->is_int) {
        b->tid = -2;
        return linear_of(l, a, b, l->node->in[1], NULL, -1, 0, o);
    }
    int r;
    int64_t od[ONNX_MAX_DIMS];
    int y = matmul_of(l, a, l->node->in[0], b, l->node->in[1], &r, od);
    if (y < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    return set_out(l, o, y, (a->kind == LV_RT && a->batched) || (b->kind == LV_RT && b->batched));
}

static int lower_gemm(L *l)
{
    lv *a = in_v(l, 0), *b = in_v(l, 1), *c = in_v(l, 2), *o = out_v(l, 0);
    if (!a || !b) return BAD(l, "an input is missing");
    float alpha = attr_f(l->node, "alpha", 1.f), beta = attr_f(l->node, "beta", 1.f);
    int tA = (int)attr_i(l->node, "transA", 0), tB = (int)attr_i(l->node, "transB", 0);
    if (a->rank != 2 || b->rank != 2) return BAD(l, "A and B must have rank 2");
    int64_t N = tB ? b->d[0] : b->d[1];
    if (!tA && alpha == 1.f && beta == 1.f && a->kind == LV_RT && b->kind == LV_INIT && b->tid == -1 && !b->is_int &&
        (!c || (c->kind == LV_INIT && c->tid == -1 && c->numel == N && !c->is_int))) {
        b->tid = -2;
        if (c) c->tid = -2;
        return linear_of(l, a, b, l->node->in[1], c, c ? l->node->in[2] : -1, tB, o);
    }
    /* the general form: (transposes) · matmul · alpha, + beta·C */
    char nm[96];
    int ta, tb;
    lv at = *a, bt = *b;   /* shape-only copies for matmul_of */
    if (tA) {
        if (a->kind == LV_RT && a->batched) return UNSUP(l, "transA=1 would move the batch axis");
        if ((ta = tensor_of(l, a, l->node->in[0])) < 0) return -1;
        node_name(l, nm, sizeof nm, ".tA");
        ta = tr_transpose(l->g, nm, ta, (const int[]){1, 0});
        at = (lv){.kind = LV_RT, .rank = 2, .d = {a->d[1], a->d[0]}, .tid = ta};
        if (ta < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    }
    if (tB) {
        if (b->kind == LV_RT && b->batched) return UNSUP(l, "transB=1 would move the batch axis");
        if ((tb = tensor_of(l, b, l->node->in[1])) < 0) return -1;
        node_name(l, nm, sizeof nm, ".tB");
        tb = tr_transpose(l->g, nm, tb, (const int[]){1, 0});
        bt = (lv){.kind = LV_RT, .rank = 2, .d = {b->d[1], b->d[0]}, .tid = tb};
        if (tb < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    }
    int r;
    int64_t od[ONNX_MAX_DIMS];
    int y = matmul_of(l, &at, l->node->in[0], &bt, l->node->in[1], &r, od);
    if (y < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    int bat = a->kind == LV_RT && a->batched;
    if (alpha != 1.f) {
        node_name(l, nm, sizeof nm, ".alpha");
        y = tr_unary(l->g, nm, TR_UN_AFFINE, y, alpha, 0.f);
    }
    if (c && beta != 0.f && y >= 0) {
        int tc = operand(l, c, l->node->in[2], bat, 2);
        if (tc < 0) return -1;
        if (beta != 1.f) {
            node_name(l, nm, sizeof nm, ".beta");
            tc = tr_unary(l->g, nm, TR_UN_AFFINE, tc, beta, 0.f);
        }
        node_name(l, nm, sizeof nm, ".C");
        y = tc < 0 ? -1 : tr_binary(l->g, nm, TR_BIN_ADD, y, tc);
    }
    return set_out(l, o, y, bat);
}

/* Reshape-like ops (Reshape, Flatten, Unsqueeze, Squeeze): output dims od[r]. */
static int lower_reshape_to(L *l, lv *x, int xv, lv *o, int r, const int64_t *od)
{
    if (r > ONNX_MAX_DIMS) return UNSUP(l, "output rank %d", r);
    if (numel_of(r, od) != x->numel) return BAD(l, "reshape of %lld elements to %lld", (long long)x->numel, (long long)numel_of(r, od));
    if (is_const(x)) return fold_reshape(l, o, x, r, od);
    int tx = tensor_of(l, x, xv);
    if (tx < 0) return -1;
    int bat = x->kind == LV_RT && x->batched;
    if (bat && (r < 1 || od[0] != l->B)) {
        char s[96];
        shape_str(s, sizeof s, r, od);
        return UNSUP(l, "the output shape %s does not keep the batch (%d) as its first dimension", s, l->B);
    }
    int pd[TR_MAX_RANK], pr = 0;
    if (r - bat > TR_MAX_RANK) return UNSUP(l, "output rank %d", r);
    for (int k = bat; k < r; k++) pd[pr++] = (int)od[k];
    return set_out(l, o, view_nd(l, tx, pr, pd, NULL), bat);
}

static int lower_reshape(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    int64_t t[ONNX_MAX_DIMS];
    int r = int_list(l, in_v(l, 1), "the target shape", t, ONNX_MAX_DIMS);
    if (r < 0 || !x) return -1;
    int infer = -1;
    int64_t known = 1;
    for (int k = 0; k < r; k++) {
        if (t[k] == 0 && !attr_i(l->node, "allowzero", 0)) {
            if (k >= x->rank) return BAD(l, "target dimension %d is 0 but the input has rank %d", k, x->rank);
            t[k] = x->d[k];
        }
        if (t[k] == -1) {
            if (infer >= 0) return BAD(l, "two -1 dimensions in the target shape");
            infer = k;
        } else if (t[k] < 0) {
            return BAD(l, "target dimension %lld", (long long)t[k]);
        } else {
            known *= t[k];
        }
    }
    if (infer >= 0) {
        if (known == 0 || x->numel % known) return BAD(l, "cannot infer the -1 dimension");
        t[infer] = x->numel / known;
    }
    return lower_reshape_to(l, x, l->node->in[0], o, r, t);
}

static int lower_flatten(L *l)
{
    lv *x = in_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int64_t axis = attr_i(l->node, "axis", 1);
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis > x->rank) return BAD(l, "axis %lld", (long long)axis);
    int64_t od[2] = {numel_of((int)axis, x->d), numel_of(x->rank - (int)axis, x->d + axis)};
    return lower_reshape_to(l, x, l->node->in[0], out_v(l, 0), 2, od);
}

static int lower_unsqueeze(L *l)
{
    lv *x = in_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int64_t axes[ONNX_MAX_DIMS];
    int na;
    const onnx_attr *aa = attr_ints(l->node, "axes");
    if (aa) {
        if (aa->n > ONNX_MAX_DIMS) return UNSUP(l, "too many axes");
        na = (int)aa->n;
        if (na) memcpy(axes, aa->ints, (size_t)na * sizeof(int64_t));
    } else if ((na = int_list(l, in_v(l, 1), "axes", axes, ONNX_MAX_DIMS)) < 0) {
        return -1;
    }
    int r = x->rank + na;
    if (r > ONNX_MAX_DIMS) return UNSUP(l, "output rank %d", r);
    char ins[ONNX_MAX_DIMS] = {0};
    for (int k = 0; k < na; k++) {
        int a = norm_axis(l, axes[k], r);
        if (a < 0) return -1;
        if (ins[a]) return BAD(l, "axis %d repeated", a);
        ins[a] = 1;
    }
    int64_t od[ONNX_MAX_DIMS];
    for (int k = 0, j = 0; k < r; k++) od[k] = ins[k] ? 1 : x->d[j++];
    return lower_reshape_to(l, x, l->node->in[0], out_v(l, 0), r, od);
}

/* Identity: an alias, except that a copy of a trainable initializer is a parameter of its own. */
static int lower_identity(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    if (x->kind == LV_RT) return lv_rt(l, o, x->tid, x->rank, x->d, x->batched);
    if (lv_new_const(l, o, x->rank, x->d, x->is_int)) return -1;
    if (x->is_int) memcpy(o->i, x->i, (size_t)x->numel * sizeof(int64_t));
    else memcpy(o->f, x->f, (size_t)x->numel * sizeof(float));
    if (l->trainable[l->node->out[0]] && !x->is_int) {   /* a parameter of its own (PyTorch's dedup) */
        o->kind = LV_INIT;
        o->vsrc = l->node->out[0];
    }
    return 0;
}

static int lower_cast(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int64_t to = attr_i(l->node, "to", ONNX_DT_FLOAT);
    int to_float = onnx_dtype_is_float((onnx_dtype)to);
    if (x->kind == LV_RT) {
        if (!to_float) return UNSUP(l, "a cast of activations to %s", onnx_dtype_name((onnx_dtype)to));
        return lv_rt(l, o, x->tid, x->rank, x->d, x->batched);
    }
    lv src = *x;
    lv tmp = {0};
    tmp.tid = -1;
    if (lv_new_const(l, &tmp, src.rank, src.d, !to_float)) return -1;
    for (int64_t k = 0; k < src.numel; k++) {
        if (to == ONNX_DT_BOOL) tmp.i[k] = cf(&src, k) != 0;
        else if (!to_float) tmp.i[k] = (int64_t)cf(&src, k);   /* truncation toward zero, as ONNX */
        else tmp.f[k] = (float)cf(&src, k);
    }
    lv_clear(o);
    *o = tmp;
    return 0;
}

static int lower_shape(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x || x->kind == LV_NONE) return BAD(l, "input 0 is missing");
    int64_t r = x->rank, s = attr_i(l->node, "start", 0), e = attr_i(l->node, "end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = s < 0 ? 0 : s > r ? r : s;
    e = e < 0 ? 0 : e > r ? r : e;
    int64_t n = e > s ? e - s : 0;
    int64_t d[1] = {n};
    lv src = *x;
    if (lv_new_const(l, o, 1, d, 1)) return -1;
    for (int64_t k = 0; k < n; k++) o->i[k] = src.d[s + k];
    return 0;
}

static int lower_constant(L *l)
{
    lv *o = out_v(l, 0);
    const onnx_node *n = l->node;
    const onnx_attr *a = n->n_attr ? &n->attr[0] : NULL;
    if (!a) return BAD(l, "no value");
    if (!strcmp(a->name, "value") && a->type == ONNX_ATTR_TENSOR && a->t) {
        const onnx_tensor *t = a->t;
        int is_int = !onnx_dtype_is_float(t->dtype);
        if ((is_int && !t->i) || (!is_int && !t->f)) return UNSUP(l, "a %s constant", onnx_dtype_name(t->dtype));
        if (lv_new_const(l, o, t->rank, t->dims, is_int)) return -1;
        if (is_int) memcpy(o->i, t->i, (size_t)t->numel * sizeof(int64_t));
        else memcpy(o->f, t->f, (size_t)t->numel * sizeof(float));
        return 0;
    }
    int64_t one = 1;
    if (!strcmp(a->name, "value_float") && a->type == ONNX_ATTR_FLOAT) {
        if (lv_new_const(l, o, 0, NULL, 0)) return -1;
        o->f[0] = a->f;
        return 0;
    }
    if (!strcmp(a->name, "value_int") && a->type == ONNX_ATTR_INT) {
        if (lv_new_const(l, o, 0, NULL, 1)) return -1;
        o->i[0] = a->i;
        return 0;
    }
    if (!strcmp(a->name, "value_floats") && a->type == ONNX_ATTR_FLOATS) {
        one = a->n;
        if (lv_new_const(l, o, 1, &one, 0)) return -1;
        if (a->n) memcpy(o->f, a->floats, (size_t)a->n * sizeof(float));
        return 0;
    }
    if (!strcmp(a->name, "value_ints") && a->type == ONNX_ATTR_INTS) {
        one = a->n;
        if (lv_new_const(l, o, 1, &one, 1)) return -1;
        if (a->n) memcpy(o->i, a->ints, (size_t)a->n * sizeof(int64_t));
        return 0;
    }
    return UNSUP(l, "attribute %.40s", a->name);
}

static int lower_constant_of_shape(L *l)
{
    int64_t d[ONNX_MAX_DIMS];
    int r = int_list(l, in_v(l, 0), "the shape", d, ONNX_MAX_DIMS);
    if (r < 0) return -1;
    for (int k = 0; k < r; k++)
        if (d[k] < 0) return BAD(l, "negative dimension");
    const onnx_attr *a = onnx_node_attr(l->node, "value");
    const onnx_tensor *t = a && a->type == ONNX_ATTR_TENSOR ? a->t : NULL;
    int is_int = t && !onnx_dtype_is_float(t->dtype);
    lv *o = out_v(l, 0);
    if (lv_new_const(l, o, r, d, is_int)) return -1;
    for (int64_t k = 0; k < o->numel; k++) {
        if (is_int) o->i[k] = t->i && t->numel ? t->i[0] : 0;
        else o->f[k] = t && t->f && t->numel ? t->f[0] : 0.f;
    }
    return 0;
}

static int lower_range(L *l)
{
    lv *s = in_v(l, 0), *lim = in_v(l, 1), *dl = in_v(l, 2);
    if (!is_const(s) || !is_const(lim) || !is_const(dl) || s->numel != 1 || lim->numel != 1 || dl->numel != 1)
        return UNSUP(l, "start, limit and delta must be constant scalars");
    double a = cf(s, 0), b = cf(lim, 0), d = cf(dl, 0);
    if (d == 0) return BAD(l, "delta is 0");
    double cnt = ceil((b - a) / d);
    int64_t n = cnt > 0 ? (int64_t)cnt : 0;
    int is_int = s->is_int && lim->is_int && dl->is_int;
    lv *o = out_v(l, 0);
    if (lv_new_const(l, o, 1, &n, is_int)) return -1;
    for (int64_t k = 0; k < n; k++) {
        if (is_int) o->i[k] = ci(s, 0) + k * ci(dl, 0);
        else o->f[k] = (float)(a + (double)k * d);
    }
    return 0;
}

static int lower_where(L *l)
{
    lv *c = in_v(l, 0), *x = in_v(l, 1), *y = in_v(l, 2);
    if (!is_const(c) || !is_const(x) || !is_const(y))
        return UNSUP(l, "Where on runtime values (only constants and shapes are supported)");
    return fold_where(l, out_v(l, 0), c, x, y);
}

static int lower_equal(L *l)
{
    lv *a = in_v(l, 0), *b = in_v(l, 1);
    if (!is_const(a) || !is_const(b)) return UNSUP(l, "Equal on runtime values (only constants and shapes are supported)");
    return fold_binary(l, out_v(l, 0), a, b);
}

/* Row-major strides of dims d[r]. */
static void strides_of(int r, const int64_t *d, int64_t *st)
{
    int64_t s = 1;
    for (int k = r - 1; k >= 0; k--) st[k] = s, s *= d[k];
}

static int lower_transpose(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int r = x->rank, perm[ONNX_MAX_DIMS];
    const onnx_attr *pa = attr_ints(l->node, "perm");
    if (pa && pa->n != r) return BAD(l, "perm has %lld entries for rank %d", (long long)pa->n, r);
    char seen[ONNX_MAX_DIMS] = {0};
    for (int k = 0; k < r; k++) {
        perm[k] = pa ? (int)pa->ints[k] : r - 1 - k;
        if (perm[k] < 0 || perm[k] >= r || seen[perm[k]]) return BAD(l, "perm is not a permutation");
        seen[perm[k]] = 1;
    }
    int64_t od[ONNX_MAX_DIMS];
    for (int k = 0; k < r; k++) od[k] = x->d[perm[k]];
    int init_src = x->kind == LV_INIT && x->tid == -1 && !x->is_int ? x->vsrc : -2;
    if (is_const(x) || init_src != -2) {
        /* a constant is transposed here; so is a learned one (a MatMul weight exported as
         * Transpose(W)): its copy stays the same parameter (vsrc), for the layer that takes it */
        lv src = *x, tmp = {0};
        tmp.tid = -1;
        if (lv_new_const(l, &tmp, r, od, src.is_int)) return -1;
        if (init_src != -2) tmp.kind = LV_INIT, tmp.vsrc = init_src;
        if (r == 2 && perm[0] == 1 && !src.is_int) {   /* a weight matrix: the plain loop */
            const int64_t R = src.d[0], C = src.d[1];
            for (int64_t i = 0; i < R; i++)
                for (int64_t j = 0; j < C; j++) tmp.f[j * R + i] = src.f[i * C + j];
            lv_clear(o);
            *o = tmp;
            return 0;
        }
        int64_t ist[ONNX_MAX_DIMS], *map = malloc((size_t)(tmp.numel ? tmp.numel : 1) * sizeof(int64_t));
        if (!map) return fail(l, DEBA_E_NOMEM, "out of memory");
        strides_of(r, src.d, ist);
        for (int64_t q = 0; q < tmp.numel; q++) {
            int64_t rem = q, off = 0;
            for (int k = r - 1; k >= 0; k--) off += (rem % od[k]) * ist[perm[k]], rem /= od[k];
            map[q] = off;
        }
        copy_from(&tmp, &src, map);
        free(map);
        lv_clear(o);
        *o = tmp;
        return 0;
    }
    int tx = tensor_of(l, x, l->node->in[0]);
    if (tx < 0) return -1;
    int bat = x->kind == LV_RT && x->batched;
    if (bat && perm[0] != 0) {   /* only a slice of the new first axis may follow (LV_LAZY) */
        lv src = *x;
        lv_clear(o);
        o->kind = LV_LAZY;
        o->tid = tx;
        o->rank = r;
        memcpy(o->d, od, sizeof o->d);
        o->numel = src.numel;
        memcpy(o->perm, perm, sizeof o->perm);
        o->src_rank = src.rank;
        memcpy(o->src_d, src.d, sizeof o->src_d);
        return 0;
    }
    int pp[TR_MAX_RANK];
    for (int k = bat; k < r; k++) pp[k - bat] = perm[k] - bat;
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    return set_out(l, o, tr_transpose(l->g, nm, tx, pp), bat);
}

/* ONNX Slice/Split semantics per axis: start, step and count in all dims of x. */
typedef struct { int64_t start[ONNX_MAX_DIMS], step[ONNX_MAX_DIMS], count[ONNX_MAX_DIMS]; } slc;

static void slc_full(slc *s, const lv *x)
{
    for (int k = 0; k < x->rank; k++) s->start[k] = 0, s->step[k] = 1, s->count[k] = x->d[k];
}

/* Applies a slice s of x to output o (fold, or an engine slice). */
static int apply_slice(L *l, lv *x, int xv, lv *o, const slc *s)
{
    int r = x->rank;
    for (int k = 0; k < r; k++)
        if (s->count[k] <= 0) return UNSUP(l, "an empty slice (axis %d)", k);
    if (is_const(x)) {
        lv src = *x, tmp = {0};
        tmp.tid = -1;
        if (lv_new_const(l, &tmp, r, s->count, src.is_int)) return -1;
        int64_t ist[ONNX_MAX_DIMS], *map = malloc((size_t)tmp.numel * sizeof(int64_t));
        if (!map) return fail(l, DEBA_E_NOMEM, "out of memory");
        strides_of(r, src.d, ist);
        for (int64_t q = 0; q < tmp.numel; q++) {
            int64_t rem = q, off = 0;
            for (int k = r - 1; k >= 0; k--) off += (s->start[k] + (rem % s->count[k]) * s->step[k]) * ist[k], rem /= s->count[k];
            map[q] = off;
        }
        copy_from(&tmp, &src, map);
        free(map);
        lv_clear(o);
        *o = tmp;
        return 0;
    }
    int bat = x->kind == LV_RT && x->batched;
    if (bat && (s->start[0] != 0 || s->step[0] != 1 || s->count[0] != x->d[0]))
        return UNSUP(l, "a slice of the batch axis");
    int identity = 1;
    for (int k = 0; k < r; k++) identity &= s->start[k] == 0 && s->step[k] == 1 && s->count[k] == x->d[k];
    int tx = tensor_of(l, x, xv);
    if (tx < 0) return -1;
    if (identity) return set_out(l, o, tx, bat);
    int st[TR_MAX_RANK], sp[TR_MAX_RANK], od[TR_MAX_RANK];
    for (int k = bat; k < r; k++) st[k - bat] = (int)s->start[k], sp[k - bat] = (int)s->step[k], od[k - bat] = (int)s->count[k];
    char nm[96];
    node_name(l, nm, sizeof nm, l->uniq ? ".part" : NULL);
    return set_out(l, o, tr_slice(l->g, nm, tx, st, sp, od), bat);
}

static int lower_slice(L *l)
{
    lv *x = in_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int64_t st[ONNX_MAX_DIMS], en[ONNX_MAX_DIMS], ax[ONNX_MAX_DIMS], sp[ONNX_MAX_DIMS];
    int n = int_list(l, in_v(l, 1), "starts", st, ONNX_MAX_DIMS);
    if (n < 0 || int_list(l, in_v(l, 2), "ends", en, ONNX_MAX_DIMS) != n) return n < 0 || l->st ? -1 : BAD(l, "starts and ends differ in length");
    if (in_v(l, 3)) {
        if (int_list(l, in_v(l, 3), "axes", ax, ONNX_MAX_DIMS) != n) return l->st ? -1 : BAD(l, "axes length");
    } else {
        for (int k = 0; k < n; k++) ax[k] = k;
    }
    if (in_v(l, 4)) {
        if (int_list(l, in_v(l, 4), "steps", sp, ONNX_MAX_DIMS) != n) return l->st ? -1 : BAD(l, "steps length");
    } else {
        for (int k = 0; k < n; k++) sp[k] = 1;
    }
    slc s;
    slc_full(&s, x);
    char seen[ONNX_MAX_DIMS] = {0};
    for (int k = 0; k < n; k++) {
        int a = norm_axis(l, ax[k], x->rank);
        if (a < 0) return -1;
        if (seen[a]) return BAD(l, "axis %d repeated", a);
        seen[a] = 1;
        int64_t d = x->d[a], b = st[k], e = en[k], step = sp[k];
        if (step == 0) return BAD(l, "step 0");
        if (b < 0) b += d;
        if (e < 0) e += d;
        if (step > 0) {
            b = b < 0 ? 0 : b > d ? d : b;
            e = e < 0 ? 0 : e > d ? d : e;
            s.count[a] = e > b ? (e - b + step - 1) / step : 0;
        } else {
            b = b < 0 ? -1 : b > d - 1 ? d - 1 : b;
            e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
            s.count[a] = b > e ? (b - e + (-step) - 1) / (-step) : 0;
        }
        s.start[a] = b, s.step[a] = step;
    }
    return apply_slice(l, x, l->node->in[0], out_v(l, 0), &s);
}

static int lower_split(L *l)
{
    lv *x = in_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int a = norm_axis(l, attr_i(l->node, "axis", 0), x->rank);
    if (a < 0) return -1;
    int nout = l->node->n_out;
    int64_t sz[64];
    if (nout > 64) return UNSUP(l, "more than 64 outputs");
    const onnx_attr *sa = attr_ints(l->node, "split");
    if (sa) {
        if (sa->n != nout) return BAD(l, "split has %lld entries for %d outputs", (long long)sa->n, nout);
        if (nout) memcpy(sz, sa->ints, (size_t)nout * sizeof(int64_t));
    } else if (in_v(l, 1)) {
        if (int_list(l, in_v(l, 1), "split", sz, 64) != nout) return l->st ? -1 : BAD(l, "split length");
    } else {
        int64_t d = x->d[a], each = (d + nout - 1) / nout;
        for (int k = 0; k < nout; k++) sz[k] = k < nout - 1 ? each : d - each * (nout - 1);
    }
    int64_t off = 0;
    for (int k = 0; k < nout; k++) {
        if (sz[k] < 0) return BAD(l, "negative split");
        slc s;
        slc_full(&s, x);
        s.start[a] = off, s.count[a] = sz[k];
        off += sz[k];
        if (off > x->d[a]) return BAD(l, "split sizes exceed the axis (%lld)", (long long)x->d[a]);
        lv *o = out_v(l, k);
        if (!o) continue;
        l->uniq = k + 1;
        int rc = apply_slice(l, x, l->node->in[0], o, &s);
        l->uniq = 0;
        if (rc) return -1;
    }
    if (off != x->d[a]) return BAD(l, "split sizes sum to %lld, the axis has %lld", (long long)off, (long long)x->d[a]);
    return 0;
}

/* Element `index` of the first axis of a lazy transpose x, into o: the source sliced along the
 * axis that became the first, the other axes permuted, the batch first again. */
static int resolve_lazy(L *l, const lv *x, int64_t index, lv *o)
{
    int r = x->src_rank, s0 = x->perm[0];
    if (index < 0) index += x->d[0];
    if (index < 0 || index >= x->d[0]) return BAD(l, "index %lld outside axis 0 of size %lld", (long long)index, (long long)x->d[0]);
    int q[ONNX_MAX_DIMS] = {0};   /* the remaining permutation over the source without axis s0 */
    if (r < 2 || s0 < 1) return UNSUP(l, "the permutation moves the batch axis");
    for (int k = 1; k < r; k++) q[k - 1] = x->perm[k] - (x->perm[k] > s0);
    if (q[0] != 0) return UNSUP(l, "the permutation moves the batch axis");
    int st[TR_MAX_RANK], sp[TR_MAX_RANK], cnt[TR_MAX_RANK];
    for (int k = 1; k < r; k++) st[k - 1] = 0, sp[k - 1] = 1, cnt[k - 1] = (int)x->src_d[k];
    st[s0 - 1] = (int)index, cnt[s0 - 1] = 1;
    char nm[96];
    node_name(l, nm, sizeof nm, ".pick");
    int y = tr_slice(l->g, nm, x->tid, st, sp, cnt);
    if (y < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    int vd[TR_MAX_RANK], vr = 0;   /* the sliced axis dropped */
    for (int k = 1; k < r; k++)
        if (k != s0) vd[vr++] = (int)x->src_d[k];
    node_name(l, nm, sizeof nm, ".drop");
    y = view_nd(l, y, vr, vd, ".drop");
    int pp[TR_MAX_RANK], ident = 1;
    for (int k = 1; k < r - 1; k++) pp[k - 1] = q[k] - 1, ident &= q[k] == k;
    if (!ident && y >= 0) {
        node_name(l, nm, sizeof nm, NULL);
        y = tr_transpose(l->g, nm, y, pp);
    }
    return set_out(l, o, y, 1);
}

static int lower_gather(L *l)
{
    lv *x = in_v(l, 0), *idx = in_v(l, 1), *o = out_v(l, 0);
    if (!x || !idx) return BAD(l, "an input is missing");
    if (!is_const(idx)) return UNSUP(l, "runtime indices (only constant indices are supported)");
    int a = norm_axis(l, attr_i(l->node, "axis", 0), x->rank);
    if (a < 0) return -1;
    if (x->kind == LV_LAZY) {
        if (a != 0 || idx->rank != 0) return UNSUP(l, "the permutation before it moves the batch axis");
        return resolve_lazy(l, x, ci(idx, 0), o);
    }
    int64_t n = idx->numel, d = x->d[a];
    int64_t *ix = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!ix) return fail(l, DEBA_E_NOMEM, "out of memory");
    for (int64_t k = 0; k < n; k++) {
        ix[k] = ci(idx, k);
        if (ix[k] < 0) ix[k] += d;
        if (ix[k] < 0 || ix[k] >= d) {
            free(ix);
            return BAD(l, "index %lld is outside axis %d of size %lld", (long long)ci(idx, k), a, (long long)d);
        }
    }
    /* output dims: x.d[:a] + idx.d + x.d[a+1:] */
    int r = x->rank - 1 + idx->rank;
    if (r > ONNX_MAX_DIMS) {
        free(ix);
        return UNSUP(l, "output rank %d", r);
    }
    int64_t od[ONNX_MAX_DIMS];
    for (int k = 0; k < a; k++) od[k] = x->d[k];
    for (int k = 0; k < idx->rank; k++) od[a + k] = idx->d[k];
    for (int k = a + 1; k < x->rank; k++) od[k - 1 + idx->rank] = x->d[k];
    lv xs = *x;
    if (is_const(x)) {
        lv tmp = {0};
        tmp.tid = -1;
        int rc = lv_new_const(l, &tmp, r, od, xs.is_int);
        if (rc) {
            free(ix);
            return -1;
        }
        int64_t ist[ONNX_MAX_DIMS], inner = numel_of(xs.rank - a - 1, xs.d + a + 1), outer = numel_of(a, xs.d);
        strides_of(xs.rank, xs.d, ist);
        int64_t *map = malloc((size_t)(tmp.numel ? tmp.numel : 1) * sizeof(int64_t)), q = 0;
        if (!map) {
            free(ix);
            lv_clear(&tmp);
            return fail(l, DEBA_E_NOMEM, "out of memory");
        }
        for (int64_t p = 0; p < outer; p++)
            for (int64_t k = 0; k < n; k++)
                for (int64_t j = 0; j < inner; j++) map[q++] = p * d * inner + ix[k] * inner + j;
        copy_from(&tmp, &xs, map);
        free(map);
        free(ix);
        lv_clear(o);
        *o = tmp;
        return 0;
    }
    /* runtime data: a run of consecutive indices is a slice (one index, the class token, most often) */
    int64_t step = n > 1 ? ix[1] - ix[0] : 1;
    int ok = n >= 1 && step != 0;
    for (int64_t k = 1; k < n && ok; k++) ok = ix[k] - ix[k - 1] == step;
    int64_t first = ix[0];
    free(ix);
    if (!ok) return UNSUP(l, "indices that are not an arithmetic progression");
    if (x->kind == LV_RT && x->batched && a == 0) return UNSUP(l, "a gather along the batch axis");
    slc s;
    slc_full(&s, x);
    s.start[a] = first, s.step[a] = step, s.count[a] = n;
    lv tmpo = {0};
    tmpo.tid = -1;
    if (apply_slice(l, x, l->node->in[0], &tmpo, &s)) return -1;
    return lower_reshape_to(l, &tmpo, -1, o, r, od);
}

static int lower_concat(L *l)
{
    const onnx_node *n = l->node;
    lv *o = out_v(l, 0);
    if (n->n_in < 1) return BAD(l, "no inputs");
    lv *x0 = in_v(l, 0);
    if (!x0) return BAD(l, "input 0 is missing");
    int r = x0->rank;
    int a = norm_axis(l, attr_i(n, "axis", 0), r);
    if (a < 0) return -1;
    int all_const = 1, bat = 0;
    int64_t od[ONNX_MAX_DIMS];
    memcpy(od, x0->d, sizeof od);
    od[a] = 0;
    for (int j = 0; j < n->n_in; j++) {
        lv *x = in_v(l, j);
        if (!x || x->rank != r) return BAD(l, "input %d has a different rank", j);
        for (int k = 0; k < r; k++)
            if (k != a && x->d[k] != x0->d[k]) return BAD(l, "input %d's dimension %d differs", j, k);
        od[a] += x->d[a];
        all_const &= is_const(x);
        bat |= x->kind == LV_RT && x->batched;
    }
    if (all_const) {
        lv tmp = {0};
        tmp.tid = -1;
        int is_int = 1;
        for (int j = 0; j < n->n_in; j++) is_int &= in_v(l, j)->is_int;
        if (lv_new_const(l, &tmp, r, od, is_int)) return -1;
        int64_t outer = numel_of(a, od), inner = numel_of(r - a - 1, od + a + 1), q = 0;
        for (int64_t p = 0; p < outer; p++)
            for (int j = 0; j < n->n_in; j++) {
                lv *x = in_v(l, j);
                int64_t len = x->d[a] * inner;
                for (int64_t k = 0; k < len; k++, q++) {
                    if (is_int) tmp.i[q] = ci(x, p * len + k);
                    else tmp.f[q] = (float)cf(x, p * len + k);
                }
            }
        lv_clear(o);
        *o = tmp;
        return 0;
    }
    if (bat && a == 0) return UNSUP(l, "a concatenation along the batch axis");
    int ts[256];
    if (n->n_in > 256) return UNSUP(l, "more than 256 inputs");
    for (int j = 0; j < n->n_in; j++) {
        lv *x = in_v(l, j);
        /* one that is the same for every sample (a class token) is repeated by the op; its
         * leading 1 on the batch axis is dropped */
        if ((ts[j] = operand(l, x, n->in[j], bat, r)) < 0) return -1;
    }
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int all_bat = 1;
    for (int j = 0; j < n->n_in; j++) all_bat &= in_v(l, j)->kind == LV_RT && in_v(l, j)->batched;
    if (all_bat && r == 4 && a == 1) {   /* channels of feature maps: the engine's concat */
        l->n_fused++;
        return set_out(l, o, tr_concat(l->g, nm, ts, n->n_in), 1);
    }
    /* the general op takes TR_MAX_IN inputs: chain above that */
    int acc = -1, done = 0;
    while (done < n->n_in) {
        int grp[TR_MAX_IN], k = 0;
        if (acc >= 0) grp[k++] = acc;
        while (k < TR_MAX_IN && done < n->n_in) grp[k++] = ts[done++];
        node_name(l, nm, sizeof nm, done < n->n_in ? ".chain" : NULL);
        acc = k == 1 ? grp[0] : tr_concat_axis(l->g, nm, grp, k, a - bat);
        if (acc < 0) break;
    }
    return set_out(l, o, acc, bat);
}

static int lower_pad(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    const char *mode = attr_s(l->node, "mode", "constant");
    if (strcmp(mode, "constant")) return UNSUP(l, "mode '%.20s' (only 'constant')", mode);
    int r = x->rank;
    int64_t p[2 * ONNX_MAX_DIMS], ax[ONNX_MAX_DIMS];
    int np = int_list(l, in_v(l, 1), "pads", p, 2 * ONNX_MAX_DIMS);
    if (np < 0) return -1;
    int na = r;
    if (in_v(l, 3)) {
        if ((na = int_list(l, in_v(l, 3), "axes", ax, ONNX_MAX_DIMS)) < 0) return -1;
    } else {
        for (int k = 0; k < r; k++) ax[k] = k;
    }
    if (np != 2 * na) return BAD(l, "%d pads for %d axes", np, na);
    int64_t b[ONNX_MAX_DIMS] = {0}, e[ONNX_MAX_DIMS] = {0};
    for (int k = 0; k < na; k++) {
        int a = norm_axis(l, ax[k], r);
        if (a < 0) return -1;
        b[a] = p[k], e[a] = p[k + na];
        if (b[a] < 0 || e[a] < 0) return UNSUP(l, "negative pads");
        if (b[a] > 1 << 20 || e[a] > 1 << 20) return UNSUP(l, "pads larger than 2^20");
    }
    float value = 0.f;
    lv *cv = in_v(l, 2);
    if (cv) {
        if (!is_const(cv) || cv->numel != 1) return UNSUP(l, "constant_value must be a constant scalar");
        value = (float)cf(cv, 0);
    }
    int bat = x->kind == LV_RT && x->batched;
    if (bat && (b[0] || e[0])) return UNSUP(l, "padding of the batch axis");
    int tx = tensor_of(l, x, l->node->in[0]);
    if (tx < 0) return -1;
    int bb[TR_MAX_RANK], ee[TR_MAX_RANK];
    for (int k = bat; k < r; k++) bb[k - bat] = (int)b[k], ee[k - bat] = (int)e[k];
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    return set_out(l, o, tr_pad(l->g, nm, tx, bb, ee, value), bat);
}

static int lower_expand(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int64_t s[ONNX_MAX_DIMS], od[ONNX_MAX_DIMS];
    int rs = int_list(l, in_v(l, 1), "the shape", s, ONNX_MAX_DIMS);
    if (rs < 0) return -1;
    int r = bshape(x->rank, x->d, rs, s, od);
    if (r < 0) return BAD(l, "the input does not broadcast to the shape");
    if (is_const(x)) {
        lv src = *x, tmp = {0};
        tmp.tid = -1;
        if (lv_new_const(l, &tmp, r, od, src.is_int)) return -1;
        int64_t st[ONNX_MAX_DIMS], *map = malloc((size_t)(tmp.numel ? tmp.numel : 1) * sizeof(int64_t));
        if (!map) return fail(l, DEBA_E_NOMEM, "out of memory");
        bstrides(r, od, src.rank, src.d, st);
        for (int64_t q = 0; q < tmp.numel; q++) map[q] = boff(q, r, od, st);
        copy_from(&tmp, &src, map);
        free(map);
        lv_clear(o);
        *o = tmp;
        return 0;
    }
    int xb = x->kind == LV_RT && x->batched;
    /* the output is per sample when the input is, or when it spans the batch (a class token
     * expanded to every sample) */
    int bat = xb || (l->B > 0 && r >= 1 && od[0] == l->B && (x->rank < r || x->d[0] == 1));
    if (xb && x->rank != r) return UNSUP(l, "broadcasting would move the batch axis");
    if (!bat && l->B > 0 && l->o->mode == ONNX_LOWER_MODEL)
        return UNSUP(l, "an expansion of a constant that does not span the batch");
    int tx = operand(l, x, l->node->in[0], bat, r);
    if (tx < 0) return -1;
    int pd[TR_MAX_RANK], pr = 0;
    for (int k = bat; k < r; k++) pd[pr++] = (int)od[k];
    const tr_tensor *t = tr_graph_tensor(l->g, tx);
    int same = !t->batchless == !!bat && t->rank == pr;
    for (int k = 0; same && k < pr; k++) same = t->dims[k] == pd[k];
    if (same) return set_out(l, o, tx, bat);
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    return set_out(l, o, tr_expand(l->g, nm, tx, pr, pd), bat);
}

static int lower_reduce_mean(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int64_t ax[ONNX_MAX_DIMS];
    int na = 0;
    const onnx_attr *aa = attr_ints(l->node, "axes");
    if (aa) {
        if (aa->n > ONNX_MAX_DIMS) return BAD(l, "too many axes");
        na = (int)aa->n;
        if (na) memcpy(ax, aa->ints, (size_t)na * sizeof(int64_t));
    } else if (in_v(l, 1)) {
        if ((na = int_list(l, in_v(l, 1), "axes", ax, ONNX_MAX_DIMS)) < 0) return -1;
    }
    int keep = (int)attr_i(l->node, "keepdims", 1);
    int r = x->rank, mask = 0;
    if (na == 0) {
        if (attr_i(l->node, "noop_with_empty_axes", 0)) return lower_identity(l);
        mask = (1 << r) - 1;
    }
    for (int k = 0; k < na; k++) {
        int a = norm_axis(l, ax[k], r);
        if (a < 0) return -1;
        mask |= 1 << a;
    }
    int64_t od[ONNX_MAX_DIMS];
    int orank = 0;
    for (int k = 0; k < r; k++)
        if (!(mask >> k & 1)) od[orank++] = x->d[k];
        else if (keep) od[orank++] = 1;
    int bat = x->kind == LV_RT && x->batched;
    if (bat && (mask & 1)) return UNSUP(l, "a mean over the batch axis");
    int tx = tensor_of(l, x, l->node->in[0]);
    if (tx < 0) return -1;
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int y;
    if (bat && r == 4 && mask == 0xc) {   /* over H and W: the engine's global average pool */
        l->n_fused++;
        y = tr_adaptive_avgpool(l->g, nm, tx, 1, 1);
    } else {
        y = tr_reduce(l->g, nm, TR_RED_MEAN, tx, mask >> bat);
    }
    if (y < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    int pd[TR_MAX_RANK], pr = 0;
    for (int k = bat; k < orank; k++) pd[pr++] = (int)od[k];
    const tr_tensor *t = tr_graph_tensor(l->g, y);
    if (t->rank != pr || memcmp(t->dims, pd, (size_t)pr * sizeof(int))) y = view_nd(l, y, pr, pd, ".out");
    return set_out(l, o, y, bat);
}

static int lower_softmax(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    int a = norm_axis(l, attr_i(l->node, "axis", l->m->opset >= 13 ? -1 : 1), x->rank);
    if (a < 0) return -1;
    if (l->m->opset < 13 && a != x->rank - 1) return UNSUP(l, "axis %d at opset %d (only the last axis)", a, l->m->opset);
    int bat = x->kind == LV_RT && x->batched;
    if (bat && a == 0) return UNSUP(l, "a softmax over the batch axis");
    int tx = tensor_of(l, x, l->node->in[0]);
    if (tx < 0) return -1;
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    return set_out(l, o, tr_softmax(l->g, nm, tx, a - bat), bat);
}

static int lower_layernorm(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x || x->kind != LV_RT) return UNSUP(l, "input 0 must be a runtime activation");
    for (int j = 1; j < l->node->n_out; j++)
        if (l->node->out[j] >= 0 && l->m->values[l->node->out[j]].is_output)
            return UNSUP(l, "the Mean and InvStdDev outputs are not supported");
    int a = norm_axis(l, attr_i(l->node, "axis", -1), x->rank);
    if (a < 0) return -1;
    int bat = x->batched;
    if (bat && a == 0) return UNSUP(l, "normalisation over the batch axis");
    lv *sc = layer_param(l, 1, "scale");
    if (!sc) return -1;
    lv *bi = NULL;
    if (in_v(l, 2) && !(bi = layer_param(l, 2, "bias"))) return -1;
    int64_t w = numel_of(x->rank - a, x->d + a);
    if (sc->numel != w || (bi && bi->numel != w)) return BAD(l, "scale and bias must have %lld values", (long long)w);
    int pd[TR_MAX_RANK], pr = ps_dims(l, x, pd);
    if (pr < 0) return -1;
    int tx = x->tid;
    if (a < x->rank - 1) {   /* several normalised axes: one last axis of their product */
        int vd[TR_MAX_RANK], vr = 0;
        for (int k = bat; k < a; k++) vd[vr++] = (int)x->d[k];
        vd[vr++] = (int)w;
        tx = view_nd(l, tx, vr, vd, ".in");
    }
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int ps0 = l->g->n_pspecs;
    int y = tr_layernorm(l->g, nm, tx, attr_f(l->node, "epsilon", 1e-5f));
    if (y < 0) return lv_rt(l, o, -1, 0, NULL, 0);
    if (take_param(l, ps0, sc, l->node->in[1], NULL)) return -1;
    if (bi && take_param(l, ps0 + 1, bi, l->node->in[2], NULL)) return -1;
    l->n_fused++;
    return set_out(l, o, view_nd(l, y, pr, pd, ".out"), bat);
}

static int lower_dropout(L *l)
{
    lv *x = in_v(l, 0), *o = out_v(l, 0);
    if (!x) return BAD(l, "input 0 is missing");
    if (l->node->n_out > 1 && l->node->out[1] >= 0 && l->m->values[l->node->out[1]].is_output)
        return UNSUP(l, "the mask output is not supported");
    float p = attr_f(l->node, "ratio", 0.5f);
    lv *rv = in_v(l, 1), *tm = in_v(l, 2);
    if (rv) {
        if (!is_const(rv) || rv->numel != 1) return UNSUP(l, "the ratio must be a constant scalar");
        p = (float)cf(rv, 0);
    }
    if (tm && (!is_const(tm) || tm->numel != 1)) return UNSUP(l, "training_mode must be a constant");
    if (l->o->mode == ONNX_LOWER_VERIFY && tm && cf(tm, 0) != 0 && p > 0)
        return UNSUP(l, "training_mode=1 with ratio %g draws random masks: no expected output to compare with", p);
    if (p < 0 || p >= 1) return BAD(l, "ratio %g outside [0, 1)", p);
    if (x->kind != LV_RT || !x->batched || p == 0 || l->o->mode == ONNX_LOWER_VERIFY)
        return lower_identity(l);
    char nm[96];
    node_name(l, nm, sizeof nm, NULL);
    int y = tr_dropout(l->g, nm, x->tid, p);
    const tr_tensor *t = tr_graph_tensor(l->g, x->tid);
    set_dims(l, y, t->rank, t->dims);
    return set_out(l, o, y, 1);
}

static int lower_clip(L *l)
{
    lv *lo = in_v(l, 1), *hi = in_v(l, 2);
    float a = -INFINITY, b = INFINITY;
    if (lo) {
        if (!is_const(lo) || lo->numel != 1) return UNSUP(l, "min must be a constant scalar");
        a = (float)cf(lo, 0);
    }
    if (hi) {
        if (!is_const(hi) || hi->numel != 1) return UNSUP(l, "max must be a constant scalar");
        b = (float)cf(hi, 0);
    }
    if (l->m->opset < 11) a = attr_f(l->node, "min", a), b = attr_f(l->node, "max", b);
    if (a == 0.f && b == 6.f) return lower_act(l, TR_ACT_RELU6, TR_UN_CLIP, a, b, 1);
    if (a == 0.f && isinf(b) && b > 0) return lower_act(l, TR_ACT_RELU, TR_UN_CLIP, a, b, 1);
    return lower_act(l, TR_ACT_RELU, TR_UN_CLIP, a, b, 0);
}

static int lower_node(L *l);

/* Node k through the checks and its lowering (l->st set on a refusal). */
static void lower_one(L *l, int k)
{
    const onnx_model *m = l->m;
    l->node = &m->nodes[k];
    char why[200];
    if (!onnx_node_supported(m, k, why, sizeof why)) {
        fail(l, DEBA_E_UNSUPPORTED, "%s", why);
        return;
    }
    for (int j = 0; j < l->node->n_in && strcmp(l->node->op, "Gather"); j++)
        if (l->node->in[j] >= 0 && l->v[l->node->in[j]].kind == LV_LAZY) {
            fail(l, DEBA_E_UNSUPPORTED, "input %d comes from a Transpose that moves the batch axis", j);
            return;
        }
    for (int j = 0; j < l->node->n_in; j++)
        if (l->node->in[j] >= 0 && l->v[l->node->in[j]].kind == LV_NONE) {
            fail(l, DEBA_E_UNSUPPORTED, "input %d ('%.60s') has no value the engine can compute", j,
                 m->values[l->node->in[j]].name);
            return;
        }
    lower_node(l);
    if (!l->st && l->g->failed) lv_rt(l, &l->v[0], -1, 0, NULL, 0);
}

/* ---- torchvision's nn.MultiheadAttention (batch_first): a region onto the engine's attention ----
 *
 * PyTorch 1.13 exports F.multi_head_attention_forward as about 90 nodes that move the batch
 * (Transpose (N, T, D) -> (T, N, D)), fold it into the heads (Reshape (T, N*heads, d)) and move it
 * back at the end: nothing the batch-first engine can run node by node, and exactly what
 * TR_OP_ATTENTION computes. The region is found from its first Transpose: every node that
 * depends on it up to a Transpose (1, 0, 2) that restores the batch, with no value escaping it;
 * inside it the runtime nodes must be the ones that attention is made of, the weights must be
 * the module's four initializers (in_proj_weight 3D x D through a Transpose, in_proj_bias, and the
 * out projection's Gemm), and the softmax scale gives the head size. Anything else is left to
 * the node-by-node lowering, which refuses it by name. */

/* 1 when value v is read by node j. */
static int reads(const onnx_node *nd, int v)
{
    for (int j = 0; j < nd->n_in; j++)
        if (nd->in[j] == v) return 1;
    return 0;
}

static int fuse_mha(L *l, int k0, char *skip)
{
    const onnx_model *m = l->m;
    const onnx_node *t0 = &m->nodes[k0];
    lv *x = &l->v[t0->in[0]];
    if (x->kind != LV_RT || !x->batched || x->rank != 3) return 0;
    const onnx_attr *pa = attr_ints(t0, "perm");
    if (!pa || pa->n != 3 || pa->ints[0] != 1 || pa->ints[1] != 0 || pa->ints[2] != 2) return 0;
    int n = m->n_nodes, rc = 0;
    char *inC = calloc((size_t)m->n_values, 1), *inR = calloc((size_t)n, 1);
    if (!inC || !inR) goto out;
    /* C: everything downstream of the transposed value */
    inC[t0->out[0]] = 1;
    for (int j = k0 + 1; j < n; j++) {
        const onnx_node *nd = &m->nodes[j];
        int dep = 0;
        for (int i = 0; i < nd->n_in; i++) dep |= nd->in[i] >= 0 && inC[nd->in[i]];
        if (dep)
            for (int i = 0; i < nd->n_out; i++)
                if (nd->out[i] >= 0) inC[nd->out[i]] = 1;
    }
    /* E: the first Transpose (1, 0, 2) in C whose ancestors within C form a closed region */
    for (int e = k0 + 1; e < n && !rc; e++) {
        const onnx_node *E = &m->nodes[e];
        const onnx_attr *ep = attr_ints(E, "perm");
        if (strcmp(E->op, "Transpose") || E->in[0] < 0 || !inC[E->in[0]] || !ep || ep->n != 3 || ep->ints[0] != 1 ||
            ep->ints[1] != 0 || ep->ints[2] != 2)
            continue;
        memset(inR, 0, (size_t)n);
        inR[e] = 1;
        for (int j = e; j > k0; j--) {   /* ancestors of E inside C, walking back */
            if (!inR[j]) continue;
            const onnx_node *nd = &m->nodes[j];
            for (int i = 0; i < nd->n_in; i++) {
                int v = nd->in[i];
                if (v < 0 || !inC[v]) continue;
                int p = m->values[v].producer;
                if (p > k0) inR[p] = 1;
            }
        }
        inR[k0] = 1;
        /* closed: nothing the region computes is read outside it, except E's output */
        int closed = 1;
        for (int j = k0; j <= e && closed; j++) {
            if (!inR[j] || j == e) continue;
            const onnx_node *nd = &m->nodes[j];
            for (int i = 0; i < nd->n_out && closed; i++) {
                int v = nd->out[i];
                if (v < 0) continue;
                if (m->values[v].is_output) closed = 0;
                for (int q = j + 1; q < n && closed; q++)
                    if (!inR[q] && reads(&m->nodes[q], v)) closed = 0;
            }
        }
        if (!closed) continue;
        /* the nodes before E that do not depend on the region (the weight's Transpose, the scale's
         * Constant) are lowered now, in order, so the region's inputs are known */
        for (int j = k0 + 1; j < e && !l->st; j++)
            if (!inR[j] && !skip[j]) {
                const onnx_node *nd = &m->nodes[j];
                int dep = 0;
                for (int i = 0; i < nd->n_out; i++) dep |= nd->out[i] >= 0 && inC[nd->out[i]];
                if (dep) continue;   /* depends on the region: not in it (not an ancestor of E), left for later */
                lower_one(l, j);
                skip[j] = 1;
            }
        if (l->st) {
            rc = -1;
            break;
        }
        /* what the region is made of */
        int softmax = 0, matmul_w = 0, matmul_rt = 0, slices = 0, gemm = 0, other = 0;
        const lv *w_in = NULL, *b_in = NULL, *w_out = NULL, *b_out = NULL;
        double scale = 0;
        int scale_div = 0;
        for (int j = k0 + 1; j < e; j++) {
            if (!inR[j]) continue;
            const onnx_node *nd = &m->nodes[j];
            const char *op = nd->op;
            lv *a = nd->n_in > 0 && nd->in[0] >= 0 ? &l->v[nd->in[0]] : NULL;
            lv *b = nd->n_in > 1 && nd->in[1] >= 0 ? &l->v[nd->in[1]] : NULL;
            if (!strcmp(op, "Softmax")) softmax++;
            else if (!strcmp(op, "MatMul")) {
                if (b && b->kind == LV_INIT && b->rank == 2) matmul_w++, w_in = b;
                else matmul_rt++;
            } else if (!strcmp(op, "Add") && ((a && a->kind == LV_INIT) || (b && b->kind == LV_INIT))) {
                b_in = a && a->kind == LV_INIT ? a : b;
            } else if ((!strcmp(op, "Div") || !strcmp(op, "Mul")) && b && b->kind == LV_CONST && !b->is_int &&
                       b->numel == 1 && !(a && a->kind == LV_CONST)) {
                scale = b->f[0], scale_div = !strcmp(op, "Div");
            } else if (!strcmp(op, "Gemm")) {
                lv *c = nd->n_in > 2 && nd->in[2] >= 0 ? &l->v[nd->in[2]] : NULL;
                if (b && b->kind == LV_INIT && c && c->kind == LV_INIT && attr_i(nd, "transB", 0) == 1 &&
                    attr_i(nd, "transA", 0) == 0 && attr_f(nd, "alpha", 1.f) == 1.f && attr_f(nd, "beta", 1.f) == 1.f)
                    gemm++, w_out = b, b_out = c;
                else other++;
            } else if (!strcmp(op, "Slice")) slices++;
            else if (!strcmp(op, "Dropout")) {
                lv *r = b;
                if (r && !(r->kind == LV_CONST && r->numel == 1 && cf(r, 0) == 0)) other++;
            } else if (strcmp(op, "Reshape") && strcmp(op, "Transpose") && strcmp(op, "Shape") && strcmp(op, "Gather") &&
                       strcmp(op, "Unsqueeze") && strcmp(op, "Concat") && strcmp(op, "Cast") && strcmp(op, "Div") &&
                       strcmp(op, "Mul") && strcmp(op, "Add") && strcmp(op, "Sub") && strcmp(op, "Constant") &&
                       strcmp(op, "Squeeze"))
                other++;
        }
        int64_t D = x->d[2];
        if (softmax != 1 || matmul_w != 1 || matmul_rt != 2 || gemm != 1 || slices != 3 || other || !w_in || !b_in ||
            !w_out || !b_out || scale <= 0)
            break;
        if (w_in->d[0] != D || w_in->d[1] != 3 * D || b_in->numel != 3 * D || w_out->d[0] != D || w_out->d[1] != D ||
            b_out->numel != D || w_in->vsrc < 0 || !m->values[w_in->vsrc].init)
            break;
        double hd = scale_div ? scale * scale : 1.0 / (scale * scale);
        int64_t d = (int64_t)llround(hd);
        if (d < 1 || fabs(hd - (double)d) > 1e-3 * hd || D % d) break;
        int heads = (int)(D / d);
        /* the engine's attention on (T, 1, D) tokens, its parameters the module's */
        l->node = t0;
        int T = (int)x->d[1];
        int tv = view_nd(l, x->tid, 3, (const int[]){T, 1, (int)D}, ".tokens");
        char nm[96];
        node_name(l, nm, sizeof nm, ".attention");
        int ps0 = l->g->n_pspecs;
        int y = tv < 0 ? -1 : tr_attention(l->g, nm, tv, heads);
        if (y < 0) {
            lv_rt(l, &l->v[E->out[0]], -1, 0, NULL, 0);
            rc = -1;
            break;
        }
        const lv *wsrc_lv = &l->v[w_in->vsrc];   /* in_proj_weight as the module holds it: 3D x D */
        lv tmp = *wsrc_lv;
        if (tmp.kind != LV_INIT || tmp.numel != 3 * D * D) break;
        const lv *parts[4] = {&tmp, b_in, w_out, b_out};
        for (int q = 0; q < 4 && !rc; q++) {
            if (parts[q]->vsrc >= 0 && l->taken[parts[q]->vsrc]) {
                UNSUP(l, "initializer '%.80s' of the attention is shared", m->values[parts[q]->vsrc].name);
                rc = -1;
            } else if (take_param(l, ps0 + q, parts[q], parts[q]->vsrc, NULL)) {
                rc = -1;
            } else if (parts[q]->vsrc >= 0) {
                l->taken[parts[q]->vsrc] = 1;
            }
        }
        if (rc) break;
        y = view_nd(l, y, 2, (const int[]){T, (int)D}, ".out");
        l->node = E;
        if (set_out(l, &l->v[E->out[0]], y, 1)) {
            rc = -1;
            break;
        }
        for (int j = k0; j <= e; j++)
            if (inR[j]) skip[j] = 1;
        l->n_fused += heads > 0 ? 1 : 0;
        rc = 1;
    }
out:
    free(inC);
    free(inR);
    return rc;
}

/* One node. Ops outside the supported table were refused before. */
static int lower_node(L *l)
{
    const char *op = l->node->op;
#define IS(x) (!strcmp(op, x))
    if (IS("Conv")) return lower_conv(l);
    if (IS("BatchNormalization")) return lower_bn(l);
    if (IS("Relu")) return lower_act(l, TR_ACT_RELU, TR_UN_CLIP, 0.f, INFINITY, 1);
    if (IS("Sigmoid")) return lower_act(l, TR_ACT_SIGMOID, TR_UN_COUNT, 0.f, 0.f, 1);
    if (IS("HardSwish")) return lower_act(l, TR_ACT_HSWISH, TR_UN_COUNT, 0.f, 0.f, 1);
    if (IS("HardSigmoid")) {
        float a = attr_f(l->node, "alpha", 0.2f), b = attr_f(l->node, "beta", 0.5f);
        return lower_act(l, TR_ACT_HSIGMOID, TR_UN_HSIGMOID, a, b, fabsf(a - 1.f / 6.f) < 1e-7f && b == 0.5f);
    }
    if (IS("Clip")) return lower_clip(l);
    if (IS("Erf")) return lower_act(l, TR_ACT_RELU, TR_UN_ERF, 0.f, 0.f, 0);
    if (IS("Sqrt")) return lower_act(l, TR_ACT_RELU, TR_UN_SQRT, 0.f, 0.f, 0);
    if (IS("MaxPool")) return lower_pool(l, 1);
    if (IS("AveragePool")) return lower_pool(l, 0);
    if (IS("GlobalAveragePool")) return lower_gap(l);
    if (IS("Add")) return lower_binary(l, TR_BIN_ADD);
    if (IS("Sub")) return lower_binary(l, TR_BIN_SUB);
    if (IS("Mul")) return lower_binary(l, TR_BIN_MUL);
    if (IS("Div")) return lower_binary(l, TR_BIN_DIV);
    if (IS("Pow")) return lower_binary(l, TR_BIN_POW);
    if (IS("Gemm")) return lower_gemm(l);
    if (IS("MatMul")) return lower_matmul(l);
    if (IS("Reshape")) return lower_reshape(l);
    if (IS("Flatten")) return lower_flatten(l);
    if (IS("Unsqueeze")) return lower_unsqueeze(l);
    if (IS("Identity")) return lower_identity(l);
    if (IS("Cast")) return lower_cast(l);
    if (IS("Shape")) return lower_shape(l);
    if (IS("Constant")) return lower_constant(l);
    if (IS("ConstantOfShape")) return lower_constant_of_shape(l);
    if (IS("Range")) return lower_range(l);
    if (IS("Where")) return lower_where(l);
    if (IS("Equal")) return lower_equal(l);
    if (IS("Transpose")) return lower_transpose(l);
    if (IS("Slice")) return lower_slice(l);
    if (IS("Split")) return lower_split(l);
    if (IS("Gather")) return lower_gather(l);
    if (IS("Concat")) return lower_concat(l);
    if (IS("Pad")) return lower_pad(l);
    if (IS("Expand")) return lower_expand(l);
    if (IS("ReduceMean")) return lower_reduce_mean(l);
    if (IS("Softmax")) return lower_softmax(l);
    if (IS("LayerNormalization")) return lower_layernorm(l);
    if (IS("Dropout")) return lower_dropout(l);
#undef IS
    return UNSUP(l, "no lowering for this op");
}

void onnx_net_free(onnx_net *n)
{
    if (!n) return;
    tr_graph_free(n->g);
    for (int k = 0; k < n->n_outputs; k++) free(n->outputs[k].cf), free(n->outputs[k].ci);
    free(n->outputs);
    free(n->inputs);
    free(n);
}

/* x := the data of t, an initializer or a verify input (a trainable one: a parameter). */
static void lv_from_tensor(L *l, lv *x, const onnx_tensor *t, int trainable)
{
    int is_int = !onnx_dtype_is_float(t->dtype);
    if ((is_int && !t->i) || (!is_int && !t->f)) return;   /* string, complex: no op reads them */
    x->rank = t->rank;
    memcpy(x->d, t->dims, sizeof x->d);
    x->numel = t->numel;
    x->is_int = is_int;
    size_t esz = is_int ? sizeof(int64_t) : sizeof(float);
    void *d = malloc((size_t)(t->numel ? t->numel : 1) * esz);
    if (!d) {
        fail(l, DEBA_E_NOMEM, "out of memory");
        return;
    }
    memcpy(d, is_int ? (void *)t->i : (void *)t->f, (size_t)t->numel * esz);
    if (is_int) x->i = d;
    else x->f = d;
    x->kind = trainable && !is_int ? LV_INIT : LV_CONST;
}

/* One lowering at batch B (0: no batch axis). */
static deba_status lower_at(const onnx_model *m, const onnx_lower_opts *o, int B, const char *trainable,
                            onnx_net **out, deba_err *e)
{
    L l = {0};
    l.m = m, l.o = o, l.B = B, l.e = e;
    l.bn_training = -1;
    l.trainable = (char *)trainable;
    l.v = calloc((size_t)(m->n_values ? m->n_values : 1), sizeof(lv));
    l.taken = calloc((size_t)(m->n_values ? m->n_values : 1), 1);
    onnx_net *net = calloc(1, sizeof *net);
    if (!l.v || !net || !l.taken) {
        free(l.v);
        free(l.taken);
        free(net);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    }
    for (int v = 0; v < m->n_values; v++) l.v[v].tid = -1, l.v[v].vsrc = -1;
    net->batch = B;
    /* initializers */
    for (int v = 0; v < m->n_values && !l.st; v++)
        if (m->values[v].init) {
            lv_from_tensor(&l, &l.v[v], m->values[v].init, trainable[v]);
            if (l.v[v].kind == LV_INIT) l.v[v].vsrc = v;
        }
    /* graph inputs */
    net->n_inputs = m->n_inputs;
    net->inputs = calloc((size_t)(m->n_inputs ? m->n_inputs : 1), sizeof(int));
    if (!net->inputs && !l.st) fail(&l, DEBA_E_NOMEM, "out of memory");
    for (int k = 0; k < m->n_inputs && !l.st; k++) {
        const onnx_value *val = &m->values[m->inputs[k]];
        if (o->mode == ONNX_LOWER_VERIFY && o->data && o->as_const && o->as_const[k]) {
            lv_from_tensor(&l, &l.v[m->inputs[k]], o->data[k], trainable[m->inputs[k]]);
            if (l.v[m->inputs[k]].kind == LV_INIT) l.v[m->inputs[k]].vsrc = m->inputs[k];
            net->inputs[k] = -1;
            continue;
        }
        const onnx_tensor *dt = o->mode == ONNX_LOWER_VERIFY && o->data ? o->data[k] : NULL;
        int64_t d[ONNX_MAX_DIMS];
        int vrank = dt ? dt->rank : val->rank;
        if (vrank < 0) {
            fail(&l, DEBA_E_UNSUPPORTED, "input '%.80s' has no shape", val->name);
            break;
        }
        if (val->kind != ONNX_VAL_TENSOR || val->dtype != ONNX_DT_FLOAT) {
            fail(&l, DEBA_E_UNSUPPORTED, "input '%.80s' is %s (the engine computes in float)", val->name,
                 val->kind == ONNX_VAL_TENSOR ? onnx_dtype_name(val->dtype) : "not a tensor");
            break;
        }
        for (int j = 0; j < vrank; j++)
            d[j] = j == 0 && B > 0 && o->mode == ONNX_LOWER_MODEL ? B : dt ? dt->dims[j] : val->dims[j];
        int bat = B > 0;
        if (bat && (vrank < 1 || d[0] != B)) {
            fail(&l, DEBA_E_UNSUPPORTED, "input '%.80s' does not have the batch first", val->name);
            break;
        }
        int pd[TR_MAX_RANK], pr = 0;
        if (vrank - bat > TR_MAX_RANK) {
            fail(&l, DEBA_E_UNSUPPORTED, "input '%.80s' has rank %d", val->name, vrank);
            break;
        }
        for (int j = bat; j < vrank; j++) {
            if (d[j] <= 0 || d[j] > INT32_MAX) {
                fail(&l, DEBA_E_UNSUPPORTED, "input '%.80s' has dimension %d of size %lld", val->name, j, (long long)d[j]);
                break;
            }
            pd[pr++] = (int)d[j];
        }
        if (l.st) break;
        int id;
        if (!l.g) {
            int grey = o->mode == ONNX_LOWER_MODEL && o->in_channels == 1 && pr == 3 && pd[0] == 3;
            if (o->mode == ONNX_LOWER_MODEL && o->in_channels > 0 && !grey && (pr != 3 || pd[0] != o->in_channels)) {
                fail(&l, DEBA_E_INPUT, "the model's input '%.80s' takes %d channels per image, the dataset has %d",
                     val->name, pr == 3 ? pd[0] : -1, o->in_channels);
                break;
            }
            l.g = grey ? tr_graph_new_nd(3, (const int[]){1, pd[1], pd[2]}) : tr_graph_new_nd(pr, pd);
            if (!l.g) {
                fail(&l, DEBA_E_NOMEM, "out of memory");
                break;
            }
            id = l.g->input;
            if (grey) {   /* one grey channel read as three, as torchvision's Grayscale(3) */
                id = tr_expand(l.g, "input.rgb", id, 3, pd);
                if (id < 0) {
                    fail(&l, DEBA_E_INPUT, "%s", l.g->err.msg);
                    break;
                }
            }
        } else {
            id = tr_graph_add_leaf_nd(l.g, pr, pd);
        }
        net->inputs[k] = id;
        lv_rt(&l, &l.v[m->inputs[k]], id, vrank, d, bat);
    }
    if (!l.g && !l.st && o->mode == ONNX_LOWER_VERIFY) {
        /* a graph of constants: an engine graph needs an input all the same */
        l.g = tr_graph_new_nd(1, (const int[]){1});
        if (!l.g) fail(&l, DEBA_E_NOMEM, "out of memory");
    }
    if (!l.g && !l.st) fail(&l, DEBA_E_UNSUPPORTED, "the graph has no input");
    /* nodes, in order */
    char *skip = calloc((size_t)(m->n_nodes ? m->n_nodes : 1), 1);
    if (!skip && !l.st) fail(&l, DEBA_E_NOMEM, "out of memory");
    for (int k = 0; k < m->n_nodes && !l.st; k++) {
        if (skip[k]) continue;
        l.node = &m->nodes[k];
        if (!strcmp(l.node->op, "Transpose") && !*l.node->domain && fuse_mha(&l, k, skip)) {
            if (l.st || l.g->failed) break;
            continue;
        }
        lower_one(&l, k);
    }
    free(skip);
    l.node = NULL;
    /* outputs */
    if (!l.st) {
        net->n_outputs = m->n_outputs;
        net->outputs = calloc((size_t)(m->n_outputs ? m->n_outputs : 1), sizeof(onnx_out));
        if (!net->outputs) fail(&l, DEBA_E_NOMEM, "out of memory");
    }
    for (int k = 0; k < m->n_outputs && !l.st; k++) {
        lv *x = &l.v[m->outputs[k]];
        onnx_out *oo = &net->outputs[k];
        oo->value = m->outputs[k];
        oo->rank = x->rank;
        memcpy(oo->dims, x->d, sizeof oo->dims);
        oo->numel = x->numel;
        oo->tensor = -1;
        if (x->kind == LV_RT) {
            oo->tensor = x->tid;
            oo->batched = x->batched;
        } else if (x->kind == LV_CONST || x->kind == LV_INIT) {
            size_t n = (size_t)(x->numel ? x->numel : 1);
            if (x->is_int) {
                oo->ci = malloc(n * sizeof(int64_t));
                if (oo->ci) memcpy(oo->ci, x->i, (size_t)x->numel * sizeof(int64_t));
            } else {
                oo->cf = malloc(n * sizeof(float));
                if (oo->cf) memcpy(oo->cf, x->f, (size_t)x->numel * sizeof(float));
            }
            if (!oo->ci && !oo->cf) fail(&l, DEBA_E_NOMEM, "out of memory");
        } else {
            fail(&l, DEBA_E_UNSUPPORTED, "output '%.80s' is not computed", m->values[m->outputs[k]].name);
        }
    }
    if (!l.st && o->mode == ONNX_LOWER_MODEL) {
        onnx_out *oo = &net->outputs[0];
        const onnx_value *val = &m->values[oo->value];
        if (oo->tensor < 0 || !oo->batched) {
            fail(&l, DEBA_E_UNSUPPORTED, "output '%.80s' is not computed per sample from the input", val->name);
        } else {
            const tr_tensor *t = tr_graph_tensor(l.g, oo->tensor);
            int64_t classes = tr_tensor_numel(t);
            if (classes != t->w)
                fail(&l, DEBA_E_UNSUPPORTED, "output '%.80s' has %d dimensions per sample (a classifier gives one: the logits)",
                     val->name, t->rank);
            else {
                int y = oo->tensor;
                if (t->rank != 1) {
                    int dims[1] = {(int)classes};
                    tr_node *nd = tr_graph_add_node_nd(l.g, TR_OP_VIEW, "logits", &y, 1, 1, dims, 0);
                    y = nd ? nd->out : -1;
                }
                l.g->output = y;
                l.g->classes = (int)classes;
                if (y < 0) fail(&l, DEBA_E_INPUT, "%s", l.g->err.msg);
            }
        }
    } else if (!l.st && l.g) {
        /* conformance runs read every output; the first runtime one is the graph's output */
        for (int k = 0; k < net->n_outputs && l.g->output < 0; k++)
            if (net->outputs[k].tensor >= 0) l.g->output = net->outputs[k].tensor;
        if (l.g->output < 0) l.g->output = l.g->input;
    }
    for (int v = 0; v < m->n_values; v++) lv_clear(&l.v[v]);
    free(l.v);
    free(l.taken);
    net->g = l.g;
    net->n_fused = l.n_fused;
    net->training = l.bn_training == 1;
    if (l.st) {
        onnx_net_free(net);
        return l.st;
    }
    *out = net;
    return DEBA_OK;
}

/* The two lowerings of MODEL mode must give the same per-sample graph. */
static int same_graph(const tr_graph *a, const tr_graph *b)
{
    if (a->n_tensors != b->n_tensors || a->n_nodes != b->n_nodes || a->n_params != b->n_params) return 0;
    for (int i = 0; i < a->n_tensors; i++) {
        const tr_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (x->rank != y->rank || x->batchless != y->batchless || memcmp(x->dims, y->dims, sizeof x->dims)) return 0;
    }
    return 1;
}

deba_status onnx_lower(const onnx_model *m, const onnx_lower_opts *o, onnx_net **out, deba_err *e)
{
    *out = NULL;
    char *trainable = onnx_trainable_mask(m);   /* one walk: per-value calls would be quadratic */
    if (!trainable) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    deba_status st;
    if (o->mode == ONNX_LOWER_MODEL) {
        onnx_net *a = NULL, *b = NULL;
        st = lower_at(m, o, PROBE_A, trainable, &a, e);
        if (!st) st = lower_at(m, o, PROBE_B, trainable, &b, e);
        if (!st && !same_graph(a->g, b->g))
            st = deba_err_set(e, DEBA_E_UNSUPPORTED,
                              "%s: the graph's shapes depend on the batch size beyond its first dimension "
                              "(a fixed batch in a Reshape or Expand?): export with dynamic_axes={input: {0: 'batch'}}",
                              m->path);
        onnx_net_free(b);
        if (st) onnx_net_free(a);
        else *out = a, a->batch = 0;
    } else {
        /* the leading axis as the batch where every input has the same one; else no batch axis */
        int B = -1;
        for (int k = 0; k < m->n_inputs; k++) {
            const onnx_value *val = &m->values[m->inputs[k]];
            if (o->data && o->as_const && o->as_const[k]) continue;
            const onnx_tensor *dt = o->data ? o->data[k] : NULL;
            int64_t d0 = dt ? (dt->rank >= 1 ? dt->dims[0] : -1) : val->rank >= 1 ? val->dims[0] : -1;
            if (d0 < 1 || d0 > INT32_MAX || (B >= 0 && d0 != B)) B = 0;
            else if (B < 0) B = (int)d0;
        }
        st = DEBA_E_UNSUPPORTED;
        if (B > 0) st = lower_at(m, o, B, trainable, out, e);
        if (st == DEBA_E_UNSUPPORTED) {
            deba_err e2 = {0};
            deba_status s2 = lower_at(m, o, 0, trainable, out, &e2);
            /* both refused: the reason with the batch axis is the one that tells */
            if (s2 != DEBA_E_UNSUPPORTED || B <= 0) st = s2, *e = e2;
        }
        if (!st) (*out)->batch = (*out)->batch > 0 ? (*out)->batch : 1;
    }
    free(trainable);
    return st;
}
