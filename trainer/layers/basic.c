/* Builders of the non-convolution core layers: batch norm, activations, pooling, linear,
 * residual add, and the views (flatten, reshape). FLOPs count a multiply-add as 2 and other
 * element-wise work as 1 per element (pools: one per window element read). */
#include "trainer/layers.h"
#include "trainer/layers/conv_taps.h"

static const tr_tensor *input_of(tr_graph *g, const char *name, int x)
{
    if (g->failed) return NULL;
    const tr_tensor *t = tr_graph_tensor(g, x);
    if (!t) tr_graph_fail(g, "%s: input %d is not a tensor of this graph", name, x);
    return t;
}

int tr_batchnorm(tr_graph *g, const char *name, int x, float eps, float momentum)
{
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if (!(eps > 0.f) || !(momentum >= 0.f && momentum <= 1.f))
        return tr_graph_fail(g, "%s: batchnorm needs eps > 0 and momentum in [0, 1] (got %g, %g)", name,
                             (double)eps, (double)momentum);
    const int C = t->c;
    const int64_t numel = tr_tensor_numel(t);
    tr_node *nd = tr_graph_add_node(g, TR_OP_BATCHNORM, name, &x, 1, t->c, t->h, t->w);
    if (!nd) return -1;
    int64_t off = tr_graph_add_stats(g, C, 0.f);      /* running_mean */
    if (off < 0 || tr_graph_add_stats(g, C, 1.f) < 0) /* running_var, right after */
        return -1;
    nd->attr.bn = (tr_bn_attr){eps, momentum, off};
    nd->saved_fixed = 2 * (int64_t)C;                  /* mean, rstd */
    nd->flops = 2.0 * (double)numel;                   /* normalise + affine: one multiply-add */
    if (tr_graph_add_param(g, nd, "weight", C, C, C, (tr_init){TR_INIT_ONE, 0.f}) < 0) return -1;
    if (tr_graph_add_param(g, nd, "bias", C, C, C, (tr_init){TR_INIT_ZERO, 0.f}) < 0) return -1;
    return nd->out;
}

int tr_activation(tr_graph *g, const char *name, int x, tr_act kind)
{
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if ((unsigned)kind >= TR_ACT_COUNT) return tr_graph_fail(g, "%s: unknown activation %d", name, (int)kind);
    const int64_t numel = tr_tensor_numel(t);
    tr_node *nd = tr_graph_add_node(g, TR_OP_ACT, name, &x, 1, t->c, t->h, t->w);
    if (!nd) return -1;
    nd->attr.act = kind;
    nd->flops = (double)numel;
    return nd->out;
}

static int pool(tr_graph *g, tr_op op, const char *name, int x, const tr_win *win, int ceil_mode,
                int count_include_pad)
{
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    const char *what = op == TR_OP_MAXPOOL ? "maxpool" : "avgpool";
    if (!win) return tr_graph_fail(g, "%s: %s without a window", name, what);
    const tr_win w = *win;
    if (w.kh <= 0 || w.kw <= 0 || w.sh <= 0 || w.sw <= 0 || w.dh <= 0 || w.dw <= 0 || w.pt < 0 || w.pl < 0 ||
        w.pb < 0 || w.pr < 0 || (ceil_mode != 0 && ceil_mode != 1) ||
        (count_include_pad != 0 && count_include_pad != 1))
        return tr_graph_fail(g,
                             "%s: invalid %s (window %dx%d, stride %dx%d, dilation %dx%d, pads top %d left %d "
                             "bottom %d right %d, ceil_mode %d, count_include_pad %d)",
                             name, what, w.kh, w.kw, w.sh, w.sw, w.dh, w.dw, w.pt, w.pl, w.pb, w.pr, ceil_mode,
                             count_include_pad);
    const int OH = tr_win_out(t->h, w.kh, w.sh, w.dh, w.pt, w.pb, ceil_mode);
    const int OW = tr_win_out(t->w, w.kw, w.sw, w.dw, w.pl, w.pr, ceil_mode), C = t->c;
    if (OH <= 0 || OW <= 0)
        return tr_graph_fail(g,
                             "%s: a %dx%d input padded by (top %d, left %d, bottom %d, right %d) is smaller than "
                             "the %dx%d window dilated by %dx%d",
                             name, t->h, t->w, w.pt, w.pl, w.pb, w.pr, w.kh, w.kw, w.dh, w.dw);
    tr_node *nd = tr_graph_add_node(g, op, name, &x, 1, C, OH, OW);
    if (!nd) return -1;
    nd->attr.pool = (tr_pool_attr){.k = w.kh, .stride = w.sh, .pad = w.pt, .kh = w.kh, .kw = w.kw, .sh = w.sh,
                                   .sw = w.sw, .dh = w.dh, .dw = w.dw, .pt = w.pt, .pl = w.pl, .pb = w.pb, .pr = w.pr,
                                   .ceil_mode = ceil_mode, .count_include_pad = count_include_pad};
    nd->flops = (double)C * OH * OW * w.kh * w.kw;
    if (op == TR_OP_MAXPOOL) nd->saved_per_sample = (int64_t)C * OH * OW;   /* argmax, int32 */
    return nd->out;
}

int tr_maxpool_win(tr_graph *g, const char *name, int x, const tr_win *win, int ceil_mode)
{
    return pool(g, TR_OP_MAXPOOL, name, x, win, ceil_mode, 1);
}

int tr_avgpool_win(tr_graph *g, const char *name, int x, const tr_win *win, int ceil_mode, int count_include_pad)
{
    return pool(g, TR_OP_AVGPOOL, name, x, win, ceil_mode, count_include_pad);
}

int tr_maxpool(tr_graph *g, const char *name, int x, int k, int stride, int pad)
{
    const tr_win w = {k, k, stride, stride, 1, 1, pad, pad, pad, pad};
    return tr_maxpool_win(g, name, x, &w, 0);
}

int tr_avgpool(tr_graph *g, const char *name, int x, int k, int stride, int pad)
{
    const tr_win w = {k, k, stride, stride, 1, 1, pad, pad, pad, pad};
    return tr_avgpool_win(g, name, x, &w, 0, 1);
}

int tr_adaptive_avgpool(tr_graph *g, const char *name, int x, int oh, int ow)
{
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if (oh <= 0 || ow <= 0) return tr_graph_fail(g, "%s: adaptive pooling to %dx%d", name, oh, ow);
    const int64_t numel = tr_tensor_numel(t);
    tr_node *nd = tr_graph_add_node(g, TR_OP_ADAPTIVE_AVGPOOL, name, &x, 1, t->c, oh, ow);
    if (!nd) return -1;
    nd->attr.adapool = (tr_adapool_attr){oh, ow};
    nd->flops = (double)numel;
    return nd->out;
}

int tr_linear(tr_graph *g, const char *name, int x, int out, int bias, const tr_init *w_init,
              const tr_init *b_init)
{
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if (out <= 0) return tr_graph_fail(g, "%s: linear with %d outputs", name, out);
    const int in = t->w, rows = t->c * t->h;
    tr_node *nd = tr_graph_add_node(g, TR_OP_LINEAR, name, &x, 1, t->c, t->h, out);
    if (!nd) return -1;
    nd->attr.linear = (tr_linear_attr){in, out, bias ? 1 : 0};
    nd->flops = 2.0 * rows * (double)in * out + (bias ? (double)rows * out : 0.0);
    tr_init wi = w_init ? *w_init : (tr_init){TR_INIT_TORCH_DEFAULT, 0.f};
    if (tr_graph_add_param(g, nd, "weight", (int64_t)out * in, in, out, wi) < 0) return -1;
    if (bias) {
        tr_init bi = b_init ? *b_init : (tr_init){TR_INIT_TORCH_DEFAULT, 0.f};
        if (tr_graph_add_param(g, nd, "bias", out, in, out, bi) < 0) return -1;
    }
    return nd->out;
}

int tr_add(tr_graph *g, const char *name, int a, int b)
{
    const tr_tensor *ta = input_of(g, name, a), *tb = ta ? input_of(g, name, b) : NULL;
    if (!ta || !tb) return -1;
    if (ta->c != tb->c || ta->h != tb->h || ta->w != tb->w)
        return tr_graph_fail(g, "%s: cannot add shapes (%d, %d, %d) and (%d, %d, %d)", name, ta->c, ta->h, ta->w,
                             tb->c, tb->h, tb->w);
    const int c = ta->c, h = ta->h, w = ta->w;
    const int in[2] = {a, b};
    tr_node *nd = tr_graph_add_node(g, TR_OP_ADD, name, in, 2, c, h, w);
    if (!nd) return -1;
    nd->flops = (double)c * h * w;
    return nd->out;
}

int tr_reshape(tr_graph *g, const char *name, int x, int c, int h, int w)
{
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    if (c <= 0 || h <= 0 || w <= 0 || (int64_t)c * h * w != tr_tensor_numel(t))
        return tr_graph_fail(g, "%s: cannot reshape (%d, %d, %d) to (%d, %d, %d)", name, t->c, t->h, t->w, c, h, w);
    tr_node *nd = tr_graph_add_node(g, TR_OP_VIEW, name, &x, 1, c, h, w);
    return nd ? nd->out : -1;
}

int tr_flatten(tr_graph *g, const char *name, int x)
{
    const tr_tensor *t = input_of(g, name, x);
    if (!t) return -1;
    return tr_reshape(g, name, x, 1, 1, (int)tr_tensor_numel(t));
}
