#!/usr/bin/env bash
cd /work/runs/pass17b
export PYTHONPATH=/work/runs/code17b/src TREADLE_DB=sqlite:///loop-demo/treadle.db
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code17b rev-parse --short HEAD)"
RETRY_RUN=8 RETRY_REASON="the live unsafe check flagged the correct label recover_password (fixed: extractive answers are not judged)" \
  RESUME=1 CFG=/work/runs/pass17b/loop-demo-lite-warm.yaml CANARY_STYLE_SHARE=0.7 SEED0=31 \
  TREADLE=/work/main/.venv/bin/treadle EXPORT=/work/runs/pass17b/loop-demo-lite.json /work/runs/code17b/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
