"""The risk and mitigation table: each row's evidence and level are read from the measurements.

Levels: high / medium / low from the stated thresholds; a risk without data says which command
measures it (never a blank row).
"""

from __future__ import annotations

from treadle.report.loading import PRODUCERS, Results, pct, serve_label

Row = tuple[str, str, str, str]  # risk, evidence, level, mitigation


def _level(x: float | None, medium: float, high: float) -> str:
    if x is None:
        return "unknown"
    return "high" if x >= high else "medium" if x >= medium else "low"


def risks(res: Results) -> list[Row]:
    rows: list[Row] = []
    serve = res["bench-serve"]
    runs = [(serve_label(r), r["summary"]) for r in serve]
    runs += [(f"fleet {x.get('workload')} {x.get('policy')}", x["summary"]) for f in res["bench-fleet"]
             for x in f.get("runs", [])]
    if runs:
        lbl, s = max(runs, key=lambda t: pct(t[1], "ttft_ms", "p99") or 0.0)
        p99 = pct(s, "ttft_ms", "p99")
        rows.append(("Latency SLO breach under traffic peaks",
                     f"worst TTFT p99 {p99 or 0:.0f} ms ({lbl}); medium >= 2 s, high >= 10 s",
                     _level(p99, 2000, 10000),
                     "admission control at the gateway (429 + retry-after), autoscaling on queue depth, "
                     "chunked prefill"))
        lbl, s = max(runs, key=lambda t: t[1].get("error_rate") or 0.0)
        rows.append(("Capacity exhaustion: rejected or failed requests",
                     f"worst error rate {s.get('error_rate', 0):.1%} ({lbl}); medium > 0, high >= 5%",
                     _level(s.get("error_rate"), 1e-9, 0.05),
                     "size replicas from the measured req/s per replica; alert on treadle_num_requests_waiting"))
    else:
        rows.append(("Latency SLO breach and capacity exhaustion", f"not measured: `{PRODUCERS['bench-serve']}`",
                     "unknown", "measure before committing to an SLO"))
    starts = [e["server_ready_s"] for e in res["bench-engine"] if e.get("server_ready_s") is not None]
    starts += [f["cold_start_s"] for f in res["bench-fleet"] if f.get("cold_start_s") is not None]
    rows.append(("Slow scale-up: a new replica needs time before it serves",
                 f"start to ready {max(starts):.1f} s (bench engine / fleet); medium >= 30 s, high >= 120 s"
                 if starts else f"not measured: `{PRODUCERS['bench-engine']}`",
                 _level(max(starts) if starts else None, 30, 120),
                 "keep one warm spare replica; scale on queue depth before TTFT degrades"))
    eng = next((e for e in res["bench-engine"] if e.get("ttft_ratio")), None)
    rows.append(("Prefix-cache loss (restart, eviction, random routing) multiplies TTFT",
                 f"TTFT without/with prefix cache x{eng['ttft_ratio']:.1f} ({eng['ttft_cold_ms']:.0f} vs "
                 f"{eng['ttft_cached_ms']:.0f} ms); medium >= 2x, high >= 5x" if eng
                 else f"not measured: `{PRODUCERS['bench-engine']}`",
                 _level(eng["ttft_ratio"] if eng else None, 2, 5),
                 "cache-aware routing in the gateway; size KV cache for the hot prefixes; warm after restart"))
    rows.append(_quality(res))
    rows.append(("Single point of failure: one serving process",
                 f"fleet measured: {len(res['bench-fleet'])} result(s)" if res["bench-fleet"]
                 else f"no fleet result: `{PRODUCERS['bench-fleet']}` measures replicas behind the gateway",
                 "low" if res["bench-fleet"] else "high",
                 "run >= 2 replicas behind the gateway with health checks and draining (SIGTERM)"))
    n = min((s.get("completed", 0) for _, s in runs), default=None)
    rows.append(("Decisions on noisy numbers: small samples make p99 unstable",
                 f"smallest run has {n} completed requests; medium < 200, high < 50" if n is not None
                 else f"not measured: `{PRODUCERS['bench-serve']}`",
                 "unknown" if n is None else "high" if n < 50 else "medium" if n < 200 else "low",
                 "repeat runs, alternate configurations in rounds (`treadle bench compare`), report spreads"))
    return rows


def _quality(res: Results) -> Row:
    safety = [(suite, name, m.get("value")) for e in res["eval"] for suite, s in e.get("suites", {}).items()
              if s.get("category") == "safety" for name, m in s.get("metrics", {}).items()
              if isinstance(m.get("value"), int | float)]
    if not safety:
        return ("Unsafe or wrong answers reach users", f"no eval summary: `{PRODUCERS['eval']}`", "unknown",
                "run the eval suites and gate every model change with `treadle gate`")
    suite, name, v = min(safety, key=lambda t: t[2])
    return ("Unsafe or wrong answers reach users", f"lowest safety metric {suite}/{name} = {v:.2f}; "
            "medium < 0.95, high < 0.8", "high" if v < 0.8 else "medium" if v < 0.95 else "low",
            "gate releases with `treadle gate`; refusal guardrail on the gateway")
