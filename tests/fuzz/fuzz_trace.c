/* libFuzzer harness: trace.csv reader (deba_trace_read). Input: the file's bytes. */
#include "tests/fuzz/fuzz.h"

#include "deba/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("trace.csv", data, size);
    deba_trace t = {0};
    deba_err e = {0};
    deba_trace_read(path, &t, &e);
    /* Whatever came back must be usable: touch every row so ASan sees the whole array. */
    double sum = 0;
    for (size_t i = 0; i < t.n; i++) sum += t.rows[i].epoch + t.rows[i].samples_per_s;
    (void)sum;
    deba_trace_free(&t);
    return 0;
}
