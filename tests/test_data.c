/* Dataset loading (CIFAR-10/100 binary, IDX plain and gzip), its error messages, and batch
 * assembly (normalisation, crop/flip augmentation, bilinear resize) against hand values. */
#include "tests/testutil.h"

#include <math.h>
#include <omp.h>
#include <zlib.h>

#include "trainer/data/dataset.h"

/* ---- writing small datasets ---- */

static char *tmpdir(void)
{
    char *d = tu_mkdtemp();
    if (!d) abort();
    return d;
}

static void wbin(const char *dir, const char *name, const void *buf, size_t len)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static void wgz(const char *dir, const char *name, const void *buf, size_t len)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    gzFile f = gzopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, buf, (unsigned)len), (int)len);
    assert_int_equal(gzclose(f), Z_OK);
}

static void mkdir_in(const char *dir, const char *sub)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    assert_int_equal(mkdir(p, 0755), 0);
}

/* Pixel k of global record r: a pattern that differs between records and positions. */
static uint8_t cpx(int r, int k) { return (uint8_t)(r * 7 + k * 13 + (k >> 8)); }

/* CIFAR-10 batch file holding records first..first+count-1 (label r % 10). */
static void write_cifar10(const char *dir, const char *name, int first, int count)
{
    size_t rec = 3073;
    uint8_t *b = malloc(rec * count);
    for (int i = 0; i < count; i++) {
        int r = first + i;
        b[i * rec] = (uint8_t)(r % 10);
        for (int k = 0; k < 3072; k++) b[i * rec + 1 + k] = cpx(r, k);
    }
    wbin(dir, name, b, rec * count);
    free(b);
}

static const int c10_counts[5] = {2, 3, 1, 2, 2};

static void write_cifar10_set(const char *dir)
{
    int at = 0;
    for (int i = 0; i < 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "data_batch_%d.bin", i + 1);
        write_cifar10(dir, name, at, c10_counts[i]);
        at += c10_counts[i];
    }
    write_cifar10(dir, "test_batch.bin", 100, 3);
}

static void write_cifar100(const char *dir, const char *name, int first, int count)
{
    size_t rec = 3074;
    uint8_t *b = malloc(rec * count);
    for (int i = 0; i < count; i++) {
        int r = first + i;
        b[i * rec] = (uint8_t)(r % 20);
        b[i * rec + 1] = (uint8_t)((r * 37) % 100);
        for (int k = 0; k < 3072; k++) b[i * rec + 2 + k] = cpx(r, k);
    }
    wbin(dir, name, b, rec * count);
    free(b);
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static uint8_t mpx(int r, int k) { return (uint8_t)(r * 31 + k * 3); }

/* IDX images: n images of rows x cols; `total` bytes written in all (-1: exactly what the header
 * announces; fewer truncates, more appends zero bytes). */
static void write_idx_images(const char *dir, const char *name, int gz, uint32_t magic, int n,
                             int rows, int cols, long total)
{
    size_t pay = (size_t)n * rows * cols, len = 16 + pay;
    size_t out = total >= 0 ? (size_t)total : len;
    uint8_t *b = calloc(1, out > len ? out : len);
    be32(b, magic); be32(b + 4, (uint32_t)n); be32(b + 8, (uint32_t)rows); be32(b + 12, (uint32_t)cols);
    for (size_t k = 0; k < pay; k++) b[16 + k] = mpx((int)(k / (rows * cols)), (int)(k % (rows * cols)));
    if (gz) wgz(dir, name, b, out); else wbin(dir, name, b, out);
    free(b);
}

static void write_idx_labels(const char *dir, const char *name, int gz, uint32_t magic, int n,
                             int bad_at)
{
    uint8_t *b = malloc(8 + n);
    be32(b, magic); be32(b + 4, (uint32_t)n);
    for (int i = 0; i < n; i++) b[8 + i] = (uint8_t)(i == bad_at ? 10 : (i * 3) % 10);
    if (gz) wgz(dir, name, b, 8 + n); else wbin(dir, name, b, 8 + n);
    free(b);
}

/* ---- names ---- */

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(tr_dataset_parse("cifar10"), TR_DS_CIFAR10);
    assert_int_equal(tr_dataset_parse("cifar100"), TR_DS_CIFAR100);
    assert_int_equal(tr_dataset_parse("fashion-mnist"), TR_DS_FASHION_MNIST);
    assert_int_equal(tr_dataset_parse("mnist"), TR_DS_MNIST);
    assert_int_equal(tr_dataset_parse("imagenet"), -1);
    assert_int_equal(tr_dataset_parse(NULL), -1);
    for (int k = 0; k < TR_DS_COUNT; k++) assert_int_equal(tr_dataset_parse(tr_dataset_name(k)), k);
    assert_string_equal(tr_dataset_default_dir(TR_DS_FASHION_MNIST), "/usr/share/datasets/fashion-mnist");
    assert_null(tr_dataset_default_dir(TR_DS_CIFAR10));
    assert_int_equal(tr_dataset_classes(TR_DS_CIFAR100), 100);
    assert_int_equal(tr_dataset_classes(TR_DS_MNIST), 10);
    assert_int_equal(tr_dataset_channels(TR_DS_CIFAR10), 3);
    assert_int_equal(tr_dataset_channels(TR_DS_FASHION_MNIST), 1);
    assert_int_equal(tr_dataset_image_size(TR_DS_CIFAR100), 32);
    assert_int_equal(tr_dataset_image_size(TR_DS_MNIST), 28);
}

/* ---- loading ---- */

static void check_cifar_records(const tr_dataset *d, int first, int n, int c100)
{
    assert_int_equal(d->n, n);
    assert_int_equal(d->c, 3);
    assert_int_equal(d->h, 32);
    assert_int_equal(d->w, 32);
    for (int i = 0; i < n; i++) {
        int r = first + i;
        assert_int_equal(d->labels[i], c100 ? (r * 37) % 100 : r % 10);
        for (int k = 0; k < 3072; k++)
            if (d->images[(size_t)i * 3072 + k] != cpx(r, k))
                fail_msg("record %d pixel %d: %d, expected %d", r, k, d->images[(size_t)i * 3072 + k], cpx(r, k));
    }
}

static void test_cifar10_load(void **state)
{
    (void)state;
    char *dir = tmpdir();
    write_cifar10_set(dir);
    tr_dataset *d = NULL;
    deba_err e = {0};
    assert_int_equal(tr_dataset_load(TR_DS_CIFAR10, dir, 1, 0, &d, &e), DEBA_OK);
    assert_int_equal(d->kind, TR_DS_CIFAR10);
    assert_int_equal(d->classes, 10);
    check_cifar_records(d, 0, 10, 0);
    tr_dataset_free(d);

    assert_int_equal(tr_dataset_load(TR_DS_CIFAR10, dir, 1, 4, &d, &e), DEBA_OK);
    check_cifar_records(d, 0, 4, 0);
    tr_dataset_free(d);

    /* a subset larger than the split is refused (it used to keep everything silently, and
     * meta.csv recorded the size asked for) */
    d = (tr_dataset *)1;
    assert_int_equal(tr_dataset_load(TR_DS_CIFAR10, dir, 1, 100, &d, &e), DEBA_E_INPUT);
    assert_null(d);
    assert_non_null(strstr(e.msg, "--subset 100: the cifar10 training set in"));
    assert_non_null(strstr(e.msg, "has only 10 images"));
    assert_int_equal(tr_dataset_load(TR_DS_CIFAR10, dir, 1, 10, &d, &e), DEBA_OK);   /* exactly all */
    check_cifar_records(d, 0, 10, 0);
    tr_dataset_free(d);

    assert_int_equal(tr_dataset_load(TR_DS_CIFAR10, dir, 0, 0, &d, &e), DEBA_OK);
    check_cifar_records(d, 100, 3, 0);
    tr_dataset_free(d);

    assert_int_equal(tr_dataset_load(TR_DS_CIFAR10, dir, 0, 2, &d, &e), DEBA_OK);
    check_cifar_records(d, 100, 2, 0);
    tr_dataset_free(d);
    tu_rmtree(dir);
    tr_dataset_free(NULL);
}

static void test_cifar10_subdir(void **state)
{
    (void)state;
    char *dir = tmpdir();
    mkdir_in(dir, "cifar-10-batches-bin");
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    write_cifar10_set(sub);
    tr_dataset *d = NULL;
    deba_err e = {0};
    assert_int_equal(tr_dataset_load(TR_DS_CIFAR10, dir, 1, 0, &d, &e), DEBA_OK);
    check_cifar_records(d, 0, 10, 0);
    tr_dataset_free(d);
    tu_rmtree(dir);
}

static void test_cifar100_load(void **state)
{
    (void)state;
    char *dir = tmpdir();
    mkdir_in(dir, "cifar-100-binary");
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/cifar-100-binary", dir);
    write_cifar100(sub, "train.bin", 0, 5);
    write_cifar100(dir, "test.bin", 50, 2);   /* test split directly in dir */
    tr_dataset *d = NULL;
    deba_err e = {0};
    assert_int_equal(tr_dataset_load(TR_DS_CIFAR100, dir, 1, 0, &d, &e), DEBA_OK);
    assert_int_equal(d->classes, 100);
    check_cifar_records(d, 0, 5, 1);
    tr_dataset_free(d);
    assert_int_equal(tr_dataset_load(TR_DS_CIFAR100, dir, 0, 0, &d, &e), DEBA_OK);
    check_cifar_records(d, 50, 2, 1);
    tr_dataset_free(d);
    tu_rmtree(dir);
}

static void check_idx(const tr_dataset *d, int n)
{
    assert_int_equal(d->n, n);
    assert_int_equal(d->c, 1);
    assert_int_equal(d->h, 28);
    assert_int_equal(d->w, 28);
    assert_int_equal(d->classes, 10);
    for (int i = 0; i < n; i++) {
        assert_int_equal(d->labels[i], (i * 3) % 10);
        for (int k = 0; k < 784; k++)
            if (d->images[(size_t)i * 784 + k] != mpx(i, k)) fail_msg("image %d pixel %d", i, k);
    }
}

static void test_idx_plain_and_gzip(void **state)
{
    (void)state;
    char *dir = tmpdir();
    write_idx_images(dir, "train-images-idx3-ubyte", 0, 0x803, 4, 28, 28, -1);
    write_idx_labels(dir, "train-labels-idx1-ubyte", 0, 0x801, 4, -1);
    write_idx_images(dir, "t10k-images-idx3-ubyte.gz", 1, 0x803, 3, 28, 28, -1);
    write_idx_labels(dir, "t10k-labels-idx1-ubyte.gz", 1, 0x801, 3, -1);
    tr_dataset *d = NULL;
    deba_err e = {0};
    assert_int_equal(tr_dataset_load(TR_DS_MNIST, dir, 1, 0, &d, &e), DEBA_OK);
    check_idx(d, 4);
    tr_dataset_free(d);
    assert_int_equal(tr_dataset_load(TR_DS_FASHION_MNIST, dir, 0, 0, &d, &e), DEBA_OK);
    check_idx(d, 3);
    tr_dataset_free(d);
    assert_int_equal(tr_dataset_load(TR_DS_MNIST, dir, 1, 2, &d, &e), DEBA_OK);
    check_idx(d, 2);
    tr_dataset_free(d);
    tu_rmtree(dir);
}

/* Channel 0: one image all 0, one all 255 -> mean 0.5, std 0.5. Channel 1: all 51 -> mean 0.2,
 * std 0 -> 1 (kept finite). Channel 2: image 0 half 0 half 255, image 1 all 255 -> mean 0.75,
 * var 0.75 - 0.5625 = 0.1875. */
static void test_mean_std(void **state)
{
    (void)state;
    char *dir = tmpdir();
    uint8_t b[2 * 3073];
    for (int i = 0; i < 2; i++) {
        uint8_t *r = b + i * 3073;
        r[0] = 1;
        for (int k = 0; k < 1024; k++) {
            r[1 + k] = i ? 255 : 0;
            r[1 + 1024 + k] = 51;
            r[1 + 2048 + k] = i ? 255 : (k < 512 ? 0 : 255);
        }
    }
    wbin(dir, "test_batch.bin", b, sizeof b);
    tr_dataset *d = NULL;
    deba_err e = {0};
    assert_int_equal(tr_dataset_load(TR_DS_CIFAR10, dir, 0, 0, &d, &e), DEBA_OK);
    assert_float_equal(d->mean[0], 0.5, 1e-6);
    assert_float_equal(d->std[0], 0.5, 1e-6);
    assert_float_equal(d->mean[1], 0.2, 1e-6);
    assert_float_equal(d->std[1], 1.0, 0);
    assert_float_equal(d->mean[2], 0.75, 1e-6);
    assert_float_equal(d->std[2], sqrt(0.1875), 1e-6);
    tr_dataset_free(d);

    /* One 28x28 grey image: 784 pixels, 196 at 255, the rest 0 -> mean 0.25, std sqrt(3)/4;
     * the channels it lacks read mean 0, std 1. */
    uint8_t img[16 + 784], lab[9];
    be32(img, 0x803); be32(img + 4, 1); be32(img + 8, 28); be32(img + 12, 28);
    for (int k = 0; k < 784; k++) img[16 + k] = k < 196 ? 255 : 0;
    be32(lab, 0x801); be32(lab + 4, 1); lab[8] = 9;
    wbin(dir, "t10k-images-idx3-ubyte", img, sizeof img);
    wgz(dir, "t10k-labels-idx1-ubyte.gz", lab, sizeof lab);
    assert_int_equal(tr_dataset_load(TR_DS_MNIST, dir, 0, 0, &d, &e), DEBA_OK);
    assert_float_equal(d->mean[0], 0.25, 1e-6);
    assert_float_equal(d->std[0], sqrt(3.0) / 4, 1e-6);
    assert_float_equal(d->mean[1], 0.0, 0);
    assert_float_equal(d->std[2], 1.0, 0);
    assert_int_equal(d->labels[0], 9);
    tr_dataset_free(d);
    tu_rmtree(dir);
}

/* ---- errors ---- */

static void expect_error(tr_dataset_kind kind, const char *dir, int train, const char *needle,
                         const char *needle2)
{
    tr_dataset *d = (tr_dataset *)&d;   /* must be reset to NULL */
    deba_err e = {0};
    assert_int_equal(tr_dataset_load(kind, dir, train, 0, &d, &e), DEBA_E_INPUT);
    assert_int_equal(e.status, DEBA_E_INPUT);
    assert_null(d);
    if (needle && !strstr(e.msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", e.msg, needle);
    if (needle2 && !strstr(e.msg, needle2)) fail_msg("message \"%s\" lacks \"%s\"", e.msg, needle2);
}

static void test_err_missing(void **state)
{
    (void)state;
    expect_error(TR_DS_CIFAR10, "/nonexistent/deba-data-dir", 1, "/nonexistent/deba-data-dir", NULL);
    char *dir = tmpdir();
    expect_error(TR_DS_CIFAR10, dir, 1, "data_batch_1.bin", "cifar-10-batches-bin");
    expect_error(TR_DS_CIFAR100, dir, 0, "test.bin", "cifar-100-binary");
    expect_error(TR_DS_MNIST, dir, 1, "train-images-idx3-ubyte", "train-images-idx3-ubyte.gz");
    /* four of five CIFAR-10 batches */
    write_cifar10_set(dir);
    char p[4096];
    snprintf(p, sizeof p, "%s/data_batch_5.bin", dir);
    assert_int_equal(unlink(p), 0);
    expect_error(TR_DS_CIFAR10, dir, 1, "data_batch_5.bin", NULL);
    /* images without labels */
    write_idx_images(dir, "train-images-idx3-ubyte.gz", 1, 0x803, 2, 28, 28, -1);
    expect_error(TR_DS_FASHION_MNIST, dir, 1, "train-labels-idx1-ubyte", NULL);
    /* a file where the directory should be */
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    expect_error(TR_DS_CIFAR10, p, 0, "test_batch.bin", "not a directory");
    tu_rmtree(dir);
}

static void test_err_cifar(void **state)
{
    (void)state;
    char *dir = tmpdir();
    write_cifar10_set(dir);
    /* size not a multiple of the record: 2 records + 5 bytes */
    uint8_t *b = calloc(1, 3073 * 3);
    wbin(dir, "data_batch_3.bin", b, 3073 * 2 + 5);
    expect_error(TR_DS_CIFAR10, dir, 1, "data_batch_3.bin", "3073");
    /* truncated: the tail of a record missing */
    wbin(dir, "data_batch_3.bin", b, 3000);
    expect_error(TR_DS_CIFAR10, dir, 1, "data_batch_3.bin", "expected 3073 bytes, found 3000");
    /* empty */
    wbin(dir, "data_batch_3.bin", b, 0);
    expect_error(TR_DS_CIFAR10, dir, 1, "data_batch_3.bin", NULL);
    /* label out of range in the second record */
    b[3073] = 10;
    wbin(dir, "data_batch_3.bin", b, 3073 * 2);
    expect_error(TR_DS_CIFAR10, dir, 1, "data_batch_3.bin", "label 10");
    /* CIFAR-100: fine label 100 */
    b[3074 + 1] = 100;
    wbin(dir, "train.bin", b, 3074 * 2);
    expect_error(TR_DS_CIFAR100, dir, 1, "train.bin", "label 100");
    b[3074 + 1] = 99;
    wbin(dir, "train.bin", b, 3074 * 2);
    tr_dataset *d = NULL;
    deba_err e = {0};
    assert_int_equal(tr_dataset_load(TR_DS_CIFAR100, dir, 1, 0, &d, &e), DEBA_OK);
    assert_int_equal(d->n, 2);
    assert_int_equal(d->labels[1], 99);
    tr_dataset_free(d);
    /* a CIFAR-10 file read as CIFAR-100: 3073 * 2 bytes is not a multiple of 3074 */
    wbin(dir, "train.bin", b, 3073 * 2);
    expect_error(TR_DS_CIFAR100, dir, 1, "train.bin", "3074");
    free(b);
    tu_rmtree(dir);
}

static void test_err_idx(void **state)
{
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        char *dir = tmpdir();
        const char *img = gz ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte";
        const char *lab = gz ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte";
        write_idx_labels(dir, lab, gz, 0x801, 3, -1);
        /* truncated: 3 images announced, 2.5 present */
        write_idx_images(dir, img, gz, 0x803, 3, 28, 28, 16 + 784 * 5 / 2);
        expect_error(TR_DS_MNIST, dir, 1, img, "expected 2368");
        expect_error(TR_DS_MNIST, dir, 1, img, "found 1976");
        /* truncated inside the header */
        write_idx_images(dir, img, gz, 0x803, 3, 28, 28, 10);
        expect_error(TR_DS_MNIST, dir, 1, img, "truncated");
        /* wrong magic: a labels file where the images should be */
        write_idx_images(dir, img, gz, 0x801, 3, 28, 28, -1);
        expect_error(TR_DS_MNIST, dir, 1, img, "0x00000801");
        expect_error(TR_DS_MNIST, dir, 1, img, "0x00000803");
        /* wrong dims */
        write_idx_images(dir, img, gz, 0x803, 3, 32, 32, -1);
        expect_error(TR_DS_FASHION_MNIST, dir, 1, img, "32x32");
        /* count mismatch: 2 images, 3 labels */
        write_idx_images(dir, img, gz, 0x803, 2, 28, 28, -1);
        expect_error(TR_DS_MNIST, dir, 1, img, lab);
        /* label out of range */
        write_idx_images(dir, img, gz, 0x803, 3, 28, 28, -1);
        write_idx_labels(dir, lab, gz, 0x801, 3, 1);
        expect_error(TR_DS_MNIST, dir, 1, lab, "label 10");
        /* wrong magic in the labels */
        write_idx_labels(dir, lab, gz, 0x803, 3, -1);
        expect_error(TR_DS_MNIST, dir, 1, lab, "0x00000803");
        /* trailing bytes after the announced payload */
        write_idx_labels(dir, lab, gz, 0x801, 3, -1);
        write_idx_images(dir, img, gz, 0x803, 3, 28, 28, 16 + 784 * 3 + 7);
        expect_error(TR_DS_MNIST, dir, 1, img, "trailing");
        expect_error(TR_DS_MNIST, dir, 1, img, "found 2375");
        /* the same files, well formed, load */
        write_idx_images(dir, img, gz, 0x803, 3, 28, 28, -1);
        tr_dataset *d = NULL;
        deba_err e = {0};
        assert_int_equal(tr_dataset_load(TR_DS_MNIST, dir, 1, 0, &d, &e), DEBA_OK);
        tr_dataset_free(d);
        if (gz) {
            /* a gzip stream cut short: zlib reports the damage */
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, img);
            struct stat st;
            assert_int_equal(stat(p, &st), 0);
            assert_int_equal(truncate(p, st.st_size / 2), 0);
            expect_error(TR_DS_MNIST, dir, 1, img, NULL);
        }
        tu_rmtree(dir);
    }
}

/* ---- batches ---- */

/* A hand-built dataset: n images of c x h x w with pixel value f(i, c, y, x). */
static tr_dataset *make_ds(int n, int c, int h, int w)
{
    tr_dataset *d = calloc(1, sizeof *d);
    d->kind = c == 3 ? TR_DS_CIFAR10 : TR_DS_MNIST;
    d->n = n; d->c = c; d->h = h; d->w = w; d->classes = 10;
    d->images = malloc((size_t)n * c * h * w);
    d->labels = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        d->labels[i] = (uint8_t)((i * 7) % 10);
        for (int k = 0; k < c * h * w; k++) d->images[(size_t)i * c * h * w + k] = (uint8_t)(1 + (i * 97 + k * 5) % 250);
    }
    for (int ch = 0; ch < 3; ch++) { d->mean[ch] = 0.1f * (ch + 1); d->std[ch] = 0.2f + 0.05f * ch; }
    return d;
}

static void test_batch_identity(void **state)
{
    (void)state;
    tr_dataset *d = make_ds(5, 3, 32, 32);
    const float mean[3] = {0.49f, 0.48f, 0.45f}, std[3] = {0.25f, 0.24f, 0.26f};
    tr_batch_opts o = {.augment = 0, .out_h = 32, .out_w = 32, .mean = mean, .std = std};
    int idx[4] = {3, 0, 4, 3}, y[4];
    float *x = malloc(sizeof(float) * 4 * 3072);
    tr_dataset_batch(d, idx, 4, &o, NULL, x, y);
    for (int b = 0; b < 4; b++) {
        assert_int_equal(y[b], d->labels[idx[b]]);
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 1024; k++) {
                uint8_t p = d->images[(size_t)idx[b] * 3072 + c * 1024 + k];
                float want = ((float)p / 255.0f - mean[c]) / std[c];
                assert_float_equal(x[(size_t)b * 3072 + c * 1024 + k], want, 1e-6);
            }
    }
    free(x);
    tr_dataset_free(d);
}

static void test_batch_augment(void **state)
{
    (void)state;
    enum { N = 8, C = 3, H = 32, W = 32, P = 4 };
    tr_dataset *d = make_ds(3, C, H, W);
    const float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    tr_batch_opts o = {.augment = 1, .out_h = H, .out_w = W, .mean = mean, .std = std};
    float *x = malloc(sizeof(float) * N * C * H * W);
    int idx[N] = {0, 1, 2, 1, 0, 2, 2, 1}, y[N], flips = 0, noflips = 0, shifted = 0;
    static uint8_t padded[H + 2 * P][W + 2 * P], crop[H][W];
    for (int seed = 0; seed < 6; seed++) {
        tr_rng rng, ref;
        tr_rng_seed(&rng, 1234 + seed, 3);
        ref = rng;
        tr_dataset_batch(d, idx, N, &o, &rng, x, y);
        for (int b = 0; b < N; b++) {
            int dy = (int)tr_rng_below(&ref, 9), dx = (int)tr_rng_below(&ref, 9);
            int flip = tr_rng_uniform(&ref) < 0.5;
            flips += flip; noflips += !flip; shifted += dy != 4 || dx != 4;
            for (int c = 0; c < C; c++) {
                const uint8_t *src = d->images + ((size_t)idx[b] * C + c) * H * W;
                memset(padded, 0, sizeof padded);
                for (int i = 0; i < H; i++)
                    for (int j = 0; j < W; j++) padded[i + P][j + P] = src[i * W + j];
                for (int i = 0; i < H; i++)
                    for (int j = 0; j < W; j++) crop[i][j] = padded[i + dy][j + dx];
                for (int i = 0; i < H; i++)
                    for (int j = 0; j < W; j++) {
                        uint8_t want = flip ? crop[i][W - 1 - j] : crop[i][j];
                        float got = x[(((size_t)b * C + c) * H + i) * W + j];
                        if (fabsf(got - want / 255.0f) > 1e-6f)
                            fail_msg("seed %d sample %d (dy %d dx %d flip %d) c%d (%d,%d): %g, expected %g",
                                     seed, b, dy, dx, flip, c, i, j, got * 255.0, (double)want);
                    }
            }
        }
        /* exactly three draws per sample */
        assert_memory_equal(&rng, &ref, sizeof rng);
    }
    assert_true(flips > 0 && noflips > 0 && shifted > 0);
    free(x);
    tr_dataset_free(d);
}

/* Hand values from PyTorch's align_corners=False rule: for 2 -> 4 the source coordinates are
 * -0.25 (clamped to 0), 0.25, 0.75, 1.25, i.e. weights [1,0], [.75,.25], [.25,.75], [0,1]. */
static void test_batch_resize(void **state)
{
    (void)state;
    tr_dataset *d = make_ds(1, 1, 2, 2);
    const uint8_t px[4] = {10, 50, 90, 250};
    memcpy(d->images, px, 4);
    const float mean[1] = {0}, std[1] = {1};
    tr_batch_opts o = {.augment = 0, .out_h = 4, .out_w = 4, .mean = mean, .std = std};
    const float want[16] = {10, 20, 40, 50, 30, 47.5f, 82.5f, 100,
                            70, 102.5f, 167.5f, 200, 90, 130, 210, 250};
    float x[16];
    int idx = 0, y;
    tr_dataset_batch(d, &idx, 1, &o, NULL, x, &y);
    for (int k = 0; k < 16; k++) assert_float_equal(x[k] * 255.0f, want[k], 1e-3);
    tr_dataset_free(d);

    /* 4 -> 2: sources (0.5, 2.5): the mean of each 2x2 block (no antialiasing). */
    d = make_ds(1, 1, 4, 4);
    for (int k = 0; k < 16; k++) d->images[k] = (uint8_t)(k * 10);
    o.out_h = o.out_w = 2;
    tr_dataset_batch(d, &idx, 1, &o, NULL, x, &y);
    const float want2[4] = {25, 45, 105, 125};
    for (int k = 0; k < 4; k++) assert_float_equal(x[k] * 255.0f, want2[k], 1e-3);

    /* 4x4 -> 3x5 (non-square, non-integer scale): rows src = (i+.5)*4/3-.5 = 0.1667, 1.5, 2.8333;
     * cols src = (j+.5)*0.8-.5 = 0 (clamped from -0.1), 0.7, 1.5, 2.3, 3.1 (upper index clamped). */
    o.out_h = 3; o.out_w = 5;
    tr_dataset_batch(d, &idx, 1, &o, NULL, x, &y);
    const double rs[3] = {1.0 / 6, 1.5, 2.5 + 1.0 / 3}, cs[5] = {0, 0.7, 1.5, 2.3, 3.1};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) {
            /* the image is linear: pixel(y, x) = 40 y + 10 x, until the clamped last column */
            double cx = cs[j] > 3 ? 3 : cs[j];
            double v = 40 * rs[i] + 10 * cx;
            assert_float_equal(x[i * 5 + j] * 255.0f, v, 1e-3);
        }
    tr_dataset_free(d);
}

static void test_batch_determinism(void **state)
{
    (void)state;
    enum { N = 40, S = 48 };
    tr_dataset *d = make_ds(20, 3, 32, 32);
    tr_batch_opts o = {.augment = 1, .out_h = S, .out_w = S, .mean = d->mean, .std = d->std};
    int idx[N], y1[N], y2[N];
    for (int i = 0; i < N; i++) idx[i] = (i * 13) % 20;
    float *x1 = malloc(sizeof(float) * N * 3 * S * S), *x2 = malloc(sizeof(float) * N * 3 * S * S);
    tr_rng r1, r2;
    tr_rng_seed(&r1, 99, 2);
    tr_rng_seed(&r2, 99, 2);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    tr_dataset_batch(d, idx, N, &o, &r1, x1, y1);
    omp_set_num_threads(threads > 1 ? threads : 4);
    tr_dataset_batch(d, idx, N, &o, &r2, x2, y2);
    omp_set_num_threads(threads);
    assert_memory_equal(x1, x2, sizeof(float) * N * 3 * S * S);
    assert_memory_equal(y1, y2, sizeof y1);
    assert_memory_equal(&r1, &r2, sizeof r1);
    /* the next batch differs */
    tr_dataset_batch(d, idx, N, &o, &r2, x2, y2);
    assert_true(memcmp(x1, x2, sizeof(float) * N * 3 * S * S) != 0);
    free(x1);
    free(x2);
    tr_dataset_free(d);
}

/* ---- the real Fashion-MNIST, when installed ---- */

static void test_fashion_mnist_real(void **state)
{
    (void)state;
    const char *dir = tr_dataset_default_dir(TR_DS_FASHION_MNIST);
    if (!tu_exists(dir)) skip();
    int n_of[2] = {10000, 60000};
    for (int train = 0; train < 2; train++) {
        tr_dataset *d = NULL;
        deba_err e = {0};
        if (tr_dataset_load(TR_DS_FASHION_MNIST, NULL, train, 0, &d, &e) != DEBA_OK)
            fail_msg("%s", e.msg);
        assert_int_equal(d->n, n_of[train]);
        assert_int_equal(d->c, 1);
        assert_int_equal(d->h, 28);
        assert_int_equal(d->w, 28);
        assert_int_equal(d->classes, 10);
        int hist[10] = {0};
        for (int i = 0; i < d->n; i++) hist[d->labels[i]]++;
        for (int k = 0; k < 10; k++) assert_int_equal(hist[k], n_of[train] / 10);
        if (train) {
            /* the widely quoted Fashion-MNIST training statistics */
            assert_float_equal(d->mean[0], 0.2860, 1e-3);
            assert_float_equal(d->std[0], 0.3530, 1e-3);
        }
        tr_dataset_free(d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_cifar10_load),
        cmocka_unit_test(test_cifar10_subdir),
        cmocka_unit_test(test_cifar100_load),
        cmocka_unit_test(test_idx_plain_and_gzip),
        cmocka_unit_test(test_mean_std),
        cmocka_unit_test(test_err_missing),
        cmocka_unit_test(test_err_cifar),
        cmocka_unit_test(test_err_idx),
        cmocka_unit_test(test_batch_identity),
        cmocka_unit_test(test_batch_augment),
        cmocka_unit_test(test_batch_resize),
        cmocka_unit_test(test_batch_determinism),
        cmocka_unit_test(test_fashion_mnist_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
