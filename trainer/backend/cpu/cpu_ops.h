/* The CPU backend's operations, registered into its table by operation family. */
#ifndef TR_CPU_OPS_H
#define TR_CPU_OPS_H

#include "trainer/graph.h"

/* memory, xent, sgd, grad_moments, conv2d, batchnorm, act, pools, linear, add */
void tr_cpu_register_core(tr_backend *be);
/* concat, mul_channel, dropout, drop_path, layernorm, attention, patch_tokens, select_token */
void tr_cpu_register_extra(tr_backend *be);
/* matmul, transpose, slice, concat_axis, pad (cpu_nd_layout.c) */
void tr_cpu_register_nd_layout(tr_backend *be);
/* binary, unary, expand, reduce, softmax of imported graphs (cpu_nd_elem.c) */
void tr_cpu_register_nd_elem(tr_backend *be);
/* Kernel timing: clock_gettime around each op of the table while timing is on (cpu_timing.c);
 * its state lives in be->ctx. Called last, after the ops are registered. */
void tr_cpu_register_timing(tr_backend *be);

#endif
