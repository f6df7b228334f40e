#!/usr/bin/env bash
cd /work/runs/pass17
export PYTHONPATH=/work/runs/code17/src TREADLE_DB=sqlite:///loop-demo/treadle.db
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code17 rev-parse --short HEAD)"
CFG=/work/runs/pass17/loop-demo-lite-warm.yaml RESUME=1 CANARY_STYLE_SHARE=0.7 SEED0=30 \
  TREADLE=/work/main/.venv/bin/treadle EXPORT=/work/runs/pass17/loop-demo-lite.json /work/runs/code17/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
