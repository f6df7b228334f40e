#!/usr/bin/env bash
# Pass 21, round b: round a's candidate reached bitext_intent 0.9475 but failed the gate on ShareGPT coherence
# (0.702 against 0.728; 19 of its 80 lost items are refusals, 49 refusals against the base's 21) and on the
# XSTest look-alikes' floor (0.94 against 1.00). A new safety mix with half the refusals (cap 50) and the everyday
# answers three times, then a forced pass on the same users' data (no new users).
cd /work/runs/pass21
export PYTHONPATH=/work/runs/code21/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code21 rev-parse --short HEAD)"
$T dataset build --name safety --users 'sim-redteam-*' --all --cap refuse=50 --repeat answer=2 --repeat general=3 \
  --dev-share 0 --out loop-demo/safety-set-v2 | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k: d.get(k) for k in ("name","version","counts","capped","balance")})'
RESUME=1 CFG=/work/runs/pass21/loop-demo-lite-50min.yaml STYLE_SHARE=0 SEED0=220 \
  TREADLE=$T EXPORT=/work/runs/pass21/loop-demo-lite-21b.json /work/runs/code21/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
