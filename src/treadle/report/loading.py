"""Read Treadle result files and sort them by kind.

Kinds: ``bench-engine`` (also files without ``kind`` that have ``throughput_tok_s``, written before the
kind field existed), ``bench-serve``, ``bench-compare``, ``eval``, ``bench-fleet``, ``sim`` (``treadle sim``). Each loaded result
keeps its path under ``"_path"``. JSON files of other kinds (``gate``, ``eval-items`` ...) are listed in
``skipped`` with the reason; a file that is not JSON is a ValueError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("bench-engine", "bench-serve", "bench-compare", "eval", "bench-fleet", "loop", "sim")
# the command that produces each kind, quoted where a report part has no data
PRODUCERS = {
    "bench-engine": "treadle bench engine --json bench-engine.json",
    "bench-serve": "treadle bench serve --base-url URL --workload sharegpt --num-requests 64 --concurrency 4 "
                   "--max-tokens 64 --out serve.json",
    "bench-compare": "treadle bench compare --out compare.json treadle=URL_A vllm=URL_B --workload sharegpt",
    "eval": "treadle eval --base-url URL/v1 --model NAME --out DIR (DIR/summary.json)",
    "bench-fleet": "treadle bench fleet (its JSON result)",
    "loop": "treadle loop export --config loop.yaml --out loop-summary.json",
    "sim": "treadle sim --trace azure-conv --replicas 16 --policy least_loaded,prefix_affinity --out sim.json",
}
SHARING_WORKLOADS = ("shared-prefix", "multiturn", "mooncake")


@dataclass
class Results:
    by_kind: dict[str, list[dict]] = field(default_factory=lambda: {k: [] for k in KINDS})
    skipped: list[str] = field(default_factory=list)

    def __getitem__(self, kind: str) -> list[dict]:
        return self.by_kind[kind]

    def missing(self, kind: str) -> str:
        return f"No {kind} result was given; `{PRODUCERS[kind]}` produces one."


def kind_of(data: object) -> str | None:
    if not isinstance(data, dict):
        return None
    kind = data.get("kind")
    if kind in KINDS:
        return kind
    if kind is None and "throughput_tok_s" in data:
        return "bench-engine"
    return None


def load_results(paths: list[str | Path]) -> Results:
    """Load every file in ``paths`` (files or folders of *.json) into a :class:`Results`."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"results: {p} does not exist")
    if not files:
        raise ValueError("results: no JSON file given")
    out = Results()
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"results: {f} is not readable JSON ({e})") from None
        kind = kind_of(data)
        if kind is None:
            got = data.get("kind") if isinstance(data, dict) else type(data).__name__
            out.skipped.append(f"{f} (kind {got!r} is not one the report reads: {', '.join(KINDS)})")
            continue
        data["_path"] = str(f)
        out.by_kind[kind].append(data)
    return out


def serve_label(r: dict) -> str:
    """A short label of a bench-serve run: workload, arrival, and where it was sent."""
    c = r.get("config", {})
    mode = c.get("arrival_mode", "concurrency")
    how = {"concurrency": f"c={c.get('concurrency')}", "poisson": f"poisson {c.get('rate')}/s",
           "burst": f"bursts of {c.get('burst_size')}", "trace": "trace replay"}.get(mode, mode)
    return f"{c.get('workload', '?')} {how}"


def fmt(v: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if v is None else f"{format(v, spec)}{suffix}"


def pct(summary: dict, key: str, q: str = "p50") -> float | None:
    v = summary.get(key)
    return v.get(q) if isinstance(v, dict) else None


def newest_engine_figures(res: Results) -> dict[str, tuple[float, str]]:
    """figure -> (value, file) from the newest bench-engine file (by ``meta.date``) that has it: a later
    partial run (``--only http``) supersedes that figure only."""
    out: dict[str, tuple[float, str]] = {}
    for e in sorted(res["bench-engine"], key=lambda e: (e.get("meta") or {}).get("date") or ""):
        out.update({k: (v, e["_path"]) for k, v in e.items() if isinstance(v, int | float) and not k.startswith("_")})
    return out
