#!/usr/bin/env bash
# Pass 21: one round from the bundled base model on a fresh store, with the template-aware near-duplicate pass
# (commit e2717a3): every shipped Bitext train request asked once by simulated users (plain style, honest experts),
# so the build keeps ~2,200 intent records instead of ~1,100. Target: bitext_intent >= 0.95 on the served alias.
cd /work/runs/pass21
export PYTHONPATH=/work/runs/code21/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code21 rev-parse --short HEAD)"
CFG=/work/runs/pass21/loop-demo-lite-50min.yaml USERS_REQUESTS=3811 STYLE_SHARE=0 SEED0=210 \
  SAFETY_MIX_ARGS='--cap refuse=100 --repeat answer=2 --repeat general=2' \
  TREADLE=$T EXPORT=/work/runs/pass21/loop-demo-lite-21.json /work/runs/code21/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
