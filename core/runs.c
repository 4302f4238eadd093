/* Run directories: their path convention, mkdir -p, and finding and loading every run
 * (a directory with meta.csv and trace.csv) under a set of roots. */
#include "deba/trace.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

deba_status deba_run_dir(char *buf, size_t cap, const char *out, const char *arch, const char *dataset,
                         const char *label, int seed, deba_err *e)
{
    if (!*out) return deba_err_set(e, DEBA_E_INPUT, "--out: empty directory name");
    int n = snprintf(buf, cap, "%s/%s/%s/%s/seed%d", out, arch, dataset, label, seed);
    if (n < 0 || (size_t)n >= cap)
        return deba_err_set(e, DEBA_E_INPUT, "run directory path too long under '%s'", out);
    return DEBA_OK;
}

deba_status deba_mkdirs(const char *path, deba_err *e)
{
    char p[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof p) return deba_err_set(e, DEBA_E_INPUT, "bad directory path '%s'", path);
    memcpy(p, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        struct stat st;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return deba_err_set(e, errno == ENOTDIR ? DEBA_E_INPUT : DEBA_E_IO, "%s: cannot create directory: %s",
                                p, strerror(errno));
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            return deba_err_set(e, DEBA_E_INPUT, "%s: exists and is not a directory", p);
        p[i] = c;
    }
    return DEBA_OK;
}

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static int strvec_push(strvec *s, const char *str)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        char **p = realloc(s->v, cap * sizeof *p);
        if (!p) return -1;
        s->v = p;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str))) return -1;
    s->n++;
    return 0;
}

static void strvec_free(strvec *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
}

static int is_file(const char *dir, const char *name)
{
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Depth-limited so a symlink loop ends; symlinked run directories are still followed. */
static deba_status walk(const char *dir, int depth, strvec *found, deba_err *e)
{
    if (depth > 32) return DEBA_OK;
    if (is_file(dir, "meta.csv") && is_file(dir, "trace.csv") && strvec_push(found, dir) != 0)
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    DIR *d = opendir(dir);
    if (!d) return deba_err_set(e, DEBA_E_INPUT, "%s: cannot open directory: %s", dir, strerror(errno));
    deba_status st = DEBA_OK;
    struct dirent *de;
    while (st == DEBA_OK && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char p[4096];
        struct stat sb;
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p) continue;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) st = walk(p, depth + 1, found, e);
    }
    closedir(d);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

deba_status deba_runs_load(const char *const *roots, size_t nroots, deba_run **runs, size_t *n, deba_err *e)
{
    *runs = NULL;
    *n = 0;
    strvec found = { 0 };
    deba_status st = DEBA_OK;
    for (size_t i = 0; i < nroots && st == DEBA_OK; i++) {
        struct stat sb;
        if (stat(roots[i], &sb) != 0)
            st = deba_err_set(e, DEBA_E_INPUT, "%s: %s", roots[i], strerror(errno));
        else if (!S_ISDIR(sb.st_mode))
            st = deba_err_set(e, DEBA_E_INPUT, "%s: not a directory", roots[i]);
        else {
            /* "runs/" and "runs" name the same runs. */
            char root[4096];
            snprintf(root, sizeof root, "%s", roots[i]);
            for (size_t l = strlen(root); l > 1 && root[l - 1] == '/'; l--) root[l - 1] = '\0';
            st = walk(root, 0, &found, e);
        }
    }
    if (st == DEBA_OK && found.n) {
        qsort(found.v, found.n, sizeof *found.v, cmp_str);
        size_t m = 0;   /* overlapping roots: keep each directory once */
        for (size_t i = 0; i < found.n; i++) {
            if (m && strcmp(found.v[m - 1], found.v[i]) == 0) free(found.v[i]);
            else found.v[m++] = found.v[i];
        }
        found.n = m;
        deba_run *r = calloc(found.n, sizeof *r);
        if (!r) st = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        size_t loaded = 0;
        for (size_t i = 0; i < found.n && st == DEBA_OK; i++) {
            char p[4200];
            snprintf(r[i].dir, sizeof r[i].dir, "%s", found.v[i]);
            snprintf(p, sizeof p, "%s/meta.csv", found.v[i]);
            st = deba_meta_read(p, &r[i].meta, e);
            if (st != DEBA_OK) break;
            snprintf(p, sizeof p, "%s/trace.csv", found.v[i]);
            st = deba_trace_read(p, &r[i].trace, e);
            if (st != DEBA_OK) {
                deba_meta_free(&r[i].meta);
                break;
            }
            loaded++;
        }
        if (st != DEBA_OK) {
            deba_runs_free(r, loaded);
        } else {
            *runs = r;
            *n = found.n;
        }
    }
    strvec_free(&found);
    return st;
}

void deba_runs_free(deba_run *runs, size_t n)
{
    if (!runs) return;
    for (size_t i = 0; i < n; i++) {
        deba_meta_free(&runs[i].meta);
        deba_trace_free(&runs[i].trace);
    }
    free(runs);
}
