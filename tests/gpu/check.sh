#!/usr/bin/env bash
# The one prepared script for a GPU machine (see docs/performance.md, "CUDA backend"): builds
# with CUDA (the tools plus the module build/gpu/lib/deba/libdeba-cuda.so), trains one short run
# through the module, runs the GPU parity test, the throughput benchmark with CUPTI kernel shares and,
# when PyTorch is installed, the same steps in PyTorch eager FP32 for the ours/torch ratio,
# `deba-onnx verify --device cuda` on the ONNX fixtures and conformance suite, then every other
# test program. Everything lands in ${OUT:-gpu-results}/.
# Each stage has its own timeout, and none runs past the overall budget (BUDGET_S, default 540 s,
# under the GPU machine's 10 minutes a command): a late stage gets what is left, or is skipped.
set -euo pipefail
T_START=$(date +%s)
BUDGET_S=${BUDGET_S:-540}

cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BUILD=${BUILD:-build/gpu}   # under build/, which git ignores
JOBS=$(nproc 2>/dev/null || echo 4)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
failed=0

# stage NAME SECONDS CMD...: runs CMD under timeout (SECONDS, or less if the budget has less
# left), log in $OUT/NAME.log, one line in the summary.
stage() {
    local name=$1 secs=$2 rc=0 t0 left
    shift 2
    t0=$(date +%s)
    left=$(( BUDGET_S - (t0 - T_START) - 5 ))
    if [ "$left" -lt 15 ]; then
        printf '%-10s SKIPPED (budget spent)\n' "$name" | tee -a "$SUMMARY"
        failed=1
        return 0
    fi
    [ "$secs" -le "$left" ] || secs=$left
    echo "== $name (limit ${secs}s): $*"
    timeout --kill-after=10 "$secs" "$@" > "$OUT/$name.log" 2>&1 || rc=$?
    local line took verdict=FAILED
    took=$(( $(date +%s) - t0 ))
    # 124: the limit's TERM; 137 at the limit: the KILL ten seconds later (elsewhere: killed, e.g. OOM)
    if [ "$rc" = 0 ]; then verdict=ok
    elif [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ "$took" -ge "$secs" ]; }; then verdict=TIMEOUT
    fi
    line=$(printf '%-10s rc=%-3s %4ss  %s' "$name" "$rc" "$took" "$verdict")
    echo "$line" | tee -a "$SUMMARY"
    [ "$rc" = 0 ] || { failed=1; tail -n 40 "$OUT/$name.log" || true; }
    return 0
}

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -a)"
    command -v nvidia-smi >/dev/null && nvidia-smi || echo "nvidia-smi: not found"
    "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" --version || echo "nvcc: not found"
} > "$OUT/machine.txt" 2>&1

# The Debian packages should already be there. When one is missing, install it only where apt
# can run here (root, or sudo without a password): `make deps` first, then, since that starts with
# an `apt-get update` a machine without a mirror fails, a plain install from the package lists and
# archives the machine already has. Nothing is built when a package is still missing.
apt_runner() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$(id -u)" = 0 ]; then echo env; return 0; fi
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && { echo sudo; return 0; }
    return 1
}
if ! make --no-print-directory check-deps > "$OUT/deps.log" 2>&1; then
    if runner=$(apt_runner); then
        echo "missing build dependencies: trying make deps (log in $OUT/deps.log)"
        timeout --kill-after=10 180 make --no-print-directory deps >> "$OUT/deps.log" 2>&1 || true
        missing=""
        for p in $(sed -n 's/^DEPS_PKGS *:= *//p' Makefile); do
            dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
        done
        if [ -n "$missing" ]; then
            timeout --kill-after=10 120 $runner DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing \
                >> "$OUT/deps.log" 2>&1 || true
        fi
    else
        echo "apt cannot run here (not root, no password-less sudo): not installing" >> "$OUT/deps.log"
    fi
    if ! make --no-print-directory check-deps >> "$OUT/deps.log" 2>&1; then
        echo "missing build dependencies (see $OUT/deps.log); nothing built" | tee -a "$SUMMARY"
        exit 1
    fi
fi

stage build 180 make --no-print-directory -j"$JOBS" CUDA=1 BUILD="$BUILD" all \
    "$BUILD/tests/bench_gpu" $(ls tests/test_*.c | sed "s|^tests/|$BUILD/tests/|; s|\.c$||")
if ! grep -q "rc=0" <(grep '^build' "$SUMMARY"); then
    echo "build failed: stopping" | tee -a "$SUMMARY"
    exit 1
fi

BUILD_ABS=$(cd "$BUILD" && pwd)
export BUILD_ABS

# What only this machine can measure comes first, while the budget is whole: the GPU parity
# test (its lines start with "parity"), the throughput benchmark and PyTorch's figures. The
# other test programs, which the CPU machines run too, get what is left at the end.
# The CUDA backend is a module (build/gpu/lib/deba/libdeba-cuda.so) the tools dlopen: one short
# run through it first, so a module that does not load or finds no GPU fails here by name instead
# of every GPU test below skipping. It also checks CUPTI's kernels.csv end to end.
stage module 90 env OMP_WAIT_POLICY=passive "$BUILD_ABS/bin/deba-train" --arch cnn_small --dataset fashion-mnist \
    --subset 512 --test-subset 256 --epochs 1 --device cuda --quiet --out "$OUT/module-run"
stage parity 200 env OMP_WAIT_POLICY=passive DEBA_BIN="$BUILD_ABS/bin" DEBA_SRC="$PWD" \
    "$BUILD_ABS/tests/test_gpu_parity"
grep '^parity' "$OUT/parity.log" > "$OUT/parity.txt" || true
# imported ONNX graphs on the GPU: our fixtures against PyTorch's outputs, then ONNX's own
# conformance suite where Debian's libonnx-testdata is installed (none may fail)
onnx_verify() {
    local dirs="tests/onnx/verify/*"
    [ -d /usr/share/libonnx-testdata/data/node ] && dirs="$dirs /usr/share/libonnx-testdata/data/node/*/"
    # shellcheck disable=SC2086
    "$BUILD_ABS/bin/deba-onnx" verify --device cuda $dirs
}
export -f onnx_verify
stage onnx 90 bash -c onnx_verify
grep '^verify:' "$OUT/onnx.log" >> "$SUMMARY" || true
stage bench 120 "$BUILD_ABS/tests/bench_gpu" "$OUT/bench.csv" "$OUT/kernels.csv"

if python3 -c "import torch, torchvision; assert torch.cuda.is_available()" > "$OUT/torch_probe.log" 2>&1; then
    stage torch 150 python3 tests/gpu/torch_ref.py "$OUT/torch.csv"
    # what deba.torch.Monitor costs per step on CUDA (issue 11's figure; the CPU's is in docs/python.md)
    stage monitor 60 env DEBA_LIBRARY="$BUILD_ABS/lib/libdeba.so.0" python3 examples/pytorch/bench_monitor.py \
        --device cuda --steps 30
    grep '^resnet18' "$OUT/monitor.log" >> "$SUMMARY" || true
    if [ -s "$OUT/bench.csv" ] && [ -s "$OUT/torch.csv" ]; then
        # ours / torch samples/s for every (model, batch) both measured
        awk -F, 'NR == FNR { if (FNR > 1 && $3 == "ok") ours[$1 "," $2] = $4; next }
                 FNR == 1 { print "model,batch,ours_samples_per_s,torch_samples_per_s,ratio"; next }
                 ($1 "," $2) in ours && $4 > 0 { printf "%s,%s,%s,%s,%.3f\n", $1, $2, ours[$1 "," $2], $4, ours[$1 "," $2] / $4 }' \
            "$OUT/bench.csv" "$OUT/torch.csv" > "$OUT/ratio.csv"
        echo "ours/torch (samples/s):"
        # column(1) is in bsdextrautils, which a bare machine may lack
        if command -v column >/dev/null 2>&1; then column -s, -t "$OUT/ratio.csv"; else tr , '\t' < "$OUT/ratio.csv"; fi \
            | tee "$OUT/ratio.txt"
    fi
else
    echo "torch    skipped (no PyTorch with CUDA: see torch_probe.log)" | tee -a "$SUMMARY"
fi

if ! grep -q '^device,cuda$' "$OUT"/module-run/*/*/*/*/meta.csv 2>/dev/null; then
    echo "module   the run through libdeba-cuda.so did not train on cuda (see module.log)" | tee -a "$SUMMARY"
    failed=1
fi

# every other test program, as `make test` runs them (same environment, one summary line)
run_other_tests() {
    local pass=0 fail=0 names="" src t
    for src in tests/test_*.c; do
        t="$BUILD_ABS/tests/$(basename "$src" .c)"
        [ "$(basename "$t")" = test_gpu_parity ] && continue
        if DEBA_BIN="$BUILD_ABS/bin" DEBA_SRC="$PWD" OMP_WAIT_POLICY=passive "$t"; then pass=$((pass + 1))
        else fail=$((fail + 1)); names="$names $(basename "$t")"; fi
    done
    echo "programs: $pass passed, $fail failed${names:+ ($names)}"
    [ "$fail" -eq 0 ]
}
export -f run_other_tests
stage tests 300 bash -c run_other_tests

echo "results in $OUT:"
ls -l "$OUT"
cat "$SUMMARY"
exit "$failed"
