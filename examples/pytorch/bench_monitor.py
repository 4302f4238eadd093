#!/usr/bin/python3
"""What deba.torch.Monitor.after_backward costs next to the training step it follows: resnet18
(torchvision, 10 classes) at batch 64 on 3x32x32 inputs (--image-size), on CPU or CUDA. Prints both medians and
their ratio, measured in the same loop. --optimizer deba: the monitored step with deba.torch.SGD (the
gradient sums fused into its update) against a plain torch.optim.SGD step without Monitor, on two copies
of the model with the same weights, one step of each in turn."""
import argparse
import copy
import os
import statistics
import sys
import tempfile
import time

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import deba.torch   # noqa: E402


def step(model, opt, x, y, batch, sync, mon=None):
    """One training step (zero_grad, forward, loss, backward, [mon.after_backward], opt.step), synchronised
    around its parts: returns the seconds of forward + backward, of after_backward, and of opt.step."""
    sync()
    t0 = time.perf_counter()
    opt.zero_grad()
    out = model(x)
    loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    sync()
    t1 = time.perf_counter()
    if mon is not None:
        mon.after_backward(loss, batch, correct=(out.argmax(1) == y).sum())
    t2 = time.perf_counter()
    opt.step()
    sync()
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32, help="square input side (224: ImageNet's)")
    p.add_argument("--optimizer", choices=("torch", "deba"), default="torch",
                   help="torch: after_backward next to a torch.optim.SGD step; deba: Monitor + deba.torch.SGD "
                        "against torch.optim.SGD without Monitor")
    a = p.parse_args()
    if a.optimizer == "deba":
        return fused(a)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(a.batch, 3, a.image_size, a.image_size, device=dev), torch.randint(0, 10, (a.batch,), device=dev)
    with tempfile.TemporaryDirectory() as out:
        mon = deba.torch.Monitor(model, out, arch="resnet18", dataset="bench", seed=0, batch_size=a.batch,
                                 optimizer=opt)
        step_t, mon_t = [], []
        for i in range(a.steps + 2):
            fb, m, st = step(model, opt, x, y, a.batch, sync, mon)
            if i >= 2:   # the first steps warm up allocators and kernels
                step_t.append(fb + st)
                mon_t.append(m)
        mon.close("interrupted")
    s, m = statistics.median(step_t), statistics.median(mon_t)
    print(f"resnet18 B={a.batch} {a.image_size}x{a.image_size} on {dev.type} ({torch.get_num_threads()} threads): step {s * 1e3:.1f} ms, "
          f"after_backward {m * 1e3:.2f} ms = {100 * m / s:.2f}% of the step")


def fused(a):
    """Two copies of resnet18 with the same weights and batch: `plain` steps with torch.optim.SGD and no
    Monitor, `mon` with Monitor + deba.torch.SGD; one step of each in turn, so both see the same
    machine load. Forward and backward are the same work on both sides: the difference is the tail
    after backward (plain: opt.step(); mon: after_backward() + opt.step()), reported against the
    plain step."""
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    plain = torchvision.models.resnet18(num_classes=10).to(dev)
    mon_model = copy.deepcopy(plain)
    opt_p = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    opt_m = deba.torch.SGD(mon_model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(a.batch, 3, a.image_size, a.image_size, device=dev), torch.randint(0, 10, (a.batch,), device=dev)
    times = {"plain": ([], []), "mon": ([], [])}   # (whole step, tail after backward)
    with tempfile.TemporaryDirectory() as out:
        mon = deba.torch.Monitor(mon_model, out, arch="resnet18", dataset="bench", seed=0, batch_size=a.batch,
                                 optimizer=opt_m)
        for i in range(a.steps + 2):
            for side, model, opt in (("plain", plain, opt_p), ("mon", mon_model, opt_m))[::1 if i % 2 else -1]:
                fb, m, st = step(model, opt, x, y, a.batch, sync, mon if side == "mon" else None)
                if i >= 2:   # the first steps warm up allocators and kernels
                    times[side][0].append(fb + m + st)
                    times[side][1].append(m + st)
        mon.close("interrupted")
    (sp, tp), (sm, tm) = [[statistics.median(v) for v in times[k]] for k in ("plain", "mon")]
    print(f"resnet18 B={a.batch} {a.image_size}x{a.image_size} on {dev.type} ({torch.get_num_threads()} threads), "
          f"medians of {a.steps} steps each, interleaved: plain step (torch.optim.SGD, no Monitor) {sp * 1e3:.1f} ms, "
          f"monitored step (Monitor + deba.torch.SGD) {sm * 1e3:.1f} ms ({100 * (sm - sp) / sp:+.2f}%); "
          f"after backward: torch.optim.SGD.step {tp * 1e3:.2f} ms, after_backward + deba.torch.SGD.step "
          f"{tm * 1e3:.2f} ms: overhead {100 * (tm - tp) / sp:+.2f}% of the plain step")


if __name__ == "__main__":
    main()
