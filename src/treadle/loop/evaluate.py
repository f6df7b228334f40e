"""Evaluate one served version on the gating sets (or the full suites) through the gateway.

Same result files as ``treadle eval`` (``summary.json`` + ``<suite>.items.json``), so ``treadle gate``
and ``treadle report`` read them. Each suite is cut to its gating set (``gating_set``: seeded,
stratified, sized for the gate's power unless ``sizes`` names a size); ``full=True`` runs every item.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from treadle.loop.config import LoopConfig


def load_gating_suites(cfg: LoopConfig, full: bool = False, names: tuple[str, ...] | None = None) -> list:
    from treadle.evals.builtin import load_builtin
    from treadle.evals.gating_set import default_size, gating_suite
    from treadle.evals.suite import load_suite_file

    g = cfg.gating
    suites = [load_builtin(n) for n in (names if names is not None else g.suites)]
    if names is None:
        suites += [load_suite_file(f) for f in g.suite_files]
    if full:
        return suites
    out = []
    for s in suites:
        margin = min([cfg.gate.margin_for(f"{s.name}/{m}") for m in s.gated] or [cfg.gate.margin])
        size = g.sizes.get(s.name) or default_size(len(s.items), margin, g.discordance, 1 - cfg.gate.confidence)
        out.append(gating_suite(s, size, g.seed))
    return out


def gating_spec(cfg: LoopConfig) -> dict:
    """What fixes the gating sets: a production result is reused only for the same spec."""
    return {"suites": list(cfg.gating.suites), "suite_files": list(cfg.gating.suite_files),
            "sizes": dict(cfg.gating.sizes), "seed": cfg.gating.seed, "discordance": cfg.gating.discordance,
            "margin": cfg.gate.margin, "margins": dict(cfg.gate.margins)}


def evaluate(cfg: LoopConfig, model: str, out: Path, suites: list, progress: bool = False) -> dict:
    """Run ``suites`` against ``model`` behind the gateway; writes ``out`` and returns the summary."""
    from treadle.bench.meta import make_meta

    out.mkdir(parents=True, exist_ok=True)
    url = (cfg.gating.base_url or cfg.gateway.url).rstrip("/")
    base_url = url if url.endswith("/v1") else url + "/v1"
    meta = make_meta(seed=cfg.gating.seed, endpoint=base_url, model=model, gating=True)
    summary: dict = {"kind": "eval", "meta": meta, "suites": {}, "classifiers": {}}
    asyncio.run(_run(base_url, model, cfg, suites, out, summary, progress))
    return summary


async def _run(base_url: str, model: str, cfg: LoopConfig, suites: list, out: Path, summary: dict,
               progress: bool) -> None:
    from treadle.evals.client import Endpoint
    from treadle.evals.runner import RunOptions, run_suite

    endpoint = Endpoint(base_url, model, cfg.gateway.api_key)
    fluency = None
    if any(it.type == "open" for s in suites for it in s.items):
        parent = await endpoint.parent_model()
        fluency = Endpoint(base_url, parent, cfg.gateway.api_key) if parent else None
    opts = RunOptions(cfg.gating.concurrency, cfg.gating.seed, None, None, progress, fluency, None, None)
    try:
        for suite in suites:
            entry = await run_suite(endpoint, suite, opts, out, summary["meta"])
            summary["suites"][suite.name] = entry
            (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    finally:
        await endpoint.close()
        if fluency is not None:
            await fluency.close()
