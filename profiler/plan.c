/* Study plans (docs/studies.md): an ini file naming archs, datasets, seeds and conditions, parsed
 * with file:line errors, then run in order through the library, emitted as one deba-train
 * command line per run with Slurm scripts per phase, submitted to Slurm, or watched. */
#include "profiler/plan.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "deba/deba.h"
#include "deba/escape.h"
#include "trainer/data/dataset.h"
#include "trainer/models/models.h"
#include "trainer/onnx/model.h"

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
    /* `models = FILE.onnx, ...`: archs[i] is the file's stem and model[i] its path ("" for a
     * built-in network); their runs pass --model, --name and --init */
    char model[MAX_ARCHS][VAL_MAX];
    onnx_init_mode init;     /* `init = onnx|seeded` (default seeded: the profile's sigma_S is
                                the spread over seeds) */
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
    int checkpoint_every;    /* deba-train --checkpoint-every; 0 = not given */
    /* [slurm]: resources of the job scripts; empty = the default (slurm_defaults) */
    struct {
        char time[32], mem[32], gres[128], partition[128], account[128];
        int cpus;
        int line;
    } slurm;
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
        /* is_arch 2 (a condition's list): a study's model is known by its stem, and that the
         * name is the study's is checked once the whole file is read */
        if (is_arch == 2 ? !deba_name_ok(items[i]) : is_arch ? !tr_model_find(items[i]) : tr_dataset_parse(items[i]) < 0)
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
    if (!strcmp(key, "archs")) {
        /* built-in networks first, models after them: both lists may be given, in any order */
        int n = 0;
        char tmp[MAX_ARCHS][DEBA_NAME_MAX], tmodel[MAX_ARCHS][VAL_MAX];
        for (int i = 0; i < p->n_archs; i++)
            if (p->model[i][0]) snprintf(tmp[n], DEBA_NAME_MAX, "%s", p->archs[i]), snprintf(tmodel[n++], VAL_MAX, "%s", p->model[i]);
        int nb = 0;
        deba_status st = name_list(ps, key, val, 1, p->archs, MAX_ARCHS - n, &nb);
        if (st) return st;
        for (int i = 0; i < nb; i++) p->model[i][0] = '\0';
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < nb; j++)
                if (!strcmp(p->archs[j], tmp[i])) return perr(ps, ps->line, "archs: '%s' is also a model's name", tmp[i]);
            snprintf(p->archs[nb + i], DEBA_NAME_MAX, "%s", tmp[i]);
            snprintf(p->model[nb + i], VAL_MAX, "%s", tmodel[i]);
        }
        p->n_archs = nb + n;
        return DEBA_OK;
    }
    if (!strcmp(key, "models") || !strcmp(key, "model")) {
        char *items[MAX_ARCHS];
        int n = 0;
        deba_status st = split_list(ps, key, val, items, MAX_ARCHS - p->n_archs, &n);
        for (int i = 0; i < n && !st; i++) {
            char stem[256];
            tr_onnx_model_stem(items[i], stem, sizeof stem);
            if (!deba_name_ok(stem))
                return perr(ps, ps->line, "%s: the stem '%.80s' of '%s' cannot name runs (1-63 characters from A-Z a-z "
                            "0-9 . _ -): rename the file", key, stem, items[i]);
            for (int j = 0; j < p->n_archs; j++)
                if (!strcmp(p->archs[j], stem)) return perr(ps, ps->line, "%s: '%s' is named twice", key, stem);
            int fd = open(items[i], O_RDONLY | O_CLOEXEC);
            if (fd < 0) return perr(ps, ps->line, "%s: cannot read '%s': %s", key, items[i], strerror(errno));
            close(fd);
            snprintf(p->archs[p->n_archs], DEBA_NAME_MAX, "%.*s", DEBA_NAME_MAX - 1, stem);   /* fits: deba_name_ok */
            snprintf(p->model[p->n_archs++], VAL_MAX, "%s", items[i]);
        }
        return st;
    }
    if (!strcmp(key, "init")) {
        int m = tr_onnx_init_parse(val);
        if (m < 0) return perr(ps, ps->line, "init: expected onnx or seeded, got '%s'", val);
        p->init = (onnx_init_mode)m;
        return DEBA_OK;
    }
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
        { "checkpoint-every", &p->checkpoint_every, 0, 2147483647 },
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
        return name_list(ps, key, val, 2, c->archs, MAX_ARCHS, &c->n_archs);
    }
    if (!strcmp(key, "datasets")) {
        c->datasets_line = ps->line;
        return name_list(ps, key, val, 0, c->datasets, MAX_DATASETS, &c->n_datasets);
    }
    return perr(ps, ps->line, "unknown option '%s' in [condition %s] (known: method, batch, bmin, bmax, thresholds, tau, "
                "theta, lambda, window, cooldown, growth, rollback, lr, momentum, weight-decay, lr-scaling, archs, datasets)",
                key, c->name);
}

/* [slurm] values go into #SBATCH lines, which sbatch splits at blanks without a shell's quoting,
 * so each is held to the characters Slurm itself accepts there. */
static int slurm_word_ok(const char *v, const char *extra)
{
    if (!*v) return 0;
    for (const char *c = v; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr(extra, *c)))
            return 0;
    return 1;
}

static deba_status slurm_key(parser *ps, const char *key, const char *val)
{
    deba_plan *p = ps->p;
    long v;
    struct { const char *key, *extra, *what; char *dst; size_t cap; } words[] = {
        { "time", ":-", "minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS", p->slurm.time, sizeof p->slurm.time },
        { "mem", "", "a size such as 4000, 500M or 16G", p->slurm.mem, sizeof p->slurm.mem },
        { "gres", ":,._-", "such as gpu:1 or gpu:a100:2, or none", p->slurm.gres, sizeof p->slurm.gres },
        { "partition", ",._-", "a partition name or a comma-separated list", p->slurm.partition, sizeof p->slurm.partition },
        { "account", "._-", "an account name", p->slurm.account, sizeof p->slurm.account },
    };
    if (!strcmp(key, "cpus-per-task")) {
        if (parse_long(val, 1, 4096, &v))
            return perr(ps, ps->line, "cpus-per-task: expected an integer in [1, 4096], got '%s'", val);
        p->slurm.cpus = (int)v;
        return DEBA_OK;
    }
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        if (strcmp(key, words[i].key)) continue;
        int ok = strlen(val) < words[i].cap && slurm_word_ok(val, words[i].extra);
        if (ok && !strcmp(key, "mem")) {   /* digits, then at most one unit letter */
            size_t n = strspn(val, "0123456789");
            ok = n > 0 && (!val[n] || (strchr("KMGTkmgt", val[n]) && !val[n + 1]));
        }
        if (ok && !strcmp(key, "time"))
            ok = strspn(val, "0123456789:-") == strlen(val) || !strcmp(val, "UNLIMITED") || !strcmp(val, "INFINITE");
        if (!ok) return perr(ps, ps->line, "[slurm] %s: expected %s, got '%s'", key, words[i].what, val);
        snprintf(words[i].dst, words[i].cap, "%s", val);
        return DEBA_OK;
    }
    return perr(ps, ps->line, "unknown key '%s' in [slurm] (known: time, cpus-per-task, mem, gres, partition, account)",
                key);
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
        if (!have[i])
            return perr(ps, p->study_line, "[study] lacks the required key '%s'%s", req[i],
                        i == 0 ? " (or 'models': networks exported to ONNX)" : "");
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
    p->init = ONNX_INIT_SEEDED;
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
    int section = 0;   /* 0 none, 1 study, 2 condition, 3 slurm */
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
            } else if (!strcmp(name, "slurm")) {
                if (p->slurm.line) st = perr(&ps, ps.line, "duplicate section [slurm] (first at line %d)", p->slurm.line);
                p->slurm.line = ps.line;
                section = 3;
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
                st = perr(&ps, ps.line, "unknown section '[%s]' (expected [study], [condition NAME] or [slurm])", name);
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
        else if (section == 3) st = slurm_key(&ps, key, val);
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

/* The ONNX file of a study's network, or NULL for a built-in one. */
static const char *model_of(const deba_plan *p, const char *arch)
{
    for (int i = 0; i < p->n_archs; i++)
        if (!strcmp(p->archs[i], arch)) return p->model[i][0] ? p->model[i] : NULL;
    return NULL;
}

/* The library configuration of one run; thresholds from a file or calibration not yet applied. */
static void run_config(const deba_plan *p, const plan_cond *c, const char *arch, const char *dataset, int seed,
                       tr_train_config *tc)
{
    tr_train_config_default(tc);
    snprintf(tc->arch, sizeof tc->arch, "%s", arch);
    const char *mp = model_of(p, arch);
    if (mp) {
        snprintf(tc->model, sizeof tc->model, "%s", mp);
        tc->init = p->init;
    }
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
    tc->checkpoint_every = p->checkpoint_every;
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
    const char *mp = model_of(p, arch);
    if (mp) {
        sb_opt(b, "model", mp);
        sb_opt(b, "name", arch);
        sb_opt(b, "init", tr_onnx_init_name(p->init));
    } else {
        sb_opt(b, "arch", arch);
    }
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
    if (p->checkpoint_every) sb_add(b, " --checkpoint-every %d", p->checkpoint_every);
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

/* ---- the runs in job-line order ---- */

typedef struct {
    const plan_cond *c;
    const char *arch, *dataset;
    int seed;
} plan_run;

/* Line i + 1 of jobs.txt is (*runs)[i]: the runs that need nothing else first (arch, dataset,
 * condition, seed), then those of calibrated conditions; *n1 of the first kind. free() *runs. */
static deba_status plan_runs(const deba_plan *p, plan_run **runs, size_t *n, size_t *n1, deba_err *e)
{
    size_t cap = deba_plan_count(p), k = 0;
    plan_run *r = malloc((cap ? cap : 1) * sizeof *r);
    if (!r) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    *n1 = 0;
    for (int phase = 0; phase < 2; phase++) {
        for (int a = 0; a < p->n_archs; a++)
            for (int d = 0; d < p->n_datasets; d++)
                for (int o = 0; o < p->n_order; o++) {
                    const plan_cond *c = &p->conds[p->order[o]];
                    if (c->calibrate != phase || !cond_applies(p, c, p->archs[a], p->datasets[d])) continue;
                    for (int s = 0; s < p->n_seeds; s++)
                        r[k++] = (plan_run){ c, p->archs[a], p->datasets[d], p->seeds[s] };
                }
        if (!phase) *n1 = k;
    }
    *runs = r;
    *n = k;
    return DEBA_OK;
}

/* out < 2048 bytes (checked when parsed), names < DEBA_NAME_MAX: RUN_DIR_MAX always holds it */
#define RUN_DIR_MAX (VAL_MAX + 4 * DEBA_NAME_MAX + 32)
static void run_dir(const deba_plan *p, const plan_run *r, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s/%s/%s/seed%d", p->out, r->arch, r->dataset, r->c->name, r->seed);
}

/* ---- job scripts ---- */

/* Where the files of --emit-jobs go, all derived from the jobs path. */
typedef struct {
    char base[4096];        /* the absolute directory the plan's relative paths are taken from */
    char dir[4096];         /* jobs.txt's directory as given: "" or ending in '/' */
    char sbatch[4200], calibrate[4200], report[4200], profiles[4200], logs[4200];
    char abs_logs[8400];    /* for #SBATCH --output, which sbatch resolves from where it runs */
    size_t n, n1;
    int need_cal;
} emit_paths;

static deba_status emit_paths_of(const char *jobs_path, emit_paths *ep, deba_err *e)
{
    int len = snprintf(ep->dir, sizeof ep->dir, "%s", jobs_path);
    if (len < 0 || (size_t)len >= sizeof ep->dir)
        return deba_err_set(e, DEBA_E_INPUT, "--emit-jobs: path longer than %zu bytes", sizeof ep->dir - 1);
    /* the paths are written into the scripts as shell words: one line each */
    if (deba_esc_shell(NULL, 0, jobs_path) < 0)
        return deba_err_set(e, DEBA_E_INPUT, "--emit-jobs: the path holds a control character");
    char *slash = strrchr(ep->dir, '/');
    if (slash) slash[1] = '\0';
    else ep->dir[0] = '\0';
    if (!getcwd(ep->base, sizeof ep->base))
        return deba_err_set(e, DEBA_E_IO, "cannot read the current directory: %s", strerror(errno));
    snprintf(ep->sbatch, sizeof ep->sbatch, "%sstudy.sbatch", ep->dir);   /* dir < 4096: fits */
    snprintf(ep->calibrate, sizeof ep->calibrate, "%scalibrate.sbatch", ep->dir);
    snprintf(ep->report, sizeof ep->report, "%sreport.sbatch", ep->dir);
    snprintf(ep->profiles, sizeof ep->profiles, "%sprofiles.sh", ep->dir);
    snprintf(ep->logs, sizeof ep->logs, "%slogs", ep->dir);
    if (ep->dir[0] == '/') snprintf(ep->abs_logs, sizeof ep->abs_logs, "%slogs", ep->dir);
    else snprintf(ep->abs_logs, sizeof ep->abs_logs, "%s/%slogs", strcmp(ep->base, "/") ? ep->base : "", ep->dir);
    return DEBA_OK;
}

/* A path sbatch can take in an #SBATCH line unquoted and as a file name pattern unchanged. */
static int sbatch_plain(const char *s)
{
    return slurm_word_ok(s, "/._+,-");
}

/* The #SBATCH lines every phase shares: the plan's [slurm] resources or the defaults (12 hours,
 * 4 CPUs, 16G, one GPU when device = cuda). A phase that trains gets the GPU and the CPUs. */
static void sb_resources(sbuf *b, const deba_plan *p, int trains)
{
    const char *gres = p->slurm.gres[0] ? p->slurm.gres : !strcmp(p->device, "cuda") ? "gpu:1" : "none";
    sb_add(b, "#SBATCH --time=%s\n", p->slurm.time[0] ? p->slurm.time : "12:00:00");
    sb_add(b, "#SBATCH --cpus-per-task=%d\n", trains ? (p->slurm.cpus ? p->slurm.cpus : 4) : 1);
    sb_add(b, "#SBATCH --mem=%s\n", p->slurm.mem[0] ? p->slurm.mem : "16G");
    if (trains && strcmp(gres, "none")) sb_add(b, "#SBATCH --gres=%s\n", gres);
    if (p->slurm.partition[0]) sb_add(b, "#SBATCH --partition=%s\n", p->slurm.partition);
    if (p->slurm.account[0]) sb_add(b, "#SBATCH --account=%s\n", p->slurm.account);
}

/* The start of every phase script: the #SBATCH lines (sbatch reads them up to the first
 * command), then the directory the plan's relative paths are taken from, wherever sbatch ran. */
static void sb_script_head(sbuf *b, const deba_plan *p, const emit_paths *ep, const char *name, const char *log_pattern,
                           int trains)
{
    sb_add(b, "#!/bin/bash\n# Generated by deba-profile from ");
    sb_comment(b, p->path);
    sb_add(b, " (docs/studies.md, \"Slurm\").\n#SBATCH --job-name=deba-%s\n", name);
    /* the log's directory as written; --submit gives it on the command line whatever it holds */
    if (sbatch_plain(ep->abs_logs)) sb_add(b, "#SBATCH --output=%s/%s\n", ep->abs_logs, log_pattern);
    /* a requeued task's log keeps what the first attempt wrote */
    sb_add(b, "#SBATCH --open-mode=append\n#SBATCH --requeue\n");
    if (trains == 2) sb_add(b, "#SBATCH --signal=B:TERM@120\n");
    sb_resources(b, p, trains);
}

static void sb_script_cd(sbuf *b, const emit_paths *ep)
{
    sb_add(b, "set -uo pipefail\ncd ");
    sb_word(b, ep->base);
    sb_add(b, " || exit 2\n");
}

/* A check that the runs [from, to) of the study completed (meta.csv status), each named with
 * its job line and log when not: the phase after them fails loudly instead of working from
 * missing runs. Dependencies are afterany, so a failed run never leaves a later phase waiting. */
static void sb_check(sbuf *b, const deba_plan *p, const plan_run *runs, size_t from, size_t to, int fixed_only,
                     const char *name, const char *qjobs, const char *qlogs)
{
    char d[RUN_DIR_MAX];
    sb_add(b, "# the runs this phase needs: each must have completed\nlines=(");
    for (size_t i = from; i < to; i++)
        if (!fixed_only || !strcmp(runs[i].c->name, "fixed")) sb_add(b, " %zu", i + 1);
    sb_add(b, " )\ndirs=(\n");
    for (size_t i = from; i < to; i++) {
        if (fixed_only && strcmp(runs[i].c->name, "fixed")) continue;
        run_dir(p, &runs[i], d, sizeof d);
        sb_word(b, d);
        sb_add(b, "\n");
    }
    sb_add(b, ")\nbad=0\nfor k in \"${!dirs[@]}\"; do\n"
              "  s=$(sed -n 's/^status,//p' \"${dirs[$k]}/meta.csv\" 2>/dev/null)\n"
              "  if [ \"$s\" != completed ]; then\n    bad=$((bad + 1))\n"
              "    echo \"%s: run ${dirs[$k]} (line ${lines[$k]} of \"%s\") is ${s:-not started}, not completed; log:\" "
              "%s/study-*_\"${lines[$k]}\".out >&2\n  fi\ndone\n"
              "if [ \"$bad\" -gt 0 ]; then\n"
              "  echo \"%s: $bad of ${#dirs[@]} runs did not complete: see deba-profile --status; deba-profile --submit "
              "continues the study\" >&2\n  exit 1\nfi\n",
           name, qjobs, qlogs, name);
}

deba_status deba_plan_emit(const deba_plan *p, const char *jobs_path, int force, FILE *log, deba_err *e)
{
    emit_paths ep;
    deba_status st = emit_paths_of(jobs_path, &ep, e);
    if (st) return st;
    plan_run *runs;
    if ((st = plan_runs(p, &runs, &ep.n, &ep.n1, e))) return st;
    size_t n = ep.n, n1 = ep.n1;
    int fx = find_cond(p, "fixed"), need_cal = 0, fixed_runs = 0;
    for (int k = 0; k < p->n_order; k++) {
        need_cal |= p->conds[p->order[k]].calibrate;
        fixed_runs |= p->order[k] == fx && opt_of(p, &p->conds[fx], CO_METHOD)->i == DEBA_METHOD_FIXED;
    }
    /* profiles.sh: the stability profile of every (arch, dataset) the `fixed` condition runs */
    int write_profiles = fixed_runs && p->epochs >= 2;
    need_cal = need_cal && write_profiles;   /* validate() holds calibrate to both */
    if (ep.dir[0] && (st = deba_mkdirs(ep.dir, e))) goto out;
    const char *outs[5] = { jobs_path, ep.sbatch, ep.report, write_profiles ? ep.profiles : NULL,
                            need_cal ? ep.calibrate : NULL };
    for (int i = 0; i < 5; i++) {
        struct stat sb;
        if (outs[i] && stat(outs[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s: is a directory, not a file", outs[i]);
            goto out;
        }
        if (outs[i] && !force && exists(outs[i])) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s exists (use --force to overwrite)", outs[i]);
            goto out;
        }
    }

    sbuf jobs = { 0 }, prof = { 0 }, sb = { 0 }, cal = { 0 }, rep = { 0 };
    for (size_t i = 0; i < n && !st; i++) st = emit_run(&jobs, p, runs[i].c, runs[i].arch, runs[i].dataset, runs[i].seed, e);
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
    char *qjobs = deba_esc_dup(deba_esc_shell, jobs_path), *qsbatch = deba_esc_dup(deba_esc_shell, ep.sbatch);
    char *qprof = deba_esc_dup(deba_esc_shell, ep.profiles), *qcal = deba_esc_dup(deba_esc_shell, ep.calibrate);
    char *qrep = deba_esc_dup(deba_esc_shell, ep.report), *qlogs = deba_esc_dup(deba_esc_shell, ep.abs_logs);
    char *qplan = deba_esc_dup(deba_esc_shell, p->path), *qout = deba_esc_dup(deba_esc_shell, p->out);
    char *report_dir = NULL, *qreport_dir = NULL;
    if (qout && asprintf(&report_dir, "%s/report", p->out) >= 0) qreport_dir = deba_esc_dup(deba_esc_shell, report_dir);
    if (!qjobs || !qsbatch || !qprof || !qcal || !qrep || !qlogs || !qplan || !qout || !qreport_dir) sb.failed = 1;
    else {
        /* study.sbatch: one array task per job line, for the runs of both run phases */
        sb_script_head(&sb, p, &ep, "study", "study-%A_%a.out", 2);
        sb_add(&sb, "# Slurm array task i runs line i of %s.\n", qjobs);
        if (need_cal)
            sb_add(&sb,
                   "# Lines 1-%zu need nothing else; lines %zu-%zu use thresholds that %s calibrates from\n"
                   "# the fixed runs. Submit the whole study, each phase after the one before, with\n"
                   "#   deba-profile --submit %s\n"
                   "# or by hand (from any directory):\n"
                   "#   a=$(sbatch --parsable --array=1-%zu %s)\n"
                   "#   b=$(sbatch --parsable --dependency=afterany:$a %s)\n"
                   "#   c=$(sbatch --parsable --dependency=afterany:$b --array=%zu-%zu %s)\n"
                   "#   sbatch --dependency=afterany:$a:$b:$c %s\n"
                   "# With GNU parallel: head -n %zu %s | parallel -j 4 && sh %s && tail -n +%zu %s | parallel -j 4\n",
                   n1, n1 + 1, n, qcal, qplan, n1, qsbatch, qcal, n1 + 1, n, qsbatch, qrep, n1, qjobs, qprof, n1 + 1,
                   qjobs);
        else
            sb_add(&sb,
                   "# Submit with deba-profile --submit %s, or by hand (from any directory):\n"
                   "#   a=$(sbatch --parsable --array=1-%zu %s)\n#   sbatch --dependency=afterany:$a %s\n"
                   "# With GNU parallel: parallel -j 4 < %s%s%s\n",
                   qplan, n, qsbatch, qrep, qjobs, write_profiles ? "; then sh " : "", write_profiles ? qprof : "");
        sb_add(&sb,
               "# afterany, not afterok: a requeued task is waited for, and a later phase that finds a run\n"
               "# not completed fails, naming it and its log, instead of waiting for ever.\n"
               "# Pre-emption: Slurm's SIGTERM (pre-emption, scontrol requeue, or two minutes before the time\n"
               "# limit: --signal=B:TERM@120) reaches deba-train, which checkpoints at its current step and\n"
               "# exits 3. A task Slurm still runs (the time limit's signal) then requeues itself; one that Slurm\n"
               "# is ending (scancel, requeue, pre-emption) is left to Slurm. A requeued task continues the run\n"
               "# (--resume) to the end an uninterrupted run has. A task whose run is completed exits 0 at once.\n");
        sb_script_cd(&sb, &ep);
        sb_add(&sb,
               "if [ -z \"${SLURM_ARRAY_TASK_ID:-}\" ]; then echo \"study.sbatch: not an array task: submit it as the "
               "top of \"%s\" says\" >&2; exit 2; fi\n"
               "line=$(sed -n \"${SLURM_ARRAY_TASK_ID}p\" %s)\n"
               "if [ -z \"$line\" ]; then echo \"study.sbatch: no line $SLURM_ARRAY_TASK_ID in \"%s >&2; exit 2; fi\n"
               "# as many threads as the task has CPUs, not one per core of the node\n"
               "if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK; fi\n"
               "echo \"$line\"\n"
               "# in the background, so that this shell takes the SIGTERM of --signal=B: and passes it on;\n"
               "# the trap comes first, so that a SIGTERM before deba-train has started is passed on too\n"
               "child=\ntrap 'if [ -n \"$child\" ]; then kill -TERM \"$child\" 2>/dev/null; else term=1; fi' TERM\n"
               "bash -c \"$line\" &\nchild=$!\n"
               "if [ -n \"${term:-}\" ]; then kill -TERM \"$child\" 2>/dev/null; fi\n"
               "# Polled with a foreground sleep, not `wait`: a trapped SIGTERM that ends `wait` early as\n"
               "# deba-train exits can make bash lose its exit status (then 143 or 255, not 3).\n"
               "while kill -0 \"$child\" 2>/dev/null; do sleep 1; done\n"
               "wait \"$child\"\nrc=$?\n"
               "if [ \"$rc\" -eq 3 ] && [ -n \"${SLURM_JOB_ID:-}\" ]; then\n"
               "  # checkpointed. ARRAY_TASK, not the job id: the array's last task has the array's own\n"
               "  # id, and requeueing that id requeues every task of the array.\n"
               "  task=$SLURM_JOB_ID\n"
               "  if [ -n \"${SLURM_ARRAY_JOB_ID:-}\" ]; then task=${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID; fi\n"
               "  # Only a task Slurm still calls RUNNING is requeued from here: --signal=B: leaves it running,\n"
               "  # while scancel, scontrol requeue and pre-emption make it COMPLETING before they signal, and\n"
               "  # then Slurm decides (a task it requeued comes back; a cancelled one must stay cancelled).\n"
               "  # Requeued means no longer RUNNING; the controller may be slow to answer: up to 5 tries.\n"
               "  # The requeue asked here has Slurm send SIGTERM to every process of the task, scontrol\n"
               "  # itself too, possibly before it exits: these commands ignore it, so their status is theirs.\n"
               "  slurm() { (trap '' TERM; exec \"$@\"); }\n"
               "  asked=0\n"
               "  for try in 1 2 3 4 5; do\n"
               "    state=$(slurm squeue -h -j \"$task\" -o %%T 2>/dev/null)\n"
               "    if [ \"$state\" = RUNNING ] && slurm scontrol requeue \"$task\"; then\n"
               "      asked=1\n"
               "      state=$(slurm squeue -h -j \"$task\" -o %%T 2>/dev/null)\n"
               "    fi\n"
               "    if [ -n \"$state\" ] && [ \"$state\" != RUNNING ]; then break; fi\n"
               "    if [ \"$try\" -lt 5 ]; then sleep \"$try\"; fi\n"
               "  done\n"
               "  if [ -z \"$state\" ] || [ \"$state\" = RUNNING ]; then\n"
               "    why=\"could not requeue task $task (${state:-squeue did not answer} after 5 tries): the run stays\"\n"
               "    why=\"$why interrupted, and deba-profile --submit continues it\"\n"
               "  elif [ \"$asked\" = 1 ]; then\n"
               "    why=\"task $task requeued\"\n"
               "  else\n"
               "    why=\"task $task is $state (scancel, scontrol requeue or pre-emption): Slurm decides whether\"\n"
               "    why=\"$why it comes back; not requeued by this task\"\n"
               "  fi\n"
               "  echo \"study.sbatch: run stopped at a checkpoint (exit status 3): $why\" >&2\n"
               "fi\nexit \"$rc\"\n",
               qsbatch, qjobs, qjobs);
        if (need_cal) {
            sb_script_head(&cal, p, &ep, "calibrate", "calibrate-%j.out", 1);
            sb_add(&cal, "# The calibration phase: once every fixed run completed, each (arch, dataset)'s profile\n"
                         "# and thresholds (%s), which the calibrated runs (lines %zu-%zu of %s) read.\n",
                   qprof, n1 + 1, n, qjobs);
            sb_script_cd(&cal, &ep);
            sb_check(&cal, p, runs, 0, n1, 1, "calibrate.sbatch", qjobs, qlogs);
            sb_add(&cal, "exec sh %s\n", qprof);
        }
        sb_script_head(&rep, p, &ep, "report", "report-%j.out", 0);
        sb_add(&rep, "# The report phase: once every run completed, the study's tables and figures (deba-report)\n"
                     "# in %s.\n", qreport_dir);
        sb_script_cd(&rep, &ep);
        sb_check(&rep, p, runs, 0, n, 0, "report.sbatch", qjobs, qlogs);
        sb_add(&rep, "exec deba-report --out %s --force --quiet %s\n", qreport_dir, qout);
    }
    free(qjobs), free(qsbatch), free(qprof), free(qcal), free(qrep), free(qlogs), free(qplan), free(qout);
    free(report_dir), free(qreport_dir);
    sbuf *all[5] = { &jobs, &prof, &sb, &cal, &rep };
    const char *bad = NULL;
    int failed = 0;
    for (int i = 0; i < 5; i++) {
        if (!bad) bad = all[i]->unquotable;
        failed |= all[i]->failed;
    }
    if (st) {
    } else if (bad) {
        char shown[400];
        st = deba_err_set(e, DEBA_E_INPUT, "%s: '%s' holds a control character and cannot be written into a script",
                          p->path, deba_esc_msg(shown, sizeof shown, bad));
    } else if (failed)
        st = deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    if (!st) st = write_file(jobs_path, jobs.s ? jobs.s : "", jobs.n, 0, e);
    if (!st) st = write_file(ep.sbatch, sb.s, sb.n, 0755, e);
    if (!st && write_profiles) st = write_file(ep.profiles, prof.s, prof.n, 0755, e);
    if (!st && need_cal) st = write_file(ep.calibrate, cal.s, cal.n, 0755, e);
    if (!st) st = write_file(ep.report, rep.s, rep.n, 0755, e);
    /* Slurm opens each task's log there and does not create the directory */
    if (!st) st = deba_mkdirs(ep.logs, e);
    if (!st && log) {
        fprintf(log, "wrote %s: %zu runs", jobs_path, n);
        if (need_cal) fprintf(log, " (lines 1-%zu first; lines %zu-%zu need the thresholds %s writes)", n1, n1 + 1, n,
                              ep.profiles);
        fprintf(log, "\nwrote %s%s%s%s%s and %s\n", ep.sbatch, write_profiles ? ", " : "", write_profiles ? ep.profiles : "",
                need_cal ? ", " : "", need_cal ? ep.calibrate : "", ep.report);
    }
    for (int i = 0; i < 5; i++) free(all[i]->s);
out:
    free(runs);
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

/* ---- Slurm: submitting and watching a study ---- */

/* Runs argv (looked up on PATH) with its standard output into *out (malloc'd, NUL-terminated)
 * and its standard error to ours, or nowhere when quiet. Returns the exit status, 127 when the
 * program is not there, -1 when it could not start or died of a signal. */
static int run_capture(char *const argv[], int quiet, char **out)
{
    *out = NULL;
    int fd[2];
    if (pipe(fd) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    if (quiet) posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    extern char **environ;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc) {
        close(fd[0]);
        return rc == ENOENT ? 127 : -1;
    }
    sbuf b = { 0 };
    char chunk[4096];
    ssize_t k;
    while ((k = read(fd[0], chunk, sizeof chunk)) != 0) {
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) break;
        sb_add(&b, "%.*s", (int)k, chunk);
    }
    close(fd[0]);
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return -1;
    if (b.failed) {
        free(b.s);
        return -1;
    }
    *out = b.s ? b.s : strdup("");
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* One phase of a submission, as in submitted.csv. */
typedef struct {
    char phase[16];
    char id[32];
    size_t first, last;     /* job lines of an array phase; 0 for calibrate and report */
} sub_job;

#define MAX_SUB 4

/* dir/submitted.csv, when there is one; a malformed file is an input error naming its line. */
static deba_status read_submitted(const char *path, sub_job *jobs, int *n, deba_err *e)
{
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? DEBA_OK : deba_err_set(e, DEBA_E_IO, "%s: cannot open: %s", path, strerror(errno));
    char line[256];
    int ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        if (ln == 1) continue;   /* header */
        sub_job j = { 0 };
        char id[sizeof j.id + 1];
        int used = 0;
        if (*n == MAX_SUB || sscanf(line, "%15[a-z],%32[0-9],%zu,%zu%n", j.phase, id, &j.first, &j.last, &used) != 4 ||
            strlen(id) >= sizeof j.id || (line[used] != '\n' && line[used])) {
            fclose(f);
            return deba_err_set(e, DEBA_E_INPUT, "%s:%d: expected phase,job_id,first_line,last_line", path, ln);
        }
        memcpy(j.id, id, strlen(id) + 1);   /* fits: checked above */
        jobs[(*n)++] = j;
    }
    fclose(f);
    return DEBA_OK;
}

static void default_dir(const deba_plan *p, const char *dir, char *buf, size_t cap)
{
    if (dir) snprintf(buf, cap, "%.2047s", dir);
    else snprintf(buf, cap, "%.2047s/slurm", p->out);   /* out < 2048 bytes, checked when parsed */
}

/* Slurm states in which a job may still run. */
static int state_active(const char *s)
{
    static const char *const live[] = { "PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_FED",
                                        "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
                                        "RESV_DEL_HOLD", "SPECIAL_EXIT" };
    for (size_t i = 0; i < sizeof live / sizeof *live; i++)
        if (!strcmp(s, live[i])) return 1;
    return 0;
}

static int state_running(const char *s)
{
    return !strcmp(s, "RUNNING") || !strcmp(s, "COMPLETING") || !strcmp(s, "CONFIGURING");
}

/* The queue's view: "ID" or "ID_TASK" -> state, from squeue (jobs the controller still holds)
 * and, for jobs it has forgotten, sacct where accounting is on. */
typedef struct {
    char key[48], state[32];
} qstate;

typedef struct {
    qstate *v;
    size_t n, cap;
    int squeue_ok;
} queue_view;

static void queue_put(queue_view *q, const char *key, const char *state, int replace)
{
    for (size_t i = 0; i < q->n; i++)
        if (!strcmp(q->v[i].key, key)) {
            if (replace) snprintf(q->v[i].state, sizeof q->v[i].state, "%s", state);
            return;
        }
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        qstate *v = realloc(q->v, cap * sizeof *v);
        if (!v) return;   /* a state less shown, nothing wrong written */
        q->v = v, q->cap = cap;
    }
    snprintf(q->v[q->n].key, sizeof q->v[q->n].key, "%s", key);
    snprintf(q->v[q->n++].state, sizeof q->v[0].state, "%s", state);
}

static const char *queue_get(const queue_view *q, const char *key)
{
    for (size_t i = 0; i < q->n; i++)
        if (!strcmp(q->v[i].key, key)) return q->v[i].state;
    return NULL;
}

/* Lines "KEY|STATE" (sacct adds steps, "12_3.batch", and words after a state, "CANCELLED by 0"). */
static void queue_parse(queue_view *q, char *text, int replace)
{
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char *bar = strchr(l, '|');
        if (!bar) continue;
        *bar = '\0';
        char *key = trim(l), *st = trim(bar + 1);
        st[strcspn(st, " +|")] = '\0';
        if (*key && !strchr(key, '.') && *st) queue_put(q, key, st, replace);
    }
}

static void queue_read(queue_view *q, const sub_job *jobs, int n)
{
    char ids[MAX_SUB * 33 + 8] = "";
    for (int i = 0; i < n; i++) {
        strcat(ids, i ? "," : "");
        strcat(ids, jobs[i].id);
    }
    if (!n) return;
    char *out;
    char jobs_opt[sizeof ids + 8];
    snprintf(jobs_opt, sizeof jobs_opt, "--jobs=%s", ids);
    char *sq[] = { "squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", jobs_opt, NULL };
    if (run_capture(sq, 1, &out) == 0) {
        q->squeue_ok = 1;
        queue_parse(q, out, 1);
    }
    free(out);
    char *sa[] = { "sacct", "--noheader", "--parsable2", "--format=JobID,State", jobs_opt, NULL };
    if (run_capture(sa, 1, &out) == 0) queue_parse(q, out, 0);
    free(out);
}

/* Is any job of an earlier submission still queued or running? */
static deba_status check_not_running(const char *subs, deba_err *e)
{
    sub_job jobs[MAX_SUB];
    int n;
    deba_status st = read_submitted(subs, jobs, &n, e);
    if (st || !n) return st;
    queue_view q = { 0 };
    queue_read(&q, jobs, n);
    char busy[256] = "";
    for (size_t i = 0; i < q.n; i++)
        if (state_active(q.v[i].state) && strlen(busy) + strlen(q.v[i].key) + 2 < sizeof busy)
            snprintf(busy + strlen(busy), sizeof busy - strlen(busy), "%s%s", *busy ? " " : "", q.v[i].key);
    free(q.v);
    if (*busy)
        return deba_err_set(e, DEBA_E_INPUT, "%s: jobs of an earlier submission are still queued or running (%s): wait for "
                            "them (deba-profile --status --watch) or scancel them first", subs, busy);
    return DEBA_OK;
}

/* sbatch --parsable ARGS...: the job id it prints ("ID" or "ID;CLUSTER"). */
static deba_status sbatch(char **argv, char *id, size_t cap, const char *what, const char *so_far, deba_err *e)
{
    char *out;
    int rc = run_capture(argv, 0, &out);
    size_t k = out ? strspn(out, "0123456789") : 0;
    if (rc == 0 && k > 0 && k < cap && (!out[k] || out[k] == ';' || out[k] == '\n')) {
        snprintf(id, cap, "%.*s", (int)k, out);
        free(out);
        return DEBA_OK;
    }
    free(out);
    if (rc == 127)
        return deba_err_set(e, DEBA_E_RUNTIME, "sbatch not found: is this a Slurm login node? (%s not submitted)", what);
    return deba_err_set(e, DEBA_E_RUNTIME, "sbatch failed for the %s (exit status %d)%s%s", what, rc,
                        *so_far ? "; already submitted, to scancel: " : "", so_far);
}

deba_status deba_plan_submit(const deba_plan *p, const char *dir_opt, FILE *log, deba_err *e)
{
    char dir[4096], jobs_path[4200], subs[4200];
    default_dir(p, dir_opt, dir, sizeof dir);
    snprintf(jobs_path, sizeof jobs_path, "%s/jobs.txt", dir);
    snprintf(subs, sizeof subs, "%s/submitted.csv", dir);
    /* the files are the plan's, rewritten: but not under tasks that are reading them */
    deba_status st = check_not_running(subs, e);
    if (st) return st;
    if ((st = deba_plan_emit(p, jobs_path, 1, NULL, e))) return st;
    emit_paths ep;
    plan_run *runs;
    if ((st = emit_paths_of(jobs_path, &ep, e)) || (st = plan_runs(p, &runs, &ep.n, &ep.n1, e))) return st;
    free(runs);
    int need_cal = exists(ep.calibrate) && ep.n1 < ep.n;
    /* Slurm reads '%' in a log name as a pattern and a backslash as "no patterns at all" */
    if (strchr(ep.abs_logs, '\\'))
        return deba_err_set(e, DEBA_E_INPUT, "%s: Slurm cannot name log files under a path holding a backslash", ep.abs_logs);
    char logs_pct[2 * sizeof ep.abs_logs];
    size_t o = 0;
    for (const char *c = ep.abs_logs; *c && o + 3 < sizeof logs_pct; c++) {
        if (*c == '%') logs_pct[o++] = '%';
        logs_pct[o++] = *c;
    }
    logs_pct[o] = '\0';

    sub_job jobs[MAX_SUB];
    int nj = 0;
    char so_far[160] = "", out_opt[sizeof logs_pct + 64], arr[64], dep[160];
    struct { const char *phase, *script, *log; size_t first, last; } phases[MAX_SUB] = {
        { "runs", ep.sbatch, "study-%A_%a.out", 1, need_cal ? ep.n1 : ep.n },
        { "calibrate", ep.calibrate, "calibrate-%j.out", 0, 0 },
        { "calibrated", ep.sbatch, "study-%A_%a.out", ep.n1 + 1, ep.n },
        { "report", ep.report, "report-%j.out", 0, 0 },
    };
    for (int i = 0; i < MAX_SUB && !st; i++) {
        if (i == 0 && !phases[i].last) continue;
        if ((i == 1 || i == 2) && !need_cal) continue;
        char *argv[8];
        int a = 0;
        argv[a++] = "sbatch";
        argv[a++] = "--parsable";
        snprintf(out_opt, sizeof out_opt, "--output=%s/%s", logs_pct, phases[i].log);
        argv[a++] = out_opt;
        if (phases[i].first) {
            snprintf(arr, sizeof arr, "--array=%zu-%zu", phases[i].first, phases[i].last);
            argv[a++] = arr;
        }
        if (nj) {
            /* the report waits for every phase; the others for the one before */
            snprintf(dep, sizeof dep, "--dependency=afterany");
            for (int j = i == 3 ? 0 : nj - 1; j < nj; j++)
                snprintf(dep + strlen(dep), sizeof dep - strlen(dep), ":%s", jobs[j].id);
            argv[a++] = dep;
        }
        argv[a++] = (char *)phases[i].script;
        argv[a] = NULL;
        sub_job *j = &jobs[nj];
        memset(j, 0, sizeof *j);
        snprintf(j->phase, sizeof j->phase, "%s", phases[i].phase);
        j->first = phases[i].first, j->last = phases[i].last;
        if ((st = sbatch(argv, j->id, sizeof j->id, phases[i].phase, so_far, e))) break;
        snprintf(so_far + strlen(so_far), sizeof so_far - strlen(so_far), "%s%s", *so_far ? " " : "", j->id);
        nj++;
    }
    if (st) return st;
    sbuf b = { 0 };
    sb_add(&b, "phase,job_id,first_line,last_line\n");
    for (int i = 0; i < nj; i++) sb_add(&b, "%s,%s,%zu,%zu\n", jobs[i].phase, jobs[i].id, jobs[i].first, jobs[i].last);
    st = b.failed ? deba_err_set(e, DEBA_E_NOMEM, "out of memory") : write_file(subs, b.s, b.n, 0, e);
    free(b.s);
    if (st) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        return deba_err_set(e, st, "%s (submitted jobs %s)", msg, so_far);
    }
    if (log) {
        fprintf(log, "submitted %s: %zu runs, files and logs in %s\n", p->path, ep.n, dir);
        for (int i = 0; i < nj; i++) {
            fprintf(log, "  %-10s job %s", jobs[i].phase, jobs[i].id);
            if (jobs[i].first) fprintf(log, ", array %zu-%zu (lines of jobs.txt)", jobs[i].first, jobs[i].last);
            if (i) fprintf(log, ", after %s", i == nj - 1 && nj > 1 ? "every phase before" : jobs[i - 1].id);
            fputc('\n', log);
        }
        fprintf(log, "watch it with: deba-profile --status %s --watch\n", p->path);
    }
    return DEBA_OK;
}

static void fmt_duration(double s, char *buf, size_t cap)
{
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
}

deba_status deba_plan_status(const deba_plan *p, const char *dir_opt, FILE *out, int *finished, int *all_done,
                             deba_err *e)
{
    char dir[4096], subs[4200], logs[4200];
    default_dir(p, dir_opt, dir, sizeof dir);
    snprintf(subs, sizeof subs, "%s/submitted.csv", dir);
    snprintf(logs, sizeof logs, "%s/logs", dir);
    sub_job jobs[MAX_SUB];
    int nj;
    deba_status st = read_submitted(subs, jobs, &nj, e);
    if (st) return st;
    plan_run *runs;
    size_t n, n1;
    if ((st = plan_runs(p, &runs, &n, &n1, e))) return st;
    queue_view q = { 0 };
    queue_read(&q, jobs, nj);

    enum { DONE, RUNNING, FAILED, TODO, KINDS };
    size_t count[KINDS] = { 0 }, epochs_done = 0, timed = 0;
    double epoch_s = 0;
    sbuf detail = { 0 };
    for (size_t i = 0; i < n; i++) {
        char d[RUN_DIR_MAX], path[RUN_DIR_MAX + 16], task[48] = "";
        run_dir(p, &runs[i], d, sizeof d);
        const char *tstate = NULL;
        for (int j = 0; j < nj; j++)
            if (jobs[j].first && i + 1 >= jobs[j].first && i + 1 <= jobs[j].last) {
                snprintf(task, sizeof task, "%s_%zu", jobs[j].id, i + 1);
                tstate = queue_get(&q, task);
            }
        deba_meta m = { 0 };
        deba_err ign;
        snprintf(path, sizeof path, "%s/meta.csv", d);
        const char *ms = deba_meta_read(path, &m, &ign) ? NULL : deba_meta_get(&m, "status");
        char mstatus[32];
        snprintf(mstatus, sizeof mstatus, "%s", ms ? ms : "");
        deba_meta_free(&m);
        deba_trace t = { 0 };
        snprintf(path, sizeof path, "%s/trace.csv", d);
        size_t rows = 0;
        if (!deba_trace_read(path, &t, &ign)) {
            rows = t.n < (size_t)p->epochs ? t.n : (size_t)p->epochs;
            for (size_t r = 0; r < t.n; r++)
                if (t.rows[r].epoch_time_s > 0) epoch_s += t.rows[r].epoch_time_s, timed++;
        }
        deba_trace_free(&t);
        epochs_done += rows;
        int kind;
        if (!strcmp(mstatus, "completed")) kind = DONE;
        else if (tstate && state_running(tstate)) kind = RUNNING;
        else if (!strcmp(mstatus, "failed") || !strcmp(mstatus, "diverged")) kind = FAILED;
        else if (tstate && !state_active(tstate) && strcmp(tstate, "COMPLETED")) kind = FAILED;
        else if (!tstate && !nj && !strcmp(mstatus, "running")) kind = RUNNING;   /* a local run (parallel) */
        else kind = TODO;
        count[kind]++;
        if (kind == RUNNING)
            sb_add(&detail, "  running  line %zu %s: %zu of %d epochs%s%s%s\n", i + 1, d, rows, p->epochs,
                   *task ? " (task " : "", task, *task ? ")" : "");
        else if (kind == FAILED) {
            sb_add(&detail, "  failed   line %zu %s: %s%s%s%s", i + 1, d, *mstatus ? "meta.csv says " : "no meta.csv",
                   mstatus, tstate ? ", task " : "", tstate ? task : "");
            if (tstate) sb_add(&detail, " %s", tstate);
            if (*task) sb_add(&detail, "; log %s/study-%s.out", logs, task);
            sb_add(&detail, "\n");
        }
    }
    free(runs);
    size_t total = n * (size_t)p->epochs;
    fprintf(out, "study %s: %zu runs of %d epochs\n", p->path, n, p->epochs);
    fprintf(out, "runs: %zu done, %zu running, %zu failed, %zu to do\n", count[DONE], count[RUNNING], count[FAILED],
            count[TODO]);
    fprintf(out, "epochs: %zu of %zu done (%.0f%%)", epochs_done, total, total ? 100.0 * (double)epochs_done / (double)total : 100.0);
    if (epochs_done < total && timed) {
        char eta[32], per[32];
        size_t par = count[RUNNING] ? count[RUNNING] : 1;
        fmt_duration(epoch_s / (double)timed * (double)(total - epochs_done) / (double)par, eta, sizeof eta);
        fmt_duration(epoch_s / (double)timed, per, sizeof per);
        fprintf(out, ", ETA %s (%s an epoch, %zu run%s at a time)", eta, per, par, par == 1 ? "" : "s");
    }
    fputc('\n', out);
    int active = 0;
    if (nj) {
        fprintf(out, "slurm jobs (%s):", subs);
        for (int j = 0; j < nj; j++) {
            const char *s = queue_get(&q, jobs[j].id);
            fprintf(out, " %s %s", jobs[j].phase, jobs[j].id);
            if (jobs[j].first) {
                size_t pend = 0, live = 0;
                for (size_t i = jobs[j].first; i <= jobs[j].last; i++) {
                    char task[48];
                    snprintf(task, sizeof task, "%s_%zu", jobs[j].id, i);
                    const char *ts = queue_get(&q, task);
                    if (ts && state_active(ts)) live++;
                    if (ts && !state_running(ts) && state_active(ts)) pend++;
                }
                /* squeue --array shows a pending range as one "ID_[a-b]" line */
                for (size_t k = 0; k < q.n; k++)
                    if (!strncmp(q.v[k].key, jobs[j].id, strlen(jobs[j].id)) && q.v[k].key[strlen(jobs[j].id)] == '_' &&
                        strchr(q.v[k].key, '[') && state_active(q.v[k].state))
                        live++, pend++;
                active += live > 0;
                fprintf(out, " (lines %zu-%zu%s%s)%s", jobs[j].first, jobs[j].last, live ? ", " : "",
                        live ? (pend == live ? "queued" : "running") : "", j + 1 < nj ? "," : "");
            } else {
                active += s && state_active(s);
                fprintf(out, " %s%s", s ? s : q.squeue_ok ? "gone from the queue" : "state unknown", j + 1 < nj ? "," : "");
                if (s && !state_active(s) && strcmp(s, "COMPLETED"))
                    sb_add(&detail, "  failed   %s job %s %s; log %s/%s-%s.out\n", jobs[j].phase, jobs[j].id, s, logs,
                           jobs[j].phase, jobs[j].id);
            }
        }
        fputc('\n', out);
        if (!q.squeue_ok) fprintf(out, "(squeue did not answer: states from the run directories only)\n");
    }
    if (detail.s) fputs(detail.s, out);
    free(detail.s);
    free(q.v);
    *all_done = count[DONE] == n;
    *finished = nj && q.squeue_ok ? !active : !count[RUNNING];
    return DEBA_OK;
}
