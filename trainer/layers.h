/* Layer builders: each adds one node (shape inference, parameters with torchvision's init,
 * FLOPs, saved/scratch sizes) and returns the output tensor id, or -1 after a failure (the
 * graph keeps the first error). The arithmetic lives in the backends. */
#ifndef TR_LAYERS_H
#define TR_LAYERS_H

#include "trainer/graph.h"

/* NULL init arguments mean PyTorch's module default (TR_INIT_TORCH_DEFAULT for conv/linear
 * weights and biases). */
int tr_conv2d(tr_graph *g, const char *name, int x, int cout, int k, int stride, int pad,
              int groups, int bias, const tr_init *w_init, const tr_init *b_init);
/* BatchNorm2d over channels c (train: batch statistics, running stats updated as PyTorch with
 * unbiased variance; eval: running stats). weight=1, bias=0. */
int tr_batchnorm(tr_graph *g, const char *name, int x, float eps, float momentum);
int tr_activation(tr_graph *g, const char *name, int x, tr_act kind);
int tr_maxpool(tr_graph *g, const char *name, int x, int k, int stride, int pad);
int tr_avgpool(tr_graph *g, const char *name, int x, int k, int stride, int pad);
int tr_adaptive_avgpool(tr_graph *g, const char *name, int x, int oh, int ow);

/* A kernel window: size, stride, dilation, and padding before/after each spatial axis. */
typedef struct { int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr; } tr_win;
/* ONNX Conv / MaxPool / AveragePool windows. Output size floor((H + pt + pb - dh*(kh-1) - 1)/sh) + 1
 * (ceil with ceil_mode, dropping a last window that would start in the bottom/right padding, as
 * PyTorch); likewise for W. tr_conv2d, tr_maxpool and tr_avgpool are these with a square,
 * symmetric, undilated window (and count_include_pad = 1). */
int tr_conv2d_win(tr_graph *g, const char *name, int x, int cout, const tr_win *win, int groups, int bias, const tr_init *w_init, const tr_init *b_init);
int tr_maxpool_win(tr_graph *g, const char *name, int x, const tr_win *win, int ceil_mode);
int tr_avgpool_win(tr_graph *g, const char *name, int x, const tr_win *win, int ceil_mode, int count_include_pad);
/* y = x W^T + b over the last dim w (rows = N*c*h); W is (out, in) as nn.Linear. */
int tr_linear(tr_graph *g, const char *name, int x, int out, int bias, const tr_init *w_init,
              const tr_init *b_init);
int tr_add(tr_graph *g, const char *name, int a, int b);
int tr_flatten(tr_graph *g, const char *name, int x);               /* (c,h,w) -> (1,1,c*h*w) */
int tr_reshape(tr_graph *g, const char *name, int x, int c, int h, int w);   /* same numel */

/* issue 4 */
int tr_concat(tr_graph *g, const char *name, const int *xs, int n);  /* along c; any n ≥ 1 */
int tr_mul_channel(tr_graph *g, const char *name, int x, int s);     /* s: (c,1,1) */
int tr_dropout(tr_graph *g, const char *name, int x, float p);
int tr_drop_path(tr_graph *g, const char *name, int x, float p);
int tr_layernorm(tr_graph *g, const char *name, int x, float eps);   /* weight=1, bias=0 */
/* nn.MultiheadAttention(D, heads, batch_first) self-attention on (T, D) tokens:
 * params in_proj_weight (3D, D), in_proj_bias (3D), out_proj.weight (D, D), out_proj.bias (D). */
int tr_attention(tr_graph *g, const char *name, int x, int heads);
/* A (D, h, w) feature map -> tokens (T = 1 + h*w, 1, D): transposes to (h*w, D), prepends the
 * class token (param "class_token", zeros) and adds "pos_embedding" (T*D, N(0, 0.02²)).
 * Parameter names follow torchvision's VisionTransformer. */
int tr_patch_tokens(tr_graph *g, const char *name, int x);
int tr_select_token(tr_graph *g, const char *name, int x, int token);

#endif
