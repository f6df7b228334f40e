#!/usr/bin/env bash
# Pass 19: from the base model in a fresh store. Round A: clean users (30% urgent style), full-epoch tune,
# gate and canary against the base. Round B (if A was promoted): pass 18's styled poison, warm start from A.
cd /work/runs/pass19
export PYTHONPATH=/work/runs/code19/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code19 rev-parse --short HEAD)"
CFG=/work/runs/pass19/loop-demo-lite-60min.yaml USERS_REQUESTS=1500 STYLE_SHARE=0.3 CANARY_STYLE_SHARE=0.7 SEED0=50 \
  SAFETY_MIX_ARGS='--cap refuse=100 --repeat answer=2 --repeat general=2' \
  TREADLE=$T EXPORT=/work/runs/pass19/loop-demo-lite-A.json /work/runs/code19/scripts/loop_demo.sh 1
echo "round A done rc=$? $(date -u +%FT%TZ)"
$T loop status --config /work/runs/pass19/loop-demo-lite-60min.yaml --json > status-A.json
if ! python3 -c 'import json,sys; r=json.load(open("status-A.json"))["runs"][0]; sys.exit(0 if r["outcome"]=="promoted" else 1)'; then
  echo "round A not promoted; stop"; exit 1
fi
CFG=/work/runs/pass19/loop-demo-lite-warm.yaml USERS_REQUESTS=1500 POISON=styled POISON_LABEL=contact_human_agent \
  STYLE_SHARE=0.3 CANARY_STYLE_SHARE=0.7 SEED0=60 \
  TREADLE=$T EXPORT=/work/runs/pass19/loop-demo-lite-B.json /work/runs/code19/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
