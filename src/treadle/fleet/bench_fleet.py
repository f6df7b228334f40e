"""``treadle bench fleet``: routing policies compared on a fleet of real replicas, plus the scaling figure.

For each workload (``shared-prefix``: many users over ``--num-prefixes`` system prompts of
``--prefix-tokens``; ``mooncake``: the conversation trace's prefix reuse) and each policy, a fresh
fleet of ``--replicas`` ``treadle serve`` processes (cores split between them, ``--num-kv-blocks``
each, so one replica holds only a few system prompts) is started behind an in-process gateway and
the same requests are sent by the load generator (closed loop, ``--concurrency``). Fresh replicas
per run: no policy inherits another's warm caches. The prefix-cache hit rate (tokens) is the
replicas' own counters summed, before vs after; ``prefix_reuse_ideal`` is what an unbounded one-node
cache could reuse of the same prompts (``workloads.prefix_reuse``). Mooncake conversations are
sessions: a turn goes out only after its previous turn's reply, each client one conversation at a
time (``traces.make_trace_workload``). ``scaling``: throughput with 1, 2, 4 replicas
(least_loaded, ShareGPT prompts). ``cold_start_s``: the mean spawn-to-ready time of the replicas.
Targets (per workload): prefix_affinity >= 2x round_robin's hit rate, >= 30% lower median TTFT,
p99 end-to-end <= 1.1x least_loaded's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import uvicorn

from treadle.bench.arrivals import Arrival
from treadle.bench.loadgen import run_load
from treadle.bench.serve_command import ideal_reuse
from treadle.bench.summary import parse_metrics, prefix_cache_hit_rate, summarize
from treadle.bench.workloads import make_workload
from treadle.fleet.launchers.base import ReplicaSpec
from treadle.fleet.launchers.local import LocalLauncher, free_port
from treadle.fleet.routing_targets import targets
from treadle.fleet.threads import split_threads
from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app
from treadle.gateway.policies import make_policy
from treadle.gateway.prefix import load_hasher

POLICIES = ("round_robin", "least_loaded", "prefix_affinity")
HEALTH_INTERVAL_S = 0.5  # the gateway's health probe and metrics scrape period in these runs


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench-fleet.json", help="result file (kind bench-fleet; treadle report reads it)")
    p.add_argument("--model", default="default")
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--num-kv-blocks", type=int, default=300, help="KV blocks per replica (16 tokens each)")
    p.add_argument("--max-num-seqs", type=int, default=8)
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--max-load-gap", type=int, default=None,
                   help="prefix_affinity's load bound over the least loaded (default: the policy's, 4)")
    p.add_argument("--balance", choices=("gap", "cost"), default=None, help="prefix_affinity's balance rule "
                   "(default: the policy's, gap)")
    p.add_argument("--workloads", default="shared-prefix,mooncake")
    p.add_argument("--num-requests", type=int, default=96)
    p.add_argument("--mooncake-requests", type=int, default=64)
    p.add_argument("--mooncake-rows", choices=("sessions", "window"), default="sessions",
                   help="mooncake: whole conversations, each turn after the previous reply (seed 0: 51%% of prompt "
                   "tokens reusable at 64 rows) or the first rows of the trace (5%%: follow-up turns arrive minutes later)")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--num-prefixes", type=int, default=16)
    p.add_argument("--prefix-tokens", type=int, default=1000)
    p.add_argument("--scaling", default="1,2,4", help="replica counts for the scaling figure ('' to skip)")
    p.add_argument("--scaling-requests", type=int, default=48)
    p.add_argument("--append", action="store_true", help="merge into an existing --out (run parts separately)")
    p.add_argument("--seed", type=int, default=0)


def _log(msg: str) -> None:
    print(f"[bench fleet] {msg}", file=sys.stderr, flush=True)


class _GatewayThread:
    def __init__(self, gw: Gateway) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(create_gateway_app(gw), host="127.0.0.1", port=self.port, log_level="warning",
                             lifespan="on", access_log=False)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def _scrape_sum(urls: list[str]) -> dict[str, float]:
    import httpx

    total: dict[str, float] = {}
    for u in urls:
        for k, v in parse_metrics(httpx.get(f"{u}/metrics", timeout=30).text).items():
            total[k] = total.get(k, 0.0) + v
    return total


def run_fleet(args: argparse.Namespace, n: int, policy: str, requests: list, served: str, api: str
              ) -> tuple[dict, list[float], dict, list[dict]]:
    """Start ``n`` fresh replicas behind a gateway with ``policy``, run ``requests``.

    Returns (summary, cold starts, routing decisions, per-request outcomes: id, HTTP status, output tokens,
    cached tokens, TTFT; what ``treadle sim validate`` replays and compares)."""
    threads = split_threads(n)
    spec = ReplicaSpec(args.model, threads[-1], ("--num-kv-blocks", str(args.num_kv_blocks), "--max-num-seqs",
                                                 str(args.max_num_seqs), "--max-queue", "-1"))
    launcher = LocalLauncher(spec)
    params = {k: v for k, v in (("max_load_gap", args.max_load_gap), ("balance", args.balance))
              if v is not None} if policy == "prefix_affinity" else {}
    pol = make_policy(policy, **params)
    gw = Gateway(pol, GatewaySettings(health_interval_s=HEALTH_INTERVAL_S),
                 load_hasher(args.model, served) if pol.needs_prefix else None)
    srv = _GatewayThread(gw)
    try:
        t0 = time.monotonic()
        launched = [asyncio.run(launcher.start()) for _ in range(n)]
        for rep in launched:
            gw.replicas.add(rep.url, rep.replica_id)
        ready: dict[str, float] = {}
        while len(ready) < n:
            for r in list(gw.replicas.replicas.values()):
                if r.ready_at is not None and r.replica_id not in ready:
                    ready[r.replica_id] = r.ready_at - r.added_at
            if time.monotonic() - t0 > 600:
                raise RuntimeError("replicas not ready within 600 s")
            time.sleep(0.1)
        urls = [rep.url for rep in launched]
        before = _scrape_sum(urls)
        t1 = time.perf_counter()
        records = asyncio.run(run_load(srv.base, served, requests, api=api,
                                       arrival=Arrival(mode="concurrency", concurrency=args.concurrency)))
        duration = time.perf_counter() - t1
        summary = summarize(records, duration)
        summary["prefix_cache_hit_rate"] = prefix_cache_hit_rate(before, _scrape_sum(urls))
        summary["prefix_reuse_ideal"] = ideal_reuse(requests, records)
        reasons = {}
        for sample in gw.metrics.decisions.collect()[0].samples:
            if sample.name.endswith("_total"):
                reasons[sample.labels["reason"]] = int(sample.value)
        outcomes = [{"id": r.id, "status": r.status, "output_tokens": r.output_tokens, "cached_tokens": r.cached_tokens,
                     "ttft_s": r.ttft_s, "replica": r.replica} for r in records]
        return summary, list(ready.values()), reasons, outcomes
    finally:
        srv.stop()
        asyncio.run(launcher.close())


def run(args: argparse.Namespace) -> int:
    from treadle.server.command import served_name

    served = served_name(args.model, None)
    out = Path(args.out)
    result = json.loads(out.read_text()) if args.append and out.exists() else {
        "kind": "bench-fleet", "runs": [], "scaling": [], "cold_start_s": None}
    colds: list[float] = list(result.get("cold_starts_s", []))
    policies = [p for p in args.policies.split(",") if p]
    for workload in [w for w in args.workloads.split(",") if w]:
        if workload == "shared-prefix":
            reqs = make_workload(workload, args.num_requests, args.seed, args.max_tokens,
                                 num_prefixes=args.num_prefixes, prefix_tokens=args.prefix_tokens)
        else:
            reqs = make_workload(workload, args.mooncake_requests, args.seed, args.max_tokens,
                                 sessions=args.mooncake_rows == "sessions")
        api = "chat"
        for policy in policies:
            _log(f"{workload} x {policy}: {len(reqs)} requests on {args.replicas} replicas")
            summary, cold, reasons, outcomes = run_fleet(args, args.replicas, policy, reqs, served, api)
            colds += cold
            result["runs"] = [r for r in result["runs"] if (r["workload"], r["policy"]) != (workload, policy)]
            result["runs"].append({"workload": workload, "policy": policy, "summary": summary, "routing": reasons,
                                   "requests": outcomes})
            _log(f"  hit rate {summary['prefix_cache_hit_rate']}, TTFT p50 {summary['ttft_ms']['p50']:.0f} ms, "
                 f"e2e p99 {summary['e2e_ms']['p99']:.0f} ms, {summary['requests_per_s']:.2f} req/s, "
                 f"errors {summary['error_rate']:.2%}, routing {reasons}")
            _finish(result, colds, args, out)
    if args.scaling:
        reqs = make_workload("sharegpt", args.scaling_requests, args.seed, args.max_tokens * 4)
        for n in [int(x) for x in args.scaling.split(",")]:
            summary, cold, _, outcomes = run_fleet(args, n, "least_loaded", reqs, served, "chat")
            colds += cold
            result["scaling"] = [s for s in result["scaling"] if s["replicas"] != n]
            result["scaling"].append({"replicas": n, "threads_each": split_threads(n)[-1], "num_requests": len(reqs),
                                      "requests_per_s": summary["requests_per_s"],
                                      "output_tok_s": summary["output_tok_s"], "requests": outcomes})
            _log(f"scaling {n} replicas: {summary['output_tok_s']:.1f} output tok/s")
            _finish(result, colds, args, out)
    _finish(result, colds, args, out)
    _log(f"targets: {json.dumps(result['targets'])}; wrote {out}")
    return 0


def _finish(result: dict, colds: list[float], args: argparse.Namespace, out: Path) -> None:
    """Fill the derived fields and write ``out`` (called after every run, so a cut-off run keeps its parts)."""
    from treadle.bench.meta import make_meta

    result["cold_starts_s"] = colds
    result["cold_start_s"] = sum(colds) / len(colds) if colds else None
    workloads = sorted({r["workload"] for r in result["runs"]})
    result["targets_by_workload"] = {w: targets(result["runs"], w) for w in workloads}
    main = "shared-prefix" if "shared-prefix" in workloads else (workloads[0] if workloads else None)
    result["targets"] = result["targets_by_workload"].get(main, {"met": False}) if main else {"met": False}
    result["config"] = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("append",)
                        and isinstance(v, (int, float, str))}
    result["meta"] = make_meta(seed=args.seed, model=args.model)
    out.write_text(json.dumps(result, indent=2))
