"""Repeated real runs grouped for ``treadle sim validate``: the real runs' mean, range and spread beside the
simulation's error against their mean, and how many groups are within the issue's bar (15% on throughput and
median TTFT, 5 points on prefix-cache hit rate)."""

from __future__ import annotations


def relative_error(sim: float | None, real: float | None) -> float | None:
    """sim / real - 1 (None when either is missing or real is 0)."""
    return None if sim is None or not real else sim / real - 1.0


METRICS = ("requests_per_s", "output_tok_s", "ttft_p50_ms", "hit_rate")


def repeated(rows: list[dict]) -> list[dict]:
    """Group the rows of the same run (same name) from several files: per metric the real values, their mean,
    min, max and spread ((max - min) / mean), the simulation's mean and its error against the real mean
    (hit rate in points). Runs seen once are left out."""
    by_run: dict[str, list[dict]] = {}
    for row in rows:
        by_run.setdefault(row["run"], []).append(row)
    groups = []
    for run, rs in by_run.items():
        if len(rs) < 2:
            continue
        g: dict = {"run": run, "repeats": len(rs), "metrics": {}}
        for m in METRICS:
            real = [r["real"][m] for r in rs if r["real"].get(m) is not None]
            sim = [r["sim"][m] for r in rs if r["sim"].get(m) is not None]
            if len(real) < 2 or not sim:
                continue
            mean, sim_mean = sum(real) / len(real), sum(sim) / len(sim)
            ranges = [r["sim"]["range"][m] for r in rs if (r["sim"].get("range") or {}).get(m)]
            g["metrics"][m] = {"real": real, "real_mean": mean, "real_min": min(real), "real_max": max(real),
                               "spread": (max(real) - min(real)) / mean if mean else None, "sim_mean": sim_mean,
                               "sim_min": min([x[0] for x in ranges] or sim), "sim_max": max([x[1] for x in ranges] or sim),
                               "error": ((sim_mean - mean) * 100 if m == "hit_rate" else relative_error(sim_mean, mean))}
        groups.append(g)
    return groups


BAR = {"throughput": 0.15, "ttft_p50": 0.15, "hit_rate_points": 5.0}


def within_bar(groups: list[dict]) -> dict[str, list[int]]:
    """Per figure of the issue's bar, [repeated runs within it, repeated runs measured]: throughput (output
    tokens/s where the run has it, else requests/s) and median TTFT within 15% of the real mean, hit rate within 5
    points."""
    out = {k: [0, 0] for k in BAR}
    for g in groups:
        m = g["metrics"]
        for key, metric in (("throughput", "output_tok_s" if "output_tok_s" in m else "requests_per_s"),
                            ("ttft_p50", "ttft_p50_ms"), ("hit_rate_points", "hit_rate")):
            if metric in m and m[metric]["error"] is not None:
                out[key][0] += abs(m[metric]["error"]) <= BAR[key]
                out[key][1] += 1
    return out


def group_line(g: dict) -> str:
    parts = []
    for m, v in g["metrics"].items():
        if m == "hit_rate":
            parts.append(f"hit real {v['real_min']:.1%}-{v['real_max']:.1%}, sim {v['sim_mean']:.1%} "
                         f"({v['error']:+.1f} pt vs mean)")
        else:
            parts.append(f"{m} real {v['real_min']:,.3g}-{v['real_max']:,.3g} (spread {v['spread']:.0%}), "
                         f"sim {v['sim_mean']:,.3g} [{v['sim_min']:,.3g}-{v['sim_max']:,.3g}] "
                         f"({v['error']:+.0%} vs mean)")
    return f"{g['run']} x{g['repeats']}: " + "; ".join(parts)
