"""A real replica's own steps against cost files' fits, by kind of step (docs/SIMULATION.md, "fifth session"):
the step logs a `treadle serve` wrote during real `treadle bench serve` runs (`TREADLE_STEP_LOG=FILE`), each
step's measured seconds over the fit's prediction for its shape. Per kind: steps, the summed ratio (sum of
measured / sum of predicted: what a run's time sees) and the median ratio.

Usage: .venv/bin/python scripts/sim_diag/step_log_vs_fit.py THREADS COST[,COST...] LOG [LOG...]   (LOG may be .gz)
"""

import sys
from pathlib import Path

import numpy as np

from treadle.sim.cost_model import Fit, StepShape, load_cost_model
from treadle.sim.served_steps import read_steps

KINDS = (
    ("decode-only, 1 row", lambda s: s.prefill_tokens == 0 and s.decode_rows == 1),
    ("decode-only, 2-4 rows", lambda s: s.prefill_tokens == 0 and 2 <= s.decode_rows <= 4),
    ("decode-only, 5-16 rows", lambda s: s.prefill_tokens == 0 and s.decode_rows >= 5),
    ("prompt chunk, nothing gathered", lambda s: s.prefill_tokens > 0 and s.prefill_gather == 0),
    ("prompt chunk after < 600 tokens", lambda s: s.prefill_tokens > 0 and 0 < s.prefill_gather < 0.6),
    ("prompt chunk after >= 600 tokens", lambda s: s.prefill_tokens > 0 and s.prefill_gather >= 0.6),
)


def table(steps: list[tuple[StepShape, float]], fit: Fit) -> list[str]:
    rows = []
    for name, member in (*KINDS, ("all steps", lambda s: True)):
        sel = [(s, t) for s, t in steps if member(s)]
        if not sel:
            continue
        t = np.array([x for _, x in sel])
        p = np.array([fit.seconds(s) for s, _ in sel])
        rows.append(f"| {name} | {len(sel)} | {t.mean() * 1e3:.1f} | {t.sum() / p.sum():.2f} | {np.median(t / p):.2f} |")
    return rows


def main() -> None:
    threads, costs, *logs = sys.argv[1:]
    steps = [st for log in logs for st in read_steps(Path(log))]
    for cost in costs.split(","):
        fit = load_cost_model(cost).fits[int(threads)]
        print(f"\n{cost} ({threads} threads), {len(steps)} steps from {len(logs)} logs\n")
        print("| kind | steps | mean ms | measured / fit, summed | median |\n| --- | --- | --- | --- | --- |")
        print("\n".join(table(steps, fit)))


if __name__ == "__main__":
    main()
