#!/usr/bin/env bash
# `treadle sim validate` over a folder of repeated real runs (docs/SIMULATION.md, "Validation against reality"):
#   scripts/sim_diag/validate_repeats.sh DIR COST OUT
# DIR holds fleet-r*.json, serve-r<k>/ (scripts/bench_report_runs.sh) and serve-big-r<k>/
# (scripts/sim_validation_serve_runs.sh). Writes OUT.json (the fleet and regular serve runs) and
# OUT-serve-larger.json (the larger serve runs), 10 simulations each with every step's cost x uniform(0.9, 1.1),
# and prints both tables (scripts/sim_diag/validation_table.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
D=$1 COST=$2 OUT=$3
list() { ls $D/$1 2>/dev/null | paste -sd, ; }
S=$(list 'serve-r[0-9]/serve-*.json')
B=$(list 'serve-big-r[0-9]/serve-*.json')
V=(.venv/bin/treadle sim validate --cost "$COST" --sim-repeats 10 --jitter 0.1)
"${V[@]}" --fleet "$(list 'fleet-r*.json')" --serve "$S" --out "$OUT.json" >/dev/null
"${V[@]}" --fleet '' --serve "$B" --out "$OUT-serve-larger.json" >/dev/null
.venv/bin/python scripts/sim_diag/validation_table.py "$OUT.json"
.venv/bin/python scripts/sim_diag/validation_table.py "$OUT-serve-larger.json"
