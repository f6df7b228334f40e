"""Serving-path CPU per output token, measured on a real replica, gateway and client
(``treadle sim calibrate --serving``).

The step fit (``calibrate.py``) times ``engine.step()``: schedule, model, update, output processing
(detokenization included). A served request also costs CPU outside the step, on other threads of the same
machine: the replica's event loop (HTTP, request parsing, one SSE chunk per token), the gateway (routing and
relaying every chunk) and, in ``treadle bench`` runs, the load generator reading every chunk. On a machine
whose cores are busy that CPU is taken from the steps.

Procedure: start one replica of ``model`` (``LocalLauncher``, ``threads`` threads, the same process
``treadle serve`` runs) behind an in-process gateway (least_loaded) and send a fixed ShareGPT workload
(``num_requests`` chat requests of at most ``max_prompt_tokens`` prompt tokens, ``max_tokens`` output
tokens, ``concurrency`` in flight) through it. Read
the CPU time (user + system, ``/proc/<pid>/task/<tid>/stat``) of three threads over the run: the replica's
main thread, the gateway's server thread and the load generator's (this process's calling thread). Each is
divided by the output tokens served: seconds of CPU per output token for ``replica``, ``gateway`` and
``client``. Per-request work (parsing a request, the chat template) is spread over its tokens: the
estimate holds for outputs of about ``max_tokens`` tokens.

The simulator adds the parts that share a replica's machine to its cost per decode row (``CostModel``
``overhead_parts``): ``replica`` by default; validation against ``bench`` runs also adds ``gateway`` and
``client``, which ran on the same 2 cores as the replicas.

Then the request latency outside the engine: ``latency_requests`` short requests (4 output tokens) sent one
at a time, directly to the replica and through the gateway; for each path, the client's mean TTFT minus the
engine's own mean TTFT (the replica's ``treadle_time_to_first_token_seconds``, request created in the engine
to first token): HTTP, request parsing, chat template and tokenization, the hand-over to the engine thread and
the first chunk's way back. The simulator delays each request's arrival at its replica's engine by it.
A fresh replica's first request (measured before any other, directly) is slow twice: on that path (first
template rendering, first tokenizer call, first request through the web framework) and in the engine (torch's
first run of the model: allocations, kernel set-up). At the end the same prompt is sent again
``warm_repeats`` times, each with its own ``cache_salt`` so that nothing of it is cached and it computes what
the first one computed; against their means, the first request's excess outside the engine is
``first_request_extra`` (client TTFT minus engine TTFT) and inside it ``first_step_extra`` (engine TTFT). One
first request is one sample, and it varies (0, 100 and 400 ms inside the engine in three calibrations on
2026-12-03): ``cold_repeats`` - 1 more fresh replicas (default 3 in all) each give one more, and each part is
their median (the result's ``cold_samples`` keeps them all). The simulator lengthens a fresh replica's first step by both
(``CostModel.cold_start_s``).

Then, when given the thread count's ``fit``, the **served step excess** (``step``): how much longer a served
replica's own steps take than the same steps on the engine alone. The same workload is sent again directly to
the replica (as ``treadle bench serve`` does: the load generator on the same machine), whose engine logs every
step's shape and wall seconds (``TREADLE_STEP_LOG``, ``StepLog``); right before and right after, with the
replica idle, an engine alone in this process (the replica's settings) runs the same requests in the same
closed loop (``closed_loop``), every step timed. ``step_drift`` = the engine alone's decode-only seconds over
the fit's for the same shapes, both passes summed: the machine's speed of the moment against the fit's (it
drifts by up to 30% within an hour here), taken on the loaded shapes themselves, seconds from the served
run. ``step`` = (sum over the served decode-only steps of measured - ``step_drift`` x fit) / their decode
rows. From the same served steps (their logged end times), the **step gap** (``latency["step_gap"]``,
``step_gaps``): the mean time the served engine thread spends between two steps while it has work (outputs to
the event loop, metrics, new requests, the GIL), which ``step()``'s own seconds leave out; the simulator adds it
to each served step (``CostModel.with_overhead``). Then the **finish stagger**
(``latency["finish_stagger"]``, ``finish_stagger``): requests whose final token came from one step reach
their clients one at a time (the replica's event loop ends each stream, the client takes each end and sends
its next request), a few milliseconds apart. The workload above rarely finishes two requests in one step
(its prompts are prefilled in separate chunks), so ``finish_rounds`` bursts of ``concurrency`` requests of
exactly 16 output tokens, each client sending a second request as its first ends (``_finish_bursts``), give
the sample; the simulator ends the k-th of them k staggers after the
step, and a closed loop's next request is sent then. Without it, requests that finish together are sent
again together and their prompts share every later step: a lockstep the real runs mostly escape. Until 2026-12-03's fourth session the reference was fixed
decode scenarios whose rows shared a 256-token prefix, timed once after the run: it could not follow the drift and, with a fit that priced shared
and distinct KV alike, it counted the fit's own error on a loaded replica's distinct contexts (17-28% at 16
rows) as served excess (docs/SIMULATION.md). Validation adds ``step`` (in place of ``replica`` and ``client``)
to the ``bench serve`` runs, which are this setup.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from treadle.sim.cost_model import COLD_START_KEYS, FINISH_STAGGER_KEY, STEP_GAP_KEY, Fit, StepShape, shape_of
from treadle.sim.cost_model import CPU_PARTS as PARTS
from treadle.sim.served_steps import finish_stagger, read_step_times, step_excess, step_gaps


def start_logged_server(model: str = "default", threads: int = 2):  # noqa: ANN201 - (Popen, str, Path)
    """``treadle serve`` of ``model`` on a free 127.0.0.1 port, its engine's steps logged to a fresh file
    (``StepLog``) and its hand-overs to the engine to ``enqueued.jsonl`` beside it (``EnqueueLog``); returns
    (process, base URL, step log path) once it is ready (``bench.http_throughput``; stop it with
    ``stop_server``)."""
    from treadle.bench.http_throughput import free_port, start_server
    from treadle.server.command import ENQUEUE_LOG_ENV, STEP_LOG_ENV

    log = Path(tempfile.mkdtemp(prefix="treadle-steps-")) / "steps.jsonl"
    log.touch()
    log.with_name("enqueued.jsonl").touch()
    port = free_port()
    proc, _ = start_server(model, threads, port, env={STEP_LOG_ENV: str(log),
                                                      ENQUEUE_LOG_ENV: str(log.with_name("enqueued.jsonl"))})
    return proc, f"http://127.0.0.1:{port}", log


def thread_cpu_s(pid: int, tid: int) -> float:
    """User + system CPU seconds of one thread, from ``/proc/<pid>/task/<tid>/stat``."""
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_serving(model: str, threads: int, num_requests: int = 32, concurrency: int = 4, max_tokens: int = 64,
                    seed: int = 0, max_prompt_tokens: int = 512, latency_requests: int = 8, warm_repeats: int = 3,
                    log=print, fit: Fit | None = None,  # noqa: ANN001 - a print-like function
                    cold_repeats: int = 3, finish_rounds: int = 20) -> dict:
    """Run the workload above; returns ``{part: s per output token}`` plus ``tokens``, ``requests`` and the
    settings, and with ``fit`` (the fit for ``threads``) the served step excess (``step``, ``step_drift``).
    Raises RuntimeError when the replica does not become ready or a request fails."""
    from treadle.bench.arrivals import Arrival
    from treadle.bench.http_throughput import wait_ready
    from treadle.bench.loadgen import run_load
    from treadle.bench.workloads import make_workload
    from treadle.fleet.bench_fleet import _GatewayThread
    from treadle.fleet.launchers.base import ReplicaSpec
    from treadle.fleet.launchers.local import LocalLauncher
    from treadle.gateway.app import Gateway, GatewaySettings
    from treadle.gateway.policies import make_policy
    from treadle.server.command import STEP_LOG_ENV, served_name

    served = served_name(model, None)
    alone = None
    if fit is not None:  # the engine alone, loaded before the replica starts (the replica's settings)
        from treadle.config import EngineConfig
        from treadle.engine.llm_engine import LLMEngine

        alone = LLMEngine(EngineConfig(model=model, threads=threads))
    step_log = Path(tempfile.mkdtemp(prefix="treadle-steps-")) / "steps.jsonl"
    step_log.touch()
    launcher = LocalLauncher(ReplicaSpec(model, threads, ("--max-queue", "-1"), env={STEP_LOG_ENV: str(step_log)}))
    gw = Gateway(make_policy("least_loaded"), GatewaySettings(health_interval_s=0.5), None)
    srv = _GatewayThread(gw)
    try:
        rep = asyncio.run(launcher.start())
        gw.replicas.add(rep.url, rep.replica_id)
        t0 = time.monotonic()
        while not any(r.ready_at is not None for r in gw.replicas.replicas.values()):
            if time.monotonic() - t0 > 600:
                raise RuntimeError("serving overhead: the replica was not ready within 600 s")
            time.sleep(0.1)
        pid = launcher.procs[rep.replica_id].pid
        short = make_workload("sharegpt", latency_requests, seed + 2, 4, max_prompt_tokens=max_prompt_tokens)
        cold = _ttfts(rep.url, served, short[:1], rep.url)  # a fresh replica's first request: (client, engine)
        warm = make_workload("sharegpt", 4, seed + 1, max_tokens, max_prompt_tokens=max_prompt_tokens)
        asyncio.run(run_load(srv.base, served, warm, arrival=Arrival(concurrency=concurrency)))
        work = make_workload("sharegpt", num_requests, seed, max_tokens, max_prompt_tokens=max_prompt_tokens)
        me, gw_tid = threading.get_native_id(), srv.thread.native_id
        before = {"replica": thread_cpu_s(pid, pid), "gateway": thread_cpu_s(os.getpid(), gw_tid),
                  "client": thread_cpu_s(os.getpid(), me)}
        records = asyncio.run(run_load(srv.base, served, work, arrival=Arrival(concurrency=concurrency)))
        after = {"replica": thread_cpu_s(pid, pid), "gateway": thread_cpu_s(os.getpid(), gw_tid),
                 "client": thread_cpu_s(os.getpid(), me)}
        latency = {path: _latency(base, served, short, rep.url) for path, base in
                   (("direct", rep.url), ("gateway", srv.base))}
        colds = [_cold_excess(cold, rep.url, served, short[0], warm_repeats)]
        if alone is not None:  # the same workload directly, its steps logged by the replica, between two passes
            closed_loop(alone, warm, concurrency)  # of the engine alone (warmed up as the replica was)
            alone_steps = closed_loop(alone, work, concurrency)
            skip = len(step_log.read_text().splitlines())
            records += asyncio.run(run_load(rep.url, served, work, arrival=Arrival(concurrency=concurrency)))
            timed = read_step_times(step_log, skip)
            served_steps = [(shape, sec) for shape, sec, _ in timed]
            alone_steps += closed_loop(alone, work, concurrency)
            stagger = _finish_bursts(rep.url, served, step_log, finish_rounds, concurrency, seed, max_prompt_tokens)
    finally:
        srv.stop()
        asyncio.run(launcher.close())
        shutil.rmtree(step_log.parent, ignore_errors=True)
    for _ in range(cold_repeats - 1):  # more fresh replicas: one first request each is a noisy sample
        fresh = LocalLauncher(ReplicaSpec(model, threads, ("--max-queue", "-1")))
        try:
            rep = asyncio.run(fresh.start())
            wait_ready(rep.url)
            colds.append(_cold_excess(_ttfts(rep.url, served, short[:1], rep.url), rep.url, served, short[0],
                                      warm_repeats))
        finally:
            asyncio.run(fresh.close())
    for k in COLD_START_KEYS:
        latency[k] = float(sorted(c[k] for c in colds)[len(colds) // 2])
    bad = [r for r in records if not r.ok]
    if bad:
        raise RuntimeError(f"serving overhead: {len(bad)} of {len(records)} requests failed: {bad[0].error}")
    excess = {}
    if fit is not None:
        excess = {**step_excess(served_steps, alone_steps, fit), "step_gaps": step_gaps(timed),
                  "finish_staggers": stagger}
        latency[STEP_GAP_KEY] = excess["step_gaps"]["mean_s"]
        latency[FINISH_STAGGER_KEY] = stagger["mean_s"]
    tokens = sum(r.output_tokens for r in records[: len(work)])
    out = {p: (after[p] - before[p]) / tokens for p in PARTS}
    out.update(tokens=tokens, requests=len(work), threads=threads, concurrency=concurrency, max_tokens=max_tokens,
               cpu_s={p: after[p] - before[p] for p in PARTS}, latency=latency, latency_requests=latency_requests,
               cold_samples=colds)
    out.update(excess)
    log("serving overhead per output token: " + ", ".join(f"{p} {out[p] * 1000:.3f} ms" for p in PARTS)
        + f" ({tokens} tokens, {len(work)} requests); request latency outside the engine: "
        + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in latency.items())
        + (f"; served step excess {excess['step'] * 1000:.3f} ms per decode row over {excess['step_steps']} "
           f"decode steps (the machine at {excess['step_drift']:.2f}x the fit)" if excess else ""))
    return out


def _finish_bursts(url: str, served: str, step_log: Path, rounds: int, concurrency: int, seed: int,
                   max_prompt_tokens: int) -> dict:
    """The finish stagger (``finish_stagger``) of ``rounds`` bursts at the idle replica: each a closed loop of
    ``concurrency`` clients with two requests each (ShareGPT prompts, exactly 16 output tokens), the first
    ``concurrency`` sent together, so that they are prefilled in the same step or two and finish together,
    and each client sends its next request as its first ends (what a loaded closed loop does). Only the first
    requests' ends are grouped, by the replica's logged steps."""
    from dataclasses import replace

    from treadle.bench.arrivals import Arrival
    from treadle.bench.loadgen import run_load
    from treadle.bench.workloads import make_workload

    ends: list[float] = []
    skip = len(step_log.read_text().splitlines())
    for k in range(rounds):
        work = [replace(w, ignore_eos=True) for w in make_workload("sharegpt", 2 * concurrency, seed + 10 + k, 16,
                                                                   max_prompt_tokens=max_prompt_tokens)]
        records = asyncio.run(run_load(url, served, work, arrival=Arrival(concurrency=concurrency)))
        firsts = sorted((r for r in records if r.ok and r.e2e_s is not None), key=lambda r: r.sent_clock)
        # a closed loop's record counts from its send (origin = start): its client-side end is send + e2e
        ends += [r.sent_clock + r.e2e_s for r in firsts[:concurrency]]  # type: ignore[operator]
    return finish_stagger(ends, [end for _, _, end in read_step_times(step_log, skip)])


def closed_loop(engine, work: list, concurrency: int) -> list[tuple[StepShape, float]]:  # noqa: ANN001
    """``work`` (``WorkloadRequest``s) through ``engine`` alone, ``concurrency`` in flight (the next request added
    as one finishes, as a closed-loop client does), each with its own ``max_tokens`` and ``ignore_eos``,
    greedy; (shape, wall seconds) of every step, from ``step_observer`` (restored after)."""
    from treadle.sampling_params import SamplingParams

    steps: list[tuple[StepShape, float]] = []
    before = engine.step_observer
    engine.step_observer = lambda plan, t: steps.append((shape_of(plan, engine.config.block_size), t))
    pending, inflight, n = list(work), 0, 0
    try:
        while pending or inflight:
            while pending and inflight < concurrency:
                w = pending.pop(0)
                params = SamplingParams(max_tokens=w.max_tokens, temperature=0.0, ignore_eos=w.ignore_eos)
                engine.add_request(f"closed-loop-{n}", w.messages if w.messages is not None else w.prompt, params)
                inflight, n = inflight + 1, n + 1
            inflight -= sum(1 for out in engine.step() if out.finished)
    finally:
        engine.step_observer = before
    return steps


def _cold_excess(cold: tuple[float, float], url: str, served: str, prompt, warm_repeats: int) -> dict:  # noqa: ANN001
    """A fresh replica's first request (``cold``: client and engine TTFT) against the same ``prompt`` sent
    again ``warm_repeats`` times, each with its own ``cache_salt``: ``first_request_extra`` and
    ``first_step_extra`` (module docstring)."""
    again = [_ttfts(url, served, [prompt], url, {"cache_salt": f"warm-{k}"}) for k in range(warm_repeats)]
    hot = (sum(c for c, _ in again) / warm_repeats, sum(e for _, e in again) / warm_repeats)
    return {"first_request_extra": max(0.0, (cold[0] - cold[1]) - (hot[0] - hot[1])),
            "first_step_extra": max(0.0, cold[1] - hot[1])}


def _latency(base_url: str, served: str, work: list, replica_url: str) -> float:
    """Mean client TTFT minus the engine's own over ``work`` sent one at a time (``_ttfts``): the time a
    request spends outside the engine before its first token reaches the client."""
    client, engine = _ttfts(base_url, served, work, replica_url)
    return max(0.0, client - engine)


def _ttfts(base_url: str, served: str, work: list, replica_url: str,
           extra_body: dict | None = None) -> tuple[float, float]:
    """``work`` sent one at a time: (the client's mean TTFT, the engine's own mean TTFT: request created ->
    first token, from the replica's ``treadle_time_to_first_token_seconds``), in seconds."""
    from treadle.bench.arrivals import Arrival
    from treadle.bench.loadgen import run_load
    from treadle.bench.summary import scrape_metrics

    name = "treadle_time_to_first_token_seconds"
    before = scrape_metrics(replica_url)
    records = asyncio.run(run_load(base_url, served, work, arrival=Arrival(concurrency=1), extra_body=extra_body))
    after = scrape_metrics(replica_url)
    n = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    ttfts = [r.ttft_s for r in records if r.ok and r.ttft_s is not None]
    if not n or len(ttfts) != len(work):
        raise RuntimeError(f"serving overhead: latency run incomplete ({len(ttfts)} of {len(work)} answered, "
                           f"{n:.0f} in the replica's metrics)")
    engine = (after[f"{name}_sum"] - before.get(f"{name}_sum", 0.0)) / n
    return sum(ttfts) / len(ttfts), engine
