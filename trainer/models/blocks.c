/* Conv-BN-activation and squeeze-and-excitation, as torchvision.ops defines them. */
#include "trainer/models/blocks.h"

#include <stdio.h>
#include "trainer/layers.h"

static const tr_init CONV_W = {TR_INIT_KAIMING_NORMAL_OUT, 0.f};
static const tr_init ZERO = {TR_INIT_ZERO, 0.f};

int tr_block_conv_bn_act(tr_graph *g, const char *p, int x, int cout, int k, int stride, int groups,
                         int act, float bn_eps, float bn_momentum)
{
    char n[96];
    snprintf(n, sizeof n, "%s.0", p);
    x = tr_conv2d(g, n, x, cout, k, stride, (k - 1) / 2, groups, 0, &CONV_W, NULL);
    snprintf(n, sizeof n, "%s.1", p);
    x = tr_batchnorm(g, n, x, bn_eps, bn_momentum);
    if (act >= 0) {
        snprintf(n, sizeof n, "%s.2", p);
        x = tr_activation(g, n, x, (tr_act)act);
    }
    return x;
}

int tr_block_squeeze_excite(tr_graph *g, const char *p, int x, int c, int squeeze, tr_act act,
                            tr_act scale_act)
{
    char n[96];
    snprintf(n, sizeof n, "%s.avgpool", p);
    int s = tr_adaptive_avgpool(g, n, x, 1, 1);
    snprintf(n, sizeof n, "%s.fc1", p);
    s = tr_conv2d(g, n, s, squeeze, 1, 1, 0, 1, 1, &CONV_W, &ZERO);
    snprintf(n, sizeof n, "%s.activation", p);
    s = tr_activation(g, n, s, act);
    snprintf(n, sizeof n, "%s.fc2", p);
    s = tr_conv2d(g, n, s, c, 1, 1, 0, 1, 1, &CONV_W, &ZERO);
    snprintf(n, sizeof n, "%s.scale_activation", p);
    s = tr_activation(g, n, s, scale_act);
    snprintf(n, sizeof n, "%s.scale", p);
    return tr_mul_channel(g, n, x, s);
}
