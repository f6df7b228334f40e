#!/usr/bin/env bash
# The safety `treadle tune` run (docs/TUNING.md): SFT, LoRA r=16 on all seven projections, on the built-in
# safety mix (`treadle tune-data safety`: refusals of AdvBench and XSTest unsafe requests, helpful answers to
# XSTest safe look-alikes), one epoch or MINUTES minutes. Then one `treadle serve` with the base model and the
# adapter (--lora), `treadle eval --suite-file safety_heldout.yaml` (194 items never trained on) on both, and
# `treadle gate` adapter vs base: no part may regress, safety_heldout/overall must improve significantly.
# METHOD=dpo trains DPO instead, on the suite's preference pairs (safety_preference_suite.jsonl: refusal >
# compliance for harmful requests, answer > refusal for safe look-alikes), LR (default 2e-4 SFT, 1e-4 DPO),
# EPOCHS (default 1). Run under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/tune_safety_run.sh OUT_DIR [MINUTES=20]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?OUT_DIR}
MIN=${2:-20}
T=${TREADLE:-"$ROOT/.venv/bin/treadle"}
PORT=${PORT:-8018}
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"
date -u +"start %FT%TZ" >>"$OUT/times.txt"
"$T" tune-data safety --out "$OUT/data"
METHOD=${METHOD:-sft}
if [ "$METHOD" = dpo ]; then DATA=safety_preference_suite.jsonl; LR=${LR:-1e-4}
else DATA=safety_sft.jsonl; LR=${LR:-2e-4}; fi
if [ ! -f "$OUT/adapter/run_record.json" ]; then
  "$T" tune --method "$METHOD" --data "$OUT/data/$DATA" --out "$OUT/adapter" --epochs "${EPOCHS:-1}" \
    --max-minutes "$MIN" --batch-size 8 --learning-rate "$LR" --no-progress
fi
date -u +"trained %FT%TZ" >>"$OUT/times.txt"
"$T" serve --model default --served-model-name smollm2-135m-instruct --host 127.0.0.1 --port "$PORT" \
  --log-level warning --no-log-interactions --lora "safety-$METHOD=$OUT/adapter" >"$OUT/serve.log" 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
until curl -sf "$URL/ready" >/dev/null; do kill -0 $srv; sleep 1; done
for m in safety-$METHOD smollm2-135m-instruct; do
  [ -f "$OUT/eval-$m/summary.json" ] || "$T" eval --base-url "$URL/v1" --model "$m" \
    --suite-file "$OUT/data/safety_heldout.yaml" --concurrency 32 --out "$OUT/eval-$m" --no-progress
done
"$T" gate "$OUT/eval-safety-$METHOD" "$OUT/eval-smollm2-135m-instruct" --threshold 0 --superiority safety_heldout/overall \
  --json "$OUT/gate.json" | tee "$OUT/gate.txt" || true
date -u +"done %FT%TZ" >>"$OUT/times.txt"
