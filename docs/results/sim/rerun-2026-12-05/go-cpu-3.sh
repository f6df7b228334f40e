#!/bin/bash
# #19: the autoscaler runs with the new defaults (scale-down delay 300 s, breach share 0.1; 2026-12-05), and fixed
# fleets of the --ttft-slo runs' means and peaks.
source "$(dirname "$0")/common.sh"
A="--autoscale --min-replicas 1 --max-replicas 32"
date -u
$T sim --trace azure-conv $C $A --ttft-slo 2 --replicas 1 --out $O/cpu-auto-hour-new-defaults.json &
$T sim --trace azure-conv $C $A --replicas 1 --out $O/cpu-auto-hour-new-defaults-no-ttft-slo.json
wait
$T sim --trace azure-conv $DAY $C $A --ttft-slo 2 --replicas 1 --out $O/cpu-auto-day-new-defaults.json &
$T sim --trace azure-conv $DAY $C $A --replicas 1 --out $O/cpu-auto-day-new-defaults-no-ttft-slo.json
wait
$T sim --trace azure-conv $C --replicas $(sizes $O/cpu-auto-hour-new-defaults.json) --out $O/cpu-fixed-hour-new-defaults-sizes.json &
$T sim --trace azure-conv $DAY $C --replicas $(sizes $O/cpu-auto-day-new-defaults.json) --out $O/cpu-fixed-day-new-defaults-sizes.json
wait
date -u
