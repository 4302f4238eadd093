/* ONNX import, second part (docs/onnx.md): `deba-onnx verify` runs imported graphs on the engine
 * and compares them with outputs nobody here computed: ONNX's own conformance suite (Debian's
 * libonnx-testdata), PyTorch's outputs for our fixtures (scripts/onnx_fixtures.py) and for
 * torchvision's classification models exported on the spot (scripts/onnx_torchvision.py). */
#include "tests/testutil.h"

#include <dirent.h>

static const char *src_dir(void)
{
    const char *s = getenv("DEBA_SRC");
    return s && *s ? s : ".";
}

/* deba-onnx ARGS: exit status, stdout and stderr (kept in g_dir). */
static int run_tool(const char *args, char **out, char **err)
{
    size_t cap = strlen(args) + 9000;
    char *cmd = malloc(cap), o[4200], r[4200];
    snprintf(o, sizeof o, "%s/stdout", g_dir);
    snprintf(r, sizeof r, "%s/stderr", g_dir);
    snprintf(cmd, cap, "'%s/deba-onnx' %s >'%s' 2>'%s'", tu_bindir(), args, o, r);
    int rc = tu_run(cmd);
    free(cmd);
    *out = tu_slurp(o);
    *err = tu_slurp(r);
    return rc;
}

/* The counts of the summary line "verify: N passed, M failed, K unsupported (dev)". */
static void summary(const char *out, int *passed, int *failed, int *unsupported)
{
    const char *q = strstr(out, "\nverify: ");
    if (!q && !strncmp(out, "verify: ", 8)) q = out - 1;
    assert_non_null(q);
    assert_int_equal(sscanf(q + 1, "verify: %d passed, %d failed, %d unsupported", passed, failed, unsupported), 3);
}

/* Our fixtures against PyTorch's outputs, tiny_vit's attention included (its permute moves the
 * batch axis and the next Gather moves it back). */
static void test_fixtures(void **state)
{
    (void)state;
    char args[4400], *out, *err;
    snprintf(args, sizeof args, "verify '%s'/tests/onnx/verify/*", src_dir());
    int rc = run_tool(args, &out, &err);
    int p, f, u;
    summary(out, &p, &f, &u);
    if (rc || p != 4 || f || u) fail_msg("exit %d:\n%s%s", rc, out, err);
    assert_non_null(strstr(out, "tiny_vit test_data_set_0: ok"));
    free(out);
    free(err);
}

/* verify can fail: one expected logit moved by 0.01 is a mismatch named by element, exit 1. */
static void test_mismatch_detected(void **state)
{
    (void)state;
    char args[4400], *out, *err;
    snprintf(args, sizeof args, "verify '%s/tests/onnx/verify_bad/tiny_cnn_off'", src_dir());
    int rc = run_tool(args, &out, &err);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "test_data_set_0: MISMATCH output 'output' element 7: "));
    assert_non_null(strstr(out, "verify: 0 passed, 1 failed, 0 unsupported"));
    /* and a looser tolerance accepts it: the flag reaches the comparison */
    snprintf(args, sizeof args, "verify --atol 0.02 '%s/tests/onnx/verify_bad/tiny_cnn_off'", src_dir());
    free(out);
    free(err);
    assert_int_equal(run_tool(args, &out, &err), 0);
    free(out);
    free(err);
}

static void test_cli(void **state)
{
    (void)state;
    char *out, *err;
    assert_int_equal(run_tool("verify", &out, &err), 2);
    assert_non_null(strstr(err, "verify needs a DIR"));
    free(out), free(err);
    assert_int_equal(run_tool("verify --atol -1 x", &out, &err), 2);
    assert_non_null(strstr(err, "--atol needs a non-negative number, got -1"));
    free(out), free(err);
    assert_int_equal(run_tool("verify --device tpu x", &out, &err), 2);
    assert_non_null(strstr(err, "--device must be cpu, cuda or auto, got tpu"));
    free(out), free(err);
    assert_int_equal(run_tool("verify --bogus x", &out, &err), 2);
    free(out), free(err);
    char args[4400];
    snprintf(args, sizeof args, "verify '%s/tests/onnx'", src_dir());   /* no model.onnx there */
    assert_int_equal(run_tool(args, &out, &err), 2);
    assert_non_null(strstr(err, "model.onnx: No such file"));
    free(out), free(err);
    /* a data set with a missing output file: the file named, exit 2 */
    char dir[4300], cmd[9000];
    snprintf(dir, sizeof dir, "%s/cnn", g_dir);
    snprintf(cmd, sizeof cmd, "cp -r '%s/tests/onnx/verify/tiny_cnn' '%s' && rm '%s/test_data_set_0/output_0.pb'",
             src_dir(), dir, dir);
    assert_int_equal(tu_run(cmd), 0);
    snprintf(args, sizeof args, "verify '%s'", dir);
    assert_int_equal(run_tool(args, &out, &err), 2);
    assert_non_null(strstr(err, "test_data_set_0/output_0.pb: No such file"));
    free(out), free(err);
}

/* ONNX's conformance suite: none of what imports may fail. The per-op passes go to docs/onnx.md. */
static void test_conformance(void **state)
{
    (void)state;
    const char *root = "/usr/share/libonnx-testdata/data";
    DIR *probe = opendir(root);
    if (!probe) skip();   /* make deps installs it */
    closedir(probe);
    char args[4400], *out, *err;
    snprintf(args, sizeof args, "verify %s/node/*/ %s/pytorch-converted/*/ %s/pytorch-operator/*/ %s/simple/*/", root,
             root, root, root);
    int rc = run_tool(args, &out, &err);
    int p, f, u;
    summary(out, &p, &f, &u);
    printf("conformance verify: %d passed, %d failed, %d unsupported\n", p, f, u);
    /* each passing node test, by op: the directory name is test_<op>... */
    if (f || rc) {
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
            if (strstr(line, "MISMATCH") || strstr(line, "FAILED")) printf("%s\n", line);
        fail_msg("exit %d, %d failed; stderr: %s", rc, f, err);
    }
    /* a floor, not an exact count: what imports may grow; a change that refused most of the
     * suite (and so failed nothing) must not pass */
    assert_true(p >= 200);
    free(out);
    free(err);
}

/* torchvision's classification models (issue 10's list), exported here by PyTorch with the call
 * of docs/onnx.md at opsets 13-17, PRESERVE and TRAINING, and run against PyTorch's logits. */
static void test_torchvision(void **state)
{
    (void)state;
    if (tu_run("/usr/bin/python3 -c 'import torch, torchvision, onnx' 2>/dev/null")) skip();   /* make deps */
    char cmd[9000], *out, *err;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/onnx_torchvision.py' '%s/tv' >'%s/export.log' 2>&1", src_dir(),
             g_dir, g_dir);
    if (tu_run(cmd)) {
        snprintf(cmd, sizeof cmd, "%s/export.log", g_dir);
        fail_msg("the export failed: %s", tu_slurp(cmd));
    }
    char args[4400];
    snprintf(args, sizeof args, "verify '%s'/tv/*", g_dir);
    int rc = run_tool(args, &out, &err);
    printf("%s", out);
    int p, f, u;
    summary(out, &p, &f, &u);
    if (rc || f) fail_msg("exit %d: %s", rc, err);
    /* the 13 torchvision models (VisionTransformer through the fused nn.MultiheadAttention
     * region) and the PyTorch twin of --arch cnn_small */
    assert_int_equal(p, 14);
    assert_int_equal(u, 0);
    assert_non_null(strstr(out, "vit_small test_data_set_0: ok"));
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fixtures, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_mismatch_detected, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_cli, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_conformance, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_torchvision, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
