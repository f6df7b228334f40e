"""``treadle bench peers``: Treadle, vLLM's CPU build and llama.cpp's server side by side, in one run.

Procedure: the servers run one at a time (never two at once on the machine). For each server in
``--servers`` order: start it with its script (``scripts/peers/``) or ``treadle serve``, wait for its
ready endpoint, send 2 untimed warm-up requests, then run every level, then stop it. llama-server is
restarted for each level with ``-np`` equal to the level's concurrency (its KV context is split over
its slots), the others serve every level from one start. Levels:

- ``decode-<c>`` for each ``--concurrency`` c (1, 16, 64): ``c x --requests-per-stream`` short
  ShareGPT chat prompts (<= ``--short-prompt-tokens``), ``--max-tokens`` (128) output tokens each with
  ``ignore_eos``, closed loop with c in flight.
- ``sharegpt-chat-16``: ``--sharegpt-requests`` ShareGPT chat requests (prompts <= 512 tokens, up to
  ``--max-tokens`` out, stopping at EOS), 16 in flight.

Pinned peer settings: vLLM fp32 with both cores (``VLLM_CPU_NUM_OF_RESERVED_CPU=0``),
``VLLM_CPU_KVCACHE_SPACE=4``, ``--max-num-seqs 64``, prefix caching on; llama-server ``-t 2`` on the
bundled Q4_1 GGUF file. Result (``--out``, default ``docs/results/peers-DATE.json``): ``levels``, a
list of ``{"name", "concurrency", "servers": {server: {"output_tok_s", "ttft_p50_ms", "tpot_p50_ms",
"requests_per_s", "completed", "failed", "precision"}}, "treadle_vs_best_peer": {...}}``, and ``meta``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SERVERS = ("treadle", "vllm", "llama-server")
PRECISION = {
    "treadle": "fp32 weights (GGUF Q4_1 blocks, exact weights, where the cost rule picks them)",
    "treadle-int8": "int8 weights x int8 dynamic activations (--quantization int8)",
    "vllm": "fp32",
    "llama-server": "Q4_1 GGUF (Q8_0 output layer)",
}
FIGURES = ("output_tok_s", "ttft_p50_ms", "tpot_p50_ms", "requests_per_s")


@dataclass(frozen=True)
class Peer:
    """How to start one server: argv, extra environment, and where it answers when ready."""

    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    port: int
    ready_path: str
    per_level_restart: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Level:
    name: str
    concurrency: int
    num_requests: int
    max_tokens: int
    max_prompt_tokens: int
    ignore_eos: bool


def peer_spec(name: str, root: Path, port: int, concurrency: int, treadle_bin: str) -> Peer:
    """The start command of server ``name`` (one of SERVERS or ``treadle-int8``) for one level."""
    scripts = root / "scripts" / "peers"
    if name in ("treadle", "treadle-int8"):
        argv = [treadle_bin, "serve", "--model", "default", "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning"]
        if name == "treadle-int8":
            argv += ["--quantization", "int8"]
        return Peer(name, tuple(argv), (), port, "/ready")
    from treadle.models.registry import bundled_gguf_path, default_model_path

    if name == "vllm":
        env = (("PORT", str(port)), ("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"), ("VLLM_CPU_KVCACHE_SPACE", "4"),
               ("MAX_NUM_SEQS", "64"), ("MODEL_DIR", str(default_model_path(convert=False))))
        return Peer(name, (str(scripts / "vllm_cpu.sh"),), env, port, "/health")
    if name == "llama-server":
        # -np = the level's concurrency; -c is split over the slots: 1,024 tokens each (prompt <= 512 + 128 out).
        env = (("PORT", str(port)), ("NP", str(concurrency)), ("CTX", str(max(2048, 1024 * concurrency))),
               ("GGUF", str(bundled_gguf_path())))
        return Peer(name, (str(scripts / "llama_server.sh"),), env, port, "/health", per_level_restart=True)
    raise ValueError(f"servers: {name!r} is not one of {', '.join((*SERVERS, 'treadle-int8'))}")


def plan_levels(concurrencies: list[int], requests_per_stream: int, max_tokens: int, short_prompt_tokens: int,
                sharegpt_requests: int) -> list[Level]:
    """The levels of one run, in the order they are measured."""
    if any(c < 1 for c in concurrencies) or requests_per_stream < 1:
        raise ValueError("concurrency and requests-per-stream must be >= 1")
    levels = [Level(f"decode-{c}", c, c * requests_per_stream, max_tokens, short_prompt_tokens, True)
              for c in concurrencies]
    if sharegpt_requests:
        levels.append(Level("sharegpt-chat-16", 16, sharegpt_requests, max_tokens, 512, False))
    return levels


def level_requests(level: Level, seed: int) -> list:
    from treadle.bench.workloads import make_workload

    reqs = make_workload("sharegpt", level.num_requests, seed, level.max_tokens,
                         max_prompt_tokens=level.max_prompt_tokens)
    return [dataclasses.replace(r, ignore_eos=level.ignore_eos) for r in reqs]


def figures(summary: dict, precision: str) -> dict:
    """The per-server cell of a level from a ``treadle.bench.summary.summarize`` dict."""
    def p50(key: str) -> float | None:
        v = summary.get(key)
        return v.get("p50") if isinstance(v, dict) else None

    return {"output_tok_s": summary["output_tok_s"], "ttft_p50_ms": p50("ttft_ms"), "tpot_p50_ms": p50("tpot_ms"),
            "requests_per_s": summary["requests_per_s"], "completed": summary["completed"],
            "failed": summary["failed"], "precision": precision}


def versus_best_peer(servers: dict[str, dict], ours: str = "treadle") -> dict[str, float | None]:
    """Treadle's figure over the best other server's: throughput (higher is better) and latencies
    (lower is better; a ratio < 1 means Treadle is faster). None when a side is missing."""
    others = {k: v for k, v in servers.items() if not k.startswith("treadle")}
    mine = servers.get(ours)
    out: dict[str, float | None] = {}
    for key, higher in (("output_tok_s", True), ("requests_per_s", True), ("ttft_p50_ms", False),
                        ("tpot_p50_ms", False)):
        vals = [v[key] for v in others.values() if v.get(key)]
        if mine is None or not mine.get(key) or not vals:
            out[key] = None
            continue
        best = max(vals) if higher else min(vals)
        out[key] = mine[key] / best
    return out


def assemble(levels: list[Level], cells: dict[tuple[str, str], dict]) -> list[dict]:
    """``cells[(level name, server)]`` -> the ``levels`` list of the result file."""
    out = []
    for lv in levels:
        servers = {srv: cell for (name, srv), cell in cells.items() if name == lv.name}
        out.append({"name": lv.name, "concurrency": lv.concurrency, "requests": lv.num_requests,
                    "max_tokens": lv.max_tokens, "ignore_eos": lv.ignore_eos, "servers": servers,
                    "treadle_vs_best_peer": versus_best_peer(servers)})
    return out


def start(peer: Peer, log_path: Path, timeout_s: float) -> subprocess.Popen:
    """Start ``peer`` and wait for its ready endpoint; raise RuntimeError if it exits or times out."""
    import httpx

    log = log_path.open("ab")
    proc = subprocess.Popen(list(peer.argv), env={**os.environ, **dict(peer.env)}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {proc.returncode} before ready; see {log_path}")
        try:
            if httpx.get(peer.base_url + peer.ready_path, timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    stop(proc)
    raise RuntimeError(f"{peer.name} not ready after {timeout_s:.0f} s; see {log_path}")


def stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(peer: Peer, level: Level, seed: int, max_seconds: float, warmup: bool) -> dict:
    """Run one level against a ready server; the summary dict (``treadle.bench.summary``)."""
    from treadle.bench.arrivals import Arrival
    from treadle.bench.loadgen import run_load
    from treadle.bench.serve_command import served_model
    from treadle.bench.summary import summarize

    model = served_model(peer.base_url)
    if warmup:
        warm = [dataclasses.replace(r, max_tokens=8) for r in level_requests(level, seed + 1000)[:2]]
        asyncio.run(run_load(peer.base_url, model, warm, arrival=Arrival(concurrency=2)))
    reqs = level_requests(level, seed)
    t0 = time.perf_counter()
    recs = asyncio.run(run_load(peer.base_url, model, reqs, arrival=Arrival(concurrency=level.concurrency),
                                max_seconds=max_seconds))
    return summarize(recs, time.perf_counter() - t0)


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma list, run in this order, from {', '.join(SERVERS)}, treadle-int8")
    p.add_argument("--concurrency", default="1,16,64", help="comma list of decode levels (streams in flight)")
    p.add_argument("--requests-per-stream", type=int, default=2, help="requests per stream at each decode level")
    p.add_argument("--max-tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--short-prompt-tokens", type=int, default=64, help="prompt cap of the decode levels")
    p.add_argument("--sharegpt-requests", type=int, default=64, help="requests of the ShareGPT level (0: skip)")
    p.add_argument("--port", type=int, default=8100, help="port every server is started on, one at a time")
    p.add_argument("--ready-timeout", type=float, default=900.0, help="seconds a server may take to be ready")
    p.add_argument("--max-seconds", type=float, default=900.0, help="bound on one level's run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logs", default="/work/peers/logs", help="folder for the servers' logs")
    p.add_argument("--out", default=None, help="result file (default docs/results/peers-DATE.json)")


def run(args: argparse.Namespace) -> int:
    from treadle.bench.meta import make_meta

    root = Path(__file__).resolve().parents[3]
    levels = plan_levels([int(c) for c in args.concurrency.split(",")], args.requests_per_stream,
                         args.max_tokens, args.short_prompt_tokens, args.sharegpt_requests)
    names = [s for s in args.servers.split(",") if s]
    treadle_bin = str(Path(sys.executable).with_name("treadle"))
    for n in names:
        peer_spec(n, root, args.port, 1, treadle_bin)  # validates the names before anything starts
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    cells: dict[tuple[str, str], dict] = {}
    ready_s: dict[str, float] = {}
    for name in names:
        proc = None
        try:
            for i, lv in enumerate(levels):
                peer = peer_spec(name, root, args.port, lv.concurrency, treadle_bin)
                if proc is None or peer.per_level_restart:
                    if proc is not None:
                        stop(proc)
                    t0 = time.monotonic()
                    proc = start(peer, logs / f"{name}.log", args.ready_timeout)
                    ready_s.setdefault(name, time.monotonic() - t0)
                    fresh = True
                print(f"[bench peers] {name}: {lv.name}", file=sys.stderr, flush=True)
                summary = measure(peer, lv, args.seed + i, args.max_seconds, warmup=fresh)
                fresh = False
                cells[(lv.name, name)] = figures(summary, PRECISION[name])
                print(f"[bench peers]   {json.dumps(cells[(lv.name, name)])}", file=sys.stderr, flush=True)
        finally:
            if proc is not None:
                stop(proc)
    result = {"kind": "bench-peers", "levels": assemble(levels, cells), "ready_s": ready_s,
              "meta": make_meta(seed=args.seed, servers=names, config=vars(args))}
    out = Path(args.out or root / "docs" / "results" / f"peers-{time.strftime('%Y-%m-%d')}.json")
    out.write_text(json.dumps(result, indent=1))
    for lv in result["levels"]:
        cells_txt = "  ".join(f"{s}: {c['output_tok_s']:.1f} tok/s ttft {c['ttft_p50_ms'] or 0:.0f} ms"
                              for s, c in lv["servers"].items())
        print(f"{lv['name']:18} {cells_txt}")
    print(f"[bench peers] wrote {out}", file=sys.stderr)
    return 0
