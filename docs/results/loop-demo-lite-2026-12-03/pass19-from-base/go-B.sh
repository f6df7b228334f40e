#!/usr/bin/env bash
# Pass 19, round B. Round A's candidate (support-bot-r1) failed the gate against the base on ShareGPT coherence
# alone (0.705 against 0.728, LB -0.0557 against the 0.05 margin); an operator promotes it by hand (audited) so
# that the styled canary demo has a production version that answers urgent-style requests. Then pass 18's
# styled poison with a warm start from r1, gated and canaried against r1.
cd /work/runs/pass19
export PYTHONPATH=/work/runs/code19/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code19 rev-parse --short HEAD)"
$T registry promote support-bot support-bot-r1 --actor operator \
  --reason "demo setup: failed the gate only on coherence_sharegpt (LB -0.0557 vs margin 0.05); promoted by hand for the styled canary demo"
CFG=/work/runs/pass19/loop-demo-lite-warm.yaml USERS_REQUESTS=1500 POISON=styled POISON_LABEL=contact_human_agent \
  STYLE_SHARE=0.3 CANARY_STYLE_SHARE=0.7 SEED0=60 \
  TREADLE=$T EXPORT=/work/runs/pass19/loop-demo-lite-B.json /work/runs/code19/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
