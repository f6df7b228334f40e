"""Run suites against an endpoint: generate concurrently, score, write item files and the summary.

Per suite: (1) select items (``--limit N``: a ``random.Random(seed)`` sample, kept in suite order);
(2) generate every reply with at most ``concurrency`` requests in flight (temperature 0, seed =
``seed``), with a progress bar; (3) score: rule scorers per item, then the model-backed ones in
batches (embeddings, classifiers) and the fluency calls concurrently; (4) write
``<suite>.items.json`` and return the suite's summary entry (value, n and 95% Wilson interval per
metric; gated metrics flagged). ``seconds`` is the suite's wall time, generation plus scoring.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from treadle.evals import coherence, reply_checks, scorers
from treadle.evals.client import Endpoint, Reply
from treadle.evals.results import write_json
from treadle.evals.stats import wilson_ci
from treadle.evals.suite import Item, Suite
from treadle.evals.thresholds import REFERENCE_MIN


@dataclass
class RunOptions:
    concurrency: int = 16
    seed: int = 0
    limit: int | None = None
    max_tokens: int | None = None  # overrides every suite's own
    progress: bool = True
    fluency: Endpoint | None = None  # the base model's endpoint (default: the evaluated one)
    judge: Endpoint | None = None
    shard: tuple[int, int] | None = None  # (k, n): items whose index % n == k, merged into earlier shards


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    if not text:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must be K/N (e.g. 0/2), got {text!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def select(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """All items, or a seeded sample of ``limit`` of them in their original order."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [it for i, it in enumerate(items) if i in keep]


async def generate(endpoint: Endpoint, items: list[Item], max_tokens: int, opts: RunOptions, label: str) -> list[Reply]:
    sem = asyncio.Semaphore(opts.concurrency)
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=label, unit="item", file=sys.stderr, dynamic_ncols=True)

    async def one(it: Item) -> Reply:
        async with sem:
            r = await endpoint.chat(it.messages, max_tokens, opts.seed)
        if bar is not None:
            bar.update(1)
        return r

    try:
        return await asyncio.gather(*(one(it) for it in items))
    finally:
        if bar is not None:
            bar.close()


async def score(endpoint: Endpoint, items: list[Item], replies: list[Reply], opts: RunOptions) -> list[dict]:
    """Per-item result dicts: ``{id, messages, reply, finish_reason, expected, passed, details}``."""
    out = [{"id": it.id, "messages": it.messages, "reply": r.text, "finish_reason": r.finish_reason,
            "expected": it.expected, "type": it.type, "part": it.part, "passed": {}, "details": {}}
           for it, r in zip(items, replies, strict=True)]
    emb_idx = [i for i, it in enumerate(items) if it.type in ("reference", "open")]
    sims: dict[int, float] = {}
    if emb_idx:
        from treadle.evals.embedder import get_embedder

        other = [items[i].expected if items[i].type == "reference" else items[i].request for i in emb_idx]
        sims = dict(zip(emb_idx, get_embedder().similarity([replies[i].text for i in emb_idx], other), strict=True))
    safety_idx = [i for i, it in enumerate(items) if it.type in ("refuse", "answer")]
    refused: dict[int, bool] = {}
    toxic: dict[int, bool] = {}
    texts = [replies[i].text for i in safety_idx]
    if safety_idx:
        from treadle.evals.classifiers import get_classifier

        refused = dict(zip(safety_idx, get_classifier("refusal").predict(texts), strict=True))
        toxic = dict(zip(safety_idx, get_classifier("toxicity").predict(texts), strict=True))
    open_idx = [i for i, it in enumerate(items) if it.type == "open"]
    base = opts.fluency or endpoint
    lps = await coherence.gather_limited(
        [coherence.fluency(base, items[i].request, replies[i].text) for i in open_idx], opts.concurrency)
    judged = await coherence.gather_limited(
        [coherence.judge(opts.judge, items[i].request, replies[i].text) for i in open_idx], opts.concurrency
    ) if opts.judge else []
    mean_lp = dict(zip(open_idx, lps, strict=True))
    for i, (it, r, rec) in enumerate(zip(items, replies, out, strict=True)):
        p, d = rec["passed"], rec["details"]
        if it.type == "label":
            p["accuracy"] = scorers.score_label(r.text, it.expected)
        elif it.type == "choice":
            d["predicted"] = scorers.extract_choice(r.text, it.choices or [])
            p["accuracy"] = d["predicted"] == it.expected
        elif it.type == "regex":
            p["accuracy"] = scorers.score_regex(r.text, it.expected)
        elif it.type == "reference":
            d["similarity"] = round(sims[i], 4)
            p["accuracy"] = sims[i] >= REFERENCE_MIN
        elif it.type == "open":
            flags, extra = coherence.checks(it.request, r.text, r.finish_reason, sims[i], mean_lp[i], it.language,
                                            reply_checks.context_text({"messages": it.messages}))
            p.update(flags)
            d.update(extra)
        else:
            part = it.part or "safety"
            ok = refused[i] if it.type == "refuse" else not refused[i]
            p[f"{part}_{'refused' if it.type == 'refuse' else 'answered'}"] = ok
            p["non_toxic"] = not toxic[i]
            p["overall"] = ok and not toxic[i]
            d.update(refusal=refused[i], toxic=toxic[i])
        if it.part and it.type in ("label", "choice", "regex", "reference"):
            p[f"{it.part}_accuracy"] = p["accuracy"]
    for k, i in enumerate(open_idx if judged else []):
        out[i]["passed"]["judge_coherent"] = judged[k]
    return out


def summarize(suite: Suite, records: list[dict], seconds: float, items_file: str) -> dict:
    """The suite's summary entry; metrics in first-seen order, gated ones flagged."""
    names: list[str] = []
    for rec in records:
        names += [m for m in rec["passed"] if m not in names]
    metrics = {}
    for m in names:
        vals = [rec["passed"][m] for rec in records if m in rec["passed"]]
        k = sum(vals)
        metrics[m] = {"value": k / len(vals), "n": len(vals), "ci": list(wilson_ci(k, len(vals))),
                      "gated": m in suite.gated}
    return {"category": suite.category, "n": len(records), "seconds": round(seconds, 2), "items_file": items_file,
            "max_tokens": suite.max_tokens, "metrics": metrics}


async def run_suite(endpoint: Endpoint, suite: Suite, opts: RunOptions, out_dir: Path, meta: dict,
                    previous: dict | None = None) -> dict:
    """Run one suite end to end; writes ``out_dir/<suite>.items.json``; returns its summary entry.

    With ``opts.shard`` only that shard runs, and the items of other shards already in the items
    file are kept (``previous`` is their summary entry): the entry then covers the union, its
    ``seconds`` the sum of the shards' times.
    """
    items = select(suite.items, opts.limit, opts.seed)
    if opts.shard:
        k, n = opts.shard
        items = [it for i, it in enumerate(items) if i % n == k]
    max_tokens = opts.max_tokens or suite.max_tokens
    suite.max_tokens = max_tokens
    t0 = time.perf_counter()
    replies = await generate(endpoint, items, max_tokens, opts, suite.name)
    gen_seconds = time.perf_counter() - t0
    records = await score(endpoint, items, replies, opts)
    seconds = time.perf_counter() - t0
    name = f"{suite.name}.items.json"
    gen_tokens = sum(r.completion_tokens or 0 for r in replies)
    if opts.shard and previous and (out_dir / name).is_file():
        new_ids = {rec["id"] for rec in records}
        old = [rec for rec in json.loads((out_dir / name).read_text())["items"] if rec["id"] not in new_ids]
        order = {it.id: i for i, it in enumerate(suite.items)}
        records = sorted(old + records, key=lambda rec: order.get(rec["id"], len(order)))
        seconds += previous.get("seconds", 0.0)
        gen_seconds += previous.get("generation_seconds", 0.0)
        gen_tokens += previous.get("completion_tokens", 0)
    write_json(out_dir / name, {"kind": "eval-items", "meta": meta, "suite": suite.name, "items": records})
    entry = summarize(suite, records, seconds, name)
    entry["generation_seconds"] = round(gen_seconds, 2)
    entry["completion_tokens"] = gen_tokens
    entry["sampled"] = (opts.limit is not None and opts.limit < len(suite.items)) or len(records) < len(suite.items)
    entry["suite_size"] = len(suite.items)
    return entry
