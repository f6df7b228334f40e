#!/usr/bin/env bash
# Gather pass 21's results into docs/results/loop-demo-lite-2026-12-03/pass21-template-dedup
set -u
cd /work/runs/pass21
export PYTHONPATH=/work/runs/code21/src TREADLE_DB=sqlite:///loop-demo/treadle.db
T=/work/main/.venv/bin/treadle PY=/work/main/.venv/bin/python S=/work/runs/code21/scripts
O=/work/main/docs/results/loop-demo-lite-2026-12-03/pass21-template-dedup
CFG=loop-demo-lite-50min.yaml
mkdir -p $O
cp go.sh go-b.sh collect-21.sh $CFG $O/
for x in -a -b; do tr '\r' '\n' < demo$x.log | grep -v -E '[0-9]+%\|' | grep -v '^\s*$' > $O/demo$x.log; done
cp loop-demo-lite-21.json loop-demo-lite-21b.json loop-demo/redteam.json sim-21a.json $O/ 2>/dev/null
cp loop-demo/canary-1.json $O/canary-b.json 2>/dev/null
for v in 1 2; do  # the manifests less their per-item lineage list (the store holds it)
  $PY -c "import json,sys; m=json.load(open(sys.argv[1])); m.pop('items', None); json.dump(m, sys.stdout, indent=1)" \
    loop-demo/work/run-$v/dataset/manifest.json > $O/dataset-manifest-run$v.json
done
$T loop status --config $CFG --json > $O/loop-status.json
$T registry history support-bot > $O/alias-history.json 2>/dev/null
for v in 1 2; do
  $T registry show support-bot-r$v > $O/registry-r$v.json 2>/dev/null || rm -f $O/registry-r$v.json
  cp loop-demo/work/run-$v/gate-verdict.json $O/gate-verdict-run$v.json 2>/dev/null
  $PY $S/gating_diff.py loop-demo/work/run-$v/eval-gating loop-demo/work/evals/smollm2-135m-instruct > $O/gating-diff-r$v-vs-base.json 2>/dev/null || rm -f $O/gating-diff-r$v-vs-base.json
  [ -f loop-demo/work/run-$v/eval-full/summary.json ] && cp loop-demo/work/run-$v/eval-full/summary.json $O/eval-full-r$v-summary.json
done
ls -la $O
