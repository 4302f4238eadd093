#!/usr/bin/env bash
# `make demo`: the whole DEBA workflow on real Fashion-MNIST, on CPU, in a few minutes:
# batch sweep -> profile (3 seeds, fixed batch; its verdict reads the sweep) -> calibrate ->
# train DEBA and one ablation -> report. Rerunning it reuses every finished run (nothing is retrained or lost).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${DEBA_BIN:-build/bin}
OUT=${DEMO_OUT:-demo-out}
DATA=(--arch cnn_small --dataset fashion-mnist --subset 2000 --test-subset 1000 --device cpu)
SEEDS=(1 2 3)
t0=$(date +%s)
step() { printf '\n== %s (%ds)\n' "$*" $(( $(date +%s) - t0 )); }

step "1/5 batch-size sweep: time per epoch and gradient variance against batch size"
"$B/deba-profile" "${DATA[@]}" --sweep 16,32,64,128,256,512 --sweep-steps 6 --out "$OUT/runs" \
    --force --quiet

step "2/5 profile: fixed batch 32, seeds ${SEEDS[*]} (its verdict reads the sweep)"
"$B/deba-profile" "${DATA[@]}" --seeds "$(IFS=,; echo "${SEEDS[*]}")" --epochs 8 --batch 32 \
    --out "$OUT/runs" --quiet

step "3/5 calibrate thresholds from the fixed-batch traces"
"$B/deba-calibrate" --force --out "$OUT/thresholds.csv" "$OUT/runs"

step "4/5 train DEBA with the calibrated thresholds, and the universal-threshold ablation"
for s in "${SEEDS[@]}"; do
  for cond in deba deba-universal; do
    args=(--thresholds "$OUT/thresholds.csv")
    [ "$cond" = deba-universal ] && args=(--tau 0.25 --theta 0.5 --lambda 0.10)
    "$B/deba-train" "${DATA[@]}" --epochs 8 --batch 32 --bmin 16 --bmax 512 --cooldown 2 --window 3 \
        --method deba --label "$cond" "${args[@]}" --seed "$s" --out "$OUT/runs" --resume
  done
done

step "5/5 report: tables and figures from the CSV traces"
"$B/deba-report" --force --out "$OUT/report" "$OUT/runs"

printf '\ndemo finished in %ds. Report: %s/report/index.md (and index.html); traces: %s/runs/\n' \
    $(( $(date +%s) - t0 )) "$OUT" "$OUT"
