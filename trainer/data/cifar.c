/* CIFAR-10 / CIFAR-100 binary batches: fixed-size records of label byte(s) followed by
 * 3x32x32 pixels (channel-major), as distributed in cifar-{10,100}-binary.tar.gz. */
#include "trainer/data/loaders.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_PIXELS 3072
#define CIFAR_READ_RECORDS 1024

static deba_status read_file(const char *path, uint8_t *buf, size_t rec, int label_bytes,
                             int classes, long long nrec, uint8_t *images, uint8_t *labels,
                             deba_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) return deba_err_set(e, DEBA_E_INPUT, "%s: cannot open: %s", path, strerror(errno));
    for (long long r = 0; r < nrec; r += CIFAR_READ_RECORDS) {
        size_t want = (size_t)(nrec - r < CIFAR_READ_RECORDS ? nrec - r : CIFAR_READ_RECORDS);
        size_t got = fread(buf, rec, want, f);
        if (got != want) {
            fclose(f);
            return deba_err_set(e, DEBA_E_INPUT,
                                "%s: truncated while reading: expected %lld bytes, found %lld",
                                path, nrec * (long long)rec,
                                (r + (long long)got) * (long long)rec);
        }
        for (size_t k = 0; k < want; k++) {
            const uint8_t *p = buf + k * rec;
            if (label_bytes == 2 && p[0] >= 20) {
                fclose(f);
                return deba_err_set(e, DEBA_E_INPUT,
                                    "%s: record %lld: coarse label %d out of range [0, 20)", path,
                                    r + (long long)k, p[0]);
            }
            int label = p[label_bytes - 1];
            if (label >= classes) {
                fclose(f);
                return deba_err_set(e, DEBA_E_INPUT, "%s: record %lld: label %d out of range [0, %d)",
                                    path, r + (long long)k, label, classes);
            }
            labels[r + (long long)k] = (uint8_t)label;
            memcpy(images + (size_t)(r + (long long)k) * CIFAR_PIXELS, p + label_bytes,
                   CIFAR_PIXELS);
        }
    }
    fclose(f);
    return DEBA_OK;
}

deba_status tr_cifar_load(tr_dataset *d, const char *dir, int train, deba_err *e)
{
    int c100 = d->kind == TR_DS_CIFAR100;
    static const char *const c10_train[] = {"data_batch_1.bin", "data_batch_2.bin",
                                            "data_batch_3.bin", "data_batch_4.bin",
                                            "data_batch_5.bin"};
    static const char *const c10_test[] = {"test_batch.bin"};
    static const char *const c100_train[] = {"train.bin"};
    static const char *const c100_test[] = {"test.bin"};
    const char *const *names = c100 ? (train ? c100_train : c100_test)
                                    : (train ? c10_train : c10_test);
    int nfiles = !c100 && train ? 5 : 1;
    const char *subdir = c100 ? "cifar-100-binary" : "cifar-10-batches-bin";
    int label_bytes = c100 ? 2 : 1, classes = c100 ? 100 : 10;
    size_t rec = (size_t)label_bytes + CIFAR_PIXELS;

    /* The files sit in dir itself or in the archive's own folder inside it. */
    char base[4096], p1[4096], p2[4096], path[4096];
    deba_status s;
    if ((s = tr_path_join(p1, sizeof p1, dir, names[0], e)) != DEBA_OK) return s;
    if ((s = tr_path_join(base, sizeof base, dir, subdir, e)) != DEBA_OK) return s;
    if ((s = tr_path_join(p2, sizeof p2, base, names[0], e)) != DEBA_OK) return s;
    if (tr_is_file(p1))
        snprintf(base, sizeof base, "%s", dir);
    else if (!tr_is_file(p2))
        return deba_err_set(e, DEBA_E_INPUT, "%s: missing %s file (looked for %s and %s)",
                            names[0], tr_dataset_name(d->kind), p1, p2);

    long long counts[5], total = 0;
    for (int i = 0; i < nfiles; i++) {
        if ((s = tr_path_join(path, sizeof path, base, names[i], e)) != DEBA_OK) return s;
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            return deba_err_set(e, DEBA_E_INPUT, "%s: missing %s file (looked for %s)", path,
                                tr_dataset_name(d->kind), path);
        long long size = (long long)st.st_size;
        if (size == 0)
            return deba_err_set(e, DEBA_E_INPUT, "%s: empty file (expected %zu-byte %s records)",
                                path, rec, tr_dataset_name(d->kind));
        if (size % (long long)rec != 0) {
            long long expect = (size / (long long)rec + 1) * (long long)rec;
            return deba_err_set(e, DEBA_E_INPUT,
                                "%s: size %lld bytes is not a multiple of the %zu-byte %s record "
                                "(truncated? expected %lld bytes, found %lld)",
                                path, size, rec, tr_dataset_name(d->kind), expect, size);
        }
        counts[i] = size / (long long)rec;
        total += counts[i];
    }
    if (total > INT_MAX)
        return deba_err_set(e, DEBA_E_INPUT, "%s: %lld records is more than supported", base,
                            total);

    d->c = 3;
    d->h = d->w = 32;
    d->classes = classes;
    d->images = malloc((size_t)total * CIFAR_PIXELS);
    d->labels = malloc((size_t)total);
    uint8_t *buf = malloc(rec * CIFAR_READ_RECORDS);
    if (!d->images || !d->labels || !buf) {
        free(buf);
        free(d->images);
        free(d->labels);
        d->images = d->labels = NULL;
        return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory for %lld images", base, total);
    }
    long long at = 0;
    for (int i = 0; i < nfiles; i++) {
        if ((s = tr_path_join(path, sizeof path, base, names[i], e)) == DEBA_OK)
            s = read_file(path, buf, rec, label_bytes, classes, counts[i],
                          d->images + (size_t)at * CIFAR_PIXELS, d->labels + at, e);
        if (s != DEBA_OK) {
            free(buf);
            free(d->images);
            free(d->labels);
            d->images = d->labels = NULL;
            return s;
        }
        at += counts[i];
    }
    free(buf);
    d->n = (int)total;
    return DEBA_OK;
}
