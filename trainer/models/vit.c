/* Vision Transformers as torchvision.models.VisionTransformer: vit_b_16, and vit_tiny (the same
 * code with CIFAR-sized hyper-parameters) for CPU demos and tests. */
#include "trainer/models/models.h"

#include <math.h>
#include <stdio.h>
#include "trainer/layers.h"

typedef struct {
    const char *arch;
    int patch, hidden, layers, heads, mlp;
    float dropout;           /* encoder input, after attention, inside the MLP */
} vit_cfg;

#define LN_EPS 1e-6f

static const tr_init ZERO = {TR_INIT_ZERO, 0.f};
static const tr_init XAVIER = {TR_INIT_XAVIER_UNIFORM, 0.f};
static const tr_init MLP_BIAS = {TR_INIT_NORMAL, 1e-6f};

/* torchvision's Dropout(p = 0) is the identity: no node for it. */
static int maybe_dropout(tr_graph *g, const char *name, int x, float p)
{
    return p > 0.f ? tr_dropout(g, name, x, p) : x;
}

/* EncoderBlock: x + attention(ln_1(x)), then + MLP(ln_2(.)), MLP = Linear, GELU, Dropout,
 * Linear, Dropout (torchvision's MLPBlock, module indices 0..4). */
static int encoder_block(tr_graph *g, const vit_cfg *c, int i, int x)
{
    char p[64], n[96];
    snprintf(p, sizeof p, "encoder.layers.encoder_layer_%d", i);
    snprintf(n, sizeof n, "%s.ln_1", p);
    int y = tr_layernorm(g, n, x, LN_EPS);
    snprintf(n, sizeof n, "%s.self_attention", p);
    y = tr_attention(g, n, y, c->heads);
    snprintf(n, sizeof n, "%s.dropout", p);
    y = maybe_dropout(g, n, y, c->dropout);
    snprintf(n, sizeof n, "%s.add_1", p);
    x = tr_add(g, n, y, x);

    snprintf(n, sizeof n, "%s.ln_2", p);
    y = tr_layernorm(g, n, x, LN_EPS);
    snprintf(n, sizeof n, "%s.mlp.0", p);
    y = tr_linear(g, n, y, c->mlp, 1, &XAVIER, &MLP_BIAS);
    snprintf(n, sizeof n, "%s.mlp.1", p);
    y = tr_activation(g, n, y, TR_ACT_GELU);
    snprintf(n, sizeof n, "%s.mlp.2", p);
    y = maybe_dropout(g, n, y, c->dropout);
    snprintf(n, sizeof n, "%s.mlp.3", p);
    y = tr_linear(g, n, y, c->hidden, 1, &XAVIER, &MLP_BIAS);
    snprintf(n, sizeof n, "%s.mlp.4", p);
    y = maybe_dropout(g, n, y, c->dropout);
    snprintf(n, sizeof n, "%s.add_2", p);
    return tr_add(g, n, x, y);
}

static int build_vit(tr_graph *g, int x, int classes, const vit_cfg *c)
{
    const tr_tensor *in = tr_graph_tensor(g, x);
    if (g->failed || !in) return -1;
    if (in->h % c->patch || in->w % c->patch) {
        int fix = (in->h > in->w ? in->h : in->w);
        fix = (fix + c->patch - 1) / c->patch * c->patch;
        return tr_graph_fail(g,
                             "%s needs an image side that is a multiple of its patch size %d, got "
                             "%dx%d: pass --image-size %d (or another multiple of %d)",
                             c->arch, c->patch, in->h, in->w, fix, c->patch);
    }
    /* torchvision: trunc_normal_(std = sqrt(1/fan_in)) with its default absolute bounds ±2,
     * which lie ≥ 8 standard deviations out for any fan_in ≥ 16 (one channel, patch 4): a
     * plain normal draws the same distribution (TR_INIT_TRUNC_NORMAL cuts at ±2 std, which
     * would shrink the variance to 0.77 of torchvision's). */
    int fan_in = in->c * c->patch * c->patch;
    tr_init proj_w = {TR_INIT_NORMAL, (float)sqrt(1.0 / fan_in)};
    x = tr_conv2d(g, "conv_proj", x, c->hidden, c->patch, c->patch, 0, 1, 1, &proj_w, &ZERO);
    x = tr_patch_tokens(g, "encoder", x);              /* (1 + h*w, 1, hidden) */
    x = maybe_dropout(g, "encoder.dropout", x, c->dropout);
    for (int i = 0; i < c->layers; i++) x = encoder_block(g, c, i, x);
    x = tr_layernorm(g, "encoder.ln", x, LN_EPS);
    x = tr_select_token(g, "class_token_out", x, 0);  /* (1, 1, hidden) */
    x = tr_linear(g, "heads.head", x, classes, 1, &ZERO, &ZERO);
    return g->failed ? -1 : x;
}

int tr_build_vit_b_16(tr_graph *g, int x, int classes)
{
    static const vit_cfg B16 = {"vit_b_16", 16, 768, 12, 12, 3072, 0.f};
    return build_vit(g, x, classes, &B16);
}

int tr_build_vit_tiny(tr_graph *g, int x, int classes)
{
    static const vit_cfg TINY = {"vit_tiny", 4, 192, 6, 3, 768, 0.f};
    return build_vit(g, x, classes, &TINY);
}
