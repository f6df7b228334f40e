#!/bin/bash
# #19: the same autoscaler runs with a 300-s scale-down delay (2026-12-05), and fixed fleets of their means and peaks.
source "$(dirname "$0")/common.sh"
A="--autoscale --min-replicas 1 --max-replicas 32 --downscale-delay 300 --downscale-breach-share 0"  # any breach blocks, as before 2026-12-05
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
