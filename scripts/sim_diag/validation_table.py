"""The grouped rows of a `treadle sim validate` result as the markdown table of docs/SIMULATION.md, then how many
runs meet the issue's bar (15% on throughput and median TTFT against the real mean, 5 points on hit rate).

Usage: .venv/bin/python scripts/sim_diag/validation_table.py sim-validation.json
"""

import json
import sys

from treadle.sim.validate_groups import within_bar


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def main() -> None:
    data = json.load(open(sys.argv[1]))
    print("| run | real repeats | real req/s (scaling: out tok/s), min-max (spread) | sim mean [min-max] | vs real mean "
          "| real TTFT p50 ms, min-max (spread) | sim mean [range] | vs mean | real hit %, min-max | sim [range] "
          "| vs mean (pt) |")
    print("| --- " * 11 + "|")
    for g in data["repeated"]:
        m = g["metrics"]
        key = "output_tok_s" if "output_tok_s" in m else "requests_per_s"
        cells = [g["run"], str(g["repeats"])]
        for k, pct in ((key, True), ("ttft_p50_ms", True), ("hit_rate", False)):
            v = m.get(k)
            if v is None:
                cells += ["-"] * 3
                continue
            scale = 100 if k == "hit_rate" else 1
            cells.append(f"{fmt(v['real_min'] * scale)}-{fmt(v['real_max'] * scale)}"
                         + (f" ({v['spread']:.0%})" if pct else ""))
            cells.append(f"{fmt(v['sim_mean'] * scale)} [{fmt(v['sim_min'] * scale)}-{fmt(v['sim_max'] * scale)}]")
            cells.append(f"{v['error']:+.0%}" if pct else f"{v['error']:+.1f}")
        print("| " + " | ".join(cells) + " |")
    print()
    print("within the bar: " + ", ".join(f"{k} {a} of {b}" for k, (a, b) in within_bar(data["repeated"]).items()))


if __name__ == "__main__":
    main()
