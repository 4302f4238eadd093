/* deba-onnx: what the toolkit sees in a network exported to ONNX (docs/onnx.md): its inputs and
 * outputs, op histogram, trainable parameters, FLOPs and every node the engine does not support. */
#include "trainer/backend/backend.h"
#include "trainer/onnx/lower.h"
#include "trainer/onnx/onnx.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DEBA_VERSION
#define DEBA_VERSION "unknown"
#endif

static const char *PROG = "deba-onnx";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s info FILE.onnx\n"
            "       %s verify [--device DEV] [--atol A] [--rtol R] DIR...\n"
            "       %s --help | --version\n"
            "Describe a network exported to ONNX (opsets %d to %d) as the trainer would import it:\n"
            "  info FILE   the model input (its first dimension is the batch) and outputs with their\n"
            "              shapes, opset and producer, the op histogram, trainable parameters (as\n"
            "              PyTorch counts them), FLOPs at batch 1 (2 per multiply-add of Conv, Gemm\n"
            "              and MatMul) and every node outside the supported-op table, with the reason.\n"
            "  verify DIR  run each DIR in the ONNX backend-test layout (model.onnx and\n"
            "              test_data_set_N/input_K.pb, output_K.pb) in inference mode and compare every\n"
            "              output: |got - expected| <= A + R*|expected| (A = 1e-4, R = 1e-3). One line per\n"
            "              data set with the worst error, then 'verify: N passed, M failed, K unsupported'.\n"
            "              --device cpu (default), cuda or auto.\n"
            "External data (FILE.onnx.data) is read from beside FILE.\n"
            "\n"
            "  -h, --help       show this help and exit\n"
            "  -V, --version    show the version and exit\n"
            "\n"
            "Exit status: 0 success (info: also when nodes are unsupported, they are listed; verify:\n"
            "nothing failed, unsupported is not a failure), 1 runtime failure or a verify mismatch,\n"
            "2 usage or input error (not ONNX, truncated, opset outside %d-%d, not one input,\n"
            "external data missing or outside the model's directory, a data set that is not one).\n",
            PROG, PROG, PROG, ONNX_OPSET_MIN, ONNX_OPSET_MAX, ONNX_OPSET_MIN, ONNX_OPSET_MAX);
}

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "%s: error: %s%s%s\n", PROG, msg, arg ? " " : "", arg ? arg : "");
    fprintf(stderr, "Try '%s --help' for more information.\n", PROG);
    return 2;
}

static void print_shape(const onnx_value *v)
{
    printf("%s %s [", v->name, v->kind == ONNX_VAL_TENSOR ? onnx_dtype_name(v->dtype) : "(not a tensor)");
    if (v->rank < 0) printf("?");
    for (int k = 0; k < v->rank; k++) {
        if (k) printf(", ");
        if (v->sym[k]) printf("%s", v->sym[k]);
        else if (v->dims[k] >= 0) printf("%lld", (long long)v->dims[k]);
        else printf("?");
    }
    printf("]%s\n", v->batched ? "  (first dimension: the batch)" : "");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int info(const char *path)
{
    onnx_model *m;
    deba_err e = { 0 };
    deba_status st = onnx_load(path, ONNX_PARSE_MODEL, &m, &e);
    if (st) {
        fprintf(stderr, "%s: error: %s\n", PROG, e.msg);
        return deba_status_exit_code(st);
    }
    int tensors = 0, unknown = 0;
    int64_t params = onnx_trainable_params(m, &tensors), flops = onnx_flops(m, &unknown);
    const char **ops = malloc((m->n_nodes ? (size_t)m->n_nodes : 1) * sizeof *ops);
    if (params < 0 || flops < 0 || !ops) {
        free(ops);
        onnx_model_free(m);
        fprintf(stderr, "%s: error: %s: out of memory\n", PROG, path);
        return 1;
    }
    printf("file        %s\n", path);
    printf("producer    %s %s\n", *m->producer ? m->producer : "(none)", m->producer_version);
    printf("ir_version  %lld\n", (long long)m->ir_version);
    printf("opset       %d\n", m->opset);
    for (int k = 0; k < m->n_domains; k++) printf("opset       %s %d\n", m->domains[k], m->domain_versions[k]);
    printf("input       ");
    print_shape(&m->values[m->input]);
    for (int k = 0; k < m->n_outputs; k++) {
        printf("output      ");
        print_shape(&m->values[m->outputs[k]]);
    }
    printf("nodes       %d\n", m->n_nodes);
    printf("params      %lld in %d tensors\n", (long long)params, tensors);
    printf("flops       %lld per sample (Conv, Gemm, MatMul; 2 per multiply-add)", (long long)flops);
    if (unknown) printf("; %d such nodes with shapes not known before folding are not counted", unknown);
    printf("\n");
    /* the histogram, by op type in name order */
    for (int k = 0; k < m->n_nodes; k++) ops[k] = m->nodes[k].op;
    qsort(ops, (size_t)m->n_nodes, sizeof *ops, cmp_str);
    printf("ops\n");
    for (int k = 0; k < m->n_nodes;) {
        int j = k;
        while (j < m->n_nodes && !strcmp(ops[j], ops[k])) j++;
        printf("  %-20s %d\n", ops[k], j - k);
        k = j;
    }
    int bad = 0;
    char why[512];
    for (int k = 0; k < m->n_nodes; k++) bad += !onnx_node_supported(m, k, why, sizeof why);
    printf("unsupported %d\n", bad);
    for (int k = 0; k < m->n_nodes; k++)
        if (!onnx_node_supported(m, k, why, sizeof why))
            printf("  node '%s' (%s): %s\n", m->nodes[k].name, m->nodes[k].op, why);
    /* whether the trainer takes it: the lowering deba-train runs */
    onnx_net *net = NULL;
    onnx_lower_opts lo = {ONNX_LOWER_MODEL, ONNX_INIT_ONNX, NULL, NULL, 0};
    deba_err le = {0};
    deba_status ls = onnx_lower(m, &lo, &net, &le);
    if (!ls)
        printf("import      ok: %d engine nodes, %d ONNX nodes on fused layers, %lld params, %d classes\n",
               net->g->n_nodes, net->n_fused, (long long)net->g->n_params, net->g->classes);
    else
        printf("import      refused: %s\n", le.msg);
    onnx_net_free(net);
    free(ops);
    onnx_model_free(m);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: error: writing to standard output failed\n", PROG);
        return 1;
    }
    return 0;
}

/* ---- verify ---- */

typedef struct {
    int passed, failed, unsupported;
    double atol, rtol;
    tr_backend *be;
} vstate;

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The N of every test_data_set_N under dir, ascending; -1 when dir cannot be read. */
static int data_sets(const char *dir, int **out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0, cap = 0, *v = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        int k, used = 0;
        if (sscanf(de->d_name, "test_data_set_%d%n", &k, &used) != 1 || de->d_name[used] || k < 0) continue;
        if (n == cap) {
            int *q = realloc(v, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *v);
            if (!q) break;
            v = q;
        }
        v[n++] = k;
    }
    closedir(d);
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_int);
    *out = v;
    return n;
}

static int same_dims(const onnx_tensor *t, int rank, const int64_t *d)
{
    if (t->rank != rank) return 0;
    for (int k = 0; k < rank; k++)
        if (t->dims[k] != d[k]) return 0;
    return 1;
}

static void dims_str(char *buf, size_t cap, int rank, const int64_t *d)
{
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < rank && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
}

/* Lowers m for one data set whose inputs are ins[]: every input a runtime leaf first; then the
 * integer ones (shapes, axes, pads) as constants; then all but the first (weights, bounds given
 * as inputs), as a model would hold them. */
static deba_status lower_for(const onnx_model *m, onnx_tensor **ins, onnx_net **net, deba_err *e)
{
    char *as_const = calloc((size_t)(m->n_inputs ? m->n_inputs : 1), 1);
    if (!as_const) return deba_err_set(e, DEBA_E_NOMEM, "out of memory");
    onnx_lower_opts lo = {ONNX_LOWER_VERIFY, ONNX_INIT_ONNX, (const onnx_tensor *const *)ins, as_const, 0};
    deba_status st = onnx_lower(m, &lo, net, e);
    for (int level = 1; level <= 2 && st == DEBA_E_UNSUPPORTED; level++) {
        int any = 0;
        /* the first input stays the runtime leaf unless the engine cannot hold it (integers:
         * then the graph folds to constants) */
        for (int k = 0; k < m->n_inputs; k++)
            if (!as_const[k] && ((level == 2 && k > 0) || ins[k]->dtype != ONNX_DT_FLOAT)) as_const[k] = 1, any = 1;
        if (!any) continue;
        deba_err e2 = {0};
        deba_status s2 = onnx_lower(m, &lo, net, &e2);
        if (s2 != DEBA_E_UNSUPPORTED || level == 2) st = s2, *e = e2;   /* keep the first reason otherwise */
    }
    free(as_const);
    return st;
}

/* One data set: 0 passed, 1 mismatch, 3 unsupported; 2 bad data set (message printed). */
static int verify_set(const char *dir, int set, const onnx_model *m, vstate *vs, char *why, size_t cap)
{
    tr_backend *be = vs->be;
    char path[4096];
    onnx_tensor **ins = calloc((size_t)(m->n_inputs ? m->n_inputs : 1), sizeof *ins);
    if (!ins) return 2;
    int rc = 0;
    for (int k = 0; k < m->n_inputs + m->n_outputs && !rc; k++) {
        const onnx_value *val = &m->values[k < m->n_inputs ? m->inputs[k] : m->outputs[k - m->n_inputs]];
        if (val->kind != ONNX_VAL_TENSOR) {   /* sequences, optionals: not a TensorProto on disk */
            snprintf(why, cap, "%s '%s' is not a tensor", k < m->n_inputs ? "input" : "output", val->name);
            rc = 3;
        }
    }
    for (int k = 0; k < m->n_inputs && !rc; k++) {
        snprintf(path, sizeof path, "%s/test_data_set_%d/input_%d.pb", dir, set, k);
        deba_err e = {0};
        if (onnx_tensor_load(path, &ins[k], &e)) {
            fprintf(stderr, "%s: error: %s\n", PROG, e.msg);
            rc = 2;
            break;
        }
        const onnx_value *val = &m->values[m->inputs[k]];
        if (ins[k]->dtype != val->dtype) {   /* bfloat16 inputs stored as their uint16 bits */
            snprintf(why, cap, "%.900s holds %s data for the %s input '%.80s'", path, onnx_dtype_name(ins[k]->dtype),
                     onnx_dtype_name(val->dtype), val->name);
            rc = 3;
        }
    }
    onnx_net *net = NULL;
    if (!rc) {
        deba_err e = {0};
        deba_status st = lower_for(m, ins, &net, &e);
        if (!st) {
            net->g->training = net->training;
            if ((st = tr_graph_alloc(net->g, be, 1, &e)) == DEBA_OK) st = tr_graph_plan(net->g, net->batch, &e);
        }
        if (st) {
            snprintf(why, cap, "%s", e.msg);
            rc = st == DEBA_E_UNSUPPORTED ? 3 : 1;
            if (rc == 1) printf("%s test_data_set_%d: FAILED: %s\n", dir, set, e.msg);
        }
    }
    if (!rc) {
        tr_graph *g = net->g;
        for (int k = 0; k < m->n_inputs; k++)
            if (net->inputs[k] >= 0)
                be->upload(be, g->tensors[net->inputs[k]].data, ins[k]->f, (size_t)ins[k]->numel * sizeof(float));
        tr_graph_forward(g, net->batch);
        be->sync(be);
    }
    for (int k = 0; k < m->n_inputs; k++) onnx_tensor_free(ins[k]);
    free(ins);
    if (rc) {
        onnx_net_free(net);
        return rc;
    }
    double worst = 0;
    char where[400] = "";
    int bad = 0;
    for (int k = 0; k < net->n_outputs && rc != 2; k++) {
        const onnx_out *oo = &net->outputs[k];
        snprintf(path, sizeof path, "%s/test_data_set_%d/output_%d.pb", dir, set, k);
        onnx_tensor *t;
        deba_err e = {0};
        if (onnx_tensor_load(path, &t, &e)) {
            fprintf(stderr, "%s: error: %s\n", PROG, e.msg);
            rc = 2;
            break;
        }
        const char *name = m->values[oo->value].name;
        if (!same_dims(t, oo->rank, oo->dims) || (!t->f && !t->i)) {
            char a[128], b[128];
            dims_str(a, sizeof a, t->rank, t->dims);
            dims_str(b, sizeof b, oo->rank, oo->dims);
            if (!bad) snprintf(where, sizeof where, "output '%.80s' has shape %s, expected %s", name, b, a);
            bad = 1;
            onnx_tensor_free(t);
            continue;
        }
        float *got = NULL;
        if (oo->tensor >= 0) {
            got = malloc((size_t)(oo->numel ? oo->numel : 1) * sizeof(float));
            if (!got) {
                onnx_tensor_free(t);
                fprintf(stderr, "%s: error: out of memory\n", PROG);
                rc = 2;
                break;
            }
            vs->be->download(vs->be, got, net->g->tensors[oo->tensor].data, (size_t)oo->numel * sizeof(float));
        }
        for (int64_t q = 0; q < t->numel; q++) {
            double want = t->f ? (double)t->f[q] : (double)t->i[q];
            double have = got ? (double)got[q] : oo->cf ? (double)oo->cf[q] : (double)oo->ci[q];
            double err = fabs(have - want);
            int ok = isnan(want) ? isnan(have) : isinf(want) ? have == want : err <= vs->atol + vs->rtol * fabs(want);
            if (isnan(err)) err = isnan(want) && isnan(have) ? 0 : INFINITY;
            if (!ok && !bad) {
                bad = 1;
                snprintf(where, sizeof where, "output '%.80s' element %lld: got %.9g, expected %.9g", name, (long long)q,
                         have, want);
            }
            if (err > worst && !(isinf(want) && have == want)) worst = err;
        }
        free(got);
        onnx_tensor_free(t);
    }
    onnx_net_free(net);
    if (rc == 2) return 2;
    if (bad) printf("%s test_data_set_%d: MISMATCH %s (worst |err| %.3g)\n", dir, set, where, worst);
    else printf("%s test_data_set_%d: ok (worst |err| %.3g)\n", dir, set, worst);
    return bad;
}

static int verify_dir(const char *dir, vstate *vs)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/model.onnx", dir) >= (int)sizeof path) {
        fprintf(stderr, "%s: error: %s: path too long\n", PROG, dir);
        return 2;
    }
    onnx_model *m;
    deba_err e = {0};
    deba_status st = onnx_load(path, ONNX_PARSE_ANY, &m, &e);
    if (st) {
        fprintf(stderr, "%s: error: %s\n", PROG, e.msg);
        return 2;
    }
    int *sets, ns = data_sets(dir, &sets);
    if (ns <= 0) {
        fprintf(stderr, "%s: error: %s: no test_data_set_N directories\n", PROG, dir);
        onnx_model_free(m);
        free(sets);
        return 2;
    }
    int failed = 0, unsupported = 0, rc = 0;
    char why[1100] = "";
    for (int k = 0; k < ns && !unsupported; k++) {
        int r = verify_set(dir, sets[k], m, vs, why, sizeof why);
        if (r == 2) {
            rc = 2;
            break;
        }
        failed |= r == 1;
        unsupported = r == 3;
    }
    if (rc != 2) {
        if (unsupported) printf("%s: unsupported: %s\n", dir, why);
        if (unsupported) vs->unsupported++;
        else if (failed) vs->failed++;
        else vs->passed++;
    }
    onnx_model_free(m);
    free(sets);
    return rc;
}

static int parse_tol(const char *arg, const char *opt, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(arg, &end);
    if (errno || end == arg || *end || !(x >= 0) || isinf(x)) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s needs a non-negative number, got", opt);
        return usage_error(msg, arg);
    }
    *v = x;
    return 0;
}

static int verify(int argc, char **argv, int first)
{
    vstate vs = {0, 0, 0, 1e-4, 1e-3, NULL};
    const char *device = "cpu";
    int ndirs = 0, dashdash = 0;
    char **dirs = calloc((size_t)argc, sizeof *dirs);
    if (!dirs) return 1;
    for (int k = first; k < argc; k++) {
        const char *a = argv[k];
        if (!dashdash && !strcmp(a, "--")) { dashdash = 1; continue; }
        if (!dashdash && (!strcmp(a, "-h") || !strcmp(a, "--help"))) { usage(stdout); free(dirs); return 0; }
        if (!dashdash && (!strcmp(a, "--device") || !strcmp(a, "--atol") || !strcmp(a, "--rtol"))) {
            if (k + 1 >= argc) { free(dirs); return usage_error("missing value for", a); }
            const char *v = argv[++k];
            int rc = !strcmp(a, "--device") ? (device = v, 0) : parse_tol(v, a, !strcmp(a, "--atol") ? &vs.atol : &vs.rtol);
            if (rc) { free(dirs); return rc; }
            continue;
        }
        if (!dashdash && a[0] == '-' && a[1]) { free(dirs); return usage_error("bad option", a); }
        dirs[ndirs++] = argv[k];
    }
    if (!ndirs) { free(dirs); return usage_error("verify needs a DIR", NULL); }
    if (strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto")) {
        free(dirs);
        return usage_error("--device must be cpu, cuda or auto, got", device);
    }
    deba_err e = {0};
    vs.be = tr_backend_new(device, &e);
    if (!vs.be) {
        fprintf(stderr, "%s: error: %s\n", PROG, e.msg);
        free(dirs);
        return 1;
    }
    int rc = 0;
    for (int k = 0; k < ndirs && rc != 2; k++) rc = verify_dir(dirs[k], &vs) == 2 ? 2 : rc;
    printf("verify: %d passed, %d failed, %d unsupported (%s)\n", vs.passed, vs.failed, vs.unsupported, vs.be->name);
    tr_backend_free(vs.be);
    free(dirs);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: error: writing to standard output failed\n", PROG);
        return 1;
    }
    return rc ? rc : vs.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' }, { "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
    };
    int c;
    opterr = 0;   /* our own messages, in the tool's error format */
    while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': printf("%s %s\n", PROG, DEBA_VERSION); return 0;
        default: return usage_error("bad option", argv[optind - 1]);
        }
    }
    if (optind >= argc) return usage_error("missing command (info, verify)", NULL);
    const char *cmd = argv[optind++];
    if (!strcmp(cmd, "verify")) return verify(argc, argv, optind);
    if (strcmp(cmd, "info")) return usage_error("unknown command", cmd);
    /* options after the command: only --help; "--" ends them */
    const char *file = NULL;
    int nfiles = 0, dashdash = 0;
    for (int k = optind; k < argc; k++) {
        if (!dashdash && !strcmp(argv[k], "--")) { dashdash = 1; continue; }
        if (!dashdash && (!strcmp(argv[k], "-h") || !strcmp(argv[k], "--help"))) { usage(stdout); return 0; }
        if (!dashdash && argv[k][0] == '-' && argv[k][1]) return usage_error("bad option", argv[k]);
        file = argv[k];
        nfiles++;
    }
    if (nfiles != 1) return usage_error(nfiles ? "info takes one FILE, got more:" : "info needs a FILE", nfiles ? argv[argc - 1] : NULL);
    return info(file);
}
