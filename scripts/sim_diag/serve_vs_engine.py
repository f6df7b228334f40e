"""Where a served prompt's TTFT goes: the same ShareGPT chat prompts sent one at a time to a real 2-thread
replica (`treadle serve`, as `bench serve` runs it), then prefilled by the engine alone in this process, by the
wall clock. For each prompt, over HTTP: the client's TTFT, the replica's own TTFT (engine arrival -> first
token, from `/metrics`) and its queue time (engine arrival -> first scheduled); engine alone: the prefill
steps' time. 8 prompts warm up each side; the next N are printed.

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/serve_vs_engine.py [N=24] [OUT.json]
"""

import asyncio
import json
import sys
import time

import httpx

from treadle.bench.arrivals import Arrival
from treadle.bench.loadgen import run_load
from treadle.bench.summary import scrape_metrics
from treadle.bench.workloads import make_workload
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.fleet.launchers.base import ReplicaSpec
from treadle.fleet.launchers.local import LocalLauncher
from treadle.sampling_params import SamplingParams
from treadle.server.command import served_name
from treadle.sim.calibrate import _timed_steps
from treadle.sim.cost_model import load_cost_model

TTFT, QUEUE = "treadle_time_to_first_token_seconds", "treadle_request_queue_time_seconds"


def served(work: list) -> list[dict]:
    """Send each request alone to a fresh 2-thread replica; per request: client and engine timings (s)."""
    launcher = LocalLauncher(ReplicaSpec("default", 2, ("--max-queue", "-1")))
    rows = []
    try:
        rep = asyncio.run(launcher.start())
        while True:
            try:
                if httpx.get(f"{rep.url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        name = served_name("default", None)
        for r in work:
            before = scrape_metrics(rep.url)
            [rec] = asyncio.run(run_load(rep.url, name, [r], arrival=Arrival(concurrency=1)))
            after = scrape_metrics(rep.url)
            if not rec.ok:
                raise RuntimeError(f"request {r.id} failed: {rec.error}")
            d = {k: after[f"{k}_sum"] - before.get(f"{k}_sum", 0.0) for k in (TTFT, QUEUE)}
            rows.append({"prompt_tokens": rec.prompt_tokens, "cached": rec.cached_tokens, "client_ttft": rec.ttft_s,
                         "engine_ttft": d[TTFT], "queue": d[QUEUE]})
    finally:
        asyncio.run(launcher.close())
    return rows


def alone(work: list) -> list[dict]:
    """Prefill each prompt (chat template applied) in this process's engine; per prompt: steps' time (s)."""
    eng = LLMEngine(EngineConfig(model="default", threads=2))
    one = SamplingParams(max_tokens=1, ignore_eos=True)
    rows = []
    for r in work:
        ids = eng.tokenize_prompt(r.messages)[1]
        out: list = []
        eng.add_request(None, ids, one, prompt_token_ids=ids)
        _timed_steps(eng, out, "wall")
        rows.append({"prompt_tokens": len(ids), "steps": len(out), "prefill": sum(t for _, t in out),
                     "fit": sum(FIT.seconds(s) for s, _ in out), "computed": sum(s.prefill_tokens for s, _ in out)})
    return rows


FIT = load_cost_model("cpu-smollm2").fits[2]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    work = make_workload("sharegpt", 8 + n, 0, 1)
    s, e = served(work), alone(work)
    print("tokens computed | alone ms | fit ms | served engine ttft ms (queue) | client ttft ms | engine-in-serve "
          "minus alone | client minus engine")
    for a, b in list(zip(s, e, strict=True))[8:]:
        print(f"{a['prompt_tokens']:5d} {b['computed']:5d} | {b['prefill'] * 1e3:7.1f} | {b['fit'] * 1e3:7.1f} | "
              f"{a['engine_ttft'] * 1e3:7.1f} ({a['queue'] * 1e3:4.1f}) | {a['client_ttft'] * 1e3:7.1f} | "
              f"{(a['engine_ttft'] - b['prefill']) * 1e3:+6.1f} | {(a['client_ttft'] - a['engine_ttft']) * 1e3:+5.1f}")
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            json.dump({"served": s, "alone": e}, f, indent=1)


if __name__ == "__main__":
    main()
