#!/bin/bash
# #19: the autoscaler defaults checked on a second trace (2026-12-05): the Azure code trace as a synthetic day,
# old defaults (30-s scale-down delay, any breach blocks) against the new ones, with and without --ttft-slo, and
# fixed fleets of the new --ttft-slo run's mean and peak.
source "$(dirname "$0")/common.sh"
C="--trace azure-code $DAY $C"
A="--autoscale --min-replicas 1 --max-replicas 32 --replicas 1"
OLD="--downscale-delay 30 --downscale-breach-share 0"
date -u
$T sim $C $A $OLD --ttft-slo 2 --out $O/code-auto-day-old-defaults.json &
$T sim $C $A $OLD --out $O/code-auto-day-old-defaults-no-ttft-slo.json
wait
$T sim $C $A --ttft-slo 2 --out $O/code-auto-day-new-defaults.json &
$T sim $C $A --out $O/code-auto-day-new-defaults-no-ttft-slo.json
wait
$T sim $C --replicas $(sizes $O/code-auto-day-new-defaults.json) --out $O/code-fixed-day-new-defaults-sizes.json
date -u
