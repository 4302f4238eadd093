/* The shared libdeba as an outside program sees it: the C example's batch-size sequence against
 * the one worked out by hand, the exported names, and pkg-config linking the shared library by
 * default and the archive with --static. */
#include "tests/testutil.h"

/* <build>/lib, from $DEBA_BIN = <build>/bin, as an absolute path */
static void build_dir(char *buf, size_t cap, const char *sub)
{
    char cwd[2048] = "";
    const char *bin = tu_bindir();
    if (bin[0] != '/') assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(buf, cap, "%s%s%s/../%s", cwd, *cwd ? "/" : "", bin, sub);
}

/* examples/sched_loop.c's designed epochs (see its plan[] comments), by hand with B0 64, C 2,
 * τ .25, θ .5, λ .1, α 1.5, β .8: steps = ceil(1000 / B). */
static void test_sched_loop_by_hand(void **state)
{
    (void)state;
    static const char *want =
        "epoch 1 batch 64 steps 16 decision warmup next 64\n"
        "epoch 2 batch 64 steps 16 decision hold next 64\n"
        "epoch 3 batch 64 steps 16 decision increase next 96\n"
        "epoch 4 batch 96 steps 11 decision cooldown next 96\n"
        "epoch 5 batch 96 steps 11 decision increase next 144\n"
        "epoch 6 batch 144 steps 7 decision cooldown next 144\n"
        "epoch 7 batch 144 steps 7 decision rollback next 115\n"
        "epoch 8 batch 115 steps 9 decision cooldown next 115\n";
    char ex[4200], cmd[8800];
    build_dir(ex, sizeof ex, "examples/sched_loop");
    snprintf(cmd, sizeof cmd, "'%s' >'%s/out.txt' && ldd '%s' | grep -q 'libdeba.so.0 => ' ", ex, g_dir, ex);
    assert_int_equal(tu_run(cmd), 0);   /* and it runs on the shared library */
    snprintf(cmd, sizeof cmd, "%s/out.txt", g_dir);
    char *out = tu_slurp(cmd);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

/* Only deba_* and DEBA_* leave the library: the rest of core/ is private. */
static void test_exports_only_deba_names(void **state)
{
    (void)state;
    char so[4200], cmd[8800];
    build_dir(so, sizeof so, "lib/libdeba.so");
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s' | awk '{sub(/@.*/, \"\", $NF); print $NF}' >'%s/syms.txt'", so, g_dir);
    assert_int_equal(tu_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/syms.txt", g_dir);
    char *syms = tu_slurp(cmd);
    assert_non_null(syms);
    int n = 0, runwriter = 0;
    for (char *line = strtok(syms, "\n"); line; line = strtok(NULL, "\n"), n++) {
        if (strncmp(line, "deba_", 5) && strncmp(line, "DEBA_", 5)) fail_msg("libdeba.so exports '%s'", line);
        runwriter += !strcmp(line, "deba_runwriter_open");
    }
    assert_true(n > 50);
    assert_int_equal(runwriter, 1);
    free(syms);
    snprintf(cmd, sizeof cmd, "readelf -d '%s' | grep -q 'Library soname: \\[libdeba.so.0\\]'", so);
    assert_int_equal(tu_run(cmd), 0);
}

/* deba.pc.in installed into a scratch prefix: --libs links libdeba.so.0 with no other flag,
 * --static --libs links the archive into a program that needs no libdeba at run time. */
static void test_pkg_config(void **state)
{
    (void)state;
    char lib[4200], src[2048], cmd[16384];
    build_dir(lib, sizeof lib, "lib");
    const char *srcdir = getenv("DEBA_SRC");
    snprintf(src, sizeof src, "%s", srcdir && *srcdir ? srcdir : ".");
    /* make sanitize: the library needs the sanitizer runtimes in the program that links it, and a
     * fully static program cannot carry ASan, so only the shared link is checked there */
    const char *san = getenv("DEBA_SANITIZE");
    int sanitized = san && *san;
    if (sanitized) {
        snprintf(cmd, sizeof cmd,
                 "set -e; P='%s/prefix'; mkdir -p \"$P/lib/pkgconfig\" \"$P/include\"; cp -P '%s'/libdeba.so* \"$P/lib/\"; "
                 "cp -r '%s/include/deba' \"$P/include/\"; "
                 "sed -e \"s|@PREFIX@|$P|\" -e 's|@VERSION@|0.1.0|' '%s/deba.pc.in' >\"$P/lib/pkgconfig/deba.pc\"; "
                 "printf '#include <stdio.h>\\n#include <deba/deba.h>\\nint main(void){ deba_sched_config c; "
                 "deba_sched_config_default(&c); deba_sched *s = deba_sched_new(&c, NULL); printf(\"%%%%d\\\\n\", "
                 "deba_sched_batch(s)); deba_sched_free(s); return 0; }\\n' >'%s/p.c'; "
                 "export PKG_CONFIG_PATH=\"$P/lib/pkgconfig\"; cd '%s'; "
                 "cc %s p.c $(pkg-config --cflags --libs deba) -o p_shared; "
                 "readelf -d p_shared | grep -q 'NEEDED.*libdeba.so.0'; LD_LIBRARY_PATH=\"$P/lib\" ./p_shared >shared.txt",
                 g_dir, lib, src, src, g_dir, g_dir, san);
        assert_int_equal(tu_run(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s/shared.txt", g_dir);
        char *out = tu_slurp(cmd);
        assert_non_null(out);
        assert_string_equal(out, "64\n");
        free(out);
        fprintf(stderr, "test_pkg_config: sanitizer build, the static link is not checked\n");
        return;
    }
    snprintf(cmd, sizeof cmd,
             "set -e; P='%s/prefix'; mkdir -p \"$P/lib/pkgconfig\" \"$P/include\"; cp -P '%s'/libdeba.so* '%s/libdeba.a' "
             "\"$P/lib/\"; cp -r '%s/include/deba' \"$P/include/\"; "
             "sed -e \"s|@PREFIX@|$P|\" -e 's|@VERSION@|0.1.0|' '%s/deba.pc.in' >\"$P/lib/pkgconfig/deba.pc\"; "
             "printf '#include <stdio.h>\\n#include <deba/deba.h>\\nint main(void){ deba_sched_config c; "
             "deba_sched_config_default(&c); deba_sched *s = deba_sched_new(&c, NULL); printf(\"%%%%d\\\\n\", "
             "deba_sched_batch(s)); deba_sched_free(s); return 0; }\\n' >'%s/p.c'; "
             "export PKG_CONFIG_PATH=\"$P/lib/pkgconfig\"; cd '%s'; "
             "cc p.c $(pkg-config --cflags --libs deba) -o p_shared; "
             "cc -static p.c $(pkg-config --cflags --static --libs deba) -o p_static 2>/dev/null; "
             "readelf -d p_shared | grep -q 'NEEDED.*libdeba.so.0'; ! readelf -d p_static | grep -q NEEDED; "
             "LD_LIBRARY_PATH=\"$P/lib\" ./p_shared >shared.txt; ./p_static >static.txt",
             g_dir, lib, lib, src, src, g_dir, g_dir);
    assert_int_equal(tu_run(cmd), 0);
    char p[4200];
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s.txt", g_dir, i ? "static" : "shared");
        char *out = tu_slurp(p);
        assert_non_null(out);
        assert_string_equal(out, "64\n");   /* SPEC §3's B0 */
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sched_loop_by_hand, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_exports_only_deba_names, tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(test_pkg_config, tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
