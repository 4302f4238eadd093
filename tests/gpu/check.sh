#!/usr/bin/env bash
# The one prepared script for a GPU machine (see docs/performance.md, "CUDA backend"): builds
# with CUDA, runs every test program (the GPU parity test now runs instead of skipping), the
# throughput benchmark with CUPTI kernel shares, and, when PyTorch is installed, the same steps
# in PyTorch eager FP32 for the ours/torch ratio. Everything lands in ${OUT:-gpu-results}/.
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
    local line
    line=$(printf '%-10s rc=%-3s %4ss  %s' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$([ "$rc" = 124 ] && echo TIMEOUT || { [ "$rc" = 0 ] && echo ok || echo FAILED; })")
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

# The Debian packages must already be there: this machine reaches no package mirror.
if ! make --no-print-directory check-deps > "$OUT/deps.log" 2>&1; then
    echo "missing build dependencies (see $OUT/deps.log); nothing built" | tee -a "$SUMMARY"
    exit 1
fi

stage build 180 make --no-print-directory -j"$JOBS" CUDA=1 BUILD="$BUILD" all \
    "$BUILD/tests/bench_gpu" $(ls tests/test_*.c | sed "s|^tests/|$BUILD/tests/|; s|\.c$||")
if ! grep -q "rc=0" <(grep '^build' "$SUMMARY"); then
    echo "build failed: stopping" | tee -a "$SUMMARY"
    exit 1
fi

# every test program, the GPU parity test included (its lines start with "parity")
stage tests 300 env OMP_WAIT_POLICY=passive make --no-print-directory CUDA=1 BUILD="$BUILD" test
grep '^parity' "$OUT/tests.log" > "$OUT/parity.txt" || true
stage bench 120 "$BUILD/tests/bench_gpu" "$OUT/bench.csv" "$OUT/kernels.csv"

if python3 -c "import torch, torchvision; assert torch.cuda.is_available()" > "$OUT/torch_probe.log" 2>&1; then
    stage torch 150 python3 tests/gpu/torch_ref.py "$OUT/torch.csv"
    if [ -s "$OUT/bench.csv" ] && [ -s "$OUT/torch.csv" ]; then
        # ours / torch samples/s for every (model, batch) both measured
        awk -F, 'NR == FNR { if (FNR > 1 && $3 == "ok") ours[$1 "," $2] = $4; next }
                 FNR == 1 { print "model,batch,ours_samples_per_s,torch_samples_per_s,ratio"; next }
                 ($1 "," $2) in ours && $4 > 0 { printf "%s,%s,%s,%s,%.3f\n", $1, $2, ours[$1 "," $2], $4, ours[$1 "," $2] / $4 }' \
            "$OUT/bench.csv" "$OUT/torch.csv" > "$OUT/ratio.csv"
        echo "ours/torch (samples/s):"
        column -s, -t "$OUT/ratio.csv" | tee "$OUT/ratio.txt"
    fi
else
    echo "torch    skipped (no PyTorch with CUDA: see torch_probe.log)" | tee -a "$SUMMARY"
fi

echo "results in $OUT:"
ls -l "$OUT"
cat "$SUMMARY"
exit "$failed"
