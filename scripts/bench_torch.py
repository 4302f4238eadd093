#!/usr/bin/python3
"""`make bench-torch`: the same training step (forward, cross-entropy, backward, SGD lr 0.01,
momentum 0.9, weight decay 5e-4) on the same model, batch and thread count in Debian's PyTorch and
in our CPU engine (build/tests/bench_torch), interleaved and repeated; prints ours/torch samples/s
per model and batch with both absolute figures and each side's peak RSS.

Each (model, batch) gets two fresh worker processes, so ru_maxrss is that run's own peak. Only one
worker runs at a time: the idle one is stopped with SIGSTOP, so its OpenMP threads cannot spin on
the cores the other is timing (they would under OMP_WAIT_POLICY=active)."""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

MODELS = ["cnn_small", "resnet18", "resnet50", "densenet121", "mobilenet_v3_large", "efficientnet_b0",
          "vit_tiny", "vit_b_16"]


def torch_model(name):
    """The PyTorch twin of our model `name` (10 classes, 3x32x32 input)."""
    import torch.nn as nn
    import torchvision
    if name == "cnn_small":
        # trainer/models/cnn_small.c: three conv3x3 (no bias)-BN-ReLU, max pools between, 4x4 pool, fc
        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return nn.Sequential(*block(3, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2), *block(64, 128),
                             nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2048, 10))
    if name == "vit_tiny":
        # trainer/models/vit.c: torchvision's VisionTransformer with patch 4, width 192, depth 6, 3 heads
        return torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=6, num_heads=3,
                                                    hidden_dim=192, mlp_dim=768, num_classes=10)
    if name == "vit_b_16":
        # our vit_b_16 takes any side divisible by 16: at 32 it sees 2x2 patches plus the class token
        return torchvision.models.vit_b_16(num_classes=10, image_size=32)
    return getattr(torchvision.models, name)(num_classes=10)


def torch_worker(model, batch, threads):
    """The torch side of the protocol tests/bench_torch.c speaks (see its opening comment)."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch_model(model)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    y = torch.arange(batch) % 10

    def steps(k):
        t = time.perf_counter()
        for _ in range(k):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    warm = steps(1)
    print("ready %d %d %.6f" % (sum(p.numel() for p in net.parameters()), torch.get_num_threads(), warm), flush=True)
    for line in sys.stdin:
        k = int(line)
        if k < 1:
            break
        print("%.6f" % steps(k), flush=True)


class Worker:
    """One side's process: started, set up (one warm-up step), then stopped until asked to run."""

    def __init__(self, argv, env):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        words = self.p.stdout.readline().split()
        if len(words) != 4 or words[0] != "ready":
            self.close()
            raise RuntimeError("%s did not start (exit status %s)" % (" ".join(argv), self.status))
        self.params, self.threads, self.warm = int(words[1]), int(words[2]), float(words[3])
        os.kill(self.p.pid, signal.SIGSTOP)

    def run(self, k):
        os.kill(self.p.pid, signal.SIGCONT)
        self.p.stdin.write("%d\n" % k)
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        os.kill(self.p.pid, signal.SIGSTOP)
        if not line:
            raise RuntimeError("worker %d ended mid-run" % self.p.pid)
        return float(line)

    def close(self):
        """Ends the worker; returns its peak RSS in MiB. Read from the kernel's high-water mark of
        the worker's own memory (VmHWM) before it exits: its ru_maxrss would also count the
        driver's pages, which the child held between fork and exec."""
        rss = float("nan")
        try:
            with open("/proc/%d/status" % self.p.pid) as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024.0
        except (OSError, StopIteration):
            pass
        try:
            self.p.stdin.close()
        except OSError:
            pass
        os.kill(self.p.pid, signal.SIGCONT)
        self.status = self.p.wait()
        return rss


def bench_point(model, batch, a, env, ours_bin):
    ours = Worker([ours_bin, model, str(batch)], env)
    try:
        theirs = Worker([sys.executable, os.path.abspath(__file__), "--worker", model, str(batch), str(a.threads)],
                        env)
    except RuntimeError:
        ours.close()
        raise
    try:
        if ours.params != theirs.params:
            raise RuntimeError("%s: parameter counts differ, ours %d, torch %d" % (model, ours.params,
                                                                                   theirs.params))
        if ours.threads != a.threads or theirs.threads != a.threads:
            raise RuntimeError("%s: threads differ, ours %d, torch %d, asked %d" % (model, ours.threads,
                                                                                    theirs.threads, a.threads))
        # the same number of steps per repetition on both sides, enough for about a.seconds
        k = max(1, min(50, round(a.seconds / max(ours.warm, theirs.warm))))
        t_ours, t_torch = [], []
        for _ in range(a.reps):
            t_ours.append(batch * k / ours.run(k))
            t_torch.append(batch * k / theirs.run(k))
    finally:
        rss_ours, rss_torch = ours.close(), theirs.close()
    return ours.params, k, t_ours, t_torch, rss_ours, rss_torch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", default="build/tests/bench_torch", help="our worker binary")
    p.add_argument("--models", default=" ".join(MODELS))
    p.add_argument("--batches", default="16 64 256 1024")
    p.add_argument("--skip", default="vit_b_16:1024",
                   help="model:batch pairs left out (a step takes minutes), space-separated; '' runs all")
    p.add_argument("--reps", type=int, default=3, help="repetitions per side, interleaved")
    p.add_argument("--seconds", type=float, default=0.8, help="target length of one repetition")
    p.add_argument("--threads", type=int, default=0, help="0: OMP_NUM_THREADS, else the usable cores")
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        torch_worker(a.worker[0], int(a.worker[1]), int(a.worker[2]))
        return 0
    try:
        import torch
        import torchvision   # noqa: F401
    except ImportError as e:
        print("bench-torch: skipped: %s under %s (Debian: apt-get install python3-torch python3-torchvision)"
              % (e, sys.executable))
        return 0
    if not os.access(a.ours, os.X_OK):
        print("bench_torch.py: error: %s is not built (make bench-torch builds it)" % a.ours, file=sys.stderr)
        return 2
    models, batches = a.models.split(), [int(b) for b in a.batches.split()]
    bad = [m for m in models if m not in MODELS]
    if bad or not batches or min(batches) < 1 or a.reps < 1 or a.seconds <= 0:
        print("bench_torch.py: error: models must be among %s (got %s), batches positive, reps >= 1"
              % (" ".join(MODELS), " ".join(bad) or "-"), file=sys.stderr)
        return 2
    # one thread count and one waiting policy for both sides: the tools' bounded spin
    # (CLI_OMP_SPINCOUNT in tools/cli.h) unless the user chose a policy
    if a.threads <= 0:
        a.threads = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["GOMP_SPINCOUNT"] = "3000"
    skip = set(a.skip.split())
    load = os.getloadavg()
    print("bench-torch: torch %s (%s), %d threads, OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s, %d interleaved "
          "repetitions of ~%.1f s a side, load average %.2f %.2f %.2f" % (
              torch.__version__, sys.executable, a.threads, env.get("OMP_WAIT_POLICY", "unset"),
              env.get("GOMP_SPINCOUNT", "unset"), a.reps, a.seconds, *load))
    print("samples/s: median [min-max] of the repetitions; ratio = ours/torch of the medians\n")
    print("%-19s %5s %5s %23s %23s %7s %9s %9s" % ("model", "batch", "steps", "ours samples/s", "torch samples/s",
                                                   "ratio", "ours MiB", "torch MiB"))
    status, t0 = 0, time.time()
    for m in models:
        for b in batches:
            if "%s:%d" % (m, b) in skip:
                print("%-19s %5d  skipped: --skip (make bench-torch SKIP=...) leaves it out" % (m, b))
                continue
            try:
                n, k, to, tt, ro, rt = bench_point(m, b, a, env, a.ours)
            except (RuntimeError, OSError) as e:
                print("%-19s %5d  failed: %s" % (m, b, e))
                status = 1
                continue
            mo, mt = statistics.median(to), statistics.median(tt)
            print("%-19s %5d %5d %7.1f [%6.1f-%6.1f] %7.1f [%6.1f-%6.1f] %6.2fx %9.0f %9.0f" % (
                m, b, k, mo, min(to), max(to), mt, min(tt), max(tt), mo / mt, ro, rt), flush=True)
    load = os.getloadavg()
    print("\n%.0f s in all, load average at the end %.2f %.2f %.2f; peak RSS: each side's own process (VmHWM),"
          " torch's includes the Python interpreter and the torch libraries" % (time.time() - t0, *load))
    return status


if __name__ == "__main__":
    sys.exit(main())
