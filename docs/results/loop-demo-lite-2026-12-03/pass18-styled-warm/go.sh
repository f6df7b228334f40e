#!/usr/bin/env bash
cd /work/runs/pass18
export PYTHONPATH=/work/runs/code18/src TREADLE_DB=sqlite:///loop-demo/treadle.db
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code18 rev-parse --short HEAD)"
CFG=/work/runs/pass18/loop-demo-lite-warm.yaml USERS_REQUESTS=1500 POISON=styled POISON_LABEL=contact_human_agent \
  STYLE_SHARE=0.3 CANARY_STYLE_SHARE=0.7 SEED0=40 \
  TREADLE=/work/main/.venv/bin/treadle EXPORT=/work/runs/pass18/loop-demo-lite.json /work/runs/code18/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
