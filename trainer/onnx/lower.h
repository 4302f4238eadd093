/* Lowering an ONNX model onto the engine: constant folding of shape subgraphs, then one tr_graph
 * node (or a fused engine layer) per remaining ONNX node, learnable initializers in the flat
 * parameter buffer. Used by deba-train/deba-profile (--model) and deba-onnx verify. */
#ifndef DEBA_TRAINER_ONNX_LOWER_H
#define DEBA_TRAINER_ONNX_LOWER_H

#include "trainer/graph.h"
#include "trainer/onnx/onnx.h"

typedef enum {
    ONNX_LOWER_MODEL,    /* a trainable model: one input whose first dimension is the batch */
    ONNX_LOWER_VERIFY,   /* a conformance run: every graph input is a leaf, inference only */
} onnx_lower_mode;

typedef enum {
    ONNX_INIT_ONNX,      /* keep the exported weights */
    ONNX_INIT_SEEDED,    /* re-initialise every learnable tensor from the seed (PyTorch defaults) */
} onnx_init_mode;

typedef struct {
    onnx_lower_mode mode;
    onnx_init_mode init;
    /* VERIFY: the data of one data set per graph input (onnx_model.inputs order), or NULL to
     * take the file's declared shapes; as_const[k] (k > 0) takes input k as a constant (shapes,
     * axes, weights given as inputs), otherwise it is a runtime leaf of the data's shape */
    const onnx_tensor *const *data;
    const char *as_const;
    /* MODEL: the channels of the images that will be fed (0: as the model says). A grey
     * dataset (1) feeds a 3-channel model by replicating the channel; other mismatches are
     * DEBA_E_INPUT naming both shapes. */
    int in_channels;
} onnx_lower_opts;

/* A graph output: a tensor of the graph, or a constant the fold pass computed. */
typedef struct {
    int value;                   /* onnx value index */
    int tensor;                  /* tr tensor id, or -1 when constant */
    int rank;                    /* the output's ONNX rank and dims (batch included, as planned
                                    for `batch` samples) */
    int64_t dims[ONNX_MAX_DIMS];
    int batched;                 /* dims[0] is the batch */
    int64_t numel;
    float *cf;                   /* constant outputs: float data, or */
    int64_t *ci;                 /* integer data */
} onnx_out;

typedef struct {
    tr_graph *g;
    int batch;                   /* VERIFY: the batch the graph's inputs were read with (1 when the
                                    leading axes could not be the batch); MODEL: 0 */
    int n_inputs;
    int *inputs;                 /* tr tensor id of each graph input (onnx_model.inputs order) */
    int n_outputs;
    onnx_out *outputs;
    int n_fused;                 /* ONNX nodes that landed on the engine's fused layers */
    int training;                /* VERIFY: the file's BatchNormalization nodes say training_mode=1:
                                    run with batch statistics (g->training = 1) */
} onnx_net;

/* Lowers m. MODEL mode: the graph's input is the model input, its output the first model
 * output (per-sample logits, g->classes set). Refusals: DEBA_E_UNSUPPORTED (an op, attribute or
 * shape the engine does not run; the message names the node and op type) or DEBA_E_INPUT (an
 * inconsistent model), both "<path>: node 'NAME' (Op): ...". */
deba_status onnx_lower(const onnx_model *m, const onnx_lower_opts *o, onnx_net **out, deba_err *e);
void onnx_net_free(onnx_net *n);

#endif
