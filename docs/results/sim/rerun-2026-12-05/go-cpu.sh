#!/bin/bash
# #19 at-scale re-run, CPU cost file (the bundled cpu-smollm2, 1-thread replicas), 2026-12-05: the autoscaler over
# the hour and the synthetic day against fixed fleets of its mean and peak, and a --target-load sweep of the
# load rule alone over the day.
set -x
cd /work/main
T=.venv/bin/treadle
O=docs/results/sim/rerun-2026-12-05
C="--cost cpu-smollm2 --threads 1 --length-scale 0.25 --policy least_loaded --slo ttft_ms=2000,tpot_ms=100 --startup 11.4"
A="--autoscale --min-replicas 1 --max-replicas 32"
DAY="--synthetic-day 24 --synthetic-hour-s 600"
sizes() { .venv/bin/python -c "
import json, math; r = json.load(open('$1'))['runs'][0]; print(f\"{math.ceil(r['mean_replicas'])},{r['max_replicas']}\")"; }
date -u
$T sim --trace azure-conv $C $A --ttft-slo 2 --replicas 1 --out $O/cpu-auto-hour.json
$T sim --trace azure-conv $C --replicas $(sizes $O/cpu-auto-hour.json) --out $O/cpu-fixed-hour.json
$T sim --trace azure-conv $DAY $C $A --ttft-slo 2 --replicas 1 --out $O/cpu-auto-day.json
$T sim --trace azure-conv $DAY $C $A --replicas 1 --out $O/cpu-auto-day-no-ttft-slo.json
$T sim --trace azure-conv $DAY $C --replicas $(sizes $O/cpu-auto-day.json) --out $O/cpu-fixed-day.json
for tl in 1 2 3; do
  $T sim --trace azure-conv $DAY $C $A --target-load $tl --replicas 1 --out $O/cpu-auto-day-no-ttft-slo-target$tl.json
done
date -u
