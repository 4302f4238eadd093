/* Run directories: their path convention, mkdir -p, the one directory walker (each directory
 * once, by device and inode), and finding and loading every run (a directory with meta.csv and
 * trace.csv) under a set of roots. */
#include "deba/runs.h"
#include "deba/escape.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define DEBA_WALK_DEPTH_STR STR(DEBA_WALK_MAX_DEPTH)

deba_status deba_run_dir(char *buf, size_t cap, const char *out, const char *arch, const char *dataset,
                         const char *label, int seed, deba_err *e)
{
    if (!*out) return deba_err_set(e, DEBA_E_INPUT, "--out: empty directory name");
    const char *names[3] = { arch, dataset, label }, *what[3] = { "arch", "dataset", "label" };
    for (int i = 0; i < 3; i++)
        if (!deba_name_ok(names[i])) {
            char shown[400];
            return deba_err_set(e, DEBA_E_INPUT, "%s '%s' cannot name a run directory: use 1 to %d of A-Z a-z 0-9 . _ -, "
                                "not . or ..", what[i], deba_esc_msg(shown, sizeof shown, names[i]), DEBA_NAME_MAX - 1);
        }
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

void deba_strs_free(char **v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ---- the walker ---- */

/* Directories already visited, by device and inode, with the path they were visited by (for
 * the message about a link that leads back to one): open addressing, grown at half full. */
typedef struct {
    dev_t dev;
    ino_t ino;
    char *path;     /* NULL: empty slot */
} visited_slot;

typedef struct {
    visited_slot *slot;
    size_t cap, n;
} visited_set;

static size_t vhash(dev_t dev, ino_t ino, size_t cap)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h >> 17) & (cap - 1);
}

static const char *visited_find(const visited_set *v, dev_t dev, ino_t ino)
{
    if (!v->cap) return NULL;
    for (size_t i = vhash(dev, ino, v->cap);; i = (i + 1) & (v->cap - 1)) {
        if (!v->slot[i].path) return NULL;
        if (v->slot[i].dev == dev && v->slot[i].ino == ino) return v->slot[i].path;
    }
}

static int visited_add(visited_set *v, dev_t dev, ino_t ino, const char *path)
{
    if (2 * (v->n + 1) > v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        visited_slot *s = calloc(cap, sizeof *s);
        if (!s) return -1;
        for (size_t k = 0; k < v->cap; k++) {
            if (!v->slot[k].path) continue;
            size_t i = vhash(v->slot[k].dev, v->slot[k].ino, cap);
            while (s[i].path) i = (i + 1) & (cap - 1);
            s[i] = v->slot[k];
        }
        free(v->slot);
        v->slot = s;
        v->cap = cap;
    }
    size_t i = vhash(dev, ino, v->cap);
    while (v->slot[i].path) i = (i + 1) & (v->cap - 1);
    if (!(v->slot[i].path = strdup(path))) return -1;
    v->slot[i].dev = dev;
    v->slot[i].ino = ino;
    v->n++;
    return 0;
}

static void visited_free(visited_set *v)
{
    for (size_t i = 0; i < v->cap; i++) free(v->slot[i].path);
    free(v->slot);
}

typedef struct {
    deba_walk_fn visit;
    void *ctx;
    visited_set seen;
    strvec links;       /* symlinks to directories, followed after the real tree */
    int *link_depth;    /* depth of each entry of links */
    size_t link_cap;
    strvec skipped;
    deba_err *e;
} walker;

static deba_status walk_oom(walker *w)
{
    return deba_err_set(w->e, DEBA_E_NOMEM, "out of memory walking directories");
}

static deba_status skip(walker *w, const char *fmt, const char *a, const char *b)
{
    char msg[8400];
    snprintf(msg, sizeof msg, fmt, a, b);   /* a, b < PATH_MAX each: always fits */
    return strvec_push(&w->skipped, msg) ? walk_oom(w) : DEBA_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Visits dir (already known to be a directory with st's device and inode, not yet visited) and
 * every real subdirectory; symlinks to directories are queued in w->links. */
static deba_status walk_dir(walker *w, const char *dir, const struct stat *st, int depth)
{
    if (visited_add(&w->seen, st->st_dev, st->st_ino, dir)) return walk_oom(w);
    deba_status s = w->visit(dir, w->ctx, w->e);
    if (s) return s;
    DIR *d = opendir(dir);
    if (!d) return deba_err_set(w->e, DEBA_E_INPUT, "%s: cannot open directory: %s", dir, strerror(errno));
    strvec names = { 0 };
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strvec_push(&names, de->d_name)) {
            s = walk_oom(w);
            break;
        }
    closedir(d);
    if (!s && names.n > 1) qsort(names.v, names.n, sizeof *names.v, cmp_str);
    for (size_t i = 0; i < names.n && !s; i++) {
        char p[PATH_MAX];
        int len = snprintf(p, sizeof p, "%s/%s", dir, names.v[i]);
        if (len < 0 || (size_t)len >= sizeof p) {
            s = skip(w, "%s/%s: path longer than PATH_MAX, not walked", dir, names.v[i]);
            continue;
        }
        struct stat lsb, sb;
        if (lstat(p, &lsb) != 0) continue;           /* removed while we walk */
        if (S_ISLNK(lsb.st_mode)) {
            if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;   /* dangling, or a file */
            if (w->links.n == w->link_cap) {
                size_t cap = w->link_cap ? 2 * w->link_cap : 16;
                int *ld = realloc(w->link_depth, cap * sizeof *ld);
                if (!ld) { s = walk_oom(w); break; }
                w->link_depth = ld;
                w->link_cap = cap;
            }
            if (strvec_push(&w->links, p)) { s = walk_oom(w); break; }
            w->link_depth[w->links.n - 1] = depth + 1;
            continue;
        }
        if (!S_ISDIR(lsb.st_mode)) continue;
        if (visited_find(&w->seen, lsb.st_dev, lsb.st_ino)) continue;   /* a bind mount: once is enough */
        if (depth + 1 > DEBA_WALK_MAX_DEPTH) {
            s = skip(w, "%s: deeper than " DEBA_WALK_DEPTH_STR " directories below its root, not walked%s", p, "");
            continue;
        }
        s = walk_dir(w, p, &lsb, depth + 1);
    }
    strvec_free(&names);
    return s;
}

deba_status deba_walk(const char *const *roots, size_t nroots, deba_walk_fn visit, void *ctx, char ***skipped,
                      size_t *nskipped, deba_err *e)
{
    walker w = { .visit = visit, .ctx = ctx, .e = e };
    deba_status s = DEBA_OK;
    for (size_t i = 0; i < nroots && !s; i++) {
        struct stat sb;
        if (stat(roots[i], &sb) != 0) {
            s = deba_err_set(e, DEBA_E_INPUT, "%s: %s", roots[i], strerror(errno));
            break;
        }
        if (!S_ISDIR(sb.st_mode)) {
            s = deba_err_set(e, DEBA_E_INPUT, "%s: not a directory", roots[i]);
            break;
        }
        /* "runs/" and "runs" name the same runs. */
        char root[PATH_MAX];
        int len = snprintf(root, sizeof root, "%s", roots[i]);
        if (len < 0 || (size_t)len >= sizeof root) {
            s = deba_err_set(e, DEBA_E_INPUT, "%.64s...: path longer than PATH_MAX", roots[i]);
            break;
        }
        for (size_t l = strlen(root); l > 1 && root[l - 1] == '/'; l--) root[l - 1] = '\0';
        if (visited_find(&w.seen, sb.st_dev, sb.st_ino)) continue;   /* overlapping roots */
        s = walk_dir(&w, root, &sb, 0);
    }
    /* Links last, so a directory is named by its real path whenever it has one, whatever the
     * order of names; a link found while following one is queued behind it. */
    for (size_t i = 0; i < w.links.n && !s; i++) {
        struct stat sb;
        const char *p = w.links.v[i];
        if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;
        const char *prev = visited_find(&w.seen, sb.st_dev, sb.st_ino);
        if (prev)
            s = skip(&w, "%s: symbolic link to %s, already walked; not followed", p, prev);
        else if (w.link_depth[i] > DEBA_WALK_MAX_DEPTH)
            s = skip(&w, "%s: deeper than " DEBA_WALK_DEPTH_STR " directories below its root, not walked%s", p, "");
        else
            s = walk_dir(&w, p, &sb, w.link_depth[i]);
    }
    if (!s && skipped) {
        for (size_t i = 0; i < w.skipped.n && !s; i++) {
            char **v = realloc(*skipped, (*nskipped + 1) * sizeof *v);
            if (!v) { s = walk_oom(&w); break; }
            *skipped = v;
            v[(*nskipped)++] = w.skipped.v[i];
            w.skipped.v[i] = NULL;
        }
    }
    visited_free(&w.seen);
    strvec_free(&w.links);
    strvec_free(&w.skipped);
    free(w.link_depth);
    return s;
}

/* ---- run directories ---- */

static int is_file(const char *dir, const char *name)
{
    char p[PATH_MAX + 16];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);   /* dir < PATH_MAX: fits */
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static deba_status visit_run(const char *dir, void *ctx, deba_err *e)
{
    strvec *found = ctx;
    if (is_file(dir, "meta.csv") && is_file(dir, "trace.csv") && strvec_push(found, dir) != 0)
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    return DEBA_OK;
}

deba_status deba_runs_load(const char *const *roots, size_t nroots, deba_run **runs, size_t *n, deba_err *e)
{
    return deba_runs_load_walk(roots, nroots, runs, n, NULL, NULL, e);
}

deba_status deba_runs_load_walk(const char *const *roots, size_t nroots, deba_run **runs, size_t *n, char ***skipped,
                                size_t *nskipped, deba_err *e)
{
    *runs = NULL;
    *n = 0;
    strvec found = { 0 };
    deba_status st = deba_walk(roots, nroots, visit_run, &found, skipped, nskipped, e);
    if (st == DEBA_OK && found.n) {
        /* sorted path order (SPEC §7); the walk visits each directory once, so no duplicates */
        qsort(found.v, found.n, sizeof *found.v, cmp_str);
        deba_run *r = calloc(found.n, sizeof *r);
        if (!r) st = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        size_t loaded = 0;
        for (size_t i = 0; r && i < found.n && st == DEBA_OK; i++) {
            char p[PATH_MAX + 16];   /* found paths are shorter than PATH_MAX */
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
