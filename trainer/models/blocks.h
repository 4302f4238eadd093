/* Building blocks shared by the torchvision mobile networks (MobileNet-V3, EfficientNet). */
#ifndef TR_BLOCKS_H
#define TR_BLOCKS_H

#include "trainer/graph.h"

/* Conv2dNormActivation: bias-free conv "<p>.0" (kaiming normal fan_out, padding (k-1)/2),
 * BatchNorm "<p>.1", activation "<p>.2" (act < 0: none). */
int tr_block_conv_bn_act(tr_graph *g, const char *p, int x, int cout, int k, int stride, int groups,
                         int act, float bn_eps, float bn_momentum);

/* torchvision SqueezeExcitation: global average "<p>.avgpool", 1x1 conv "<p>.fc1" to `squeeze`
 * channels, `act`, 1x1 conv "<p>.fc2" back to c, `scale_act`, channel-wise scale of x. */
int tr_block_squeeze_excite(tr_graph *g, const char *p, int x, int c, int squeeze, tr_act act,
                            tr_act scale_act);

#endif
