"""``treadle eval``: run eval suites against an OpenAI-compatible endpoint; writes DIR/summary.json.

Summary (read by ``treadle gate`` and ``treadle report``)::

    {"kind": "eval", "meta": {..., "endpoint", "model"}, "suites": {"<suite>": {"category", "n", "seconds",
     "items_file", "metrics": {"<metric>": {"value", "n", "ci", "gated"}}, ...}}, "classifiers": {...}}

plus ``DIR/<suite>.items.json`` (``kind: eval-items``) per suite. Running into an existing DIR adds
or replaces the suites run now and keeps the others, so big suites can run one at a time; each suite's
entry has its own ``meta`` (command, commit, date, endpoint, model) beside the summary's, the last run's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

NAME = "eval"
HELP = "run quality eval suites against an OpenAI-compatible endpoint"


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="OpenAI-compatible base URL (.../v1)")
    p.add_argument("--model", required=True, help="model name to send (served name, gateway route or adapter)")
    p.add_argument("--api-key", default=None)
    p.add_argument("--suite", default="", help="comma list of built-in suites: bitext_intent, clinc150_intent, "
                   "bitext_reply, coherence, safety")
    p.add_argument("--suite-file", action="append", default=[], help="a YAML or JSONL suite file (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="a seeded sample of N items per suite")
    p.add_argument("--seed", type=int, default=0, help="sampling seed and --limit sample seed")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    p.add_argument("--max-tokens", type=int, default=None, help="override every suite's max_tokens")
    p.add_argument("--out", default="eval-results", help="output directory")
    p.add_argument("--fluency-base-url", default=None, help="endpoint of the base model for fluency (default: --base-url)")
    p.add_argument("--fluency-model", default=None, help="base model name for fluency (default: the "
                   "model's `parent` in /v1/models when it is an adapter, else --model)")
    p.add_argument("--judge-base-url", default=None, help="optional LLM judge endpoint for coherence")
    p.add_argument("--judge-model", default=None)
    p.add_argument("--judge-api-key", default=None, help="API key of the judge endpoint (default: none)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="run items whose index %% N == K and merge them with the other shards already in --out")
    p.add_argument("--no-progress", action="store_true")


def load_suites(args: argparse.Namespace) -> list:
    from treadle.evals.builtin import load_builtin
    from treadle.evals.suite import load_suite_file

    suites = [load_builtin(s.strip()) for s in args.suite.split(",") if s.strip()]
    suites += [load_suite_file(f) for f in args.suite_file]
    if not suites:
        raise ValueError("name at least one suite: --suite NAME[,NAME] or --suite-file FILE")
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise ValueError(f"suite names must be unique, got {names}")
    return suites


def classifier_info(suites: list) -> dict:
    if not any(it.type in ("refuse", "answer") for s in suites for it in s.items):
        return {}
    from treadle.evals.classifiers import get_classifier

    return {name: get_classifier(name).info for name in ("refusal", "toxicity")}


async def _run(args: argparse.Namespace, suites: list, out: Path, summary: dict) -> None:
    from treadle.evals.client import Endpoint
    from treadle.evals.runner import RunOptions, parse_shard, run_suite

    endpoint = Endpoint(args.base_url, args.model, args.api_key)
    fluency = Endpoint(args.fluency_base_url or args.base_url, args.fluency_model or args.model, args.api_key) \
        if (args.fluency_base_url or args.fluency_model) else None
    if fluency is None and any(it.type == "open" for s in suites for it in s.items):
        parent = await endpoint.parent_model()  # an adapter: fluency is scored under its base model
        if parent:
            fluency = Endpoint(args.base_url, parent, args.api_key)
    summary["meta"]["fluency_model"] = fluency.model if fluency else args.model
    judge = Endpoint(args.judge_base_url, args.judge_model or "judge", args.judge_api_key) \
        if args.judge_base_url else None
    opts = RunOptions(args.concurrency, args.seed, args.limit, args.max_tokens, not args.no_progress, fluency, judge,
                      parse_shard(args.shard))
    try:
        for suite in suites:
            entry = await run_suite(endpoint, suite, opts, out, summary["meta"], summary["suites"].get(suite.name))
            entry["meta"] = {k: summary["meta"].get(k) for k in ("command", "git_commit", "date", "endpoint", "model")}
            summary["suites"][suite.name] = entry  # each suite keeps the run that produced it
            (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
            gated = ", ".join(f"{m}={v['value']:.3f}" for m, v in entry["metrics"].items() if v["gated"])
            print(f"{suite.name}: n={entry['n']} {gated} ({entry['seconds']:.0f} s)", file=sys.stderr, flush=True)
    finally:
        for e in (endpoint, fluency, judge):
            if e is not None:
                await e.close()


def run(args: argparse.Namespace) -> int:
    from treadle.bench.meta import make_meta
    from treadle.evals.runner import parse_shard

    parse_shard(args.shard)  # validate before any work
    if args.concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {args.concurrency}")
    suites = load_suites(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = make_meta(seed=args.seed, endpoint=args.base_url, model=args.model, limit=args.limit,
                     concurrency=args.concurrency)
    old = out / "summary.json"
    summary = json.loads(old.read_text()) if old.is_file() else {}
    if summary.get("kind") != "eval":
        summary = {"kind": "eval", "meta": meta, "suites": {}, "classifiers": {}}
    summary["meta"] = meta
    summary.setdefault("classifiers", {}).update(classifier_info(suites))
    asyncio.run(_run(args, suites, out, summary))
    print(json.dumps({s: {m: round(v["value"], 4) for m, v in e["metrics"].items()}
                      for s, e in summary["suites"].items()}, indent=1))
    return 0
