/* The model registry and the common build entry point (input checks, output binding). */
#include "trainer/models/models.h"

#include <string.h>

static const tr_model_desc MODELS[] = {
    {"cnn_small", NULL, "this project (3 conv-BN-ReLU blocks, 4x4 average pool, for CPU demos)", 32, 8, tr_build_cnn_small},
    {"resnet18", NULL, "torchvision.models.resnet18", 32, 1, tr_build_resnet18},
    {"resnet50", NULL, "torchvision.models.resnet50", 32, 1, tr_build_resnet50},
    {"densenet121", NULL, "torchvision.models.densenet121", 32, 29, tr_build_densenet121},
    {"efficientnet_b0", NULL, "torchvision.models.efficientnet_b0", 32, 1, tr_build_efficientnet_b0},
    {"mobilenet_v3_large", "mobilenet_v3", "torchvision.models.mobilenet_v3_large", 32, 1,
     tr_build_mobilenet_v3_large},
    {"vit_b_16", NULL, "torchvision.models.vit_b_16", 224, 16, tr_build_vit_b_16},
    {"vit_tiny", NULL, "this project (ViT, patch 4, width 192, depth 6, 3 heads)", 32, 4, tr_build_vit_tiny},
};
#define N_MODELS (sizeof MODELS / sizeof MODELS[0])

const tr_model_desc *tr_model_find(const char *name)
{
    for (size_t i = 0; i < N_MODELS; i++)
        if (!strcmp(name, MODELS[i].name) || (MODELS[i].alias && !strcmp(name, MODELS[i].alias)))
            return &MODELS[i];
    return NULL;
}

const tr_model_desc *tr_model_list(size_t *n)
{
    *n = N_MODELS;
    return MODELS;
}

tr_graph *tr_model_build(const char *arch, int in_c, int image, int classes, deba_err *e)
{
    const tr_model_desc *m = tr_model_find(arch);
    if (!m) {
        char known[512] = "";
        for (size_t i = 0; i < N_MODELS; i++) {
            strcat(known, i ? ", " : "");
            strcat(known, MODELS[i].name);
        }
        deba_err_set(e, DEBA_E_INPUT, "--arch: unknown architecture '%s' (known: %s)", arch, known);
        return NULL;
    }
    if (image < m->min_image) {
        deba_err_set(e, DEBA_E_INPUT,
                     "%s needs input images of at least %dx%d, got %dx%d: pass --image-size %d or larger",
                     m->name, m->min_image, m->min_image, image, image, m->min_image);
        return NULL;
    }
    if (classes < 2 || in_c < 1) {
        deba_err_set(e, DEBA_E_INPUT, "--num-classes must be at least 2 (got %d)", classes);
        return NULL;
    }
    tr_graph *g = tr_graph_new(in_c, image, image);
    if (!g) {
        deba_err_set(e, DEBA_E_NOMEM, "out of memory building %s", arch);
        return NULL;
    }
    int out = m->build(g, g->input, classes);
    if (out < 0 || g->failed) {
        deba_err_set(e, g->err.status ? g->err.status : DEBA_E_RUNTIME, "%s: %s", m->name, g->err.msg);
        tr_graph_free(g);
        return NULL;
    }
    g->output = out;
    g->classes = classes;
    return g;
}
