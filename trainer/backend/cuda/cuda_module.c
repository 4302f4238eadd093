/* The CUDA module's one exported symbol (module.h): checks the host's ABI version and struct
 * layout against what this module was built with, then hands back its constructor. Everything
 * else in libdeba-cuda.so is hidden (-fvisibility=hidden and a version script). */
#include "trainer/backend/module.h"
#include "trainer/backend/cuda/cuda_module.h"

#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <stdio.h>

__attribute__((visibility("default"))) int deba_backend_module_init(int abi_version, const tr_module_host *host,
                                                                    tr_module_api *out);

int deba_backend_module_init(int abi_version, const tr_module_host *host, tr_module_api *out)
{
    static char built_with[96];
    const tr_module_layout mine = TR_MODULE_LAYOUT_INIT;
    if (abi_version != TR_MODULE_ABI || !host || host->abi != TR_MODULE_ABI) return TR_MODULE_ABI;
    const tr_module_layout *h = &host->layout;   /* field by field: padding is not compared */
    if (h->backend != mine.backend || h->graph != mine.graph || h->node != mine.node || h->tensor != mine.tensor ||
        h->param_spec != mine.param_spec || h->err != mine.err || h->op_count != mine.op_count)
        return -1;
    snprintf(built_with, sizeof built_with, "CUDA runtime %d, cuDNN %d", CUDART_VERSION, CUDNN_VERSION);
    out->name = "cuda";
    out->built_with = built_with;
    out->backend_new = tr_cuda_backend_new;
    return 0;
}
