/* deba-onnx: what the toolkit sees in a network exported to ONNX (docs/onnx.md): its inputs and
 * outputs, op histogram, trainable parameters, FLOPs and every node the engine does not support. */
#include "trainer/onnx/onnx.h"

#include <getopt.h>
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
            "       %s --help | --version\n"
            "Describe a network exported to ONNX (opsets %d to %d) as the trainer would import it:\n"
            "  info FILE   the model input (its first dimension is the batch) and outputs with their\n"
            "              shapes, opset and producer, the op histogram, trainable parameters (as\n"
            "              PyTorch counts them), FLOPs at batch 1 (2 per multiply-add of Conv, Gemm\n"
            "              and MatMul) and every node outside the supported-op table, with the reason.\n"
            "External data (FILE.onnx.data) is read from beside FILE.\n"
            "\n"
            "  -h, --help       show this help and exit\n"
            "  -V, --version    show the version and exit\n"
            "\n"
            "Exit status: 0 success (also when nodes are unsupported: they are listed), 1 runtime\n"
            "failure, 2 usage or input error (not ONNX, truncated, opset outside %d-%d, not one\n"
            "input, external data missing or outside the model's directory).\n",
            PROG, PROG, ONNX_OPSET_MIN, ONNX_OPSET_MAX, ONNX_OPSET_MIN, ONNX_OPSET_MAX);
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
    free(ops);
    onnx_model_free(m);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: error: writing to standard output failed\n", PROG);
        return 1;
    }
    return 0;
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
    if (optind >= argc) return usage_error("missing command (info)", NULL);
    const char *cmd = argv[optind++];
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
