#!/usr/bin/python3
"""Exports torchvision's classification models to ONNX with the call of docs/onnx.md and writes
each in ONNX's backend-test layout for `deba-onnx verify` (tests/test_onnx_verify.c runs it):
    /usr/bin/python3 scripts/onnx_torchvision.py OUT_DIR [MODEL...]
OUT_DIR/<model>/model.onnx and test_data_set_0/{input_0,output_0}.pb: PyTorch's own logits for a
random batch at 3x32x32, in eval mode for PRESERVE exports (batch 2) and in train mode (batch
statistics, which is what training_mode=1 in the file means) for TRAINING exports (batch 16:
at 32x32 the last stages are 1x1, and batch statistics over 2 values per channel turn float
rounding upstream into differences of order 1; 16 values condition them). Opsets and
modes vary over 13..17 and PRESERVE/TRAINING across the list, as the issue asks; models with
dropout are exported PRESERVE (a random mask has no expected output). cnn_small is the PyTorch
twin of the built-in --arch cnn_small (1x32x32 images). Needs Debian's
python3-torch, python3-torchvision, python3-onnx. Also prints PyTorch's parameter count.
"""
import os
import sys
import warnings

import torch
import torch.nn.functional as nn_f
import torchvision
from onnx import numpy_helper

warnings.filterwarnings("ignore")
T = torch.onnx.TrainingMode
# model, opset, mode
MODELS = [
    ("resnet18", 13, T.TRAINING), ("resnet50", 14, T.PRESERVE), ("resnext50_32x4d", 15, T.PRESERVE),
    ("densenet121", 16, T.TRAINING), ("mobilenet_v2", 17, T.PRESERVE), ("mobilenet_v3_large", 13, T.PRESERVE),
    ("efficientnet_b0", 14, T.PRESERVE), ("regnet_x_400mf", 15, T.TRAINING), ("squeezenet1_1", 16, T.PRESERVE),
    ("mnasnet1_0", 17, T.PRESERVE), ("shufflenet_v2_x1_0", 13, T.TRAINING), ("convnext_tiny", 14, T.PRESERVE),
    ("vit_small", 17, T.PRESERVE), ("cnn_small", 13, T.PRESERVE),
]


class CnnSmall(torch.nn.Module):
    """The twin of the built-in --arch cnn_small (trainer/models/cnn_small.c) for 1x32x32 images:
    tests/test_onnx_train.c trains both and compares their accuracy."""

    def __init__(self, classes=10):
        super().__init__()
        nn = torch.nn
        layers, cin = [], 1
        for i, cout in enumerate((32, 64, 128)):
            conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            layers += [conv, nn.BatchNorm2d(cout), nn.ReLU()]
            if i < 2:
                layers.append(nn.MaxPool2d(2, 2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(128 * 16, classes)

    def forward(self, x):
        x = nn_f.adaptive_avg_pool2d(self.features(x), 4)
        return self.fc(torch.flatten(x, 1))


def build(name):
    if name == "cnn_small":
        return CnnSmall()
    if name == "vit_small":   # a VisionTransformer small enough for 32x32 inputs
        m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=10)
        # torchvision zeroes the head (and the class token): the logits would be 0 whatever the
        # encoder computed, and verify would compare nothing
        with torch.no_grad():
            torch.nn.init.normal_(m.heads.head.weight, std=0.5)
            torch.nn.init.normal_(m.class_token, std=0.5)
        return m
    return getattr(torchvision.models, name)(num_classes=10)


def main():
    out = sys.argv[1]
    want = set(sys.argv[2:])
    for name, opset, mode in MODELS:
        if want and name not in want:
            continue
        torch.manual_seed(0)
        m = build(name)
        with torch.no_grad():   # BatchNorm statistics away from 0/1, so eval differs from training
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.running_mean.uniform_(-0.1, 0.1)
                    mod.running_var.uniform_(0.5, 1.5)
        d = os.path.join(out, name)
        os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
        shape = (1, 32, 32) if name == "cnn_small" else (3, 32, 32)
        m.train(mode == T.TRAINING)
        torch.onnx.export(m, torch.randn(2, *shape), os.path.join(d, "model.onnx"), training=mode,
                          do_constant_folding=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        x = torch.randn(16 if mode == T.TRAINING else 2, *shape)
        with torch.no_grad():
            y = m(x)
        for k, t in (("input_0", x), ("output_0", y)):
            with open(os.path.join(d, "test_data_set_0", k + ".pb"), "wb") as f:
                f.write(numpy_helper.from_array(t.numpy()).SerializeToString())
        print(name, opset, "TRAINING" if mode == T.TRAINING else "PRESERVE",
              sum(p.numel() for p in m.parameters()), flush=True)


if __name__ == "__main__":
    main()
