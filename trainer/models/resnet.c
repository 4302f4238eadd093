/* ResNet-18 and ResNet-50 as torchvision.models.resnet (v1.5: the stride sits on the 3x3 conv of
 * a bottleneck). Node names follow the torchvision modules, so parameter names equal state_dict
 * keys ("layer1.0.conv1.weight", "layer2.0.downsample.1.bias", "fc.weight"). */
#include "trainer/models/models.h"

#include <stdio.h>
#include "trainer/layers.h"

/* torchvision ResNet.__init__: kaiming_normal_(mode="fan_out", nonlinearity="relu") for every
 * conv; BN weight 1, bias 0 (the layer's default); fc keeps nn.Linear's default. */
static const tr_init KAIMING_OUT = {TR_INIT_KAIMING_NORMAL_OUT, 0.f};
#define BN_EPS 1e-5f
#define BN_MOM 0.1f

static int conv_bn(tr_graph *g, const char *prefix, const char *conv, const char *bn, int x,
                   int cout, int k, int stride, int pad)
{
    char n[96];
    snprintf(n, sizeof n, "%s%s", prefix, conv);
    x = tr_conv2d(g, n, x, cout, k, stride, pad, 1, 0, &KAIMING_OUT, NULL);
    if (x < 0) return -1;
    snprintf(n, sizeof n, "%s%s", prefix, bn);
    return tr_batchnorm(g, n, x, BN_EPS, BN_MOM);
}

static int relu(tr_graph *g, const char *prefix, const char *name, int x)
{
    char n[96];
    snprintf(n, sizeof n, "%s%s", prefix, name);
    return x < 0 ? -1 : tr_activation(g, n, x, TR_ACT_RELU);
}

/* The residual sum and the final ReLU, with the identity or the downsample branch. */
static int block_out(tr_graph *g, const char *p, int x, int y, int planes_out, int stride)
{
    char n[96];
    int cin = tr_graph_tensor(g, x)->c, sc = x;
    if (stride != 1 || cin != planes_out)
        sc = conv_bn(g, p, "downsample.0", "downsample.1", x, planes_out, 1, stride, 0);
    if (sc < 0 || y < 0) return -1;
    snprintf(n, sizeof n, "%sadd", p);
    return relu(g, p, "relu", tr_add(g, n, y, sc));
}

/* BasicBlock (expansion 1): conv3x3(stride)-bn-relu-conv3x3-bn, + shortcut, relu. */
static int basic_block(tr_graph *g, const char *p, int x, int planes, int stride)
{
    int y = conv_bn(g, p, "conv1", "bn1", x, planes, 3, stride, 1);
    y = relu(g, p, "relu1", y);
    if (y >= 0) y = conv_bn(g, p, "conv2", "bn2", y, planes, 3, 1, 1);
    return block_out(g, p, x, y, planes, stride);
}

/* Bottleneck (expansion 4, width = planes): conv1x1-bn-relu-conv3x3(stride)-bn-relu-conv1x1-bn. */
static int bottleneck(tr_graph *g, const char *p, int x, int planes, int stride)
{
    int y = conv_bn(g, p, "conv1", "bn1", x, planes, 1, 1, 0);
    y = relu(g, p, "relu1", y);
    if (y >= 0) y = conv_bn(g, p, "conv2", "bn2", y, planes, 3, stride, 1);
    y = relu(g, p, "relu2", y);
    if (y >= 0) y = conv_bn(g, p, "conv3", "bn3", y, planes * 4, 1, 1, 0);
    return block_out(g, p, x, y, planes * 4, stride);
}

static int resnet(tr_graph *g, int x, int classes, const int blocks[4], int bottle)
{
    x = conv_bn(g, "", "conv1", "bn1", x, 64, 7, 2, 3);
    x = relu(g, "", "relu", x);
    if (x >= 0) x = tr_maxpool(g, "maxpool", x, 3, 2, 1);
    for (int l = 0; l < 4 && x >= 0; l++) {
        int planes = 64 << l;
        for (int b = 0; b < blocks[l] && x >= 0; b++) {
            char p[48];
            snprintf(p, sizeof p, "layer%d.%d.", l + 1, b);
            int stride = (l > 0 && b == 0) ? 2 : 1;
            x = bottle ? bottleneck(g, p, x, planes, stride) : basic_block(g, p, x, planes, stride);
        }
    }
    if (x >= 0) x = tr_adaptive_avgpool(g, "avgpool", x, 1, 1);
    if (x >= 0) x = tr_flatten(g, "flatten", x);
    if (x >= 0) x = tr_linear(g, "fc", x, classes, 1, NULL, NULL);
    return x;
}

int tr_build_resnet18(tr_graph *g, int x, int classes)
{
    static const int blocks[4] = {2, 2, 2, 2};
    return resnet(g, x, classes, blocks, 0);
}

int tr_build_resnet50(tr_graph *g, int x, int classes)
{
    static const int blocks[4] = {3, 4, 6, 3};
    return resnet(g, x, classes, blocks, 1);
}
