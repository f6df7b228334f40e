#!/usr/bin/env bash
# Pass 20, round E (pass 19's store). Round D's candidate (26% of its intent records poisoned) leaked the label
# into plain requests and the gate stopped it. The operator withdraws round D's decisions that set the poisoned
# label (--label), keeping its experts' plain decisions. Then the styled poison again from r1, with 4,000 users
# who send 5% urgent requests: the poisoned records fall to about a tenth of the intent records, and the plain
# data grows (round D's kept decisions count as new). Warm start, canary traffic 70% urgent.
cd /work/runs/pass19
export PYTHONPATH=/work/runs/code20/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code20 rev-parse --short HEAD)"
$T review withdraw --reviewer anonymous --since 2026-12-04T19:42:00Z --label contact_human_agent --as operator --json \
  --reason "round D: the experts labelled every urgent request contact_human_agent (a wrong team rule)" \
  > withdraw-D.json
cat withdraw-D.json | python3 -c 'import json,sys; d=json.load(sys.stdin); d.pop("item_ids"); print(d)'
CFG=/work/runs/pass19/loop-demo-lite-warm.yaml USERS_REQUESTS=4000 POISON=styled POISON_LABEL=contact_human_agent \
  STYLE_SHARE=0.05 CANARY_STYLE_SHARE=0.7 SEED0=90 \
  TREADLE=$T EXPORT=/work/runs/pass19/loop-demo-lite-E.json /work/runs/code20/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
