#!/bin/bash
# #19: the autoscaler defaults checked on a second trace (2026-12-05): the Azure code trace as a synthetic day,
# old defaults (30-s scale-down delay, any breach blocks) against the new ones, with and without --ttft-slo, and
# fixed fleets of the new --ttft-slo run's mean and peak.
set -x
cd /work/main
T=.venv/bin/treadle
O=docs/results/sim/rerun-2026-12-05
C="--trace azure-code --synthetic-day 24 --synthetic-hour-s 600 --cost cpu-smollm2 --threads 1 --length-scale 0.25 --policy least_loaded --slo ttft_ms=2000,tpot_ms=100 --startup 11.4"
A="--autoscale --min-replicas 1 --max-replicas 32 --replicas 1"
OLD="--downscale-delay 30 --downscale-breach-share 0"
sizes() { .venv/bin/python -c "
import json, math; r = json.load(open('$1'))['runs'][0]; print(f\"{math.ceil(r['mean_replicas'])},{r['max_replicas']}\")"; }
date -u
$T sim $C $A $OLD --ttft-slo 2 --out $O/code-auto-day-old-defaults.json &
$T sim $C $A $OLD --out $O/code-auto-day-old-defaults-no-ttft-slo.json
wait
$T sim $C $A --ttft-slo 2 --out $O/code-auto-day-new-defaults.json &
$T sim $C $A --out $O/code-auto-day-new-defaults-no-ttft-slo.json
wait
$T sim $C --replicas $(sizes $O/code-auto-day-new-defaults.json) --out $O/code-fixed-day-new-defaults-sizes.json
date -u
