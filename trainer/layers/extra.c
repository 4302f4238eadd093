/* Builders of the ops DenseNet, EfficientNet, MobileNetV3 and ViT add: shape checks, torchvision
 * parameters and init, saved and scratch sizes, FLOPs. Kernels: backend/cpu/ops_extra.c,
 * backend/cpu/attention.c. */
#include <stdlib.h>
#include <string.h>

#include "trainer/layers.h"

/* The input tensor, or NULL after recording an error naming the layer. */
static const tr_tensor *input_of(tr_graph *g, const char *name, int x)
{
    if (x < 0 || x >= g->n_tensors) {
        tr_graph_fail(g, "%s: input tensor %d does not exist", name, x);
        return NULL;
    }
    return &g->tensors[x];
}

/* One concat node of 1..TR_MAX_IN inputs already checked. */
static int concat_node(tr_graph *g, const char *name, const int *xs, int n)
{
    const tr_tensor *x0 = &g->tensors[xs[0]];
    int c = 0, h = x0->h, w = x0->w;
    for (int i = 0; i < n; i++) c += g->tensors[xs[i]].c;
    tr_node *nd = tr_graph_add_node(g, TR_OP_CONCAT, name, xs, n, c, h, w);
    if (!nd) return -1;
    nd->flops = 0.0;
    return nd->out;
}

/* A node takes at most TR_MAX_IN inputs, so a longer concat merges contiguous runs of inputs
 * first, taking runs from the back (in DenseNet the first input, the block's input, is the
 * widest) and never merging a merged run again until every input has been merged once; the
 * fewest possible inputs are copied twice (for 32: 28 of them, for 10: 3). */
int tr_concat(tr_graph *g, const char *name, const int *xs, int n)
{
    if (g->failed) return -1;
    if (n < 1 || !xs) return tr_graph_fail(g, "%s: concat needs at least one input (got %d)", name, n);
    for (int i = 0; i < n; i++) {
        const tr_tensor *x = input_of(g, name, xs[i]);
        if (!x) return -1;
        const tr_tensor *x0 = &g->tensors[xs[0]];   /* checked at i = 0 */
        if (x->h != x0->h || x->w != x0->w)
            return tr_graph_fail(g, "%s: concat input %d is %dx%d, input 0 is %dx%d", name, i,
                                 x->h, x->w, x0->h, x0->w);
    }
    if (n == 1) return xs[0];                 /* torch.cat of one tensor: no copy needed */
    if (n <= TR_MAX_IN) return concat_node(g, name, xs, n);

    int *ids = malloc((size_t)n * sizeof *ids);
    if (!ids) return tr_graph_fail(g, "%s: out of memory", name);
    memcpy(ids, xs, (size_t)n * sizeof *ids);
    int cnt = n, hi = n, part = 0;
    while (cnt > TR_MAX_IN) {
        if (hi < 2) hi = cnt;                 /* every input merged once: start another level */
        int r = cnt - TR_MAX_IN + 1;
        if (r > TR_MAX_IN) r = TR_MAX_IN;
        if (r > hi) r = hi;
        int lo = hi - r;
        char pname[sizeof g->nodes[0].name];
        snprintf(pname, sizeof pname, "%s.part%d", name, part++);
        int id = concat_node(g, pname, ids + lo, r);
        if (id < 0) {
            free(ids);
            return -1;
        }
        ids[lo] = id;
        memmove(ids + lo + 1, ids + hi, (size_t)(cnt - hi) * sizeof *ids);
        cnt -= r - 1;
        hi = lo;
    }
    int out = concat_node(g, name, ids, cnt);
    free(ids);
    return out;
}

int tr_mul_channel(tr_graph *g, const char *name, int x, int s)
{
    if (g->failed) return -1;
    const tr_tensor *tx = input_of(g, name, x), *ts = input_of(g, name, s);
    if (!tx || !ts) return -1;
    if (ts->c != tx->c || ts->h != 1 || ts->w != 1)
        return tr_graph_fail(g, "%s: scale is (%d,%d,%d), expected (%d,1,1) for input (%d,%d,%d)",
                             name, ts->c, ts->h, ts->w, tx->c, tx->c, tx->h, tx->w);
    int c = tx->c, h = tx->h, w = tx->w;
    int in[2] = {x, s};
    tr_node *nd = tr_graph_add_node(g, TR_OP_MUL_CHANNEL, name, in, 2, c, h, w);
    if (!nd) return -1;
    nd->flops = (double)c * h * w;
    return nd->out;
}

/* dropout and drop_path: same checks, different saved sizes */
static int drop_node(tr_graph *g, tr_op op, const char *name, int x, float p)
{
    if (g->failed) return -1;
    const tr_tensor *tx = input_of(g, name, x);
    if (!tx) return -1;
    if (!(p >= 0.f && p <= 1.f))
        return tr_graph_fail(g, "%s: drop probability %g is outside [0, 1]", name, (double)p);
    int c = tx->c, h = tx->h, w = tx->w;
    tr_node *nd = tr_graph_add_node(g, op, name, &x, 1, c, h, w);
    if (!nd) return -1;
    nd->attr.drop.p = p;
    /* inverted-dropout mask per element (0 or 1/(1-p)); drop-path one scale per sample */
    nd->saved_per_sample = op == TR_OP_DROPOUT ? (int64_t)c * h * w : 1;
    nd->flops = (double)c * h * w;
    return nd->out;
}

int tr_dropout(tr_graph *g, const char *name, int x, float p)
{
    return drop_node(g, TR_OP_DROPOUT, name, x, p);
}

int tr_drop_path(tr_graph *g, const char *name, int x, float p)
{
    return drop_node(g, TR_OP_DROP_PATH, name, x, p);
}

int tr_layernorm(tr_graph *g, const char *name, int x, float eps)
{
    if (g->failed) return -1;
    const tr_tensor *tx = input_of(g, name, x);
    if (!tx) return -1;
    if (!(eps > 0.f)) return tr_graph_fail(g, "%s: layernorm eps must be positive", name);
    int c = tx->c, h = tx->h, w = tx->w;
    tr_node *nd = tr_graph_add_node(g, TR_OP_LAYERNORM, name, &x, 1, c, h, w);
    if (!nd) return -1;
    nd->attr.ln.eps = eps;
    nd->saved_per_sample = 2 * (int64_t)c * h;            /* mean, rstd per row */
    nd->flops = 8.0 * c * h * w;
    tr_init one = {TR_INIT_ONE, 0.f}, zero = {TR_INIT_ZERO, 0.f};
    if (tr_graph_add_param(g, nd, "weight", w, w, w, one) < 0) return -1;
    if (tr_graph_add_param(g, nd, "bias", w, w, w, zero) < 0) return -1;
    return g->failed ? -1 : nd->out;
}

int tr_attention(tr_graph *g, const char *name, int x, int heads)
{
    if (g->failed) return -1;
    const tr_tensor *tx = input_of(g, name, x);
    if (!tx) return -1;
    int t = tx->c, d = tx->w;
    if (tx->h != 1)
        return tr_graph_fail(g, "%s: attention expects tokens (T,1,D), got (%d,%d,%d)", name, tx->c,
                             tx->h, tx->w);
    if (heads < 1 || d % heads)
        return tr_graph_fail(g, "%s: embedding dim %d is not divisible by %d heads", name, d, heads);
    tr_node *nd = tr_graph_add_node(g, TR_OP_ATTENTION, name, &x, 1, t, 1, d);
    if (!nd) return -1;
    nd->attr.attn.heads = heads;
    /* qkv (T,3D), probabilities (heads,T,T), heads' output (T,D) */
    nd->saved_per_sample = (int64_t)t * 3 * d + (int64_t)heads * t * t + (int64_t)t * d;
    /* backward scratch: dctx (T,D), dqkv (T,3D), dscores (heads,T,T), in chunks of samples
     * whose scratch stays near 64 MB; chunking only bounds memory, the result is the same */
    nd->ws_per_sample = (int64_t)t * 4 * d + (int64_t)heads * t * t;
    int64_t chunk = ((int64_t)1 << 24) / nd->ws_per_sample;
    nd->ws_max_samples = chunk < 1 ? 1 : (chunk > (1 << 20) ? (1 << 20) : (int)chunk);
    nd->flops = 2.0 * t * d * 4.0 * d + 4.0 * (double)t * t * d;
    /* nn.MultiheadAttention._reset_parameters: xavier_uniform in_proj_weight, zero biases;
     * out_proj keeps nn.Linear's kaiming_uniform(a=sqrt(5)) weight = U(±1/sqrt(D)) */
    tr_init xavier = {TR_INIT_XAVIER_UNIFORM, 1.f}, zero = {TR_INIT_ZERO, 0.f},
            dflt = {TR_INIT_TORCH_DEFAULT, 0.f};
    if (tr_graph_add_param(g, nd, "in_proj_weight", (int64_t)3 * d * d, d, 3 * d, xavier) < 0) return -1;
    if (tr_graph_add_param(g, nd, "in_proj_bias", (int64_t)3 * d, 3 * d, 1, zero) < 0) return -1;
    if (tr_graph_add_param(g, nd, "out_proj.weight", (int64_t)d * d, d, d, dflt) < 0) return -1;
    if (tr_graph_add_param(g, nd, "out_proj.bias", d, d, 1, zero) < 0) return -1;
    return g->failed ? -1 : nd->out;
}

int tr_patch_tokens(tr_graph *g, const char *name, int x)
{
    if (g->failed) return -1;
    const tr_tensor *tx = input_of(g, name, x);
    if (!tx) return -1;
    int d = tx->c, t = 1 + tx->h * tx->w;
    tr_node *nd = tr_graph_add_node(g, TR_OP_PATCH_TOKENS, name, &x, 1, t, 1, d);
    if (!nd) return -1;
    nd->flops = (double)t * d;
    tr_init zero = {TR_INIT_ZERO, 0.f}, normal = {TR_INIT_NORMAL, 0.02f};
    if (tr_graph_add_param(g, nd, "class_token", d, d, 1, zero) < 0) return -1;
    if (tr_graph_add_param(g, nd, "pos_embedding", (int64_t)t * d, (int64_t)t * d, 1, normal) < 0)
        return -1;
    return g->failed ? -1 : nd->out;
}

int tr_select_token(tr_graph *g, const char *name, int x, int token)
{
    if (g->failed) return -1;
    const tr_tensor *tx = input_of(g, name, x);
    if (!tx) return -1;
    if (token < 0 || token >= tx->c)
        return tr_graph_fail(g, "%s: token %d out of range [0, %d)", name, token, tx->c);
    tr_node *nd = tr_graph_add_node(g, TR_OP_SELECT_TOKEN, name, &x, 1, 1, tx->h, tx->w);
    if (!nd) return -1;
    nd->attr.token = token;
    nd->flops = 0.0;
    return nd->out;
}
