"""``treadle bench compare``: one workload against several endpoints, alternating them in rounds.

Algorithm: the workload (``--num-requests``, sessions kept whole) is cut into ``--rounds`` equal slices.
In round r every target gets slice r, one target at a time, in the listed order when r is even and in
reverse when r is odd, so slow drift of the machine (heat, other load) falls on every target alike and
no target always goes first. Each target's summary pools its records from all rounds over the sum of its
round durations; its prefix-cache hit rate pools the metric deltas of its rounds. ``ratios`` give every
figure of target k divided by target 0's (None when either is missing or the first is 0).
``--max-seconds`` bounds each (round, target) run.

Target spec: ``[NAME=]URL[#MODEL]``, e.g. ``treadle=http://127.0.0.1:8000 vllm=http://127.0.0.1:8001#/models/x``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from treadle.bench.serve_command import (
    add_workload_args,
    arrival_from_args,
    ideal_reuse,
    model_context,
    print_summary,
    served_model,
    workload_from_args,
)

RATIO_METRICS = ("requests_per_s", "output_tok_s", "goodput_req_s", "ttft_ms.p50", "ttft_ms.p99",
                 "tpot_ms.p50", "itl_ms.p50", "e2e_ms.p50", "error_rate", "prefix_cache_hit_rate")


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="+", help="[NAME=]URL[#MODEL], two or more; ratios are to the first")
    p.add_argument("--out", required=True, help="where to write the JSON result")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds the workload is cut into")
    add_workload_args(p)


def parse_target(spec: str, index: int) -> dict:
    name, sep, rest = spec.partition("=")
    if not sep or "://" in name:
        name, rest = f"target{index}", spec
    url, _, model = rest.partition("#")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"targets: {spec!r} is not [NAME=]URL[#MODEL] with an http(s) URL")
    return {"name": name, "base_url": url.rstrip("/"), "model": model or None}


def metric(summary: dict, key: str) -> float | None:
    top, _, sub = key.partition(".")
    v = summary.get(top)
    if sub:
        v = v.get(sub) if isinstance(v, dict) else None
    return float(v) if isinstance(v, int | float) else None


def ratios(results: list[dict]) -> dict[str, dict[str, float | None]]:
    """{name: {metric: value / first target's value}} for every target (the first gets 1.0s)."""
    first = results[0]["summary"]
    out = {}
    for res in results:
        row = {}
        for key in RATIO_METRICS:
            a, b = metric(res["summary"], key), metric(first, key)
            row[key] = a / b if a is not None and b else None
        out[res["name"]] = row
    return out


def slices(requests: list, rounds: int) -> list[list]:
    from treadle.bench.loadgen import _chains

    chains = _chains(requests)
    per = -(-len(chains) // rounds)
    return [[r for c in chains[i * per:(i + 1) * per] for r in c] for i in range(rounds) if chains[i * per:]]


def _deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def run(args: argparse.Namespace) -> int:
    from treadle.bench.loadgen import run_load
    from treadle.bench.meta import make_meta
    from treadle.bench.summary import parse_slo, prefix_cache_hit_rate, scrape_metrics, summarize

    if len(args.targets) < 2:
        raise ValueError("targets: give at least two endpoints to compare")
    if args.rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {args.rounds}")
    targets = [parse_target(s, i) for i, s in enumerate(args.targets)]
    for t in targets:
        t["model"] = t["model"] or served_model(t["base_url"], args.api_key)
    slo, arrival = parse_slo(args.slo), arrival_from_args(args)
    contexts = [c for t in targets if (c := model_context(t["base_url"], t["model"], args.api_key)) is not None]
    parts = slices(workload_from_args(args, min(contexts, default=None)), args.rounds)
    state = {t["name"]: {"records": [], "duration": 0.0, "delta": {}, "rounds": []} for t in targets}
    for r, part in enumerate(parts):
        order = targets if r % 2 == 0 else targets[::-1]
        for t in order:
            print(f"[bench compare] round {r + 1}/{len(parts)}: {t['name']} ({len(part)} requests)",
                  file=sys.stderr, flush=True)
            before = scrape_metrics(t["base_url"], api_key=args.api_key)
            t0 = time.perf_counter()
            recs = asyncio.run(run_load(t["base_url"], t["model"], part, api=args.api, arrival=arrival,
                                        max_seconds=args.max_seconds, seed=args.seed + r, api_key=args.api_key,
                                        temperature=args.temperature, progress=not args.no_progress))
            dur = time.perf_counter() - t0
            after = scrape_metrics(t["base_url"], api_key=args.api_key)
            st = state[t["name"]]
            st["records"] += recs
            st["duration"] += dur
            for k, v in _deltas(before, after).items():
                st["delta"][k] = st["delta"].get(k, 0.0) + v
            s = summarize(recs, dur, slo)
            st["rounds"].append({"round": r, "position": order.index(t), "duration_s": dur,
                                 "requests_per_s": s["requests_per_s"], "output_tok_s": s["output_tok_s"],
                                 "ttft_ms_p50": (s["ttft_ms"] or {}).get("p50")})
    results = []
    for t in targets:
        st = state[t["name"]]
        summary = summarize(st["records"], st["duration"], slo)
        summary["prefix_cache_hit_rate"] = prefix_cache_hit_rate({}, st["delta"])
        summary["prefix_reuse_ideal"] = ideal_reuse([r for part in parts for r in part], st["records"])
        results.append({"name": t["name"], "summary": summary, "rounds": st["rounds"],
                        "requests": [x.to_json() for x in st["records"]]})
    config = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "api_key"}
    result = {"kind": "bench-compare", "meta": make_meta(seed=args.seed), "config": {**config,
              "arrival_mode": arrival.mode}, "targets": targets, "results": results, "ratios": ratios(results)}
    Path(args.out).write_text(json.dumps(result, indent=1))
    for res in results:
        print(f"== {res['name']}")
        print_summary(res["summary"])
    print_ratios(result["ratios"])
    print(f"[bench compare] wrote {args.out}", file=sys.stderr)
    return 0


def print_ratios(rat: dict[str, dict[str, float | None]]) -> None:
    names = list(rat)
    print(f"{'ratio to ' + names[0]:24}" + "".join(f"{n:>14}" for n in names))
    for key in RATIO_METRICS:
        cells = "".join(f"{'-' if rat[n][key] is None else format(rat[n][key], '.2f'):>14}" for n in names)
        print(f"{key:24}{cells}")
