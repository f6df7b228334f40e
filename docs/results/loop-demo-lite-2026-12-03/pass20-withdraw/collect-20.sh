#!/usr/bin/env bash
# Gather pass 20's results (rounds D and E in pass 19's store) into docs/results/loop-demo-lite-2026-12-03/pass20-withdraw
set -u
cd /work/runs/pass19
export PYTHONPATH=/work/runs/code20/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle PY=/work/main/.venv/bin/python S=/work/main/scripts
O=/work/main/docs/results/loop-demo-lite-2026-12-03/pass20-withdraw
mkdir -p $O
cp go-D.sh go-E.sh go-F.sh collect-20.sh withdraw-BC.json withdraw-D.json loop-demo-lite-warm-noninf.yaml $O/
for x in -D -E -F; do tr '\r' '\n' < demo$x.log | grep -v -E '[0-9]+%\|' | grep -v '^\s*$' > $O/demo$x.log; done
cp loop-demo-lite-D.json loop-demo-lite-E.json loop-demo-lite-F.json sim-D.json sim-E.json $O/ 2>/dev/null
cp loop-demo/canary-1.json $O/canary-F.json
CFG=loop-demo-lite-warm.yaml
$T loop status --config $CFG --json > $O/loop-status.json
$T registry history support-bot > $O/alias-history.json 2>/dev/null
for v in 4 5 6; do
  $T registry show support-bot-r$v > $O/registry-r$v.json 2>/dev/null || rm -f $O/registry-r$v.json
  [ -f loop-demo/work/run-$v/gate-verdict.json ] && cp loop-demo/work/run-$v/gate-verdict.json $O/gate-verdict-run$v.json
  [ -f loop-demo/work/run-$v/eval-gating/summary.json ] && $PY $S/gating_diff.py loop-demo/work/run-$v/eval-gating \
    loop-demo/work/run-1/eval-gating --poison-label contact_human_agent > $O/gating-diff-r$v-vs-r1.json
done
for b in 1 2 3; do
  $PY $S/dataset_overlap.py --db $TREADLE_DB loop-demo:4 loop-demo:$b --poison-label contact_human_agent > $O/dataset-overlap-v4-v$b.json
done
for b in 1 4; do
  $PY $S/dataset_overlap.py --db $TREADLE_DB loop-demo:5 loop-demo:$b --poison-label contact_human_agent > $O/dataset-overlap-v5-v$b.json 2>/dev/null || rm -f $O/dataset-overlap-v5-v$b.json
done
$PY $S/canary_by_style.py --config $CFG --run 6 --poison-label contact_human_agent > $O/canary-by-style-run6.json
$PY $S/canary_unsafe_flags.py --config $CFG --run 6 > $O/canary-unsafe-flags-run6.json 2>/dev/null || rm -f $O/canary-unsafe-flags-run6.json
ls -la $O
