/* libFuzzer harness: meta.csv reader (deba_meta_read) and the typed lookups every tool makes
 * on what it returns. Input: the file's bytes. */
#include "tests/fuzz/fuzz.h"

#include "deba/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("meta.csv", data, size);
    deba_meta m = {0};
    deba_err e = {0};
    if (deba_meta_read(path, &m, &e) == DEBA_OK) {
        for (size_t k = 0; k < DEBA_META_NKEYS; k++) {
            double d;
            long l;
            deba_err e2 = {0};
            const char *v = deba_meta_get(&m, DEBA_META_KEYS[k]);
            if (v) (void)strlen(v);
            deba_meta_get_double(&m, path, DEBA_META_KEYS[k], &d, &e2);
            deba_meta_get_int(&m, path, DEBA_META_KEYS[k], &l, &e2);
        }
    }
    deba_meta_free(&m);
    return 0;
}
