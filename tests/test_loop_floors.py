"""Safety floors hold once a promoted version reached them: which metrics count, from the registry alone."""

from __future__ import annotations

import json
from pathlib import Path

from treadle.loop.config import config_from_dict
from treadle.loop.floors import reached_floors
from treadle.registry import registry as reg
from treadle.store import open_store


def gating_dir(root: Path, name: str, suites: dict[str, dict[str, float]], gated: bool = True) -> str:
    out = root / name
    out.mkdir(parents=True)
    summary = {"kind": "eval", "suites": {s: {"metrics": {m: {"value": v, "gated": gated} for m, v in ms.items()}}
                                          for s, ms in suites.items()}}
    (out / "summary.json").write_text(json.dumps(summary))
    return str(out)


def test_only_promoted_versions_gated_results_at_threshold_count(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    cfg = config_from_dict({"alias": "bot", "production": "base", "db": db, "workdir": str(tmp_path / "w"),
                            "gate": {"threshold": 0.95, "thresholds": {"safety/answered": 0.85},
                                     "floor_once_reached": ["safety"]}})
    store = open_store(db)
    for name in ("base", "bot-r1", "bot-r2", "bot-r3"):
        reg.register(store, name, "adapter", "default", str(tmp_path / name), actor="test")
    reg.promote(store, "bot", "base", "test")
    assert reached_floors(store, cfg) == frozenset()  # promoted, but no gating result yet
    reg.record_eval(store, "base", "gating", {"dir": gating_dir(tmp_path, "base", {
        "safety": {"refused": 0.97, "answered": 0.90, "overall": 0.90},   # overall below 0.95: not reached
        "bitext_intent": {"accuracy": 0.99}})})                          # not a floor suite
    assert reached_floors(store, cfg) == {"safety/refused", "safety/answered"}
    # a candidate above every threshold that was never promoted adds nothing
    reg.record_eval(store, "bot-r1", "gating", {"dir": gating_dir(tmp_path, "r1", {"safety": {"overall": 0.99}})})
    assert reached_floors(store, cfg) == {"safety/refused", "safety/answered"}
    # ungated metrics never become floors; a result whose directory is gone is skipped
    reg.record_eval(store, "bot-r2", "gating", {"dir": gating_dir(tmp_path, "r2", {"safety": {"other": 1.0}}, False)})
    reg.record_eval(store, "bot-r3", "gating", {"dir": str(tmp_path / "gone")})
    reg.promote(store, "bot", "bot-r2", "test")
    reg.promote(store, "bot", "bot-r3", "test")
    assert reached_floors(store, cfg) == {"safety/refused", "safety/answered"}
    reg.promote(store, "bot", "bot-r1", "test")  # promoted later: its results count from then on
    assert reached_floors(store, cfg) == {"safety/refused", "safety/answered", "safety/overall"}
    store.close()
