#!/bin/bash
# #19 at-scale re-run, CPU cost file (the bundled cpu-smollm2, 1-thread replicas), 2026-12-05: the autoscaler over
# the hour and the synthetic day against fixed fleets of its mean and peak, and a --target-load sweep of the
# load rule alone over the day.
source "$(dirname "$0")/common.sh"
A="--autoscale --min-replicas 1 --max-replicas 32 --downscale-delay 30 --downscale-breach-share 0"  # the defaults until 2026-12-05
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
