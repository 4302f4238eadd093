/* An ONNX file as a model of the trainer (deba-train/deba-profile --model): load, check it
 * against the dataset's images and classes, lower it, and say what meta.csv records of it. */
#ifndef DEBA_TRAINER_ONNX_MODEL_H
#define DEBA_TRAINER_ONNX_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "deba/error.h"
#include "trainer/graph.h"
#include "trainer/onnx/lower.h"

typedef struct {
    char stem[256];              /* the file name without its directory and its .onnx */
    char sha256[65];             /* of the file's bytes (not of external data beside it) */
    int opset;                   /* of the default domain */
    char producer[256];          /* "pytorch 1.13.1"; "" when the file names none */
    int in_c, in_h, in_w;        /* the image the graph takes (in_c: the model's own channels) */
} tr_onnx_model_info;

/* The file name of path without directory and without a final ".onnx" (or any last extension). */
void tr_onnx_model_stem(const char *path, char *dst, size_t cap);

/* Builds the graph of an ONNX image classifier for a dataset of in_c x image x image images and
 * `classes` classes; `data` names the dataset in messages (NULL: "the data"). in_c, image or
 * classes 0: as the model says (--summary without a dataset). A grey dataset (in_c 1) feeds a
 * 3-channel model by replicating the channel. Every refusal is DEBA_E_INPUT with the file named: unreadable, not
 * ONNX, an unsupported node (named, with its op type), an image or class count that does not
 * match the dataset (both shapes named). info (may be NULL) gets what meta.csv records. */
tr_graph *tr_onnx_model_build(const char *path, const char *data, int in_c, int image, int classes,
                              onnx_init_mode init, tr_onnx_model_info *info, deba_err *e);

const char *tr_onnx_init_name(onnx_init_mode m);   /* "onnx", "seeded" */
int tr_onnx_init_parse(const char *s);              /* -1 when unknown */

#endif
