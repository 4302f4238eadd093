#!/usr/bin/python3
"""Fashion-MNIST with a torchvision model (or a tiny CNN for quick tests), fixed batch or DEBA,
written by deba.torch so deba-calibrate, deba-profile and deba-report read the run like a
deba-train one. The DEBA part is the ten lines marked "DEBA"."""
import argparse
import gzip
import os
import struct
import sys

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import deba          # noqa: E402  (the source tree's package when it is not installed)
import deba.torch    # noqa: E402

MEAN, STD = 0.2860, 0.3530   # Fashion-MNIST's pixel statistics


def read_idx(path):
    """An IDX file (plain or gzip) as a uint8 tensor of its shape."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def load(data_dir, split, n):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    if n:
        x, y = x[:n], y[:n]
    x = ((x.float() / 255.0 - MEAN) / STD).unsqueeze(1)   # (N, 1, 28, 28)
    return torch.utils.data.TensorDataset(x, y.long())


def build(name):
    if name == "tiny":   # two conv layers: seconds per epoch on a CPU
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(16 * 7 * 7, 10))
    model = getattr(torchvision.models, name)(num_classes=10)
    if name.startswith("resnet"):   # 1-channel 28x28 input: a 3x3 stem without the max-pool
        model.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    else:
        raise SystemExit(f"train.py: --model {name}: only tiny and resnet* are adapted to 1-channel images")
    return model


@torch.no_grad()
def evaluate(model, test, batch):
    model.eval()
    loss, correct = 0.0, 0
    for x, y in torch.utils.data.DataLoader(test, batch_size=batch):
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    model.train()
    return loss / len(test), 100.0 * correct / len(test)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--method", choices=("fixed", "deba"), default="deba")
    p.add_argument("--model", default="tiny", help="tiny, or a torchvision resnet (resnet18, ...)")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", default="runs")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--subset", type=int, default=0)
    p.add_argument("--test-subset", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--bmin", type=int, default=32)
    p.add_argument("--bmax", type=int, default=1024)
    p.add_argument("--cooldown", type=int, default=10)
    p.add_argument("--tau", type=float, default=0.25)
    p.add_argument("--theta", type=float, default=0.5)
    p.add_argument("--lambda", dest="lam", type=float, default=0.10)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--lr-scaling", choices=deba.LR_SCALINGS, default="none")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/.../checkpoint.pt")
    p.add_argument("--force", action="store_true", help="start over an existing run")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train, test = load(a.data, "train", a.subset), load(a.data, "test", a.test_subset)
    model = build(a.model)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    ckpt = None
    # DEBA 1-4: the scheduler (None: fixed batch), the monitor that writes the run, the loader
    sched = deba.Scheduler(method="deba", batch=a.batch, bmin=a.bmin, bmax=a.bmax, tau=a.tau, theta=a.theta,
                           lam=a.lam, cooldown=a.cooldown) if a.method == "deba" else None
    if a.resume:   # your own checkpoint decides where the run goes on: keep_epochs trims the trace to it
        run_dir = os.path.join(a.out, a.model, "fashion-mnist", a.method, f"seed{a.seed}")
        path = os.path.join(run_dir, "checkpoint.pt")
        ckpt = torch.load(path) if os.path.exists(path) else None
    mon = deba.torch.Monitor(model, a.out, arch=a.model, dataset="fashion-mnist", seed=a.seed, scheduler=sched,
                             batch_size=a.batch, optimizer=opt, epochs=a.epochs, lr_scaling=a.lr_scaling,
                             subset=a.subset, test_subset=a.test_subset, image_size=28, resume=a.resume,
                             force=a.force, keep_epochs=ckpt["epoch"] if ckpt else (0 if a.resume else None))
    data = deba.torch.AdaptiveBatchSize(train, mon, optimizer=opt, lr_scaling=a.lr_scaling, seed=a.seed)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        data.load_state_dict(ckpt["data"])   # checks the scheduler against the one rebuilt from the trace
    with mon:                                                       # DEBA 5: final status in meta.csv
        for epoch in range(mon.run.epochs_done + 1, a.epochs + 1):
            for x, y in data:                                       # DEBA 6: batches of the current B
                opt.zero_grad()
                out = model(x)
                loss = F.cross_entropy(out, y)
                loss.backward()
                mon.after_backward(loss, len(y), correct=(out.argmax(1) == y).sum())   # DEBA 7
                opt.step()
            test_loss, test_acc = evaluate(model, test, 256)
            nxt = mon.end_epoch(test_loss=test_loss, test_acc=test_acc)                # DEBA 8
            r = mon.run.last
            print(f"epoch {epoch:3d}  B {r['batch_size']:4d}  loss {r['train_loss']:.4f}  test {test_acc:.2f}%  "
                  f"{r['decision']}  next B {nxt}", flush=True)
            torch.save({"epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(),
                        "data": data.state_dict()}, os.path.join(mon.run.dir, "checkpoint.pt"))
    print(f"run: {mon.run.dir}")


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:   # a bad option or a refused run directory: the library's message
        print(f"train.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
