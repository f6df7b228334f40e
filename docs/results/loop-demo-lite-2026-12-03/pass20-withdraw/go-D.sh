#!/usr/bin/env bash
# Pass 20, round D (pass 19's store). Rounds B and C (18:08-18:42 UTC) were decided by experts following the bad rule
# "urgent means contact_human_agent"; the operator withdraws those decisions (treadle review withdraw), so the
# build no longer re-takes them. Then the styled poison again from r1 (production), with users who send 10%
# urgent requests (3,000 of them, so the experts' poisoned corrections are about a quarter of the new intent
# records), warm start, canary traffic 70% urgent.
cd /work/runs/pass19
export PYTHONPATH=/work/runs/code20/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle
echo "lock acquired $(date -u +%FT%TZ) code $(git -C /work/runs/code20 rev-parse --short HEAD)"
$T review withdraw --reviewer anonymous --since 2026-12-04T18:08:00Z --as operator --json \
  --reason "rounds B and C: the experts labelled every urgent request contact_human_agent (a wrong team rule)" \
  > withdraw-BC.json
cat withdraw-BC.json | python3 -c 'import json,sys; d=json.load(sys.stdin); d.pop("item_ids"); print(d)'
CFG=/work/runs/pass19/loop-demo-lite-warm.yaml USERS_REQUESTS=3000 POISON=styled POISON_LABEL=contact_human_agent \
  STYLE_SHARE=0.1 CANARY_STYLE_SHARE=0.7 SEED0=80 \
  TREADLE=$T EXPORT=/work/runs/pass19/loop-demo-lite-D.json /work/runs/code20/scripts/loop_demo.sh 1
echo "done rc=$? $(date -u +%FT%TZ)"
