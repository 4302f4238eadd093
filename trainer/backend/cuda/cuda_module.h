/* What the CUDA module's C files and its .cu files call across the language line: the
 * backend's constructor (cuda_backend.cu) and its CUPTI kernel timing (cuda_timing.c). Private
 * to the module; the tools reach it only through module.h's entry point. */
#ifndef TR_CUDA_MODULE_H
#define TR_CUDA_MODULE_H

#include "deba/error.h"
#include "trainer/graph.h"

/* DEBA_E_RUNTIME "no usable GPU: ..." with the runtime's own message when the driver or the
 * device is missing; DEBA_E_NOMEM when the host or the device is out of memory. */
tr_backend *tr_cuda_backend_new(int device, deba_err *e);
/* Fills the table's timing entries with CUPTI activity collection (kernels, memcpy, memset). */
void tr_cuda_register_timing(tr_backend *be);

#endif
