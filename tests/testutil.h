/* Helpers shared by the cmocka test programs: scratch directories and small files written by
 * the tests themselves. Header-only so each test stays one file. */
#ifndef DEBA_TESTUTIL_H
#define DEBA_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

/* A fresh directory under $TMPDIR (or /tmp); the caller removes it with tu_rmtree. */
static inline char *tu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/deba-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p)) { free(p); return NULL; }
    return p;
}

static inline void tu_rmtree(char *dir)
{
    if (!dir) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    free(dir);
}

/* A scratch directory per test, for cmocka_unit_test_setup_teardown(test, tu_dir_setup,
 * tu_dir_teardown): the test writes under g_dir. */
static char *g_dir __attribute__((unused));

static inline int tu_dir_setup(void **state)
{
    (void)state;
    g_dir = tu_mkdtemp();
    return g_dir ? 0 : -1;
}

static inline int tu_dir_teardown(void **state)
{
    (void)state;
    tu_rmtree(g_dir);
    g_dir = NULL;
    return 0;
}

/* The whole of a file as a string (malloc'd; NULL when it cannot be read). */
static inline char *tu_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) free(s);
            s = t;
        }
    }
    fclose(f);
    if (s) s[n] = '\0';
    return s;
}

/* Writes text to dir/name (creating it) and returns the full path in a static-per-call buffer
 * the caller owns (malloc'd). */
static inline char *tu_write(const char *dir, const char *name, const char *text)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) { free(p); return NULL; }
    fputs(text, f);
    fclose(f);
    return p;
}

static inline int tu_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Runs a shell command, returns its exit status (or -1); output goes to out_path if given. */
static inline int tu_run(const char *cmd)
{
    int rc = system(cmd);
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Directory of the built tools ($DEBA_BIN, set by `make test`; else build/bin). */
static inline const char *tu_bindir(void)
{
    const char *b = getenv("DEBA_BIN");
    return b && *b ? b : "build/bin";
}

#endif
