/* Kernels shared between the CPU files of the extra ops (and the tests' references). */
#ifndef TR_CPU_OPS_EXTRA_H
#define TR_CPU_OPS_EXTRA_H

#include <stdint.h>
#include "trainer/graph.h"

/* out (rows, d); stat (rows, 2): mean and 1/sqrt(var + eps) per row, saved for backward. */
void tr_layernorm_forward(float *out, float *stat, const float *inp, const float *weight,
                          const float *bias, int64_t rows, int d, float eps);
/* Adds into dinp (may be NULL), dweight and dbias. */
void tr_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *stat, int64_t rows,
                           int d);

/* Multi-head self-attention (attention.c). Saved layout per sample, in this order over the
 * whole planned batch: qkv (T, 3D), probabilities (heads, T, T), heads' output (T, D). */
void tr_cpu_attention_forward(tr_graph *g, tr_node *nd, int n);
void tr_cpu_attention_backward(tr_graph *g, tr_node *nd, int n);

#endif
