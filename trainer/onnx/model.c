/* An ONNX image classifier as a trainer model: the checks that belong to training (the dataset's
 * image and class count against the model's), the lowering, and the file's identity for meta.csv. */
#include "trainer/onnx/model.h"

#include <stdio.h>
#include <string.h>
#include "deba/sha256.h"
#include "trainer/onnx/onnx.h"

static const char *INIT_NAMES[] = {"onnx", "seeded"};

const char *tr_onnx_init_name(onnx_init_mode m) { return (unsigned)m < 2 ? INIT_NAMES[m] : "?"; }

int tr_onnx_init_parse(const char *s)
{
    for (int i = 0; i < 2; i++)
        if (!strcmp(s, INIT_NAMES[i])) return i;
    return -1;
}

void tr_onnx_model_stem(const char *path, char *dst, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    snprintf(dst, cap, "%.*s", (int)n, base);
}

/* The model's (C, H, W) against the dataset's images, before the lowering, whose own refusal
 * would name only the channels. ONNX_PARSE_MODEL has made every per-sample dimension fixed. */
static deba_status fit_input(const onnx_model *m, const char *data, int in_c, int image, deba_err *e)
{
    const onnx_value *v = &m->values[m->input];
    if (v->rank != 4)
        return deba_err_set(e, DEBA_E_INPUT, "%s: the model's input '%.80s' has rank %d: an image classifier takes "
                            "(batch, channels, height, width)", m->path, v->name, v->rank);
    const int64_t *d = v->dims + 1;   /* C, H, W */
    int grey = in_c == 1 && d[0] == 3;   /* the lowering replicates the grey channel */
    int bad_c = in_c > 0 && d[0] != in_c && !grey;
    int bad_hw = image > 0 && (d[1] != image || d[2] != image);
    if (!bad_c && !bad_hw) return DEBA_OK;
    char hint[64] = "";
    if (!bad_c && d[1] == d[2]) snprintf(hint, sizeof hint, " (use --image-size %lld)", (long long)d[1]);
    return deba_err_set(e, DEBA_E_INPUT, "%s takes %lldx%lldx%lld images, %s gives %dx%dx%d%s", m->path,
                        (long long)d[0], (long long)d[1], (long long)d[2], data ? data : "the data",
                        in_c > 0 ? in_c : (int)d[0], image, image, hint);
}

tr_graph *tr_onnx_model_build(const char *path, const char *data, int in_c, int image, int classes,
                              onnx_init_mode init, tr_onnx_model_info *info, deba_err *e)
{
    onnx_model *m = NULL;
    onnx_net *net = NULL;
    tr_graph *g = NULL;
    deba_status st = onnx_load(path, ONNX_PARSE_MODEL, &m, e);
    if (!st) st = fit_input(m, data, in_c, image, e);
    if (!st) {
        const int64_t *d = m->values[m->input].dims + 1;
        onnx_lower_opts o = {ONNX_LOWER_MODEL, init, NULL, NULL, in_c > 0 ? in_c : (int)d[0]};
        st = onnx_lower(m, &o, &net, e);
        /* a node the engine does not run is the file's fault for a training run: exit 2, as
         * any other input it cannot use (the message already names file, node and op) */
        if (st == DEBA_E_UNSUPPORTED) {
            if (e) e->status = DEBA_E_INPUT;
            st = DEBA_E_INPUT;
        }
    }
    if (!st && classes > 0 && net->g->classes != classes)
        st = deba_err_set(e, DEBA_E_INPUT, "%s gives %d classes, %s has %d", path, net->g->classes,
                          data ? data : "the data", classes);
    if (!st && info) {
        memset(info, 0, sizeof *info);
        tr_onnx_model_stem(path, info->stem, sizeof info->stem);
        info->opset = m->opset;
        snprintf(info->producer, sizeof info->producer, "%s%s%s", m->producer,
                 *m->producer && *m->producer_version ? " " : "", m->producer_version);
        for (char *c = info->producer; *c; c++)   /* the file's text, for a one-line meta.csv value */
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = ' ';
        const int64_t *d = m->values[m->input].dims + 1;
        info->in_c = (int)d[0], info->in_h = (int)d[1], info->in_w = (int)d[2];
        st = deba_sha256_file(path, info->sha256, e);
    }
    if (!st) {
        g = net->g;
        net->g = NULL;
    }
    onnx_net_free(net);
    onnx_model_free(m);
    return g;
}
