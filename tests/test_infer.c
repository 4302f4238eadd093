/* The inference plan (issue 15, item 5): the same logits, loss and correct count as the training
 * plan's eval-mode forward for every model, an arena the size of the largest live set (counted by
 * hand), training that does not notice an evaluation, and deba-train's --eval-batch. */
#include "tests/testutil.h"

#include <math.h>
#include "deba/deba.h"
#include "trainer/backend/backend.h"
#include "trainer/graph.h"
#include "trainer/layers.h"
#include "trainer/models/models.h"
#include "trainer/onnx/model.h"
#include "trainer/train.h"

typedef struct {
    tr_backend *be;
    tr_graph *g;
    float *x;
    int *y;
    int n;
} run_t;

/* A graph on the CPU planned for n samples, with a fixed random batch set and running statistics
 * moved off their initial (0, 1), so eval-mode batch norm does some work. */
static void run_open_graph(run_t *r, tr_graph *g, int in_c, int image, int n, uint64_t seed)
{
    deba_err e = {0};
    r->be = tr_backend_cpu_new(&e);
    if (!r->be) fail_msg("cpu backend: %s", e.msg);
    r->g = g;
    if (tr_graph_alloc(g, r->be, seed, &e) != DEBA_OK) fail_msg("alloc: %s", e.msg);
    if (tr_graph_plan(g, n, &e) != DEBA_OK) fail_msg("plan: %s", e.msg);
    g->training = 1;
    r->n = n;
    size_t per = (size_t)in_c * image * image;
    r->x = malloc(sizeof *r->x * per * n);
    r->y = malloc(sizeof *r->y * n);
    tr_rng rng;
    tr_rng_seed(&rng, seed, 99);
    for (size_t i = 0; i < per * n; i++) r->x[i] = (float)tr_rng_normal(&rng);
    for (int i = 0; i < n; i++) r->y[i] = (int)tr_rng_below(&rng, (uint32_t)g->classes);
    for (int j = 0; j < g->n_nodes; j++) {   /* CPU memory: written in place */
        const tr_node *nd = &g->nodes[j];
        if (nd->op != TR_OP_BATCHNORM) continue;
        int C = g->tensors[nd->in[0]].c;
        float *mean = g->stats + nd->attr.bn.stat_off, *var = mean + C;
        for (int c = 0; c < C; c++) {
            mean[c] = (float)(0.1 * tr_rng_normal(&rng));
            var[c] = (float)(0.5 + tr_rng_uniform(&rng));
        }
    }
    tr_graph_set_batch(g, r->x, r->y, n);
}

static void run_open(run_t *r, const char *arch, int image, int n, uint64_t seed)
{
    deba_err e = {0};
    tr_graph *g = tr_model_build(arch, 3, image, 10, &e);
    if (!g) fail_msg("build %s: %s", arch, e.msg);
    run_open_graph(r, g, 3, image, n, seed);
}

static void run_close(run_t *r)
{
    tr_graph_free(r->g);
    tr_backend_free(r->be);
    free(r->x);
    free(r->y);
}

/* Logits (copied), loss and correct count of one eval-mode forward on the batch r->x. */
static float *eval_forward(run_t *r, double *loss, int64_t *correct)
{
    tr_graph *g = r->g;
    tr_graph_set_batch(g, r->x, r->y, r->n);
    tr_graph_forward(g, r->n);
    tr_graph_eval_loss(g, r->n, loss, correct);
    size_t cnt = (size_t)r->n * g->classes;
    float *z = malloc(cnt * sizeof *z);
    r->be->download(r->be, z, g->tensors[g->output].data, cnt * sizeof *z);
    return z;
}

/* The inference plan's forward gives the training plan's eval-mode logits bit for bit (same n,
 * so the same kernels and blocking), no activation has a gradient buffer in it, and no node but
 * attention keeps saved memory. Planned for more samples than it runs, which moves every
 * planned_n-based layout (attention's scratch). */
static void expect_same_eval(run_t *r, const char *what)
{
    tr_graph *g = r->g;
    deba_err e = {0};
    g->training = 0;
    double l1, l2;
    int64_t c1, c2;
    float *z1 = eval_forward(r, &l1, &c1);
    if (tr_graph_plan_infer(g, r->n + 5, &e) != DEBA_OK) fail_msg("%s: plan_infer: %s", what, e.msg);
    tr_graph_infer_begin(g);
    assert_int_equal(g->planned_n, r->n + 5);
    for (int i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].kind == TR_T_ACT && g->tensors[i].grad)
            fail_msg("%s: tensor %d has a gradient buffer in the inference plan", what, i);
    for (int j = 0; j < g->n_nodes; j++)
        if (g->nodes[j].saved && g->nodes[j].op != TR_OP_ATTENTION)
            fail_msg("%s: node %s has saved memory in the inference plan", what, g->nodes[j].name);
    float *z2 = eval_forward(r, &l2, &c2);
    tr_graph_infer_end(g);
    assert_int_equal(g->planned_n, r->n);
    assert_non_null(g->act_grad);
    size_t cnt = (size_t)r->n * g->classes;
    for (size_t k = 0; k < cnt; k++)
        if (memcmp(&z1[k], &z2[k], sizeof *z1))
            fail_msg("%s: logit %zu is %.9g on the inference plan, %.9g on the training plan", what, k,
                     (double)z2[k], (double)z1[k]);
    if (memcmp(&l1, &l2, sizeof l1)) fail_msg("%s: loss %.17g vs %.17g", what, l2, l1);   /* NaN too */
    assert_int_equal(c1, c2);
    /* and the training plan still gives them after the switch back */
    float *z3 = eval_forward(r, &l2, &c2);
    assert_memory_equal(z1, z3, cnt * sizeof *z1);
    free(z1);
    free(z2);
    free(z3);
}

static void test_same_logits_every_model(void **state)
{
    (void)state;
    size_t nm;
    const tr_model_desc *m = tr_model_list(&nm);
    for (size_t i = 0; i < nm; i++) {
        int image = m[i].min_image > 32 ? m[i].min_image : 32;
        run_t r;
        run_open(&r, m[i].name, image, 3, 5 + i);
        expect_same_eval(&r, m[i].name);
        run_close(&r);
    }
}

/* Imported graphs: general-shape ops, batchless tensors, constants, views of several kinds. */
static void same_logits_onnx(const char *file)
{
    const char *src = getenv("DEBA_SRC");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/onnx/%s", src && *src ? src : ".", file);
    deba_err e = {0};
    tr_graph *g = tr_onnx_model_build(path, NULL, 3, 32, 10, ONNX_INIT_ONNX, NULL, &e);
    if (!g) fail_msg("%s: %s", file, e.msg);
    run_t r;
    run_open_graph(&r, g, 3, 32, 4, 3);
    expect_same_eval(&r, file);
    run_close(&r);
}

static void test_same_logits_onnx_vit(void **s) { (void)s; same_logits_onnx("tiny_vit.onnx"); }
static void test_same_logits_onnx_resnet(void **s) { (void)s; same_logits_onnx("tiny_resnet.onnx"); }

/* Max pooling without its argmax: windows of padding only (the lowest float), -inf and NaN
 * inputs, a dilated window (the generic path); the same values as with the argmax. */
static void test_maxpool_eval_edges(void **state)
{
    (void)state;
    const tr_win wins[2] = {{2, 2, 1, 1, 1, 1, 2, 2, 2, 2}, {3, 2, 2, 1, 2, 1, 1, 3, 0, 1}};
    for (int k = 0; k < 2; k++) {
        deba_err e = {0};
        tr_graph *g = tr_graph_new(2, 5, 6);
        int out = tr_maxpool_win(g, "pool", g->input, &wins[k], 0);
        assert_true(out >= 0);
        out = tr_flatten(g, "flat", out);
        g->output = out;
        g->classes = g->tensors[out].w;
        run_t r;
        r.be = tr_backend_cpu_new(&e);
        r.g = g;
        assert_int_equal(tr_graph_alloc(g, r.be, 1, &e), DEBA_OK);
        assert_int_equal(tr_graph_plan(g, 2, &e), DEBA_OK);
        r.n = 2;
        r.x = malloc(sizeof(float) * 2 * 60);
        r.y = calloc(2, sizeof(int));
        for (int i = 0; i < 120; i++) r.x[i] = (float)((i * 37) % 11) - 5.f;
        for (int i = 0; i < 60; i++) r.x[i] = -INFINITY;       /* a whole sample of -inf */
        r.x[61] = NAN, r.x[75] = NAN, r.x[119] = -INFINITY;
        expect_same_eval(&r, k ? "maxpool dilated" : "maxpool padded");
        run_close(&r);
    }
}

/* cnn_small on 3x32x32 at n = 16 (every size a multiple of the 16-float alignment), by hand.
 * Per sample: input 3*32*32 = 3072; block1 conv, bn, relu 32*32*32 = 32768 each; pool1
 * 32*16*16 = 8192; block2 three of 64*16*16 = 16384; pool2 64*8*8 = 4096; block3 three of
 * 128*8*8 = 8192; avgpool 128*4*4 = 2048 (flatten is a view of it); fc 10.
 * Training: all of them, twice (activations and gradients) = 2 * 189450, and saved the BN mean
 * and rstd (2 * (32 + 64 + 128), each aligned: 64 + 128 + 256) plus the pools' argmax 8192 + 4096
 * per sample. Inference: the input lives throughout and the largest other live set is block1's
 * bn (its input and output, 2 * 32768): 3072 + 65536 = 68608, nothing saved. */
static void test_arena_cnn_small(void **state)
{
    (void)state;
    const int n = 16;
    tr_graph *g = tr_model_build("cnn_small", 3, 32, 10, NULL);
    assert_non_null(g);
    tr_plan_size tr, in;
    tr_graph_plan_size(g, n, 0, &tr);
    tr_graph_plan_size(g, n, 1, &in);
    assert_int_equal(tr.act, (int64_t)n * 189450);
    assert_int_equal(tr.saved, 64 + 128 + 256 + (int64_t)n * (8192 + 4096));
    assert_int_equal(in.act, (int64_t)n * 68608);
    assert_int_equal(in.saved, 0);
    tr_graph_free(g);
}

/* resnet18 on 3x32x32, per sample, by hand: input 3072; conv1 (7x7, stride 2), bn1, relu
 * 64*16*16 = 16384 each; maxpool 64*8*8 = 4096; layer1 two blocks of seven 4096s (conv, bn,
 * relu, conv, bn, add, relu); layer2 (128*4*4 = 2048) nine in the first block (with the
 * downsample conv and bn) and seven in the second, layer3 (256*2*2 = 1024) and layer4 (512) the
 * same; avgpool 512; fc 10: 171530 in all. The largest live set is bn1's input and output with
 * the image: 3072 + 2 * 16384 = 35840. With gradients and saved memory the training plan is more
 * than 9 times the inference plan's activations (2 * 171530 / 35840 = 9.57 before saved). */
static void test_arena_resnet18(void **state)
{
    (void)state;
    const int n = 16;
    tr_graph *g = tr_model_build("resnet18", 3, 32, 10, NULL);
    assert_non_null(g);
    tr_plan_size tr, in;
    tr_graph_plan_size(g, n, 0, &tr);
    tr_graph_plan_size(g, n, 1, &in);
    int64_t per = 3072 + 3 * 16384 + 4096 + 14 * 4096 + 16 * 2048 + 16 * 1024 + 16 * 512 + 512 + 10;
    assert_int_equal(per, 171530);
    assert_int_equal(tr.act, n * per);
    assert_int_equal(in.act, (int64_t)n * 35840);
    assert_int_equal(in.saved, 0);
    assert_true(2 * tr.act + tr.saved > 9 * (in.act + in.saved));
    tr_graph_free(g);
}

/* Training steps with evaluations between them, through a borrowed inference plan (small: it
 * fits in the training plan's gradient arena) and an own one (larger than that arena), are bit
 * for bit the steps without: parameters, momentum, running statistics, the dropout RNG and the
 * losses. efficientnet_b0 has dropout and drop-path (RNG draws in training only), BN and SE. */
static void train_after_eval(const char *arch, int n)
{
    run_t a, b;
    run_open(&a, arch, 32, n, 21);
    run_open(&b, arch, 32, n, 21);
    tr_plan_size tsz, small, big;
    tr_graph_plan_size(b.g, n, 0, &tsz);
    tr_graph_plan_size(b.g, 2, 1, &small);
    tr_graph_plan_size(b.g, 64, 1, &big);
    assert_true(small.act + small.saved + small.ws <= tsz.act);   /* borrowed */
    assert_true(big.act > tsz.act);                               /* its own */
    run_t ev = b;   /* an evaluation batch: other images, other labels */
    ev.n = 64;
    ev.x = malloc(sizeof(float) * 64 * 3 * 32 * 32);
    ev.y = malloc(sizeof(int) * 64);
    for (int i = 0; i < 64 * 3 * 32 * 32; i++) ev.x[i] = (float)((i * 7919) % 997) / 500.f - 1.f;
    for (int i = 0; i < 64; i++) ev.y[i] = i % 10;
    deba_err e = {0};
    for (int step = 0; step < 3; step++) {
        tr_step sa, sb;
        tr_graph_set_batch(a.g, a.x, a.y, n);
        tr_train_step(a.g, n, 0.01f, 0.9f, 5e-4f, &sa);
        tr_graph_set_batch(b.g, b.x, b.y, n);
        tr_train_step(b.g, n, 0.01f, 0.9f, 5e-4f, &sb);
        assert_true(sa.loss_sum == sb.loss_sum && sa.grad_sum == sb.grad_sum && sa.grad_sumsq == sb.grad_sumsq);
        assert_memory_equal(a.g->params, b.g->params, sizeof(float) * (size_t)a.g->n_params);
        assert_memory_equal(a.g->momentum, b.g->momentum, sizeof(float) * (size_t)a.g->n_params);
        assert_memory_equal(a.g->stats, b.g->stats, sizeof(float) * (size_t)a.g->n_stats);
        assert_memory_equal(&a.g->rng, &b.g->rng, sizeof a.g->rng);
        int en = step == 1 ? 64 : 2;
        assert_int_equal(tr_graph_plan_infer(b.g, en, &e), DEBA_OK);
        tr_graph_infer_begin(b.g);
        tr_graph_set_batch(b.g, ev.x, ev.y, en);
        tr_graph_forward(b.g, en);
        double l;
        int64_t c;
        tr_graph_eval_loss(b.g, en, &l, &c);
        tr_graph_infer_end(b.g);
        assert_int_equal(b.g->training, 1);
    }
    free(ev.x);
    free(ev.y);
    run_close(&a);
    run_close(&b);
}

static void test_train_after_eval_cnn_small(void **s) { (void)s; train_after_eval("cnn_small", 8); }
static void test_train_after_eval_efficientnet(void **s) { (void)s; train_after_eval("efficientnet_b0", 4); }

/* The default evaluation batch: resnet18's inference plan is about 140 KiB a sample, far under
 * the budget at the cap, so the cap; never more than the test set; --eval-batch as given. */
static void test_eval_batch_default(void **state)
{
    (void)state;
    tr_graph *g = tr_model_build("resnet18", 3, 32, 10, NULL);
    assert_non_null(g);
    assert_int_equal(tr_train_eval_batch(g, 10000, 0), TR_EVAL_BATCH_MAX);
    assert_int_equal(tr_train_eval_batch(g, 100, 0), 100 < TR_EVAL_BATCH_MAX ? 100 : TR_EVAL_BATCH_MAX);
    assert_int_equal(tr_train_eval_batch(g, 10000, 300), 300);
    assert_int_equal(tr_train_eval_batch(g, 256, 300), 256);
    tr_graph_free(g);
    /* vit_b_16 at 224: 197 tokens of 768 and 12 heads of 197x197 probabilities make its
     * inference plan several MiB a sample: the 512 MiB budget stops the doubling below the cap */
    g = tr_model_build("vit_b_16", 3, 224, 10, NULL);
    assert_non_null(g);
    int b = tr_train_eval_batch(g, 10000, 0);
    tr_plan_size s, s2;
    tr_graph_plan_size(g, b, 1, &s);
    tr_graph_plan_size(g, 2 * b, 1, &s2);
    assert_true(b < TR_EVAL_BATCH_MAX);
    assert_true((s.act + s.saved + s.ws) * 4 <= ((int64_t)TR_EVAL_BUDGET_MIB << 20));
    assert_true((s2.act + s2.saved + s2.ws) * 4 > ((int64_t)TR_EVAL_BUDGET_MIB << 20));
    tr_graph_free(g);
}

/* deba-train end to end: a run killed inside epoch 2 and resumed evaluates in the same batches
 * of --eval-batch 96 (256 test images: 96, 96, 64) as an uninterrupted one, so every epoch's
 * test loss matches to the last bit; --eval-batch 0 is a usage error. */
static const char *FMNIST = "/usr/share/datasets/fashion-mnist";

static int train(const char *out, const char *extra, const char *env)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s %s/deba-train --arch cnn_small --dataset fashion-mnist --subset 512 --test-subset 256 "
             "--epochs 3 --seed 7 --method fixed --batch 64 --device cpu --quiet --out %s %s 2>%s/stderr.txt",
             env ? env : "", tu_bindir(), out, extra ? extra : "", g_dir);
    return tu_run(cmd);
}

static void read_trace(const char *out, deba_trace *t)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/cnn_small/fashion-mnist/fixed/seed7/trace.csv", out);
    deba_err e = {0};
    assert_int_equal(deba_trace_read(p, t, &e), DEBA_OK);
}

static void test_eval_batch_resume(void **state)
{
    (void)state;
    if (!tu_exists(FMNIST)) skip();
    char a[4096], b[4096], c[4096];
    snprintf(a, sizeof a, "%s/eb-a", g_dir);
    snprintf(b, sizeof b, "%s/eb-b", g_dir);
    snprintf(c, sizeof c, "%s/eb-c", g_dir);
    assert_int_equal(train(a, "--eval-batch 96", NULL), 0);
    assert_int_equal(train(b, "--eval-batch 96", "DEBA_FAULT_KILL_AT_STEP=11"), 137);   /* epoch 2, step 3 */
    assert_int_equal(train(b, "--eval-batch 96 --resume", NULL), 0);
    assert_int_equal(train(c, "--eval-batch 0", NULL), 2);
    deba_trace ta = {0}, tb = {0};
    read_trace(a, &ta);
    read_trace(b, &tb);
    assert_int_equal(ta.n, 3);
    assert_int_equal(tb.n, 3);
    for (size_t i = 0; i < ta.n; i++) {
        assert_true(ta.rows[i].test_loss == tb.rows[i].test_loss);
        assert_true(ta.rows[i].test_acc == tb.rows[i].test_acc);
        assert_true(ta.rows[i].train_loss == tb.rows[i].train_loss);
    }
    deba_trace_free(&ta);
    deba_trace_free(&tb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arena_cnn_small),
        cmocka_unit_test(test_arena_resnet18),
        cmocka_unit_test(test_eval_batch_default),
        cmocka_unit_test(test_maxpool_eval_edges),
        cmocka_unit_test(test_same_logits_every_model),
        cmocka_unit_test(test_same_logits_onnx_vit),
        cmocka_unit_test(test_same_logits_onnx_resnet),
        cmocka_unit_test(test_train_after_eval_cnn_small),
        cmocka_unit_test(test_train_after_eval_efficientnet),
        cmocka_unit_test(test_eval_batch_resume),
    };
    return cmocka_run_group_tests_name("infer", tests, tu_dir_setup, tu_dir_teardown);
}
