/* The training engine: a static graph of layers built once per model, buffers planned once per
 * batch size, forward and backward as two loops over the nodes, and a table of operations per
 * backend (CPU now, CUDA behind the same table). All trainable parameters live in one buffer,
 * all their gradients in another, so SGD and the SPEC §2 statistics are single passes. */
#ifndef TR_GRAPH_H
#define TR_GRAPH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "deba/error.h"
#include "trainer/rng.h"

#define TR_MAX_IN 8       /* inputs of one node (concat takes many: it is chained above this) */
#define TR_MAX_PARAMS 4   /* parameter tensors of one node */

typedef enum {
    TR_OP_VIEW,          /* output shares the input's memory (flatten, reshape) */
    TR_OP_CONV2D,
    TR_OP_BATCHNORM,
    TR_OP_ACT,           /* element-wise activation, kind in attr.act */
    TR_OP_MAXPOOL,
    TR_OP_AVGPOOL,
    TR_OP_ADAPTIVE_AVGPOOL,
    TR_OP_LINEAR,
    TR_OP_ADD,
    /* the other four architectures (issue 4) */
    TR_OP_CONCAT,        /* channel concatenation */
    TR_OP_MUL_CHANNEL,   /* x (N,C,H,W) * s (N,C,1,1): squeeze-and-excitation scale */
    TR_OP_DROPOUT,
    TR_OP_DROP_PATH,     /* stochastic depth: per-sample keep/drop of a residual branch */
    TR_OP_LAYERNORM,
    TR_OP_ATTENTION,     /* multi-head self-attention with in/out projections */
    TR_OP_PATCH_TOKENS,  /* (N,D,h,w) feature map -> (N, 1+h*w, D) tokens with class token + pos */
    TR_OP_SELECT_TOKEN,  /* (N,T,D) -> (N,1,D): token 0 */
    /* general-shape operations of imported graphs (issue 10, trainer/layers_nd.h): inputs may
     * be batchless (one copy for all samples) and broadcast numpy-style */
    TR_OP_BINARY,        /* a ∘ b, kind in attr.binary */
    TR_OP_UNARY,         /* f(x), kind and constants in attr.unary */
    TR_OP_EXPAND,        /* broadcast x to the output shape (a copy; backward sums) */
    TR_OP_REDUCE,        /* mean or sum over a set of axes, kept as size 1 */
    TR_OP_SOFTMAX,       /* along one axis */
    TR_OP_MATMUL,        /* numpy matmul of two rank >= 2 tensors, batch dims broadcast */
    TR_OP_TRANSPOSE,     /* permutation of the per-sample axes */
    TR_OP_SLICE,         /* strided slice of every per-sample axis */
    TR_OP_CONCAT_AXIS,   /* concatenation along any per-sample axis */
    TR_OP_PAD,           /* constant padding of every per-sample axis */
    TR_OP_COUNT
} tr_op;

typedef enum {
    TR_ACT_RELU,
    TR_ACT_RELU6,
    TR_ACT_SIGMOID,
    TR_ACT_SILU,
    TR_ACT_HSIGMOID,
    TR_ACT_HSWISH,
    TR_ACT_GELU,
    TR_ACT_COUNT
} tr_act;

/* Per-sample shape. Feature maps are (c, h, w); token sequences (T, D) are stored as c = T,
 * h = 1, w = D; vectors as (1, 1, n). Element (n, i, j, k) is at ((n*c + i)*h + j)*w + k.
 * Imported (ONNX) graphs also carry the general shape dims[rank] (rank 0..TR_MAX_RANK, row
 * major): (c, h, w) is then its 3-D reading, w the last dimension, h the one before and c the
 * product of the rest (tr_shape_chw), so the (c, h, w) kernels run on it unchanged. */
#define TR_MAX_RANK 6

typedef enum {
    TR_T_ACT,        /* an activation: planned per batch size in the arena */
    TR_T_PARAM,      /* a trainable tensor read as an activation: a slice of g->params/g->grads */
    TR_T_CONST,      /* constant data (g->consts), no gradient */
} tr_tensor_kind;

typedef struct {
    int c, h, w;
    int rank;        /* general shape, same element count as c*h*w */
    int dims[TR_MAX_RANK];
    /* 1: one copy for the whole batch instead of one per sample (parameters, constants and
     * values computed from them alone); ops broadcast it over the samples and sum its gradient
     * over them. Always 1 for PARAM and CONST. */
    int batchless;
    tr_tensor_kind kind;
    int64_t off;     /* PARAM: the pspec index; CONST: float offset in g->consts */
    int view_of;     /* -1, or the tensor whose memory this one shares (TR_OP_VIEW) */
    float *data;     /* (N, c, h, w), backend memory, planned per batch size; (c, h, w) when
                        batchless */
    float *grad;     /* same shape; accumulated with += by the consumers' backward. NULL for the
                        graph input unless g->input_grad is set: backward skips it then; NULL for
                        constants */
} tr_tensor;

/* (c, h, w) of a general shape (rank 0 is a scalar: 1, 1, 1). */
static inline void tr_shape_chw(int rank, const int *dims, int *c, int *h, int *w)
{
    int64_t cc = 1;
    for (int i = 0; i + 2 < rank; i++) cc *= dims[i];
    *c = (int)cc;
    *h = rank >= 2 ? dims[rank - 2] : 1;
    *w = rank >= 1 ? dims[rank - 1] : 1;
}

static inline int64_t tr_tensor_numel(const tr_tensor *t) { return (int64_t)t->c * t->h * t->w; }

/* Conv and pool windows: kernel kh x kw, strides sh, sw, dilations dh, dw, padding pt, pl before
 * and pb, pr after the rows and columns. k, stride, pad repeat kh, sh, pt for readers of the
 * built-in models' square, symmetric, undilated windows. */
typedef struct {
    int cin, cout, k, stride, pad, groups, bias;
    int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
} tr_conv_attr;
typedef struct {
    int k, stride, pad;
    int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
    int ceil_mode, count_include_pad;   /* count_include_pad: avg only */
} tr_pool_attr;
typedef struct { int oh, ow; } tr_adapool_attr;
typedef struct { float eps, momentum; int64_t stat_off; } tr_bn_attr; /* running mean at stat_off,
                                                                          running var at +C */
typedef struct { int in, out, bias; } tr_linear_attr;                /* acts on the last dim w */
typedef struct { float p; } tr_drop_attr;
typedef struct { float eps; } tr_ln_attr;                            /* over the last dim w */
typedef struct { int heads; } tr_attn_attr;

/* general-shape operations; axes count per-sample dimensions (0 = the first after the batch) */
typedef enum { TR_BIN_ADD, TR_BIN_SUB, TR_BIN_MUL, TR_BIN_DIV, TR_BIN_POW, TR_BIN_COUNT } tr_binary_kind;
typedef enum {
    TR_UN_NEG, TR_UN_SQRT, TR_UN_ERF, TR_UN_EXP, TR_UN_LOG, TR_UN_TANH, TR_UN_RECIP,
    TR_UN_POWC,          /* x^a */
    TR_UN_CLIP,          /* min(max(x, a), b) */
    TR_UN_HSIGMOID,      /* max(0, min(1, a*x + b)) (ONNX HardSigmoid's alpha, beta) */
    TR_UN_AFFINE,        /* a*x + b */
    TR_UN_COUNT
} tr_unary_kind;
typedef enum { TR_RED_MEAN, TR_RED_SUM } tr_reduce_kind;
typedef struct { tr_binary_kind kind; } tr_binary_attr;
typedef struct { tr_unary_kind kind; float a, b; } tr_unary_attr;
typedef struct { tr_reduce_kind kind; int axes; } tr_reduce_attr;          /* axes: bit mask */
typedef struct { int axis; } tr_axis_attr;                                 /* softmax, concat */
typedef struct { int perm[TR_MAX_RANK]; } tr_perm_attr;                    /* out axis i = in axis perm[i] */
typedef struct { int start[TR_MAX_RANK], step[TR_MAX_RANK]; } tr_slice_attr; /* out dims from the tensor */
typedef struct { int begin[TR_MAX_RANK]; float value; } tr_pad_attr;       /* end from the out dims */

typedef struct tr_node {
    tr_op op;
    char name[96];               /* torchvision-style, e.g. "layer1.0.conv1" */
    int in[TR_MAX_IN], n_in;     /* input tensor ids */
    /* Bit k: this node's backward is the first of the step to write input k's gradient (the
     * last reader of that memory in forward order) and sets it instead of adding, so the step
     * need not zero it first. Planned only for ops in the backend's grad_set_ops. */
    unsigned grad_set;
    /* Batch norm followed by the ReLU that is its only reader, where the backend fuses them
     * (tr_backend.fuse_bn_relu): on the batch norm, relu_out is the ReLU's output tensor, which
     * its forward writes as relu(bn(x)) and whose gradient and values its backward reads; the
     * ReLU node has fused = 1 and is skipped. 0 / 0 otherwise. Off in the inference plan. */
    int relu_out, fused;
    int out;                     /* output tensor id */
    int param[TR_MAX_PARAMS];    /* indices into g->pspecs, n_params of them */
    int n_params;
    union {
        tr_conv_attr conv;
        tr_pool_attr pool;
        tr_adapool_attr adapool;
        tr_bn_attr bn;
        tr_linear_attr linear;
        tr_drop_attr drop;
        tr_ln_attr ln;
        tr_attn_attr attn;
        tr_binary_attr binary;
        tr_unary_attr unary;
        tr_reduce_attr reduce;
        tr_axis_attr axis;
        tr_perm_attr perm;
        tr_slice_attr slice;
        tr_pad_attr pad;
        tr_act act;
        int token;
    } attr;
    /* What forward saves for backward, planned per batch size: saved_per_sample * N +
     * saved_fixed floats in backend memory (BN mean/rstd, pool argmax, masks, attention
     * probabilities ...). Set by the builder. */
    int64_t saved_per_sample, saved_fixed;
    float *saved;
    /* Scratch shared by all nodes (im2col columns): the largest ws_fixed +
     * min(N, ws_max_samples or N) * ws_per_sample over the nodes. */
    int64_t ws_per_sample, ws_fixed;
    int ws_max_samples;
    double flops;                /* forward FLOPs per sample (multiply-add = 2) */
} tr_node;

typedef enum {
    TR_INIT_ZERO,
    TR_INIT_ONE,
    TR_INIT_CONST,               /* a */
    TR_INIT_UNIFORM,             /* U(-a, a) */
    TR_INIT_NORMAL,              /* N(0, a²) */
    TR_INIT_TRUNC_NORMAL,        /* N(0, a²) truncated to [-2a, 2a] */
    TR_INIT_KAIMING_NORMAL_OUT,  /* N(0, 2/fan_out): torchvision ResNet, MobileNet, EfficientNet */
    TR_INIT_KAIMING_NORMAL_IN,   /* N(0, 2/fan_in): torchvision DenseNet */
    TR_INIT_TORCH_DEFAULT,       /* U(±1/sqrt(fan_in)): nn.Conv2d / nn.Linear weight and bias */
    TR_INIT_XAVIER_UNIFORM,      /* U(±sqrt(6/(fan_in+fan_out))) */
    TR_INIT_DATA,                /* the values in tr_param_spec.data (an imported model's own) */
    TR_INIT_COUNT
} tr_init_kind;

typedef struct {
    tr_init_kind kind;
    float a;
} tr_init;

/* One parameter tensor: a slice of the flat buffers. */
typedef struct {
    char name[112];              /* "layer1.0.conv1.weight" */
    int64_t off, count;          /* floats in g->params / g->grads / g->momentum */
    int64_t fan_in, fan_out;     /* as torch.nn.init._calculate_fan_in_and_fan_out */
    tr_init init;
    float *data;                 /* TR_INIT_DATA: count values, owned by the graph; freed once
                                    tr_graph_alloc has uploaded them */
} tr_param_spec;

typedef struct tr_graph tr_graph;
typedef struct tr_backend tr_backend;

/* An op's forward or backward over the first n samples of the planned batch. Backward adds
 * into input grads (+=), or sets those whose bit is in nd->grad_set, and adds into parameter
 * grads (+=); zeroing is a separate call per step. */
typedef void (*tr_op_fn)(tr_graph *g, tr_node *nd, int n);
/* One row of what a backend's kernel timing recorded: what ran, how often, for how long. */
typedef void (*tr_timing_row_fn)(void *arg, const char *name, uint64_t calls, double total_s);

/* A backend is a table of functions; NULL entries are operations it does not implement, and
 * the dispatcher reports them by name instead of falling back to another backend. */
struct tr_backend {
    const char *name;                /* "cpu", "cuda" */
    char device_name[128];           /* e.g. "2-core x86_64 (OpenBLAS)", "NVIDIA H200" */
    void *ctx;                       /* backend's own state (handles, workspaces) */
    void *(*alloc)(tr_backend *be, size_t bytes);      /* NULL when out of memory */
    void (*free)(tr_backend *be, void *p);
    void (*upload)(tr_backend *be, void *dst, const void *src, size_t bytes);
    void (*download)(tr_backend *be, void *dst, const void *src, size_t bytes);
    void (*zero)(tr_backend *be, void *dst, size_t bytes);
    void (*sync)(tr_backend *be);
    tr_op_fn forward[TR_OP_COUNT];
    tr_op_fn backward[TR_OP_COUNT];
    /* Bit op: that op's backward honours tr_node.grad_set (sets the flagged input gradients
     * entirely). 0: every activation gradient is zeroed before each backward. */
    uint64_t grad_set_ops;
    int fuse_bn_relu;                /* 1: batch norm runs the ReLU after it (tr_node.relu_out) */
    /* Mean softmax cross-entropy over n rows of logits (n, classes); labels in backend memory.
     * Writes dlogits = (softmax − onehot) / n, the loss sum and the number of correct argmaxes
     * (both over the n rows, returned to the host). */
    void (*xent)(tr_backend *be, const float *logits, const int *labels, int n, int classes,
                 float *dlogits, double *loss_sum, int64_t *correct);
    /* PyTorch SGD: d = g + wd*p; m = momentum*m + d; p -= lr*m. One fused pass. */
    void (*sgd)(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr,
                float momentum, float wd);
    /* Σg and Σg² in double over count floats (SPEC §2), returned to the host. */
    void (*grad_moments)(tr_backend *be, const float *g, int64_t count, double *sum, double *sumsq);
    /* Optional (NULL: grad_moments, then sgd): both in one pass that reads the gradient once, the
     * moments taken before the update and bit-identical to grad_moments'. */
    void (*sgd_moments)(tr_backend *be, float *p, const float *g, float *m, int64_t count, float lr,
                        float momentum, float wd, double *sum, double *sumsq);
    /* Kernel timing, recorded by the backend itself (SPEC §7 compute_time_s, §8 kernels.csv):
     * all NULL when it cannot time its work; the tr_backend_timing_* dispatchers in
     * backend/backend.h check. start: DEBA_E_RUNTIME when already on or the timer refuses
     * (CUPTI); only work between epoch_begin and epoch_end counts, and epoch_end syncs and
     * returns its seconds; read calls fn once per row of the run so far and returns the
     * records lost; stop ends recording (a no-op when off). */
    int timing_on_device;            /* 1: device activity (CUPTI), which replaces compute time */
    deba_status (*timing_start)(tr_backend *be, deba_err *e);
    void (*timing_epoch_begin)(tr_backend *be);
    double (*timing_epoch_end)(tr_backend *be);
    uint64_t (*timing_read)(tr_backend *be, tr_timing_row_fn fn, void *arg);
    void (*timing_stop)(tr_backend *be);
    char note[512];                  /* why this backend: --device auto's reason for the CPU */
    void (*destroy)(tr_backend *be);
};

struct tr_graph {
    tr_backend *be;
    tr_tensor *tensors;          /* n_tensors; tensor 0 is the input */
    int n_tensors, cap_tensors;
    tr_node *nodes;              /* in execution order */
    int n_nodes, cap_nodes;
    tr_param_spec *pspecs;
    int n_pspecs, cap_pspecs;
    int64_t n_params;            /* floats in the flat parameter buffer */
    int64_t n_stats;             /* floats of non-trainable state (BN running statistics) */
    float *stats_init;           /* host copy of the initial stats values (n_stats) */
    int64_t n_consts;            /* floats of constant tensors (TR_T_CONST) */
    float *consts_init;          /* their host copy (n_consts) */
    int input, output;           /* tensor ids: (N, c, h, w) images, (N, 1, 1, classes) logits */
    int classes;
    /* Backend memory, valid after tr_graph_alloc / tr_graph_plan. */
    float *params;               /* (n_params) */
    float *grads;                /* (n_params) */
    float *momentum;             /* (n_params) */
    float *stats;                /* (n_stats) */
    float *consts;               /* (n_consts) */
    float *act, *act_grad;       /* activation arenas for planned_n samples */
    float *saved_arena;
    float *ws;                   /* shared scratch */
    int *labels;                 /* (planned_n) */
    int planned_n;
    int training;                /* 1: batch statistics, dropout on; 0: eval */
    int input_grad;              /* 1: the input tensor gets a gradient too (tests) */
    tr_rng rng;                  /* dropout / drop-path draws (checkpointed) */
    int failed;                  /* sticky builder error */
    deba_err err;
    struct tr_infer *infer;      /* the inference plan (tr_graph_plan_infer); NULL until planned */
    /* Tensors whose gradient no op sets (see tr_node.grad_set): what tr_graph_loss zeroes. */
    int *zero_list, n_zero;
    int fusing;                  /* 1: the planned BN+ReLU fusions are on (not in the inference plan) */
};

/* ---- building (host only, no backend memory yet) ---- */
/* A graph whose input tensor is (c, h, w) per sample. */
tr_graph *tr_graph_new(int c, int h, int w);
void tr_graph_free(tr_graph *g);     /* frees backend memory too; NULL is a no-op */
/* Records a builder error once (the first one wins) and returns -1 for the builder to return. */
int tr_graph_fail(tr_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds a node with a fresh output tensor of shape (c, h, w); returns the node (valid until the
 * next add) or NULL after a failure. in/n_in are copied. */
tr_node *tr_graph_add_node(tr_graph *g, tr_op op, const char *name, const int *in, int n_in,
                           int c, int h, int w);
/* Registers a parameter of `count` floats for node nd, named "<node name>.<suffix>". */
int tr_graph_add_param(tr_graph *g, tr_node *nd, const char *suffix, int64_t count,
                       int64_t fan_in, int64_t fan_out, tr_init init);
/* Reserves `count` floats of non-trainable state starting at value v; returns the offset. */
int64_t tr_graph_add_stats(tr_graph *g, int64_t count, float v);
const tr_tensor *tr_graph_tensor(const tr_graph *g, int id);
/* An extra leaf tensor (like the input: no producing node, but it gets a gradient): for ops
 * with several inputs in tests, and for parameters-as-activations. Returns its id. */
int tr_graph_add_leaf(tr_graph *g, int c, int h, int w);

/* ---- general shapes (imported graphs) ---- */
/* A graph whose input has the general per-sample shape dims[rank]. */
tr_graph *tr_graph_new_nd(int rank, const int *dims);
/* As tr_graph_add_node with a general output shape; batchless: the output is one copy for the
 * whole batch (all inputs batchless). */
tr_node *tr_graph_add_node_nd(tr_graph *g, tr_op op, const char *name, const int *in, int n_in,
                              int rank, const int *dims, int batchless);
/* A trainable tensor that ops read like an activation (a class token, a position embedding, a
 * MatMul weight): registers a parameter spec `name` (no node) and returns the tensor id of a
 * batchless TR_T_PARAM tensor. data (count values, copied) is used when init.kind is
 * TR_INIT_DATA. */
int tr_graph_add_param_tensor(tr_graph *g, const char *name, int rank, const int *dims,
                              int64_t fan_in, int64_t fan_out, tr_init init, const float *data);
/* A constant tensor (copied from data); returns its id. */
int tr_graph_add_const_tensor(tr_graph *g, int rank, const int *dims, const float *data);
/* A leaf with a general shape (graph inputs beyond the first, for conformance runs). */
int tr_graph_add_leaf_nd(tr_graph *g, int rank, const int *dims);
/* Elements of a tensor's memory: numel, times n unless batchless. */
static inline int64_t tr_tensor_elems(const tr_tensor *t, int n)
{
    return tr_tensor_numel(t) * (t->batchless ? 1 : n);
}

/* ---- memory and execution ---- */
/* Attaches the backend and allocates parameters, gradients, momentum and statistics; inits
 * parameters from seed (in registration order, on the host, then uploaded). */
deba_status tr_graph_alloc(tr_graph *g, tr_backend *be, uint64_t seed, deba_err *e);
/* (Re)plans activation, saved and scratch buffers for batches of up to n samples. On
 * DEBA_E_NOMEM the previous plan stays valid. Also checks every node's op exists in the
 * backend table (DEBA_E_UNSUPPORTED naming op and backend). DEBA_E_RUNTIME between
 * tr_graph_infer_begin and _end. */
deba_status tr_graph_plan(tr_graph *g, int n, deba_err *e);
void tr_graph_forward(tr_graph *g, int n);
/* Backward from the output's grad (set by tr_graph_loss, or by a test after
 * tr_graph_zero_act_grads). */
void tr_graph_backward(tr_graph *g, int n);
void tr_graph_zero_act_grads(tr_graph *g);          /* every activation gradient */
void tr_graph_zero_grads(tr_graph *g);              /* parameter grads */
/* Uploads images (n, c, h, w) and labels (n) into the input tensor and label buffer. */
void tr_graph_set_batch(tr_graph *g, const float *x, const int *y, int n);
/* Cross-entropy on the logits: zeroes activation grads, fills the logits' grad, returns the
 * loss sum and the correct count over n samples. */
void tr_graph_loss(tr_graph *g, int n, double *loss_sum, int64_t *correct);
/* The same loss and correct count for evaluation: no backward follows, so the activation grads
 * are left alone (zeroing them cost as much as a forward pass of a small model). */
void tr_graph_eval_loss(tr_graph *g, int n, double *loss_sum, int64_t *correct);
void tr_graph_sgd(tr_graph *g, float lr, float momentum, float wd);

/* ---- inference: evaluation without training work ---- */
/* Floats of one plan for n samples. Training: act is one of its two arenas (activations, then
 * their gradients, as large), saved what forwards keep for backward, ws the shared scratch.
 * Inference: act is the one arena of activations placed by liveness, saved the scratch that
 * eval-mode forwards still need (attention's), ws the scratch forwards use. */
typedef struct { int64_t act, saved, ws; } tr_plan_size;
void tr_graph_plan_size(const tr_graph *g, int n, int infer, tr_plan_size *s);
/* Plans the inference buffers for batches of up to n samples beside the training plan (which
 * stays as it is): activations share memory once dead (a tensor lives from its producer to its
 * last consumer, a view keeps its base alive, the input and the logits live throughout), no
 * activation gradients, no saved memory but the scratch an eval forward needs. Where they fit,
 * they borrow the training plan's activation-gradient arena and scratch, which training
 * rewrites before reading. Re-planning the training plan drops the inference plan. On
 * DEBA_E_NOMEM the graph is as before. */
deba_status tr_graph_plan_infer(tr_graph *g, int n, deba_err *e);
/* The inference plan's batch capacity; 0 when there is none. */
int tr_graph_infer_planned(const tr_graph *g);
/* Points every activation tensor and node at the inference plan (every activation's grad NULL)
 * and sets eval mode (training 0, planned_n the plan's n); until tr_graph_infer_end, only
 * tr_graph_set_batch, tr_graph_forward and tr_graph_eval_loss may run. _end puts the training
 * plan and mode back. Both are pointer swaps, no allocation and no copy. */
void tr_graph_infer_begin(tr_graph *g);
void tr_graph_infer_end(tr_graph *g);

/* ---- introspection ---- */
const char *tr_op_name(tr_op op);
const char *tr_act_name(tr_act a);
double tr_graph_flops(const tr_graph *g);          /* forward FLOPs per sample */
/* The layer table: name, op, output shape, params, FLOPs; last line "params <N>". */
void tr_graph_summary(const tr_graph *g, FILE *f);

/* Parameter init on the host (exposed for tests): fills dst[count] per spec from rng. */
void tr_init_fill(float *dst, const tr_param_spec *ps, tr_rng *rng);

#endif
