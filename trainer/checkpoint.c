/* Checkpoint files: "DEBACKPT" magic, format version, payload length and CRC-32, then the
 * payload (run info, flat buffers, RNG, scheduler blob, trace rows). Written to memory first so
 * the CRC covers everything, then to disk through the atomic writer. */
#include "trainer/checkpoint.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "deba/csv.h"

#define CKPT_MAGIC "DEBACKPT"
#define CKPT_VERSION 1u

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }
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

static int get_buf(FILE *f, tr_backend *be, float *dev, int64_t count)
{
    int64_t saved;
    if (get(f, &saved, sizeof saved) || saved != count) return -1;
    size_t bytes = (size_t)count * sizeof(float);
    float *h = malloc(bytes ? bytes : 1);
    if (!h) return -1;
    int rc = get(f, h, bytes);
    if (!rc) be->upload(be, dev, h, bytes);
    free(h);
    return rc;
}

deba_status tr_ckpt_save(const char *path, const tr_ckpt_info *info, const tr_graph *g,
                         const deba_sched *s, const deba_trace *t, deba_err *e)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&mem, &len);
    if (!m) return deba_err_set(e, DEBA_E_NOMEM, "out of memory writing checkpoint %s", path);
    uint64_t nrows = t->n;
    int bad = put(m, info, sizeof *info) || put_buf(m, g->be, g->params, g->n_params) ||
              put_buf(m, g->be, g->momentum, g->n_params) || put_buf(m, g->be, g->stats, g->n_stats) ||
              put(m, &g->rng, sizeof g->rng) || put(m, &nrows, sizeof nrows) ||
              put(m, t->rows, sizeof(deba_trace_row) * t->n);
    if (!bad && deba_sched_save(s, m, e)) bad = 1;
    fclose(m);
    if (bad) {
        free(mem);
        return e && e->status ? e->status : deba_err_set(e, DEBA_E_NOMEM, "out of memory writing %s", path);
    }
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)mem, (uInt)len);
    uint32_t ver = CKPT_VERSION;
    uint64_t plen = len;
    deba_atomic a;
    deba_status st = deba_atomic_open(&a, path, e);
    if (st) {
        free(mem);
        return st;
    }
    if (put(a.f, CKPT_MAGIC, 8) || put(a.f, &ver, 4) || put(a.f, &plen, 8) || put(a.f, &crc, 4) ||
        put(a.f, mem, len)) {
        free(mem);
        deba_atomic_abort(&a);
        return deba_err_set(e, DEBA_E_IO, "cannot write checkpoint %s", path);
    }
    free(mem);
    return deba_atomic_commit(&a, e);
}

deba_status tr_ckpt_load(const char *path, tr_ckpt_info *info, tr_graph *g, deba_sched **s,
                         deba_trace *t, deba_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) return deba_err_set(e, DEBA_E_INPUT, "cannot open checkpoint %s", path);
    char magic[8];
    uint32_t ver = 0, crc = 0;
    uint64_t plen = 0;
    if (get(f, magic, 8) || memcmp(magic, CKPT_MAGIC, 8) || get(f, &ver, 4) || ver != CKPT_VERSION ||
        get(f, &plen, 8) || get(f, &crc, 4) || plen > (1ull << 40)) {
        fclose(f);
        return deba_err_set(e, DEBA_E_INPUT, "%s: not a DEBA checkpoint (format version %u expected)", path,
                            CKPT_VERSION);
    }
    char *mem = malloc(plen ? plen : 1);
    if (!mem) {
        fclose(f);
        return deba_err_set(e, DEBA_E_NOMEM, "out of memory reading %s", path);
    }
    size_t got = fread(mem, 1, plen, f);
    fclose(f);
    if (got != plen || (uint32_t)crc32(0L, (const Bytef *)mem, (uInt)plen) != crc) {
        free(mem);
        return deba_err_set(e, DEBA_E_INPUT, "%s: checkpoint is truncated or corrupt (%zu of %llu bytes, CRC %s)",
                            path, got, (unsigned long long)plen, got == plen ? "mismatch" : "not checked");
    }
    FILE *m = fmemopen(mem, plen, "rb");
    uint64_t nrows = 0;
    deba_status st = DEBA_OK;
    if (!m || get(m, info, sizeof *info) || get_buf(m, g->be, g->params, g->n_params) ||
        get_buf(m, g->be, g->momentum, g->n_params) || get_buf(m, g->be, g->stats, g->n_stats) ||
        get(m, &g->rng, sizeof g->rng) || get(m, &nrows, sizeof nrows) || nrows > 1000000) {
        st = deba_err_set(e, DEBA_E_INPUT, "%s: checkpoint does not match this model (%lld parameters)", path,
                          (long long)g->n_params);
    }
    if (!st) {
        deba_trace_free(t);
        for (uint64_t i = 0; i < nrows && !st; i++) {
            deba_trace_row r;
            if (get(m, &r, sizeof r)) st = deba_err_set(e, DEBA_E_INPUT, "%s: truncated trace rows", path);
            else st = deba_trace_push(t, &r, e);
        }
    }
    if (!st) {
        deba_sched *ns = deba_sched_load(m, e);
        if (!ns) st = e && e->status ? e->status : DEBA_E_INPUT;
        else {
            deba_sched_free(*s);
            *s = ns;
        }
    }
    if (m) fclose(m);
    free(mem);
    return st;
}
