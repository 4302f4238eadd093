/* Image classification datasets held in memory as uint8 (N, C, H, W), and the batch assembly
 * that turns them into normalised float tensors: crop/flip augmentation, bilinear resize. */
#ifndef TR_DATASET_H
#define TR_DATASET_H

#include <stdint.h>
#include "deba/error.h"
#include "trainer/rng.h"

typedef enum {
    TR_DS_CIFAR10,
    TR_DS_CIFAR100,
    TR_DS_FASHION_MNIST,
    TR_DS_MNIST,
    TR_DS_COUNT
} tr_dataset_kind;

typedef struct {
    tr_dataset_kind kind;
    int n, c, h, w;       /* images are (n, c, h, w) */
    int classes;
    uint8_t *images;      /* (n, c, h, w) */
    uint8_t *labels;      /* (n) in [0, classes) */
    float mean[3], std[3];/* per channel, on [0,1] pixel values; computed from the training set */
} tr_dataset;

/* "cifar10", "cifar100", "fashion-mnist", "mnist" -> kind; -1 when unknown. */
int tr_dataset_parse(const char *name);
const char *tr_dataset_name(tr_dataset_kind k);
/* Default directory: /usr/share/datasets/fashion-mnist for Fashion-MNIST, else NULL. */
const char *tr_dataset_default_dir(tr_dataset_kind k);
int tr_dataset_classes(tr_dataset_kind k);
int tr_dataset_channels(tr_dataset_kind k);
int tr_dataset_image_size(tr_dataset_kind k);   /* 32 for CIFAR, 28 for (Fashion-)MNIST */

/* Loads the train or test split from dir.
 * CIFAR-10: data_batch_1..5.bin / test_batch.bin (also accepts a cifar-10-batches-bin/ subdir);
 * CIFAR-100: train.bin / test.bin (or cifar-100-binary/); coarse label byte skipped, fine used;
 * (Fashion-)MNIST: {train,t10k}-{images-idx3,labels-idx1}-ubyte, plain or .gz.
 * subset > 0 keeps the first `subset` samples; more than the split holds is DEBA_E_INPUT naming
 * --subset (train = 1) or --test-subset and the split's size.
 * Errors are DEBA_E_INPUT naming the file: missing directory or file, wrong magic, truncated
 * file (expected vs actual size), a label out of range, images/labels count mismatch.
 * mean/std are computed over the loaded training images; for the test split they are computed
 * too, but a trainer normalises both splits with the training split's values. */
deba_status tr_dataset_load(tr_dataset_kind kind, const char *dir, int train, int subset,
                            tr_dataset **out, deba_err *e);
void tr_dataset_free(tr_dataset *d);

typedef struct {
    int augment;          /* CIFAR: random crop with 4-pixel zero padding + horizontal flip */
    int out_h, out_w;     /* output size; differs from (h, w) -> bilinear resize after augment */
    const float *mean;    /* normalisation, per channel (3 floats, first c used) */
    const float *std;
} tr_batch_opts;

/* x: (n, c, out_h, out_w) floats, (pixel/255 - mean) / std; y: (n) labels.
 * rng is used only when augment is set. */
void tr_dataset_batch(const tr_dataset *d, const int *idx, int n, const tr_batch_opts *o,
                      tr_rng *rng, float *x, int *y);

#endif
