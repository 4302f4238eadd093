/* The ONNX ops the engine supports (docs/onnx.md, "Supported operations"), with the attributes
 * and input ranks each one takes, and the rule for which initializers are trainable parameters.
 * A node outside the table is refused by name: never imported as something it is not. */
#include "trainer/onnx/onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Activations carry the batch and at most ONNX_MAX_SAMPLE_RANK more dimensions. */
#define MAX_RANK (ONNX_MAX_SAMPLE_RANK + 1)

typedef int (*op_check)(const onnx_model *m, const onnx_node *n, char *why, size_t cap);

typedef struct {
    const char *op;
    int min_in, max_in, min_out, max_out;
    const char *attrs;   /* the attributes taken, comma-separated (opsets 11-18) */
    op_check check;      /* attribute values and ranks; NULL when the generic checks suffice */
} op_rule;

static int rank_of(const onnx_model *m, const onnx_node *n, int j)
{
    return j < n->n_in && n->in[j] >= 0 ? m->values[n->in[j]].rank : -1;
}

static int64_t attr_int(const onnx_node *n, const char *name, int64_t dflt)
{
    const onnx_attr *a = onnx_node_attr(n, name);
    return a && a->type == ONNX_ATTR_INT ? a->i : dflt;
}

/* Input j's rank must be in [lo, hi] when the file tells it. */
static int need_rank(const onnx_model *m, const onnx_node *n, int j, int lo, int hi, char *why, size_t cap)
{
    int r = rank_of(m, n, j);
    if (r < 0 || (r >= lo && r <= hi)) return 1;
    if (lo == hi) snprintf(why, cap, "input %d has rank %d (supported: %d)", j, r, lo);
    else snprintf(why, cap, "input %d has rank %d (supported: %d to %d)", j, r, lo, hi);
    return 0;
}

static int need_01(const onnx_node *n, const char *name, char *why, size_t cap)
{
    int64_t v = attr_int(n, name, 0);
    if (v == 0 || v == 1) return 1;
    snprintf(why, cap, "attribute %s=%lld is not supported (0 or 1)", name, (long long)v);
    return 0;
}

/* The window attributes of Conv and the pools: 1-D or 2-D spatial (input rank 3 or 4),
 * rectangular kernels, asymmetric pads, strides and dilations of at least 1. */
static int check_window(const onnx_model *m, const onnx_node *n, int need_kernel, char *why, size_t cap)
{
    if (!need_rank(m, n, 0, 3, 4, why, cap)) return 0;
    const onnx_attr *ap = onnx_node_attr(n, "auto_pad");
    if (ap) {
        if (ap->type != ONNX_ATTR_STRING || (strcmp(ap->s, "NOTSET") && strcmp(ap->s, "SAME_UPPER") &&
                                             strcmp(ap->s, "SAME_LOWER") && strcmp(ap->s, "VALID"))) {
            snprintf(why, cap, "attribute auto_pad='%.40s' is not supported", ap->type == ONNX_ATTR_STRING ? ap->s : "?");
            return 0;
        }
    }
    const onnx_attr *ks = onnx_node_attr(n, "kernel_shape");
    if (need_kernel && !ks) {
        snprintf(why, cap, "attribute kernel_shape is missing");
        return 0;
    }
    int spatial = ks && ks->type == ONNX_ATTR_INTS ? (int)ks->n : rank_of(m, n, 0) - 2;
    if (ks && (ks->type != ONNX_ATTR_INTS || ks->n < 1 || ks->n > 2)) {
        snprintf(why, cap, "attribute kernel_shape of %lld values is not supported (1-D or 2-D windows)",
                 (long long)(ks->type == ONNX_ATTR_INTS ? ks->n : 0));
        return 0;
    }
    if (spatial > 0 && rank_of(m, n, 0) >= 0 && spatial != rank_of(m, n, 0) - 2) {
        snprintf(why, cap, "attribute kernel_shape has %d values for input rank %d", spatial, rank_of(m, n, 0));
        return 0;
    }
    static const char *const lists[] = { "kernel_shape", "strides", "dilations", "pads" };
    for (int k = 0; k < 4; k++) {
        const onnx_attr *a = onnx_node_attr(n, lists[k]);
        if (!a) continue;
        int64_t want = spatial > 0 ? (k == 3 ? 2 * spatial : spatial) : a->n;
        if (a->type != ONNX_ATTR_INTS || a->n != want) {
            snprintf(why, cap, "attribute %s has %lld values (expected %lld)", lists[k],
                     (long long)(a->type == ONNX_ATTR_INTS ? a->n : 0), (long long)want);
            return 0;
        }
        for (int64_t j = 0; j < a->n; j++)
            if (a->ints[j] < (k == 3 ? 0 : 1) || a->ints[j] > 65536) {
                snprintf(why, cap, "attribute %s has the value %lld", lists[k], (long long)a->ints[j]);
                return 0;
            }
    }
    return 1;
}

static int check_conv(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    if (attr_int(n, "group", 1) < 1) {
        snprintf(why, cap, "attribute group=%lld is not supported", (long long)attr_int(n, "group", 1));
        return 0;
    }
    return check_window(m, n, 0, why, cap) && need_rank(m, n, 1, 3, 4, why, cap) && need_rank(m, n, 2, 1, 1, why, cap);
}

static int check_maxpool(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    if (n->n_out > 1 && n->out[1] >= 0) {
        snprintf(why, cap, "output 1 (Indices) is not supported");
        return 0;
    }
    if (attr_int(n, "storage_order", 0) != 0) {
        snprintf(why, cap, "attribute storage_order=%lld is not supported (0)", (long long)attr_int(n, "storage_order", 0));
        return 0;
    }
    return need_01(n, "ceil_mode", why, cap) && check_window(m, n, 1, why, cap);
}

static int check_avgpool(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    return need_01(n, "ceil_mode", why, cap) && need_01(n, "count_include_pad", why, cap) &&
           check_window(m, n, 1, why, cap);
}

static int check_gap(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    return need_rank(m, n, 0, 3, 4, why, cap);
}

static int check_bn(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    if (!need_01(n, "training_mode", why, cap) || !need_rank(m, n, 0, 2, 4, why, cap)) return 0;
    int outs = 0;
    for (int j = 0; j < n->n_out; j++) outs += n->out[j] >= 0;
    /* before opset 14 (BatchNormalization-9) there is no training_mode: the optional outputs
     * (running mean and variance, saved mean and variance) are what mark a training graph */
    if (m->opset < 14) return 1;
    if (n->n_out > 3) {
        snprintf(why, cap, "%d outputs are not supported at opset %d (1 to 3)", n->n_out, m->opset);
        return 0;
    }
    if (outs > 1 && !attr_int(n, "training_mode", 0)) {
        snprintf(why, cap, "running-statistics outputs without training_mode=1 are not supported");
        return 0;
    }
    return 1;
}

static int check_gemm(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    return need_01(n, "transA", why, cap) && need_01(n, "transB", why, cap) && need_rank(m, n, 0, 2, 2, why, cap) &&
           need_rank(m, n, 1, 2, 2, why, cap) && need_rank(m, n, 2, 0, 2, why, cap);
}

static int check_matmul(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    return need_rank(m, n, 0, 1, MAX_RANK, why, cap) && need_rank(m, n, 1, 1, MAX_RANK, why, cap);
}

static int check_layernorm(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    if (attr_int(n, "stash_type", 1) != 1) {
        snprintf(why, cap, "attribute stash_type=%lld is not supported (1: float)", (long long)attr_int(n, "stash_type", 1));
        return 0;
    }
    if ((n->n_out > 1 && n->out[1] >= 0) || (n->n_out > 2 && n->out[2] >= 0)) {
        snprintf(why, cap, "the Mean and InvStdDev outputs are not supported");
        return 0;
    }
    return need_rank(m, n, 0, 1, MAX_RANK, why, cap);
}

/* Before opset 13 Softmax flattened everything from axis on into one dimension; the engine's
 * softmax is over one axis, which is the same only when that axis is the last. */
static int check_softmax(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    int r = rank_of(m, n, 0);
    int64_t axis = attr_int(n, "axis", m->opset >= 13 ? -1 : 1);
    if (m->opset < 13 && !(axis == -1 || (r >= 0 && axis == r - 1))) {
        snprintf(why, cap, "attribute axis=%lld at opset %d (coerced to 2-D) is supported only for the last axis",
                 (long long)axis, m->opset);
        return 0;
    }
    return 1;
}

static int check_reshape(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    (void)m;
    if (attr_int(n, "allowzero", 0) != 0) {
        snprintf(why, cap, "attribute allowzero=%lld is not supported (0)", (long long)attr_int(n, "allowzero", 0));
        return 0;
    }
    return 1;
}

static int check_pad(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    (void)m;
    const onnx_attr *a = onnx_node_attr(n, "mode");
    if (a && (a->type != ONNX_ATTR_STRING || strcmp(a->s, "constant"))) {
        snprintf(why, cap, "attribute mode='%.40s' is not supported (only 'constant')", a->type == ONNX_ATTR_STRING ? a->s : "?");
        return 0;
    }
    return 1;
}

static int check_cast(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    (void)m;
    int64_t to = attr_int(n, "to", 0);
    if (to == ONNX_DT_FLOAT || to == ONNX_DT_DOUBLE || to == ONNX_DT_INT32 || to == ONNX_DT_INT64 || to == ONNX_DT_BOOL)
        return 1;
    snprintf(why, cap, "attribute to=%lld (%s) is not supported (float, double, int32, int64, bool)", (long long)to,
             onnx_dtype_name((onnx_dtype)to));
    return 0;
}

static int check_constant(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    (void)m;
    if (n->n_attr != 1) {
        snprintf(why, cap, "a Constant needs exactly one value attribute (has %d)", n->n_attr);
        return 0;
    }
    const onnx_attr *a = &n->attr[0];
    if (a->type == ONNX_ATTR_TENSOR && (a->t->dtype == ONNX_DT_STRING || (!a->t->f && !a->t->i))) {
        snprintf(why, cap, "a %s constant is not supported", onnx_dtype_name(a->t->dtype));
        return 0;
    }
    return 1;
}

static int check_transpose(const onnx_model *m, const onnx_node *n, char *why, size_t cap)
{
    const onnx_attr *a = onnx_node_attr(n, "perm");
    if (a && (a->type != ONNX_ATTR_INTS || a->n > MAX_RANK)) {
        snprintf(why, cap, "attribute perm of %lld values is not supported (at most %d)", (long long)a->n, MAX_RANK);
        return 0;
    }
    return need_rank(m, n, 0, 1, MAX_RANK, why, cap);
}

/* The table. Ops marked "fold" in docs/onnx.md run at plan time on constants (shape
 * subgraphs); the others become engine operations. */
static const op_rule RULES[] = {
    { "Add", 2, 2, 1, 1, "", NULL },
    { "AveragePool", 1, 1, 1, 1, "auto_pad,ceil_mode,count_include_pad,kernel_shape,pads,strides", check_avgpool },
    { "BatchNormalization", 5, 5, 1, 5, "epsilon,momentum,training_mode", check_bn },
    { "Cast", 1, 1, 1, 1, "to", check_cast },
    { "Clip", 1, 3, 1, 1, "", NULL },
    { "Concat", 1, 64, 1, 1, "axis", NULL },
    { "Constant", 0, 0, 1, 1, "value,value_float,value_floats,value_int,value_ints", check_constant },
    { "ConstantOfShape", 1, 1, 1, 1, "value", NULL },
    { "Conv", 2, 3, 1, 1, "auto_pad,dilations,group,kernel_shape,pads,strides", check_conv },
    { "Div", 2, 2, 1, 1, "", NULL },
    { "Dropout", 1, 3, 1, 2, "seed", NULL },
    { "Equal", 2, 2, 1, 1, "", NULL },
    { "Erf", 1, 1, 1, 1, "", NULL },
    { "Expand", 2, 2, 1, 1, "", NULL },
    { "Flatten", 1, 1, 1, 1, "axis", NULL },
    { "Gather", 2, 2, 1, 1, "axis", NULL },
    { "Gemm", 2, 3, 1, 1, "alpha,beta,transA,transB", check_gemm },
    { "GlobalAveragePool", 1, 1, 1, 1, "", check_gap },
    { "HardSigmoid", 1, 1, 1, 1, "alpha,beta", NULL },
    { "HardSwish", 1, 1, 1, 1, "", NULL },
    { "Identity", 1, 1, 1, 1, "", NULL },
    { "LayerNormalization", 2, 3, 1, 3, "axis,epsilon,stash_type", check_layernorm },
    { "MatMul", 2, 2, 1, 1, "", check_matmul },
    { "MaxPool", 1, 1, 1, 2, "auto_pad,ceil_mode,dilations,kernel_shape,pads,storage_order,strides", check_maxpool },
    { "Mul", 2, 2, 1, 1, "", NULL },
    { "Pad", 2, 4, 1, 1, "mode", check_pad },
    { "Pow", 2, 2, 1, 1, "", NULL },
    { "Range", 3, 3, 1, 1, "", NULL },
    { "ReduceMean", 1, 2, 1, 1, "axes,keepdims,noop_with_empty_axes", NULL },
    { "Relu", 1, 1, 1, 1, "", NULL },
    { "Reshape", 2, 2, 1, 1, "allowzero", check_reshape },
    { "Shape", 1, 1, 1, 1, "end,start", NULL },
    { "Sigmoid", 1, 1, 1, 1, "", NULL },
    { "Slice", 3, 5, 1, 1, "", NULL },
    { "Softmax", 1, 1, 1, 1, "axis", check_softmax },
    { "Split", 1, 2, 1, 64, "axis,num_outputs,split", NULL },
    { "Sqrt", 1, 1, 1, 1, "", NULL },
    { "Sub", 2, 2, 1, 1, "", NULL },
    { "Transpose", 1, 1, 1, 1, "perm", check_transpose },
    { "Unsqueeze", 1, 2, 1, 1, "axes", NULL },
    { "Where", 3, 3, 1, 1, "", NULL },
};
#define N_RULES (int)(sizeof RULES / sizeof RULES[0])

int onnx_supported_op_count(void) { return N_RULES; }

const char *onnx_supported_op(int i) { return i >= 0 && i < N_RULES ? RULES[i].op : NULL; }

/* name is one of the comma-separated names in list. */
static int in_list(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *q = list; *q;) {
        size_t w = strcspn(q, ",");
        if (w == len && strncmp(q, name, len) == 0) return 1;
        q += w + (q[w] == ',');
    }
    return 0;
}

int onnx_node_supported(const onnx_model *m, int k, char *why, size_t cap)
{
    const onnx_node *n = &m->nodes[k];
    if (*n->domain) {
        snprintf(why, cap, "domain '%.60s' is not supported (only the default ONNX domain)", n->domain);
        return 0;
    }
    if (m->opset < ONNX_OPSET_MIN || m->opset > ONNX_OPSET_MAX) {
        snprintf(why, cap, "opset %d is not supported (%d to %d)", m->opset, ONNX_OPSET_MIN, ONNX_OPSET_MAX);
        return 0;
    }
    const op_rule *r = NULL;
    for (int i = 0; i < N_RULES && !r; i++)
        if (strcmp(RULES[i].op, n->op) == 0) r = &RULES[i];
    if (!r) {
        snprintf(why, cap, "op type not supported");
        return 0;
    }
    int last_in = -1, last_out = -1;
    for (int j = 0; j < n->n_in; j++) if (n->in[j] >= 0) last_in = j;
    for (int j = 0; j < n->n_out; j++) if (n->out[j] >= 0) last_out = j;
    if (n->n_in < r->min_in || last_in >= r->max_in) {
        snprintf(why, cap, "%d inputs are not supported (%d to %d)", n->n_in, r->min_in, r->max_in);
        return 0;
    }
    if (last_out + 1 < r->min_out || last_out >= r->max_out) {
        snprintf(why, cap, "%d outputs are not supported (%d to %d)", last_out + 1, r->min_out, r->max_out);
        return 0;
    }
    for (int j = 0; j < n->n_attr; j++)
        if (!in_list(r->attrs, n->attr[j].name)) {
            snprintf(why, cap, "attribute '%.60s' is not supported", n->attr[j].name);
            return 0;
        }
    for (int j = 0; j < n->n_in; j++) {
        if (n->in[j] < 0) continue;
        const onnx_value *v = &m->values[n->in[j]];
        if (v->kind == ONNX_VAL_SEQUENCE || v->kind == ONNX_VAL_OPTIONAL || v->kind == ONNX_VAL_OTHER) {
            snprintf(why, cap, "input %d ('%.60s') is not a tensor", j, v->name);
            return 0;
        }
        if (v->rank > MAX_RANK) {
            snprintf(why, cap, "input %d has rank %d (at most %d: the batch and %d more)", j, v->rank, MAX_RANK,
                     ONNX_MAX_SAMPLE_RANK);
            return 0;
        }
    }
    return r->check ? r->check(m, n, why, cap) : 1;
}

/* ---- trainable parameters ---- */

/* Input slot j of op reads a tensor a layer learns (weights, biases, norm affine terms, the
 * operands of arithmetic such as a class token or position embedding). Running statistics,
 * shapes, indices, exponents, clip bounds and pad values are not. */
static int learned_slot(const char *op, int j)
{
    if (!strcmp(op, "Conv") || !strcmp(op, "ConvTranspose") || !strcmp(op, "BatchNormalization") ||
        !strcmp(op, "LayerNormalization") || !strcmp(op, "InstanceNormalization"))
        return j == 1 || j == 2;
    if (!strcmp(op, "Gemm")) return j <= 2;
    if (!strcmp(op, "MatMul") || !strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div"))
        return j <= 1;
    if (!strcmp(op, "Where")) return j == 1 || j == 2;
    if (!strcmp(op, "PRelu")) return j == 1;
    if (!strcmp(op, "Gather") || !strcmp(op, "Pow")) return j == 0;   /* an embedding table; a base */
    return !strcmp(op, "Concat") || !strcmp(op, "Einsum");
}

/* Input slot j of op passes its data on unchanged in value (layout only): the tensor is
 * learned when the output is. Identity is not here: it makes a parameter of its own (below). */
static int layout_slot(const char *op, int j)
{
    static const char *const ops[] = { "Transpose", "Reshape", "Expand", "Unsqueeze", "Squeeze", "Flatten",
                                       "Cast", "Slice", "Split", "Tile" };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (!strcmp(op, ops[i])) return j == 0;
    return 0;
}

/* The float initializer v stands for, following Identity copies, or -1. PyTorch's exporter
 * writes one initializer for parameters with equal values (a LayerNorm's fresh weights) and an
 * Identity per duplicate: each Identity output is a parameter of its own in PyTorch. */
static int param_source(const onnx_model *m, int v)
{
    for (int hops = 0; v >= 0 && hops < m->n_nodes + 1; hops++) {
        const onnx_value *val = &m->values[v];
        if (val->init) return onnx_dtype_is_float(val->init->dtype) ? v : -1;
        if (val->producer < 0) return -1;
        const onnx_node *n = &m->nodes[val->producer];
        if (strcmp(n->op, "Identity") || *n->domain || n->n_in < 1) return -1;
        v = n->in[0];
    }
    return -1;
}

/* learned[v]: v is read in a learned slot, directly or through layout ops. The node order is
 * topological (parse.c), so one pass from the back sees every consumer before its producer. */
static char *learned_values(const onnx_model *m)
{
    char *learned = calloc(m->n_values ? (size_t)m->n_values : 1, 1);
    if (!learned) return NULL;
    for (int k = m->n_nodes - 1; k >= 0; k--) {
        const onnx_node *n = &m->nodes[k];
        if (*n->domain) continue;
        int out_learned = 0;
        for (int j = 0; j < n->n_out; j++) out_learned |= n->out[j] >= 0 && learned[n->out[j]];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] >= 0 && (learned_slot(n->op, j) || (layout_slot(n->op, j) && out_learned)))
                learned[n->in[j]] = 1;
    }
    return learned;
}

static int trainable(const onnx_model *m, const char *learned, int v)
{
    if (!learned[v]) return 0;
    const onnx_value *val = &m->values[v];
    if (val->init) return onnx_dtype_is_float(val->init->dtype);
    return param_source(m, v) >= 0;   /* an Identity copy of a float initializer */
}

char *onnx_trainable_mask(const onnx_model *m)
{
    char *learned = learned_values(m);
    char *mask = calloc(m->n_values ? (size_t)m->n_values : 1, 1);
    if (learned && mask)
        for (int v = 0; v < m->n_values; v++) mask[v] = (char)trainable(m, learned, v);
    free(learned);
    if (!learned) {
        free(mask);
        return NULL;
    }
    return mask;
}

int onnx_value_trainable(const onnx_model *m, int v)
{
    char *learned = learned_values(m);
    int t = learned && v >= 0 && v < m->n_values && trainable(m, learned, v);
    free(learned);
    return t;
}

int64_t onnx_trainable_params(const onnx_model *m, int *tensors)
{
    char *learned = learned_values(m);
    int64_t total = 0;
    int count = 0;
    for (int v = 0; learned && v < m->n_values; v++)
        if (trainable(m, learned, v)) {
            total += m->values[param_source(m, v)].init->numel;
            count++;
        }
    free(learned);
    if (tensors) *tensors = count;
    return learned ? total : -1;
}
