"""Safety floors that hold once reached, for the loop's gate step.

``gate.floor_once_reached`` names suites whose metrics, once a promoted version's gating result reached the
metric's threshold, may never again fall below it: a candidate must then pass the threshold as well as the
non-inferiority margin (``evals.loop_gate``). Which metrics are reached is read from the registry each time,
so it survives restarts and counts versions promoted by hand (``treadle registry promote``) and versions
back in production after a rollback (``restored`` events) too.
"""

from __future__ import annotations

from pathlib import Path

from treadle.loop.config import LoopConfig
from treadle.registry import registry as reg
from treadle.store.db import Store


def reached_floors(store: Store, cfg: LoopConfig) -> frozenset[str]:
    """Metrics (``suite/metric``) of the floor suites that some promoted version's gating result reached.

    Reads only; a version counts if it has a ``promoted`` or ``restored`` event and a gating result on disk."""
    from treadle.evals.results import load_results

    out: set[str] = set()
    for v in reg.versions(store):
        info = reg.show(store, v["name"])
        promoted = any(e["kind"] in ("promoted", "restored") for e in info["events"])
        gating = info["evals"].get("gating")
        if not promoted or not gating or not Path(gating["dir"], "summary.json").is_file():
            continue
        for suite, entry in load_results(gating["dir"]).summary.get("suites", {}).items():
            if suite in cfg.floor_once_reached:
                for m, val in entry["metrics"].items():
                    mid = f"{suite}/{m}"
                    if val.get("gated") and val["value"] >= cfg.gate.threshold_for(mid):
                        out.add(mid)
    return frozenset(out)

