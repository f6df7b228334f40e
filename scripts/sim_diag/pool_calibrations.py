"""One cost file whose fit for some thread counts pools the measured steps of several `treadle sim calibrate` runs
(docs/SIMULATION.md, "Calibration on this machine"): the machine's speed drifts by up to ~20% within an hour here,
so calibrations taken at the start and at the end of a measurement window are fitted together, each step weighed
as in one calibration (`treadle.sim.calibrate.fit`).

Usage: python3 scripts/sim_diag/pool_calibrations.py BASE.json THREADS OUT.json A.json B.json ...
BASE gives everything else (the other thread counts' fits, co-run, serving, latency, engine). Prints each pooled
fit and its mean/max error on every input's own steps; OUT keeps the pooled points and those errors under
`fit_error[threads]`.
"""

import json
import sys

from treadle.sim.calibrate import errors, fit
from treadle.sim.cost_model import COEFFS, StepShape, from_step_point, step_point


def _steps(raw: dict, threads: str) -> list[tuple[StepShape, float]]:
    return [from_step_point(pt) for pt in raw["fit_error"][threads]["points"]]


def main() -> None:
    base_path, threads, out_path, *inputs = sys.argv[1:]
    base = json.load(open(base_path))
    per_file = {path: _steps(json.load(open(path)), threads) for path in inputs}
    pooled = [pt for pts in per_file.values() for pt in pts]
    f = fit(pooled)
    report = {"pooled_from": inputs, "in_sample": errors(f, pooled),
              "per_input": {path: errors(f, pts) for path, pts in per_file.items()},
              "clock": base["fit_error"].get(threads, {}).get("clock"),
              "points": [step_point(s, t) for s, t in pooled]}
    base["fits"][threads] = {k: getattr(f, k) for k in COEFFS} | {"knee": f.knee}
    base["fit_error"][threads] = report
    base["source"] += f"; the {threads}-thread fit pooled from {', '.join(inputs)} (scripts/sim_diag/pool_calibrations.py)"
    with open(out_path, "w") as out:
        json.dump(base, out, indent=1)
    print(f"threads {threads}: " + ", ".join(f"{k}={getattr(f, k):.3g}" for k in COEFFS)
          + f"; {len(pooled)} steps, mean abs error {report['in_sample']['mape']:.1%}")
    for path, e in report["per_input"].items():
        print(f"  on {path}'s steps: mean {e['mape']:.1%}, max {e['max_ape']:.0%}, signed "
              f"{sum(f.seconds(s) / t - 1 for s, t in per_file[path]) / len(per_file[path]):+.1%}")


if __name__ == "__main__":
    main()
