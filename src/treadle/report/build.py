"""Assemble the report: 1) executive summary, 2) recommendations, 3) risks, 4) measurements, 5) sources.

Every part that lacks data says which command produces it; nothing is left as placeholder text.
"""

from __future__ import annotations

import datetime as dt

from treadle.fleet.routing_targets import targets
from treadle.report import plots
from treadle.report.loading import PRODUCERS, Results, fmt, newest_engine_figures, pct, serve_label
from treadle.report.recommendations import recommend
from treadle.report.render import Block
from treadle.report.risks import risks
from treadle.report.sim_section import sim_blocks

SECTIONS = ("1. Executive summary", "2. Optimisation recommendations", "3. Risks and mitigations",
            "4. Measurements", "5. Sources")
CATEGORIES = ("accuracy", "coherence", "safety")


def _run_rows(res: Results) -> list[list[str]]:
    rows = []
    items = [(serve_label(r), r["summary"], r.get("config", {}).get("base_url", "")) for r in res["bench-serve"]]
    items += [(f"fleet {x.get('workload')} {x.get('policy')}", x["summary"], "gateway")
              for f in res["bench-fleet"] for x in f.get("runs", [])]
    for lbl, s, url in items:
        rows.append([lbl, url, str(s.get("completed")), fmt(s.get("requests_per_s"), ".3f"),
                     fmt(s.get("output_tok_s")), fmt(pct(s, "ttft_ms"), ".0f"), fmt(pct(s, "ttft_ms", "p99"), ".0f"),
                     fmt(pct(s, "tpot_ms"), ".0f"), f"{s.get('error_rate', 0):.1%}", fmt(s.get("goodput_req_s"), ".3f"),
                     fmt(None if s.get("prefix_cache_hit_rate") is None else 100 * s["prefix_cache_hit_rate"], ".0f", "%")])
    return rows


RUN_HEADERS = ["run", "endpoint", "completed", "req/s", "out tok/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms",
               "errors", "goodput req/s", "prefix hit"]


def _executive(res: Results) -> list[Block]:
    bullets = []
    runs = [(serve_label(r), r["summary"]) for r in res["bench-serve"]]
    runs += [(f"fleet {x.get('workload')} {x.get('policy')}", x["summary"]) for f in res["bench-fleet"]
             for x in f.get("runs", [])]
    if runs:
        lbl, s = max(runs, key=lambda t: t[1].get("output_tok_s") or 0.0)
        bullets.append(f"Throughput: up to {s['requests_per_s']:.3f} requests/s and {s['output_tok_s']:.1f} output "
                       f"tokens/s served over HTTP ({lbl}; {s['completed']} requests).")
        lo = min(runs, key=lambda t: pct(t[1], "ttft_ms") or float("inf"))
        hi = max(runs, key=lambda t: pct(t[1], "ttft_ms", "p99") or 0.0)
        bullets.append(f"TTFT: p50 {fmt(pct(lo[1], 'ttft_ms'), '.0f')} ms at best ({lo[0]}); worst p99 "
                       f"{fmt(pct(hi[1], 'ttft_ms', 'p99'), '.0f')} ms ({hi[0]}).")
    else:
        bullets.append(f"Served throughput and TTFT: not measured; `{PRODUCERS['bench-serve']}` measures them.")
    bullets += _routing_bullets(res)
    eng = newest_engine_figures(res)
    if eng:
        parts = [("throughput_tok_s", "{:.1f} output tokens/s offline (64 sequences)"),
                 ("throughput_ratio", "{:.2f}x transformers"), ("http_throughput_tok_s", "{:.1f} tokens/s over HTTP"),
                 ("http_throughput_ratio", "HTTP / offline {:.2f}"), ("single_stream_tok_s", "single stream {:.1f} tokens/s"),
                 ("ttft_ratio", "prefix cache cuts TTFT {:.1f}x")]
        bullets.append("Engine (bench engine; the newest file that measured each figure): " + "; ".join(
            f"{fmt_.format(eng[k][0])} ({eng[k][1]})" for k, fmt_ in parts if k in eng) + ".")
    if not res["bench-engine"]:
        bullets.append(f"Engine roof: not measured; `{PRODUCERS['bench-engine']}` measures it.")
    for cat in CATEGORIES:
        found = [f"{suite}/{name} {m['value']:.2f}" + (f" (95% CI {m['ci'][0]:.2f}-{m['ci'][1]:.2f}, n={m.get('n')})"
                                                        if m.get("ci") else "")
                 for e in res["eval"] for suite, s in e.get("suites", {}).items() if s.get("category") == cat
                 for name, m in s.get("metrics", {}).items() if isinstance(m.get("value"), int | float)]
        bullets.append(f"{cat.capitalize()}: " + ("; ".join(found) if found else
                                                  f"no eval summary with a suite of this category; `{PRODUCERS['eval']}` measures it."))
    for c in res["bench-compare"]:
        names = list(c["ratios"])
        parts = [f"{n}: {fmt(c['ratios'][n].get('output_tok_s'), '.2f')}x output tok/s, "
                 f"{fmt(c['ratios'][n].get('ttft_ms.p50'), '.2f')}x TTFT p50" for n in names[1:]]
        bullets.append(f"Side by side ({c.get('config', {}).get('workload')}, ratios to {names[0]}): " + "; ".join(parts))
    if not res["bench-compare"]:
        bullets.append(f"Peers side by side: not measured; `{PRODUCERS['bench-compare']}` measures it.")
    out: list[Block] = [("h2", SECTIONS[0]), ("ul", bullets)]
    rows = _run_rows(res)
    out += [("table", RUN_HEADERS, rows)] if rows else []
    return out


def _routing_bullets(res: Results) -> list[str]:
    """One bullet per fleet workload measured under all three policies: the routing targets, recomputed."""
    out = []
    for f in res["bench-fleet"]:
        for wl in dict.fromkeys(x.get("workload") for x in f.get("runs", [])):
            t = targets(f["runs"], wl)
            if "missing" in t:
                continue
            out.append(f"Cache-aware routing ({wl}, {f['_path']}): prefix_affinity has "
                       f"{fmt(t['hit_rate_ratio_vs_round_robin'], '.1f')}x round_robin's prefix-cache hit rate "
                       f"(target >= 2x), {fmt(100 * t['median_ttft_reduction_vs_round_robin'], '.0f')}% lower "
                       f"median TTFT (target >= 30%) and {fmt(t['p99_e2e_ratio_vs_least_loaded'], '.2f')}x "
                       f"least_loaded's p99 end-to-end latency (target <= 1.10x): "
                       + ("targets met." if t["met"] else "targets not met."))
    return out


def _recommendations(res: Results) -> list[Block]:
    recs = recommend(res)
    if not recs:
        return [("h2", SECTIONS[1]), ("p", "No measured figure crosses a rule's threshold (prefix hit rate < 50% on a "
                 "sharing workload, TTFT p99 > 3x p50 under load, errors > 0, goodput < 90% of requests/s, "
                 "served tok/s < 50% of the engine roof, a peer > 10% ahead); add runs to test more rules.")]
    return [("h2", SECTIONS[1]), ("p", "Each recommendation is computed from the figure beside it; the gain says how "
                                        "it is derived (rules in `treadle/report/recommendations.py`)."),
            ("table", ["#", "recommendation", "motivating figure", "expected gain", "source"],
             [[str(i + 1), r.title, r.figure, r.gain, r.source] for i, r in enumerate(recs)])]


def _measurements(res: Results) -> list[Block]:
    out: list[Block] = [("h2", SECTIONS[3])]
    for name, (fn, caption, kind) in plots.FIGURES.items():
        png = fn(res)
        if png is not None:
            out.append(("img", name, caption, png))
        else:
            out.append(("p", f"{caption}: no data for this figure; `{PRODUCERS[kind]}` produces it"
                        + (" (with several --concurrency values)." if name == "concurrency.png" else
                           " (with --arrival trace, poisson or burst)." if name == "latency_over_time.png" else ".")))
    for c in res["bench-compare"]:
        names = list(c["ratios"])
        keys = list(next(iter(c["ratios"].values())))
        out += [("h3", f"Comparison ({c['_path']})"),
                ("table", ["metric", *names], [[k, *(fmt(c["ratios"][n].get(k), ".2f") for n in names)] for k in keys])]
    for f in res["bench-fleet"]:
        rows = [[str(x.get("replicas")), str(x.get("threads_each", "-")), fmt(x.get("requests_per_s"), ".3f"),
                 fmt(x.get("output_tok_s"))] for x in f.get("scaling") or []]
        if rows:
            out += [("h3", f"Fleet scaling ({f['_path']})"),
                    ("table", ["replicas", "threads each", "req/s", "out tok/s"], rows)]
    for e in res["bench-engine"]:
        keys = [k for k, v in e.items() if isinstance(v, int | float) and not isinstance(v, bool)]
        out += [("h3", f"Engine benchmark ({e['_path']})"), ("table", ["figure", "value"],
                                                               [[k, fmt(e[k], ".2f")] for k in keys])]
    return out


def _sources(res: Results) -> list[Block]:
    items = []
    for kind, rs in res.by_kind.items():
        for r in rs:
            m = r.get("meta", {})
            suites = {n: s["meta"] for n, s in r.get("suites", {}).items() if isinstance(s.get("meta"), dict)}
            if kind == "eval" and suites:  # suites run separately into one summary: each names its own run
                runs = "; ".join(f"{n}: `{sm.get('command') or sm.get('source', '?')}` on {sm.get('date', '?')}"
                                 for n, sm in suites.items())
                items.append(f"`{r['_path']}` ({kind}, {m.get('machine', {}).get('cores', '?')} cores): {runs}")
                continue
            items.append(f"`{r['_path']}` ({kind}): `{m.get('command', '?')}` on {m.get('date', '?')}, commit "
                         f"{str(m.get('git_commit'))[:12]}, {m.get('machine', {}).get('cores', '?')} cores")
    items += [f"skipped {s}" for s in res.skipped]
    return [("h2", SECTIONS[4]), ("ul", items)]


def build(res: Results, title: str = "Treadle performance report") -> list[Block]:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = sum(len(v) for v in res.by_kind.values())
    return [("h1", title), ("p", f"Generated {when} by `treadle report` from {n} result file(s)."),
            *_executive(res), *_recommendations(res),
            ("h2", SECTIONS[2]), ("table", ["risk", "evidence", "level", "mitigation"], [list(r) for r in risks(res)]),
            *_measurements(res), *sim_blocks(res), *_sources(res)]
