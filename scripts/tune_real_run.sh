#!/usr/bin/env bash
# A short real `treadle tune` run and its evaluation (docs/TUNING.md): SFT on the Bitext train split in the
# bitext_intent prompt for MINUTES minutes (a checkpoint every SAVE steps), each checkpoint and the final
# adapter merged into the base (python -m treadle.tuning.merge), served with `treadle serve` and scored with
# `treadle eval` on a seeded sample of LIMIT bitext_intent test items (the base model too, as step 0);
# `treadle gate` final vs base; scripts/tune_curve.py plots accuracy against minutes of training.
# Run under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/tune_real_run.sh OUT_DIR [MINUTES=12] [LIMIT=300] [SAVE=60]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?OUT_DIR}
MIN=${2:-12}
LIMIT=${3:-300}
SAVE=${4:-60}
T=${TREADLE:-"$ROOT/.venv/bin/treadle"}
PY=${PYTHON:-"$ROOT/.venv/bin/python"}
PORT=${PORT:-8017}
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"
date -u +"start %FT%TZ" >>"$OUT/times.txt"
"$T" tune-data bitext_intent --out "$OUT/data"
"$T" tune --data "$OUT/data/bitext_intent_sft.jsonl" --out "$OUT/adapter" --max-minutes "$MIN" --batch-size 8 \
  --learning-rate 2e-4 --save-steps "$SAVE" --save-total-limit 100 --no-progress
date -u +"trained %FT%TZ" >>"$OUT/times.txt"
serve_eval() {  # MODEL NAME EVAL_DIR
  "$T" serve --model "$1" --served-model-name "$2" --host 127.0.0.1 --port "$PORT" --log-level warning \
    >"$OUT/serve-$2.log" 2>&1 &
  local srv=$!
  until curl -sf "$URL/ready" >/dev/null; do kill -0 $srv; sleep 1; done
  "$T" eval --base-url "$URL/v1" --model "$2" --suite bitext_intent --limit "$LIMIT" --seed 0 --concurrency 32 \
    --out "$3" --no-progress
  kill $srv; wait $srv || true
}
serve_eval default smollm2-135m-instruct "$OUT/eval-step-0"
for ck in "$OUT"/adapter/checkpoints/checkpoint-*; do
  step=${ck##*-}
  "$PY" -m treadle.tuning.merge "$ck" "$OUT/merged-$step" --model default
  serve_eval "$OUT/merged-$step" "tuned-$step" "$OUT/eval-step-$step"
  rm -rf "$OUT/merged-$step"
done
last=$(ls -d "$OUT"/eval-step-* | sort -t- -k3 -n | tail -1)
"$T" gate "$last" "$OUT/eval-step-0" --metrics bitext_intent/accuracy --json "$OUT/gate.json" || true
"$PY" "$ROOT/scripts/tune_curve.py" "$OUT"
date -u +"done %FT%TZ" >>"$OUT/times.txt"
