/* libFuzzer harness: (Fashion-)MNIST IDX loader (trainer/data/idx.c through tr_dataset_load).
 * Input: byte 0 flags (bit 0: write both files gzip-compressed, bit 1: test split instead of
 * train, bits 2-3: subset), bytes 1-4 the images file's length n (little-endian, clipped to
 * what is there), then n bytes of the images file and the rest as the labels file. */
#include "tests/fuzz/fuzz.h"

#include <zlib.h>
#include "trainer/data/dataset.h"

static void write_gz(const char *name, const uint8_t *data, size_t size)
{
    char path[4096];
    gzFile f = gzopen(fz_path(path, name), "wb1");
    if (!f || (size && gzwrite(f, data, (unsigned)size) != (int)size) || gzclose(f) != Z_OK) {
        fprintf(stderr, "fuzz_idx: cannot write %s\n", path);
        abort();
    }
}

/* name (plain, or name.gz when gz), after removing the other form: the loader prefers a plain
 * file, so a leftover from the previous input would be read instead. */
static void put_file(const char *name, int gz, const uint8_t *data, size_t size)
{
    char plain[4096], packed[4096], gzname[256];
    snprintf(gzname, sizeof gzname, "%s.gz", name);
    unlink(fz_path(plain, name));
    unlink(fz_path(packed, gzname));
    if (gz) write_gz(gzname, data, size);
    else fz_write(name, data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5) return 0;
    int gz = data[0] & 1, train = !(data[0] & 2), subset = (data[0] >> 2) & 3;
    size_t nimg = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16 | (size_t)data[4] << 24;
    data += 5, size -= 5;
    if (nimg > size) nimg = size;
    put_file(train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte", gz, data, nimg);
    put_file(train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte", gz, data + nimg,
             size - nimg);
    tr_dataset *d = NULL;
    deba_err e = {0};
    if (tr_dataset_load(TR_DS_FASHION_MNIST, fz_scratch(), train, subset, &d, &e) == DEBA_OK) {
        /* The promise behind DEBA_OK: n images of c*h*w bytes and n labels below classes. */
        size_t px = (size_t)d->n * d->c * d->h * d->w;
        unsigned sum = 0;
        for (size_t i = 0; i < px; i++) sum += d->images[i];
        for (int i = 0; i < d->n; i++)
            if (d->labels[i] >= d->classes) abort();
        (void)sum;
    }
    tr_dataset_free(d);
    return 0;
}
