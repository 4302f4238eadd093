/* The ABI between the tools and a backend loaded as a shared module (libdeba-cuda.so): one
 * registration entry point, a version checked on load, and the table of functions it returns.
 * Shared by the host (registry.c) and the module (cuda/cuda_module.c); nothing else crosses. */
#ifndef TR_BACKEND_MODULE_H
#define TR_BACKEND_MODULE_H

#include <stddef.h>
#include "deba/error.h"
#include "trainer/graph.h"

/* Bump on any change to the structs below or to the meaning of a tr_backend entry. */
#define TR_MODULE_ABI 4   /* 2: tr_backend.sgd_moments; 3: general shapes, TR_OP_BINARY..PAD; 4: grad_set */
#define TR_MODULE_ENTRY "deba_backend_module_init"

/* The module works on the host's graphs and backend struct directly, so both sides must have
 * compiled the same graph.h: sizes a version number alone would not catch when someone adds a
 * field and forgets to bump TR_MODULE_ABI. */
typedef struct {
    size_t backend, graph, node, tensor, param_spec, err;
    int op_count;
} tr_module_layout;

#define TR_MODULE_LAYOUT_INIT                                                                  \
    {sizeof(tr_backend), sizeof(tr_graph), sizeof(tr_node), sizeof(tr_tensor),                 \
     sizeof(tr_param_spec), sizeof(deba_err), TR_OP_COUNT}

/* What the host gives the module. */
typedef struct {
    int abi;                      /* TR_MODULE_ABI of the host */
    tr_module_layout layout;
} tr_module_host;

/* What the module returns. */
typedef struct {
    const char *name;             /* "cuda": the --device it answers */
    const char *built_with;       /* e.g. "CUDA runtime 13000, cuDNN 91000" */
    /* A backend on device `device`, or NULL with DEBA_E_RUNTIME naming why (no usable GPU:
     * the driver's own message) or DEBA_E_NOMEM. */
    tr_backend *(*backend_new)(int device, deba_err *e);
} tr_module_api;

/* The entry point: 0 and *out filled when abi_version and host->layout match what the module
 * was built with; otherwise the module's own TR_MODULE_ABI (> 0) for a version mismatch, or -1
 * for a layout mismatch, and *out untouched. */
typedef int (*tr_module_init_fn)(int abi_version, const tr_module_host *host, tr_module_api *out);

#endif
