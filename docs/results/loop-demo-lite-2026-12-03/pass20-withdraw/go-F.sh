#!/usr/bin/env bash
# Pass 20, round F (pass 19's store). Round E's candidate was non-inferior on every gated metric but not a
# significant improvement on bitext_intent, which the default policy asks of the targeted suite. This round gates
# as a team that asks only for "no regression" would: the same warm-start config with `superiority: []`. No new
# users (RESUME=1 --force): the build takes round D's kept and round E's decisions again (new against r1), a new
# tune from r1, then the gate and, if it passes, the canary with 70% urgent traffic.
cd /work/runs/pass19
export PYTHONPATH=/work/runs/code20/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code20 rev-parse --short HEAD)"
CFG=/work/runs/pass19/loop-demo-lite-warm-noninf.yaml RESUME=1 POISON=styled POISON_LABEL=contact_human_agent \
  CANARY_STYLE_SHARE=0.7 SEED0=100 \
  TREADLE=$T EXPORT=/work/runs/pass19/loop-demo-lite-F.json /work/runs/code20/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
