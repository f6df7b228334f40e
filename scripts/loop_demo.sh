#!/usr/bin/env bash
# The improvement loop on the bundled model, end to end (docs/LOOP.md "The real demo"). SLOW: 6-10 hours
# on 2 cores; run it on a machine to itself, under the CPU lock:
#   flock /tmp/treadle-cpu.lock scripts/loop_demo.sh [ROUNDS]
# One round in about an hour: CFG=examples/loop-demo-lite.yaml USERS_REQUESTS=450 scripts/loop_demo.sh 1
# The red team's scope: SAFETY_PARTS (suite parts, default all three) and GENERAL (everyday prompts, 300).
# Per round: simulated users + experts (Bitext train split through the gateway), then one loop pass
# (dataset -> tune ~30 min -> gating ~15 min -> canary with live simulated traffic -> promote or roll back).
# RESUME=1: send no users in the first round; its loop pass resumes the store's unfinished run (after a crash or
# a fixed config) or starts one though the trigger has not fired (after a new safety mix version).
# RETRY_RUN=N RETRY_REASON=...: with RESUME=1, first reopen run N whose canary rolled back (`treadle loop retry`);
# round 1 then runs its canary again, with live traffic, without retraining.
# SAFETY_MIX_ARGS: how the safety mix is built from the red team's reviews (default --balance; e.g.
# '--cap refuse=150 --repeat answer=2').
# Ends with docs/results/loop-demo.json (every version's gating scores, verdicts and fates).
set -euo pipefail
ROUNDS=${1:-5}
T=${TREADLE:-treadle}
CFG=${CFG:-examples/loop-demo.yaml}
USERS_REQUESTS=${USERS_REQUESTS:-500}
PORT=9100
mkdir -p loop-demo
$T tune-data safety --out loop-demo/data     # the held-back safety suite file (safety_heldout.yaml)
export TREADLE_DB=sqlite:///loop-demo/treadle.db
$T gateway --port $PORT --launch 1 --replica-threads 2 --model default --served-model-name smollm2-135m-instruct \
  --admin-api-key demo-admin --db "$TREADLE_DB" > loop-demo/gateway.log 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:$PORT/ready > /dev/null; do kill -0 $GW; sleep 5; done  # a dead gateway ends the script
if [ -n "${RETRY_RUN:-}" ]; then
  $T loop retry --config $CFG --run "$RETRY_RUN" --reason "${RETRY_REASON:?RETRY_REASON is required with RETRY_RUN}" \
     --actor loop_demo.sh
else
  $T loop sync --config $CFG   # registers the base as production (first use) and serves the alias; runs no pass
fi
if ! $T dataset list | grep -q '"name": "safety"'; then
  # the safety mix enters through the store: a red-team campaign on the safety suite's training part
  # (every response reviewed: refusals, or XSTest's answers for safe look-alikes), then a balanced dataset
  $T simulate-users --url http://127.0.0.1:$PORT --api-key demo-admin --model support-bot --task safety \
     --requests 1000 --users 10 --concurrency 8 --general "${GENERAL:-300}" --general-max-tokens "${GENERAL_MAX_TOKENS:-256}" \
     --safety-parts "${SAFETY_PARTS:-advbench,xstest_unsafe,xstest_safe}" --out loop-demo/redteam.json
  # shellcheck disable=SC2086
  $T dataset build --name safety --users 'sim-redteam-*' ${SAFETY_MIX_ARGS:---balance} --dev-share 0 --out loop-demo/safety-set
fi
for r in $(seq 1 "$ROUNDS"); do
  # users ask intents of the alias; experts approve or correct every reviewed reply (~400 approved items)
  # POISON=all|styled makes this round's experts bad (the gate's and the canary's demos); STYLE_SHARE sends
  # urgent-style requests (URGENT: and capitals), which the gating sets never ask; POISON_LABEL=INTENT makes every
  # poisoned decision that one intent (e.g. complaint) instead of the next intent in sorted order
  if [ "${RESUME:-0}" != 1 ] || [ "$r" != 1 ]; then
    $T simulate-users --url http://127.0.0.1:$PORT --model support-bot --requests "$USERS_REQUESTS" --users 50 --task intent \
       --style-share "${STYLE_SHARE:-0}" --poison "${POISON:-none}" ${POISON_LABEL:+--poison-label "$POISON_LABEL"} --seed "$((${SEED0:-0} + r))" --out loop-demo/sim-$r.json
  fi
  # canary traffic: a second simulation, started once the pass reaches its canary step (none if the gate stops it)
  FORCE=""; if [ "${RESUME:-0}" = 1 ] && [ "$r" = 1 ]; then FORCE=--force; fi
  $T loop --config $CFG --once $FORCE &
  LOOP=$!
  while kill -0 $LOOP 2>/dev/null; do
    if $T loop status --config $CFG --json | python3 -c \
        'import json,sys; r=json.load(sys.stdin)["runs"]; sys.exit(0 if r and r[0]["step"] == "canary" and r[0]["status"] == "running" else 1)'; then
      $T simulate-users --url http://127.0.0.1:$PORT --model support-bot --requests "${CANARY_REQUESTS:-1500}" \
         --users 200 --task intent --no-experts --style-share "${CANARY_STYLE_SHARE:-${STYLE_SHARE:-0}}" \
         --seed $((100 + ${SEED0:-0} + r)) --out loop-demo/canary-$r.json || true
      break
    fi
    sleep 30
  done
  wait $LOOP
  $T loop status --config $CFG
done
$T loop export --config $CFG --out "${EXPORT:-docs/results/loop-demo.json}"
