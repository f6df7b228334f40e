"""One line per run of `treadle sim` result files (docs/SIMULATION.md, "The autoscaler ..."): replica-hours,
mean and peak replicas, SLO attainment, goodput, TTFT and TPOT, scale events; for an autoscaled synthetic day
(`--synthetic-day 24 --synthetic-hour-s 600`), the mean ready replicas and scale events per quarter of the day.

Usage: python scripts/sim_diag/autoscale_runs.py RESULT.json [RESULT.json ...]
"""

import json
import sys
from collections import Counter

SYNTHETIC_HOUR_S = 600.0


def quarters(run: dict) -> str:
    rot, events = run["replicas_over_time"], run["scale_events"] or []
    end, out = 24 * SYNTHETIC_HOUR_S, []
    for q in range(4):
        a, b = q * 6 * SYNTHETIC_HOUR_S, (q + 1) * 6 * SYNTHETIC_HOUR_S
        busy = 0.0
        for (t0, ready, _), (t1, _, _) in zip(rot, [*rot[1:], [end, 0, 0]], strict=True):
            lo, hi = max(a, t0), min(b, t1)
            if hi > lo:
                busy += ready * (hi - lo)
        out.append(f"{busy / (b - a):.1f} / {sum(1 for e in events if a <= e[0] < b)}")
    return ", ".join(out)


def main() -> None:
    for path in sys.argv[1:]:
        data = json.load(open(path))
        for run in data["runs"]:
            s, c = run["summary"], Counter(e[2] for e in run["scale_events"] or [])
            print(f"{path.split('/')[-1]} x{run['replicas']}{' (autoscaled)' if run.get('autoscale') else ''}: "
                  f"{run['replica_hours']:.2f} replica-h, mean {run['mean_replicas']:.1f}, peak {run['max_replicas']}, "
                  f"{100 * run['slo_attainment']:.1f}% within the SLO, goodput {s['goodput_req_s']:.2f} req/s, TTFT "
                  f"p50/p90/p99 {s['ttft_ms']['p50']:.0f}/{s['ttft_ms']['p90']:.0f}/{s['ttft_ms']['p99']:.0f} ms, "
                  f"TPOT p50 {s['tpot_ms']['p50']:.1f} ms, {c['scale_up']} up / {c['scale_down']} down")
            if run.get("autoscale") and "--synthetic-day" in data.get("meta", {}).get("command", ""):
                print(f"  quarters of the day (mean ready replicas / scale events): {quarters(run)}")


if __name__ == "__main__":
    main()
