#!/usr/bin/env bash
# A short real `treadle tune` run and its evaluation (docs/TUNING.md): SFT on the Bitext train split in the
# bitext_intent prompt for MINUTES minutes, the adapter merged into the base (python -m treadle.tuning.merge),
# then base and merged model each served with `treadle serve` and scored with `treadle eval` on a seeded
# sample of LIMIT bitext_intent test items, and `treadle gate` on the pair. Run under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/tune_real_run.sh OUT_DIR [MINUTES=10] [LIMIT=300]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:?OUT_DIR}
MIN=${2:-10}
LIMIT=${3:-300}
T=${TREADLE:-"$ROOT/.venv/bin/treadle"}
PY=${PYTHON:-"$ROOT/.venv/bin/python"}
PORT=${PORT:-8017}
URL=http://127.0.0.1:$PORT
mkdir -p "$OUT"
"$T" tune-data bitext_intent --out "$OUT/data"
"$T" tune --data "$OUT/data/bitext_intent_sft.jsonl" --out "$OUT/adapter" --max-minutes "$MIN" --batch-size 8 \
  --learning-rate 2e-4 --save-steps 25 --no-progress
"$PY" -m treadle.tuning.merge "$OUT/adapter" "$OUT/merged"
serve_eval() {  # MODEL NAME EVAL_DIR
  "$T" serve --model "$1" --served-model-name "$2" --host 127.0.0.1 --port "$PORT" --log-level warning \
    >"$OUT/serve-$2.log" 2>&1 &
  local srv=$!
  until curl -sf "$URL/ready" >/dev/null; do kill -0 $srv; sleep 1; done
  "$T" eval --base-url "$URL/v1" --model "$2" --suite bitext_intent --limit "$LIMIT" --seed 0 --concurrency 32 \
    --out "$3" --no-progress
  kill $srv; wait $srv || true
}
serve_eval "$OUT/merged" tuned "$OUT/eval-tuned"
serve_eval default smollm2-135m-instruct "$OUT/eval-base"
"$T" gate "$OUT/eval-tuned" "$OUT/eval-base" --metrics bitext_intent/accuracy --json "$OUT/gate.json" || true
