/* Builders of the general-shape operations that imported (ONNX) graphs need beyond the fused
 * layers of layers.h. Shapes are per sample (the batch is implicit, first); an input may be
 * batchless (a parameter, a constant, or a value computed from them alone), and then counts
 * once for all samples. The output is batchless only when every input is. Each builder checks
 * shapes, adds one node and returns its output tensor id, or -1 after a failure (the graph keeps
 * the first error, naming the node). */
#ifndef TR_LAYERS_ND_H
#define TR_LAYERS_ND_H

#include "trainer/graph.h"

/* ---- elementwise family (trainer/layers/nd_elem.c) ---- */
/* a ∘ b with numpy broadcasting over the per-sample shapes (aligned at the right; a batchless
 * operand's shape is the whole of it). */
int tr_binary(tr_graph *g, const char *name, tr_binary_kind kind, int a, int b);
/* f(x) elementwise, a and b as the kind documents them. */
int tr_unary(tr_graph *g, const char *name, tr_unary_kind kind, int x, float a, float b);
/* x broadcast (numpy) to the per-sample shape dims[rank]; batchless input, batched output. */
int tr_expand(tr_graph *g, const char *name, int x, int rank, const int *dims);
/* mean or sum over the per-sample axes in the bit mask `axes`; the output keeps them as 1. */
int tr_reduce(tr_graph *g, const char *name, tr_reduce_kind kind, int x, int axes);
int tr_softmax(tr_graph *g, const char *name, int x, int axis);

/* ---- layout family (trainer/layers/nd_layout.c) ---- */
/* numpy matmul: a (..., M, K) · b (..., K, N) -> (..., M, N); both rank >= 2, the leading
 * dims broadcast. Either may be batchless (a weight). */
int tr_matmul(tr_graph *g, const char *name, int a, int b);
/* output axis i is input axis perm[i] (perm has the input's rank entries). */
int tr_transpose(tr_graph *g, const char *name, int x, const int *perm);
/* output dims out_dims[rank of x]: element i of axis k is input start[k] + i*step[k]
 * (step != 0, may be negative; the caller has clamped start and the count as ONNX Slice does). */
int tr_slice(tr_graph *g, const char *name, int x, const int *start, const int *step, const int *out_dims);
/* concatenation of xs[n] (n <= TR_MAX_IN) along `axis`; a batchless input among batched ones
 * (a class token) is repeated for every sample. */
int tr_concat_axis(tr_graph *g, const char *name, const int *xs, int n, int axis);
/* constant padding: begin[k] before and end[k] after axis k (both >= 0), filled with value. */
int tr_pad(tr_graph *g, const char *name, int x, const int *begin, const int *end, float value);

#endif
