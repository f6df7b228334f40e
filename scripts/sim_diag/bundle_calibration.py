"""A bundled cost file from a `treadle sim calibrate` result (docs/SIMULATION.md, "Calibration on this machine").

Usage: python3 scripts/sim_diag/bundle_calibration.py RAW.json OUT.json "SOURCE"
Keeps every field `CostModel` reads, rounds the fits, serving and latency figures to 3 significant digits,
drops the raw steps (`fit_error[threads].points`, kept in RAW under docs/results/sim/) and the serving
measurement's token counts' details, and sets `source` (how the figures were taken: command, time, machine state).
"""

import json
import sys


def sig3(x: float) -> float:
    return float(f"{x:.3g}")


def main() -> None:
    raw_path, out_path, source = sys.argv[1:4]
    d = json.load(open(raw_path))
    d["source"] = source
    d["fits"] = {t: {k: (v if k == "knee" else sig3(v)) for k, v in f.items()} for t, f in d["fits"].items()}
    d["serving"] = {k: sig3(v) for k, v in d["serving"].items()}
    d["latency"] = {k: sig3(v) for k, v in d["latency"].items()}
    d["co_run_slowdown"], d["oversubscribed_slowdown"] = sig3(d["co_run_slowdown"]), sig3(d["oversubscribed_slowdown"])
    for key, rep in d["fit_error"].items():
        rep.pop("points", None)
        if key == "serving":
            rep.pop("latency", None)
    with open(out_path, "w") as f:
        json.dump(d, f)
        f.write("\n")


if __name__ == "__main__":
    main()
