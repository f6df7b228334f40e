#!/usr/bin/env bash
cd /work/runs/pass13
export PYTHONPATH=/work/runs/code11/src TREADLE_DB=sqlite:///loop-demo/treadle.db
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code11 rev-parse --short HEAD)"
CFG=/work/runs/pass13/loop-demo-lite-32min.yaml USERS_REQUESTS=600 POISON=styled STYLE_SHARE=0.4 CANARY_STYLE_SHARE=0.7 SEED0=20 \
  TREADLE=/work/main/.venv/bin/treadle EXPORT=/work/runs/pass13/loop-demo-lite.json /work/runs/code11/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
