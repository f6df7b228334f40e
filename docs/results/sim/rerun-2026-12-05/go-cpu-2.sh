#!/bin/bash
# #19: the same autoscaler runs with a 300-s scale-down delay (2026-12-05), and fixed fleets of their means and peaks.
set -x
cd /work/main
T=.venv/bin/treadle
O=docs/results/sim/rerun-2026-12-05
C="--cost cpu-smollm2 --threads 1 --length-scale 0.25 --policy least_loaded --slo ttft_ms=2000,tpot_ms=100 --startup 11.4"
A="--autoscale --min-replicas 1 --max-replicas 32 --downscale-delay 300"
DAY="--synthetic-day 24 --synthetic-hour-s 600"
sizes() { .venv/bin/python -c "
import json, math; r = json.load(open('$1'))['runs'][0]; print(f\"{math.ceil(r['mean_replicas'])},{r['max_replicas']}\")"; }
date -u
$T sim --trace azure-conv $C $A --ttft-slo 2 --replicas 1 --out $O/cpu-auto-hour-down300.json &
$T sim --trace azure-conv $C $A --replicas 1 --out $O/cpu-auto-hour-down300-no-ttft-slo.json
wait
$T sim --trace azure-conv $DAY $C $A --ttft-slo 2 --replicas 1 --out $O/cpu-auto-day-down300.json &
$T sim --trace azure-conv $DAY $C $A --replicas 1 --out $O/cpu-auto-day-down300-no-ttft-slo.json
wait
$T sim --trace azure-conv $C --replicas $(sizes $O/cpu-auto-hour-down300-no-ttft-slo.json) --out $O/cpu-fixed-hour-down300-sizes.json &
$T sim --trace azure-conv $DAY $C --replicas $(sizes $O/cpu-auto-day-down300-no-ttft-slo.json) --out $O/cpu-fixed-day-down300-sizes.json
wait
date -u
