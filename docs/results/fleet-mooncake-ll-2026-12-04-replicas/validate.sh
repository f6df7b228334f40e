#!/usr/bin/env bash
# The two validations of docs/SIMULATION.md "Mooncake least_loaded, request by request" (2026-12-04), from the repo root.
R=docs/results
V=$R/fleet-repeats-2026-12-03-decode-kv/fleet-r1.json,$R/fleet-repeats-2026-12-03-decode-kv/fleet-r2.json,$R/fleet-repeats-2026-12-03-decode-kv/fleet-r3.json
MC6=; MC7=; SP=
for r in 1 2 3; do
  MC6=$MC6,$R/fleet-mooncake-ll-2026-12-03-sixth/fleet-mooncake-least-loaded-alone-r$r.json
  MC7=$MC7,$R/fleet-mooncake-ll-2026-12-04-replicas/fleet-mooncake-least-loaded-r$r.json
  SP=$SP,$R/fleet-shared-prefix-2026-12-03-sixth/fleet-all3policies-r$r.json
done
for r in 1 2 3 4 5; do SP=$SP,$R/fleet-shared-prefix-2026-12-03-sixth/fleet-prefix-affinity-alone-r$r.json; done
treadle sim validate --cost cpu-smollm2 --sim-repeats 10 --jitter 0.1 --serve '' --fleet "$V$MC6$MC7" \
  --out $R/sim/sim-validation-2026-12-04-mooncake-ll.json
treadle sim validate --cost cpu-smollm2 --sim-repeats 10 --jitter 0.1 --serve '' --fleet "$V$SP$MC6$MC7" \
  --out $R/sim/sim-validation-2026-12-04-fleet-17-runs.json
