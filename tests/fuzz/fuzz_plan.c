/* libFuzzer harness: study plan parser (deba_plan_load, profiler/plan.c) and, for plans that
 * parse, the job-script writer (deba_plan_emit), where plan strings end up in shell scripts.
 * Input: the plan file's bytes. */
#include "tests/fuzz/fuzz.h"

#include "profiler/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fz_write("study.ini", data, size);
    deba_err e = {0};
    deba_plan *p = deba_plan_load(path, &e);
    /* A plan can legitimately ask for millions of runs; emitting those is slow, not a bug. */
    if (p && deba_plan_count(p) <= 256) {
        char jobs[4096];
        deba_err e2 = {0};
        deba_plan_emit(p, fz_path(jobs, "jobs.txt"), 1, NULL, &e2);
    }
    deba_plan_free(p);
    return 0;
}
