#!/usr/bin/env bash
# The measurements behind docs/report/: `treadle serve --model default` under several workloads, then
# `treadle report` over them. Loads the machine for ~10 minutes; run under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/bench_report_runs.sh docs/results
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-docs/results}
T="$ROOT/.venv/bin/treadle"
URL=http://127.0.0.1:8000
mkdir -p "$OUT"
"$T" serve --model default --host 127.0.0.1 --port 8000 --log-level warning >/tmp/treadle-report-serve.log 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null || true; wait $SRV 2>/dev/null || true' EXIT
until curl -sf $URL/ready >/dev/null; do kill -0 $SRV; sleep 1; done
SLO=ttft_ms=2000,tpot_ms=100
common=(--base-url $URL --max-tokens 64 --slo $SLO --no-progress)
for c in 1 4 16; do  # throughput and TTFT vs concurrency
  "$T" bench serve "${common[@]}" --workload sharegpt --num-requests $((c < 4 ? 8 : 2 * c)) --concurrency $c --seed $c \
    --max-prompt-tokens 512 --max-seconds 150 --out "$OUT/serve-sharegpt-c$c.json"
done
"$T" bench serve "${common[@]}" --workload shared-prefix --num-prefixes 2 --prefix-tokens 800 --num-requests 24 \
  --concurrency 4 --max-tokens 32 --max-seconds 120 --out "$OUT/serve-shared-prefix-c4.json"
"$T" bench serve "${common[@]}" --workload azure-conv --window 600: --num-requests 32 --max-seconds 170 \
  --out "$OUT/serve-azure-conv-trace.json"
"$T" bench serve "${common[@]}" --workload mooncake --num-requests 24 --max-seconds 150 \
  --out "$OUT/serve-mooncake-trace.json"
