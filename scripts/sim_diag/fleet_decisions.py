"""A real `treadle bench fleet` run with the gateway's routing decisions logged (docs/SIMULATION.md, "sixth
session"): every decision with the loads it saw (in-flight + scraped waiting per replica), from the
`treadle.gateway.decisions` logger at DEBUG, written to LOG beside the usual result file.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/fleet_decisions.py OUT.json LOG \
           [bench fleet options, e.g. --workloads shared-prefix --policies prefix_affinity --scaling '']
"""

import logging
import sys

from treadle.cli import main

if __name__ == "__main__":
    out, log_path, *rest = sys.argv[1:]
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(created).4f %(message)s"))
    decisions = logging.getLogger("treadle.gateway.decisions")
    decisions.setLevel(logging.DEBUG)
    decisions.addHandler(handler)
    decisions.propagate = False
    sys.exit(main(["bench", "fleet", "--out", out, *rest]))
