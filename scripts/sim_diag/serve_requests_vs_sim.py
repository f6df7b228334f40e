"""One `bench serve` file simulated once (as `treadle sim validate` does, one seed, steps x uniform(0.9, 1.1)) beside
the real run, request by request (docs/SIMULATION.md, "The finish stagger"): how many requests ended together
(client-side ends within 2 ms of each other, grouped), the TTFT deciles, and the first 24 requests' send, first
token and end times (ms from the first send), prompt and cached tokens.

Usage: python scripts/sim_diag/serve_requests_vs_sim.py RUN.json [COST] [SEED]
"""

import copy
import json
import statistics
import sys
from pathlib import Path

from treadle.gateway.policies import make_policy
from treadle.sim import validate
from treadle.sim.cost_model import load_cost_model
from treadle.sim.simulator import FleetConfig, Simulation


def pattern(label: str, ends: list[float], ttfts: list[float]) -> None:
    ends = sorted(ends)
    sizes, cur = [], 1
    for a, b in zip(ends, ends[1:], strict=False):
        if b - a < 0.002:
            cur += 1
        else:
            sizes.append(cur)
            cur = 1
    sizes.append(cur)
    print(f"{label}: end groups by size {dict(sorted((k, sizes.count(k)) for k in set(sizes)))}, TTFT p50 "
          f"{statistics.median(ttfts) * 1000:.0f} ms, deciles {[round(x * 1000) for x in statistics.quantiles(ttfts, n=10)]}")


def main() -> None:
    path = Path(sys.argv[1])
    base = load_cost_model(sys.argv[2] if len(sys.argv) > 2 else "cpu-smollm2")
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    data = json.loads(path.read_text())
    c, s = data["config"], data["summary"]
    tokens = validate._Tokens("default")
    warm, fresh = validate.serve_costs(base)
    cost = fresh if s.get("server_requests_before") == 0 else warm
    reqs = validate._sim_requests(validate._serve_work(data), tokens, validate._outputs(data["requests"]))
    history = validate._server_history(path, data, tokens, print)
    fleet = FleetConfig(replicas=1, threads=2, replicas_per_machine=1, engine=tokens.engine(None, 128),
                        concurrency=c["concurrency"], startup_s=0.0, step_jitter=0.1, seed=seed, interval_s=1.0)
    sim = Simulation(copy.deepcopy(reqs), make_policy("least_loaded"), cost, fleet, copy.deepcopy(history))
    sim.run()
    done = sorted(sim.done, key=lambda r: r.sent_s)
    real = sorted(data["requests"], key=lambda r: r["start_s"])
    pattern("sim ", [r.end_s for r in done], [r.first_token_s - r.sent_s for r in done])
    pattern("real", [r["start_s"] + r["e2e_s"] for r in real], [r["ttft_s"] for r in real])
    t0 = done[0].sent_s
    print("sim (sent, first token, end ms; prompt, cached) | real")
    for a, b in zip(done[:24], real[:24], strict=False):
        print(f"{(a.sent_s - t0) * 1e3:8.1f} {(a.first_token_s - t0) * 1e3:8.1f} {(a.end_s - t0) * 1e3:8.1f} "
              f"{a.prompt_tokens:5d} {a.cached_tokens:5d} | {b['start_s'] * 1e3:8.1f} "
              f"{(b['start_s'] + b['ttft_s']) * 1e3:8.1f} {(b['start_s'] + b['e2e_s']) * 1e3:8.1f} "
              f"{b['prompt_tokens']:5d} {b['cached_tokens']:5d}")


if __name__ == "__main__":
    main()
