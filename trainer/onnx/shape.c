/* Shapes at batch 1 and the FLOPs of Conv, Gemm and MatMul for `deba-onnx info`. Exporters
 * (PyTorch 1.13 among them) write no shapes for intermediate values, so they are propagated
 * here, evaluating small integer shape subgraphs (Shape → Gather → Concat → Reshape) on the way.
 * The fold pass will do this per batch size for the whole supported table; this is its subset. */
#include "trainer/onnx/onnx.h"

#include <stdlib.h>
#include <string.h>

/* Integer constants longer than this are not shape data; their values are not tracked. */
#define MAX_CONST 64

typedef struct {
    int rank;                    /* -1 unknown */
    int64_t d[ONNX_MAX_DIMS];    /* all >= 0 when rank >= 0 */
    int nc;                      /* entries of c when the value is a known small integer tensor */
    int64_t c[MAX_CONST];
    int has_c;
} shp;

static int64_t numel(const shp *s)
{
    int64_t n = 1;
    for (int k = 0; k < s->rank; k++) {
        if (s->d[k] && n > INT64_MAX / 4 / s->d[k]) return -1;
        n *= s->d[k];
    }
    return n;
}

static void set_dims(shp *s, int rank, const int64_t *d)
{
    s->rank = rank;
    for (int k = 0; k < rank; k++) s->d[k] = d[k];
}

static void set_const(shp *s, const int64_t *c, int64_t n)
{
    if (n < 0 || n > MAX_CONST) return;
    s->nc = (int)n;
    memcpy(s->c, c, (size_t)n * sizeof *c);
    s->has_c = 1;
}

static void from_tensor(shp *s, const onnx_tensor *t)
{
    set_dims(s, t->rank, t->dims);
    if (t->i) set_const(s, t->i, t->numel);
}

static int64_t attr_i(const onnx_node *n, const char *name, int64_t dflt)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    return a && a->type == ONNX_ATTR_INT ? a->i : dflt;
}

static const onnx_attr *attr_ints(const onnx_node *n, const char *name)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    return a && a->type == ONNX_ATTR_INTS ? a : NULL;
}

/* axis in [-rank, rank) → [0, rank), or -1. */
static int norm_axis(int64_t axis, int rank)
{
    if (axis < 0) axis += rank;
    return axis >= 0 && axis < rank ? (int)axis : -1;
}

/* numpy broadcasting of a and b into o; 0 when they do not broadcast. */
static int broadcast(shp *o, const shp *a, const shp *b)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    for (int k = 0; k < r; k++) {
        int ia = k - (r - a->rank), ib = k - (r - b->rank);
        int64_t x = ia >= 0 ? a->d[ia] : 1, y = ib >= 0 ? b->d[ib] : 1;
        if (x != y && x != 1 && y != 1) return 0;
        o->d[k] = x == 1 ? y : x;
    }
    o->rank = r;
    return 1;
}

/* Element k of a broadcast integer constant (rank ≤ 1 operands: shape arithmetic). */
static int64_t cget(const shp *s, int k) { return s->nc == 1 ? s->c[0] : s->c[k]; }

static void eval_binary(shp *o, const char *op, const shp *a, const shp *b)
{
    if (!a->has_c || !b->has_c || a->rank > 1 || b->rank > 1) return;
    int64_t n = numel(o), c[MAX_CONST];
    if (n < 0 || n > MAX_CONST || (a->nc != 1 && a->nc != n) || (b->nc != 1 && b->nc != n)) return;
    for (int k = 0; k < n; k++) {
        int64_t x = cget(a, k), y = cget(b, k);
        if (!strcmp(op, "Add")) c[k] = x + y;
        else if (!strcmp(op, "Sub")) c[k] = x - y;
        else if (!strcmp(op, "Mul")) c[k] = x * y;
        else if (!strcmp(op, "Div")) { if (!y) return; c[k] = x / y; }
        else if (!strcmp(op, "Equal")) c[k] = x == y;
        else return;
    }
    set_const(o, c, n);
}

/* Output spatial size of a window op along one axis (ONNX Conv/MaxPool/AveragePool rules). */
static int64_t window_out(int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t pad0, int64_t pad1,
                          const char *auto_pad, int ceil_mode)
{
    if (auto_pad && (!strcmp(auto_pad, "SAME_UPPER") || !strcmp(auto_pad, "SAME_LOWER")))
        return (in + stride - 1) / stride;
    if (auto_pad && !strcmp(auto_pad, "VALID")) pad0 = pad1 = 0;
    int64_t span = dil * (k - 1) + 1, room = in + pad0 + pad1 - span;
    if (room < 0) return -1;
    int64_t out = (ceil_mode ? (room + stride - 1) / stride : room / stride) + 1;
    /* a ceil_mode window must start inside the input or its leading padding (PyTorch, ONNX) */
    if (ceil_mode && (out - 1) * stride >= in + pad0) out--;
    return out;
}

static void infer_window(shp *o, const onnx_node *n, const shp *x, const shp *w)
{
    int sp = x->rank - 2;
    if (sp < 1 || sp > 3) return;
    const onnx_attr *ks = attr_ints(n, "kernel_shape"), *st = attr_ints(n, "strides"), *dl = attr_ints(n, "dilations"),
                    *pd = attr_ints(n, "pads"), *ap = onnx_node_attr(n, "auto_pad");
    const char *auto_pad = ap && ap->type == ONNX_ATTR_STRING ? ap->s : NULL;
    o->d[0] = x->d[0];
    o->d[1] = w ? w->d[0] : x->d[1];
    for (int k = 0; k < sp; k++) {
        int64_t kk = ks && ks->n == sp ? ks->ints[k] : w && w->rank == x->rank ? w->d[2 + k] : -1;
        int64_t s = st && st->n == sp ? st->ints[k] : 1, dil = dl && dl->n == sp ? dl->ints[k] : 1;
        int64_t p0 = pd && pd->n == 2 * sp ? pd->ints[k] : 0, p1 = pd && pd->n == 2 * sp ? pd->ints[sp + k] : 0;
        if (kk < 1 || s < 1 || dil < 1) return;
        if ((o->d[2 + k] = window_out(x->d[2 + k], kk, s, dil, p0, p1, auto_pad, (int)attr_i(n, "ceil_mode", 0))) < 0)
            return;
    }
    o->rank = x->rank;
}

static void infer_reshape(shp *o, const shp *x, const shp *t)
{
    if (!t->has_c || t->nc > ONNX_MAX_DIMS) return;
    int64_t total = numel(x), known = 1;
    int hole = -1;
    for (int k = 0; k < t->nc; k++) {
        int64_t v = t->c[k];
        if (v == 0) v = k < x->rank ? x->d[k] : -2;
        if (v == -1 && hole < 0) { hole = k; continue; }
        if (v < 0) return;
        o->d[k] = v;
        known *= v;
    }
    if (hole >= 0) {
        if (!known || total % known) return;
        o->d[hole] = total / known;
    }
    o->rank = t->nc;
}

static void infer_node(const onnx_node *n, shp *s)
{
    const char *op = n->op;
    const shp *in[8] = { 0 };
    for (int j = 0; j < n->n_in && j < 8; j++) in[j] = n->in[j] >= 0 && s[n->in[j]].rank >= 0 ? &s[n->in[j]] : NULL;
    if (n->n_out < 1 || n->out[0] < 0) return;
    shp *o = &s[n->out[0]];
    shp r = { .rank = -1 };
    const shp *x = in[0];
    if (!strcmp(op, "Constant")) {
        const onnx_attr *a = n->n_attr == 1 ? &n->attr[0] : NULL;
        if (a && a->type == ONNX_ATTR_TENSOR) from_tensor(&r, a->t);
        else if (a && (a->type == ONNX_ATTR_INT || a->type == ONNX_ATTR_FLOAT)) {
            r.rank = 0;
            if (a->type == ONNX_ATTR_INT) set_const(&r, &a->i, 1);
        } else if (a && (a->type == ONNX_ATTR_INTS || a->type == ONNX_ATTR_FLOATS)) {
            r.rank = 1, r.d[0] = a->n;
            if (a->type == ONNX_ATTR_INTS) set_const(&r, a->ints, a->n);
        }
    } else if (!x) {
        return;
    } else if (!strcmp(op, "Relu") || !strcmp(op, "Sigmoid") || !strcmp(op, "Erf") || !strcmp(op, "Sqrt") ||
               !strcmp(op, "HardSigmoid") || !strcmp(op, "HardSwish") || !strcmp(op, "Dropout") ||
               !strcmp(op, "Clip") || !strcmp(op, "Softmax") || !strcmp(op, "LayerNormalization") ||
               !strcmp(op, "BatchNormalization") || !strcmp(op, "Identity") || !strcmp(op, "Cast")) {
        r = *x;
        if (strcmp(op, "Identity") && strcmp(op, "Cast")) r.has_c = 0;
    } else if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div") ||
               !strcmp(op, "Pow") || !strcmp(op, "Equal")) {
        if (in[1] && broadcast(&r, x, in[1])) eval_binary(&r, op, x, in[1]);
    } else if (!strcmp(op, "Where")) {
        shp t;
        if (in[1] && in[2] && broadcast(&t, x, in[1]) && broadcast(&r, &t, in[2]) && x->has_c && in[1]->has_c &&
            in[2]->has_c && r.rank <= 1) {
            int64_t cnt = numel(&r), c[MAX_CONST];
            if (cnt >= 0 && cnt <= MAX_CONST && (x->nc == 1 || x->nc == cnt) && (in[1]->nc == 1 || in[1]->nc == cnt) &&
                (in[2]->nc == 1 || in[2]->nc == cnt)) {
                for (int k = 0; k < cnt; k++) c[k] = cget(x, k) ? cget(in[1], k) : cget(in[2], k);
                set_const(&r, c, cnt);
            }
        }
    } else if (!strcmp(op, "Conv")) {
        if (in[1]) infer_window(&r, n, x, in[1]);
    } else if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool")) {
        infer_window(&r, n, x, NULL);
    } else if (!strcmp(op, "GlobalAveragePool")) {
        r = *x, r.has_c = 0;
        for (int k = 2; k < r.rank; k++) r.d[k] = 1;
    } else if (!strcmp(op, "ReduceMean")) {
        const onnx_attr *ax = attr_ints(n, "axes");
        int keep = (int)attr_i(n, "keepdims", 1), red[ONNX_MAX_DIMS] = { 0 }, all = 1;
        if (ax) { all = 0; for (int k = 0; k < ax->n; k++) { int a = norm_axis(ax->ints[k], x->rank); if (a < 0) return; red[a] = 1; } }
        else if (in[1] && in[1]->has_c) { all = 0; for (int k = 0; k < in[1]->nc; k++) { int a = norm_axis(in[1]->c[k], x->rank); if (a < 0) return; red[a] = 1; } }
        r.rank = 0;
        for (int k = 0; k < x->rank; k++)
            if (!(all || red[k])) r.d[r.rank++] = x->d[k];
            else if (keep) r.d[r.rank++] = 1;
    } else if (!strcmp(op, "Flatten")) {
        int a = (int)attr_i(n, "axis", 1);
        if (a < 0) a += x->rank;
        if (a < 0 || a > x->rank) return;
        r.rank = 2, r.d[0] = r.d[1] = 1;
        for (int k = 0; k < x->rank; k++) r.d[k >= a] *= x->d[k];
    } else if (!strcmp(op, "Gemm")) {
        if (!in[1] || x->rank != 2 || in[1]->rank != 2) return;
        r.rank = 2;
        r.d[0] = x->d[attr_i(n, "transA", 0) ? 1 : 0];
        r.d[1] = in[1]->d[attr_i(n, "transB", 0) ? 0 : 1];
    } else if (!strcmp(op, "MatMul")) {
        const shp *b = in[1];
        if (!b || x->rank < 1 || b->rank < 1) return;
        shp ba = { .rank = x->rank > 2 ? x->rank - 2 : 0 }, bb = { .rank = b->rank > 2 ? b->rank - 2 : 0 };
        memcpy(ba.d, x->d, sizeof ba.d);
        memcpy(bb.d, b->d, sizeof bb.d);
        if (!broadcast(&r, &ba, &bb) || r.rank + 2 > ONNX_MAX_DIMS) { r.rank = -1; return; }
        if (x->rank >= 2) r.d[r.rank++] = x->d[x->rank - 2];
        if (b->rank >= 2) r.d[r.rank++] = b->d[b->rank - 1];
    } else if (!strcmp(op, "Transpose")) {
        const onnx_attr *p = attr_ints(n, "perm");
        r.rank = x->rank;
        for (int k = 0; k < x->rank; k++) {
            int64_t src = p ? (k < p->n ? p->ints[k] : -1) : x->rank - 1 - k;
            if (src < 0 || src >= x->rank) { r.rank = -1; return; }
            r.d[k] = x->d[src];
        }
    } else if (!strcmp(op, "Concat")) {
        int a = norm_axis(attr_i(n, "axis", 0), x->rank), consts = 1;
        int64_t c[MAX_CONST], nc = 0;
        if (a < 0) return;
        r = *x, r.has_c = 0, r.d[a] = 0;
        for (int j = 0; j < n->n_in; j++) {
            const shp *y = j < 8 ? in[j] : NULL;
            if (!y || y->rank != x->rank) { r.rank = -1; return; }
            r.d[a] += y->d[a];
            if (y->has_c && x->rank == 1 && nc + y->nc <= MAX_CONST) { memcpy(c + nc, y->c, (size_t)y->nc * sizeof *c); nc += y->nc; }
            else consts = 0;
        }
        if (consts && x->rank == 1) set_const(&r, c, nc);
    } else if (!strcmp(op, "Reshape")) {
        if (in[1]) infer_reshape(&r, x, in[1]);
        if (r.rank >= 0 && x->has_c) set_const(&r, x->c, x->nc);   /* same values, new shape */
    } else if (!strcmp(op, "Unsqueeze")) {
        const onnx_attr *ax = attr_ints(n, "axes");
        int64_t axes[ONNX_MAX_DIMS];
        int na = 0, out_rank;
        if (ax && ax->n <= ONNX_MAX_DIMS) for (na = 0; na < ax->n; na++) axes[na] = ax->ints[na];
        else if (in[1] && in[1]->has_c && in[1]->nc <= ONNX_MAX_DIMS) for (na = 0; na < in[1]->nc; na++) axes[na] = in[1]->c[na];
        else return;
        out_rank = x->rank + na;
        if (out_rank > ONNX_MAX_DIMS) return;
        int mark[ONNX_MAX_DIMS] = { 0 };
        for (int k = 0; k < na; k++) { int a = norm_axis(axes[k], out_rank); if (a < 0 || mark[a]) return; mark[a] = 1; }
        r.rank = out_rank;
        for (int k = 0, src = 0; k < out_rank; k++) r.d[k] = mark[k] ? 1 : x->d[src++];
        if (x->has_c) set_const(&r, x->c, x->nc);
    } else if (!strcmp(op, "Shape")) {
        int64_t st = attr_i(n, "start", 0), en = attr_i(n, "end", x->rank);
        if (st < 0) st += x->rank;
        if (en < 0) en += x->rank;
        st = st < 0 ? 0 : st > x->rank ? x->rank : st;
        en = en < st ? st : en > x->rank ? x->rank : en;
        r.rank = 1, r.d[0] = en - st;
        set_const(&r, x->d + st, en - st);
    } else if (!strcmp(op, "Gather")) {
        const shp *idx = in[1];
        int a = norm_axis(attr_i(n, "axis", 0), x->rank);
        if (!idx || a < 0 || x->rank - 1 + idx->rank > ONNX_MAX_DIMS) return;
        r.rank = 0;
        for (int k = 0; k < a; k++) r.d[r.rank++] = x->d[k];
        for (int k = 0; k < idx->rank; k++) r.d[r.rank++] = idx->d[k];
        for (int k = a + 1; k < x->rank; k++) r.d[r.rank++] = x->d[k];
        if (x->has_c && x->rank == 1 && idx->has_c) {
            int64_t c[MAX_CONST];
            for (int k = 0; k < idx->nc; k++) {
                int64_t i = idx->c[k] < 0 ? idx->c[k] + x->nc : idx->c[k];
                if (i < 0 || i >= x->nc) return;
                c[k] = x->c[i];
            }
            set_const(&r, c, idx->nc);
        }
    } else if (!strcmp(op, "Slice")) {
        const shp *st = in[1], *en = in[2], *ax = n->n_in > 3 ? in[3] : NULL, *sp = n->n_in > 4 ? in[4] : NULL;
        if (!st || !en || !st->has_c || !en->has_c || st->nc != en->nc || (ax && !ax->has_c) || (sp && !sp->has_c))
            return;
        r = *x, r.has_c = 0;
        int64_t lo[ONNX_MAX_DIMS] = { 0 }, step[ONNX_MAX_DIMS];
        for (int k = 0; k < x->rank; k++) step[k] = 1;
        for (int k = 0; k < st->nc; k++) {
            int a = norm_axis(ax ? (k < ax->nc ? ax->c[k] : -99) : k, x->rank);
            int64_t s = sp ? (k < sp->nc ? sp->c[k] : 0) : 1, dim = x->d[a < 0 ? 0 : a], b = st->c[k], e = en->c[k];
            if (a < 0 || s == 0) { r.rank = -1; return; }
            if (b < 0) b += dim;
            if (e < 0) e += dim;
            if (s > 0) { b = b < 0 ? 0 : b > dim ? dim : b; e = e < 0 ? 0 : e > dim ? dim : e; r.d[a] = e > b ? (e - b + s - 1) / s : 0; }
            else { b = b < 0 ? -1 : b >= dim ? dim - 1 : b; e = e < -1 ? -1 : e >= dim ? dim - 1 : e; r.d[a] = b > e ? (b - e - s - 1) / -s : 0; }
            lo[a] = b, step[a] = s;
        }
        if (x->has_c && x->rank == 1 && r.d[0] <= MAX_CONST) {
            int64_t c[MAX_CONST];
            for (int64_t k = 0; k < r.d[0]; k++) {
                int64_t i = lo[0] + k * step[0];
                if (i < 0 || i >= x->nc) return;
                c[k] = x->c[i];
            }
            set_const(&r, c, r.d[0]);
        }
    } else if (!strcmp(op, "ConstantOfShape")) {
        if (!x->has_c || x->nc > ONNX_MAX_DIMS) return;
        set_dims(&r, x->nc, x->c);
        for (int k = 0; k < r.rank; k++) if (r.d[k] < 0) { r.rank = -1; return; }
        const onnx_attr *v = onnx_node_attr(n, "value");
        int64_t cnt = numel(&r), fill = v && v->type == ONNX_ATTR_TENSOR && v->t->i && v->t->numel == 1 ? v->t->i[0] : 0;
        if ((!v || (v->type == ONNX_ATTR_TENSOR && v->t->i)) && cnt >= 0 && cnt <= MAX_CONST) {
            int64_t c[MAX_CONST];
            for (int k = 0; k < cnt; k++) c[k] = fill;
            set_const(&r, c, cnt);
        }
    } else if (!strcmp(op, "Expand")) {
        shp t = { .rank = -1 };
        if (!in[1] || !in[1]->has_c || in[1]->nc > ONNX_MAX_DIMS) return;
        set_dims(&t, in[1]->nc, in[1]->c);
        for (int k = 0; k < t.rank; k++) if (t.d[k] < 0) return;
        if (!broadcast(&r, x, &t)) r.rank = -1;
    }
    if (r.rank >= 0) {
        for (int k = 0; k < r.rank; k++) if (r.d[k] < 0) return;
        *o = r;
    }
}

/* Shapes of every value at batch 1 (s[v].rank -1 where unknown); NULL when out of memory. */
static shp *infer(const onnx_model *m)
{
    shp *s = calloc(m->n_values ? (size_t)m->n_values : 1, sizeof *s);
    if (!s) return NULL;
    const onnx_value *in = m->input >= 0 ? &m->values[m->input] : NULL;
    for (int v = 0; v < m->n_values; v++) {
        const onnx_value *val = &m->values[v];
        s[v].rank = -1;
        if (val->init) { from_tensor(&s[v], val->init); continue; }
        if (val->rank < 0) continue;
        /* The file's own annotation, with the model's batch (fixed or symbolic) set to 1. */
        int ok = 1;
        for (int k = 0; k < val->rank; k++) {
            int64_t d = val->dims[k];
            if (k == 0 && in && (val->batched || (val->sym[0] && in->sym[0] && !strcmp(val->sym[0], in->sym[0]))))
                d = 1;
            if (d < 0) ok = 0;
            s[v].d[k] = d;
        }
        if (ok) s[v].rank = val->rank;
    }
    for (int k = 0; k < m->n_nodes; k++)
        if (!*m->nodes[k].domain) infer_node(&m->nodes[k], s);
    return s;
}

int64_t onnx_flops(const onnx_model *m, int *unknown)
{
    shp *s = infer(m);
    int64_t total = 0;
    int miss = 0;
    for (int k = 0; s && k < m->n_nodes; k++) {
        const onnx_node *n = &m->nodes[k];
        int conv = !strcmp(n->op, "Conv"), gemm = !strcmp(n->op, "Gemm"), mm = !strcmp(n->op, "MatMul");
        if (*n->domain || !(conv || gemm || mm)) continue;
        const shp *a = n->n_in > 0 && n->in[0] >= 0 ? &s[n->in[0]] : NULL;
        const shp *b = n->n_in > 1 && n->in[1] >= 0 ? &s[n->in[1]] : NULL;
        const shp *o = n->n_out > 0 && n->out[0] >= 0 ? &s[n->out[0]] : NULL;
        int64_t out = o && o->rank >= 0 ? numel(o) : -1, macs_per_out = -1;
        if (out >= 0 && a && a->rank >= 1 && b && b->rank >= 1) {
            if (conv && b->rank >= 3) {                   /* W (M, C/group, k...) */
                macs_per_out = 1;
                for (int d = 1; d < b->rank; d++) macs_per_out *= b->d[d];
            } else if (gemm && a->rank == 2) {
                macs_per_out = a->d[attr_i(n, "transA", 0) ? 0 : 1];
            } else if (mm) {
                macs_per_out = a->d[a->rank - 1];
            }
        }
        if (macs_per_out < 0 || (macs_per_out && out > INT64_MAX / 2 / macs_per_out)) { miss++; continue; }
        int64_t f = 2 * out * macs_per_out;
        total = total > INT64_MAX - f ? INT64_MAX : total + f;
    }
    int ok = s != NULL;
    free(s);
    if (unknown) *unknown = miss;
    return ok ? total : -1;
}
