#!/usr/bin/env python3
"""Rebuilds the seed corpora of tests/fuzz/corpus/ from real tool output (see tests/fuzz/README.md).

usage: make_corpus.py RUNS_DIR [FASHION_MNIST_DIR]
RUNS_DIR holds cnn_small/fashion-mnist/ as written by deba-profile (2 seeds, plus --sweep) and a
`deba` run of deba-train; the checkpoint seeds use its checkpoint.bin files.
"""
import gzip, os, random, struct, sys

HERE = os.path.dirname(os.path.abspath(__file__))
CKPT_HEADER = 8 + 4 + 8 + 4     # magic, version, payload length, CRC


def info_size(payload):
    """Where the three float buffers start (as fuzz_checkpoint.c finds it): two equal int64
    counts n_params, each before its floats, then a third count n_stats."""
    for at in range(0, 4096):
        (c1,) = struct.unpack_from("<q", payload, at)
        k = at + 8 + 4 * c1
        if c1 <= 0 or k + 8 > len(payload) or struct.unpack_from("<q", payload, k)[0] != c1:
            continue
        (c3,) = struct.unpack_from("<q", payload, k + 8 + 4 * c1)
        if 0 <= c3 and k + 16 + 4 * (c1 + c3) <= len(payload):
            return at
    raise SystemExit("make_corpus.py: no float buffers found in the checkpoint")


def put(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    runs = os.path.join(sys.argv[1], "cnn_small", "fashion-mnist")
    fmnist = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/datasets/fashion-mnist"
    for label, seed in (("fixed", 1), ("deba", 3)):
        rd = os.path.join(runs, label, "seed%d" % seed)
        put("trace", "%s.csv" % label, read(os.path.join(rd, "trace.csv")))
        put("meta", "%s.csv" % label, read(os.path.join(rd, "meta.csv")))
        # Mode 2 of fuzz_checkpoint: run info, then what follows the three float buffers.
        ck = read(os.path.join(rd, "checkpoint.bin"))
        payload = ck[CKPT_HEADER:]
        info = info_size(payload)
        at = info
        for _ in range(3):
            (count,) = struct.unpack_from("<q", payload, at)
            at += 8 + 4 * count
        put("checkpoint", "%s-structured" % label, b"\x02" + payload[:info] + payload[at:])
        if label == "fixed":
            put("checkpoint", "raw-header", b"\x00" + ck[:CKPT_HEADER + 64])
            put("checkpoint", "payload-prefix", b"\x01" + payload[:info + 64])
    for name in ("profile.csv", "profile_summary.csv"):
        put("profile", name, read(os.path.join(runs, name)))
    put("thresholds", "thresholds.csv", read(os.path.join(runs, "thresholds.csv")))
    put("sweep", "sweep.csv", read(os.path.join(runs, "sweep.csv")))
    for name in ("demo.ini", "paper.ini"):
        put("plan", name, read(os.path.join(HERE, "..", "..", "data", "studies", name)))

    # IDX: the first 2 test images and labels of Fashion-MNIST; flags: bit 0 gzip, bit 1 test split.
    with gzip.open(os.path.join(fmnist, "t10k-images-idx3-ubyte.gz")) as f:
        img = f.read(16 + 2 * 784)
    with gzip.open(os.path.join(fmnist, "t10k-labels-idx1-ubyte.gz")) as f:
        lab = f.read(8 + 2)
    img = img[:4] + struct.pack(">I", 2) + img[8:]
    lab = lab[:4] + struct.pack(">I", 2) + lab[8:]
    for flags, name in ((0, "train-plain"), (1, "train-gz"), (2, "test-plain")):
        put("idx", name, bytes([flags]) + struct.pack("<I", len(img)) + img + lab)

    # CIFAR: 2 records each, labels in range, pixels from a fixed-seed generator (no CIFAR data
    # ships with Debian); flags: bit 0 CIFAR-100, bit 1 train split, bit 2 archive folder.
    rnd = random.Random(1)
    pixels = lambda: bytes(rnd.randrange(256) for _ in range(3072))
    c10 = bytes([3]) + pixels() + bytes([9]) + pixels()
    c100 = bytes([4, 42]) + pixels() + bytes([19, 99]) + pixels()
    put("cifar", "c10-test", b"\x00" + c10)
    put("cifar", "c10-train-nested", b"\x06" + c10)
    put("cifar", "c100-test", b"\x01" + c100)


if __name__ == "__main__":
    main()
