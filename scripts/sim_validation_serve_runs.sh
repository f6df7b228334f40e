#!/usr/bin/env bash
# Larger `treadle bench serve` runs for `treadle sim validate` (docs/SIMULATION.md): 32-96 requests per level,
# two repetitions (REPS="1 2", the default; REPS="3" adds a third), a fresh server for each. ~3 min each on 2
# cores; run under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/sim_validation_serve_runs.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
T=.venv/bin/treadle
URL=http://127.0.0.1:8000
for k in ${REPS:-1 2}; do
  OUT=${1:-sim-validation}/serve-big-r$k; mkdir -p $OUT
  $T serve --model default --host 127.0.0.1 --port 8000 --log-level warning >/tmp/serve-big.log 2>&1 &
  SRV=$!
  until curl -sf $URL/ready >/dev/null; do kill -0 $SRV; sleep 1; done
  common=(--base-url $URL --max-tokens 64 --slo ttft_ms=2000,tpot_ms=100 --no-progress)
  $T bench serve "${common[@]}" --workload sharegpt --num-requests 32 --concurrency 1 --seed 1 --max-prompt-tokens 512 --out $OUT/serve-sharegpt-c1.json
  $T bench serve "${common[@]}" --workload sharegpt --num-requests 64 --concurrency 4 --seed 4 --max-prompt-tokens 512 --out $OUT/serve-sharegpt-c4.json
  $T bench serve "${common[@]}" --workload sharegpt --num-requests 96 --concurrency 16 --seed 16 --max-prompt-tokens 512 --out $OUT/serve-sharegpt-c16.json
  $T bench serve "${common[@]}" --workload shared-prefix --num-prefixes 2 --prefix-tokens 800 --num-requests 96 --concurrency 4 --max-tokens 32 --out $OUT/serve-shared-prefix-c4.json
  kill $SRV; wait $SRV || true
done
