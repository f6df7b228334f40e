#!/usr/bin/env bash
# #19: three real `bench fleet` Mooncake least_loaded runs (the validation configuration) whose records now name each
# request's replica, each replayed in the simulator request by request.
cd /work/main
echo "lock acquired $(date -u +%FT%TZ) code $(git rev-parse --short HEAD)"
for r in 1 2 3; do
  .venv/bin/python scripts/sim_diag/fleet_decisions.py /work/runs/mc/fleet-mc-ll-r$r.json /work/runs/mc/decisions-r$r.log \
    --workloads mooncake --policies least_loaded --scaling '' > /work/runs/mc/bench-r$r.log 2>&1
  .venv/bin/python scripts/sim_diag/replay_fleet_run.py cpu-smollm2 /work/runs/mc/fleet-mc-ll-r$r.json mooncake least_loaded \
    > /work/runs/mc/replay-r$r.txt 2>&1
  tail -3 /work/runs/mc/replay-r$r.txt
done
echo "done $(date -u +%FT%TZ)"
