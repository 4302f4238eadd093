/* libFuzzer harness: thresholds.csv reader (deba_thresholds_read) and the lookup deba-train
 * makes with its result. Input: the file's bytes. */
#include "tests/fuzz/fuzz.h"

#include "deba/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("thresholds.csv", data, size);
    deba_thresholds_row *rows = NULL;
    size_t n = 0;
    deba_err e = {0};
    if (deba_thresholds_read(path, &rows, &n, &e) == DEBA_OK) {
        const deba_thresholds_row *r = NULL;
        deba_err e2 = {0};
        deba_thresholds_find(rows, n, path, "cnn_small", "fashion-mnist", &r, &e2);
        if (n > 0) deba_thresholds_find(rows, n, path, rows[n - 1].arch, rows[n - 1].dataset, &r, &e2);
    }
    free(rows);
    return 0;
}
