"""The report's simulation part: ``treadle sim`` results as a table and two figures per file.

Figures: (1) TTFT p90 per minute and ready replicas over time, one line per run; (2) cost against SLO
attainment: replica-hours (x) and share of requests meeting the SLO (y), one point per run. Nothing here
when no ``kind: sim`` file was given (a simulation is optional evidence, not a measurement).
"""

from __future__ import annotations

from treadle.report.loading import Results, fmt, pct
from treadle.report.plots import _fig, _png
from treadle.report.render import Block


def run_label(r: dict) -> str:
    scale = r.get("autoscale")
    size = (f"autoscale {scale['min_replicas']}-{scale['max_replicas']}" if scale else f"{r.get('replicas')} replicas")
    return f"{r.get('policy')}, {size}"


def _timeline(f: dict) -> bytes | None:
    runs = f.get("runs") or []
    if not runs:
        return None
    plt, fig, (ax1, ax2) = _fig(2)
    for r in runs:
        lat = r.get("latency_over_time") or []
        ax1.plot([p["t_s"] / 60 for p in lat], [p["ttft_p90_ms"] for p in lat], label=run_label(r))
        rep = r.get("replicas_over_time") or []
        if rep:
            end = r["summary"]["duration_s"]
            xs = [p[0] / 60 for p in rep] + [end / 60]
            ax2.step(xs, [p[1] for p in rep] + [rep[-1][1]], where="post", label=run_label(r))
    ax1.set_yscale("log")
    ax1.set_ylabel("TTFT p90 (ms)")
    ax1.set_title(f"simulated: {f.get('trace')}", fontsize=9)
    ax1.legend(fontsize=6)
    ax2.set_xlabel("minutes (arrival)")
    ax2.set_ylabel("ready replicas")
    return _png(plt, fig)


def _cost_vs_slo(f: dict) -> bytes | None:
    pts = [(r["replica_hours"], r["slo_attainment"], run_label(r)) for r in f.get("runs") or []
           if r.get("slo_attainment") is not None]
    if not pts:
        return None
    plt, fig, ax = _fig()
    for x, y, lbl in pts:
        ax.scatter([x], [100 * y], label=lbl)
    ax.set_xlabel("replica-hours (cost)")
    ax.set_ylabel("requests within SLO (%)")
    ax.set_title(f"cost vs SLO attainment, SLO {f.get('slo')}", fontsize=9)
    ax.legend(fontsize=6)
    return _png(plt, fig)


def sim_blocks(res: Results) -> list[Block]:
    files = res.by_kind.get("sim") or []
    if not files:
        return []
    out: list[Block] = [("h2", "Simulation (treadle sim)"),
                        ("p", "Predicted, not measured: the real scheduler, KV cache, routing policy and autoscaler "
                              "run on simulated time with a cost model of a step (docs/SIMULATION.md).")]
    for i, f in enumerate(files):
        cm = f.get("cost_model") or {}
        rows = []
        for r in f.get("runs") or []:
            s = r["summary"]
            rows.append([run_label(r), fmt(s.get("requests_per_s"), ".2f"), fmt(pct(s, "ttft_ms"), ".0f"),
                         fmt(pct(s, "ttft_ms", "p99"), ".0f"), fmt(pct(s, "tpot_ms"), ".1f"),
                         fmt(s.get("goodput_req_s"), ".2f"),
                         fmt(None if r.get("slo_attainment") is None else 100 * r["slo_attainment"], ".1f", "%"),
                         fmt(None if r.get("prefix_cache_hit_rate") is None else 100 * r["prefix_cache_hit_rate"],
                             ".1f", "%"), fmt(r.get("replica_hours"), ".2f")])
        out += [("h3", f"{f.get('trace')} ({f['_path']}; cost model: {cm.get('name') or cm.get('file')})"),
                ("table", ["run", "req/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "goodput req/s",
                           "within SLO", "prefix hit", "replica-hours"], rows)]
        for name, png, caption in ((f"sim{i}_timeline.png", _timeline(f), "TTFT p90 and ready replicas over time"),
                                   (f"sim{i}_cost_slo.png", _cost_vs_slo(f), "Cost against SLO attainment")):
            if png is not None:
                out.append(("img", name, caption, png))
    return out
