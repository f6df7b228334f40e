"""``treadle bench serve``: one workload against one OpenAI-compatible endpoint -> JSON result.

Result: ``{"kind": "bench-serve", "meta", "config" (every flag), "summary", "requests" [records]}``.
The summary's ``prefix_cache_hit_rate`` comes from ``/metrics`` scraped before and after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

from treadle.bench.arrivals import MODES, Arrival
from treadle.bench.workloads import WORKLOADS, WorkloadRequest, make_workload

TRACE_WORKLOADS = ("azure-code", "azure-conv", "mooncake")


def add_workload_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``bench serve`` and ``bench compare``."""
    p.add_argument("--workload", default="sharegpt", choices=WORKLOADS)
    p.add_argument("--num-requests", type=int, default=64, help="requests to send (turns, for multiturn)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="the run stops after this many seconds")
    p.add_argument("--max-tokens", type=int, default=128, help="output tokens per request (trace: a cap)")
    p.add_argument("--arrival", choices=MODES, default=None,
                   help="concurrency (closed loop; default) | poisson | burst | trace (default for traces)")
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop workers")
    p.add_argument("--rate", type=float, default=1.0, help="poisson: requests/s")
    p.add_argument("--burst-size", type=int, default=8)
    p.add_argument("--burst-interval", type=float, default=10.0, help="seconds between bursts")
    p.add_argument("--time-scale", type=float, default=1.0, help="trace: multiply arrival times")
    p.add_argument("--max-in-flight", type=int, default=None, help="open loop: cap requests in flight")
    p.add_argument("--api", choices=("chat", "completions"), default="chat",
                   help="endpoint for text workloads (token-id traces always use completions)")
    p.add_argument("--slo", default=None, help="SLO for goodput, e.g. ttft_ms=2000,tpot_ms=200")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--api-key", default=None)
    p.add_argument("--num-prefixes", type=int, default=None, help="shared-prefix: system prompts (4)")
    p.add_argument("--prefix-tokens", type=int, default=None, help="shared-prefix: tokens per system prompt (1000)")
    p.add_argument("--rate-scale", type=float, default=None, help="traces: arrival-rate multiplier (0.05)")
    p.add_argument("--length-scale", type=float, default=None,
                   help="traces: token-count multiplier (azure 0.25, mooncake tokens-per-hash/512)")
    p.add_argument("--window", default=None, help="traces: 'start:end' trace seconds to replay")
    p.add_argument("--tokens-per-hash", type=int, default=None, help="mooncake: tokens per hash id (32)")
    p.add_argument("--mooncake-sessions", action="store_true",
                   help="mooncake: whole conversations (seeded), each turn sent after the previous reply, instead of "
                   "consecutive rows; they span the trace's hour, so pair it with --arrival concurrency or a "
                   "--rate-scale well above 1")
    p.add_argument("--max-prompt-tokens", type=int, default=None, help="prompt length cap (1536)")
    p.add_argument("--vocab-size", type=int, default=None, help="token-id prompts: vocabulary size (49152)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", required=True, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    p.add_argument("--out", default="bench-serve.json", help="where to write the JSON result")
    add_workload_args(p)


DEFAULT_MAX_PROMPT_TOKENS = 1536


def prompt_cap(max_prompt_tokens: int | None, max_tokens: int, context: int | None) -> int:
    """The prompt length cap: ``--max-prompt-tokens`` (1536), lowered so prompt + output fit the context.

    ``context`` is the served model's ``max_model_len`` (None when the server does not report it).
    """
    cap = DEFAULT_MAX_PROMPT_TOKENS if max_prompt_tokens is None else max_prompt_tokens
    if context is not None:
        cap = min(cap, context - max_tokens)
        if cap < 1:
            raise ValueError(f"max-tokens: {max_tokens} output tokens leave no room for a prompt in the "
                             f"model's {context}-token context")
    return cap


def workload_from_args(args: argparse.Namespace, context: int | None = None) -> list[WorkloadRequest]:
    """The workload of the flags; ``context`` (the model's max_model_len) lowers the prompt cap to fit."""
    cap = prompt_cap(args.max_prompt_tokens, args.max_tokens, context)
    if cap != (args.max_prompt_tokens or DEFAULT_MAX_PROMPT_TOKENS):
        print(f"[bench] prompts capped at {cap} tokens: the model's context is {context} and --max-tokens "
              f"{args.max_tokens}", file=sys.stderr)
    return make_workload(args.workload, args.num_requests, args.seed, args.max_tokens,
                         num_prefixes=args.num_prefixes, prefix_tokens=args.prefix_tokens,
                         rate_scale=args.rate_scale, length_scale=args.length_scale, window=args.window,
                         tokens_per_hash=args.tokens_per_hash, max_prompt_tokens=cap,
                         vocab_size=args.vocab_size, sessions=args.mooncake_sessions or None)


def arrival_from_args(args: argparse.Namespace) -> Arrival:
    if args.max_seconds <= 0:
        raise ValueError(f"max-seconds must be > 0, got {args.max_seconds}")
    mode = args.arrival or ("trace" if args.workload in TRACE_WORKLOADS else "concurrency")
    return Arrival(mode=mode, concurrency=args.concurrency, rate=args.rate, burst_size=args.burst_size,
                   burst_interval_s=args.burst_interval, time_scale=args.time_scale,
                   max_in_flight=args.max_in_flight)


def _models(base_url: str, api_key: str | None) -> list[dict]:
    base = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    data = httpx.get(f"{base}/v1/models", timeout=30, headers=headers).json()["data"]
    return [m for m in data if isinstance(m, dict)]


def served_model(base_url: str, api_key: str | None = None) -> str:
    try:
        data = _models(base_url, api_key)
    except (httpx.HTTPError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"base-url: cannot list models at {base_url}/v1/models ({e}); pass --model") from None
    if not data:
        raise ValueError(f"base-url: {base_url}/v1/models lists no model; pass --model")
    return data[0]["id"]


def model_context(base_url: str, model: str, api_key: str | None = None) -> int | None:
    """``max_model_len`` of ``model`` from ``/v1/models`` (Treadle and vLLM report it), else None."""
    try:
        data = _models(base_url, api_key)
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None
    card = next((m for m in data if m.get("id") == model), data[0] if len(data) == 1 else {})
    ctx = card.get("max_model_len")
    return ctx if isinstance(ctx, int) and ctx > 0 else None


def measure(base_url: str, model: str, requests: list[WorkloadRequest], args: argparse.Namespace,
            arrival: Arrival, slo: dict | None) -> tuple[dict, list]:
    """Scrape /metrics, run the load, scrape again; return (summary, records)."""
    from treadle.bench.loadgen import run_load
    from treadle.bench.summary import prefix_cache_hit_rate, scrape_metrics, summarize

    before = scrape_metrics(base_url, api_key=args.api_key)
    t0 = time.perf_counter()
    records = asyncio.run(run_load(base_url, model, requests, api=args.api, arrival=arrival,
                                   max_seconds=args.max_seconds, seed=args.seed, api_key=args.api_key,
                                   temperature=args.temperature, progress=not args.no_progress))
    duration = time.perf_counter() - t0
    summary = summarize(records, duration, slo)
    summary["prefix_cache_hit_rate"] = prefix_cache_hit_rate(before, scrape_metrics(base_url, api_key=args.api_key))
    summary["prefix_reuse_ideal"] = ideal_reuse(requests, records)
    # requests the server had answered before this run (0: a fresh server, whose first request pays its cold
    # start, which `treadle sim validate` models); None for a server without Treadle's metrics
    treadle = any(k.startswith("treadle_") for k in before)
    summary["server_requests_before"] = before.get("treadle_requests_total", 0.0) if treadle else None
    return summary, records


def ideal_reuse(requests: list[WorkloadRequest], records: list) -> float | None:
    """``prefix_reuse`` of the requests that were sent (in workload order)."""
    from treadle.bench.workloads import prefix_reuse

    sent = {r.id for r in records}
    return prefix_reuse([r for r in requests if r.id in sent])


def run(args: argparse.Namespace) -> int:
    from treadle.bench.meta import make_meta
    from treadle.bench.summary import parse_slo

    slo = parse_slo(args.slo)
    arrival = arrival_from_args(args)
    model = args.model or served_model(args.base_url, args.api_key)
    requests = workload_from_args(args, model_context(args.base_url, model, args.api_key))
    print(f"[bench serve] {args.workload}: {len(requests)} requests to {args.base_url} ({model}), "
          f"{arrival.describe()}, max {args.max_seconds:g} s", file=sys.stderr, flush=True)
    summary, records = measure(args.base_url, model, requests, args, arrival, slo)
    config = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("api_key",)}
    result = {"kind": "bench-serve", "meta": make_meta(seed=args.seed, model=model, base_url=args.base_url),
              "config": {**config, "model": model, "arrival_mode": arrival.mode}, "summary": summary,
              "requests": [r.to_json() for r in records]}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print_summary(summary)
    print(f"[bench serve] wrote {args.out}", file=sys.stderr)
    return 0 if summary["completed"] else 1


def print_summary(s: dict) -> None:
    def p(key: str) -> str:
        v = s.get(key)
        return "-" if not v else f"{v['p50']:.0f} / {v['p90']:.0f} / {v['p99']:.0f}"

    rate = s.get("prefix_cache_hit_rate")
    print(f"completed {s['completed']}  failed {s['failed']}  cut off {s['cut_off']}  "
          f"error rate {s['error_rate']:.1%}  in {s['duration_s']:.1f} s")
    print(f"requests/s {s['requests_per_s']:.3f}  output tok/s {s['output_tok_s']:.1f}  "
          f"input tok/s {s['input_tok_s']:.1f}"
          + (f"  goodput {s['goodput_req_s']:.3f} req/s" if s.get("goodput_req_s") is not None else ""))
    print(f"TTFT ms p50/p90/p99 {p('ttft_ms')}   TPOT ms {p('tpot_ms')}   ITL ms {p('itl_ms')}   E2E ms {p('e2e_ms')}")
    print("prefix-cache hit rate " + ("-" if rate is None else f"{rate:.1%}")
          + ("" if s.get("cached_tokens_share") is None else f"  cached tokens {s['cached_tokens_share']:.1%}"))
