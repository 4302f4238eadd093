/* libFuzzer harness: profile.csv and profile_summary.csv readers (deba_profile_read,
 * deba_summary_read), both on the same bytes. Input: the file's bytes. */
#include "tests/fuzz/fuzz.h"

#include "deba/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("profile.csv", data, size);
    deba_err e = {0};
    deba_profile_row *p = NULL;
    deba_summary_row *s = NULL;
    size_t np = 0, ns = 0;
    deba_profile_read(path, &p, &np, &e);
    free(p);
    deba_err e2 = {0};
    deba_summary_read(path, &s, &ns, &e2);
    free(s);
    return 0;
}
