"""One real `treadle bench serve` run against its simulation, request by request (docs/SIMULATION.md, "fifth
session"): the TTFT percentiles of both, the prompt tokens and cached tokens both saw, and how the simulated
replica batched the prompt chunks (steps by (prompt chunks, decode rows)), and how many requests the clients sent
within 1 ms of the one before (a closed loop's successors of requests that ended together); with `--real-steps LOG`, the same
count over the real replica's step log (`TREADLE_STEP_LOG`, plain or .gz) for a run that was the last of its
server and ran at most `--rows` in flight (the steps after the last step with more decode rows than that).

`--arrivals serial` (a diagnostic, not in `treadle sim`): requests reach the replica's engine one after another,
each `request_latency` after the previous one (one event loop handling them in turn) instead of all
`request_latency` after they were sent.

Usage: .venv/bin/python scripts/sim_diag/serve_run_vs_sim.py RUN.json COST [--arrivals const|serial]
       [--real-steps LOG --rows N]
"""

import argparse
import copy
import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np

import treadle.sim.simulator as simulator
from treadle.gateway.policies import make_policy
from treadle.sim import validate
from treadle.sim.cost_model import load_cost_model, shape_of
from treadle.sim.replica import SimReplica
from treadle.sim.served_steps import read_steps


def serial_arrivals() -> None:
    """Patch the simulator: a replica's DELIVER events at least ``request_latency_s`` apart, in order."""
    push = simulator.Simulation._push

    def serial(self, t, kind, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if kind == simulator.DELIVER:
            rep = args[0][0]
            t = max(t, getattr(rep, "_front_free", 0.0) + self.cost.request_latency_s)
            rep._front_free = t
        return push(self, t, kind, *args, **kw)

    simulator.Simulation._push = serial


def prompt_steps(shapes) -> list:  # noqa: ANN001
    c = Counter((s.prefill_chunks, s.decode_rows) for s in shapes if s.prefill_tokens > 0)
    return sorted(c.items(), key=lambda kv: -kv[1])[:10]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("cost")
    p.add_argument("--arrivals", choices=("const", "serial"), default="const")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--real-steps")
    p.add_argument("--rows", type=int, default=4)
    a = p.parse_args()
    if a.arrivals == "serial":
        serial_arrivals()
    path = Path(a.run)
    data = json.loads(path.read_text())
    c = data["config"]
    reused, fresh = validate.serve_costs(load_cost_model(a.cost))  # as validate prices the run
    cost = fresh if data["summary"].get("server_requests_before") == 0 else reused
    tokens = validate._Tokens("default")
    reqs = validate._sim_requests(validate._serve_work(data), tokens, validate._outputs(data["requests"]))
    history = validate._server_history(path, data, tokens, print)
    shapes = []
    begin = SimReplica.begin_step

    def recording(self, now):  # noqa: ANN001, ANN202
        ends = begin(self, now)
        if ends is not None and self.current is not None:
            shapes.append(shape_of(self.current, self.scheduler.config.block_size))
        return ends

    SimReplica.begin_step = recording
    fleet = simulator.FleetConfig(replicas=1, threads=2, replicas_per_machine=1, engine=tokens.engine(None, 128),
                                  concurrency=c["concurrency"], startup_s=0.0, seed=0)
    medians = []
    for seed in range(a.seeds):
        fleet = dataclasses.replace(fleet, seed=seed)
        sim = simulator.Simulation(copy.deepcopy(reqs), make_policy("least_loaded"), cost, fleet,
                                   copy.deepcopy(history)).run()
        medians.append(float(np.median([(r.first_token_s - r.sent_s) * 1e3 for r in sim.done])))
    print(f"sim median TTFT ms by seed (spread {len(cost.latency_spread)} factors, step gap {cost.step_gap_s * 1e3:.2f} ms): {np.round(medians)}, "
          f"mean {np.mean(medians):.0f}")
    real = {r["id"]: r for r in data["requests"]}
    rows = np.array([(real[r.id]["ttft_s"] * 1e3, (r.first_token_s - r.sent_s) * 1e3, real[r.id]["prompt_tokens"],
                      r.prompt_tokens, real[r.id]["cached_tokens"], r.cached_tokens) for r in sim.done if r.id in real])
    print(f"{path} ({len(rows)} requests, arrivals {a.arrivals})")
    pr, ps, cr, cs = rows[:, 2:].mean(0)
    print(f"prompt tokens mean real {pr:.1f} sim {ps:.1f}; cached mean real {cr:.1f} sim {cs:.1f}")
    for name, col in (("real", 0), ("sim", 1)):
        print(f"TTFT ms {name:4s} p10/25/50/75/90: {np.percentile(rows[:, col], [10, 25, 50, 75, 90]).round()}, "
              f"mean {rows[:, col].mean():.0f}")
    sends = {"real": [real[r.id]["start_s"] for r in sim.done if r.id in real], "sim": [r.sent_s for r in sim.done]}
    print("requests sent within 1 ms of the one before: " + ", ".join(
        f"{k} {int((np.diff(np.sort(v)) < 1e-3).sum())}" for k, v in sends.items()))
    print("sim prompt steps (chunks, decode rows): count", prompt_steps(shapes))
    if a.real_steps:
        steps = [s for s, _ in read_steps(Path(a.real_steps))]
        last_big = max((i for i, s in enumerate(steps) if s.decode_rows > a.rows), default=-1)
        print("real prompt steps (chunks, decode rows): count", prompt_steps(steps[last_big + 1:]))


if __name__ == "__main__":
    main()
