"""Constructed eval results for the gate tests (no model, no server)."""

from __future__ import annotations

from treadle.evals.results import EvalResults


def results(suites: dict[str, dict[str, list[bool]]]) -> EvalResults:
    """suite -> metric -> outcomes (item i has id str(i)); every metric gated."""
    summary: dict = {"kind": "eval", "meta": {}, "suites": {}}
    items: dict[str, list[dict]] = {}
    for suite, metrics in suites.items():
        n = len(next(iter(metrics.values())))
        summary["suites"][suite] = {"metrics": {m: {"value": sum(v) / n, "n": n, "gated": True} for m, v in metrics.items()}}
        items[suite] = [{"id": str(i), "passed": {m: v[i] for m, v in metrics.items()}} for i in range(n)]
    return EvalResults(summary, items)


def outcomes(n: int, fails: set[int]) -> list[bool]:
    """n outcomes, failed exactly at the indices in ``fails``."""
    return [i not in fails for i in range(n)]
