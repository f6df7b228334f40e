#!/usr/bin/env bash
cd /work/runs/pass16
export PYTHONPATH=/work/runs/code16/src TREADLE_DB=sqlite:///loop-demo/treadle.db
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code16 rev-parse --short HEAD)"
/work/main/.venv/bin/treadle dataset build --name safety --users 'sim-redteam-*' --all --cap refuse=100 --repeat answer=2 --repeat general=2 --dev-share 0 --out loop-demo/safety-set-v7 > safety-v7.json
CFG=/work/runs/pass16/loop-demo-lite-60min.yaml RESUME=1 CANARY_STYLE_SHARE=0.7 SEED0=30 \
  TREADLE=/work/main/.venv/bin/treadle EXPORT=/work/runs/pass16/loop-demo-lite.json /work/runs/code16/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
