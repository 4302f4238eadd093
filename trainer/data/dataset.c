/* Dataset names, loading (dispatch to the CIFAR and IDX readers, --subset, per-channel mean and
 * std) and batch assembly: crop/flip augmentation, bilinear resize, normalisation. */
#include "trainer/data/dataset.h"
#include "trainer/data/loaders.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const kind_names[TR_DS_COUNT] = {"cifar10", "cifar100", "fashion-mnist", "mnist"};

int tr_dataset_parse(const char *name)
{
    if (!name) return -1;
    for (int k = 0; k < TR_DS_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

const char *tr_dataset_name(tr_dataset_kind k)
{
    return (unsigned)k < TR_DS_COUNT ? kind_names[k] : "unknown";
}

const char *tr_dataset_default_dir(tr_dataset_kind k)
{
    return k == TR_DS_FASHION_MNIST ? "/usr/share/datasets/fashion-mnist" : NULL;
}

int tr_dataset_classes(tr_dataset_kind k) { return k == TR_DS_CIFAR100 ? 100 : 10; }

int tr_dataset_channels(tr_dataset_kind k)
{
    return k == TR_DS_CIFAR10 || k == TR_DS_CIFAR100 ? 3 : 1;
}

int tr_dataset_image_size(tr_dataset_kind k)
{
    return k == TR_DS_CIFAR10 || k == TR_DS_CIFAR100 ? 32 : 28;
}

deba_status tr_path_join(char *out, size_t cap, const char *a, const char *b, deba_err *e)
{
    int len = snprintf(out, cap, "%s/%s", a, b);
    if (len < 0 || (size_t)len >= cap)
        return deba_err_set(e, DEBA_E_INPUT, "%s: path too long", a);
    return DEBA_OK;
}

int tr_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Exact integer sums per channel (so the result does not depend on thread count), then
 * population mean and std on [0,1]. A constant channel gets std 1 so that normalising it stays
 * finite; channels the dataset lacks get mean 0, std 1. */
static void compute_stats(tr_dataset *d)
{
    size_t plane = (size_t)d->h * d->w;
    for (int c = 0; c < 3; c++) {
        d->mean[c] = 0.0f;
        d->std[c] = 1.0f;
        if (c >= d->c || d->n == 0 || plane == 0) continue;
        uint64_t s = 0, q = 0;
        const uint8_t *img = d->images;
        int n = d->n, C = d->c;
        #pragma omp parallel for reduction(+ : s, q) schedule(static)
        for (int i = 0; i < n; i++) {
            const uint8_t *p = img + ((size_t)i * C + c) * plane;
            uint64_t si = 0, qi = 0;
            for (size_t k = 0; k < plane; k++) {
                si += p[k];
                qi += (uint64_t)p[k] * p[k];
            }
            s += si;
            q += qi;
        }
        double cnt = (double)n * (double)plane;
        double m = (double)s / cnt;                 /* in pixel units */
        double var = (double)q / cnt - m * m;
        if (var < 0.0) var = 0.0;
        double sd = sqrt(var) / 255.0;
        d->mean[c] = (float)(m / 255.0);
        d->std[c] = sd > 0.0 ? (float)sd : 1.0f;
    }
}

deba_status tr_dataset_load(tr_dataset_kind kind, const char *dir, int train, int subset,
                            tr_dataset **out, deba_err *e)
{
    if (out) *out = NULL;
    if (!out) return deba_err_set(e, DEBA_E_INPUT, "tr_dataset_load: out is NULL");
    if ((unsigned)kind >= TR_DS_COUNT)
        return deba_err_set(e, DEBA_E_INPUT, "unknown dataset kind %d", (int)kind);
    if (!dir || !*dir) dir = tr_dataset_default_dir(kind);
    if (!dir)
        return deba_err_set(e, DEBA_E_INPUT, "dataset %s: no data directory given",
                            tr_dataset_name(kind));
    struct stat st;
    if (stat(dir, &st) != 0)
        return deba_err_set(e, DEBA_E_INPUT, "%s: missing dataset directory for %s (%s)", dir,
                            tr_dataset_name(kind), strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return deba_err_set(e, DEBA_E_INPUT, "%s: not a directory (dataset %s)", dir,
                            tr_dataset_name(kind));

    tr_dataset *d = calloc(1, sizeof *d);
    if (!d) return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory for the dataset", dir);
    d->kind = kind;
    deba_status s = kind == TR_DS_CIFAR10 || kind == TR_DS_CIFAR100
                        ? tr_cifar_load(d, dir, train, e)
                        : tr_idx_load(d, dir, train, e);
    if (s != DEBA_OK) {
        tr_dataset_free(d);
        return s;
    }
    /* A run that silently trained on fewer images than it recorded would not be the run asked
     * for: more than the split holds is an input error, for every caller (trainer, sweep). */
    if (subset > d->n) {
        int n = d->n;
        tr_dataset_free(d);
        return deba_err_set(e, DEBA_E_INPUT, "%s %d: the %s %s set in %s has only %d images",
                            train ? "--subset" : "--test-subset", subset, tr_dataset_name(kind),
                            train ? "training" : "test", dir, n);
    }
    if (subset > 0 && subset < d->n) {
        d->n = subset;
        size_t bytes = (size_t)d->n * d->c * d->h * d->w;
        uint8_t *im = realloc(d->images, bytes);  /* shrinking; keep the old block on failure */
        if (im) d->images = im;
        uint8_t *lb = realloc(d->labels, (size_t)d->n);
        if (lb) d->labels = lb;
    }
    compute_stats(d);
    *out = d;
    return DEBA_OK;
}

void tr_dataset_free(tr_dataset *d)
{
    if (!d) return;
    free(d->images);
    free(d->labels);
    free(d);
}

/* Pixel (i, j) of one plane after a crop at offset (oy, ox) from the zero-padded image and an
 * optional horizontal flip of the crop (torchvision order: RandomCrop, then flip). */
static inline float aug_pixel(const uint8_t *plane, int h, int w, int oy, int ox, int flip, int i,
                              int j)
{
    if (flip) j = w - 1 - j;
    int si = i + oy, sj = j + ox;
    if (si < 0 || si >= h || sj < 0 || sj >= w) return 0.0f;
    return (float)plane[(size_t)si * w + sj];
}

/* PyTorch's align_corners=False source coordinate: (dst + 0.5) * in / out - 0.5, clamped at 0;
 * the upper neighbour is clamped to the last row/column. */
static inline void bilinear_src(int dst, int in, int outn, int *i0, int *i1, float *l1)
{
    float scale = (float)in / (float)outn;
    float src = ((float)dst + 0.5f) * scale - 0.5f;
    if (src < 0.0f) src = 0.0f;
    int a = (int)src;
    if (a > in - 1) a = in - 1;
    *i0 = a;
    *i1 = a < in - 1 ? a + 1 : a;
    *l1 = src - (float)a;
}

static void assemble_one(const tr_dataset *d, int img, int oy, int ox, int flip, int oh, int ow,
                         const float *mean, const float *std, float *x)
{
    int h = d->h, w = d->w;
    size_t plane = (size_t)h * w;
    for (int c = 0; c < d->c; c++) {
        const uint8_t *p = d->images + ((size_t)img * d->c + c) * plane;
        float *xo = x + (size_t)c * oh * ow;
        float m = mean[c], s = std[c];
        if (oh == h && ow == w) {
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    xo[(size_t)i * ow + j] =
                        (aug_pixel(p, h, w, oy, ox, flip, i, j) / 255.0f - m) / s;
            continue;
        }
        for (int i = 0; i < oh; i++) {
            int y0, y1;
            float ly;
            bilinear_src(i, h, oh, &y0, &y1, &ly);
            for (int j = 0; j < ow; j++) {
                int x0, x1;
                float lx;
                bilinear_src(j, w, ow, &x0, &x1, &lx);
                float p00 = aug_pixel(p, h, w, oy, ox, flip, y0, x0);
                float p01 = aug_pixel(p, h, w, oy, ox, flip, y0, x1);
                float p10 = aug_pixel(p, h, w, oy, ox, flip, y1, x0);
                float p11 = aug_pixel(p, h, w, oy, ox, flip, y1, x1);
                float v = (1.0f - ly) * ((1.0f - lx) * p00 + lx * p01) +
                          ly * ((1.0f - lx) * p10 + lx * p11);
                xo[(size_t)i * ow + j] = (v / 255.0f - m) / s;
            }
        }
    }
}

/* Augmentation draws for a chunk are made serially (dy, dx, flip per sample, in batch order),
 * then the pixel work runs in parallel, so the batch is the same for any thread count. */
#define TR_BATCH_CHUNK 256

void tr_dataset_batch(const tr_dataset *d, const int *idx, int n, const tr_batch_opts *o,
                      tr_rng *rng, float *x, int *y)
{
    int oh = o->out_h > 0 ? o->out_h : d->h, ow = o->out_w > 0 ? o->out_w : d->w;
    const float *mean = o->mean ? o->mean : d->mean, *std = o->std ? o->std : d->std;
    int augment = o->augment && rng;
    size_t per = (size_t)d->c * oh * ow;
    for (int start = 0; start < n; start += TR_BATCH_CHUNK) {
        int m = n - start < TR_BATCH_CHUNK ? n - start : TR_BATCH_CHUNK;
        signed char oy[TR_BATCH_CHUNK], ox[TR_BATCH_CHUNK], fl[TR_BATCH_CHUNK];
        for (int k = 0; k < m; k++) {
            if (augment) {
                oy[k] = (signed char)((int)tr_rng_below(rng, 9) - 4);
                ox[k] = (signed char)((int)tr_rng_below(rng, 9) - 4);
                fl[k] = tr_rng_uniform(rng) < 0.5;
            } else {
                oy[k] = ox[k] = fl[k] = 0;
            }
        }
        #pragma omp parallel for schedule(static) if (m > 1)
        for (int k = 0; k < m; k++) {
            int b = start + k;
            assemble_one(d, idx[b], oy[k], ox[k], fl[k], oh, ow, mean, std, x + (size_t)b * per);
            if (y) y[b] = d->labels[idx[b]];
        }
    }
}
