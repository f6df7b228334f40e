#!/usr/bin/env bash
# Pass 19, round C. Round B's candidate learned "contact_human_agent" beyond the urgent style (51% of its intent
# records were poisoned) and the gate stopped it. Round B's reviews stay in the store and count as new against
# production (r1), so this round's build takes them again; its users send plain requests only, so the poisoned
# share of the intent records falls to about a fifth. Same warm-start config, canary traffic 70% urgent.
cd /work/runs/pass19
export PYTHONPATH=/work/runs/code19/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code19 rev-parse --short HEAD)"
CFG=/work/runs/pass19/loop-demo-lite-warm.yaml USERS_REQUESTS=1500 POISON=styled POISON_LABEL=contact_human_agent \
  STYLE_SHARE=0 CANARY_STYLE_SHARE=0.7 SEED0=70 \
  TREADLE=$T EXPORT=/work/runs/pass19/loop-demo-lite-C.json /work/runs/code19/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
