/* ONNX import, first part (docs/onnx.md): parsing PyTorch exports against the numbers PyTorch
 * and python3-onnx recorded beside them (tests/onnx/NAME.facts), refusing hostile files with exit
 * 2, reading external data only from beside the model, and parsing ONNX's own test suite. */
#include "tests/testutil.h"

#include <dirent.h>
#include <math.h>
#include "trainer/onnx/onnx.h"

static const char *src_dir(void)
{
    const char *s = getenv("DEBA_SRC");
    return s && *s ? s : ".";
}

static char *fixture(const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/tests/onnx/%s", src_dir(), name);
    return p;
}

/* The "key value" number in a .facts file, or -1. */
static long long fact(const char *facts, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", key);
    const char *q = strstr(facts, pat);
    return q ? atoll(q + strlen(pat)) : -1;
}

static void check_fixture(const char *name)
{
    char file[256];
    snprintf(file, sizeof file, "%s.onnx", name);
    char *path = fixture(file);
    snprintf(file, sizeof file, "%s.facts", name);
    char *fpath = fixture(file), *facts = tu_slurp(fpath);
    assert_non_null(facts);
    onnx_model *m = NULL;
    deba_err e = { 0 };
    if (onnx_load(path, ONNX_PARSE_MODEL, &m, &e)) fail_msg("%s", e.msg);
    int tensors, unknown = -1;
    /* PyTorch's sum(p.numel() for p in model.parameters()) */
    assert_int_equal(onnx_trainable_params(m, &tensors), fact(facts, "params"));
    /* PyTorch's ATen convolution/mm/bmm/addmm calls at batch 1, 2 per multiply-add */
    assert_int_equal(onnx_flops(m, &unknown), fact(facts, "flops"));
    assert_int_equal(unknown, 0);
    assert_int_equal(m->opset, fact(facts, "opset"));
    assert_int_equal(m->n_nodes, fact(facts, "nodes"));
    /* the op histogram python3-onnx counted, op by op, and nothing else */
    int listed = 0;
    for (const char *q = strstr(facts, "\nop "); q; q = strstr(q + 1, "\nop ")) {
        char op[64];
        int count;
        assert_int_equal(sscanf(q, "\nop %63s %d", op, &count), 2);
        int got = 0;
        for (int k = 0; k < m->n_nodes; k++) got += !strcmp(m->nodes[k].op, op);
        if (got != count) fail_msg("%s: %s: %d nodes, python3-onnx counted %d", name, op, got, count);
        listed += count;
    }
    assert_int_equal(listed, m->n_nodes);
    /* every node of these exports is in the supported table */
    char why[256];
    for (int k = 0; k < m->n_nodes; k++)
        if (!onnx_node_supported(m, k, why, sizeof why))
            fail_msg("%s: node '%s' (%s): %s", name, m->nodes[k].name, m->nodes[k].op, why);
    /* the one input, batched, 3x32x32 or 1x28x28 per sample */
    const onnx_value *in = &m->values[m->input];
    assert_true(in->batched);
    assert_string_equal(in->sym[0], "batch");
    assert_int_equal(in->rank, 4);
    onnx_model_free(m);
    free(facts);
    free(fpath);
    free(path);
}

static void test_fixture_cnn(void **state) { (void)state; check_fixture("tiny_cnn"); }
static void test_fixture_resnet(void **state) { (void)state; check_fixture("tiny_resnet"); }
static void test_fixture_vit(void **state) { (void)state; check_fixture("tiny_vit"); }
static void test_fixture_mlp_external(void **state) { (void)state; check_fixture("tiny_mlp"); }

/* PyTorch writes one initializer for equal-valued parameters and an Identity per copy (here
 * the four LayerNorm weights and biases that equal the first): each copy is a parameter, and
 * BatchNorm running statistics that became such copies are not (tiny_cnn). */
static void test_params_identity_copies(void **state)
{
    (void)state;
    char *path = fixture("tiny_cnn.onnx");
    onnx_model *m;
    deba_err e;
    assert_int_equal(onnx_load(path, ONNX_PARSE_MODEL, &m, &e), DEBA_OK);
    int running = 0, weight = 0;
    for (int v = 0; v < m->n_values; v++) {
        const onnx_value *val = &m->values[v];
        if (strstr(val->name, "running_")) {
            running++;
            assert_false(onnx_value_trainable(m, v));
        }
        if (!strcmp(val->name, "features.1.weight")) weight = onnx_value_trainable(m, v);
    }
    assert_int_equal(running, 4);
    assert_true(weight);
    onnx_model_free(m);
    free(path);
}

static void test_external_data(void **state)
{
    (void)state;
    char *path = fixture("tiny_mlp.onnx");
    onnx_model *m;
    deba_err e;
    assert_int_equal(onnx_load(path, ONNX_PARSE_MODEL, &m, &e), DEBA_OK);
    int ext = 0;
    for (int v = 0; v < m->n_values; v++) {
        const onnx_tensor *t = m->values[v].init;
        if (!t || !t->external) continue;
        ext++;
        /* torch.nn.Linear's default init: |w| <= 1/sqrt(fan_in); all zero would mean unread data */
        double bound = 1.0 / sqrt((double)t->dims[t->rank - 1]) + 1e-6, sum = 0;
        for (int64_t k = 0; k < t->numel; k++) {
            assert_true(fabs(t->f[k]) <= bound);
            sum += fabs(t->f[k]);
        }
        assert_true(sum > 0);
    }
    assert_int_equal(ext, 1);   /* net.1.weight, 16x784 (the others are under 1 KiB) */
    onnx_model_free(m);
    free(path);
}

/* A symbolic link beside the model is refused even when it points at the right data: it
 * could point anywhere. The same copy with a plain file loads. */
static void test_external_symlink(void **state)
{
    (void)state;
    char cmd[8192], model[4200];
    snprintf(cmd, sizeof cmd, "cp '%s/tests/onnx/tiny_mlp.onnx' '%s/' && ln -s '%s/tests/onnx/tiny_mlp.onnx.data' '%s/'",
             src_dir(), g_dir, src_dir(), g_dir);
    assert_int_equal(tu_run(cmd), 0);
    snprintf(model, sizeof model, "%s/tiny_mlp.onnx", g_dir);
    onnx_model *m;
    deba_err e;
    assert_int_equal(onnx_load(model, ONNX_PARSE_MODEL, &m, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "symbolic link"));
    assert_non_null(strstr(e.msg, "tiny_mlp.onnx.data"));
    snprintf(cmd, sizeof cmd, "rm '%s/tiny_mlp.onnx.data' && cp '%s/tests/onnx/tiny_mlp.onnx.data' '%s/'", g_dir,
             src_dir(), g_dir);
    assert_int_equal(tu_run(cmd), 0);
    assert_int_equal(onnx_load(model, ONNX_PARSE_MODEL, &m, &e), DEBA_OK);
    onnx_model_free(m);
}

/* deba-onnx on FILE: exit status, with stdout and stderr kept in g_dir. */
static int run_tool(const char *args, char **out, char **err)
{
    char cmd[20000], o[4200], r[4200];
    snprintf(o, sizeof o, "%s/stdout", g_dir);
    snprintf(r, sizeof r, "%s/stderr", g_dir);
    snprintf(cmd, sizeof cmd, "'%s/deba-onnx' %s >'%s' 2>'%s'", tu_bindir(), args, o, r);
    int rc = tu_run(cmd);
    *out = tu_slurp(o);
    *err = tu_slurp(r);
    return rc;
}

static void expect_refused(const char *name, const char *what)
{
    char args[4200], *out, *err;
    char *path = fixture(name);
    snprintf(args, sizeof args, "info '%s'", path);
    int rc = run_tool(args, &out, &err);
    char head[4400];
    snprintf(head, sizeof head, "deba-onnx: error: %s: ", path);
    if (rc != 2 || strncmp(err, head, strlen(head)) || !strstr(err, what))
        fail_msg("%s: exit %d, stderr '%s' (expected exit 2, '%s...%s')", name, rc, err, head, what);
    assert_string_equal(out, "");   /* nothing half-written */
    free(out);
    free(err);
    free(path);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    expect_refused("bad/truncated.onnx", "not a valid ONNX protobuf");
    expect_refused("bad/not_onnx.onnx", "not a valid ONNX protobuf");
    expect_refused("bad/opset9.onnx", "opset 9 of the default domain is not supported");
    expect_refused("bad/two_inputs.onnx", "2 inputs 'x', 'z'");
    expect_refused("bad/escape.onnx", "initializer 'net.1.weight': external data location '../tiny_mlp.onnx.data' is not a plain file name");
    expect_refused("bad/absolute.onnx", "location '/etc/passwd' is not a plain file name");
    expect_refused("bad/missing_data.onnx", "external data file 'no_such_file.data' beside the model");
    expect_refused("bad/past_end.onnx", "offset 1048576 + length 50176 is past the end of 'past_end.data' (64 bytes)");
    expect_refused("no_such.onnx", "No such file");
}

static void test_unsupported_listed(void **state)
{
    (void)state;
    char args[4200], *out, *err;
    char *path = fixture("unsupported.onnx");
    snprintf(args, sizeof args, "info '%s'", path);
    assert_int_equal(run_tool(args, &out, &err), 0);
    /* the four nodes the generator broke on purpose, one reason each */
    assert_non_null(strstr(out, "unsupported 4\n"
                                "  node 'pad_reflect' (Pad): attribute mode='reflect' is not supported (only 'constant')\n"
                                "  node 'pool_idx' (MaxPool): output 1 (Indices) is not supported\n"
                                "  node 'celu0' (Celu): op type not supported\n"
                                "  node 'gemm_t' (Gemm): attribute transB=2 is not supported (0 or 1)\n"));
    assert_string_equal(err, "");
    free(out);
    free(err);
    free(path);
}

static void test_cli(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(run_tool("--help", &out, &err), 0);
    assert_non_null(strstr(out, "Usage: deba-onnx info FILE.onnx"));
    free(out), free(err);
    assert_int_equal(run_tool("--version", &out, &err), 0);
    assert_non_null(strstr(out, "deba-onnx "));
    free(out), free(err);
    assert_int_equal(run_tool("", &out, &err), 2);
    assert_non_null(strstr(err, "deba-onnx: error: missing command"));
    free(out), free(err);
    assert_int_equal(run_tool("check x", &out, &err), 2);
    assert_non_null(strstr(err, "deba-onnx: error: unknown command check"));
    free(out), free(err);
    assert_int_equal(run_tool("info", &out, &err), 2);
    free(out), free(err);
    assert_int_equal(run_tool("info --bogus x.onnx", &out, &err), 2);
    free(out), free(err);
}

/* Every prefix of a real model either parses or is refused as input: no crash, no other status. */
static void test_every_prefix(void **state)
{
    (void)state;
    char *path = fixture("tiny_cnn.onnx");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int ok = 0;
    for (size_t len = 0; len <= n; len++) {
        onnx_model *m;
        deba_err e;
        deba_status st = onnx_parse(buf, len, path, ONNX_PARSE_MODEL, &m, &e);
        assert_true(st == DEBA_OK || st == DEBA_E_INPUT);
        ok += st == DEBA_OK;
        onnx_model_free(m);
    }
    assert_true(ok >= 1);   /* the whole file */
    free(path);
}

static size_t put_varint(uint8_t *q, uint64_t v)
{
    size_t n = 0;
    do { q[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v);
    return n;
}

/* Graphs nested in node attributes 20000 levels deep (a 250 KB file): protobuf-c would recurse
 * that deep and overflow the stack; the parser refuses it first. Built from the inside out. */
static void test_nesting_refused(void **state)
{
    (void)state;
    size_t cap = 1 << 20, start = cap;
    uint8_t *buf = malloc(cap), hdr[16];
    for (int level = 0; level < 20000; level++) {
        /* GraphProto.node = 1 { NodeProto.attribute = 5 { AttributeProto.g = 6 { inner } } } */
        static const uint8_t tags[3] = { 6 << 3 | 2, 5 << 3 | 2, 1 << 3 | 2 };
        for (int t = 0; t < 3; t++) {
            size_t h = 0;
            hdr[h++] = tags[t];
            h += put_varint(hdr + h, cap - start);
            assert_true(start > h + 16);
            memcpy(buf + (start -= h), hdr, h);
        }
    }
    size_t h = 0;
    hdr[h++] = 7 << 3 | 2;   /* ModelProto.graph = 7 */
    h += put_varint(hdr + h, cap - start);
    memcpy(buf + (start -= h), hdr, h);
    onnx_model *m;
    deba_err e;
    assert_int_equal(onnx_parse(buf + start, cap - start, "deep.onnx", ONNX_PARSE_ANY, &m, &e), DEBA_E_INPUT);
    assert_non_null(strstr(e.msg, "deep.onnx: messages nest more than"));
    free(buf);
}

/* ONNX's own backend tests (Debian's libonnx-testdata): every model.onnx must parse; how many
 * use only supported nodes is printed for docs/onnx.md (their forward check is `verify`, later). */
static void test_conformance_parse(void **state)
{
    (void)state;
    const char *root = "/usr/share/libonnx-testdata/data";
    static const char *const suites[] = { "node", "pytorch-converted", "pytorch-operator", "simple" };
    DIR *probe = opendir(root);
    if (!probe) skip();   /* make deps installs it */
    closedir(probe);
    int total = 0, supported = 0, in_table = 0;
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", root, suites[s]);
        DIR *d = opendir(dir);
        if (!d) continue;
        int st_total = 0, st_sup = 0;
        for (struct dirent *de; (de = readdir(d));) {
            char path[8500];
            if (de->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s/model.onnx", dir, de->d_name);
            if (!tu_exists(path)) continue;
            onnx_model *m;
            deba_err e;
            if (onnx_load(path, ONNX_PARSE_ANY, &m, &e)) fail_msg("%s", e.msg);
            int all = 1, ops_known = 1;
            char why[256];
            for (int k = 0; k < m->n_nodes; k++) {
                int known = 0;
                for (int i = 0; i < onnx_supported_op_count(); i++) known |= !strcmp(onnx_supported_op(i), m->nodes[k].op);
                ops_known &= known && !*m->nodes[k].domain;
                all &= onnx_node_supported(m, k, why, sizeof why);
            }
            st_total++, total++;
            st_sup += all, supported += all, in_table += ops_known;
            onnx_model_free(m);
        }
        closedir(d);
        printf("conformance %-18s %4d models parsed, %4d fully supported\n", suites[s], st_total, st_sup);
    }
    printf("conformance total: %d parsed, %d with only ops in the table, %d fully supported "
           "(opset 11-18, attributes, ranks)\n", total, in_table, supported);
    assert_true(total > 1000);   /* the Debian 12 package has 1072 */
    assert_true(supported > 0 && supported <= in_table);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_cnn),
        cmocka_unit_test(test_fixture_resnet),
        cmocka_unit_test(test_fixture_vit),
        cmocka_unit_test(test_fixture_mlp_external),
        cmocka_unit_test(test_params_identity_copies),
        cmocka_unit_test(test_external_data),
        cmocka_unit_test_setup_teardown(test_external_symlink, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_listed, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_cli, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_nesting_refused),
        cmocka_unit_test(test_conformance_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
