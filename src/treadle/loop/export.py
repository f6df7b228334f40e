"""The loop's summary file (``kind: loop``): every version's gating scores, gate verdict and fate, and the
alias history; ``treadle report`` plots it (one line per gated metric across versions)."""

from __future__ import annotations

from pathlib import Path

from treadle.store.db import Store


def loop_summary(store: Store, alias: str) -> dict:
    """Versions in registration order with their gating metrics (value, n), verdict and status."""
    from treadle.bench.meta import make_meta
    from treadle.evals.results import load_results
    from treadle.loop.state import runs
    from treadle.registry import registry as reg

    versions = []
    for v in reg.versions(store):
        info = reg.show(store, v["name"])
        gating = info["evals"].get("gating") or {}
        scores: dict[str, dict] = {}
        if gating.get("dir") and Path(gating["dir"], "summary.json").is_file():
            for suite, entry in load_results(gating["dir"]).summary.get("suites", {}).items():
                for m, val in entry.get("metrics", {}).items():
                    if val.get("gated"):
                        scores[f"{suite}/{m}"] = {"value": val["value"], "n": val["n"], "ci": val.get("ci")}
        verdict = info["gate_verdicts"][-1] if info["gate_verdicts"] else None
        versions.append({"name": v["name"], "kind": v["kind"], "status": v["status"], "created_at": v["created_at"],
                         "dataset_ids": v["dataset_ids"], "gating": scores, "gate": verdict})
    return {"kind": "loop", "alias": alias, "meta": make_meta(), "versions": versions,
            "history": reg.history(store, alias), "runs": runs(store, alias, limit=1000)}
