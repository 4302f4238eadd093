/* Creating the CPU backend: host memory, OpenBLAS for GEMMs, OpenMP for the loops. */
#include "trainer/backend/backend.h"
#include "trainer/backend/cpu/cpu_ops.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

/* "AMD EPYC 7B13, 2 threads, OpenBLAS": the processor as /proc/cpuinfo names it. */
static void describe(char *out, size_t cap)
{
    char model[96] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) != 0) continue;
            const char *v = strchr(line, ':');
            if (!v) break;
            v++;
            while (*v == ' ' || *v == '\t') v++;
            snprintf(model, sizeof model, "%s", v);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
        fclose(f);
    }
    if (!model[0]) {
        struct utsname u;
        snprintf(model, sizeof model, "%s CPU", uname(&u) == 0 ? u.machine : "unknown");
    }
    int threads = omp_get_max_threads();
    snprintf(out, cap, "%s, %d thread%s, OpenBLAS", model, threads, threads == 1 ? "" : "s");
}

static void cpu_destroy(tr_backend *be)
{
    if (be && be->timing_stop) be->timing_stop(be);   /* frees the timing state in be->ctx */
    free(be);
}

tr_backend *tr_backend_cpu_new(deba_err *e)
{
    tr_backend *be = calloc(1, sizeof *be);
    if (!be) {
        deba_err_set(e, DEBA_E_NOMEM, "out of memory creating the CPU backend");
        return NULL;
    }
    be->name = "cpu";
    /* GEMMs are threaded by tr_cpu_sgemm on the OpenMP team (see cpu_gemm.c) */
    openblas_set_num_threads(1);
    describe(be->device_name, sizeof be->device_name);
    be->destroy = cpu_destroy;
    tr_cpu_register_core(be);
    tr_cpu_register_extra(be);
    tr_cpu_register_nd_layout(be);
    tr_cpu_register_nd_elem(be);
    tr_cpu_register_timing(be);
    return be;
}
