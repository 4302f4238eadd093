#!/usr/bin/env python3
"""PyTorch eager FP32 reference for tests/bench_gpu.c: the same training step (forward, mean
cross-entropy, backward, SGD lr 0.01 momentum 0.9 weight decay 5e-4) of torchvision's resnet18
and mobilenet_v3_large (10 classes) on 32x32 inputs at batch 64..1024, input resident on the
GPU, cuDNN autotuning on and TF32 off (true FP32, as the DEBA CUDA backend). Writes
model,batch,status,samples_per_s,step_ms to the CSV named on the command line.

bench_gpu also reduces the gradient to Σg and Σg² each step (SPEC §2); the reference does the
same with one torch reduction so both steps do the same work."""
import csv
import sys
import time

import torch
import torchvision

WARMUP, STEPS = 3, 10
MODELS = {"resnet18": torchvision.models.resnet18,
          "mobilenet_v3_large": torchvision.models.mobilenet_v3_large}
BATCHES = [64, 128, 256, 512, 1024]


def bench(name, batch, dev):
    torch.manual_seed(0)
    model = MODELS[name](num_classes=10).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    params = [p for p in model.parameters()]

    def step():
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        g = torch.cat([p.grad.reshape(-1) for p in params]).double()
        moments = torch.stack([g.sum(), (g * g).sum()]).cpu()   # to the host, as bench_gpu
        opt.step()
        return loss.item(), moments

    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(STEPS):
        step()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return batch * STEPS / wall, wall / STEPS * 1e3


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "torch.csv"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}", flush=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "batch", "status", "samples_per_s", "step_ms"])
        for name in MODELS:
            for b in BATCHES:
                try:
                    sps, ms = bench(name, b, dev)
                    w.writerow([name, b, "ok", f"{sps:.1f}", f"{ms:.3f}"])
                    print(f"{name:20s} {b:6d} {sps:12.0f} samples/s {ms:10.2f} ms/step", flush=True)
                except torch.cuda.OutOfMemoryError:
                    w.writerow([name, b, "oom", "", ""])
                    print(f"{name:20s} {b:6d} out of memory", flush=True)
                torch.cuda.empty_cache()
                f.flush()


if __name__ == "__main__":
    main()
