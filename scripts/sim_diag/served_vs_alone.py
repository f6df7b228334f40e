"""Served steps against the engine alone, interleaved, at the same load (docs/SIMULATION.md, #19).

`served_step_excess.py` compares a served replica's steps with the cost file's fit scaled by one engine-alone
reference pass taken after the run; the machine's speed moves by up to 30% within minutes, so that reference
cannot follow it, and it cannot tell a served excess from a fit that is wrong for the shapes of a loaded
replica (steps mixing a prompt chunk with many decode rows). Here the same ShareGPT closed loop (chat prompts
of at most 512 tokens, 64 greedy output tokens, CONCURRENCY in flight) runs, in turn, on a real 2-thread
replica (`treadle serve`, steps logged by its engine: `TREADLE_STEP_LOG`; the load generator on the same
machine, as `treadle bench serve`) and on an engine alone in this process (the same engine settings, steps
timed by `step_observer`: `serving_overhead.closed_loop`; the replica idle meanwhile). Each round runs every level, served then alone, with a
fresh seed; the two sides see the same requests in the same order, so their prefix caches hold the same.

Per level and side: the sum of measured step seconds over the sum of the fit's, for decode-only steps and for
steps with a prompt chunk; the served/alone ratio of those is the served excess with the machine's drift
cancelled (adjacent runs), and the alone/fit ratio is the fit's own error on the loaded shapes. And the run's
wall time against the sum of its steps (``busy``): a served engine idles between steps while its event loop
hands tokens out and takes requests in, which the simulator's back-to-back steps do not have.

Usage: [COST=cpu-smollm2] flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/served_vs_alone.py [ROUNDS=2] [OUT.json]
(~2.5 min per round)
"""

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from treadle.bench.arrivals import Arrival
from treadle.bench.http_throughput import stop_server
from treadle.bench.loadgen import run_load
from treadle.bench.workloads import make_workload
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.server.command import served_name
from treadle.sim.cost_model import load_cost_model
from treadle.sim.served_steps import read_steps
from treadle.sim.serving_overhead import closed_loop, start_logged_server

LEVELS = (1, 4, 16)
MAX_TOKENS, MAX_PROMPT = 64, 512


def _work(c: int, seed: int) -> list:
    return make_workload("sharegpt", max(24, 6 * c), seed, MAX_TOKENS, max_prompt_tokens=MAX_PROMPT)


def ratios(steps: list, fit, wall: float) -> dict:  # noqa: ANN001 - a Fit
    """measured / fit summed over decode-only steps and over steps with a prompt chunk; the steps' share of
    the run's ``wall`` seconds."""
    out = {"wall_s": wall, "busy": sum(t for _, t in steps) / wall, "fit_busy": sum(fit.seconds(s) for s, _ in steps) / wall}
    for name, keep in (("decode", lambda s: s.prefill_tokens == 0), ("prompt", lambda s: s.prefill_tokens > 0)):
        sel = [(s, t) for s, t in steps if keep(s)]
        out[name] = sum(t for _, t in sel) / sum(fit.seconds(s) for s, _ in sel) if sel else None
        out[name + "_steps"] = len(sel)
    return out


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    fit = load_cost_model(os.environ.get("COST", "cpu-smollm2")).fits[2]
    engine = LLMEngine(EngineConfig(model="default", threads=2))
    srv, url, log = start_logged_server()
    rows = []
    try:
        warm = _work(4, 1000)[:8]  # both sides: first runs of the model, templates, tokenizer
        asyncio.run(run_load(url, served_name("default", None), warm, arrival=Arrival(concurrency=4)))
        closed_loop(engine, warm, 4)
        for r in range(rounds):
            for c in LEVELS:
                work = _work(c, 100 * r + c)
                a = len(log.read_text().splitlines())
                t0 = time.perf_counter()
                recs = asyncio.run(run_load(url, served_name("default", None), work, arrival=Arrival(concurrency=c)))
                t_served = time.perf_counter() - t0
                if not all(x.ok for x in recs):
                    raise SystemExit(f"served requests failed: {[x.error for x in recs if not x.ok][:1]}")
                served = read_steps(log, a)
                t0 = time.perf_counter()
                mine = closed_loop(engine, work, c)
                t_alone = time.perf_counter() - t0
                row = {"round": r, "concurrency": c, "served": ratios(served, fit, t_served),
                       "alone": ratios(mine, fit, t_alone),
                       "utc": time.strftime("%H:%M:%S", time.gmtime())}
                rows.append(row)
                s, al = row["served"], row["alone"]
                print(f"r{r} c={c:2d} {row['utc']}: decode served/fit {s['decode']:.3f} alone/fit {al['decode']:.3f} "
                      f"served/alone {s['decode'] / al['decode']:.3f} | prompt served/fit {s['prompt']:.3f} "
                      f"alone/fit {al['prompt']:.3f} served/alone {s['prompt'] / al['prompt']:.3f} "
                      f"({s['decode_steps']}+{s['prompt_steps']} / {al['decode_steps']}+{al['prompt_steps']} steps) | "
                      f"wall served {s['wall_s']:.1f} s (busy {s['busy']:.0%}) alone {al['wall_s']:.1f} s "
                      f"(busy {al['busy']:.0%}); served wall / fit's steps {1 / s['fit_busy']:.3f}",
                      flush=True)
    finally:
        stop_server(srv)
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
