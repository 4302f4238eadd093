/* DenseNet-121 as torchvision.models.densenet121 (growth 32, blocks 6-12-24-16, bn_size 4,
 * 64 initial features, no dropout). Node names follow torchvision's modules, so parameter names
 * equal state_dict keys ("features.denseblock1.denselayer1.conv1.weight", "classifier.bias"). */
#include "trainer/models/models.h"

#include <stdio.h>
#include "trainer/layers.h"

#define GROWTH 32
#define BN_SIZE 4
#define INIT_FEATURES 64
#define BN_EPS 1e-5f
#define BN_MOM 0.1f

/* torchvision DenseNet.__init__: kaiming_normal_ (default mode fan_in) for convs, BN 1/0,
 * Linear bias 0 (weight keeps nn.Linear's default). */
static const tr_init KAIMING_IN = {TR_INIT_KAIMING_NORMAL_IN, 0.f};
static const tr_init ZERO = {TR_INIT_ZERO, 0.f};

/* norm-relu-conv (no bias), the pre-activation unit DenseNet is made of. */
static int norm_relu_conv(tr_graph *g, const char *p, const char *norm, const char *act,
                          const char *conv, int x, int cout, int k, int pad)
{
    char n[112];
    snprintf(n, sizeof n, "%s%s", p, norm);
    x = tr_batchnorm(g, n, x, BN_EPS, BN_MOM);
    snprintf(n, sizeof n, "%s%s", p, act);
    if (x >= 0) x = tr_activation(g, n, x, TR_ACT_RELU);
    snprintf(n, sizeof n, "%s%s", p, conv);
    if (x >= 0) x = tr_conv2d(g, n, x, cout, k, 1, pad, 1, 0, &KAIMING_IN, NULL);
    return x;
}

/* A dense block: layer i sees the concatenation of the block input and the i-1 earlier layers'
 * outputs. Each concatenation extends the previous one by the newest output, which is the same
 * tensor torch.cat(prev_features) materialises, built with two-input concats. Returns the block
 * output (torch.cat of all features). */
static int dense_block(tr_graph *g, int b, int x, int layers)
{
    char p[80], n[112];
    int cat = x;
    for (int i = 1; i <= layers && cat >= 0; i++) {
        snprintf(p, sizeof p, "features.denseblock%d.denselayer%d.", b, i);
        int y = norm_relu_conv(g, p, "norm1", "relu1", "conv1", cat, BN_SIZE * GROWTH, 1, 0);
        if (y >= 0) y = norm_relu_conv(g, p, "norm2", "relu2", "conv2", y, GROWTH, 3, 1);
        if (y < 0) return -1;
        if (i < layers)
            snprintf(n, sizeof n, "features.denseblock%d.denselayer%d.cat", b, i + 1);
        else
            snprintf(n, sizeof n, "features.denseblock%d.cat", b);
        int two[2] = {cat, y};
        cat = tr_concat(g, n, two, 2);
    }
    return cat;
}

int tr_build_densenet121(tr_graph *g, int x, int classes)
{
    static const int config[4] = {6, 12, 24, 16};
    x = tr_conv2d(g, "features.conv0", x, INIT_FEATURES, 7, 2, 3, 1, 0, &KAIMING_IN, NULL);
    if (x >= 0) x = tr_batchnorm(g, "features.norm0", x, BN_EPS, BN_MOM);
    if (x >= 0) x = tr_activation(g, "features.relu0", x, TR_ACT_RELU);
    if (x >= 0) x = tr_maxpool(g, "features.pool0", x, 3, 2, 1);
    for (int b = 0; b < 4 && x >= 0; b++) {
        x = dense_block(g, b + 1, x, config[b]);
        if (b < 3 && x >= 0) {
            char p[48], n[96];
            snprintf(p, sizeof p, "features.transition%d.", b + 1);
            int c = tr_graph_tensor(g, x)->c;
            x = norm_relu_conv(g, p, "norm", "relu", "conv", x, c / 2, 1, 0);
            snprintf(n, sizeof n, "%spool", p);
            if (x >= 0) x = tr_avgpool(g, n, x, 2, 2, 0);
        }
    }
    if (x >= 0) x = tr_batchnorm(g, "features.norm5", x, BN_EPS, BN_MOM);
    /* DenseNet.forward: F.relu, adaptive_avg_pool2d(1), flatten, classifier. */
    if (x >= 0) x = tr_activation(g, "relu", x, TR_ACT_RELU);
    if (x >= 0) x = tr_adaptive_avgpool(g, "avgpool", x, 1, 1);
    if (x >= 0) x = tr_flatten(g, "flatten", x);
    if (x >= 0) x = tr_linear(g, "classifier", x, classes, 1, NULL, &ZERO);
    return x;
}
