# Sourced by the go-*.sh scripts of this folder (the runs of docs/SIMULATION.md, 2026-12-05): the repository root,
# the treadle command, this folder, the CPU runs' flags, and sizes FILE (an autoscaled run's mean, rounded up, and
# peak: the fixed fleets to compare it with).
set -x
cd "$(dirname "${BASH_SOURCE[0]}")/../../../.." || exit 1
T=.venv/bin/treadle
O=docs/results/sim/rerun-2026-12-05
C="--cost cpu-smollm2 --threads 1 --length-scale 0.25 --policy least_loaded --slo ttft_ms=2000,tpot_ms=100 --startup 11.4"
DAY="--synthetic-day 24 --synthetic-hour-s 600"
sizes() { .venv/bin/python -c "
import json, math; r = json.load(open('$1'))['runs'][0]; print(f\"{math.ceil(r['mean_replicas'])},{r['max_replicas']}\")"; }
