"""Ends of requests that a replica prefilled together, from `bench serve` files (docs/SIMULATION.md, "The finish
stagger"): requests whose first tokens reached the client within 1.5 ms of each other (one step) and that have
as many output tokens finish in one step too; how long after the group's first end did the 2nd, 3rd, ... end?

Usage: python scripts/sim_diag/finish_groups.py RUN.json [RUN.json ...]
"""

import json
import statistics
import sys


def main() -> None:
    lag: dict[int, list[float]] = {}
    for f in sys.argv[1:]:
        reqs = json.load(open(f))["requests"]
        rows = sorted((r["start_s"] + r["ttft_s"], r["start_s"] + r["e2e_s"], r["output_tokens"]) for r in reqs
                      if r.get("ttft_s") is not None and r.get("e2e_s") is not None)
        groups, cur = [], [rows[0]]
        for x in rows[1:]:
            if x[0] - cur[-1][0] < 0.0015:
                cur.append(x)
            else:
                groups.append(cur)
                cur = [x]
        groups.append(cur)
        for g in groups:
            if len(g) > 1 and len({x[2] for x in g}) == 1:
                ends = sorted(x[1] for x in g)
                for i in range(1, len(ends)):
                    lag.setdefault(i + 1, []).append((ends[i] - ends[0]) * 1000)
    for k, xs in sorted(lag.items()):
        qs = statistics.quantiles(xs, n=4) if len(xs) > 1 else xs
        print(f"end #{k} after #1: n {len(xs)}, median {statistics.median(xs):.1f} ms, quartiles "
              f"{', '.join(f'{q:.1f}' for q in qs)} ms")


if __name__ == "__main__":
    main()
