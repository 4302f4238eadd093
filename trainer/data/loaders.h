/* Private to trainer/data: the per-format loaders behind tr_dataset_load and the small path
 * helpers they share. Not part of the trainer's interface. */
#ifndef TR_DATA_LOADERS_H
#define TR_DATA_LOADERS_H

#include <stddef.h>
#include "trainer/data/dataset.h"

/* Fill d->n, c, h, w, classes, images, labels for d->kind from dir (which exists). On failure
 * nothing is left allocated in d. Every error is DEBA_E_INPUT and names the file. */
deba_status tr_cifar_load(tr_dataset *d, const char *dir, int train, deba_err *e);
deba_status tr_idx_load(tr_dataset *d, const char *dir, int train, deba_err *e);

/* out = a "/" b; a path that does not fit is an input error naming a. */
deba_status tr_path_join(char *out, size_t cap, const char *a, const char *b, deba_err *e);
/* 1 when path names an existing regular file. */
int tr_is_file(const char *path);

#endif
