/* MNIST-style IDX files (big-endian header, then uint8 data), read plain or gzip-compressed
 * through zlib, which passes plain files through unchanged. */
#include "trainer/data/loaders.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_CHUNK ((size_t)1 << 20)

typedef struct {
    gzFile f;
    char path[4096];
} idx_file;

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Opens dir/name, else dir/name.gz. */
static deba_status idx_open(idx_file *x, const char *dir, const char *name, deba_err *e)
{
    char gzname[256];
    deba_status s;
    snprintf(gzname, sizeof gzname, "%s.gz", name);
    if ((s = tr_path_join(x->path, sizeof x->path, dir, name, e)) != DEBA_OK) return s;
    if (!tr_is_file(x->path)) {
        char plain[4096];
        snprintf(plain, sizeof plain, "%s", x->path);
        if ((s = tr_path_join(x->path, sizeof x->path, dir, gzname, e)) != DEBA_OK) return s;
        if (!tr_is_file(x->path))
            return deba_err_set(e, DEBA_E_INPUT, "%s: missing IDX file (looked for %s and %s)",
                                name, plain, x->path);
    }
    x->f = gzopen(x->path, "rb");
    if (!x->f)
        return deba_err_set(e, DEBA_E_INPUT, "%s: cannot open: %s", x->path,
                            errno ? strerror(errno) : "out of memory");
    return DEBA_OK;
}

/* Reads up to want bytes; returns how many came, or -1 on a read or decompression error. */
static long long idx_read(idx_file *x, void *buf, size_t want)
{
    size_t got = 0;
    while (got < want) {
        size_t chunk = want - got < IDX_CHUNK ? want - got : IDX_CHUNK;
        int r = gzread(x->f, (char *)buf + got, (unsigned)chunk);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

static deba_status read_error(idx_file *x, deba_err *e)
{
    int zerr = 0;
    const char *msg = gzerror(x->f, &zerr);
    return deba_err_set(e, DEBA_E_INPUT, "%s: read failed: %s", x->path,
                        zerr == Z_ERRNO ? strerror(errno) : msg);
}

/* Reads the header (magic, then ndims big-endian sizes; dims after the first must equal
 * expect[]) and the payload it announces, growing the buffer as data arrives so a corrupt count
 * cannot make us allocate gigabytes up front. */
static deba_status idx_read_all(idx_file *x, uint32_t magic, int ndims, const uint32_t *expect,
                                const char *kind, uint32_t *dims, uint8_t **data, deba_err *e)
{
    unsigned char hdr[16];
    size_t hdr_len = 4 + 4 * (size_t)ndims;
    long long got = idx_read(x, hdr, hdr_len);
    if (got < 0) return read_error(x, e);
    if (got >= 4 && be32(hdr) != magic)
        return deba_err_set(e, DEBA_E_INPUT, "%s: wrong magic 0x%08x, expected 0x%08x",
                            x->path, be32(hdr), magic);
    if ((size_t)got < hdr_len)
        return deba_err_set(e, DEBA_E_INPUT,
                            "%s: truncated header: expected %zu bytes, found %lld", x->path,
                            hdr_len, got);
    for (int i = 0; i < ndims; i++) dims[i] = be32(hdr + 4 + 4 * i);
    if (ndims == 3 && (dims[1] != expect[0] || dims[2] != expect[1]))
        return deba_err_set(e, DEBA_E_INPUT, "%s: images are %ux%u, expected %ux%u for %s",
                            x->path, dims[1], dims[2], expect[0], expect[1], kind);
    if (dims[0] == 0) return deba_err_set(e, DEBA_E_INPUT, "%s: holds no items", x->path);
    if (dims[0] > INT_MAX)
        return deba_err_set(e, DEBA_E_INPUT, "%s: %u items is more than supported", x->path,
                            dims[0]);
    size_t want = 1;
    for (int i = 0; i < ndims; i++) want *= dims[i];
    const char *unit = gzdirect(x->f) ? "bytes" : "bytes uncompressed";
    size_t cap = want < IDX_CHUNK ? want : IDX_CHUNK, have = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", x->path);
    while (have < want) {
        if (have == cap) {
            size_t ncap = cap * 2 < want ? cap * 2 : want;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", x->path);
            }
            buf = nb;
            cap = ncap;
        }
        long long r = idx_read(x, buf + have, cap - have);
        if (r < 0) {
            free(buf);
            return read_error(x, e);
        }
        have += (size_t)r;
        if (have < cap) break;   /* end of file */
    }
    if (have < want) {
        free(buf);
        return deba_err_set(e, DEBA_E_INPUT, "%s: truncated file: expected %zu %s, found %zu",
                            x->path, hdr_len + want, unit, hdr_len + have);
    }
    unsigned char extra[4096];
    long long more = 0, r;
    while ((r = idx_read(x, extra, sizeof extra)) > 0) more += r;
    if (r < 0 || more > 0) {
        free(buf);
        if (r < 0) return read_error(x, e);
        return deba_err_set(e, DEBA_E_INPUT,
                            "%s: trailing data: expected %zu %s, found %lld", x->path,
                            hdr_len + want, unit, (long long)(hdr_len + want) + more);
    }
    *data = buf;
    return DEBA_OK;
}

deba_status tr_idx_load(tr_dataset *d, const char *dir, int train, deba_err *e)
{
    const char *img_name = train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    const char *lab_name = train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte";
    int size = tr_dataset_image_size(d->kind), classes = tr_dataset_classes(d->kind);
    idx_file fi = {0}, fl = {0};
    uint32_t idims[3] = {0}, ldims[1] = {0};
    uint8_t *images = NULL, *labels = NULL;
    deba_status s;

    /* Both files must exist before either is read, so a missing one is reported at once. */
    if ((s = idx_open(&fi, dir, img_name, e)) != DEBA_OK) goto done;
    if ((s = idx_open(&fl, dir, lab_name, e)) != DEBA_OK) goto done;

    const uint32_t hw[2] = {(uint32_t)size, (uint32_t)size};
    const char *kind = tr_dataset_name(d->kind);
    if ((s = idx_read_all(&fi, IDX_MAGIC_IMAGES, 3, hw, kind, idims, &images, e)) != DEBA_OK)
        goto done;
    if ((s = idx_read_all(&fl, IDX_MAGIC_LABELS, 1, hw, kind, ldims, &labels, e)) != DEBA_OK)
        goto done;
    if (idims[0] != ldims[0]) {
        s = deba_err_set(e, DEBA_E_INPUT, "%s holds %u images but %s holds %u labels", fi.path,
                         idims[0], fl.path, ldims[0]);
        goto done;
    }
    for (uint32_t i = 0; i < ldims[0]; i++) {
        if (labels[i] >= classes) {
            s = deba_err_set(e, DEBA_E_INPUT, "%s: label %u (item %u) out of range [0, %d)",
                             fl.path, labels[i], i, classes);
            goto done;
        }
    }
    d->n = (int)idims[0];
    d->c = 1;
    d->h = d->w = size;
    d->classes = classes;
    d->images = images;
    d->labels = labels;
    images = labels = NULL;
done:
    free(images);
    free(labels);
    if (fi.f) gzclose(fi.f);
    if (fl.f) gzclose(fl.f);
    return s;
}
