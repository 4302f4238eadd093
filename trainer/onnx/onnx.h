/* The ONNX importer's own small IR (docs/onnx.md): values, nodes and attributes read from a
 * .onnx file by parse.c, checked against the engine's supported-op table by ops.c. The
 * protobuf-c structs never leave parse.c; later passes (fold, fuse, lower) read only this. */
#ifndef DEBA_TRAINER_ONNX_H
#define DEBA_TRAINER_ONNX_H

#include <stddef.h>
#include <stdint.h>
#include "deba/error.h"

/* Dimensions a value or tensor may have. A model input has its batch plus at most
 * ONNX_MAX_SAMPLE_RANK more; the conformance suite has rank-7 inputs, so storage allows 8. */
#define ONNX_MAX_DIMS 8
#define ONNX_MAX_SAMPLE_RANK 5
/* The default-domain opsets the importer accepts for a model. */
#define ONNX_OPSET_MIN 11
#define ONNX_OPSET_MAX 18

/* TensorProto.DataType, same numbers (the file's own codes). */
typedef enum {
    ONNX_DT_UNDEFINED = 0,
    ONNX_DT_FLOAT = 1, ONNX_DT_UINT8, ONNX_DT_INT8, ONNX_DT_UINT16, ONNX_DT_INT16, ONNX_DT_INT32,
    ONNX_DT_INT64, ONNX_DT_STRING, ONNX_DT_BOOL, ONNX_DT_FLOAT16, ONNX_DT_DOUBLE, ONNX_DT_UINT32,
    ONNX_DT_UINT64, ONNX_DT_COMPLEX64, ONNX_DT_COMPLEX128, ONNX_DT_BFLOAT16,
    ONNX_DT_COUNT
} onnx_dtype;

/* Constant data. Floating types (float, double, float16, bfloat16) are held as float in f;
 * integer types and bool as int64 in i (uint64 keeps its bit pattern); string and complex
 * tensors keep their shape but no data (f and i NULL): no supported op reads them. */
typedef struct {
    onnx_dtype dtype;
    int rank;
    int64_t dims[ONNX_MAX_DIMS];
    int64_t numel;
    float *f;      /* (numel) */
    int64_t *i;    /* (numel) */
    int external;  /* read from a file beside the model */
} onnx_tensor;

typedef enum { ONNX_VAL_TENSOR, ONNX_VAL_SEQUENCE, ONNX_VAL_OPTIONAL, ONNX_VAL_OTHER, ONNX_VAL_UNTYPED } onnx_val_kind;

/* A named value of the graph. The shape is the file's own annotation (graph inputs, outputs,
 * value_info, initializer dims); rank -1 where the file gives none: shapes of intermediate values
 * are the fold pass's job. When `batched`, dims[0] is the model's batch (fixed or symbolic) and
 * dims[1..rank) are the per-sample shape. */
typedef struct {
    char *name;
    onnx_val_kind kind;
    onnx_dtype dtype;               /* element type; UNDEFINED when not given */
    int rank;                       /* -1: unknown */
    int64_t dims[ONNX_MAX_DIMS];    /* -1 where symbolic or unknown */
    char *sym[ONNX_MAX_DIMS];       /* dim_param names (NULL where fixed or unknown) */
    int batched;
    int is_input, is_output;        /* a graph input (not an initializer) / a graph output */
    onnx_tensor *init;              /* the initializer's data, or NULL */
    int producer;                   /* node index that writes it, -1 for inputs and initializers */
} onnx_value;

typedef enum {
    ONNX_ATTR_FLOAT, ONNX_ATTR_INT, ONNX_ATTR_STRING, ONNX_ATTR_TENSOR,
    ONNX_ATTR_FLOATS, ONNX_ATTR_INTS, ONNX_ATTR_STRINGS,
    ONNX_ATTR_OTHER,   /* graph, sparse tensor, type proto and their lists: kept by kind only */
    ONNX_ATTR_COUNT
} onnx_attr_type;

typedef struct {
    char *name;
    onnx_attr_type type;
    int onnx_type;           /* AttributeProto.AttributeType as in the file (names OTHER kinds) */
    int64_t i;
    float f;
    char *s;                 /* NUL-terminated copy; s_len bytes before the NUL */
    size_t s_len;
    int64_t n;               /* entries of ints, floats or strs */
    int64_t *ints;
    float *floats;
    char **strs;
    onnx_tensor *t;
} onnx_attr;

typedef struct {
    char *op;                /* op_type */
    char *domain;            /* "" for the default domain (ai.onnx) */
    char *name;              /* the file's node name, or "#<index>" when it has none */
    int n_in, n_out, n_attr;
    int *in;                 /* value indices; -1 for an omitted optional input */
    int *out;                /* value indices; -1 for an omitted optional output */
    onnx_attr *attr;
} onnx_node;

typedef struct {
    char *path;              /* as given to onnx_load, for messages */
    int64_t ir_version;
    int opset;               /* of the default domain */
    char *producer, *producer_version;
    int n_domains;           /* opset_import entries of other domains */
    char **domains;
    int *domain_versions;
    int n_values, n_nodes;
    onnx_value *values;
    onnx_node *nodes;        /* in the file's (topological) order */
    int n_inputs, n_outputs;
    int *inputs, *outputs;   /* value indices of the graph's non-initializer inputs, outputs */
    int input;               /* ONNX_PARSE_MODEL: the one model input; else -1 */
} onnx_model;

/* ONNX_PARSE_MODEL enforces what a trainable model needs: a default-domain opset in
 * [ONNX_OPSET_MIN, ONNX_OPSET_MAX], exactly one non-initializer float input of rank 1 +
 * at most ONNX_MAX_SAMPLE_RANK (its first dimension is the batch), at least one output.
 * ONNX_PARSE_ANY reads any well-formed graph (the backend-test layout: several inputs, any
 * opset), for conformance runs that sort out support per node afterwards. */
enum { ONNX_PARSE_MODEL = 0, ONNX_PARSE_ANY = 1 };

/* Reads path (external data from files beside it). Every refusal is DEBA_E_INPUT with a
 * message "<path>: ..." naming the node, initializer or value at fault. */
deba_status onnx_load(const char *path, int flags, onnx_model **out, deba_err *e);
/* The same from bytes in memory; path names the file in messages and its directory is where
 * external data is looked for. */
deba_status onnx_parse(const uint8_t *buf, size_t len, const char *path, int flags, onnx_model **out,
                       deba_err *e);
void onnx_model_free(onnx_model *m);
/* One TensorProto file (the backend-test layout's input_K.pb, output_K.pb); DEBA_E_INPUT
 * "<path>: ..." when it is not one. */
deba_status onnx_tensor_load(const char *path, onnx_tensor **out, deba_err *e);
void onnx_tensor_free(onnx_tensor *t);

const onnx_attr *onnx_node_attr(const onnx_node *n, const char *name);
const char *onnx_dtype_name(onnx_dtype t);
int onnx_dtype_is_float(onnx_dtype t);

/* ---- ops.c: what the engine supports, and which initializers are trainable ---- */

/* 1 when node k is in the supported-op table with supported attributes and input ranks (as
 * far as the file's shapes tell; unknown ranks are checked again at fold time); else 0 with
 * the reason ("attribute mode='reflect' is not supported (only 'constant')") in why. */
int onnx_node_supported(const onnx_model *m, int k, char *why, size_t cap);
/* The supported op types, in the table's order. */
const char *onnx_supported_op(int i);
int onnx_supported_op_count(void);

/* The trainable parameters (docs/onnx.md, "Parameters"): sum of element counts of the float
 * tensors a layer learns; tensors (if not NULL) gets how many tensors that is. */
int64_t onnx_trainable_params(const onnx_model *m, int *tensors);
/* 1 when value v counts as a trainable parameter tensor. */
int onnx_value_trainable(const onnx_model *m, int v);
/* The same for every value at once (one walk over the graph): n_values flags, malloc'd; NULL
 * when out of memory. */
char *onnx_trainable_mask(const onnx_model *m);

/* ---- shape.c: shapes at a fixed batch, and FLOPs ---- */

/* Multiply-add FLOPs (2 per multiply-add) of the Conv, Gemm and MatMul nodes for one sample;
 * *unknown gets how many of those nodes have shapes this pass cannot tell (not counted). */
int64_t onnx_flops(const onnx_model *m, int *unknown);

#endif
