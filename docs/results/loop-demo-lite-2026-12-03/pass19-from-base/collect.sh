#!/usr/bin/env bash
# Gather pass 19's results into docs/results/loop-demo-lite-2026-12-03/pass19-from-base
set -u
cd /work/runs/pass19
export PYTHONPATH=/work/runs/code19/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle PY=/work/main/.venv/bin/python S=/work/runs/code19/scripts
O=/work/main/docs/results/loop-demo-lite-2026-12-03/pass19-from-base
mkdir -p $O
cp go.sh go-B.sh go-C.sh collect.sh loop-demo-lite-60min.yaml loop-demo-lite-warm.yaml $O/
for x in "" -B -C; do tr '\r' '\n' < demo$x.log | grep -v -E '[0-9]+%\|' | grep -v '^\s*$' > $O/demo$x.log; done
cp loop-demo-lite-A.json loop-demo-lite-B.json loop-demo-lite-C.json status-A.json sim-A.json sim-B.json loop-demo/redteam.json $O/ 2>/dev/null
cp loop-demo/sim-1.json $O/sim-C.json; cp loop-demo/canary-1.json $O/canary-C.json 2>/dev/null
cp gating-diff-r1-vs-base.json $O/
CFG=loop-demo-lite-warm.yaml
$T loop status --config $CFG --json > $O/loop-status.json
$T registry history support-bot > $O/alias-history.json 2>/dev/null
for v in 1 2 3; do
  $T registry show support-bot-r$v > $O/registry-r$v.json 2>/dev/null
  [ -f loop-demo/work/run-$v/gate-verdict.json ] && cp loop-demo/work/run-$v/gate-verdict.json $O/gate-verdict-run$v.json
done
$PY $S/gating_diff.py loop-demo/work/run-2/eval-gating loop-demo/work/run-1/eval-gating --poison-label contact_human_agent > $O/gating-diff-r2-vs-r1.json
[ -f loop-demo/work/run-3/eval-gating/summary.json ] && $PY $S/gating_diff.py loop-demo/work/run-3/eval-gating loop-demo/work/run-1/eval-gating --poison-label contact_human_agent > $O/gating-diff-r3-vs-r1.json
$PY $S/canary_by_style.py --config $CFG --run 3 --poison-label contact_human_agent > $O/canary-by-style-run3.json 2>/dev/null || rm -f $O/canary-by-style-run3.json
$PY $S/dataset_overlap.py --db $TREADLE_DB loop-demo:3 loop-demo:2 > $O/dataset-overlap-v3-v2.json 2>/dev/null
ls -la $O
