/* Checkpoint files: "DEBACKPT" magic, format version, payload length and CRC-32, then the
 * payload (run info, flat buffers, RNG, trace rows, scheduler blob, position in the epoch).
 * Written to memory first so the CRC covers everything, then to disk through the atomic
 * writer; read back only after the length is checked against the file and the CRC matches, and
 * every field is range-checked before the trainer sees it. */
#include "trainer/checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "deba/csv.h"

#define CKPT_MAGIC "DEBACKPT"
#define CKPT_VERSION 2u          /* 2: position inside an epoch appended; 1 is still read */
#define CKPT_HEADER 24           /* magic 8, version 4, payload length 8, CRC 4 */
#define CKPT_MAX_EPOCHS 100000   /* deba-train --epochs accepts no more */

/* n = 0 writes nothing (and p may then be NULL: the rows of a run inside its first epoch) */
static int put(FILE *f, const void *p, size_t n) { return !n || fwrite(p, 1, n, f) == n ? 0 : -1; }
static int get(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n ? 0 : -1; }

static int put_buf(FILE *f, tr_backend *be, const float *dev, int64_t count)
{
    size_t bytes = (size_t)count * sizeof(float);
    float *h = malloc(bytes ? bytes : 1);
    if (!h) return -1;
    be->download(be, h, dev, bytes);
    int rc = put(f, &count, sizeof count) || put(f, h, bytes);
    free(h);
    return rc;
}

/* 1 when the stream held `count` floats for dev (the count is the model's, so the allocation
 * never follows the file); -1 truncated, -2 a different count (in *saved), -3 out of memory. */
static int get_buf(FILE *f, tr_backend *be, float *dev, int64_t count, int64_t *saved)
{
    if (get(f, saved, sizeof *saved)) return -1;
    if (*saved != count) return -2;
    size_t bytes = (size_t)count * sizeof(float);
    float *h = malloc(bytes ? bytes : 1);
    if (!h) return -3;
    int rc = get(f, h, bytes) ? -1 : 1;
    if (rc == 1) be->upload(be, dev, h, bytes);
    free(h);
    return rc;
}

/* The info block keeps version 1's layout (it was the C struct written as is): two names, the
 * seed, the epoch and 4 bytes of padding, two RNGs, two doubles; 224 bytes. */
static int put_info(FILE *f, const tr_ckpt_info *in)
{
    int32_t epoch = in->epoch, pad = 0;
    return put(f, in->arch, 64) || put(f, in->dataset, 64) || put(f, &in->seed, 8) || put(f, &epoch, 4) ||
           put(f, &pad, 4) || put(f, &in->data_rng, sizeof in->data_rng) ||
           put(f, &in->aug_rng, sizeof in->aug_rng) || put(f, &in->train_time_s, 8) ||
           put(f, &in->best_test_acc, 8);
}

static int get_info(FILE *f, tr_ckpt_info *in)
{
    int32_t epoch = 0, pad = 0;   /* a short read leaves them unset, and bad says so */
    int bad = get(f, in->arch, 64) || get(f, in->dataset, 64) || get(f, &in->seed, 8) || get(f, &epoch, 4) ||
              get(f, &pad, 4) || get(f, &in->data_rng, sizeof in->data_rng) ||
              get(f, &in->aug_rng, sizeof in->aug_rng) || get(f, &in->train_time_s, 8) ||
              get(f, &in->best_test_acc, 8);
    in->epoch = epoch;
    return bad;
}

/* Field by field, so the file has no padding and its layout does not follow the compiler. */
static int put_pos(FILE *f, const tr_ckpt_pos *p)
{
    int32_t v[5] = {p->active, p->epoch, p->batch_size, p->oom, p->steps};
    const double d[5] = {p->loss_sum, p->train_time_s, p->compute_s, p->data_s, p->signal_s};
    return put(f, v, sizeof v) || put(f, &p->samples, 8) || put(f, &p->correct, 8) || put(f, d, sizeof d) ||
           put(f, &p->acc.var_sum, 8) || put(f, &p->acc.norm_sum, 8) || put(f, &p->acc.steps, 8) ||
           put(f, &p->epoch_rng, sizeof p->epoch_rng);
}

static int get_pos(FILE *f, tr_ckpt_pos *p)
{
    int32_t v[5];
    double d[5];
    memset(p, 0, sizeof *p);
    if (get(f, v, sizeof v) || get(f, &p->samples, 8) || get(f, &p->correct, 8) || get(f, d, sizeof d) ||
        get(f, &p->acc.var_sum, 8) || get(f, &p->acc.norm_sum, 8) || get(f, &p->acc.steps, 8) ||
        get(f, &p->epoch_rng, sizeof p->epoch_rng))
        return -1;
    p->active = v[0], p->epoch = v[1], p->batch_size = v[2], p->oom = v[3], p->steps = v[4];
    p->loss_sum = d[0], p->train_time_s = d[1], p->compute_s = d[2], p->data_s = d[3], p->signal_s = d[4];
    return 0;
}

deba_status tr_ckpt_save(const char *path, const tr_ckpt_info *info, const tr_graph *g,
                         const deba_sched *s, const deba_trace *t, deba_err *e)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&mem, &len);
    if (!m) return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory writing the checkpoint", path);
    tr_ckpt_pos pos;
    memset(&pos, 0, sizeof pos);
    if (info->pos.active) pos = info->pos;   /* an epoch-end checkpoint stores zeros */
    uint64_t nrows = t->n;
    int bad = put_info(m, info) || put_buf(m, g->be, g->params, g->n_params) ||
              put_buf(m, g->be, g->momentum, g->n_params) || put_buf(m, g->be, g->stats, g->n_stats) ||
              put(m, &g->rng, sizeof g->rng) || put(m, &nrows, sizeof nrows) ||
              put(m, t->rows, sizeof(deba_trace_row) * t->n);
    if (!bad && deba_sched_save(s, m, e)) bad = 1;
    if (!bad) bad = put_pos(m, &pos);
    fclose(m);
    if (bad) {
        free(mem);
        return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory writing the checkpoint", path);
    }
    uint32_t crc = 0;
    for (size_t off = 0; off < len;) {   /* zlib's length is an unsigned int */
        uInt n = len - off > (1u << 30) ? (1u << 30) : (uInt)(len - off);
        crc = (uint32_t)crc32(crc, (const Bytef *)mem + off, n);
        off += n;
    }
    uint32_t ver = CKPT_VERSION;
    uint64_t plen = len;
    deba_atomic a;
    deba_status st = deba_atomic_open(&a, path, e);
    if (st) {
        free(mem);
        return st;
    }
    errno = 0;
    if (put(a.f, CKPT_MAGIC, 8) || put(a.f, &ver, 4) || put(a.f, &plen, 8) || put(a.f, &crc, 4) ||
        put(a.f, mem, len)) {
        int err = errno;
        free(mem);
        deba_atomic_abort(&a);
        return deba_err_set(e, DEBA_E_IO, "cannot write checkpoint %s: %s", path,
                            err ? strerror(err) : "short write");
    }
    free(mem);
    return deba_atomic_commit(&a, e);
}

/* A name field: NUL-terminated inside its 64 bytes, not empty, printable ASCII. */
static int name_ok(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    if (!nul || nul == s) return 0;
    for (const char *p = s; p < nul; p++)
        if (*p < 0x20 || *p > 0x7e) return 0;
    return 1;
}

static int rng_ok(const tr_rng *r) { return r->s[0] | r->s[1] | r->s[2] | r->s[3]; }   /* xoshiro's one fixed point */

static int fin_ge0(double x) { return isfinite(x) && x >= 0; }
static int pct(double x) { return isfinite(x) && x >= 0 && x <= 100; }

/* The first field of trace row i (epoch i + 1) that no training writes, or NULL. */
static const char *row_bad(const deba_trace_row *r, size_t i)
{
    if (r->epoch != (int)i + 1) return "epoch";
    if (r->batch_size < 1) return "batch_size";
    if (r->steps < 1) return "steps";
    if (!(isfinite(r->lr) && r->lr > 0)) return "lr";
    if (!fin_ge0(r->train_loss)) return "train_loss";
    if (!pct(r->train_acc)) return "train_acc";
    if (!fin_ge0(r->test_loss)) return "test_loss";
    if (!pct(r->test_acc)) return "test_acc";
    if (!fin_ge0(r->grad_var)) return "grad_var";
    if (!fin_ge0(r->grad_norm)) return "grad_norm";
    if (!fin_ge0(r->norm_var)) return "norm_var";
    if (!fin_ge0(r->loss_var)) return "loss_var";
    if (!fin_ge0(r->confidence)) return "confidence";
    if ((unsigned)r->decision >= DEBA_DECISION_COUNT) return "decision";
    const double times[] = {r->epoch_time_s, r->compute_time_s, r->data_time_s, r->signal_time_s, r->eval_time_s,
                            r->samples_per_s};
    for (size_t k = 0; k < sizeof times / sizeof *times; k++)
        if (!fin_ge0(times[k])) return "a time column";
    return NULL;
}

/* What is wrong with a position read from the file, or NULL. */
static const char *pos_bad(const tr_ckpt_pos *p, int epoch, int sched_batch)
{
    tr_ckpt_pos zero;
    memset(&zero, 0, sizeof zero);
    if (p->active == 0) return memcmp(p, &zero, sizeof zero) ? "an inactive position with values" : NULL;
    if (p->active != 1) return "position flag";
    if (p->epoch != epoch + 1) return "position's epoch (not the one after the epochs completed)";
    if (p->batch_size != sched_batch) return "position's batch size (not the scheduler's)";
    if (p->oom != 0 && p->oom != 1) return "position's oom flag";
    if (p->steps < 1 || p->acc.steps != p->steps) return "position's step count";
    if (p->samples != (int64_t)p->steps * p->batch_size) return "position's sample count";
    if (p->correct < 0 || p->correct > p->samples) return "position's correct count";
    if (!fin_ge0(p->loss_sum) || !fin_ge0(p->acc.var_sum) || !fin_ge0(p->acc.norm_sum)) return "position's sums";
    if (!fin_ge0(p->train_time_s) || !fin_ge0(p->compute_s) || !fin_ge0(p->data_s) || !fin_ge0(p->signal_s))
        return "position's times";
    if (!rng_ok(&p->epoch_rng)) return "position's RNG state";
    return NULL;
}

deba_status tr_ckpt_load(const char *path, tr_ckpt_info *info, tr_graph *g, deba_sched **s,
                         deba_trace *t, deba_err *e)
{
    memset(info, 0, sizeof *info);
    FILE *f = fopen(path, "rb");
    if (!f) {
        int err = errno;
        return deba_err_set(e, err == ENOENT || err == ENOTDIR ? DEBA_E_INPUT : DEBA_E_IO,
                            "cannot open checkpoint %s: %s", path, strerror(err));
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int err = errno;
        fclose(f);
        return deba_err_set(e, DEBA_E_INPUT, "%s: not a regular file%s%s", path, err ? ": " : "",
                            err ? strerror(err) : "");
    }
    char magic[8];
    uint32_t ver = 0, crc = 0;
    uint64_t plen = 0;
    if (get(f, magic, 8) || memcmp(magic, CKPT_MAGIC, 8) || get(f, &ver, 4)) {
        fclose(f);
        return deba_err_set(e, DEBA_E_INPUT, "%s: not a DEBA checkpoint (no DEBACKPT header)", path);
    }
    if (ver != 1 && ver != CKPT_VERSION) {
        fclose(f);
        return deba_err_set(e, DEBA_E_INPUT, "%s: checkpoint format version %u; this version reads 1 and %u", path,
                            ver, CKPT_VERSION);
    }
    uint64_t have = (uint64_t)sb.st_size > CKPT_HEADER ? (uint64_t)sb.st_size - CKPT_HEADER : 0;
    if (get(f, &plen, 8) || get(f, &crc, 4) || plen != have) {
        fclose(f);
        return deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: its header declares a %llu-byte payload, the "
                            "file holds %llu bytes after the header", path, (unsigned long long)plen,
                            (unsigned long long)have);
    }
    char *mem = malloc(plen ? plen : 1);   /* no larger than the file, checked above */
    if (!mem) {
        fclose(f);
        return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory reading %llu bytes", path, (unsigned long long)plen);
    }
    size_t got = fread(mem, 1, plen, f);
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    uint32_t sum = 0;
    for (size_t off = 0; off < got;) {
        uInt n = got - off > (1u << 30) ? (1u << 30) : (uInt)(got - off);
        sum = (uint32_t)crc32(sum, (const Bytef *)mem + off, n);
        off += n;
    }
    if (got != plen || sum != crc) {
        free(mem);
        if (got != plen)
            return deba_err_set(e, DEBA_E_IO, "%s: read %zu of %llu bytes: %s", path, got, (unsigned long long)plen,
                                rerr ? strerror(rerr) : "file shrank while reading");
        return deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: CRC mismatch", path);
    }
    FILE *m = fmemopen(mem, plen ? plen : 1, "rb");
    if (!m) {
        free(mem);
        return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
    }
    deba_status st = DEBA_OK;
    int64_t saved = 0;
    int rc = 1;
    uint64_t nrows = 0;
    const char *what = NULL;
    if (get_info(m, info)) what = "truncated run info";
    else if (!name_ok(info->arch, sizeof info->arch)) what = "arch is not a NUL-terminated printable name";
    else if (!name_ok(info->dataset, sizeof info->dataset)) what = "dataset is not a NUL-terminated printable name";
    else if (!rng_ok(&info->data_rng) || !rng_ok(&info->aug_rng)) what = "an RNG state is all zeros";
    else if (!fin_ge0(info->train_time_s)) what = "total train time is negative or not finite";
    else if (!pct(info->best_test_acc)) what = "best test accuracy outside [0, 100]";
    if (!what && (info->epoch < 0 || info->epoch > CKPT_MAX_EPOCHS))
        st = deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: epoch %d outside [0, %d]", path, info->epoch,
                          CKPT_MAX_EPOCHS);
    if (!st && !what) {
        if ((rc = get_buf(m, g->be, g->params, g->n_params, &saved)) == 1 &&
            (rc = get_buf(m, g->be, g->momentum, g->n_params, &saved)) == 1)
            rc = get_buf(m, g->be, g->stats, g->n_stats, &saved);
        if (rc == -2)
            st = deba_err_set(e, DEBA_E_INPUT, "%s: checkpoint does not match this model (%lld values saved where "
                              "the model has %lld parameters and %lld statistics)", path, (long long)saved,
                              (long long)g->n_params, (long long)g->n_stats);
        else if (rc == -3)
            st = deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
        else if (rc == -1 || get(m, &g->rng, sizeof g->rng) || get(m, &nrows, sizeof nrows))
            what = "truncated parameters";
        else if (!rng_ok(&g->rng))
            what = "the model's RNG state is all zeros";
        else if (nrows != (uint64_t)info->epoch)
            st = deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: %llu trace rows for %d epochs done", path,
                              (unsigned long long)nrows, info->epoch);
    }
    if (!st && !what) {
        deba_trace_free(t);
        double best = 0, total = 0;
        for (uint64_t i = 0; i < nrows && !st && !what; i++) {
            deba_trace_row r;
            const char *bad;
            if (get(m, &r, sizeof r)) what = "truncated trace rows";
            else if ((bad = row_bad(&r, i)))
                st = deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: trace row %llu has an impossible %s", path,
                                  (unsigned long long)i + 1, bad);
            else {
                if (r.test_acc > best) best = r.test_acc;
                total += r.epoch_time_s;
                st = deba_trace_push(t, &r, e);
            }
        }
        /* the trainer derives both from the rows, in this order: anything else was edited */
        if (!st && !what && (best != info->best_test_acc || fabs(total - info->train_time_s) > 1e-9 * (1 + total)))
            what = "best accuracy or total time disagrees with the trace rows";
    }
    if (!st && !what) {
        deba_err se = {0};
        deba_sched *ns = deba_sched_load(m, &se);
        if (!ns)
            st = deba_err_set(e, se.status ? se.status : DEBA_E_INPUT, "%s: corrupt checkpoint: %s", path, se.msg);
        else if (deba_sched_epoch(ns) != info->epoch) {
            st = deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: the scheduler has stepped %d epochs, the run "
                              "info says %d", path, deba_sched_epoch(ns), info->epoch);
            deba_sched_free(ns);
        } else {
            deba_sched_free(*s);
            *s = ns;
        }
    }
    if (!st && !what && ver >= 2) {
        const char *bad;
        if (get_pos(m, &info->pos)) what = "truncated position";
        else if ((bad = pos_bad(&info->pos, info->epoch, deba_sched_batch(*s))))
            st = deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: impossible %s", path, bad);
    }
    if (!st && !what && fgetc(m) != EOF) what = "bytes after the last field";
    if (!st && what) st = deba_err_set(e, DEBA_E_INPUT, "%s: corrupt checkpoint: %s", path, what);
    fclose(m);
    free(mem);
    return st;
}
