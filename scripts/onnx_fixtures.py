#!/usr/bin/python3
"""Regenerates the ONNX fixtures under tests/onnx/ (docs/onnx.md): small PyTorch models exported
with the call the docs give, each with the counts PyTorch and the exported graph agree on.

Run with Debian's python3 (python3-torch, python3-torchvision, python3-onnx):
    /usr/bin/python3 scripts/onnx_fixtures.py [OUT_DIR]     (default tests/onnx)
For each model NAME it writes NAME.onnx and NAME.facts, one "key value" per line: PyTorch's
parameter count (sum(p.numel() for p in model.parameters())), PyTorch's FLOPs at batch 1 (2 per
multiply-add of convolutions and matrix products, counted from the ATen calls of a forward pass),
the opset and the op histogram of the exported graph (counted with python3-onnx, an independent
reader of the same file).
For deba-onnx verify it writes verify/NAME/ in ONNX's backend-test layout: a copy of NAME.onnx
as model.onnx and test_data_set_0/{input_0,output_0}.pb with PyTorch's output for a batch of 3
(batch statistics for the TRAINING export, as its BatchNormalization nodes say), and
verify_bad/tiny_cnn_off/, the same with one expected value moved by 0.01: verify must fail it.
It also writes the hostile files the parser must refuse (bad/*.onnx) with bad/README listing
what each one is, and the seeds of tests/fuzz/fuzz_onnx.c (tests/fuzz/corpus/onnx/).
"""
import os
import shutil
import sys

import onnx
import onnx.helper as oh
import torch
import torch.nn as nn
from onnx import TensorProto, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data
from torch.utils._python_dispatch import TorchDispatchMode

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "onnx")


class TinyCNN(nn.Module):
    """Conv-BN-ReLU-MaxPool twice, global average pool, linear: the classic small CNN."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, stride=2, padding=(0, 1), dilation=1, groups=4), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.fc(self.drop(torch.flatten(x, 1)))


class Block(nn.Module):
    """A ResNet basic block with a 1x1 projection when the shape changes, plus an SE gate."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.se1 = nn.Conv2d(cout, 4, 1)
        self.se2 = nn.Conv2d(4, cout, 1)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        s = torch.sigmoid(self.se2(torch.relu(self.se1(y.mean((2, 3), keepdim=True)))))
        y = y * s
        return torch.relu(y + (x if self.proj is None else self.proj(x)))


class TinyResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2))
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class Attention(nn.Module):
    """Multi-head self-attention written out, so it exports as MatMul/Softmax/Reshape/Transpose."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, t, d))


class TinyViT(nn.Module):
    """Patch embedding, class token, position embedding, two pre-norm encoder layers, head."""

    def __init__(self, classes=10, dim=32, depth=2, heads=4, patch=8, size=32):
        super().__init__()
        n = (size // patch) ** 2
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(nn.ModuleDict(dict(
                n1=nn.LayerNorm(dim), att=Attention(dim, heads), n2=nn.LayerNorm(dim),
                mlp=nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)))))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for b in self.blocks:
            x = x + b["att"](b["n1"](x))
            x = x + b["mlp"](b["n2"](x))
        return self.head(self.norm(x)[:, 0])


class TinyMLP(nn.Module):
    """A 1x28x28 (Fashion-MNIST) MLP: the external-data fixture."""

    def __init__(self, classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x):
        return self.net(x)


class FlopCounter(TorchDispatchMode):
    """2 x multiply-adds of every convolution and matrix product PyTorch runs."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name == "convolution":
            self.flops += 2 * out.numel() * args[1][0].numel()      # weight (M, C/g, k...)
        elif name in ("mm", "bmm"):
            self.flops += 2 * out.numel() * args[0].shape[-1]
        elif name == "addmm":
            self.flops += 2 * out.numel() * args[1].shape[-1]
        return out


def flops_at_batch_1(model, shape):
    counter = FlopCounter()
    with torch.no_grad(), counter:
        model(torch.randn(1, *shape))
    return counter.flops


def export(model, name, shape, opset, mode, external=False):
    """The export call of docs/onnx.md, then the facts the C tests check against."""
    model.train(mode == torch.onnx.TrainingMode.TRAINING)
    x = torch.randn(2, *shape)
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(model, x, path, training=mode, do_constant_folding=False, opset_version=opset,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    m = onnx.load(path)
    if external:
        data = os.path.join(OUT, name + ".onnx.data")
        if os.path.exists(data):
            os.remove(data)   # onnx appends to an existing data file
        # Tensors of 1 KiB or more go to NAME.onnx.data beside the model (offset/length records).
        convert_model_to_external_data(m, all_tensors_to_one_file=True, location=name + ".onnx.data",
                                       size_threshold=1024)
        onnx.save_model(m, path)
        m = onnx.load(path)   # loads the data back from beside the file
    onnx.checker.check_model(m)
    hist = {}
    for n in m.graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    params = sum(p.numel() for p in model.parameters())
    with open(os.path.join(OUT, name + ".facts"), "w") as f:
        f.write(f"# scripts/onnx_fixtures.py: PyTorch's and python3-onnx's numbers for {name}.onnx\n")
        f.write(f"params {params}\nflops {flops_at_batch_1(model, shape)}\nopset {opset}\n")
        f.write(f"nodes {len(m.graph.node)}\n")
        for op, count in sorted(hist.items()):
            f.write(f"op {op} {count}\n")
    print(f"{name}: {params} params, {len(m.graph.node)} nodes, {os.path.getsize(path)} bytes")
    return m


def verify_set(model, name, shape, mode, root="verify", nudge=None):
    """NAME.onnx in the backend-test layout with PyTorch's own output for a fresh batch."""
    d = os.path.join(OUT, root, name if nudge is None else name + "_off")
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    shutil.copyfile(os.path.join(OUT, name + ".onnx"), os.path.join(d, "model.onnx"))
    if os.path.exists(os.path.join(OUT, name + ".onnx.data")):
        shutil.copyfile(os.path.join(OUT, name + ".onnx.data"), os.path.join(d, name + ".onnx.data"))
    model.train(mode == torch.onnx.TrainingMode.TRAINING)
    x = torch.randn(3, *shape)
    with torch.no_grad():
        y = model(x)
    if nudge is not None:
        y = y.clone()
        y.view(-1)[nudge] += 0.01
    for k, t in (("input_0", x), ("output_0", y)):
        with open(os.path.join(d, "test_data_set_0", k + ".pb"), "wb") as f:
            f.write(numpy_helper.from_array(t.numpy()).SerializeToString())


def save(model, name):
    onnx.save_model(model, os.path.join(OUT, "bad", name))


def hostile(cnn_path, mlp):
    """Files the parser must refuse with exit 2 (bad/README says why each one)."""
    os.makedirs(os.path.join(OUT, "bad"), exist_ok=True)
    data = open(cnn_path, "rb").read()
    with open(os.path.join(OUT, "bad", "truncated.onnx"), "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(OUT, "bad", "not_onnx.onnx"), "w") as f:
        f.write("this is a text file, not a protobuf ModelProto\n")
    relu = oh.make_node("Relu", ["x"], ["y"], name="relu0")
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    save(oh.make_model(oh.make_graph([relu], "g", [x], [y]), opset_imports=[oh.make_opsetid("", 9)]), "opset9.onnx")
    add = oh.make_node("Add", ["x", "z"], ["y"], name="add0")
    z = oh.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4])
    save(oh.make_model(oh.make_graph([add], "g", [x, z], [y]), opset_imports=[oh.make_opsetid("", 13)]),
         "two_inputs.onnx")
    # The MLP with its data file named outside its directory, absolutely, and past its end.
    for fname, loc, off in (("escape.onnx", "../tiny_mlp.onnx.data", None),
                            ("absolute.onnx", "/etc/passwd", None),
                            ("missing_data.onnx", "no_such_file.data", None),
                            ("past_end.onnx", "../tiny_mlp.onnx.data", 1 << 20)):
        m = onnx.ModelProto()
        m.CopyFrom(mlp)
        for t in m.graph.initializer:
            if t.data_location == TensorProto.EXTERNAL:
                for kv in t.external_data:
                    if kv.key == "location":
                        kv.value = loc if off is None else "past_end.data"
                    if kv.key == "offset" and off is not None:
                        kv.value = str(off)
                break
        save(m, fname)
    with open(os.path.join(OUT, "bad", "past_end.data"), "wb") as f:
        f.write(b"\0" * 64)
    with open(os.path.join(OUT, "bad", "README"), "w") as f:
        f.write("Hostile inputs made by scripts/onnx_fixtures.py; deba-onnx must refuse each with exit 2:\n"
                "truncated.onnx     the first half of tiny_cnn.onnx\n"
                "not_onnx.onnx      a line of text\n"
                "opset9.onnx        one Relu, default-domain opset 9 (below 11)\n"
                "two_inputs.onnx    Add of two graph inputs x and z\n"
                "escape.onnx        tiny_mlp with external data at '../tiny_mlp.onnx.data'\n"
                "absolute.onnx      tiny_mlp with external data at '/etc/passwd'\n"
                "missing_data.onnx  tiny_mlp with external data in a file that does not exist\n"
                "past_end.onnx      tiny_mlp with external data at offset 1 MiB of the 64-byte past_end.data\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    T = torch.onnx.TrainingMode
    torch.manual_seed(0)   # the same weights, so regenerating changes no bytes
    # each model is built right before its export: the random stream (weights, export inputs)
    # stays that of the fixtures as first generated
    specs = [(TinyCNN, "tiny_cnn", (3, 32, 32), 13, T.PRESERVE, False),
             (TinyResNet, "tiny_resnet", (3, 32, 32), 14, T.TRAINING, False),
             (TinyViT, "tiny_vit", (3, 32, 32), 17, T.PRESERVE, False),
             (TinyMLP, "tiny_mlp", (1, 28, 28), 15, T.PRESERVE, True)]
    models = []
    for cls, name, shape, opset, mode, external in specs:
        model = cls()
        export(model, name, shape, opset, mode, external)
        models.append((model, name, shape, opset, mode, external))
    torch.manual_seed(1)
    for model, name, shape, opset, mode, external in models:
        verify_set(model, name, shape, mode)
    verify_set(models[0][0], "tiny_cnn", (3, 32, 32), T.PRESERVE, root="verify_bad", nudge=7)
    unsupported()
    fuzz_seeds()
    hostile(os.path.join(OUT, "tiny_cnn.onnx"), onnx.load(os.path.join(OUT, "tiny_mlp.onnx"), load_external_data=False))


def fuzz_seeds():
    """fuzz_onnx inputs: flags byte, model length (uint32 LE), model, its external data file."""
    out = os.path.join(OUT, "..", "fuzz", "corpus", "onnx")
    os.makedirs(out, exist_ok=True)

    def seed(name, model_bytes, data=b"", flags=0):
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([flags]) + len(model_bytes).to_bytes(4, "little") + model_bytes + data)

    seed("tiny_cnn", open(os.path.join(OUT, "tiny_cnn.onnx"), "rb").read())
    seed("unsupported", open(os.path.join(OUT, "unsupported.onnx"), "rb").read())
    seed("two_inputs_any", open(os.path.join(OUT, "bad", "two_inputs.onnx"), "rb").read(), flags=1)
    # a Gemm whose weight (4x4 floats) and bias (4) are external data in w.data
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    w = oh.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.0] * 16)
    b = oh.make_tensor("b", TensorProto.FLOAT, [4], [0.0] * 4)
    for t, off, n in ((w, 0, 64), (b, 64, 16)):
        t.ClearField("float_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "w.data"), ("offset", str(off)), ("length", str(n))):
            e = t.external_data.add()
            e.key, e.value = k, v
    g = oh.make_graph([oh.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "g", [x], [y],
                      initializer=[w, b])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)])
    seed("external", m.SerializeToString(), bytes(range(80)))


def unsupported():
    """A valid model with four nodes outside the supported table, one reason each: `info` lists
    them (exit 0); importing it for training will refuse it."""
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])
    pads = oh.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    w = oh.make_tensor("w", TensorProto.FLOAT, [75, 10], [0.01] * 750)
    nodes = [
        oh.make_node("Pad", ["x", "pads"], ["p"], name="pad_reflect", mode="reflect"),
        oh.make_node("MaxPool", ["p"], ["m", "idx"], name="pool_idx", kernel_shape=[2, 2], strides=[2, 2]),
        oh.make_node("Celu", ["m"], ["c"], name="celu0"),
        oh.make_node("Flatten", ["c"], ["f"], name="flat", axis=1),
        oh.make_node("Gemm", ["f", "w"], ["y"], name="gemm_t", transB=2),
    ]
    g = oh.make_graph(nodes, "unsupported", [x], [y], initializer=[pads, w])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)], producer_name="onnx_fixtures.py")
    onnx.save_model(m, os.path.join(OUT, "unsupported.onnx"))


if __name__ == "__main__":
    main()
