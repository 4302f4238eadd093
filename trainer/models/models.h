/* The model zoo: torchvision-compatible definitions of the paper's six architectures and small
 * models for CPU demos and tests, all built from trainer/layers.h. */
#ifndef TR_MODELS_H
#define TR_MODELS_H

#include <stddef.h>
#include "deba/error.h"
#include "trainer/graph.h"

/* A builder adds the model's nodes after input tensor x and returns the logits tensor id
 * ((1, 1, classes) per sample), or -1 after a failure recorded in g. */
typedef int (*tr_model_build_fn)(tr_graph *g, int x, int classes);

typedef struct {
    const char *name;       /* "resnet18" */
    const char *alias;      /* another accepted name, or NULL ("mobilenet_v3") */
    const char *source;     /* the definition it follows, e.g. "torchvision.models.resnet18" */
    int default_image;      /* image size when neither --dataset nor --image-size says */
    int min_image;          /* smallest input side the architecture accepts */
    tr_model_build_fn build;
} tr_model_desc;

const tr_model_desc *tr_model_find(const char *name);   /* by name or alias; NULL if unknown */
const tr_model_desc *tr_model_list(size_t *n);
/* Builds arch for (in_c, image, image) inputs and `classes` outputs. Too small an image is
 * DEBA_E_INPUT naming the minimum and suggesting --image-size; an unknown arch lists the
 * known ones. */
tr_graph *tr_model_build(const char *arch, int in_c, int image, int classes, deba_err *e);

int tr_build_cnn_small(tr_graph *g, int x, int classes);
int tr_build_resnet18(tr_graph *g, int x, int classes);
int tr_build_resnet50(tr_graph *g, int x, int classes);
int tr_build_densenet121(tr_graph *g, int x, int classes);
int tr_build_efficientnet_b0(tr_graph *g, int x, int classes);
int tr_build_mobilenet_v3_large(tr_graph *g, int x, int classes);
int tr_build_vit_b_16(tr_graph *g, int x, int classes);
int tr_build_vit_tiny(tr_graph *g, int x, int classes);

#endif
