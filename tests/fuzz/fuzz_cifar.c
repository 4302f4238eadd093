/* libFuzzer harness: CIFAR-10/100 binary loader (trainer/data/cifar.c through tr_dataset_load).
 * Input: byte 0 flags (bit 0: CIFAR-100, bit 1: train split, bit 2: files inside the archive's
 * own folder, bits 3-4: subset), then the batch file's bytes. The CIFAR-10 train split reads
 * five batch files; each gets the same bytes. */
#include "tests/fuzz/fuzz.h"

#include <sys/stat.h>
#include "trainer/data/dataset.h"

static const char *const NAMES[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                    "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin",
                                    "train.bin", "test.bin"};
static const char *const SUBDIRS[] = {"cifar-10-batches-bin", "cifar-100-binary"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int c100 = data[0] & 1, train = (data[0] >> 1) & 1, nested = (data[0] >> 2) & 1;
    int subset = (data[0] >> 3) & 3;
    data++, size--;
    char path[4096], name[512];
    /* Leftovers from the previous input would be found instead of (or beside) this one. */
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++) {
            snprintf(name, sizeof name, "%s%s%s", s ? SUBDIRS[s - 1] : "", s ? "/" : "", NAMES[i]);
            unlink(fz_path(path, name));
        }
    const char *sub = SUBDIRS[c100];
    if (nested) mkdir(fz_path(path, sub), 0700);
    int first = c100 ? (train ? 6 : 7) : (train ? 0 : 5), count = !c100 && train ? 5 : 1;
    for (int i = first; i < first + count; i++) {
        snprintf(name, sizeof name, "%s%s%s", nested ? sub : "", nested ? "/" : "", NAMES[i]);
        fz_write(name, data, size);
    }
    tr_dataset *d = NULL;
    deba_err e = {0};
    if (tr_dataset_load(c100 ? TR_DS_CIFAR100 : TR_DS_CIFAR10, fz_scratch(), train, subset, &d,
                        &e) == DEBA_OK) {
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
