/* The CUDA backend as a loadable module (trainer/backend/registry.c): no tool links a CUDA
 * library, the module exports its entry point and nothing else, a missing or broken module is an
 * exit-1 message naming it, --device auto trains on the CPU without a usable GPU, and the real
 * module on a machine without a GPU says so instead of crashing. */
#include "tests/testutil.h"

#include "deba/deba.h"
#include "trainer/backend/backend.h"
#include "trainer/backend/module.h"

static const char *TOOLS[] = {"deba-train", "deba-profile", "deba-calibrate", "deba-report"};
static const char *CUDA_LIBS[] = {"libcudart", "libcublas", "libcudnn", "libcupti", "libcuda."};

/* The module the build made, next to the tools: <bin>/../lib/deba/libdeba-cuda.so. */
static const char *module_path(void)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/../lib/deba/libdeba-cuda.so", tu_bindir());
    return p;
}

/* The whole of a command's stdout (malloc'd), or NULL. */
static char *capture(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
    }
    if (pclose(f) == -1 || !buf) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static char *slurp(const char *path)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cat '%s'", path);
    return capture(cmd);
}

/* deba-train --device <device> on a tiny cnn_small run under env; returns its exit status,
 * stderr in g_dir/stderr.txt, the run under g_dir/out. */
static int train(const char *device, const char *env)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s %s/deba-train --arch cnn_small --dataset fashion-mnist --subset 64 --test-subset 32 --epochs 1 "
             "--device %s --quiet --out %s/out 2>%s/stderr.txt",
             env ? env : "", tu_bindir(), device, g_dir, g_dir);
    return tu_run(cmd);
}

static char *train_stderr(void)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/stderr.txt", g_dir);
    return slurp(p);
}

/* 1 when this machine has a GPU the module can use (then the no-GPU tests do not apply). */
static int gpu_usable(void)
{
    deba_err e = {0};
    if (!tr_backend_cuda_driver_present(&e)) return 0;   /* without loading the module here */
    tr_backend *be = tr_backend_cuda_new(0, &e);
    tr_backend_free(be);
    return be != NULL;
}

/* (a) ldd of every tool and of this test program names no CUDA library, and the module exports
 * exactly the one entry point. Before the split, every binary linked all four when nvcc was
 * present. */
static void test_nothing_links_cuda(void **state)
{
    (void)state;
    char cmd[4400];
    for (size_t t = 0; t < sizeof TOOLS / sizeof TOOLS[0] + 1; t++) {
        char bin[4096];
        if (t < sizeof TOOLS / sizeof TOOLS[0]) snprintf(bin, sizeof bin, "%s/%s", tu_bindir(), TOOLS[t]);
        else snprintf(bin, sizeof bin, "/proc/%d/exe", (int)getpid());
        assert_true(tu_exists(bin));
        snprintf(cmd, sizeof cmd, "ldd '%s'", bin);
        char *out = capture(cmd);
        assert_non_null(out);
        assert_non_null(strstr(out, "libc.so"));   /* ldd did run */
        for (size_t l = 0; l < sizeof CUDA_LIBS / sizeof CUDA_LIBS[0]; l++) {
            if (strstr(out, CUDA_LIBS[l])) fprintf(stderr, "%s links %s:\n%s", bin, CUDA_LIBS[l], out);
            assert_null(strstr(out, CUDA_LIBS[l]));
        }
        free(out);
    }
    if (!tu_exists(module_path())) {
        fprintf(stderr, "no %s (a build without nvcc): export check skipped\n", module_path());
        return;
    }
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s' | awk '{print $NF}'", module_path());
    char *syms = capture(cmd);
    assert_non_null(syms);
    if (strcmp(syms, TR_MODULE_ENTRY "\n")) fprintf(stderr, "the module exports:\n%s", syms);
    assert_string_equal(syms, TR_MODULE_ENTRY "\n");
    free(syms);
}

/* (b) DEBA_CUDA_MODULE naming no file: exit 1, the path in the message, no run directory. */
static void test_missing_module(void **state)
{
    (void)state;
    assert_int_equal(train("cuda", "DEBA_CUDA_MODULE=/nonexistent/libdeba-cuda.so"), 1);
    char *err = train_stderr();
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent/libdeba-cuda.so"));
    assert_non_null(strstr(err, "No such file"));   /* dlerror()'s own words */
    free(err);
    char p[4200];
    snprintf(p, sizeof p, "%s/out/cnn_small", g_dir);
    assert_false(tu_exists(p));                        /* nothing half-written */
}

/* Builds g_dir/<name>.so from C source with cc -shared; returns its path (malloc'd). */
static char *build_so(const char *name, const char *src)
{
    char file[256];
    snprintf(file, sizeof file, "%s.c", name);
    char *c = tu_write(g_dir, file, src);
    assert_non_null(c);
    char *so = malloc(4200), cmd[9000];
    snprintf(so, 4200, "%s/%s.so", g_dir, name);
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -o '%s' '%s'", so, c);
    assert_int_equal(tu_run(cmd), 0);
    free(c);
    return so;
}

/* deba-train --device cuda with DEBA_CUDA_MODULE=so: exit 1, a message naming so and holding
 * `expect`. */
static void expect_refused(const char *so, const char *expect)
{
    char env[4400];
    snprintf(env, sizeof env, "DEBA_CUDA_MODULE='%s'", so);
    assert_int_equal(train("cuda", env), 1);
    char *err = train_stderr();
    assert_non_null(err);
    if (!strstr(err, so) || !strstr(err, expect)) fprintf(stderr, "expected '%s' and '%s' in:\n%s", so, expect, err);
    assert_non_null(strstr(err, so));
    assert_non_null(strstr(err, expect));
    free(err);
}

/* (c) a file that is a library without the entry point, one that answers another ABI version,
 * one built from another graph.h (the layout check), and one that is not a library at all. */
static void test_broken_modules(void **state)
{
    (void)state;
    char *nosym = build_so("nosym", "int some_other_function(void) { return 1; }\n");
    expect_refused(nosym, "undefined symbol: " TR_MODULE_ENTRY);
    char *abi = build_so("abi999", "int deba_backend_module_init(int v, const void *h, void *o)\n"
                                   "{ (void)v; (void)h; (void)o; return 999; }\n");
    expect_refused(abi, "ABI 999");
    char *layout = build_so("layout", "int deba_backend_module_init(int v, const void *h, void *o)\n"
                                      "{ (void)v; (void)h; (void)o; return -1; }\n");
    expect_refused(layout, "struct sizes differ");
    char *text = tu_write(g_dir, "text.so", "not an ELF file\n");
    expect_refused(text, "cannot be loaded");

    /* the same answers in process, as DEBA_E_RUNTIME; and the host really passed its version */
    char *probe = build_so("probe", "#include <stdio.h>\n"
                                    "int deba_backend_module_init(int v, const void *h, void *o)\n"
                                    "{ (void)h; (void)o; fprintf(stderr, \"probe: host ABI %d\\n\", v); return 7; }\n");
    setenv("DEBA_CUDA_MODULE", probe, 1);
    deba_err e = {0};
    assert_null(tr_backend_new("cuda", &e));
    assert_int_equal(e.status, DEBA_E_RUNTIME);
    char want[64];
    snprintf(want, sizeof want, "ABI 7, this program needs %d", TR_MODULE_ABI);
    assert_non_null(strstr(e.msg, want));
    unsetenv("DEBA_CUDA_MODULE");
    free(nosym);
    free(abi);
    free(layout);
    free(text);
    free(probe);
}

/* (d) --device auto without a usable GPU trains on the CPU (meta.csv device = cpu), a missing or
 * broken module included, and the backend keeps the reason. */
static void test_auto_falls_back(void **state)
{
    (void)state;
    if (gpu_usable()) {
        fprintf(stderr, "a GPU is usable here: the CPU fallback does not apply\n");
        skip();
    }
    const char *envs[] = {NULL, "DEBA_CUDA_MODULE=/nonexistent/libdeba-cuda.so"};
    for (size_t i = 0; i < 2; i++) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s/out'", g_dir);
        assert_int_equal(tu_run(cmd), 0);
        assert_int_equal(train("auto", envs[i]), 0);
        char p[4200];
        snprintf(p, sizeof p, "%s/out/cnn_small/fashion-mnist/deba/seed42/meta.csv", g_dir);
        deba_meta m = {0};
        deba_err e = {0};
        assert_int_equal(deba_meta_read(p, &m, &e), DEBA_OK);
        assert_string_equal(deba_meta_get(&m, "device"), "cpu");
        deba_meta_free(&m);
    }
    deba_err e = {0};
    tr_backend *be = tr_backend_new("auto", &e);
    assert_non_null(be);
    assert_string_equal(be->name, "cpu");
    assert_int_equal(e.status, DEBA_OK);
    assert_non_null(strstr(be->note, "--device auto chose the CPU: "));
    tr_backend_free(be);
}

/* (e) the real module where no GPU is usable (here: only the driver stub): exit 1 saying so, not
 * a crash. */
static void test_real_module_without_gpu(void **state)
{
    (void)state;
    if (!tu_exists(module_path())) {
        fprintf(stderr, "no %s (a build without nvcc): skipping\n", module_path());
        skip();
    }
    if (gpu_usable()) {
        fprintf(stderr, "a GPU is usable here: the no-GPU message does not apply\n");
        skip();
    }
    assert_int_equal(train("cuda", NULL), 1);
    char *err = train_stderr();
    assert_non_null(err);
    if (!strstr(err, "no usable GPU")) fprintf(stderr, "%s", err);
    assert_non_null(strstr(err, "no usable GPU"));
    free(err);
    /* and through an explicit path to the same module */
    char env[4400];
    snprintf(env, sizeof env, "DEBA_CUDA_MODULE='%s'", module_path());
    assert_int_equal(train("cuda", env), 1);
    err = train_stderr();
    assert_non_null(err);
    assert_non_null(strstr(err, "no usable GPU"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_links_cuda),
        cmocka_unit_test_setup_teardown(test_missing_module, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_broken_modules, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_auto_falls_back, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_real_module_without_gpu, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
