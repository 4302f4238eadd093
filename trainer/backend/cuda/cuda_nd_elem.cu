/* CUDA kernels of the elementwise general-shape ops: binary (numpy broadcasting), unary,
 * expand, mean/sum reduction and softmax, with the arithmetic of layers/nd_math.h and the
 * broadcast strides of backend/nd_iter.h that the CPU uses. Every sum over broadcast elements
 * is a gather with a fixed partition and order (no atomics), so results repeat run to run. */
#include "trainer/backend/cuda/cuda_internal.h"

#include <string.h>

extern "C" {
#include "trainer/backend/nd_iter.h"
#include "trainer/layers/nd_math.h"
}

#define ND_GRID_STRIDE(i, total) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (total); i += (int64_t)gridDim.x * blockDim.x)

/* one warp per row, warps striding over the rows */
#define ND_WARP_ROWS(r, rows)                                                                  \
    const int lane = threadIdx.x % 32;                                                         \
    for (int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32; r < (rows); \
         r += (int64_t)gridDim.x * (blockDim.x / 32))

static inline tr_tensor *in_t(tr_graph *g, const tr_node *nd, int k) { return &g->tensors[nd->in[k]]; }
static inline tr_tensor *out_t(tr_graph *g, const tr_node *nd) { return &g->tensors[nd->out]; }

/* Same per-sample shape and batchedness as the output: no broadcasting (as cpu_nd_elem.c). */
static int same_shape(const tr_tensor *x, const tr_tensor *y)
{
    if (x->batchless != y->batchless || tr_tensor_numel(x) != tr_tensor_numel(y)) return 0;
    int r = x->rank > y->rank ? x->rank : y->rank;
    for (int i = 0; i < r; i++) {
        int ix = i - (r - x->rank), iy = i - (r - y->rank);
        if ((ix >= 0 ? x->dims[ix] : 1) != (iy >= 0 ? y->dims[iy] : 1)) return 0;
    }
    return 1;
}

/* offsets of operands 1 and 2 at flat index i of the space (operand 0 sits at i) */
__device__ static inline void it_offsets(const tr_nd_iter &it, int64_t i, int64_t *o1, int64_t *o2)
{
    int64_t a = 0, b = 0;
    for (int d = it.rank - 1; d >= 0; d--) {
        int64_t c = i % it.dim[d];
        i /= it.dim[d];
        a += c * it.st[1][d];
        b += c * it.st[2][d];
    }
    *o1 = a;
    *o2 = b;
}

/* ---- maps over the space ---- */

__global__ void k_bin_flat(tr_binary_kind kind, float *y, const float *a, const float *b, int64_t total)
{
    ND_GRID_STRIDE(i, total) y[i] = tr_binary_forward(kind, a[i], b[i]);
}

__global__ void k_bin_bcast(tr_binary_kind kind, tr_nd_iter it, float *y, const float *a, const float *b, int64_t total)
{
    ND_GRID_STRIDE(i, total)
    {
        int64_t oa, ob;
        it_offsets(it, i, &oa, &ob);
        y[i] = tr_binary_forward(kind, a[oa], b[ob]);
    }
}

__global__ void k_bin_grad_flat(tr_binary_kind kind, int which, float *g, const float *a, const float *b,
                                const float *y, const float *dy, int64_t total)
{
    ND_GRID_STRIDE(i, total)
    g[i] += which == 1 ? tr_binary_grad_a(kind, a[i], b[i], y[i], dy[i]) : tr_binary_grad_b(kind, a[i], b[i], y[i], dy[i]);
}

/* y[i] = x[broadcast] (add = 0) or y[i] += scale * x[broadcast] (add = 1) */
__global__ void k_bcast(tr_nd_iter it, float *y, const float *x, float scale, int add, int64_t total)
{
    ND_GRID_STRIDE(i, total)
    {
        int64_t ox, unused;
        it_offsets(it, i, &ox, &unused);
        if (add) y[i] += scale * x[ox];
        else y[i] = x[ox];
    }
}

__global__ void k_un_forward(tr_unary_attr at, float *y, const float *x, int64_t total)
{
    ND_GRID_STRIDE(i, total) y[i] = tr_unary_forward(at.kind, x[i], at.a, at.b);
}

__global__ void k_un_backward(tr_unary_attr at, float *dx, const float *x, const float *y, const float *dy, int64_t total)
{
    ND_GRID_STRIDE(i, total) dx[i] += tr_unary_backward(at.kind, x[i], y[i], dy[i], at.a, at.b);
}

/* ---- sums over broadcast dimensions: one target element per thread or per block ---- */

/* The space split for target operand k: its own (kept) dimensions, which enumerate its
 * elements in memory order, and the broadcast (reduced) ones, m elements per target. */
typedef struct {
    int nk, nr;
    int64_t kdim[TR_ND_DIMS], kst[TR_ND_OPS][TR_ND_DIMS];
    int64_t rdim[TR_ND_DIMS], rst[TR_ND_OPS][TR_ND_DIMS];
    int64_t m, targets;
} nd_split;

enum { RED_SUM, RED_GRAD_A, RED_GRAD_B };

typedef struct {
    int mode;                 /* RED_*: Σ op0 values, Σ ∂/∂a, Σ ∂/∂b */
    tr_binary_kind kind;
    const float *src;         /* operand 0's values (x to reduce) or gradient (dy) */
    const float *y, *a, *b;   /* binary: operand 0's values and the two inputs */
    float *dst;               /* target, memory order */
    float scale;
    int add;                  /* 1: dst += scale Σ; 0: dst = scale Σ */
} red_args;

static nd_split split_of(const tr_nd_iter *it, int k)
{
    nd_split s;
    memset(&s, 0, sizeof s);
    s.m = 1;
    s.targets = 1;
    for (int d = 0; d < it->rank; d++) {
        int kept = it->st[k][d] != 0;
        int j = kept ? s.nk++ : s.nr++;
        for (int op = 0; op < it->nops; op++) (kept ? s.kst : s.rst)[op][j] = it->st[op][d];
        (kept ? s.kdim : s.rdim)[j] = it->dim[d];
        if (kept) s.targets *= it->dim[d];
        else s.m *= it->dim[d];
    }
    return s;
}

__device__ static inline void split_base(const nd_split &s, int64_t j, int64_t *o)
{
    o[0] = o[1] = o[2] = 0;
    for (int d = s.nk - 1; d >= 0; d--) {
        int64_t c = j % s.kdim[d];
        j /= s.kdim[d];
        o[0] += c * s.kst[0][d];
        o[1] += c * s.kst[1][d];
        o[2] += c * s.kst[2][d];
    }
}

__device__ static inline float red_term(const nd_split &s, const red_args &r, const int64_t *base, int64_t m)
{
    int64_t o0 = base[0], o1 = base[1], o2 = base[2];
    for (int d = s.nr - 1; d >= 0; d--) {
        int64_t c = m % s.rdim[d];
        m /= s.rdim[d];
        o0 += c * s.rst[0][d];
        o1 += c * s.rst[1][d];
        o2 += c * s.rst[2][d];
    }
    switch (r.mode) {
    case RED_SUM: return r.src[o0];
    case RED_GRAD_A: return tr_binary_grad_a(r.kind, r.a[o1], r.b[o2], r.y[o0], r.src[o0]);
    default: return tr_binary_grad_b(r.kind, r.a[o1], r.b[o2], r.y[o0], r.src[o0]);
    }
}

__device__ static inline void red_store(const red_args &r, int64_t j, float acc)
{
    r.dst[j] = r.add ? r.dst[j] + r.scale * acc : r.scale * acc;
}

__global__ void k_reduce_thread(nd_split s, red_args r)
{
    ND_GRID_STRIDE(j, s.targets)
    {
        int64_t base[3];
        split_base(s, j, base);
        float acc = 0.f;
        for (int64_t m = 0; m < s.m; m++) acc += red_term(s, r, base, m);
        red_store(r, j, acc);
    }
}

#define RED_THREADS 256

__global__ void k_reduce_block(nd_split s, red_args r)
{
    __shared__ float sh[RED_THREADS];
    for (int64_t j = blockIdx.x; j < s.targets; j += gridDim.x) {
        int64_t base[3];
        split_base(s, j, base);
        float acc = 0.f;
        for (int64_t m = threadIdx.x; m < s.m; m += RED_THREADS) acc += red_term(s, r, base, m);
        sh[threadIdx.x] = acc;
        __syncthreads();
        for (int w = RED_THREADS / 2; w > 0; w >>= 1) {
            if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
            __syncthreads();
        }
        if (threadIdx.x == 0) red_store(r, j, sh[0]);
        __syncthreads();
    }
}

/* Few targets with many elements each (a bias over a whole batch): a block each; otherwise a
 * thread each, neighbouring threads on neighbouring targets. */
static void reduce_into(const tr_nd_iter *it, int k, const red_args &r)
{
    nd_split s = split_of(it, k);
    if (s.targets >= 4096 || s.m <= 64) {
        k_reduce_thread<<<cu_blocks(s.targets, 256), 256>>>(s, r);
    } else {
        unsigned blocks = (unsigned)(s.targets < 65535 ? s.targets : 65535);
        k_reduce_block<<<blocks, RED_THREADS>>>(s, r);
    }
    CU_LAUNCHED();
}

/* ---- binary ---- */

static void binary_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *a = in_t(g, nd, 0), *b = in_t(g, nd, 1);
    tr_tensor *y = out_t(g, nd);
    if (y->batchless) n = 1;
    const int64_t total = tr_tensor_elems(y, n);
    if (total <= 0) return;
    const tr_binary_kind kind = nd->attr.binary.kind;
    if (same_shape(a, y) && same_shape(b, y)) {
        k_bin_flat<<<cu_blocks(total, 256), 256>>>(kind, y->data, a->data, b->data, total);
    } else {
        tr_nd_iter it;
        const tr_tensor *ops[3] = {y, a, b};
        tr_nd_iter_init(&it, n, ops, 3);
        k_bin_bcast<<<cu_blocks(total, 256), 256>>>(kind, it, y->data, a->data, b->data, total);
    }
    CU_LAUNCHED();
}

static void binary_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *a = in_t(g, nd, 0), *b = in_t(g, nd, 1);
    const tr_tensor *y = out_t(g, nd);
    if (y->batchless) n = 1;
    const int64_t total = tr_tensor_elems(y, n);
    if (total <= 0) return;
    const tr_binary_kind kind = nd->attr.binary.kind;
    if (same_shape(a, y) && same_shape(b, y)) {
        for (int k = 1; k <= 2; k++) {
            float *gr = (k == 1 ? a : b)->grad;
            if (!gr) continue;
            k_bin_grad_flat<<<cu_blocks(total, 256), 256>>>(kind, k, gr, a->data, b->data, y->data, y->grad, total);
            CU_LAUNCHED();
        }
        return;
    }
    tr_nd_iter it;
    const tr_tensor *ops[3] = {y, a, b};
    tr_nd_iter_init(&it, n, ops, 3);
    for (int k = 1; k <= 2; k++) {
        float *gr = (k == 1 ? a : b)->grad;
        if (!gr) continue;
        red_args r = {k == 1 ? RED_GRAD_A : RED_GRAD_B, kind, y->grad, y->data, a->data, b->data, gr, 1.f, 1};
        reduce_into(&it, k, r);
    }
}

/* ---- unary ---- */

static void unary_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    if (y->batchless) n = 1;
    const int64_t total = tr_tensor_elems(y, n);
    if (total <= 0) return;
    k_un_forward<<<cu_blocks(total, 256), 256>>>(nd->attr.unary, y->data, x->data, total);
    CU_LAUNCHED();
}

static void unary_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    if (y->batchless) n = 1;
    const int64_t total = tr_tensor_elems(y, n);
    if (total <= 0) return;
    k_un_backward<<<cu_blocks(total, 256), 256>>>(nd->attr.unary, x->grad, x->data, y->data, y->grad, total);
    CU_LAUNCHED();
}

/* ---- expand and reduce ---- */

static void expand_forward(tr_graph *g, tr_node *nd, int n)
{
    const tr_tensor *x = in_t(g, nd, 0);
    tr_tensor *y = out_t(g, nd);
    const int64_t total = tr_tensor_elems(y, n);
    if (total <= 0) return;
    tr_nd_iter it;
    const tr_tensor *ops[2] = {y, x};
    tr_nd_iter_init(&it, n, ops, 2);
    k_bcast<<<cu_blocks(total, 256), 256>>>(it, y->data, x->data, 1.f, 0, total);
    CU_LAUNCHED();
}

static void expand_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    tr_nd_iter it;
    const tr_tensor *ops[2] = {y, x};
    tr_nd_iter_init(&it, n, ops, 2);
    red_args r = {RED_SUM, TR_BIN_ADD, y->grad, NULL, NULL, NULL, x->grad, 1.f, 1};
    reduce_into(&it, 1, r);
}

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
    tr_nd_iter it;
    const tr_tensor *ops[2] = {x, y};
    tr_nd_iter_init(&it, n, ops, 2);
    red_args r = {RED_SUM, TR_BIN_ADD, x->data, NULL, NULL, NULL, y->data, reduce_scale(x, nd), 0};
    reduce_into(&it, 1, r);
}

static void reduce_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    if (y->batchless) n = 1;
    const int64_t total = tr_tensor_elems(x, n);
    if (total <= 0) return;
    tr_nd_iter it;
    const tr_tensor *ops[2] = {x, y};
    tr_nd_iter_init(&it, n, ops, 2);
    k_bcast<<<cu_blocks(total, 256), 256>>>(it, x->grad, y->grad, reduce_scale(x, nd), 1, total);
    CU_LAUNCHED();
}

/* ---- softmax: rows of len elements `inner` apart; a warp per contiguous row, else a thread
 * per row (neighbouring threads on neighbouring columns, so the loads coalesce) ---- */

__device__ static inline float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ static inline float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void k_softmax_warp(float *y, const float *x, int64_t rows, int len)
{
    ND_WARP_ROWS(r, rows)
    {
        const float *xr = x + r * len;
        float *yr = y + r * len;
        float m = -INFINITY;
        for (int j = lane; j < len; j += 32) m = fmaxf(m, xr[j]);
        m = warp_max(m);
        float s = 0.f;
        for (int j = lane; j < len; j += 32) {
            float e = expf(xr[j] - m);
            yr[j] = e;
            s += e;
        }
        const float is = 1.f / warp_sum(s);
        for (int j = lane; j < len; j += 32) yr[j] *= is;
    }
}

__global__ void k_softmax_backward_warp(float *dx, const float *y, const float *dy, int64_t rows, int len)
{
    ND_WARP_ROWS(r, rows)
    {
        const float *yr = y + r * len, *dr = dy + r * len;
        float dot = 0.f;
        for (int j = lane; j < len; j += 32) dot += dr[j] * yr[j];
        dot = warp_sum(dot);
        for (int j = lane; j < len; j += 32) dx[r * len + j] += yr[j] * (dr[j] - dot);
    }
}

__global__ void k_softmax_strided(float *y, const float *x, int64_t rows, int len, int64_t inner)
{
    ND_GRID_STRIDE(r, rows)
    {
        const int64_t base = (r / inner) * len * inner + r % inner;
        const float *xr = x + base;
        float *yr = y + base;
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

__global__ void k_softmax_backward_strided(float *dx, const float *y, const float *dy, int64_t rows, int len,
                                           int64_t inner)
{
    ND_GRID_STRIDE(r, rows)
    {
        const int64_t base = (r / inner) * len * inner + r % inner;
        float dot = 0.f;
        for (int j = 0; j < len; j++) dot += dy[base + j * inner] * y[base + j * inner];
        for (int j = 0; j < len; j++)
            dx[base + j * inner] += y[base + j * inner] * (dy[base + j * inner] - dot);
    }
}

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
    if (inner == 1)
        k_softmax_warp<<<cu_blocks(outer * 32, 256), 256>>>(y->data, x->data, outer, len);
    else
        k_softmax_strided<<<cu_blocks(outer * inner, 256), 256>>>(y->data, x->data, outer * inner, len, inner);
    CU_LAUNCHED();
}

static void softmax_backward(tr_graph *g, tr_node *nd, int n)
{
    tr_tensor *x = in_t(g, nd, 0);
    const tr_tensor *y = out_t(g, nd);
    if (!x->grad) return;
    int64_t outer, inner;
    int len;
    softmax_geometry(x, nd->attr.axis.axis, n, &outer, &len, &inner);
    if (inner == 1)
        k_softmax_backward_warp<<<cu_blocks(outer * 32, 256), 256>>>(x->grad, y->data, y->grad, outer, len);
    else
        k_softmax_backward_strided<<<cu_blocks(outer * inner, 256), 256>>>(x->grad, y->data, y->grad, outer * inner,
                                                                           len, inner);
    CU_LAUNCHED();
}

void tr_cuda_register_nd_elem(tr_backend *be)
{
#define ND_OP(op, fam) be->forward[op] = fam##_forward, be->backward[op] = fam##_backward
    ND_OP(TR_OP_BINARY, binary);
    ND_OP(TR_OP_UNARY, unary);
    ND_OP(TR_OP_EXPAND, expand);
    ND_OP(TR_OP_REDUCE, reduce);
    ND_OP(TR_OP_SOFTMAX, softmax);
#undef ND_OP
}
