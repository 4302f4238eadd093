/* Choosing and creating a backend: cpu, cuda, or auto (cuda when a GPU is usable, else cpu). */
#ifndef TR_BACKEND_H
#define TR_BACKEND_H

#include "deba/error.h"
#include "trainer/graph.h"

tr_backend *tr_backend_cpu_new(deba_err *e);
/* DEBA_E_RUNTIME with a clear message when built without CUDA or when no GPU is usable. */
tr_backend *tr_backend_cuda_new(int device, deba_err *e);
/* "cpu" | "cuda" | "auto"; anything else is DEBA_E_INPUT naming --device. */
tr_backend *tr_backend_new(const char *device, deba_err *e);
void tr_backend_free(tr_backend *be);   /* NULL is a no-op */

#endif
