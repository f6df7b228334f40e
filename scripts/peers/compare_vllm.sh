#!/usr/bin/env bash
# One side-by-side run: `treadle serve --model default` vs vLLM CPU on the same fp32 weights, alternating rounds.
# Run it under the CPU lock (it starts both servers and loads the machine):
#   flock /tmp/treadle-cpu.lock scripts/peers/compare_vllm.sh docs/results/compare-vllm.json
# Extra arguments after the output file go to `treadle bench compare`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: compare_vllm.sh OUT.json [bench compare flags]}; shift
LOGS=${PEERS:-/work/peers}
mkdir -p "$LOGS"
"$ROOT/scripts/peers/vllm_cpu.sh" >"$LOGS/vllm.log" 2>&1 & VLLM=$!
"$ROOT/.venv/bin/treadle" serve --model default --host 127.0.0.1 --port 8000 --log-level warning \
  >"$LOGS/treadle.log" 2>&1 & TREADLE=$!
trap 'kill $VLLM $TREADLE 2>/dev/null || true; wait 2>/dev/null || true' EXIT
t0=$(date +%s)
for url in http://127.0.0.1:8000/ready http://127.0.0.1:8001/health; do
  until curl -sf "$url" >/dev/null; do
    kill -0 $VLLM $TREADLE || { echo "a server exited; see $LOGS/*.log" >&2; exit 1; }
    [ $(( $(date +%s) - t0 )) -lt 600 ] || { echo "servers not ready in 600 s" >&2; exit 1; }
    sleep 2
  done
done
echo "both ready after $(( $(date +%s) - t0 )) s" >&2
"$ROOT/.venv/bin/treadle" bench compare --out "$OUT" treadle=http://127.0.0.1:8000 vllm=http://127.0.0.1:8001 \
  --workload sharegpt --num-requests 64 --concurrency 16 --max-tokens 64 --max-prompt-tokens 512 --rounds 2 \
  --slo ttft_ms=5000,tpot_ms=300 --max-seconds 240 --no-progress "$@"
