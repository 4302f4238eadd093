/* Study plans (docs/studies.md): an ini file naming archs, datasets, seeds and conditions, parsed
 * with file:line errors, then either run in order through the library or emitted as one
 * deba-train command line per run for GNU parallel or a Slurm array job. */
#include "profiler/profile.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "deba/deba.h"
#include "deba/escape.h"
#include "trainer/data/dataset.h"
#include "trainer/models/models.h"

#define MAX_ARCHS 32
#define MAX_DATASETS 16
#define MAX_CONDS 32
#define VAL_MAX 4096

/* Options a condition sets (each also allowed in [study] as the default of every condition),
 * named and emitted as deba-train's options, in this order. */
typedef enum {
    CO_METHOD, CO_BATCH, CO_BMIN, CO_BMAX, CO_THRESHOLDS, CO_TAU, CO_THETA, CO_LAMBDA, CO_WINDOW, CO_COOLDOWN,
    CO_GROWTH, CO_ROLLBACK, CO_LR, CO_MOMENTUM, CO_WD, CO_LRS, CO_COUNT
} cond_opt;

typedef enum { K_INT, K_DOUBLE, K_METHOD, K_LRS, K_PATH } opt_kind;

static const struct {
    const char *key;
    opt_kind kind;
    long lo, hi;
} COND_OPTS[CO_COUNT] = {
    { "method", K_METHOD, 0, 0 },      { "batch", K_INT, 1, 1 << 20 },  { "bmin", K_INT, 1, 1 << 20 },
    { "bmax", K_INT, 1, 1 << 20 },     { "thresholds", K_PATH, 0, 0 },  { "tau", K_DOUBLE, 0, 0 },
    { "theta", K_DOUBLE, 0, 0 },       { "lambda", K_DOUBLE, 0, 0 },    { "window", K_INT, 0, 100000 },
    { "cooldown", K_INT, 0, 100000 },  { "growth", K_DOUBLE, 0, 0 },    { "rollback", K_DOUBLE, 0, 0 },
    { "lr", K_DOUBLE, 0, 0 },          { "momentum", K_DOUBLE, 0, 0 },  { "weight-decay", K_DOUBLE, 0, 0 },
    { "lr-scaling", K_LRS, 0, 0 },
};

typedef struct {
    int set, line;
    char raw[VAL_MAX];   /* the value as written (doubles are emitted as written) */
    long i;
    double d;
} pval;

typedef struct {
    char name[DEBA_NAME_MAX];
    int line;
    pval v[CO_COUNT];
    char archs[MAX_ARCHS][DEBA_NAME_MAX];        /* restriction; none = the study's */
    int n_archs, archs_line;
    char datasets[MAX_DATASETS][DEBA_NAME_MAX];
    int n_datasets, datasets_line;
    int calibrate;                               /* thresholds = calibrate */
} plan_cond;

struct deba_plan {
    char path[4096];
    int study_line;
    char archs[MAX_ARCHS][DEBA_NAME_MAX];
    int n_archs;
    char datasets[MAX_DATASETS][DEBA_NAME_MAX];
    int n_datasets;
    int seeds[DEBA_PROFILE_MAX_SEEDS];
    int n_seeds;
    int epochs;
    char out[VAL_MAX];
    char device[16];
    int subset, test_subset, image_size;
    struct { char arch[DEBA_NAME_MAX]; int size; } image_for[MAX_ARCHS];
    int n_image_for;
    struct { char dataset[DEBA_NAME_MAX]; char dir[VAL_MAX]; } data[MAX_DATASETS];
    int n_data;
    pval defaults[CO_COUNT];
    plan_cond conds[MAX_CONDS];
    int n_conds;
    int order[MAX_CONDS];    /* the conditions run, in order (`conditions =`, else file order) */
    int n_order;
};

/* ---- parsing ---- */

typedef struct {
    deba_plan *p;
    deba_err *e;
    int line;
} parser;

__attribute__((format(printf, 3, 4))) static deba_status perr(parser *ps, int line, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) return deba_err_set(ps->e, DEBA_E_INPUT, "%s:%d: %s", ps->p->path, line, msg);
    return deba_err_set(ps->e, DEBA_E_INPUT, "%s: %s", ps->p->path, msg);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = '\0';
    return s;
}

static int parse_long(const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (!*s || *end || errno || x < lo || x > hi) return -1;
    *v = x;
    return 0;
}

/* Splits a comma-separated list in place; an empty list or an empty item is an error. */
static deba_status split_list(parser *ps, const char *key, char *val, char **items, int max, int *n)
{
    *n = 0;
    if (!*val) return perr(ps, ps->line, "%s: empty list", key);
    char whole[VAL_MAX];
    snprintf(whole, sizeof whole, "%s", val);
    for (char *s = val;;) {
        char *comma = strchr(s, ',');
        if (comma) *comma = '\0';
        char *it = trim(s);
        if (!*it) return perr(ps, ps->line, "%s: empty item in list '%s'", key, whole);
        if (*n == max) return perr(ps, ps->line, "%s: more than %d items", key, max);
        items[(*n)++] = it;
        if (!comma) break;
        s = comma + 1;
    }
    return DEBA_OK;
}

static deba_status name_list(parser *ps, const char *key, char *val, int is_arch, char (*out)[DEBA_NAME_MAX],
                             int max, int *n)
{
    char *items[64];
    deba_status st = split_list(ps, key, val, items, max < 64 ? max : 64, n);
    for (int i = 0; i < *n && !st; i++) {
        if (is_arch ? !tr_model_find(items[i]) : tr_dataset_parse(items[i]) < 0)
            return perr(ps, ps->line, "%s: unknown %s '%s'%s", key, is_arch ? "architecture" : "dataset", items[i],
                        is_arch ? "" : " (known: cifar10, cifar100, fashion-mnist, mnist)");
        for (int j = 0; j < i; j++)
            if (!strcmp(items[i], items[j])) return perr(ps, ps->line, "%s: '%s' listed twice", key, items[i]);
        snprintf(out[i], DEBA_NAME_MAX, "%s", items[i]);
    }
    return st;
}

static deba_status cond_value(parser *ps, int opt, const char *val, pval *pv)
{
    const char *key = COND_OPTS[opt].key;
    if (!*val) return perr(ps, ps->line, "%s: empty value", key);
    if (strlen(val) >= VAL_MAX) return perr(ps, ps->line, "%s: value too long", key);
    pv->set = 1;
    pv->line = ps->line;
    snprintf(pv->raw, sizeof pv->raw, "%s", val);
    char *end;
    switch (COND_OPTS[opt].kind) {
    case K_INT:
        if (parse_long(val, COND_OPTS[opt].lo, COND_OPTS[opt].hi, &pv->i))
            return perr(ps, ps->line, "%s: expected an integer in [%ld, %ld], got '%s'", key, COND_OPTS[opt].lo,
                        COND_OPTS[opt].hi, val);
        snprintf(pv->raw, sizeof pv->raw, "%ld", pv->i);
        break;
    case K_DOUBLE:
        pv->d = strtod(val, &end);
        if (*end || !isfinite(pv->d)) return perr(ps, ps->line, "%s: expected a number, got '%s'", key, val);
        break;
    case K_METHOD:
        if ((pv->i = deba_method_parse(val)) < 0)
            return perr(ps, ps->line, "method: expected fixed or deba, got '%s'", val);
        break;
    case K_LRS:
        if ((pv->i = tr_lr_scaling_parse(val)) < 0)
            return perr(ps, ps->line, "lr-scaling: expected none, linear or sqrt, got '%s'", val);
        break;
    case K_PATH: break;
    }
    return DEBA_OK;
}

static int cond_opt_find(const char *key)
{
    for (int i = 0; i < CO_COUNT; i++)
        if (!strcmp(key, COND_OPTS[i].key)) return i;
    return -1;
}

/* Lines of keys already seen in the current section, for duplicate detection. */
typedef struct {
    char key[64][DEBA_NAME_MAX + 16];
    int line[64], n;
} seen_keys;

static deba_status study_key(parser *ps, char *key, char *val, int *conds_line, char *conds_val)
{
    deba_plan *p = ps->p;
    long v;
    int opt = cond_opt_find(key);
    if (opt >= 0) return cond_value(ps, opt, val, &p->defaults[opt]);
    if (!strcmp(key, "archs")) return name_list(ps, key, val, 1, p->archs, MAX_ARCHS, &p->n_archs);
    if (!strcmp(key, "datasets")) return name_list(ps, key, val, 0, p->datasets, MAX_DATASETS, &p->n_datasets);
    if (!strcmp(key, "seeds")) {
        char *items[DEBA_PROFILE_MAX_SEEDS];
        deba_status st = split_list(ps, key, val, items, DEBA_PROFILE_MAX_SEEDS, &p->n_seeds);
        for (int i = 0; i < p->n_seeds && !st; i++) {
            if (parse_long(items[i], 0, 2147483647, &v))
                return perr(ps, ps->line, "seeds: expected an integer in [0, 2147483647], got '%s'", items[i]);
            p->seeds[i] = (int)v;
            for (int j = 0; j < i; j++)
                if (p->seeds[j] == p->seeds[i]) return perr(ps, ps->line, "seeds: %ld listed twice", v);
        }
        return st;
    }
    struct { const char *key; int *dst; long lo, hi; } ints[] = {
        { "epochs", &p->epochs, 1, 100000 },         { "subset", &p->subset, 1, 100000000 },
        { "test-subset", &p->test_subset, 1, 100000000 }, { "image-size", &p->image_size, 1, 4096 },
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        if (strcmp(key, ints[i].key)) continue;
        if (!*val) return perr(ps, ps->line, "%s: empty value", key);
        if (parse_long(val, ints[i].lo, ints[i].hi, &v))
            return perr(ps, ps->line, "%s: expected an integer in [%ld, %ld], got '%s'", key, ints[i].lo, ints[i].hi, val);
        *ints[i].dst = (int)v;
        return DEBA_OK;
    }
    if (!strcmp(key, "out")) {
        if (!*val) return perr(ps, ps->line, "out: empty value");
        if (strlen(val) >= 2048) return perr(ps, ps->line, "out: path too long");
        snprintf(p->out, sizeof p->out, "%s", val);
        return DEBA_OK;
    }
    if (!strcmp(key, "device")) {
        if (strcmp(val, "cpu") && strcmp(val, "cuda") && strcmp(val, "auto"))
            return perr(ps, ps->line, "device: expected cpu, cuda or auto, got '%s'", val);
        snprintf(p->device, sizeof p->device, "%s", val);
        return DEBA_OK;
    }
    if (!strcmp(key, "conditions")) {
        if (!*val) return perr(ps, ps->line, "conditions: empty list");
        *conds_line = ps->line;
        snprintf(conds_val, VAL_MAX, "%s", val);   /* resolved once every section is read */
        return DEBA_OK;
    }
    if (!strncmp(key, "data.", 5)) {
        if (tr_dataset_parse(key + 5) < 0)
            return perr(ps, ps->line, "%s: unknown dataset '%s' (known: cifar10, cifar100, fashion-mnist, mnist)", key, key + 5);
        if (!*val) return perr(ps, ps->line, "%s: empty value", key);
        if (p->n_data == MAX_DATASETS || strlen(val) >= 2048) return perr(ps, ps->line, "%s: too many or too long", key);
        snprintf(p->data[p->n_data].dataset, DEBA_NAME_MAX, "%s", key + 5);
        snprintf(p->data[p->n_data++].dir, VAL_MAX, "%s", val);
        return DEBA_OK;
    }
    if (!strncmp(key, "image-size.", 11)) {
        if (!tr_model_find(key + 11)) return perr(ps, ps->line, "%s: unknown architecture '%s'", key, key + 11);
        if (parse_long(val, 1, 4096, &v))
            return perr(ps, ps->line, "%s: expected an integer in [1, 4096], got '%s'", key, val);
        if (p->n_image_for == MAX_ARCHS) return perr(ps, ps->line, "%s: too many", key);
        snprintf(p->image_for[p->n_image_for].arch, DEBA_NAME_MAX, "%s", key + 11);
        p->image_for[p->n_image_for++].size = (int)v;
        return DEBA_OK;
    }
    return perr(ps, ps->line, "unknown key '%s' in [study]", key);
}

static deba_status condition_key(parser *ps, plan_cond *c, char *key, char *val)
{
    int opt = cond_opt_find(key);
    if (opt >= 0) {
        deba_status st = cond_value(ps, opt, val, &c->v[opt]);
        if (!st && opt == CO_THRESHOLDS) c->calibrate = !strcmp(val, "calibrate");
        return st;
    }
    if (!strcmp(key, "archs")) {
        c->archs_line = ps->line;
        return name_list(ps, key, val, 1, c->archs, MAX_ARCHS, &c->n_archs);
    }
    if (!strcmp(key, "datasets")) {
        c->datasets_line = ps->line;
        return name_list(ps, key, val, 0, c->datasets, MAX_DATASETS, &c->n_datasets);
    }
    return perr(ps, ps->line, "unknown option '%s' in [condition %s] (known: method, batch, bmin, bmax, thresholds, tau, "
                "theta, lambda, window, cooldown, growth, rollback, lr, momentum, weight-decay, lr-scaling, archs, datasets)",
                key, c->name);
}

static int find_cond(const deba_plan *p, const char *name)
{
    for (int i = 0; i < p->n_conds; i++)
        if (!strcmp(p->conds[i].name, name)) return i;
    return -1;
}

static const pval *opt_of(const deba_plan *p, const plan_cond *c, int opt)
{
    return c->v[opt].set ? &c->v[opt] : p->defaults[opt].set ? &p->defaults[opt] : NULL;
}

static int in_list(char (*list)[DEBA_NAME_MAX], int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], s)) return 1;
    return 0;
}

static int cond_applies(const deba_plan *p, const plan_cond *c, const char *arch, const char *dataset)
{
    (void)p;
    return (!c->n_archs || in_list((char (*)[DEBA_NAME_MAX])c->archs, c->n_archs, arch)) &&
           (!c->n_datasets || in_list((char (*)[DEBA_NAME_MAX])c->datasets, c->n_datasets, dataset));
}

/* The scheduler configuration a condition gives (thresholds from a file or calibration are
 * filled in at run time; until then the defaults stand). */
static void cond_sched(const deba_plan *p, const plan_cond *c, deba_sched_config *s)
{
    deba_sched_config_default(s);
    const pval *v;
    if ((v = opt_of(p, c, CO_METHOD))) s->method = (deba_method)v->i;
    if ((v = opt_of(p, c, CO_BATCH))) s->b0 = (int)v->i;
    if ((v = opt_of(p, c, CO_BMIN))) s->bmin = (int)v->i;
    if ((v = opt_of(p, c, CO_BMAX))) s->bmax = (int)v->i;
    if ((v = opt_of(p, c, CO_TAU))) s->tau = v->d;
    if ((v = opt_of(p, c, CO_THETA))) s->theta = v->d;
    if ((v = opt_of(p, c, CO_LAMBDA))) s->lambda = v->d;
    if ((v = opt_of(p, c, CO_WINDOW))) s->window = (int)v->i;
    if ((v = opt_of(p, c, CO_COOLDOWN))) s->cooldown = (int)v->i;
    if ((v = opt_of(p, c, CO_GROWTH))) s->growth = v->d;
    if ((v = opt_of(p, c, CO_ROLLBACK))) s->rollback = v->d;
}

/* Everything that needs the whole file: required keys, the condition order, cross-checks. */
static deba_status validate(parser *ps, int conds_line, char *conds_val)
{
    deba_plan *p = ps->p;
    if (!p->study_line) return perr(ps, 0, "no [study] section");
    const char *req[] = { "archs", "datasets", "seeds", "epochs" };
    int have[] = { p->n_archs, p->n_datasets, p->n_seeds, p->epochs };
    for (int i = 0; i < 4; i++)
        if (!have[i]) return perr(ps, p->study_line, "[study] lacks the required key '%s'", req[i]);
    if (!p->n_conds) return perr(ps, 0, "no [condition NAME] section: nothing to run");
    if (conds_line) {
        char *items[MAX_CONDS];
        ps->line = conds_line;
        deba_status st = split_list(ps, "conditions", conds_val, items, MAX_CONDS, &p->n_order);
        if (st) return st;
        for (int i = 0; i < p->n_order; i++) {
            if ((p->order[i] = find_cond(p, items[i])) < 0)
                return perr(ps, conds_line, "conditions: no section [condition %s]", items[i]);
            for (int j = 0; j < i; j++)
                if (p->order[j] == p->order[i]) return perr(ps, conds_line, "conditions: '%s' listed twice", items[i]);
        }
    } else {
        p->n_order = p->n_conds;
        for (int i = 0; i < p->n_conds; i++) p->order[i] = i;
    }
    for (int k = 0; k < p->n_order; k++) {
        const plan_cond *c = &p->conds[p->order[k]];
        for (int i = 0; i < c->n_archs; i++)
            if (!in_list((char (*)[DEBA_NAME_MAX])p->archs, p->n_archs, c->archs[i]))
                return perr(ps, c->archs_line, "archs: '%s' is not in the study's archs", c->archs[i]);
        for (int i = 0; i < c->n_datasets; i++)
            if (!in_list((char (*)[DEBA_NAME_MAX])p->datasets, p->n_datasets, c->datasets[i]))
                return perr(ps, c->datasets_line, "datasets: '%s' is not in the study's datasets", c->datasets[i]);
        const pval *method = opt_of(p, c, CO_METHOD);
        if (!method) return perr(ps, c->line, "[condition %s] lacks the required key 'method'", c->name);
        const pval *th = opt_of(p, c, CO_THRESHOLDS);
        int calibrate = th && !strcmp(th->raw, "calibrate");
        if (method->i == DEBA_METHOD_DEBA && !th &&
            !(opt_of(p, c, CO_TAU) && opt_of(p, c, CO_THETA) && opt_of(p, c, CO_LAMBDA)))
            return perr(ps, c->line, "[condition %s]: method deba needs 'thresholds' (a file, or calibrate) or all of "
                        "'tau', 'theta', 'lambda'", c->name);
        if (calibrate && method->i == DEBA_METHOD_DEBA) {
            int f = find_cond(p, "fixed"), pos = -1;
            for (int j = 0; j < k; j++)
                if (p->order[j] == f) pos = j;
            if (f < 0 || pos < 0 || opt_of(p, &p->conds[f], CO_METHOD)->i != DEBA_METHOD_FIXED)
                return perr(ps, th->line, "thresholds = calibrate needs a [condition fixed] with method fixed, run before "
                            "[condition %s]", c->name);
            const plan_cond *fx = &p->conds[f];
            for (int a = 0; a < p->n_archs; a++)
                for (int d = 0; d < p->n_datasets; d++)
                    if (cond_applies(p, c, p->archs[a], p->datasets[d]) &&
                        !cond_applies(p, fx, p->archs[a], p->datasets[d]))
                        return perr(ps, th->line, "thresholds = calibrate: [condition fixed] does not run %s/%s",
                                    p->archs[a], p->datasets[d]);
            if (p->epochs < 2) return perr(ps, th->line, "thresholds = calibrate needs epochs >= 2");
        }
        p->conds[p->order[k]].calibrate = calibrate && method->i == DEBA_METHOD_DEBA;
        deba_sched_config s;
        cond_sched(p, c, &s);
        deba_err e2 = { 0 };
        if (deba_sched_config_check(&s, &e2)) return perr(ps, c->line, "[condition %s]: %s", c->name, e2.msg);
        const pval *v;
        if ((v = opt_of(p, c, CO_LR)) && !(v->d > 0))
            return perr(ps, v->line, "[condition %s]: lr must be > 0 (got %s)", c->name, v->raw);
        if ((v = opt_of(p, c, CO_MOMENTUM)) && !(v->d >= 0 && v->d < 1))
            return perr(ps, v->line, "[condition %s]: momentum must be in [0, 1) (got %s)", c->name, v->raw);
        if ((v = opt_of(p, c, CO_WD)) && !(v->d >= 0))
            return perr(ps, v->line, "[condition %s]: weight-decay must be >= 0 (got %s)", c->name, v->raw);
    }
    return DEBA_OK;
}

deba_plan *deba_plan_load(const char *path, deba_err *e)
{
    deba_plan *p = calloc(1, sizeof *p);
    if (!p) {
        deba_err_set(e, DEBA_E_NOMEM, "out of memory");
        return NULL;
    }
    if (strlen(path) >= sizeof p->path) {
        deba_err_set(e, DEBA_E_INPUT, "--plan: path longer than %zu bytes", sizeof p->path - 1);
        free(p);
        return NULL;
    }
    snprintf(p->path, sizeof p->path, "%s", path);
    snprintf(p->out, sizeof p->out, "runs");
    snprintf(p->device, sizeof p->device, "auto");
    parser ps = { p, e, 0 };
    FILE *f = fopen(path, "r");
    if (!f) {
        deba_err_set(e, DEBA_E_INPUT, "%s: cannot open: %s", path, strerror(errno));
        free(p);
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        deba_err_set(e, DEBA_E_INPUT, "%s: is a directory, not a plan file", path);
        fclose(f);
        free(p);
        return NULL;
    }
    char conds_val[VAL_MAX] = "";
    char *buf = NULL;
    size_t bufcap = 0;
    ssize_t len;
    int section = 0;   /* 0 none, 1 study, 2 condition */
    int conds_line = 0;
    seen_keys seen = { .n = 0 };
    deba_status st = DEBA_OK;
    errno = 0;
    while (!st && (len = getline(&buf, &bufcap, f)) >= 0) {
        ps.line++;
        if ((size_t)len >= VAL_MAX + 255) {
            st = perr(&ps, ps.line, "line too long");
            break;
        }
        /* fgets and strlen would end the line at a NUL and drop the rest without a word */
        const char *nul = memchr(buf, '\0', (size_t)len);
        if (nul) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s:%d:%ld: NUL byte in the line (a plan is text)", p->path, ps.line,
                              (long)(nul - buf) + 1);
            break;
        }
        /* values reach emitted shell scripts, which are one command per line */
        size_t body = (size_t)len;
        if (body && buf[body - 1] == '\n') body--;
        if (body && buf[body - 1] == '\r') body--;
        for (size_t i = 0; i < body && !st; i++) {
            unsigned char c = (unsigned char)buf[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                st = deba_err_set(e, DEBA_E_INPUT, "%s:%d:%zu: control character 0x%02x in the line", p->path, ps.line,
                                  i + 1, c);
        }
        if (st) break;
        char *s = trim(buf);
        if (ps.line == 1 && !strncmp(s, "\xEF\xBB\xBF", 3)) s = trim(s + 3);
        if (!*s || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            size_t n = strlen(s);
            if (s[n - 1] != ']') {
                st = perr(&ps, ps.line, "section header without closing ']'");
                break;
            }
            s[n - 1] = '\0';
            char *name = trim(s + 1);
            seen.n = 0;
            if (!strcmp(name, "study")) {
                if (p->study_line) st = perr(&ps, ps.line, "duplicate section [study] (first at line %d)", p->study_line);
                p->study_line = ps.line;
                section = 1;
            } else if (!strncmp(name, "condition", 9) && (name[9] == ' ' || name[9] == '\t')) {
                char *label = trim(name + 10);
                int prev = find_cond(p, label);
                if (!deba_name_ok(label))
                    st = perr(&ps, ps.line, "condition name '%s': use 1 to %d letters, digits, '.', '_' or '-', "
                              "not '.' or '..' (it names run directories)", label, DEBA_NAME_MAX - 1);
                else if (prev >= 0)
                    st = perr(&ps, ps.line, "duplicate section [condition %s] (first at line %d)", label, p->conds[prev].line);
                else if (p->n_conds == MAX_CONDS)
                    st = perr(&ps, ps.line, "more than %d conditions", MAX_CONDS);
                else {
                    plan_cond *c = &p->conds[p->n_conds++];
                    snprintf(c->name, sizeof c->name, "%s", label);
                    c->line = ps.line;
                    section = 2;
                }
            } else
                st = perr(&ps, ps.line, "unknown section '[%s]' (expected [study] or [condition NAME])", name);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            st = perr(&ps, ps.line, "expected 'key = value' or a [section] header, got '%s'", s);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (!*key) {
            st = perr(&ps, ps.line, "missing key before '='");
            break;
        }
        if (!section) {
            st = perr(&ps, ps.line, "key '%s' before any [section]", key);
            break;
        }
        for (int i = 0; i < seen.n; i++)
            if (!strcmp(seen.key[i], key)) {
                st = perr(&ps, ps.line, "duplicate key '%s' (first at line %d)", key, seen.line[i]);
                break;
            }
        if (st) break;
        if (seen.n < 64 && strlen(key) < sizeof seen.key[0]) {
            snprintf(seen.key[seen.n], sizeof seen.key[0], "%s", key);
            seen.line[seen.n++] = ps.line;
        }
        if (section == 1) st = study_key(&ps, key, val, &conds_line, conds_val);
        else st = condition_key(&ps, &p->conds[p->n_conds - 1], key, val);
    }
    if (!st && ferror(f)) st = deba_err_set(e, DEBA_E_INPUT, "%s: read error: %s", path, strerror(errno));
    free(buf);
    fclose(f);
    if (!st) st = validate(&ps, conds_line, conds_val);
    if (st) {
        free(p);
        return NULL;
    }
    return p;
}

void deba_plan_free(deba_plan *p) { free(p); }

size_t deba_plan_count(const deba_plan *p)
{
    size_t n = 0;
    for (int k = 0; k < p->n_order; k++)
        for (int a = 0; a < p->n_archs; a++)
            for (int d = 0; d < p->n_datasets; d++)
                if (cond_applies(p, &p->conds[p->order[k]], p->archs[a], p->datasets[d])) n += (size_t)p->n_seeds;
    return n;
}

/* ---- per-run settings ---- */

static const char *data_dir(const deba_plan *p, const char *dataset)
{
    for (int i = 0; i < p->n_data; i++)
        if (!strcmp(p->data[i].dataset, dataset)) return p->data[i].dir;
    return NULL;
}

static int image_size(const deba_plan *p, const char *arch)
{
    for (int i = 0; i < p->n_image_for; i++)
        if (!strcmp(p->image_for[i].arch, arch)) return p->image_for[i].size;
    return p->image_size;
}

/* out is shorter than 2048 bytes and the names than DEBA_NAME_MAX (checked when parsed), so a
 * buffer of 2048 + 2 * DEBA_NAME_MAX + 32 always holds it; a smaller one is a bug, reported. */
static deba_status thresholds_path(const deba_plan *p, const char *arch, const char *dataset, char *buf, size_t cap,
                                   deba_err *e)
{
    int n = snprintf(buf, cap, "%s/%s/%s/thresholds.csv", p->out, arch, dataset);
    if (n < 0 || (size_t)n >= cap)
        return deba_err_set(e, DEBA_E_INPUT, "%s: thresholds path under out = %.64s... is too long", p->path, p->out);
    return DEBA_OK;
}

/* The library configuration of one run; thresholds from a file or calibration not yet applied. */
static void run_config(const deba_plan *p, const plan_cond *c, const char *arch, const char *dataset, int seed,
                       tr_train_config *tc)
{
    tr_train_config_default(tc);
    snprintf(tc->arch, sizeof tc->arch, "%s", arch);
    snprintf(tc->dataset, sizeof tc->dataset, "%s", dataset);
    const char *dd = data_dir(p, dataset);
    if (dd) snprintf(tc->data_dir, sizeof tc->data_dir, "%s", dd);
    snprintf(tc->label, sizeof tc->label, "%s", c->name);
    snprintf(tc->out, sizeof tc->out, "%s", p->out);
    snprintf(tc->device, sizeof tc->device, "%s", p->device);
    tc->epochs = p->epochs;
    tc->seed = (uint64_t)seed;
    tc->subset = p->subset;
    tc->test_subset = p->test_subset;
    tc->image_size = image_size(p, arch);
    cond_sched(p, c, &tc->sched);
    const pval *v;
    if ((v = opt_of(p, c, CO_LR))) tc->lr = v->d;
    if ((v = opt_of(p, c, CO_MOMENTUM))) tc->momentum = v->d;
    if ((v = opt_of(p, c, CO_WD))) tc->weight_decay = v->d;
    if ((v = opt_of(p, c, CO_LRS))) tc->lr_scaling = (tr_lr_scaling)v->i;
}

/* ---- emitting job lines ---- */

typedef struct {
    char *s;
    size_t n, cap;
    int failed;             /* out of memory */
    const char *unquotable; /* a value deba_esc_shell refused (a control character) */
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = 1;
            return;
        }
        b->s = s, b->cap = cap;
    }
}

/* A shell word (deba_esc_shell): every string from the plan or the command line that enters
 * jobs.txt, study.sbatch or profiles.sh goes through here or through sb_comment. */
static void sb_word(sbuf *b, const char *w)
{
    char *q = deba_esc_dup(deba_esc_shell, w);
    if (!q) {
        if (deba_esc_shell(NULL, 0, w) < 0) {
            if (!b->unquotable) b->unquotable = w;
        } else
            b->failed = 1;
        return;
    }
    sb_add(b, "%s", q);
    free(q);
}

/* Text inside a '#' comment line (deba_esc_comment): it never ends the comment. */
static void sb_comment(sbuf *b, const char *text)
{
    char *c = deba_esc_dup(deba_esc_comment, text);
    if (!c) {
        b->failed = 1;
        return;
    }
    sb_add(b, "%s", c);
    free(c);
}

static void sb_opt(sbuf *b, const char *opt, const char *val)
{
    sb_add(b, " --%s ", opt);
    sb_word(b, val);
}

/* Options shared by deba-train and deba-profile lines: data, subsets, image size. */
static void sb_data_opts(sbuf *b, const deba_plan *p, const char *arch, const char *dataset)
{
    char num[32];
    sb_opt(b, "arch", arch);
    sb_opt(b, "dataset", dataset);
    const char *dd = data_dir(p, dataset);
    if (dd) sb_opt(b, "data", dd);
    if (p->subset) sb_add(b, " --subset %d", p->subset);
    if (p->test_subset) sb_add(b, " --test-subset %d", p->test_subset);
    int img = image_size(p, arch);
    if (img) sb_add(b, " --image-size %d", img);
    snprintf(num, sizeof num, "%d", p->epochs);
    sb_opt(b, "epochs", num);
}

static deba_status emit_run(sbuf *b, const deba_plan *p, const plan_cond *c, const char *arch, const char *dataset,
                            int seed, deba_err *e)
{
    sb_add(b, "deba-train");
    sb_data_opts(b, p, arch, dataset);
    sb_add(b, " --seed %d --device %s", seed, p->device);
    const pval *m = opt_of(p, c, CO_METHOD);
    sb_add(b, " --method %s", deba_method_name((deba_method)m->i));
    const pval *bt = opt_of(p, c, CO_BATCH);
    sb_add(b, " --batch %s", bt ? bt->raw : "64");
    char th[8300];
    for (int o = CO_BMIN; o < CO_COUNT; o++) {
        const pval *v = opt_of(p, c, o);
        if (!v) continue;
        if (o == CO_THRESHOLDS) {
            if (m->i != DEBA_METHOD_DEBA) continue;
            deba_status st;
            if (c->calibrate && (st = thresholds_path(p, arch, dataset, th, sizeof th, e))) return st;
            sb_opt(b, "thresholds", c->calibrate ? th : v->raw);
        } else
            sb_opt(b, COND_OPTS[o].key, v->raw);
    }
    sb_opt(b, "label", c->name);
    sb_opt(b, "out", p->out);
    sb_add(b, " --resume\n");
    return DEBA_OK;
}

/* The options of the `fixed` condition that deba-profile takes, so it reuses those runs. */
static void emit_profile(sbuf *b, const deba_plan *p, const char *arch, const char *dataset)
{
    const plan_cond *fx = &p->conds[find_cond(p, "fixed")];
    sb_add(b, "deba-profile");
    sb_data_opts(b, p, arch, dataset);
    sb_add(b, " --seeds ");
    for (int i = 0; i < p->n_seeds; i++) sb_add(b, "%s%d", i ? "," : "", p->seeds[i]);
    sb_add(b, " --device %s", p->device);
    const pval *bt = opt_of(p, fx, CO_BATCH);
    sb_add(b, " --batch %s", bt ? bt->raw : "64");
    const int opts[] = { CO_LR, CO_MOMENTUM, CO_WD };
    for (int i = 0; i < 3; i++) {
        const pval *v = opt_of(p, fx, opts[i]);
        if (v) sb_opt(b, COND_OPTS[opts[i]].key, v->raw);
    }
    sb_opt(b, "out", p->out);
    sb_add(b, " --quiet\n");
}

/* Through the library's atomic writer (a fresh temporary name, never a planted one); the mode of
 * a script is set once it is in place. */
static deba_status write_file(const char *path, const char *text, size_t n, int mode, deba_err *e)
{
    deba_atomic a;
    deba_status st = deba_atomic_open(&a, path, e);
    if (st) return st;
    if (fwrite(text, 1, n, a.f) != n || fflush(a.f) != 0) {
        int err = errno;
        deba_atomic_abort(&a);
        return deba_err_set(e, DEBA_E_IO, "%s: cannot write: %s", path, strerror(err));
    }
    if ((st = deba_atomic_commit(&a, e))) return st;
    if (mode && chmod(path, (mode_t)mode) != 0)
        return deba_err_set(e, DEBA_E_IO, "%s: cannot make it executable: %s", path, strerror(errno));
    return DEBA_OK;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

deba_status deba_plan_emit(const deba_plan *p, const char *jobs_path, int force, FILE *log, deba_err *e)
{
    char dir[4096], sbatch[4200], profiles[4200];
    int len = snprintf(dir, sizeof dir, "%s", jobs_path);
    if (len < 0 || (size_t)len >= sizeof dir)
        return deba_err_set(e, DEBA_E_INPUT, "--emit-jobs: path longer than %zu bytes", sizeof dir - 1);
    /* the paths are written into the scripts as shell words: one line each */
    if (deba_esc_shell(NULL, 0, jobs_path) < 0)
        return deba_err_set(e, DEBA_E_INPUT, "--emit-jobs: the path holds a control character");
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = '\0';
    else dir[0] = '\0';
    snprintf(sbatch, sizeof sbatch, "%sstudy.sbatch", dir);     /* dir < 4096: fits */
    snprintf(profiles, sizeof profiles, "%sprofiles.sh", dir);
    int fx = find_cond(p, "fixed"), need_cal = 0, fixed_runs = 0;
    for (int k = 0; k < p->n_order; k++) {
        need_cal |= p->conds[p->order[k]].calibrate;
        fixed_runs |= p->order[k] == fx && opt_of(p, &p->conds[fx], CO_METHOD)->i == DEBA_METHOD_FIXED;
    }
    /* profiles.sh: the stability profile of every (arch, dataset) the `fixed` condition runs */
    int write_profiles = fixed_runs && p->epochs >= 2;
    if (dir[0]) {
        deba_status st = deba_mkdirs(dir, e);
        if (st) return st;
    }
    const char *outs[3] = { jobs_path, sbatch, write_profiles ? profiles : NULL };
    for (int i = 0; i < 3; i++) {
        struct stat sb;
        if (outs[i] && stat(outs[i], &sb) == 0 && S_ISDIR(sb.st_mode))
            return deba_err_set(e, DEBA_E_INPUT, "%s: is a directory, not a file", outs[i]);
        if (outs[i] && !force && exists(outs[i]))
            return deba_err_set(e, DEBA_E_INPUT, "%s exists (use --force to overwrite)", outs[i]);
    }

    /* Phase 1: runs with nothing to wait for; phase 2: runs that need calibrated thresholds. */
    int cuda = !strcmp(p->device, "cuda");
    deba_status st = DEBA_OK;
    sbuf jobs = { 0 };
    size_t n1 = 0, n = 0;
    for (int phase = 0; phase < 2 && !st; phase++)
        for (int a = 0; a < p->n_archs && !st; a++)
            for (int d = 0; d < p->n_datasets && !st; d++)
                for (int k = 0; k < p->n_order && !st; k++) {
                    const plan_cond *c = &p->conds[p->order[k]];
                    if (c->calibrate != phase || !cond_applies(p, c, p->archs[a], p->datasets[d])) continue;
                    for (int s = 0; s < p->n_seeds && !st; s++, n++)
                        st = emit_run(&jobs, p, c, p->archs[a], p->datasets[d], p->seeds[s], e);
                    if (!phase) n1 += (size_t)p->n_seeds;
                }
    sbuf prof = { 0 };
    if (write_profiles) {
        sb_add(&prof, "#!/bin/sh\n# Generated by deba-profile --emit-jobs from ");
        sb_comment(&prof, p->path);
        sb_add(&prof, ": the stability profile and calibrated\n# thresholds of every (arch, dataset) from the fixed runs "
                      "of ");
        sb_comment(&prof, jobs_path);
        sb_add(&prof, " (run after them).\nset -e\n");
        const plan_cond *fxc = &p->conds[find_cond(p, "fixed")];
        for (int a = 0; a < p->n_archs; a++)
            for (int d = 0; d < p->n_datasets; d++)
                if (cond_applies(p, fxc, p->archs[a], p->datasets[d])) emit_profile(&prof, p, p->archs[a], p->datasets[d]);
    }
    /* The command lines in comments are for copying: their paths are shell words too. */
    char *qjobs = deba_esc_dup(deba_esc_shell, jobs_path), *qsbatch = deba_esc_dup(deba_esc_shell, sbatch);
    char *qprof = deba_esc_dup(deba_esc_shell, profiles), *wrap = NULL, *qwrap = NULL;
    if (qprof && asprintf(&wrap, "sh %s", qprof) >= 0) qwrap = deba_esc_dup(deba_esc_shell, wrap);   /* --wrap='sh …' */
    sbuf sb = { 0 };
    if (!qjobs || !qsbatch || !qprof || !qwrap) sb.failed = 1;
    else {
        sb_add(&sb, "#!/bin/bash\n# Generated by deba-profile --emit-jobs from ");
        sb_comment(&sb, p->path);
        sb_add(&sb, ": Slurm array task i runs line i of %s.\n", qjobs);
        if (need_cal)
            sb_add(&sb,
                   "# Lines 1-%zu need nothing else; lines %zu-%zu use thresholds that %s calibrates from\n"
                   "# the fixed runs, so submit in three steps (from the directory deba-profile ran in):\n"
                   "#   p1=$(sbatch --parsable --array=1-%zu %s)\n"
                   "#   p2=$(sbatch --parsable --dependency=afterok:$p1%s --wrap=%s)\n"
                   "#   sbatch --dependency=afterok:$p2 --array=%zu-%zu %s\n"
                   "# With GNU parallel: head -n %zu %s | parallel -j 4 && sh %s && tail -n +%zu %s | parallel -j 4\n",
                   n1, n1 + 1, n, qprof, n1, qsbatch, cuda ? " --gres=gpu:1" : "", qwrap, n1 + 1, n, qsbatch, n1, qjobs,
                   qprof, n1 + 1, qjobs);
        else
            sb_add(&sb, "# Submit from the directory deba-profile ran in: sbatch %s\n# With GNU parallel: parallel -j 4 < "
                        "%s%s%s\n", qsbatch, qjobs, write_profiles ? "; then sh " : "", write_profiles ? qprof : "");
        sb_add(&sb,
               "# A requeued or resubmitted task resumes its run (--resume); a completed run is not retrained.\n"
               "#SBATCH --job-name=deba-study\n#SBATCH --array=1-%zu\n#SBATCH --output=deba-study-%%A_%%a.out\n%s"
               "set -euo pipefail\n"
               "line=$(sed -n \"${SLURM_ARRAY_TASK_ID}p\" %s)\n"
               "if [ -z \"$line\" ]; then echo \"study.sbatch: no line $SLURM_ARRAY_TASK_ID in \"%s >&2; exit 2; fi\n"
               "echo \"$line\"\nexec bash -c \"$line\"\n",
               n, cuda ? "#SBATCH --gres=gpu:1\n" : "", qjobs, qjobs);
    }
    free(qjobs);
    free(qsbatch);
    free(qprof);
    free(wrap);
    free(qwrap);
    const char *bad = jobs.unquotable ? jobs.unquotable : prof.unquotable ? prof.unquotable : sb.unquotable;
    if (st) {
    } else if (bad) {
        char shown[400];
        st = deba_err_set(e, DEBA_E_INPUT, "%s: '%s' holds a control character and cannot be written into a script",
                          p->path, deba_esc_msg(shown, sizeof shown, bad));
    } else if (jobs.failed || prof.failed || sb.failed)
        st = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    if (!st) st = write_file(jobs_path, jobs.s ? jobs.s : "", jobs.n, 0, e);
    if (!st) st = write_file(sbatch, sb.s, sb.n, 0755, e);
    if (!st && write_profiles) st = write_file(profiles, prof.s, prof.n, 0755, e);
    if (!st && log) {
        fprintf(log, "wrote %s: %zu runs", jobs_path, n);
        if (need_cal) fprintf(log, " (lines 1-%zu first; lines %zu-%zu need the thresholds %s writes)", n1, n1 + 1, n, profiles);
        fprintf(log, "\nwrote %s%s%s\n", sbatch, write_profiles ? " and " : "", write_profiles ? profiles : "");
    }
    free(jobs.s);
    free(prof.s);
    free(sb.s);
    return st;
}

/* ---- running the study ---- */

static const char *ACTIONS[DEBA_RUN_ACTION_COUNT] = { "trained", "resumed", "reused" };

deba_status deba_plan_run(const deba_plan *p, int quiet, FILE *log, deba_err *e)
{
    /* Thresholds files first: a missing row fails now, not hours into the study. */
    deba_status st = DEBA_OK;
    for (int k = 0; k < p->n_order && !st; k++) {
        const plan_cond *c = &p->conds[p->order[k]];
        const pval *th = opt_of(p, c, CO_THRESHOLDS);
        if (!th || c->calibrate || opt_of(p, c, CO_METHOD)->i != DEBA_METHOD_DEBA) continue;
        deba_thresholds_row *rows = NULL;
        size_t n = 0;
        const deba_thresholds_row *row;
        st = deba_thresholds_read(th->raw, &rows, &n, e);
        for (int a = 0; a < p->n_archs && !st; a++)
            for (int d = 0; d < p->n_datasets && !st; d++)
                if (cond_applies(p, c, p->archs[a], p->datasets[d]))
                    st = deba_thresholds_find(rows, n, th->raw, p->archs[a], p->datasets[d], &row, e);
        free(rows);
        if (st) {
            char msg[sizeof e->msg];
            snprintf(msg, sizeof msg, "%s", e->msg);
            return deba_err_set(e, st, "%s:%d: [condition %s]: %s", p->path, th->line, c->name, msg);
        }
    }
    size_t total = deba_plan_count(p), done = 0;
    for (int a = 0; a < p->n_archs; a++)
        for (int d = 0; d < p->n_datasets; d++) {
            const char *arch = p->archs[a], *dataset = p->datasets[d];
            int calibrated = 0;
            deba_thresholds_row cal = { 0 };
            for (int k = 0; k < p->n_order; k++) {
                const plan_cond *c = &p->conds[p->order[k]];
                if (!cond_applies(p, c, arch, dataset)) continue;
                if (c->calibrate && !calibrated) {
                    deba_profile prof;
                    char dir[4200];
                    if ((st = deba_profile_compute(p->out, arch, dataset, p->seeds, (size_t)p->n_seeds, &prof, e))) return st;
                    snprintf(dir, sizeof dir, "%s/%s/%s", p->out, arch, dataset);
                    st = deba_profile_save(dir, &prof, e);
                    if (!st && log) deba_profile_print(log, &prof);
                    cal = prof.thresholds;
                    deba_profile_free(&prof);
                    if (st) return st;
                    calibrated = 1;
                }
                for (int s = 0; s < p->n_seeds; s++) {
                    tr_train_config tc;
                    run_config(p, c, arch, dataset, p->seeds[s], &tc);
                    tc.quiet = quiet;
                    tc.progress = !quiet && log && isatty(fileno(log));
                    const pval *th = opt_of(p, c, CO_THRESHOLDS);
                    if (th && tc.sched.method == DEBA_METHOD_DEBA) {
                        deba_thresholds_row row = cal;
                        if (c->calibrate) {
                            if ((st = thresholds_path(p, arch, dataset, tc.thresholds_src, sizeof tc.thresholds_src, e)))
                                return st;
                        } else {
                            deba_thresholds_row *rows = NULL;
                            size_t n = 0;
                            const deba_thresholds_row *r;
                            st = deba_thresholds_read(th->raw, &rows, &n, e);
                            if (!st) st = deba_thresholds_find(rows, n, th->raw, arch, dataset, &r, e);
                            if (!st) row = *r;
                            free(rows);
                            if (st) return st;
                            snprintf(tc.thresholds_src, sizeof tc.thresholds_src, "%s", th->raw);
                        }
                        /* as deba-train: explicit tau/theta/lambda win over the file */
                        if (!opt_of(p, c, CO_TAU)) tc.sched.tau = row.tau;
                        if (!opt_of(p, c, CO_THETA)) tc.sched.theta = row.theta;
                        if (!opt_of(p, c, CO_LAMBDA)) tc.sched.lambda = row.lambda;
                    }
                    deba_run_action act;
                    tr_train_result r;
                    done++;
                    if ((st = deba_profile_train(&tc, &act, &r, e))) return st;
                    if (log)
                        fprintf(log, "[%zu/%zu] %s/%s %s seed %d: %s %s run, %d epochs, test accuracy %.2f%%\n", done,
                                total, arch, dataset, c->name, p->seeds[s], ACTIONS[act], r.status, r.epochs_done,
                                r.final_test_acc);
                    if (!strcmp(r.status, "interrupted"))
                        return deba_err_set(e, DEBA_E_RUNTIME, "interrupted in %s: run the same command again to continue",
                                            r.run_dir);
                }
            }
        }
    return DEBA_OK;
}
