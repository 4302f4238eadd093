/* Model definitions: parameter counts against PyTorch's (SPEC §8), intermediate shapes against
 * hand-computed sizes, forward FLOPs against torchvision's published figures, the minimum-size
 * check, and short CPU training runs. */
#include "tests/testutil.h"

#include <math.h>
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/models/models.h"

static tr_graph *build(const char *arch, int in_c, int image, int classes)
{
    deba_err e = {0};
    tr_graph *g = tr_model_build(arch, in_c, image, classes, &e);
    if (!g) fail_msg("tr_model_build(%s, %d, %d, %d): %s", arch, in_c, image, classes, e.msg);
    return g;
}

static const tr_node *node(const tr_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (!strcmp(g->nodes[i].name, name)) return &g->nodes[i];
    fail_msg("no node named %s", name);
    return NULL;
}

static const tr_param_spec *param(const tr_graph *g, const char *name)
{
    for (int i = 0; i < g->n_pspecs; i++)
        if (!strcmp(g->pspecs[i].name, name)) return &g->pspecs[i];
    fail_msg("no parameter named %s", name);
    return NULL;
}

static void expect_shape(const tr_graph *g, const char *name, int c, int h, int w)
{
    const tr_tensor *t = tr_graph_tensor(g, node(g, name)->out);
    if (t->c != c || t->h != h || t->w != w)
        fail_msg("%s: output (%d, %d, %d), expected (%d, %d, %d)", name, t->c, t->h, t->w, c, h, w);
}

/* Parameter specs tile the flat buffer exactly once and carry unique (state_dict) names. */
static void expect_consistent_params(const tr_graph *g)
{
    int64_t sum = 0;
    for (int i = 0; i < g->n_pspecs; i++) {
        sum += g->pspecs[i].count;
        for (int j = 0; j < i; j++)
            if (!strcmp(g->pspecs[i].name, g->pspecs[j].name))
                fail_msg("parameter name %s appears twice", g->pspecs[i].name);
    }
    assert_int_equal(sum, g->n_params);
}

/* ---- parameter counts ---- */

/* SPEC §8: counted with PyTorch (sum of p.numel() over torchvision's model, 3 input channels);
 * the 1000-class figures are torchvision's model cards for the ImageNet weights. */
static const struct { const char *arch; int64_t p10, p100, p1000; } TORCH_COUNTS[] = {
    {"resnet18", 11181642, 11227812, 11689512},
    {"resnet50", 23528522, 23712932, 25557032},
    {"densenet121", 6964106, 7056356, 7978856},
};

static void test_torchvision_param_counts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof TORCH_COUNTS / sizeof TORCH_COUNTS[0]; i++) {
        for (int k = 0; k < 3; k++) {
            int classes = k == 0 ? 10 : k == 1 ? 100 : 1000;
            int64_t want = k == 0 ? TORCH_COUNTS[i].p10 : k == 1 ? TORCH_COUNTS[i].p100
                                                                 : TORCH_COUNTS[i].p1000;
            tr_graph *g = build(TORCH_COUNTS[i].arch, 3, 32, classes);
            if (g->n_params != want)
                fail_msg("%s, %d classes: %lld parameters, PyTorch has %lld", TORCH_COUNTS[i].arch,
                         classes, (long long)g->n_params, (long long)want);
            expect_consistent_params(g);
            tr_graph_free(g);
        }
    }
}

/* cnn_small by hand: three 3x3 convs without bias (cin*9*cout) each with a BN (2*cout), and a
 * linear layer with bias from the 128x4x4 pooled features. */
static int64_t cnn_small_count(int in_c, int classes)
{
    int64_t n = 0;
    int ch[4] = {in_c, 32, 64, 128};
    for (int i = 0; i < 3; i++) n += (int64_t)ch[i] * 9 * ch[i + 1] + 2 * ch[i + 1];
    return n + 128 * 16 * classes + classes;
}

static void test_cnn_small_param_counts(void **state)
{
    (void)state;
    assert_int_equal(cnn_small_count(3, 10), 113962);   /* the formula, spelled out once */
    const int chans[2] = {1, 3}, classes[2] = {10, 100};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            tr_graph *g = build("cnn_small", chans[a], 32, classes[b]);
            assert_int_equal(g->n_params, cnn_small_count(chans[a], classes[b]));
            expect_consistent_params(g);
            tr_graph_free(g);
        }
}

/* A few tensors whose sizes are easy to state: names and counts as torchvision's state_dict. */
static void test_param_names(void **state)
{
    (void)state;
    tr_graph *g = build("resnet18", 3, 32, 10);
    assert_int_equal(param(g, "conv1.weight")->count, 64 * 3 * 7 * 7);
    assert_int_equal(param(g, "layer1.0.conv1.weight")->count, 64 * 64 * 3 * 3);
    assert_int_equal(param(g, "layer2.0.downsample.0.weight")->count, 128 * 64);
    assert_int_equal(param(g, "layer2.0.downsample.1.bias")->count, 128);
    assert_int_equal(param(g, "layer4.1.bn2.weight")->count, 512);
    assert_int_equal(param(g, "fc.weight")->count, 10 * 512);
    assert_int_equal(param(g, "fc.bias")->count, 10);
    /* kaiming fan_out for a 3x3 conv: cout * 9 */
    assert_int_equal(param(g, "layer1.0.conv1.weight")->fan_out, 64 * 9);
    assert_int_equal(param(g, "layer1.0.conv1.weight")->init.kind, TR_INIT_KAIMING_NORMAL_OUT);
    assert_int_equal(param(g, "fc.weight")->init.kind, TR_INIT_TORCH_DEFAULT);
    assert_int_equal(param(g, "fc.bias")->init.kind, TR_INIT_TORCH_DEFAULT);
    tr_graph_free(g);

    g = build("resnet50", 3, 32, 10);
    assert_int_equal(param(g, "layer1.0.downsample.0.weight")->count, 256 * 64);
    assert_int_equal(param(g, "layer2.0.conv2.weight")->count, 128 * 128 * 9);
    assert_int_equal(param(g, "layer4.2.conv3.weight")->count, 2048 * 512);
    assert_int_equal(param(g, "fc.weight")->count, 10 * 2048);
    tr_graph_free(g);

    g = build("densenet121", 3, 32, 10);
    assert_int_equal(param(g, "features.conv0.weight")->count, 64 * 3 * 49);
    assert_int_equal(param(g, "features.denseblock1.denselayer1.norm1.weight")->count, 64);
    assert_int_equal(param(g, "features.denseblock1.denselayer6.conv1.weight")->count, 128 * 224);
    assert_int_equal(param(g, "features.denseblock4.denselayer16.conv2.weight")->count, 32 * 128 * 9);
    assert_int_equal(param(g, "features.transition3.conv.weight")->count, 512 * 1024);
    assert_int_equal(param(g, "features.norm5.bias")->count, 1024);
    assert_int_equal(param(g, "classifier.weight")->count, 10 * 1024);
    assert_int_equal(param(g, "features.conv0.weight")->init.kind, TR_INIT_KAIMING_NORMAL_IN);
    assert_int_equal(param(g, "classifier.bias")->init.kind, TR_INIT_ZERO);
    tr_graph_free(g);
}

/* ---- shapes ---- */

static void test_shapes_32(void **state)
{
    (void)state;
    /* ResNet on 32x32: conv1 s2 -> 16, maxpool s2 -> 8, layer2..4 halve: 4, 2, 1. */
    tr_graph *g = build("resnet18", 3, 32, 10);
    expect_shape(g, "conv1", 64, 16, 16);
    expect_shape(g, "maxpool", 64, 8, 8);
    expect_shape(g, "layer1.1.relu", 64, 8, 8);
    expect_shape(g, "layer2.0.downsample.1", 128, 4, 4);
    expect_shape(g, "layer3.1.relu", 256, 2, 2);
    expect_shape(g, "layer4.1.relu", 512, 1, 1);
    expect_shape(g, "fc", 1, 1, 10);
    assert_int_equal(g->output, node(g, "fc")->out);
    tr_graph_free(g);

    g = build("resnet50", 3, 32, 100);
    expect_shape(g, "layer1.2.relu", 256, 8, 8);
    expect_shape(g, "layer2.0.conv1", 128, 8, 8);   /* v1.5: stride on the 3x3, not the 1x1 */
    expect_shape(g, "layer2.0.conv2", 128, 4, 4);
    expect_shape(g, "layer3.5.relu", 1024, 2, 2);
    expect_shape(g, "layer4.2.relu", 2048, 1, 1);
    expect_shape(g, "fc", 1, 1, 100);
    tr_graph_free(g);

    /* DenseNet: 64 + 6*32 = 256 -> 128, +12*32 = 512 -> 256, +24*32 = 1024 -> 512, +16*32 = 1024;
     * sides 16 (conv0), 8 (pool0), 4, 2, 1 (transitions). */
    g = build("densenet121", 3, 32, 10);
    expect_shape(g, "features.pool0", 64, 8, 8);
    expect_shape(g, "features.denseblock1.denselayer3.conv1", 128, 8, 8);
    expect_shape(g, "features.denseblock1.denselayer3.conv2", 32, 8, 8);
    expect_shape(g, "features.denseblock1.cat", 256, 8, 8);
    expect_shape(g, "features.transition1.pool", 128, 4, 4);
    expect_shape(g, "features.denseblock2.cat", 512, 4, 4);
    expect_shape(g, "features.transition2.pool", 256, 2, 2);
    expect_shape(g, "features.denseblock3.cat", 1024, 2, 2);
    expect_shape(g, "features.transition3.pool", 512, 1, 1);
    expect_shape(g, "features.norm5", 1024, 1, 1);
    expect_shape(g, "classifier", 1, 1, 10);
    tr_graph_free(g);

    g = build("cnn_small", 1, 28, 10);
    expect_shape(g, "block1.relu", 32, 28, 28);
    expect_shape(g, "pool1", 32, 14, 14);
    expect_shape(g, "block2.relu", 64, 14, 14);
    expect_shape(g, "pool2", 64, 7, 7);
    expect_shape(g, "block3.relu", 128, 7, 7);
    expect_shape(g, "avgpool", 128, 4, 4);
    expect_shape(g, "flatten", 1, 1, 2048);
    expect_shape(g, "fc", 1, 1, 10);
    tr_graph_free(g);
    /* the registry's smallest input: 8 -> 4 -> 2, pooled up to 4x4 as PyTorch's adaptive pool */
    g = build("cnn_small", 3, 8, 10);
    expect_shape(g, "block3.relu", 128, 2, 2);
    expect_shape(g, "fc", 1, 1, 10);
    tr_graph_free(g);
}

/* DenseNet's three 2x2 transitions need a 4x4 map after the stem: 29 -> 15 -> 8 -> 4 -> 2 -> 1,
 * while 28 -> 14 -> 7 -> 3 -> 1 -> 0. The registry refuses before building. */
static void test_densenet_min_size(void **state)
{
    (void)state;
    deba_err e = {0};
    assert_null(tr_model_build("densenet121", 1, 28, 10, &e));
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "29"));
    assert_non_null(strstr(e.msg, "--image-size"));
    tr_graph *g = build("densenet121", 1, 29, 10);
    expect_shape(g, "features.norm5", 1024, 1, 1);
    tr_graph_free(g);
}

/* ---- FLOPs ---- */

/* torchvision's model cards list multiply-adds per 224x224 image ("GFLOPS"): 1.81, 4.09, 2.83.
 * The graph counts a multiply-add as 2 and includes the cheap element-wise ops, so compare half
 * its count within 2%. */
static void test_flops_torchvision(void **state)
{
    (void)state;
    static const struct { const char *arch; double gmacs; } REF[] = {
        {"resnet18", 1.81}, {"resnet50", 4.09}, {"densenet121", 2.83},
    };
    for (size_t i = 0; i < sizeof REF / sizeof REF[0]; i++) {
        tr_graph *g = build(REF[i].arch, 3, 224, 1000);
        double gmacs = tr_graph_flops(g) / 2e9;
        if (fabs(gmacs / REF[i].gmacs - 1.0) > 0.02)
            fail_msg("%s: %.3f GMACs per 224x224 image, torchvision lists %.2f", REF[i].arch, gmacs,
                     REF[i].gmacs);
        tr_graph_free(g);
    }
}

/* cnn_small's convolutions on 28x28, by hand: 2 * cout * h * w * cin * 9. */
static void test_flops_cnn_small(void **state)
{
    (void)state;
    tr_graph *g = build("cnn_small", 1, 28, 10);
    double want = 2.0 * 9 * (32.0 * 28 * 28 * 1 + 64.0 * 14 * 14 * 32 + 128.0 * 7 * 7 * 64);
    double conv = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].op == TR_OP_CONV2D) conv += g->nodes[i].flops;
    assert_true(fabs(conv / want - 1.0) < 1e-9);
    assert_true(tr_graph_flops(g) >= conv);
    tr_graph_free(g);
}

/* ---- training ---- */

typedef struct {
    tr_backend *be;
    tr_graph *g;
    float *x;
    int *y;
    int n;
} run_t;

static void run_open(run_t *r, const char *arch, int in_c, int image, int classes, int n,
                     uint64_t seed)
{
    deba_err e = {0};
    r->be = tr_backend_cpu_new(&e);
    if (!r->be) fail_msg("cpu backend: %s", e.msg);
    r->g = build(arch, in_c, image, classes);
    if (tr_graph_alloc(r->g, r->be, seed, &e) != DEBA_OK) fail_msg("alloc %s: %s", arch, e.msg);
    if (tr_graph_plan(r->g, n, &e) != DEBA_OK) fail_msg("plan %s: %s", arch, e.msg);
    r->g->training = 1;
    r->n = n;
    size_t per = (size_t)in_c * image * image;
    r->x = malloc(sizeof *r->x * per * n);
    r->y = malloc(sizeof *r->y * n);
    tr_rng rng;
    tr_rng_seed(&rng, seed, 99);
    for (size_t i = 0; i < per * n; i++) r->x[i] = (float)tr_rng_normal(&rng);
    for (int i = 0; i < n; i++) r->y[i] = (int)tr_rng_below(&rng, (uint32_t)classes);
    tr_graph_set_batch(r->g, r->x, r->y, n);
}

static void run_close(run_t *r)
{
    tr_graph_free(r->g);
    tr_backend_free(r->be);
    free(r->x);
    free(r->y);
}

/* One SGD step on the batch already set; returns the mean loss before the update. */
static double run_step(run_t *r, float lr)
{
    double loss = 0;
    int64_t correct = 0;
    tr_graph_zero_grads(r->g);
    tr_graph_forward(r->g, r->n);
    tr_graph_loss(r->g, r->n, &loss, &correct);
    tr_graph_backward(r->g, r->n);
    tr_graph_sgd(r->g, lr, 0.9f, 5e-4f);
    r->be->sync(r->be);
    return loss / r->n;
}

static float *params_host(const run_t *r)
{
    float *p = malloc(sizeof *p * (size_t)r->g->n_params);
    r->be->download(r->be, p, r->g->params, sizeof *p * (size_t)r->g->n_params);
    return p;
}

/* Evaluation's loss: the same loss and correct count as the training loss on the same forward
 * pass, and the activation grads untouched (the training loss zeroes those no backward sets; a
 * sentinel written there must survive evaluation, except in the logits' own grad). */
static void test_eval_loss(void **state)
{
    (void)state;
    run_t r;
    run_open(&r, "cnn_small", 3, 32, 10, 8, 11);
    tr_graph *g = r.g;
    g->training = 0;
    tr_graph_forward(g, r.n);
    double l1, l2;
    int64_t c1, c2;
    tr_graph_loss(g, r.n, &l1, &c1);
    int64_t nact = 0;
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].view_of < 0 && g->tensors[i].grad && i != g->output) {
            nact = i;   /* some tensor other than the logits with a grad buffer */
            break;
        }
    assert_true(nact > 0);
    tr_tensor *t = &g->tensors[nact];
    int64_t cnt = tr_tensor_numel(t) * r.n;
    for (int64_t k = 0; k < cnt; k++) t->grad[k] = 7.0f;
    tr_graph_eval_loss(g, r.n, &l2, &c2);
    assert_true(l1 == l2);
    assert_int_equal(c1, c2);
    for (int64_t k = 0; k < cnt; k++) assert_true(t->grad[k] == 7.0f);
    run_close(&r);
}

/* Gradients a backward sets instead of adding to (tr_node.grad_set) and batch norm fused with
 * the ReLU after it (tr_node.relu_out), each against the old way: two steps of each model with
 * every activation gradient filled with NaN before each step (so a set gradient that some op
 * wrote only in part, or one read before anything wrote it, poisons the parameters), against two
 * steps with every gradient zeroed and added to. Without the fusion on either side the losses and
 * parameters are the same bit for bit; with it (fuse = 1, the old way unfused) they agree to float
 * rounding, since the fused batch norm's sums over the masked gradient vectorise in another
 * order. */
static void grad_set_case(const char *arch, int n, int relu_fusions, int fuse)
{
    run_t a, b;
    run_open(&a, arch, 3, 32, 10, n, 5);
    run_open(&b, arch, 3, 32, 10, n, 5);
    if (!fuse) a.g->fusing = 0;
    int sets = 0, roots = 0;
    for (int i = 0; i < a.g->n_nodes; i++) sets += a.g->nodes[i].grad_set != 0;
    for (int i = 0; i < a.g->n_tensors; i++) {
        const tr_tensor *t = &a.g->tensors[i];
        roots += t->view_of < 0 && t->kind == TR_T_ACT && t->grad != NULL;
    }
    if (sets == 0 || a.g->n_zero >= roots)
        fail_msg("%s: %d nodes set a gradient, %d of %d gradients zeroed: the plan sets none", arch, sets,
                 a.g->n_zero, roots);
    int fused = 0;
    for (int i = 0; i < a.g->n_nodes; i++) fused += a.g->nodes[i].relu_out != 0;
    if (relu_fusions >= 0 && fused != relu_fusions)
        fail_msg("%s: %d batch norms fused with their ReLU, expected %d", arch, fused, relu_fusions);
    b.be->grad_set_ops = 0;   /* the old way: zero everything, every backward adds, no fusion */
    b.be->fuse_bn_relu = 0;
    b.g->fusing = 0;
    for (int i = 0; i < b.g->n_nodes; i++) b.g->nodes[i].grad_set = 0;
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < a.g->n_tensors; i++) {
            const tr_tensor *t = &a.g->tensors[i];
            if (t->view_of < 0 && t->kind == TR_T_ACT && t->grad)
                for (int64_t k = 0; k < tr_tensor_elems(t, n); k++) t->grad[k] = NAN;
        }
        double la = run_step(&a, 0.01f), lb = run_step(&b, 0.01f);
        if (fuse ? !(fabs(la - lb) <= 1e-6 * fabs(lb)) : memcmp(&la, &lb, sizeof la) != 0)
            fail_msg("%s step %d: loss %.17g, %.17g the old way", arch, step, la, lb);
    }
    float *pa = params_host(&a), *pb = params_host(&b);
    for (int64_t i = 0; i < a.g->n_params; i++)
        if (fuse ? !(fabsf(pa[i] - pb[i]) <= 1e-5f * fabsf(pb[i]) + 1e-7f) : memcmp(&pa[i], &pb[i], sizeof *pa) != 0)
            fail_msg("%s: parameter %lld is %.9g, %.9g the old way", arch, (long long)i, pa[i], pb[i]);
    free(pa), free(pb);
    run_close(&a);
    run_close(&b);
}

static void test_grad_set_and_fusion_match_zeroing(void **state)
{
    (void)state;
    /* BN+ReLU pairs by hand: cnn_small's three blocks; resnet18's stem and the first BN of each of
     * its 8 basic blocks (the second BN feeds the residual add); -1: not counted */
    static const struct { const char *arch; int fusions; } cases[] = {
        {"cnn_small", 3}, {"resnet18", 9}, {"densenet121", -1}, {"mobilenet_v3_large", -1},
        {"efficientnet_b0", 0}, {"vit_tiny", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        grad_set_case(cases[i].arch, 3, cases[i].fusions, 0);
        if (cases[i].fusions) grad_set_case(cases[i].arch, 8, cases[i].fusions, 1);
    }
}

/* Two steps on batch 2 of random 32x32 images: losses finite, near ln(classes) at the start
 * (torchvision's init gives small logits), and both the first conv and the classifier moved. */
static void smoke(const char *arch, const char *first, const char *last)
{
    run_t r;
    run_open(&r, arch, 3, 32, 10, 2, 7);
    float *before = params_host(&r);
    double l0 = run_step(&r, 0.01f), l1 = run_step(&r, 0.01f);
    float *after = params_host(&r);
    if (!isfinite(l0) || !isfinite(l1)) fail_msg("%s: losses %g, %g", arch, l0, l1);
    if (l0 > 10.0 * log(10.0)) fail_msg("%s: first loss %g is far above ln 10", arch, l0);
    const char *names[2] = {first, last};
    for (int k = 0; k < 2; k++) {
        const tr_param_spec *ps = param(r.g, names[k]);
        int64_t changed = 0;
        for (int64_t i = ps->off; i < ps->off + ps->count; i++) {
            if (!isfinite(after[i])) fail_msg("%s: %s is not finite", arch, names[k]);
            changed += after[i] != before[i];
        }
        if (changed == 0) fail_msg("%s: %s did not change in two SGD steps", arch, names[k]);
    }
    free(before);
    free(after);
    run_close(&r);
}

static void test_train_smoke_cnn_small(void **s) { (void)s; smoke("cnn_small", "block1.conv.weight", "fc.weight"); }
static void test_train_smoke_resnet18(void **s) { (void)s; smoke("resnet18", "conv1.weight", "fc.weight"); }
static void test_train_smoke_resnet50(void **s) { (void)s; smoke("resnet50", "conv1.weight", "fc.weight"); }
static void test_train_smoke_densenet121(void **s)
{
    (void)s;
    smoke("densenet121", "features.conv0.weight", "classifier.weight");
}

/* cnn_small fits one fixed batch of 16 Fashion-MNIST-shaped images: each of 4 labels has its own
 * random template, and every image is its template plus as much noise again. Plain noise with
 * random labels would not do: after global average pooling, noise images look alike. */
static void test_cnn_small_overfits(void **state)
{
    (void)state;
    enum { N = 16, PIX = 28 * 28, K = 4 };
    run_t r;
    run_open(&r, "cnn_small", 1, 28, 10, N, 3);
    tr_rng rng;
    tr_rng_seed(&rng, 3, 1);
    static float tmpl[K][PIX];
    for (int k = 0; k < K; k++)
        for (int i = 0; i < PIX; i++) tmpl[k][i] = (float)tr_rng_normal(&rng);
    for (int n = 0; n < N; n++) {
        r.y[n] = n % K;
        for (int i = 0; i < PIX; i++) r.x[n * PIX + i] = tmpl[n % K][i] + (float)tr_rng_normal(&rng);
    }
    tr_graph_set_batch(r.g, r.x, r.y, N);
    double first = 0, last = 0;
    for (int i = 0; i < 30; i++) {
        double l = run_step(&r, 0.01f);
        assert_true(isfinite(l));
        if (i < 3) first += l / 3;
        if (i >= 27) last += l / 3;
    }
    if (!(last < 0.5 * first)) fail_msg("loss %.4f -> %.4f over 30 steps on one batch", first, last);
    run_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torchvision_param_counts),
        cmocka_unit_test(test_cnn_small_param_counts),
        cmocka_unit_test(test_param_names),
        cmocka_unit_test(test_shapes_32),
        cmocka_unit_test(test_densenet_min_size),
        cmocka_unit_test(test_flops_torchvision),
        cmocka_unit_test(test_flops_cnn_small),
        cmocka_unit_test(test_eval_loss),
        cmocka_unit_test(test_train_smoke_cnn_small),
        cmocka_unit_test(test_train_smoke_resnet18),
        cmocka_unit_test(test_train_smoke_resnet50),
        cmocka_unit_test(test_train_smoke_densenet121),
        cmocka_unit_test(test_cnn_small_overfits),
        cmocka_unit_test(test_grad_set_and_fusion_match_zeroing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
