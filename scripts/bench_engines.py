#!/usr/bin/python3
"""Two builds of deba-train against each other, the way a user runs them: one fixed-batch run of
two epochs on Fashion-MNIST resized to 1x32x32 per (model, batch), each tool with its own
defaults (its waiting policy included), and epoch 2's samples/s from trace.csv (a warm epoch;
evaluation excluded). The builds alternate, the first one changing from repeat to repeat, so a
change in the machine's load hits both alike. --load starts one `yes > /dev/null` per core beside
the runs, the competing process of docs/performance.md's "Waiting policy".

Typical use, the engine of an older commit against this one's:
    git worktree add /tmp/old <commit> && make -C /tmp/old CUDA=0 build/bin/deba-train
    scripts/bench_engines.py --engine old=/tmp/old/build/bin/deba-train \
        --engine new=build/bin/deba-train --models resnet18,densenet121 --batches 16,64 --load
An engine may carry environment settings: --engine new-passive=build/bin/deba-train:OMP_WAIT_POLICY=passive.
Writes one CSV row per run to --csv (appended) and prints a table of samples/s per engine."""
import argparse
import csv
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# training images per epoch: about 2 s of an idle epoch on a 2-core machine, at least two batches
SAMPLES = {"cnn_small": 4096, "resnet18": 1536, "resnet50": 512, "densenet121": 512, "mobilenet_v3_large": 1024,
           "efficientnet_b0": 768, "vit_tiny": 1536, "vit_b_16": 256}


def parse_engine(text):
    """NAME=PATH[:VAR=VALUE...] -> (name, path, {var: value})."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH[:VAR=VALUE...], got '{text}'")
    path, *settings = rest.split(":")
    env = {}
    for s in settings:
        var, sep, value = s.partition("=")
        if not sep or not var:
            raise argparse.ArgumentTypeError(f"'{s}' in '{text}': expected VAR=VALUE")
        env[var] = value
    if not os.access(path, os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: not an executable file")
    return name, os.path.abspath(path), env


def one_run(path, env_extra, model, batch, data, scratch):
    out = os.path.join(scratch, "run")
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    n = max(SAMPLES.get(model, 1024), 2 * batch)
    cmd = [path, "--arch", model, "--dataset", "fashion-mnist", "--image-size", "32", "--subset", str(n),
           "--test-subset", "64", "--epochs", "2", "--method", "fixed", "--batch", str(batch),
           "--bmin", str(min(batch, 32)), "--device", "cpu", "--out", out, "--quiet"]
    if data:
        cmd += ["--data", data]
    subprocess.run(cmd, check=True, env=env)
    trace = glob.glob(os.path.join(out, "**", "trace.csv"), recursive=True)[0]
    with open(trace, newline="") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["samples_per_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", action="append", type=parse_engine, required=True,
                    help="NAME=PATH[:VAR=VALUE...], twice or more")
    ap.add_argument("--models", default="cnn_small,resnet18")
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--load", action="store_true", help="one `yes` per core beside the runs")
    ap.add_argument("--data", help="Fashion-MNIST directory (deba-train's default when absent)")
    ap.add_argument("--csv", help="append one row per run here")
    a = ap.parse_args()
    if len(a.engine) < 2:
        ap.error("--engine: give at least two")
    try:
        batches = [int(b) for b in a.batches.split(",")]
    except ValueError:
        ap.error(f"--batches: expected integers separated by commas, got '{a.batches}'")
    models = a.models.split(",")
    load = "loaded" if a.load else "idle"
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(os.cpu_count() if a.load else 0)]
    results = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_engines.") as scratch, \
                open(a.csv or os.devnull, "a", newline="") as out:
            w = csv.writer(out)
            for model in models:
                for batch in batches:
                    for rep in range(a.reps):
                        k = rep % len(a.engine)
                        for name, path, env in a.engine[k:] + a.engine[:k]:
                            with open("/proc/loadavg") as f:
                                loadavg = f.read().split()[0]
                            sps = one_run(path, env, model, batch, a.data, scratch)
                            results.setdefault((model, batch), {}).setdefault(name, []).append(sps)
                            w.writerow([load, model, batch, rep, name, f"{sps:.2f}", loadavg])
                            out.flush()
    except subprocess.CalledProcessError as e:
        print(f"bench_engines: {' '.join(e.cmd)} exited with {e.returncode}", file=sys.stderr)
        return 1
    finally:
        for h in hogs:
            h.kill()
    names = [e[0] for e in a.engine]
    base = names[0]
    print(f"samples/s ({load}, {a.reps} runs each: mean [min-max]); ratios against {base}'s mean")
    print("| model | batch | " + " | ".join(names) + " | " + " | ".join(f"{n}/{base}" for n in names[1:]) + " |")
    print("|---|---:|" + "---:|" * (2 * len(names) - 1))
    for (model, batch), r in results.items():
        cells = [f"{statistics.mean(r[n]):.0f} [{min(r[n]):.0f}-{max(r[n]):.0f}]" for n in names]
        ratios = [f"{statistics.mean(r[n]) / statistics.mean(r[base]):.2f}" for n in names[1:]]
        print(f"| {model} | {batch} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
