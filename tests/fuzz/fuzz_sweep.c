/* libFuzzer harness: sweep.csv reader (deba_sweep_read). Input: the file's bytes. */
#include "tests/fuzz/fuzz.h"

#include "deba/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("sweep.csv", data, size);
    deba_sweep_row *rows = NULL;
    size_t n = 0;
    deba_err e = {0};
    deba_sweep_read(path, &rows, &n, &e);
    free(rows);
    return 0;
}
