/* Choosing a backend by --device name; a build without nvcc answers --device cuda with an error. */
#include "trainer/backend/backend.h"

#include <string.h>

#ifndef DEBA_CUDA
tr_backend *tr_backend_cuda_new(int device, deba_err *e)
{
    (void)device;
    deba_err_set(e, DEBA_E_RUNTIME, "this build has no CUDA backend (rebuild on a machine with nvcc; see README)");
    return NULL;
}
#endif

tr_backend *tr_backend_new(const char *device, deba_err *e)
{
    if (device && !strcmp(device, "cpu")) return tr_backend_cpu_new(e);
    if (device && !strcmp(device, "cuda")) return tr_backend_cuda_new(0, e);
    if (device && !strcmp(device, "auto")) {
        deba_err quiet = {0};
        tr_backend *be = tr_backend_cuda_new(0, &quiet);
        return be ? be : tr_backend_cpu_new(e);
    }
    deba_err_set(e, DEBA_E_INPUT, "--device: unknown device '%s' (expected cpu, cuda or auto)",
                 device ? device : "(null)");
    return NULL;
}

void tr_backend_free(tr_backend *be)
{
    if (be && be->destroy) be->destroy(be);
}
