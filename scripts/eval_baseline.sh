#!/usr/bin/env bash
# The bundled model's quality baseline (docs/QUALITY.md): one `treadle serve --model default`, then
# `treadle eval` on each suite named (default: all five built-in suites, every item), into OUT_DIR.
# Loads the machine for about an hour with every suite; run under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/eval_baseline.sh eval-baseline [SUITE ...]
# A suite already in OUT_DIR/summary.json is replaced; the others are kept.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-eval-baseline}
shift || true
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(bitext_intent clinc150_intent bitext_reply coherence safety)
T="$ROOT/.venv/bin/treadle"
PORT=${PORT:-8000}
URL=http://127.0.0.1:$PORT
"$T" serve --model default --host 127.0.0.1 --port "$PORT" --max-num-seqs 64 --log-level warning \
  >/tmp/treadle-eval-serve.log 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null || true; wait $SRV 2>/dev/null || true' EXIT
until curl -sf "$URL/ready" >/dev/null; do kill -0 $SRV; sleep 1; done
for s in "${SUITES[@]}"; do
  "$T" eval --base-url "$URL/v1" --model smollm2-135m-instruct --concurrency 32 --out "$OUT" --no-progress --suite "$s"
done
