#!/usr/bin/python3
"""PyTorch's numbers for one training step of the ONNX fixtures, the reference of
tests/test_onnx_train.c (test_step_matches_pytorch): prints the C literals pasted there.

Run with Debian's python3 (python3-torch, python3-onnx):  /usr/bin/python3 scripts/onnx_step_facts.py
The PyTorch module of each fixture (scripts/onnx_fixtures.py) gets the exported file's own weights
and BN statistics by initializer name, then on a fixed batch of N=4 images (pixel i of the batch,
j of sample n is ((37 j + 53 n) mod 101 - 50) / 25 * (n + 1) / 2, in double, then float; labels
(3 n + 1) mod 10):
  eval   the eval-mode logits (N x 10);
  step   one train-mode step: mean cross-entropy, the sum and the sum of squares (in double) of the
         whole gradient, then SGD (lr 0.1, momentum 0.9, weight decay 5e-4, PyTorch's) and the
         eval-mode logits after it (new weights, running statistics updated once, momentum 0.1).
tiny_cnn was exported in eval mode, where torch drops its Dropout: the module here runs without it
(p = 0), as the file does.
"""
import importlib.util
import os

import numpy as np
import onnx
import torch
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("fixtures", os.path.join(HERE, "onnx_fixtures.py"))
fx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fx)

N = 4


def batch():
    n = np.arange(N, dtype=np.int64).reshape(N, 1)
    j = np.arange(3 * 32 * 32, dtype=np.int64).reshape(1, -1)
    x = (((37 * j + 53 * n) % 101 - 50) / 25.0 * (n + 1) / 2.0).astype(np.float32).reshape(N, 3, 32, 32)
    y = (3 * np.arange(N) + 1) % 10
    return torch.from_numpy(x), torch.from_numpy(y)


def load(model, path):
    """The file's initializers into the module by name (state_dict keys are the export's names)."""
    m = onnx.load(path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n in m.graph.node:   # torch 1.13 shares equal tensors (fresh BN statistics) via Identity
        if n.op_type == "Identity" and n.input[0] in init:
            init[n.output[0]] = init[n.input[0]]
    sd = model.state_dict()
    for k in sd:
        if k.endswith("num_batches_tracked"):
            continue
        assert k in init, f"{path}: no initializer {k}"
        sd[k] = torch.from_numpy(init[k].copy())
    model.load_state_dict(sd)


def literals(name, v):
    return f"static const double {name}[{len(v)}] = {{\n" + ",\n".join(
        "    " + ", ".join(f"{float(a):.9g}" for a in v[j:j + 5]) for j in range(0, len(v), 5)) + "};"


def facts(tag, model, path):
    torch.manual_seed(0)
    load(model, path)
    x, y = batch()
    model.eval()
    with torch.no_grad():
        before = model(x).flatten().double().numpy()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    g = torch.cat([p.grad.flatten().double() for p in model.parameters()])
    opt.step()
    model.eval()
    with torch.no_grad():
        after = model(x).flatten().double().numpy()
    print(f"/* {tag}: python3 scripts/onnx_step_facts.py (torch {torch.__version__}) */")
    print(f"static const double {tag}_LOSS = {loss.item():.9g}, {tag}_GSUM = {g.sum().item():.9g}, "
          f"{tag}_GSUMSQ = {(g * g).sum().item():.9g};")
    print(literals(f"{tag}_EVAL", before))
    print(literals(f"{tag}_AFTER", after))


def main():
    cnn = fx.TinyCNN()
    cnn.drop.p = 0.0
    facts("CNN", cnn, os.path.join(HERE, "..", "tests", "onnx", "tiny_cnn.onnx"))
    facts("RESNET", fx.TinyResNet(), os.path.join(HERE, "..", "tests", "onnx", "tiny_resnet.onnx"))


if __name__ == "__main__":
    main()
