/* EfficientNet-B0 as torchvision.models.efficientnet_b0: MBConv stages with squeeze-and-
 * excitation, stochastic depth rising linearly over the blocks, the same names and init. */
#include "trainer/models/models.h"
#include "trainer/models/blocks.h"

#include <math.h>
#include <stdio.h>
#include "trainer/layers.h"

typedef struct {
    int expand, k, stride, in, out, layers;
} mbconv_cfg;

/* torchvision _efficientnet_conf("efficientnet_b0") (width and depth multipliers 1.0, so
 * _make_divisible and ceil(depth) leave the table as written): expand ratio, kernel, stride,
 * input, output, blocks. */
static const mbconv_cfg B0[] = {
    {1, 3, 1, 32, 16, 1},
    {6, 3, 2, 16, 24, 2},
    {6, 5, 2, 24, 40, 2},
    {6, 3, 2, 40, 80, 3},
    {6, 5, 1, 80, 112, 3},
    {6, 5, 2, 112, 192, 4},
    {6, 3, 1, 192, 320, 1},
};
#define N_STAGES (int)(sizeof B0 / sizeof B0[0])

#define STOCHASTIC_DEPTH 0.2
#define DROPOUT 0.2f
#define BN_EPS 1e-5f        /* B0..B7 use nn.BatchNorm2d's defaults */
#define BN_MOMENTUM 0.1f

static const tr_init ZERO = {TR_INIT_ZERO, 0.f};

static int conv_bn_act(tr_graph *g, const char *p, int x, int cout, int k, int stride, int groups,
                       int act)
{
    return tr_block_conv_bn_act(g, p, x, cout, k, stride, groups, act, BN_EPS, BN_MOMENTUM);
}

/* SqueezeExcitation(c, squeeze, activation=SiLU), scale activation sigmoid. */
static int squeeze_excite(tr_graph *g, const char *p, int x, int c, int squeeze)
{
    return tr_block_squeeze_excite(g, p, x, c, squeeze, TR_ACT_SILU, TR_ACT_SIGMOID);
}

/* MBConv "features.<stage>.<i>": expansion (skipped at ratio 1), depthwise conv, SE with
 * squeeze = max(1, in/4) (of the block input, not the expanded width), linear projection; the
 * residual branch goes through stochastic depth when the block keeps stride and width. */
static int mbconv(tr_graph *g, const char *p, int x, int in, int out, int expand, int k, int stride,
                  float sd_prob)
{
    char q[64], n[96];
    int exp = in * expand, j = 0, input = x;
    if (exp != in) {
        snprintf(q, sizeof q, "%s.block.%d", p, j++);
        x = conv_bn_act(g, q, x, exp, 1, 1, 1, TR_ACT_SILU);
    }
    snprintf(q, sizeof q, "%s.block.%d", p, j++);
    x = conv_bn_act(g, q, x, exp, k, stride, exp, TR_ACT_SILU);
    snprintf(q, sizeof q, "%s.block.%d", p, j++);
    x = squeeze_excite(g, q, x, exp, in / 4 > 1 ? in / 4 : 1);
    snprintf(q, sizeof q, "%s.block.%d", p, j++);
    x = conv_bn_act(g, q, x, out, 1, 1, 1, -1);
    if (stride == 1 && in == out) {
        /* StochasticDepth(p = 0) is the identity: no node for it. */
        if (sd_prob > 0.f) {
            snprintf(n, sizeof n, "%s.stochastic_depth", p);
            x = tr_drop_path(g, n, x, sd_prob);
        }
        snprintf(n, sizeof n, "%s.add", p);
        x = tr_add(g, n, x, input);
    }
    return x;
}

int tr_build_efficientnet_b0(tr_graph *g, int x, int classes)
{
    x = conv_bn_act(g, "features.0", x, B0[0].in, 3, 2, 1, TR_ACT_SILU);
    int total = 0, block_id = 0;
    for (int s = 0; s < N_STAGES; s++) total += B0[s].layers;
    for (int s = 0; s < N_STAGES; s++) {
        const mbconv_cfg *c = &B0[s];
        for (int i = 0; i < c->layers; i++) {
            char p[40];
            snprintf(p, sizeof p, "features.%d.%d", s + 1, i);
            /* torchvision computes this in double (float(block_id) / total). */
            float sd = (float)(STOCHASTIC_DEPTH * (double)block_id / total);
            x = mbconv(g, p, x, i ? c->out : c->in, c->out, c->expand, c->k, i ? 1 : c->stride, sd);
            block_id++;
        }
    }
    int last_in = B0[N_STAGES - 1].out;
    char p[32];
    snprintf(p, sizeof p, "features.%d", N_STAGES + 1);
    x = conv_bn_act(g, p, x, 4 * last_in, 1, 1, 1, TR_ACT_SILU);
    x = tr_adaptive_avgpool(g, "avgpool", x, 1, 1);
    x = tr_flatten(g, "flatten", x);
    x = tr_dropout(g, "classifier.0", x, DROPOUT);
    tr_init w = {TR_INIT_UNIFORM, (float)(1.0 / sqrt((double)classes))};
    x = tr_linear(g, "classifier.1", x, classes, 1, &w, &ZERO);
    return g->failed ? -1 : x;
}
