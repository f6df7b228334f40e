"""A served run's timeline, request by request (docs/SIMULATION.md, "sixth session"): where the time between a
client's send and its request's first step goes on a loaded replica.

Starts `treadle serve --model default` with its steps logged with their end times (`TREADLE_STEP_LOG`) and its
hand-overs to the engine thread logged (`TREADLE_ENQUEUE_LOG`), then sends the workload of a `bench serve`
file (RUN.json: same workload, seed, concurrency, max_tokens) from this process, as `treadle bench serve` does.
Sends and hand-overs are paired in order (the event loop takes requests first come, first served). Prints:
- inbound: send -> hand-over (client, HTTP, the replica's event loop), quantiles;
- engine wait: hand-over -> the start of the step that took the request (prompt chunks are scheduled in the
  order requests were handed over), split by whether the engine was idle or busy at the hand-over;
- the engine's gap between consecutive steps when the second continues a decode (no idle time between);
- how many requests each step's first prompt chunks took (as `burst_batching.py`).

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/sim_diag/served_timeline.py RUN.json [--out F.json]
"""

import argparse
import asyncio
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

import treadle.bench.loadgen as loadgen
from treadle.bench.arrivals import Arrival
from treadle.bench.http_throughput import stop_server
from treadle.sim import validate
from treadle.sim.served_steps import read_step_times
from treadle.sim.serving_overhead import start_logged_server


def q(xs: list[float]) -> str:
    return f"n={len(xs)} p10/25/50/75/90 {np.percentile(np.array(xs) * 1e3, [10, 25, 50, 75, 90]).round(2)} ms"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--out")
    p.add_argument("--gateway", action="store_true", help="send through an in-process gateway (least_loaded), as "
                   "`treadle bench fleet` and `sim calibrate --serving` do")
    a = p.parse_args()
    data = json.loads(Path(a.run).read_text())
    c = data["config"]
    work = validate._serve_work(data)
    srv, url, log = start_logged_server()
    try:
        enq_path = log.with_name("enqueued.jsonl")
        with urllib.request.urlopen(f"{url}/v1/models", timeout=60) as r:
            model = json.loads(r.read())["data"][0]["id"]
        target, gw_thread = url, None
        if a.gateway:
            from treadle.fleet.bench_fleet import _GatewayThread
            from treadle.gateway.app import Gateway, GatewaySettings
            from treadle.gateway.policies import make_policy

            gw = Gateway(make_policy("least_loaded"), GatewaySettings(health_interval_s=0.5), None)
            gw_thread = _GatewayThread(gw)
            gw.replicas.add(url, "r0")
            while not any(r.ready_at is not None for r in gw.replicas.replicas.values()):
                time.sleep(0.1)
            target = gw_thread.base
        try:
            records = asyncio.run(loadgen.run_load(target, model, work, arrival=Arrival(concurrency=c["concurrency"])))
        finally:
            if gw_thread is not None:
                gw_thread.stop()
        bad = [r for r in records if not r.ok]
        if bad:
            raise SystemExit(f"{len(bad)} of {len(records)} requests failed: {bad[0].error}")
        steps = read_step_times(log)
        handed = sorted(json.loads(x)["t"] for x in enq_path.read_text().splitlines() if x.strip())
    finally:
        stop_server(srv)
    # each record's sent_clock (the client's perf_counter) and the replica's monotonic times are one clock on Linux
    sends = sorted(r.sent_clock for r in records)
    if len(handed) != len(sends):
        raise SystemExit(f"{len(handed)} hand-overs for {len(sends)} sends")
    inbound = [h - s for s, h in zip(sends, handed, strict=True)]
    starts = [(end - sec, end, shape) for shape, sec, end in steps]
    # the k-th hand-over's first prompt chunk is in the step holding the k-th new chunk: count chunks by step
    firsts, idle_wait, busy_wait, gaps = [], [], [], []
    k = 0
    for i, (st, _end, shape) in enumerate(starts):
        if i and shape.decode_rows:  # requests were running at the previous step's end: no idle time
            gaps.append(st - starts[i - 1][1])
        new = 0
        while k < len(handed) and handed[k] <= st and new < shape.prefill_chunks:
            busy = any(s0 < handed[k] < e0 for s0, e0, _ in starts[max(0, i - 3):i])
            (busy_wait if busy else idle_wait).append(st - handed[k])
            k, new = k + 1, new + 1
        if new:
            firsts.append(new)
    out = {"inbound_s": inbound, "idle_wait_s": idle_wait, "busy_wait_s": busy_wait, "step_gaps_s": gaps,
           "new_per_step": dict(Counter(firsts)), "ttft_s": [r.ttft_s for r in records if r.ttft_s is not None]}
    print(f"{a.run}: {len(records)} requests, {len(steps)} steps")
    print("inbound (send -> hand-over):", q(inbound))
    print("engine wait, idle at hand-over:", q(idle_wait) if idle_wait else "none")
    print("engine wait, busy at hand-over:", q(busy_wait) if busy_wait else "none")
    print("gap between consecutive steps:", q(gaps))
    print("TTFT:", q(out["ttft_s"]))
    print("new requests per step (count of steps):", sorted(Counter(firsts).items()))
    if a.out:
        Path(a.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
