#!/usr/bin/env bash
# The real `treadle tune` run and its evaluation (docs/TUNING.md): SFT on the 3,612-example Bitext train split
# in the bitext_intent prompt (r=16, all seven projections, one epoch or MINUTES minutes, whichever ends first;
# a checkpoint every SAVE steps). Then ONE `treadle serve` with the base model and every checkpoint and the
# final adapter loaded with --lora; `treadle eval --suite bitext_intent` on each by its model name: a seeded
# sample of LIMIT test items per checkpoint for the learning curve (scripts/tune_curve.py -> OUT/curve.png),
# all 902 items for the base model and the final adapter; `treadle gate` final vs base on the 902.
# Run under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/tune_real_run.sh OUT_DIR [MINUTES=40] [LIMIT=300] [SAVE=75]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?OUT_DIR}
MIN=${2:-40}
LIMIT=${3:-300}
SAVE=${4:-75}
T=${TREADLE:-"$ROOT/.venv/bin/treadle"}
PY=${PYTHON:-"$ROOT/.venv/bin/python"}
PORT=${PORT:-8017}
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"
date -u +"start %FT%TZ" >>"$OUT/times.txt"
"$T" tune-data bitext_intent --out "$OUT/data"
if [ ! -f "$OUT/adapter/run_record.json" ]; then
  "$T" tune --data "$OUT/data/bitext_intent_sft.jsonl" --out "$OUT/adapter" --epochs 1 --max-minutes "$MIN" \
    --batch-size 8 --learning-rate 2e-4 --save-steps "$SAVE" --save-total-limit 100 --no-progress
fi
date -u +"trained %FT%TZ" >>"$OUT/times.txt"
final=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['metrics']['steps'])" "$OUT/adapter/run_record.json")
loras=(--lora "tuned-$final=$OUT/adapter")
for ck in "$OUT"/adapter/checkpoints/checkpoint-*; do
  step=${ck##*-}
  [ "$step" = "$final" ] || loras+=(--lora "tuned-$step=$ck")
done
"$T" serve --model default --served-model-name smollm2-135m-instruct --host 127.0.0.1 --port "$PORT" \
  --log-level warning --no-log-interactions "${loras[@]}" >"$OUT/serve.log" 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
until curl -sf "$URL/ready" >/dev/null; do kill -0 $srv; sleep 1; done
ev() {  # MODEL OUT_DIR [LIMIT]
  local lim=()
  [ -n "${3:-}" ] && lim=(--limit "$3")
  [ -f "$2/summary.json" ] || "$T" eval --base-url "$URL/v1" --model "$1" --suite bitext_intent "${lim[@]}" --seed 0 \
    --concurrency 32 --out "$2" --no-progress
}
ev smollm2-135m-instruct "$OUT/eval-step-0" "$LIMIT"
for ck in "$OUT"/adapter/checkpoints/checkpoint-*; do
  step=${ck##*-}
  ev "tuned-$step" "$OUT/eval-step-$step" "$LIMIT"
done
ev "tuned-$final" "$OUT/eval-step-$final" "$LIMIT"
ev "tuned-$final" "$OUT/eval-final-full"
ev smollm2-135m-instruct "$OUT/eval-base-full"
"$T" gate "$OUT/eval-final-full" "$OUT/eval-base-full" --metrics bitext_intent/accuracy --threshold 0 \
  --superiority bitext_intent/accuracy --json "$OUT/gate.json" | tee "$OUT/gate.txt" || true
"$PY" "$ROOT/scripts/tune_curve.py" "$OUT"
date -u +"done %FT%TZ" >>"$OUT/times.txt"
