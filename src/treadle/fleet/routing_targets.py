"""The routing benchmark's targets, from a ``bench fleet`` file's runs (pure; no server, no fleet).

On one workload, prefix_affinity must reach >= 2x round_robin's prefix-cache hit rate (tokens), a
median TTFT >= 30% below round_robin's, and a p99 end-to-end latency <= 1.10x least_loaded's.
"""

from __future__ import annotations


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(runs: list[dict], workload: str) -> dict:
    """The three ratios and ``met`` for ``workload``; ``missing`` when a policy was not measured."""
    by = {r["policy"]: r["summary"] for r in runs if r["workload"] == workload}
    pa, rr, ll = by.get("prefix_affinity"), by.get("round_robin"), by.get("least_loaded")
    if not (pa and rr and ll):
        return {"met": False, "missing": "needs round_robin, least_loaded and prefix_affinity"}
    hit = _ratio(pa["prefix_cache_hit_rate"], rr["prefix_cache_hit_rate"])
    p50 = _ratio(pa["ttft_ms"]["p50"], rr["ttft_ms"]["p50"])
    p99 = _ratio(pa["e2e_ms"]["p99"], ll["e2e_ms"]["p99"])
    red = None if p50 is None else 1.0 - p50
    met = hit is not None and hit >= 2.0 and red is not None and red >= 0.30 and p99 is not None and p99 <= 1.10
    return {"workload": workload, "hit_rate_ratio_vs_round_robin": hit, "median_ttft_reduction_vs_round_robin": red,
            "p99_e2e_ratio_vs_least_loaded": p99, "met": met}
