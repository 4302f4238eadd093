/* MobileNetV3-Large, EfficientNet-B0, ViT-B/16 and ViT-tiny: parameter counts against PyTorch's
 * (SPEC §8) or hand arithmetic, layer shapes against hand-computed sizes, the input-size checks,
 * and a two-step training smoke test on the CPU backend. */
#include "tests/testutil.h"

#include <math.h>
#include "trainer/backend/backend.h"
#include "trainer/models/models.h"

static tr_graph *build(const char *arch, int c, int image, int classes)
{
    deba_err e = {0};
    tr_graph *g = tr_model_build(arch, c, image, classes, &e);
    if (!g) fprintf(stderr, "%s: %s\n", arch, e.msg);
    assert_non_null(g);
    return g;
}

static const tr_node *node(const tr_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].name, name)) return &g->nodes[i];
    fprintf(stderr, "no node named %s\n", name);
    fail();
    return NULL;
}

static int count_op(const tr_graph *g, tr_op op)
{
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) k += g->nodes[i].op == op;
    return k;
}

static const tr_param_spec *param(const tr_graph *g, const char *name)
{
    for (int i = 0; i < g->n_pspecs; i++)
        if (!strcmp(g->pspecs[i].name, name)) return &g->pspecs[i];
    fprintf(stderr, "no parameter named %s\n", name);
    fail();
    return NULL;
}

/* Asserts the per-sample output shape of a node. */
static void shape(const tr_graph *g, const char *name, int c, int h, int w)
{
    const tr_tensor *t = &g->tensors[node(g, name)->out];
    if (t->c != c || t->h != h || t->w != w)
        fprintf(stderr, "%s: (%d, %d, %d), expected (%d, %d, %d)\n", name, t->c, t->h, t->w, c, h, w);
    assert_int_equal(t->c, c);
    assert_int_equal(t->h, h);
    assert_int_equal(t->w, w);
}

static void logits_shape(const tr_graph *g, int classes)
{
    const tr_tensor *t = tr_graph_tensor(g, g->output);
    assert_int_equal(t->c, 1);
    assert_int_equal(t->h, 1);
    assert_int_equal(t->w, classes);
}

static void check_count(const char *arch, int image, int classes, int64_t expected)
{
    tr_graph *g = build(arch, 3, image, classes);
    if (g->n_params != expected)
        fprintf(stderr, "%s/%d classes: %lld params, expected %lld\n", arch, classes,
                (long long)g->n_params, (long long)expected);
    assert_int_equal(g->n_params, expected);
    tr_graph_free(g);
}

/* ViT parameters by hand: conv_proj, class token, position embedding, per layer two
 * LayerNorms + attention in/out projections + MLP, final LayerNorm, head. */
static int64_t vit_params(int64_t c, int64_t image, int64_t patch, int64_t d, int64_t layers,
                          int64_t mlp, int64_t classes)
{
    int64_t tokens = (image / patch) * (image / patch) + 1;
    int64_t layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * mlp + mlp) + (mlp * d + d);
    return (c * patch * patch * d + d) + d + tokens * d + layers * layer + 2 * d + (d * classes + classes);
}

static void test_param_counts(void **state)
{
    (void)state;
    /* SPEC §8: the counts torchvision's models report (3-channel input, ViT at 224). */
    check_count("mobilenet_v3_large", 224, 10, 4214842);
    check_count("mobilenet_v3_large", 224, 100, 4330132);
    check_count("mobilenet_v3", 32, 10, 4214842);          /* alias; counts do not depend on size */
    check_count("efficientnet_b0", 224, 10, 4020358);
    check_count("efficientnet_b0", 32, 100, 4135648);
    check_count("vit_b_16", 224, 10, 85806346);
    check_count("vit_b_16", 224, 100, 85875556);
    /* the hand formula reproduces torchvision's count, so it can stand for vit_tiny's */
    assert_int_equal(vit_params(3, 224, 16, 768, 12, 3072, 10), 85806346);
    check_count("vit_tiny", 32, 10, vit_params(3, 32, 4, 192, 6, 768, 10));
    check_count("vit_tiny", 32, 100, vit_params(3, 32, 4, 192, 6, 768, 100));
    assert_int_equal(vit_params(3, 32, 4, 192, 6, 768, 10), 2693578);
}

static void test_mobilenet_shapes(void **state)
{
    (void)state;
    tr_graph *g = build("mobilenet_v3_large", 3, 224, 10);
    shape(g, "features.0.2", 16, 112, 112);
    shape(g, "features.1.add", 16, 112, 112);          /* 16 -> 16, stride 1: residual */
    shape(g, "features.2.block.0.2", 64, 112, 112);    /* expansion */
    shape(g, "features.2.block.1.2", 64, 56, 56);      /* depthwise 3x3, stride 2 */
    shape(g, "features.2.block.2.1", 24, 56, 56);      /* projection, no residual */
    /* SE squeeze of 72 channels: _make_divisible(18, 8) = 16 is < 0.9*18, so 24 */
    shape(g, "features.4.block.2.fc1", 24, 1, 1);
    shape(g, "features.4.block.2.scale", 72, 28, 28);
    shape(g, "features.7.block.1.2", 240, 14, 14);
    shape(g, "features.13.block.2.fc1", 168, 1, 1);    /* 672/4 = 168 */
    shape(g, "features.13.block.3.1", 160, 7, 7);
    shape(g, "features.16.2", 960, 7, 7);
    shape(g, "classifier.0", 1, 1, 1280);
    logits_shape(g, 10);
    assert_int_equal(node(g, "features.1.block.0.0")->attr.conv.groups, 16);  /* no expansion */
    assert_int_equal(node(g, "features.4.block.1.0")->attr.conv.k, 5);
    assert_int_equal(node(g, "features.4.block.1.0")->attr.conv.pad, 2);
    assert_int_equal(node(g, "features.7.block.0.2")->attr.act, TR_ACT_HSWISH);
    assert_int_equal(node(g, "features.6.block.0.2")->attr.act, TR_ACT_RELU);
    assert_int_equal(node(g, "features.4.block.2.scale_activation")->attr.act, TR_ACT_HSIGMOID);
    assert_int_equal(count_op(g, TR_OP_MUL_CHANNEL), 8);   /* SE in 8 of the 15 blocks */
    assert_int_equal(count_op(g, TR_OP_ADD), 10);          /* residual blocks */
    assert_true(fabsf(node(g, "features.0.1")->attr.bn.eps - 0.001f) < 1e-9f);
    assert_true(fabsf(node(g, "features.0.1")->attr.bn.momentum - 0.01f) < 1e-9f);
    assert_true(fabsf(node(g, "classifier.2")->attr.drop.p - 0.2f) < 1e-9f);
    assert_int_equal(param(g, "features.4.block.2.fc1.bias")->count, 24);
    tr_graph_free(g);

    /* CIFAR: 32 -> 16 -> 16 -> 8 -> 4 -> 2 -> 1 */
    g = build("mobilenet_v3_large", 3, 32, 100);
    shape(g, "features.2.block.2.1", 24, 8, 8);
    shape(g, "features.16.2", 960, 1, 1);
    logits_shape(g, 100);
    tr_graph_free(g);

    /* Fashion-MNIST: 28 -> 14 -> 14 -> 7 -> 4 -> 2 -> 1 */
    g = build("mobilenet_v3_large", 1, 28, 10);
    shape(g, "features.0.2", 16, 14, 14);
    shape(g, "features.4.block.3.1", 40, 4, 4);
    shape(g, "features.16.2", 960, 1, 1);
    assert_int_equal(param(g, "features.0.0.weight")->count, 16 * 1 * 3 * 3);
    logits_shape(g, 10);
    tr_graph_free(g);
}

static void test_efficientnet_shapes(void **state)
{
    (void)state;
    tr_graph *g = build("efficientnet_b0", 3, 224, 10);
    shape(g, "features.0.2", 32, 112, 112);
    shape(g, "features.1.0.block.0.2", 32, 112, 112);  /* ratio 1: no expansion, depthwise first */
    shape(g, "features.1.0.block.1.fc1", 8, 1, 1);      /* squeeze 32/4 */
    shape(g, "features.1.0.block.2.1", 16, 112, 112);
    shape(g, "features.2.0.block.0.2", 96, 112, 112);
    shape(g, "features.2.0.block.2.fc1", 4, 1, 1);      /* squeeze of the block input: 16/4 */
    shape(g, "features.2.1.add", 24, 56, 56);
    shape(g, "features.3.1.add", 40, 28, 28);
    shape(g, "features.4.2.add", 80, 14, 14);
    shape(g, "features.5.0.block.3.1", 112, 14, 14);
    shape(g, "features.6.3.add", 192, 7, 7);
    shape(g, "features.7.0.block.3.1", 320, 7, 7);
    shape(g, "features.8.2", 1280, 7, 7);
    logits_shape(g, 10);
    /* stochastic depth 0.2 * block / 16, only on the 9 residual blocks */
    assert_int_equal(count_op(g, TR_OP_DROP_PATH), 9);
    assert_int_equal(count_op(g, TR_OP_ADD), 9);
    assert_true(fabsf(node(g, "features.2.1.stochastic_depth")->attr.drop.p - 0.025f) < 1e-7f);
    assert_true(fabsf(node(g, "features.6.3.stochastic_depth")->attr.drop.p - 0.175f) < 1e-7f);
    assert_int_equal(node(g, "features.3.0.block.1.0")->attr.conv.k, 5);
    assert_int_equal(node(g, "features.3.0.block.1.0")->attr.conv.groups, 144);
    assert_int_equal(node(g, "features.3.0.block.2.activation")->attr.act, TR_ACT_SILU);
    assert_int_equal(node(g, "features.3.0.block.2.scale_activation")->attr.act, TR_ACT_SIGMOID);
    assert_true(fabsf(node(g, "features.0.1")->attr.bn.eps - 1e-5f) < 1e-12f);
    assert_true(fabsf(node(g, "features.0.1")->attr.bn.momentum - 0.1f) < 1e-9f);
    const tr_param_spec *w = param(g, "classifier.1.weight");
    assert_int_equal(w->init.kind, TR_INIT_UNIFORM);
    assert_true(fabsf(w->init.a - 1.f / sqrtf(10.f)) < 1e-7f);
    tr_graph_free(g);

    g = build("efficientnet_b0", 1, 28, 10);           /* 28 -> 14 -> 7 -> 4 -> 2 -> 2 -> 1 */
    shape(g, "features.2.1.add", 24, 7, 7);
    shape(g, "features.5.2.add", 112, 2, 2);
    shape(g, "features.8.2", 1280, 1, 1);
    logits_shape(g, 10);
    tr_graph_free(g);
}

static void test_vit_shapes(void **state)
{
    (void)state;
    tr_graph *g = build("vit_b_16", 3, 224, 10);
    shape(g, "conv_proj", 768, 14, 14);
    shape(g, "encoder", 197, 1, 768);
    shape(g, "encoder.layers.encoder_layer_0.self_attention", 197, 1, 768);
    shape(g, "encoder.layers.encoder_layer_0.mlp.0", 197, 1, 3072);
    shape(g, "encoder.layers.encoder_layer_11.add_2", 197, 1, 768);
    shape(g, "encoder.ln", 197, 1, 768);
    shape(g, "class_token_out", 1, 1, 768);
    logits_shape(g, 10);
    assert_int_equal(count_op(g, TR_OP_ATTENTION), 12);
    assert_int_equal(node(g, "encoder.layers.encoder_layer_3.self_attention")->attr.attn.heads, 12);
    assert_int_equal(node(g, "conv_proj")->attr.conv.stride, 16);
    assert_true(fabsf(node(g, "encoder.ln")->attr.ln.eps - 1e-6f) < 1e-12f);
    assert_int_equal(param(g, "heads.head.weight")->init.kind, TR_INIT_ZERO);
    assert_int_equal(param(g, "heads.head.bias")->init.kind, TR_INIT_ZERO);
    assert_int_equal(param(g, "encoder.layers.encoder_layer_0.mlp.3.weight")->init.kind,
                     TR_INIT_XAVIER_UNIFORM);
    assert_true(fabsf(param(g, "conv_proj.weight")->init.a - sqrtf(1.f / 768.f)) < 1e-7f);
    tr_graph_free(g);

    g = build("vit_b_16", 3, 32, 10);                   /* 2x2 patches + class token */
    shape(g, "conv_proj", 768, 2, 2);
    shape(g, "encoder.layers.encoder_layer_5.add_1", 5, 1, 768);
    logits_shape(g, 10);
    tr_graph_free(g);

    g = build("vit_tiny", 3, 32, 10);
    shape(g, "conv_proj", 192, 8, 8);
    shape(g, "encoder.layers.encoder_layer_5.mlp.0", 65, 1, 768);
    shape(g, "class_token_out", 1, 1, 192);
    assert_int_equal(count_op(g, TR_OP_ATTENTION), 6);
    assert_int_equal(node(g, "encoder.layers.encoder_layer_0.self_attention")->attr.attn.heads, 3);
    tr_graph_free(g);

    g = build("vit_tiny", 1, 28, 10);                   /* Fashion-MNIST: 7x7 patches */
    shape(g, "encoder", 50, 1, 192);
    logits_shape(g, 10);
    assert_int_equal(g->n_params, vit_params(1, 28, 4, 192, 6, 768, 10));
    tr_graph_free(g);
}

static void test_vit_image_size_errors(void **state)
{
    (void)state;
    deba_err e = {0};
    /* 28 is above the minimum 16 but not a multiple of the patch */
    tr_graph *g = tr_model_build("vit_b_16", 1, 28, 10, &e);
    assert_null(g);
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "multiple"));
    assert_non_null(strstr(e.msg, "--image-size 32"));
    deba_err_clear(&e);
    g = tr_model_build("vit_b_16", 3, 8, 10, &e);      /* below the registry's minimum */
    assert_null(g);
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "--image-size"));
    deba_err_clear(&e);
    g = tr_model_build("vit_tiny", 3, 30, 10, &e);
    assert_null(g);
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "--image-size 32"));
}

/* Two SGD steps on batch 2: finite losses, finite gradients reaching the first layer, weights
 * that move. */
static void smoke(const char *arch, int c, int image, int classes)
{
    deba_err e = {0};
    tr_backend *be = tr_backend_cpu_new(&e);
    if (!be) fprintf(stderr, "cpu backend: %s\n", e.msg);
    assert_non_null(be);
    tr_graph *g = build(arch, c, image, classes);
    if (tr_graph_alloc(g, be, 7, &e) != DEBA_OK || tr_graph_plan(g, 2, &e) != DEBA_OK)
        fprintf(stderr, "%s: %s\n", arch, e.msg);
    assert_int_equal(e.status, DEBA_OK);
    g->training = 1;

    const int n = 2;
    size_t per = (size_t)c * image * image;
    float *x = malloc(n * per * sizeof(float));
    int y[2] = {1, classes - 1};
    tr_rng r;
    tr_rng_seed(&r, 11, 0);
    for (size_t i = 0; i < n * per; i++) x[i] = (float)tr_rng_normal(&r);

    const tr_param_spec *first = &g->pspecs[0], *last = &g->pspecs[g->n_pspecs - 1];
    float *w0 = malloc((size_t)first->count * sizeof(float));
    float *w1 = malloc((size_t)first->count * sizeof(float));
    float *gr = malloc((size_t)first->count * sizeof(float));
    be->download(be, w0, g->params + first->off, (size_t)first->count * sizeof(float));

    double losses[2];
    for (int step = 0; step < 2; step++) {
        tr_graph_zero_grads(g);
        tr_graph_set_batch(g, x, y, n);
        tr_graph_forward(g, n);
        double loss = 0;
        int64_t correct = 0;
        tr_graph_loss(g, n, &loss, &correct);
        losses[step] = loss / n;
        assert_true(isfinite(losses[step]));
        assert_true(correct >= 0 && correct <= n);
        tr_graph_backward(g, n);
        tr_graph_sgd(g, 0.01f, 0.9f, 5e-4f);
    }
    be->sync(be);
    /* ViT's head starts at zero, so its first logits are all 0 and the loss is ln(classes). */
    if (!strncmp(arch, "vit", 3)) assert_true(fabs(losses[0] - log((double)classes)) < 1e-5);

    /* After the second backward the first layer's gradient is finite and not all zero (for
     * ViT that needs the head to have moved in step one). */
    be->download(be, gr, g->grads + first->off, (size_t)first->count * sizeof(float));
    be->download(be, w1, g->params + first->off, (size_t)first->count * sizeof(float));
    int nonzero = 0, moved = 0;
    for (int64_t i = 0; i < first->count; i++) {
        assert_true(isfinite(gr[i]) && isfinite(w1[i]));
        nonzero += gr[i] != 0.f;
        moved += w1[i] != w0[i];
    }
    if (!nonzero || !moved)
        fprintf(stderr, "%s: %s grad nonzero %d, moved %d of %lld\n", arch, first->name, nonzero,
                moved, (long long)first->count);
    assert_true(nonzero > 0);
    assert_true(moved > 0);
    float *hb = malloc((size_t)last->count * sizeof(float));
    be->download(be, hb, g->params + last->off, (size_t)last->count * sizeof(float));
    int head_moved = 0;
    for (int64_t i = 0; i < last->count; i++) head_moved += hb[i] != 0.f;
    assert_true(head_moved > 0);                       /* the bias of the last Linear */

    free(hb);
    free(w0);
    free(w1);
    free(gr);
    free(x);
    tr_graph_free(g);
    tr_backend_free(be);
}

static void test_train_mobilenet(void **state) { (void)state; smoke("mobilenet_v3_large", 3, 32, 10); }
static void test_train_efficientnet(void **state) { (void)state; smoke("efficientnet_b0", 3, 32, 10); }
static void test_train_vit_tiny(void **state) { (void)state; smoke("vit_tiny", 3, 32, 10); }
static void test_train_vit_b_16(void **state) { (void)state; smoke("vit_b_16", 3, 32, 10); }
/* Fashion-MNIST inputs: one channel, 28x28 (ViT-B/16 needs --image-size 32 there). */
static void test_train_fmnist(void **state)
{
    (void)state;
    smoke("mobilenet_v3_large", 1, 28, 10);
    smoke("efficientnet_b0", 1, 28, 10);
    smoke("vit_tiny", 1, 28, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_counts),
        cmocka_unit_test(test_mobilenet_shapes),
        cmocka_unit_test(test_efficientnet_shapes),
        cmocka_unit_test(test_vit_shapes),
        cmocka_unit_test(test_vit_image_size_errors),
        cmocka_unit_test(test_train_mobilenet),
        cmocka_unit_test(test_train_efficientnet),
        cmocka_unit_test(test_train_vit_tiny),
        cmocka_unit_test(test_train_vit_b_16),
        cmocka_unit_test(test_train_fmnist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
