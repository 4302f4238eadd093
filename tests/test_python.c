/* The Python package as a user meets it, with Debian's /usr/bin/python3: its unit tests (by-hand
 * values and agreement with deba-train), `pip install ./python`, and examples/pytorch/train.py
 * for a fixed and a DEBA run that deba-calibrate and deba-report then read. */
#include "tests/testutil.h"

static char g_env[16384];
static char g_pre[256];     /* under make sanitize: what python3 needs in front to load the library */   /* DEBA_BIN, DEBA_LIBRARY, PYTHONPATH for the commands */
static char g_bin[4096], g_src[4096];

static int setup_env(void **state)
{
    (void)state;
    const char *bin = tu_bindir(), *src = getenv("DEBA_SRC");
    char cwd[2048] = "";
    if ((bin[0] != '/' || !src || src[0] != '/') && !getcwd(cwd, sizeof cwd)) return -1;
    snprintf(g_bin, sizeof g_bin, "%s%s%s", bin[0] == '/' ? "" : cwd, bin[0] == '/' ? "" : "/", bin);
    if (!src || !*src) src = ".";
    snprintf(g_src, sizeof g_src, "%s%s%s", src[0] == '/' ? "" : cwd, src[0] == '/' ? "" : "/", src);
    /* make sanitize: python3 is not built with ASan, so its runtime must be loaded first; leaks of
     * the interpreter itself are not ours to report */
    const char *san = getenv("DEBA_SANITIZE");
    snprintf(g_pre, sizeof g_pre, "%s",
             san && *san ? "LD_PRELOAD=\"$(gcc -print-file-name=libasan.so)\" ASAN_OPTIONS=detect_leaks=0 " : "");
    snprintf(g_env, sizeof g_env,
             "%sDEBA_BIN='%s' DEBA_LIBRARY='%s/../lib/libdeba.so.0' PYTHONPATH='%s/python' PYTHONDONTWRITEBYTECODE=1 "
             "OMP_WAIT_POLICY=passive", g_pre, g_bin, g_bin, g_src);
    return 0;
}

static int run_cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_cmd(const char *fmt, ...)
{
    char cmd[32768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return tu_run(cmd);
}

static void test_python_unit_tests(void **state)
{
    (void)state;
    assert_int_equal(run_cmd("cd '%s' && %s /usr/bin/python3 -m unittest discover -s '%s/python/tests' 2>log.txt || "
                             "{ cat log.txt; exit 1; }", g_dir, g_env, g_src), 0);
}

/* pip installs the package from a copy of python/ (the build leaves files beside the sources),
 * offline, with Debian's setuptools; the installed package finds the library by DEBA_LIBRARY. */
static void test_pip_install(void **state)
{
    (void)state;
    assert_int_equal(run_cmd("cd '%s' && cp -r '%s/python' src && /usr/bin/python3 -m pip install -q "
                             "--no-build-isolation --no-deps --no-index --target site ./src >pip.txt 2>&1 || "
                             "{ cat pip.txt; exit 1; }", g_dir, g_src), 0);
    assert_int_equal(run_cmd("cd / && %sDEBA_LIBRARY='%s/../lib/libdeba.so.0' PYTHONPATH='%s/site' /usr/bin/python3 -c "
                             "'import deba, sys; assert deba.__file__.startswith(sys.argv[1]), deba.__file__; "
                             "s = deba.Scheduler(batch=100, growth=1.29, cooldown=0); s.step(1, 1, 1); "
                             "assert s.step(0.1, 1, 1) == \"increase\" and s.batch_size == 129' '%s/site'",
                             g_pre, g_bin, g_dir, g_dir), 0);
    /* DEBA_LIBRARY names a missing file: an ImportError that says what to set */
    assert_int_equal(run_cmd("cd / && DEBA_LIBRARY=/nonexistent/libdeba.so.0 PYTHONPATH='%s/site' /usr/bin/python3 -c "
                             "'import deba' 2>'%s/err.txt'", g_dir, g_dir) != 0, 1);
    char p[4200];
    snprintf(p, sizeof p, "%s/err.txt", g_dir);
    char *err = tu_slurp(p);
    assert_non_null(strstr(err, "ImportError: deba: cannot load libdeba (set DEBA_LIBRARY"));
    free(err);
}

/* The PyTorch example, fixed and DEBA, small enough for two shared cores; the tools read both. */
static void test_pytorch_example_and_tools(void **state)
{
    (void)state;
    const char *args = "--out runs --model tiny --subset 512 --test-subset 256 --epochs 3 --batch 32 --bmin 16 "
                       "--cooldown 1 --threads 1 --seed 2";
    for (int i = 0; i < 2; i++)
        assert_int_equal(run_cmd("cd '%s' && %s /usr/bin/python3 '%s/examples/pytorch/train.py' --method %s %s "
                                 ">train-%d.txt 2>&1 || { cat train-%d.txt; exit 1; }", g_dir, g_env, g_src,
                                 i ? "deba" : "fixed", args, i, i), 0);
    char p[4200];
    const char *labels[2] = {"fixed", "deba"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/runs/tiny/fashion-mnist/%s/seed2/meta.csv", g_dir, labels[i]);
        char *m = tu_slurp(p);
        assert_non_null(m);
        assert_non_null(strstr(m, "status,completed\n"));
        assert_non_null(strstr(m, "epochs,3\n"));
        assert_non_null(strstr(m, i ? "method,deba\n" : "method,fixed\n"));
        free(m);
        snprintf(p, sizeof p, "%s/runs/tiny/fashion-mnist/%s/seed2/trace.csv", g_dir, labels[i]);
        char *t = tu_slurp(p);
        assert_non_null(t);
        assert_non_null(strstr(t, "\n3,"));   /* three rows */
        if (!i) assert_non_null(strstr(t, ",fixed,"));
        free(t);
    }
    /* a second run into the same directory is refused: exit 2, the library's message */
    assert_int_equal(run_cmd("cd '%s' && %s /usr/bin/python3 '%s/examples/pytorch/train.py' --method deba %s "
                             ">again.txt 2>&1", g_dir, g_env, g_src, args), 2);
    snprintf(p, sizeof p, "%s/again.txt", g_dir);
    char *again = tu_slurp(p);
    assert_non_null(strstr(again, "train.py: error: "));
    assert_non_null(strstr(again, "already holds a run: use resume to continue it or force to start over"));
    free(again);
    /* resumed to 4 epochs: one more row after the three */
    assert_int_equal(run_cmd("cd '%s' && %s /usr/bin/python3 '%s/examples/pytorch/train.py' --method deba %s --epochs 4 "
                             "--resume >resume.txt 2>&1 || { cat resume.txt; exit 1; }", g_dir, g_env, g_src, args), 0);
    snprintf(p, sizeof p, "%s/runs/tiny/fashion-mnist/deba/seed2/trace.csv", g_dir);
    char *t = tu_slurp(p);
    assert_non_null(strstr(t, "\n4,"));
    assert_null(strstr(t, "\n5,"));
    free(t);
    assert_int_equal(run_cmd("cd '%s' && '%s/deba-calibrate' --quiet --out thresholds.csv runs", g_dir, g_bin), 0);
    snprintf(p, sizeof p, "%s/thresholds.csv", g_dir);
    char *thr = tu_slurp(p);
    assert_non_null(thr);
    assert_non_null(strstr(thr, "\ntiny,fashion-mnist,"));
    free(thr);
    assert_int_equal(run_cmd("cd '%s' && '%s/deba-report' --quiet --no-figures --format md --out report runs "
                             ">report.txt 2>&1 || { cat report.txt; exit 1; }", g_dir, g_bin), 0);
    assert_int_equal(run_cmd("cd '%s' && grep -rq 'tiny' report", g_dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_python_unit_tests, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_pip_install, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_pytorch_example_and_tools, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
