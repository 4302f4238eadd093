/* libFuzzer harness: the ONNX parse pass, the supported-op checks, the parameter rule, the
 * shape/FLOPs pass and the fold/lower pass (trainer/onnx/). Input: byte 0 flags (bit 0: ONNX_PARSE_ANY instead of
 * ONNX_PARSE_MODEL), bytes 1-4 the model's length n (little-endian, clipped to what is there),
 * then n bytes written as model.onnx and the rest as w.data beside it (its external data). */
#include "tests/fuzz/fuzz.h"

#include "trainer/onnx/lower.h"
#include "trainer/onnx/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5) return 0;
    int flags = data[0] & 1 ? ONNX_PARSE_ANY : ONNX_PARSE_MODEL;
    size_t n = (size_t)data[1] | (size_t)data[2] << 8 | (size_t)data[3] << 16 | (size_t)data[4] << 24;
    data += 5, size -= 5;
    if (n > size) n = size;
    fz_write("w.data", data + n, size - n);
    const char *path = fz_write("model.onnx", data, n);
    onnx_model *m = NULL;
    deba_err e = { 0 };
    deba_status st = onnx_load(path, flags, &m, &e);
    /* a file's content is input: only DEBA_OK or DEBA_E_INPUT (or no memory) may come back */
    if (st != DEBA_OK && st != DEBA_E_INPUT && st != DEBA_E_NOMEM) abort();
    if (st) return 0;
    /* The promises behind DEBA_OK: node inputs and outputs are values, inputs come earlier. */
    for (int k = 0; k < m->n_nodes; k++) {
        const onnx_node *nd = &m->nodes[k];
        for (int j = 0; j < nd->n_in; j++)
            if (nd->in[j] < -1 || nd->in[j] >= m->n_values ||
                (nd->in[j] >= 0 && m->values[nd->in[j]].producer >= k)) abort();
        for (int j = 0; j < nd->n_out; j++)
            if (nd->out[j] < -1 || nd->out[j] >= m->n_values ||
                (nd->out[j] >= 0 && m->values[nd->out[j]].producer != k)) abort();
        char why[256];
        if (!onnx_node_supported(m, k, why, sizeof why) && !why[0]) abort();
    }
    if (flags == ONNX_PARSE_MODEL && (m->input < 0 || !m->values[m->input].batched)) abort();
    int tensors, unknown;
    if (onnx_trainable_params(m, &tensors) < 0 || onnx_flops(m, &unknown) < 0) abort();
    /* the lowering: a refusal is input or unsupported, with a message; a graph it returns has
     * an output and the parameter count of the rule above */
    onnx_lower_opts lo = {flags == ONNX_PARSE_MODEL ? ONNX_LOWER_MODEL : ONNX_LOWER_VERIFY, ONNX_INIT_ONNX, NULL, NULL, 0};
    onnx_net *net = NULL;
    st = onnx_lower(m, &lo, &net, &e);
    if (st != DEBA_OK && st != DEBA_E_INPUT && st != DEBA_E_UNSUPPORTED && st != DEBA_E_NOMEM) abort();
    if (st && !e.msg[0]) abort();
    if (!st && (!net->g || net->g->output < 0)) abort();
    onnx_net_free(net);
    onnx_model_free(m);
    return 0;
}
