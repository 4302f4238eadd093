/* MobileNetV3-Large as torchvision.models.mobilenet_v3_large (width 1.0, no dilation): the same
 * block table, layer names, BatchNorm settings and initialisation, so parameter counts match. */
#include "trainer/models/models.h"
#include "trainer/models/blocks.h"

#include <stdio.h>
#include "trainer/layers.h"

/* torchvision's _make_divisible (from the TensorFlow reference): round to the nearest multiple
 * of divisor, but never go more than 10% below v. */
static int make_divisible(double v, int divisor)
{
    int nv = (int)(v + divisor / 2.0) / divisor * divisor;
    if (nv < divisor) nv = divisor;
    if (nv < 0.9 * v) nv += divisor;
    return nv;
}

typedef struct {
    int in, k, exp, out, se, hs, stride;
} mbv3_cfg;

/* torchvision _mobilenet_v3_conf("mobilenet_v3_large"): input, kernel, expanded, out, SE,
 * hardswish (else ReLU), stride. */
static const mbv3_cfg LARGE[] = {
    {16, 3, 16, 16, 0, 0, 1},
    {16, 3, 64, 24, 0, 0, 2},
    {24, 3, 72, 24, 0, 0, 1},
    {24, 5, 72, 40, 1, 0, 2},
    {40, 5, 120, 40, 1, 0, 1},
    {40, 5, 120, 40, 1, 0, 1},
    {40, 3, 240, 80, 0, 1, 2},
    {80, 3, 200, 80, 0, 1, 1},
    {80, 3, 184, 80, 0, 1, 1},
    {80, 3, 184, 80, 0, 1, 1},
    {80, 3, 480, 112, 1, 1, 1},
    {112, 3, 672, 112, 1, 1, 1},
    {112, 5, 672, 160, 1, 1, 2},
    {160, 5, 960, 160, 1, 1, 1},
    {160, 5, 960, 160, 1, 1, 1},
};
#define N_LARGE (int)(sizeof LARGE / sizeof LARGE[0])

#define BN_EPS 0.001f
#define BN_MOMENTUM 0.01f

static const tr_init ZERO = {TR_INIT_ZERO, 0.f};
static const tr_init LINEAR_W = {TR_INIT_NORMAL, 0.01f};

/* Conv2dNormActivation: bias-free conv "<p>.0", BatchNorm "<p>.1", activation "<p>.2" (act < 0:
 * none). Padding (k-1)/2 as torchvision. */
static int conv_bn_act(tr_graph *g, const char *p, int x, int cout, int k, int stride, int groups,
                       int act)
{
    return tr_block_conv_bn_act(g, p, x, cout, k, stride, groups, act, BN_EPS, BN_MOMENTUM);
}

/* SqueezeExcitation(c, squeeze, scale_activation=Hardsigmoid): global average, two 1x1 convs
 * with biases, channel-wise scale of the block input. */
static int squeeze_excite(tr_graph *g, const char *p, int x, int c, int squeeze)
{
    return tr_block_squeeze_excite(g, p, x, c, squeeze, TR_ACT_RELU, TR_ACT_HSIGMOID);
}

/* InvertedResidual: optional 1x1 expansion, depthwise conv, optional SE, linear 1x1
 * projection, and the identity shortcut when stride is 1 and the width is kept. */
static int inverted_residual(tr_graph *g, int idx, int x, const mbv3_cfg *c)
{
    char p[64], n[96];
    int act = c->hs ? TR_ACT_HSWISH : TR_ACT_RELU;
    int in = x, j = 0;
    if (c->exp != c->in) {
        snprintf(p, sizeof p, "features.%d.block.%d", idx, j++);
        x = conv_bn_act(g, p, x, c->exp, 1, 1, 1, act);
    }
    snprintf(p, sizeof p, "features.%d.block.%d", idx, j++);
    x = conv_bn_act(g, p, x, c->exp, c->k, c->stride, c->exp, act);
    if (c->se) {
        snprintf(p, sizeof p, "features.%d.block.%d", idx, j++);
        x = squeeze_excite(g, p, x, c->exp, make_divisible(c->exp / 4, 8));
    }
    snprintf(p, sizeof p, "features.%d.block.%d", idx, j++);
    x = conv_bn_act(g, p, x, c->out, 1, 1, 1, -1);
    if (c->stride == 1 && c->in == c->out) {
        snprintf(n, sizeof n, "features.%d.add", idx);
        x = tr_add(g, n, x, in);
    }
    return x;
}

int tr_build_mobilenet_v3_large(tr_graph *g, int x, int classes)
{
    x = conv_bn_act(g, "features.0", x, LARGE[0].in, 3, 2, 1, TR_ACT_HSWISH);
    for (int i = 0; i < N_LARGE; i++) x = inverted_residual(g, i + 1, x, &LARGE[i]);
    int last_in = LARGE[N_LARGE - 1].out;
    char p[32];
    snprintf(p, sizeof p, "features.%d", N_LARGE + 1);
    x = conv_bn_act(g, p, x, 6 * last_in, 1, 1, 1, TR_ACT_HSWISH);
    x = tr_adaptive_avgpool(g, "avgpool", x, 1, 1);
    x = tr_flatten(g, "flatten", x);
    x = tr_linear(g, "classifier.0", x, 1280, 1, &LINEAR_W, &ZERO);
    x = tr_activation(g, "classifier.1", x, TR_ACT_HSWISH);
    x = tr_dropout(g, "classifier.2", x, 0.2f);
    x = tr_linear(g, "classifier.3", x, classes, 1, &LINEAR_W, &ZERO);
    return g->failed ? -1 : x;
}
