"""Eval result files: the summary (``kind: eval``) and per-suite item files (``kind: eval-items``).

Layout written by the runner: ``DIR/summary.json`` and ``DIR/<suite>.items.json``; the summary's
``suites.<suite>.items_file`` is the item file's path relative to the summary. ``load_results``
accepts the directory or the summary path and returns both, so the gate and the report read one
format. Items pair across runs by ``id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EvalResults:
    """A summary and, per suite, its item dicts (``{"id", "passed": {metric: bool}, ...}``)."""

    summary: dict
    items: dict[str, list[dict]] = field(default_factory=dict)

    def metric_ids(self, gated_only: bool = True) -> list[str]:
        """``suite/metric`` ids in summary order; only those flagged ``gated`` when any flag exists."""
        out, flagged = [], []
        for suite, s in self.summary.get("suites", {}).items():
            for name, m in s.get("metrics", {}).items():
                out.append(f"{suite}/{name}")
                if m.get("gated"):
                    flagged.append(f"{suite}/{name}")
        return flagged if gated_only and flagged else out

    def outcomes(self, metric_id: str) -> dict[str, bool]:
        """item id -> passed for one ``suite/metric`` (items without that metric are left out)."""
        suite, _, name = metric_id.partition("/")
        if suite not in self.items:
            raise ValueError(f"no per-item results for suite {suite!r}: the gate needs the items files")
        return {str(it["id"]): bool(it["passed"][name]) for it in self.items[suite] if name in it.get("passed", {})}


def summary_path(path: str | Path) -> Path:
    p = Path(path)
    return p / "summary.json" if p.is_dir() else p


def load_results(path: str | Path) -> EvalResults:
    """Read a summary (file or directory) and every items file it names; ValueError if malformed."""
    sp = summary_path(path)
    if not sp.is_file():
        raise ValueError(f"{path}: no eval summary here (expected a directory with summary.json or the file)")
    summary = json.loads(sp.read_text())
    if summary.get("kind") != "eval":
        raise ValueError(f"{sp}: kind is {summary.get('kind')!r}, expected 'eval'")
    items = {}
    for suite, s in summary.get("suites", {}).items():
        rel = s.get("items_file")
        if rel and (sp.parent / rel).is_file():
            data = json.loads((sp.parent / rel).read_text())
            if data.get("kind") != "eval-items":
                raise ValueError(f"{sp.parent / rel}: kind is {data.get('kind')!r}, expected 'eval-items'")
            items[suite] = data["items"]
    return EvalResults(summary, items)


def write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as indented JSON (creates the parent directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
