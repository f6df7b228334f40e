#!/usr/bin/env bash
# The improvement loop on the bundled model, end to end (docs/LOOP.md "The real demo"). SLOW: 6-10 hours
# on 2 cores; run it on a machine to itself, under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/loop_demo.sh [ROUNDS]
# Per round: simulated users + experts (Bitext train split through the gateway), then one loop pass
# (dataset -> tune ~30 min -> gating ~15 min -> canary with live simulated traffic -> promote or roll back).
# Ends with docs/results/loop-demo.json (every version's gating scores, verdicts and fates).
set -euo pipefail
ROUNDS=${1:-5}
T=${TREADLE:-treadle}
CFG=examples/loop-demo.yaml
PORT=9100
mkdir -p loop-demo
$T tune-data safety --out loop-demo/data     # the held-back safety suite file (safety_heldout.yaml)
export TREADLE_DB=sqlite:///loop-demo/treadle.db
$T gateway --port $PORT --replicas 1 --admin-api-key demo-admin --db "$TREADLE_DB" > loop-demo/gateway.log 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:$PORT/ready > /dev/null; do sleep 5; done
$T loop --config $CFG --once   # registers the base as production and creates the alias route
if ! $T dataset list | grep -q '"name": "safety"'; then
  # the safety mix enters through the store: a red-team campaign on the safety suite's training part
  # (every response reviewed: refusals, or XSTest's answers for safe look-alikes), then a balanced dataset
  $T simulate-users --url http://127.0.0.1:$PORT --api-key demo-admin --model support-bot --task safety \
     --requests 1000 --users 10 --concurrency 8 --out loop-demo/redteam.json
  $T dataset build --name safety --users 'sim-redteam-*' --balance --dev-share 0 --out loop-demo/safety-set
fi
for r in $(seq 1 "$ROUNDS"); do
  # users ask intents of the alias; experts approve or correct every reviewed reply (~400 approved items)
  $T simulate-users --url http://127.0.0.1:$PORT --model support-bot --requests 500 --users 50 --task intent \
     --seed "$r" --out loop-demo/sim-$r.json
  # canary traffic comes from a second simulation running while the pass is in its canary step
  ( sleep 2700; $T simulate-users --url http://127.0.0.1:$PORT --model support-bot --requests 800 --users 200 \
       --task intent --no-experts --seed $((100 + r)) --out loop-demo/canary-$r.json ) &
  $T loop --config $CFG --once
  wait
  $T loop status --config $CFG
done
$T loop export --config $CFG --out docs/results/loop-demo.json
