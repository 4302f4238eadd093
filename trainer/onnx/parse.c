/* ONNX parse pass: a .onnx file → the importer's IR (onnx.h), through the protobuf-c code that
 * protoc-c generates from Debian's onnx.proto at build time. Everything in the file is untrusted:
 * every count, size and name is checked before it is used or allocated for. */
#include "trainer/onnx/onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data is little-endian; this reader copies it as host floats"
#endif

/* Protobuf's own ceiling for one message: a larger .onnx cannot be valid. */
#define ONNX_MAX_FILE ((size_t)INT_MAX)
/* Nesting of messages inside messages (graphs in attributes of nodes of graphs...). protobuf-c
 * unpacks recursively, so a hostile file nesting thousands of levels would overflow the stack
 * before any check of ours ran; real models nest 3-4 levels (If/Loop bodies add 3 each). */
#define ONNX_MAX_NESTING 64

typedef struct {
    const char *path;
    int flags;
    onnx_model *m;
    deba_err *e;
    int *table;          /* open-addressing name → value index, -1 empty */
    size_t table_cap;    /* a power of two */
    int values_cap;
    int dirfd;           /* the model's directory, for external data; -1 until first needed */
} parser;

static char *xstrdup(const char *s)
{
    s = s ? s : "";
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static deba_status fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static deba_status fail(parser *p, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return deba_err_set(p->e, DEBA_E_INPUT, "%s: %s", p->path, msg);
}

static deba_status nomem(parser *p)
{
    return deba_err_set(p->e, DEBA_E_NOMEM, "%s: out of memory while reading the model", p->path);
}

/* ---- dtype facts ---- */

static const char *const DTYPE_NAMES[ONNX_DT_COUNT] = {
    "undefined", "float", "uint8", "int8", "uint16", "int16", "int32", "int64", "string", "bool",
    "float16", "double", "uint32", "uint64", "complex64", "complex128", "bfloat16",
};

const char *onnx_dtype_name(onnx_dtype t)
{
    return (int)t >= 0 && t < ONNX_DT_COUNT ? DTYPE_NAMES[t] : "unknown";
}

int onnx_dtype_is_float(onnx_dtype t)
{
    return t == ONNX_DT_FLOAT || t == ONNX_DT_DOUBLE || t == ONNX_DT_FLOAT16 || t == ONNX_DT_BFLOAT16;
}

/* Bytes per element in raw_data; 0 for string (variable length). */
static size_t dtype_size(onnx_dtype t)
{
    switch (t) {
    case ONNX_DT_UINT8: case ONNX_DT_INT8: case ONNX_DT_BOOL: return 1;
    case ONNX_DT_UINT16: case ONNX_DT_INT16: case ONNX_DT_FLOAT16: case ONNX_DT_BFLOAT16: return 2;
    case ONNX_DT_FLOAT: case ONNX_DT_INT32: case ONNX_DT_UINT32: return 4;
    case ONNX_DT_INT64: case ONNX_DT_UINT64: case ONNX_DT_DOUBLE: case ONNX_DT_COMPLEX64: return 8;
    case ONNX_DT_COMPLEX128: return 16;
    default: return 0;
    }
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | man << 13;          /* inf, nan */
    else if (exp) bits = sign | (exp + 112) << 23 | man << 13;        /* normal: rebias 15 → 127 */
    else if (!man) bits = sign;                                       /* ±0 */
    else {                                                            /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- the name table ---- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int find_value(const parser *p, const char *name)
{
    for (size_t k = hash_name(name) & (p->table_cap - 1);; k = (k + 1) & (p->table_cap - 1)) {
        int v = p->table[k];
        if (v < 0) return -1;
        if (strcmp(p->m->values[v].name, name) == 0) return v;
    }
}

/* A new value named name (the caller checked it is not there), or -1 when out of memory. */
static int add_value(parser *p, const char *name)
{
    onnx_model *m = p->m;
    if (m->n_values >= p->values_cap) return -1;   /* capacity was counted from the file */
    onnx_value *v = &m->values[m->n_values];
    memset(v, 0, sizeof *v);
    if (!(v->name = xstrdup(name))) return -1;
    v->kind = ONNX_VAL_UNTYPED;
    v->rank = -1;
    v->producer = -1;
    size_t k = hash_name(name) & (p->table_cap - 1);
    while (p->table[k] >= 0) k = (k + 1) & (p->table_cap - 1);
    p->table[k] = m->n_values;
    return m->n_values++;
}

/* ---- tensors ---- */

static int parse_i64(const char *s, int64_t *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno || x < 0) return -1;
    *v = x;
    return 0;
}

/* External data: the bytes of tensor `what` from the file named by `location` beside the model,
 * at offset for length bytes. The name must be a plain file name in the model's directory: a
 * model file must not make us read /etc/shadow or ../../secrets. */
static deba_status read_external(parser *p, const char *what, const Onnx__TensorProto *t, size_t want,
                                 uint8_t **out)
{
    const char *loc = NULL;
    int64_t off = 0, len = -1;
    for (size_t k = 0; k < t->n_external_data; k++) {
        const char *key = t->external_data[k]->key ? t->external_data[k]->key : "";
        const char *val = t->external_data[k]->value ? t->external_data[k]->value : "";
        if (strcmp(key, "location") == 0) loc = val;
        else if (strcmp(key, "offset") == 0 && parse_i64(val, &off))
            return fail(p, "%s: external data offset '%s' is not a non-negative integer", what, val);
        else if (strcmp(key, "length") == 0 && parse_i64(val, &len))
            return fail(p, "%s: external data length '%s' is not a non-negative integer", what, val);
    }
    if (!loc || !*loc) return fail(p, "%s: external data without a location", what);
    if (strchr(loc, '/') || strcmp(loc, ".") == 0 || strcmp(loc, "..") == 0)
        return fail(p, "%s: external data location '%s' is not a plain file name beside the model "
                       "(no '/', no '..', no absolute path)", what, loc);
    if (p->dirfd < 0) {
        char dir[4096];
        const char *slash = strrchr(p->path, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == p->path) snprintf(dir, sizeof dir, "/");
        else snprintf(dir, sizeof dir, "%.*s", (int)(slash - p->path), p->path);
        p->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (p->dirfd < 0) return fail(p, "%s: cannot open the model's directory %s: %s", what, dir, strerror(errno));
    }
    /* O_NOFOLLOW: a symbolic link beside the model could point anywhere. */
    int fd = openat(p->dirfd, loc, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fail(p, "%s: external data file '%s' beside the model: %s", what, loc,
                    errno == ELOOP ? "is a symbolic link (refused)" : strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(p, "%s: external data '%s' is not a regular file", what, loc);
    }
    int64_t size = st.st_size;
    if (len < 0) len = off <= size ? size - off : 0;
    if (off > size || len > size - off) {
        close(fd);
        return fail(p, "%s: external data offset %lld + length %lld is past the end of '%s' (%lld bytes)", what,
                    (long long)off, (long long)len, loc, (long long)size);
    }
    if ((uint64_t)len != want) {
        close(fd);
        return fail(p, "%s: external data length %lld does not match its shape and type (%zu bytes)", what,
                    (long long)len, want);
    }
    uint8_t *buf = malloc(want ? want : 1);
    if (!buf) {
        close(fd);
        return nomem(p);
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, buf + got, want - got, (off_t)(off + (int64_t)got));
        if (r <= 0) {
            int err = r < 0 ? errno : 0;
            free(buf);
            close(fd);
            return deba_err_set(p->e, DEBA_E_IO, "%s: %s: reading external data '%s': %s", p->path, what, loc,
                                err ? strerror(err) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    return DEBA_OK;
}

static void tensor_free(onnx_tensor *t)
{
    if (!t) return;
    free(t->f);
    free(t->i);
    free(t);
}

/* Converts raw little-endian bytes (numel elements of t->dtype) into t->f or t->i. */
static void convert_raw(onnx_tensor *t, const uint8_t *raw)
{
    for (int64_t k = 0; k < t->numel; k++) {
        const uint8_t *q = raw + (size_t)k * dtype_size(t->dtype);
        union { float f; double d; int8_t i8; uint8_t u8; int16_t i16; uint16_t u16; int32_t i32; uint32_t u32;
                int64_t i64; } u;
        memcpy(&u, q, dtype_size(t->dtype));
        switch (t->dtype) {
        case ONNX_DT_FLOAT: t->f[k] = u.f; break;
        case ONNX_DT_DOUBLE: t->f[k] = (float)u.d; break;
        case ONNX_DT_FLOAT16: t->f[k] = half_to_float(u.u16); break;
        case ONNX_DT_BFLOAT16: t->f[k] = bf16_to_float(u.u16); break;
        case ONNX_DT_INT8: t->i[k] = u.i8; break;
        case ONNX_DT_UINT8: t->i[k] = u.u8; break;
        case ONNX_DT_BOOL: t->i[k] = u.u8 != 0; break;
        case ONNX_DT_INT16: t->i[k] = u.i16; break;
        case ONNX_DT_UINT16: t->i[k] = u.u16; break;
        case ONNX_DT_INT32: t->i[k] = u.i32; break;
        case ONNX_DT_UINT32: t->i[k] = u.u32; break;
        case ONNX_DT_INT64: case ONNX_DT_UINT64: t->i[k] = u.i64; break;
        default: break;
        }
    }
}

/* The typed repeated field that carries dtype's values, and how many it holds. */
static size_t typed_count(const Onnx__TensorProto *pt, onnx_dtype dt)
{
    switch (dt) {
    case ONNX_DT_FLOAT: case ONNX_DT_COMPLEX64: return pt->n_float_data;
    case ONNX_DT_INT32: case ONNX_DT_INT16: case ONNX_DT_INT8: case ONNX_DT_UINT16: case ONNX_DT_UINT8:
    case ONNX_DT_BOOL: case ONNX_DT_FLOAT16: case ONNX_DT_BFLOAT16: return pt->n_int32_data;
    case ONNX_DT_INT64: return pt->n_int64_data;
    case ONNX_DT_STRING: return pt->n_string_data;
    case ONNX_DT_DOUBLE: case ONNX_DT_COMPLEX128: return pt->n_double_data;
    case ONNX_DT_UINT32: case ONNX_DT_UINT64: return pt->n_uint64_data;
    default: return 0;
    }
}

/* pt → a new onnx_tensor; what names it in messages ("initializer 'w'", "node 'c' (Constant):
 * attribute 'value'"). Sizes are checked against the bytes actually present before allocating. */
static deba_status convert_tensor(parser *p, const char *what, const Onnx__TensorProto *pt, onnx_tensor **out)
{
    *out = NULL;
    if (!pt->has_data_type || pt->data_type <= ONNX_DT_UNDEFINED || pt->data_type >= ONNX_DT_COUNT)
        return fail(p, "%s: data type %d is not supported", what, pt->has_data_type ? (int)pt->data_type : 0);
    onnx_dtype dt = (onnx_dtype)pt->data_type;
    if (pt->segment) return fail(p, "%s: segmented tensors are not supported", what);
    if (pt->n_dims > ONNX_MAX_DIMS)
        return fail(p, "%s: rank %zu is more than %d", what, pt->n_dims, ONNX_MAX_DIMS);
    int64_t numel = 1;
    for (size_t k = 0; k < pt->n_dims; k++) {
        if (pt->dims[k] < 0) return fail(p, "%s: dimension %zu is negative (%lld)", what, k, (long long)pt->dims[k]);
        if (pt->dims[k] && numel > INT64_MAX / 16 / pt->dims[k])
            return fail(p, "%s: the product of its dimensions overflows", what);
        numel *= pt->dims[k];
    }
    size_t esz = dtype_size(dt);
    int complex = dt == ONNX_DT_COMPLEX64 || dt == ONNX_DT_COMPLEX128;
    uint8_t *ext = NULL;
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    int external = pt->has_data_location && pt->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (external) {
        if (dt == ONNX_DT_STRING) return fail(p, "%s: string tensors cannot have external data", what);
        if ((uint64_t)numel > SIZE_MAX / esz) return fail(p, "%s: too large", what);
        deba_status st = read_external(p, what, pt, (size_t)numel * esz, &ext);
        if (st) return st;
        raw = ext, raw_len = (size_t)numel * esz;
    } else if (pt->has_raw_data) {
        if (dt == ONNX_DT_STRING) return fail(p, "%s: string tensors cannot use raw_data", what);
        raw = pt->raw_data.data, raw_len = pt->raw_data.len;
        if ((uint64_t)numel > SIZE_MAX / esz || raw_len != (size_t)numel * esz)
            return fail(p, "%s: raw_data has %zu bytes, its shape and type need %lld x %zu", what, raw_len,
                        (long long)numel, esz);
    } else {
        size_t have = typed_count(pt, dt), need = (size_t)numel * (complex ? 2 : 1);
        if ((uint64_t)numel > SIZE_MAX / 2 || have != need)
            return fail(p, "%s: has %zu values, its shape needs %zu", what, have, need);
    }
    onnx_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        free(ext);
        return nomem(p);
    }
    t->dtype = dt;
    t->rank = (int)pt->n_dims;
    for (int k = 0; k < t->rank; k++) t->dims[k] = pt->dims[k];
    t->numel = numel;
    t->external = external;
    size_t n = numel ? (size_t)numel : 1;
    if (onnx_dtype_is_float(dt)) t->f = malloc(n * sizeof *t->f);
    else if (!complex && dt != ONNX_DT_STRING) t->i = malloc(n * sizeof *t->i);
    if ((onnx_dtype_is_float(dt) && !t->f) || (!complex && dt != ONNX_DT_STRING && !onnx_dtype_is_float(dt) && !t->i)) {
        free(ext);
        tensor_free(t);
        return nomem(p);
    }
    if (raw) {
        if (!complex) convert_raw(t, raw);
    } else {
        for (int64_t k = 0; k < numel; k++) {
            switch (dt) {
            case ONNX_DT_FLOAT: t->f[k] = pt->float_data[k]; break;
            case ONNX_DT_DOUBLE: t->f[k] = (float)pt->double_data[k]; break;
            /* float16 and bfloat16 travel as their 16 bits in int32_data */
            case ONNX_DT_FLOAT16: t->f[k] = half_to_float((uint16_t)pt->int32_data[k]); break;
            case ONNX_DT_BFLOAT16: t->f[k] = bf16_to_float((uint16_t)pt->int32_data[k]); break;
            case ONNX_DT_BOOL: t->i[k] = pt->int32_data[k] != 0; break;
            case ONNX_DT_INT32: case ONNX_DT_INT16: case ONNX_DT_INT8: case ONNX_DT_UINT16: case ONNX_DT_UINT8:
                t->i[k] = pt->int32_data[k];
                break;
            case ONNX_DT_INT64: t->i[k] = pt->int64_data[k]; break;
            case ONNX_DT_UINT32: case ONNX_DT_UINT64: t->i[k] = (int64_t)pt->uint64_data[k]; break;
            default: break;   /* string, complex: shape only */
            }
        }
    }
    free(ext);
    *out = t;
    return DEBA_OK;
}

/* ---- value types ---- */

static deba_status apply_type(parser *p, int v, const Onnx__TypeProto *tp)
{
    onnx_value *val = &p->m->values[v];
    if (!tp) return DEBA_OK;
    if (tp->value_case == ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE) { val->kind = ONNX_VAL_SEQUENCE; return DEBA_OK; }
    if (tp->value_case == ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE) { val->kind = ONNX_VAL_OPTIONAL; return DEBA_OK; }
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) {
        val->kind = tp->value_case == ONNX__TYPE_PROTO__VALUE__NOT_SET ? ONNX_VAL_UNTYPED : ONNX_VAL_OTHER;
        return DEBA_OK;
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    val->kind = ONNX_VAL_TENSOR;
    if (tt->has_elem_type) {
        if (tt->elem_type < 0 || tt->elem_type >= ONNX_DT_COUNT)
            return fail(p, "value '%s': element type %d is not supported", val->name, (int)tt->elem_type);
        val->dtype = (onnx_dtype)tt->elem_type;
    }
    if (!tt->shape) return DEBA_OK;
    if (tt->shape->n_dim > ONNX_MAX_DIMS)
        return fail(p, "value '%s': rank %zu is more than %d", val->name, tt->shape->n_dim, ONNX_MAX_DIMS);
    for (int k = 0; k < val->rank; k++) free(val->sym[k]), val->sym[k] = NULL;
    val->rank = (int)tt->shape->n_dim;
    for (int k = 0; k < val->rank; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        val->dims[k] = -1;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0)
                return fail(p, "value '%s': dimension %d is negative (%lld)", val->name, k, (long long)d->dim_value);
            val->dims[k] = d->dim_value;
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param) {
            if (!(val->sym[k] = xstrdup(d->dim_param))) return nomem(p);
        }
    }
    return DEBA_OK;
}

/* ---- nodes ---- */

static deba_status fail_node(parser *p, int k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static deba_status fail_node(parser *p, int k, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const onnx_node *n = &p->m->nodes[k];
    return fail(p, "node '%s' (%s): %s", n->name, n->op, msg);
}

static char *copy_bytes(const ProtobufCBinaryData *b)
{
    char *s = malloc(b->len + 1);
    if (!s) return NULL;
    if (b->len) memcpy(s, b->data, b->len);
    s[b->len] = 0;
    return s;
}

static deba_status convert_attr(parser *p, int k, const Onnx__AttributeProto *pa, onnx_attr *a)
{
    if (!(a->name = xstrdup(pa->name))) return nomem(p);
    if (!*a->name) return fail_node(p, k, "an attribute has no name");
    if (!pa->has_type || pa->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED)
        return fail_node(p, k, "attribute '%s' has no type", a->name);
    a->onnx_type = (int)pa->type;
    switch (pa->type) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: a->type = ONNX_ATTR_FLOAT, a->f = pa->f; break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: a->type = ONNX_ATTR_INT, a->i = pa->i; break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
        a->type = ONNX_ATTR_STRING;
        if (!(a->s = copy_bytes(&pa->s))) return nomem(p);
        a->s_len = pa->s.len;
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
        a->type = ONNX_ATTR_TENSOR;
        if (!pa->t) return fail_node(p, k, "attribute '%s' is a tensor attribute without a tensor", a->name);
        char what[600];
        snprintf(what, sizeof what, "node '%s' (%s): attribute '%s'", p->m->nodes[k].name, p->m->nodes[k].op, a->name);
        return convert_tensor(p, what, pa->t, &a->t);
    }
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        a->type = ONNX_ATTR_FLOATS;
        a->n = (int64_t)pa->n_floats;
        if (!(a->floats = malloc((pa->n_floats ? pa->n_floats : 1) * sizeof *a->floats))) return nomem(p);
        if (pa->n_floats) memcpy(a->floats, pa->floats, pa->n_floats * sizeof *a->floats);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        a->type = ONNX_ATTR_INTS;
        a->n = (int64_t)pa->n_ints;
        if (!(a->ints = malloc((pa->n_ints ? pa->n_ints : 1) * sizeof *a->ints))) return nomem(p);
        if (pa->n_ints) memcpy(a->ints, pa->ints, pa->n_ints * sizeof *a->ints);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS:
        a->type = ONNX_ATTR_STRINGS;
        if (!(a->strs = calloc(pa->n_strings ? pa->n_strings : 1, sizeof *a->strs))) return nomem(p);
        a->n = (int64_t)pa->n_strings;
        for (size_t j = 0; j < pa->n_strings; j++)
            if (!(a->strs[j] = copy_bytes(&pa->strings[j]))) return nomem(p);
        break;
    default: a->type = ONNX_ATTR_OTHER; break;   /* graphs, sparse tensors, type protos */
    }
    return DEBA_OK;
}

static deba_status convert_node(parser *p, int k, const Onnx__NodeProto *pn)
{
    onnx_node *n = &p->m->nodes[k];
    n->op = xstrdup(pn->op_type);
    /* "ai.onnx" is the default domain's long name */
    n->domain = xstrdup(pn->domain && strcmp(pn->domain, "ai.onnx") ? pn->domain : "");
    if (pn->name && *pn->name) n->name = xstrdup(pn->name);
    else if ((n->name = malloc(24))) snprintf(n->name, 24, "#%d", k);
    if (!n->op || !n->domain || !n->name) return nomem(p);
    if (!*n->op) return fail_node(p, k, "node without an op type");
    if (pn->n_input > INT_MAX || pn->n_output > INT_MAX || pn->n_attribute > INT_MAX)
        return fail_node(p, k, "too many inputs, outputs or attributes");
    n->in = malloc((pn->n_input ? pn->n_input : 1) * sizeof *n->in);
    n->out = malloc((pn->n_output ? pn->n_output : 1) * sizeof *n->out);
    n->attr = calloc(pn->n_attribute ? pn->n_attribute : 1, sizeof *n->attr);
    if (!n->in || !n->out || !n->attr) return nomem(p);
    for (size_t j = 0; j < pn->n_attribute; j++) {
        n->n_attr = (int)j + 1;
        deba_status st = convert_attr(p, k, pn->attribute[j], &n->attr[j]);
        if (st) return st;
        for (size_t i = 0; i < j; i++)
            if (strcmp(n->attr[i].name, n->attr[j].name) == 0)
                return fail_node(p, k, "attribute '%s' is given twice", n->attr[j].name);
    }
    for (size_t j = 0; j < pn->n_input; j++) {
        const char *name = pn->input[j] ? pn->input[j] : "";
        n->in[j] = -1;
        n->n_in = (int)j + 1;
        if (!*name) continue;   /* an omitted optional input */
        int v = find_value(p, name);
        /* The file's node order must be topological (the ONNX IR requires it): every pass
         * after this one walks the nodes once, front to back. */
        if (v < 0 || (p->m->values[v].producer < 0 && !p->m->values[v].is_input && !p->m->values[v].init))
            return fail_node(p, k, "input '%s' is not a graph input, an initializer or the output of an earlier node",
                             name);
        n->in[j] = v;
    }
    for (size_t j = 0; j < pn->n_output; j++) {
        const char *name = pn->output[j] ? pn->output[j] : "";
        n->out[j] = -1;
        n->n_out = (int)j + 1;
        if (!*name) continue;
        int v = find_value(p, name);
        if (v >= 0) {
            const onnx_value *old = &p->m->values[v];
            if (old->producer >= 0)
                return fail_node(p, k, "output '%s' is also written by node '%s'", name, p->m->nodes[old->producer].name);
            return fail_node(p, k, "output '%s' is also a graph input or initializer", name);
        }
        if ((v = add_value(p, name)) < 0) return nomem(p);
        p->m->values[v].producer = k;
        n->out[j] = v;
    }
    return DEBA_OK;
}

/* ---- the nesting guard ---- */

static int varint(const uint8_t **q, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *q < end; shift += 7) {
        uint8_t b = *(*q)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Walks tags and lengths only (no value is read) to bound how deep message fields nest before
 * protobuf-c recurses into them; 1 when too deep. Malformed bytes return 0: protobuf-c rejects them. */
static int too_deep(const uint8_t *q, const uint8_t *end, const ProtobufCMessageDescriptor *d, int depth)
{
    if (depth > ONNX_MAX_NESTING) return 1;
    while (q < end) {
        uint64_t key, len;
        if (varint(&q, end, &key)) return 0;
        switch (key & 7) {
        case 0: if (varint(&q, end, &len)) return 0; break;
        case 1: if (end - q < 8) return 0; q += 8; break;
        case 5: if (end - q < 4) return 0; q += 4; break;
        case 2: {
            if (varint(&q, end, &len) || len > (uint64_t)(end - q)) return 0;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3)) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && too_deep(q, q + len, f->descriptor, depth + 1)) return 1;
            q += len;
            break;
        }
        default: return 0;
        }
    }
    return 0;
}

/* ---- the model ---- */

static deba_status mark_batch(parser *p)
{
    onnx_model *m = p->m;
    if (m->n_inputs != 1) {
        char names[600] = "";
        size_t used = 0;
        for (int k = 0; k < m->n_inputs && used < sizeof names - 40; k++) {
            if (k == 8) { snprintf(names + used, sizeof names - used, ", ... (%d more)", m->n_inputs - 8); break; }
            used += (size_t)snprintf(names + used, sizeof names - used, "%s'%.60s'", k ? ", " : "",
                                     m->values[m->inputs[k]].name);
        }
        return fail(p, "the graph has %d inputs%s%s; a model takes exactly one (its first dimension is the batch)",
                    m->n_inputs, m->n_inputs ? " " : "", names);
    }
    if (m->n_outputs < 1) return fail(p, "the graph has no outputs");
    m->input = m->inputs[0];
    onnx_value *in = &m->values[m->input];
    if (in->kind != ONNX_VAL_TENSOR || !onnx_dtype_is_float(in->dtype))
        return fail(p, "input '%s': must be a float tensor (got %s)", in->name,
                    in->kind == ONNX_VAL_TENSOR ? onnx_dtype_name(in->dtype) : "a non-tensor type");
    if (in->rank < 1 || in->rank > ONNX_MAX_SAMPLE_RANK + 1)
        return fail(p, "input '%s': rank %d is not supported (a batch dimension and 0 to %d more)", in->name,
                    in->rank, ONNX_MAX_SAMPLE_RANK);
    for (int k = 1; k < in->rank; k++)
        if (in->dims[k] < 0)
            return fail(p, "input '%s': dimension %d is '%s'; only the first (batch) dimension may be symbolic",
                        in->name, k, in->sym[k] ? in->sym[k] : "?");
    in->batched = 1;
    /* Outputs whose first dimension is the input's batch (the same symbol, or the same fixed
     * size): what the exporter's dynamic_axes give them. Intermediate shapes are the fold pass's. */
    for (int k = 0; k < m->n_outputs; k++) {
        onnx_value *o = &m->values[m->outputs[k]];
        if (o == in || o->rank < 1) continue;
        if ((in->sym[0] && o->sym[0] && strcmp(in->sym[0], o->sym[0]) == 0) ||
            (in->dims[0] >= 0 && o->dims[0] == in->dims[0]))
            o->batched = 1;
    }
    return DEBA_OK;
}

static deba_status build(parser *p, const Onnx__ModelProto *mp)
{
    onnx_model *m = p->m;
    m->ir_version = mp->has_ir_version ? mp->ir_version : 0;
    if (!(m->producer = xstrdup(mp->producer_name)) || !(m->producer_version = xstrdup(mp->producer_version)))
        return nomem(p);
    m->opset = -1;
    if (!(m->domains = calloc(mp->n_opset_import + 1, sizeof *m->domains)) ||
        !(m->domain_versions = calloc(mp->n_opset_import + 1, sizeof *m->domain_versions)))
        return nomem(p);
    for (size_t k = 0; k < mp->n_opset_import; k++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[k];
        const char *d = o->domain ? o->domain : "";
        int64_t ver = o->has_version ? o->version : 0;
        if (ver < 0 || ver > INT_MAX) return fail(p, "opset_import '%s': version %lld is not valid", d, (long long)ver);
        if (!*d || strcmp(d, "ai.onnx") == 0) {
            if (m->opset >= 0) return fail(p, "the default domain is imported twice");
            m->opset = (int)ver;
        } else {
            if (!(m->domains[m->n_domains] = xstrdup(d))) return nomem(p);
            m->domain_versions[m->n_domains++] = (int)ver;
        }
    }
    /* A graph of other domains only (ONNX's training-op tests) has none: its nodes are
     * unsupported, which a conformance run reports per node. */
    if (m->opset < 0 && (p->flags & ONNX_PARSE_ANY)) m->opset = 0;
    if (m->opset < 0) return fail(p, "no opset_import for the default ONNX domain (not an ONNX model?)");
    if (!(p->flags & ONNX_PARSE_ANY) && (m->opset < ONNX_OPSET_MIN || m->opset > ONNX_OPSET_MAX))
        return fail(p, "opset %d of the default domain is not supported (%d to %d; re-export with opset_version=%d..%d)",
                    m->opset, ONNX_OPSET_MIN, ONNX_OPSET_MAX, 13, 17);
    const Onnx__GraphProto *g = mp->graph;
    if (!g) return fail(p, "the model has no graph");
    if (g->n_sparse_initializer)
        return fail(p, "sparse initializers are not supported ('%s')",
                    g->sparse_initializer[0]->values && g->sparse_initializer[0]->values->name
                        ? g->sparse_initializer[0]->values->name : "?");
    /* Capacity: every value is an initializer, a graph input or a node output. Each of those
     * took at least a byte of the file, so these counts are bounded by its size. */
    size_t cap = g->n_initializer + g->n_input;
    for (size_t k = 0; k < g->n_node; k++) cap += g->node[k]->n_output;
    if (cap > INT_MAX / 4 || g->n_node > INT_MAX) return fail(p, "the graph is too large");
    p->values_cap = (int)cap;
    p->table_cap = 16;
    while (p->table_cap < 2 * cap) p->table_cap <<= 1;
    m->values = calloc(cap ? cap : 1, sizeof *m->values);
    m->nodes = calloc(g->n_node ? g->n_node : 1, sizeof *m->nodes);
    m->inputs = calloc(g->n_input ? g->n_input : 1, sizeof *m->inputs);
    m->outputs = calloc(g->n_output ? g->n_output : 1, sizeof *m->outputs);
    p->table = malloc(p->table_cap * sizeof *p->table);
    if (!m->values || !m->nodes || !m->inputs || !m->outputs || !p->table) return nomem(p);
    memset(p->table, 0xff, p->table_cap * sizeof *p->table);

    for (size_t k = 0; k < g->n_initializer; k++) {
        const Onnx__TensorProto *t = g->initializer[k];
        const char *name = t->name ? t->name : "";
        if (!*name) return fail(p, "initializer %zu has no name", k);
        if (find_value(p, name) >= 0) return fail(p, "initializer '%s' is given twice", name);
        int v = add_value(p, name);
        if (v < 0) return nomem(p);
        char what[600];
        snprintf(what, sizeof what, "initializer '%.500s'", name);
        deba_status st = convert_tensor(p, what, t, &m->values[v].init);
        if (st) return st;
        onnx_value *val = &m->values[v];
        val->kind = ONNX_VAL_TENSOR;
        val->dtype = val->init->dtype;
        val->rank = val->init->rank;
        for (int d = 0; d < val->rank; d++) val->dims[d] = val->init->dims[d];
    }
    /* Before IR version 4 initializers were also listed as inputs: those are not model inputs. */
    for (size_t k = 0; k < g->n_input; k++) {
        const char *name = g->input[k]->name ? g->input[k]->name : "";
        if (!*name) return fail(p, "graph input %zu has no name", k);
        int v = find_value(p, name);
        if (v >= 0 && m->values[v].init) continue;
        if (v >= 0) return fail(p, "graph input '%s' is listed twice", name);
        if ((v = add_value(p, name)) < 0) return nomem(p);
        deba_status st = apply_type(p, v, g->input[k]->type);
        if (st) return st;
        m->values[v].is_input = 1;
        m->inputs[m->n_inputs++] = v;
    }
    for (size_t k = 0; k < g->n_node; k++) {
        m->n_nodes = (int)k + 1;
        deba_status st = convert_node(p, (int)k, g->node[k]);
        if (st) return st;
    }
    for (size_t k = 0; k < g->n_value_info; k++) {
        int v = g->value_info[k]->name ? find_value(p, g->value_info[k]->name) : -1;
        if (v < 0 || m->values[v].init) continue;   /* annotations of nothing, or of data we hold */
        deba_status st = apply_type(p, v, g->value_info[k]->type);
        if (st) return st;
    }
    for (size_t k = 0; k < g->n_output; k++) {
        const char *name = g->output[k]->name ? g->output[k]->name : "";
        int v = find_value(p, name);
        if (v < 0) return fail(p, "graph output '%s' is not written by any node", name);
        if (m->values[v].is_output) return fail(p, "graph output '%s' is listed twice", name);
        if (!m->values[v].init) {
            deba_status st = apply_type(p, v, g->output[k]->type);
            if (st) return st;
        }
        m->values[v].is_output = 1;
        m->outputs[m->n_outputs++] = v;
    }
    m->input = -1;
    return p->flags & ONNX_PARSE_ANY ? DEBA_OK : mark_batch(p);
}

deba_status onnx_parse(const uint8_t *buf, size_t len, const char *path, int flags, onnx_model **out, deba_err *e)
{
    *out = NULL;
    parser p = { .path = path, .flags = flags, .e = e, .dirfd = -1 };
    if (!len) return fail(&p, "empty file, not an ONNX model");
    if (too_deep(buf, buf + len, &onnx__model_proto__descriptor, 0))
        return fail(&p, "messages nest more than %d levels deep (not a model this importer reads)", ONNX_MAX_NESTING);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp) return fail(&p, "not a valid ONNX protobuf (truncated, or not an ONNX file)");
    if (!(p.m = calloc(1, sizeof *p.m)) || !(p.m->path = xstrdup(path))) {
        free(p.m);
        onnx__model_proto__free_unpacked(mp, NULL);
        return nomem(&p);
    }
    deba_status st = build(&p, mp);
    onnx__model_proto__free_unpacked(mp, NULL);
    free(p.table);
    if (p.dirfd >= 0) close(p.dirfd);
    if (st) {
        onnx_model_free(p.m);
        return st;
    }
    *out = p.m;
    return DEBA_OK;
}

/* The whole of a regular file of at most protobuf's 2 GiB limit. */
static deba_status read_file(const char *path, uint8_t **bufp, size_t *lenp, deba_err *e)
{
    *bufp = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return deba_err_set(e, DEBA_E_INPUT, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return deba_err_set(e, DEBA_E_INPUT, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > ONNX_MAX_FILE) {
        close(fd);
        return deba_err_set(e, DEBA_E_INPUT, "%s: %lld bytes is more than protobuf's 2 GiB limit for one model "
                            "(large weights belong in external data)", path, (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory for %zu bytes", path, len);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    *bufp = buf;
    *lenp = got;
    return DEBA_OK;
}

deba_status onnx_load(const char *path, int flags, onnx_model **out, deba_err *e)
{
    *out = NULL;
    uint8_t *buf;
    size_t len;
    deba_status s = read_file(path, &buf, &len, e);
    if (s) return s;
    s = onnx_parse(buf, len, path, flags, out, e);
    free(buf);
    return s;
}

deba_status onnx_tensor_load(const char *path, onnx_tensor **out, deba_err *e)
{
    *out = NULL;
    uint8_t *buf;
    size_t len;
    deba_status s = read_file(path, &buf, &len, e);
    if (s) return s;
    parser p = { .path = path, .e = e, .dirfd = -1 };
    if (!len) {
        free(buf);
        return fail(&p, "empty file, not an ONNX TensorProto");
    }
    if (too_deep(buf, buf + len, &onnx__tensor_proto__descriptor, 0)) {
        free(buf);
        return fail(&p, "messages nest more than %d levels deep", ONNX_MAX_NESTING);
    }
    Onnx__TensorProto *pt = onnx__tensor_proto__unpack(NULL, len, buf);
    free(buf);
    if (!pt) return fail(&p, "not a valid ONNX TensorProto (truncated, or another kind of file)");
    if (pt->has_data_location && pt->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        onnx__tensor_proto__free_unpacked(pt, NULL);
        return fail(&p, "tensor data outside the file is not read here");
    }
    s = convert_tensor(&p, "tensor", pt, out);
    onnx__tensor_proto__free_unpacked(pt, NULL);
    return s;
}

void onnx_tensor_free(onnx_tensor *t) { tensor_free(t); }

static void attr_free(onnx_attr *a)
{
    free(a->name);
    free(a->s);
    free(a->ints);
    free(a->floats);
    if (a->strs)
        for (int64_t k = 0; k < a->n; k++) free(a->strs[k]);
    free(a->strs);
    tensor_free(a->t);
}

void onnx_model_free(onnx_model *m)
{
    if (!m) return;
    for (int k = 0; k < m->n_values; k++) {
        onnx_value *v = &m->values[k];
        free(v->name);
        for (int d = 0; d < ONNX_MAX_DIMS; d++) free(v->sym[d]);
        tensor_free(v->init);
    }
    for (int k = 0; k < m->n_nodes; k++) {
        onnx_node *n = &m->nodes[k];
        free(n->op);
        free(n->domain);
        free(n->name);
        free(n->in);
        free(n->out);
        if (n->attr)
            for (int j = 0; j < n->n_attr; j++) attr_free(&n->attr[j]);
        free(n->attr);
    }
    for (int k = 0; k < m->n_domains; k++) free(m->domains[k]);
    free(m->domains);
    free(m->domain_versions);
    free(m->values);
    free(m->nodes);
    free(m->inputs);
    free(m->outputs);
    free(m->producer);
    free(m->producer_version);
    free(m->path);
    free(m);
}

const onnx_attr *onnx_node_attr(const onnx_node *n, const char *name)
{
    for (int k = 0; k < n->n_attr; k++)
        if (strcmp(n->attr[k].name, name) == 0) return &n->attr[k];
    return NULL;
}
