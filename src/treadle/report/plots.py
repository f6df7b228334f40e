"""Report figures (matplotlib, Agg backend), each returned as PNG bytes or None when there is no data.

Small by design: 6.4 x 3.4 inches at 80 dpi, so a report's PNGs stay in the tens of kilobytes.
"""

from __future__ import annotations

import io

from treadle.report.loading import Results, pct, serve_label

SIZE, DPI = (6.4, 3.4), 80


def _fig(rows: int | None = None):  # noqa: ANN202
    """(pyplot, figure, axes): one axes, or a list of ``rows`` stacked axes when ``rows`` is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if rows is None:
        fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
        return plt, fig, ax
    fig, axes = plt.subplots(rows, 1, figsize=(SIZE[0], SIZE[1] * rows), dpi=DPI, squeeze=False)
    return plt, fig, list(axes[:, 0])


def _png(plt, fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def ttft_cdf(res: Results) -> bytes | None:
    runs = [(serve_label(r), sorted(x["ttft_s"] * 1000 for x in r.get("requests", [])
                                    if x.get("status") == 200 and x.get("ttft_s") is not None))
            for r in res["bench-serve"]]
    runs = [(lbl, v) for lbl, v in runs if v]
    if not runs:
        return None
    plt, fig, ax = _fig()
    for lbl, v in runs:
        ax.plot(v, [(i + 1) / len(v) for i in range(len(v))], label=lbl, drawstyle="steps-post")
    ax.set_xscale("log")
    ax.set(xlabel="TTFT (ms, log scale)", ylabel="fraction of requests", title="TTFT CDF")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def concurrency_sweep(res: Results) -> bytes | None:
    groups: dict[str, list[dict]] = {}
    for r in res["bench-serve"]:
        c = r.get("config", {})
        if c.get("arrival_mode") == "concurrency":
            groups.setdefault(f"{c.get('workload')} @ {c.get('base_url')}", []).append(r)
    groups = {k: sorted(v, key=lambda r: r["config"]["concurrency"]) for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return None
    plt, fig, ax = _fig()
    ax2 = ax.twinx()
    for k, rs in groups.items():
        cs = [r["config"]["concurrency"] for r in rs]
        line = ax.plot(cs, [r["summary"]["output_tok_s"] for r in rs], "o-", label=f"{k} tok/s")[0]
        ax2.plot(cs, [pct(r["summary"], "ttft_ms") for r in rs], "s--", color=line.get_color(),
                 label=f"{k} TTFT p50")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="client concurrency", ylabel="output tokens/s", title="Throughput and TTFT vs concurrency")
    ax2.set_ylabel("TTFT p50 (ms, dashed)")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def latency_over_time(res: Results) -> bytes | None:
    runs = [r for r in res["bench-serve"] if r.get("config", {}).get("arrival_mode") in ("trace", "poisson", "burst")]
    runs = [r for r in runs if any(x.get("status") == 200 for x in r.get("requests", []))]
    if not runs:
        return None
    plt, fig, ax = _fig()
    for r in runs:
        ok = sorted((x for x in r["requests"] if x.get("status") == 200 and x.get("ttft_s") is not None),
                    key=lambda x: x["start_s"])
        pts = ax.plot([x["start_s"] for x in ok], [x["ttft_s"] * 1000 for x in ok], ".", ms=4,
                      label=f"{serve_label(r)} TTFT")
        ax.plot([x["start_s"] for x in ok], [x["e2e_s"] * 1000 for x in ok], "x", ms=3, color=pts[0].get_color(),
                alpha=0.5, label=f"{serve_label(r)} end-to-end")
    ax.set_yscale("log")
    ax.set(xlabel="send time (s from start)", ylabel="latency (ms, log)", title="Latency over time (open-loop runs)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def compare_bars(res: Results) -> bytes | None:
    """One panel of ratio bars per bench compare result (stacked when there are several)."""
    compares = res["bench-compare"]
    if not compares:
        return None
    plt, fig, axes = _fig(rows=len(compares))
    keys = ["requests_per_s", "output_tok_s", "ttft_ms.p50", "ttft_ms.p99", "tpot_ms.p50", "e2e_ms.p50"]
    for ax, c in zip(axes, compares, strict=True):
        names = list(c["ratios"])
        width = 0.8 / max(1, len(names))
        for i, n in enumerate(names):
            vals = [c["ratios"][n].get(k) or 0.0 for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], vals, width, label=n)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(keys))], keys, fontsize=7, rotation=15)
        wl = c.get("config", {}).get("workload", "?")
        ax.set(ylabel=f"ratio to {names[0]}",
               title=f"bench compare ({wl}): each figure / first target's (latency: lower is better)")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    return _png(plt, fig)


def quality_scores(res: Results) -> bytes | None:
    bars = [(f"{suite}/{name}", m["value"], m.get("ci"), bool(m.get("gated"))) for e in res["eval"]
            for suite, s in e.get("suites", {}).items() for name, m in s.get("metrics", {}).items()
            if isinstance(m.get("value"), int | float) and 0 <= m["value"] <= 1]
    if not bars:
        return None
    plt, fig, ax = _fig()
    ys = range(len(bars))
    err = [[max(0.0, v - ci[0]) if ci else 0.0 for _, v, ci, _ in bars],
           [max(0.0, ci[1] - v) if ci else 0.0 for _, v, ci, _ in bars]]
    ax.barh(list(ys), [b[1] for b in bars], xerr=err, alpha=0.8,
            color=["tab:green" if b[3] else "tab:gray" for b in bars])
    ax.axvline(0.95, color="tab:red", linestyle="--", linewidth=1, label="gate threshold 0.95 (gated: green)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=7)
    ax.set(xlim=(0, 1), xlabel="score (95% CI)", title="Quality scores per suite")
    return _png(plt, fig)


def loop_versions(res: Results) -> bytes | None:
    """Every loop version's gating score per gated metric (x: versions in order; marker: its fate)."""
    loops = [lp for lp in res["loop"] if lp.get("versions")]
    if not loops:
        return None
    plt, fig, ax = _fig()
    marks = {"production": "o", "retired": "o", "gate_failed": "x", "rolled_back": "v"}
    for lp in loops:
        vs = lp["versions"]
        metrics = sorted({m for v in vs for m in v.get("gating", {})})
        for m in metrics:
            pts = [(i, v["gating"][m]["value"], v["status"]) for i, v in enumerate(vs) if m in v.get("gating", {})]
            line = ax.plot([p[0] for p in pts], [p[1] for p in pts], linewidth=1, label=f"{lp.get('alias')}: {m}")[0]
            for x, y, status in pts:
                ax.plot([x], [y], marker=marks.get(status, "s"), color=line.get_color(), markersize=6)
        ax.set_xticks(range(len(vs)), [v["name"] for v in vs], rotation=30, fontsize=7)
    ax.set(ylim=(0, 1.02), ylabel="gating-set score", title="Loop versions (o promoted, x gate failed, v rolled back)")
    ax.legend(fontsize=6, loc="lower right")
    return _png(plt, fig)


FIGURES = {  # file name -> (function, caption, kind that feeds it)
    "ttft_cdf.png": (ttft_cdf, "TTFT CDF of every bench serve run", "bench-serve"),
    "concurrency.png": (concurrency_sweep, "Output tokens/s (solid) and TTFT p50 (dashed) vs client concurrency",
                        "bench-serve"),
    "latency_over_time.png": (latency_over_time, "TTFT and end-to-end latency over time in open-loop replays",
                              "bench-serve"),
    "compare.png": (compare_bars, "bench compare: ratios to the first target", "bench-compare"),
    "quality.png": (quality_scores, "Eval scores with 95% confidence intervals", "eval"),
    "loop_versions.png": (loop_versions, "Every loop version's gating scores and its fate", "loop"),
}
