"""Optimisation recommendations computed from the measurements, each with its figure and expected gain.

Rules (threshold -> recommendation; the expected gain is derived from the same data, as stated):
1. prefix cache: a run whose measured token hit rate h is below half of what its workload could reuse
   -> cache-aware routing / keep prefixes resident. What it could reuse, h_ref, is the run's
   ``prefix_reuse_ideal`` (an unbounded one-node cache, computed from the prompts sent); runs without it
   on a sharing workload (shared-prefix, multiturn, mooncake) with h < 0.5 use the best hit rate
   measured on the same workload in the same result file (a fleet file's best routing policy) when it
   is > 2h, else the best on any sharing workload (else bench engine's ``prefix_hit_rate``). A fleet
   file measured the policies side by side: its runs use the best policy's rate on the same workload
   when it is > 1.25h and fire only then; a ``prefix_affinity`` run (already cache-aware) never fires.
   Gain: h_ref - h of prompt tokens skip prefill; TTFT p50 scales with the prefill share, so
   TTFT p50 x (1 - (1 - h_ref) / (1 - h)) is the expected saving.
2. TTFT tail: p99 > 3 x p50 in a loaded run (concurrency > 1 or open loop) -> smaller prefill chunks
   (``max-num-batched-tokens``) or one more replica. Gain: the queueing part p99 - p50 halves with twice
   the capacity (waiting time proportional to load per replica): p99 -> p50 + (p99 - p50) / 2.
3. concurrency sweep (>= 2 closed-loop runs of one workload on one endpoint): if the last doubling of
   concurrency still raised output tok/s by > 20% -> raise concurrency; expected gain (g - 1) / 2 for
   the next step (diminishing returns assumed). If it raised tok/s < 10% while TTFT p50 grew > 1.5x ->
   cap concurrency (max-num-seqs) at the lower level: same throughput, lower TTFT.
4. engine roof: best served output tok/s < 50% of bench engine's offline ``throughput_tok_s`` -> raise
   batch size / concurrency; gain up to roof / best. If a concurrency sweep already shows output tok/s
   falling at its highest level, more concurrency is not the lever: find where the server loses it.
5. errors: error rate > 0 -> capacity (429: raise --max-queue or add replicas); gain = failed / duration
   requests/s recovered.
6. SLO: goodput < 90% of requests/s -> the most violated bound decides (TTFT: prefill scheduling or
   replicas; TPOT: fewer concurrent sequences); gain = requests/s - goodput.
7. compare: a peer ahead of the first target by > 10% in output tok/s or TTFT p50 -> study that peer's
   setting; gain = the ratio.
8. eval: a safety-category metric below 0.9 -> refusal guardrail / safety fine-tune with ``treadle gate``;
   an accuracy-category metric below 0.5 -> fine-tune on the task. Gain: the gap to that bar (the
   inputs hold no fine-tuned result, so the gate must measure the real gain).
Repeats of one rule (several runs or metrics) are merged into one row that names them all. Bench engine
figures are the newest file's that measured each (``loading.newest_engine_figures``).
"""

from __future__ import annotations

from dataclasses import dataclass

from treadle.report.loading import SHARING_WORKLOADS, Results, fmt, newest_engine_figures, pct, serve_label


@dataclass(frozen=True)
class Recommendation:
    title: str
    figure: str  # the measurement that motivates it
    gain: str  # expected gain and how it is derived
    source: str  # result file
    subject: str = ""  # the run or metric it is about (repeats of one title are merged on it)


def merge_repeats(recs: list[Recommendation]) -> list[Recommendation]:
    """One recommendation per title, in first-seen order: the first keeps its figure and gain and names
    the other runs or metrics where the same rule fired; their sources are joined."""
    groups: dict[str, list[Recommendation]] = {}
    for r in recs:
        groups.setdefault(r.title, []).append(r)
    out = []
    for title, rs in groups.items():
        first, rest = rs[0], rs[1:]
        if not rest:
            out.append(first)
            continue
        also = ", ".join(r.subject or r.figure for r in rest)
        sources = list(dict.fromkeys(r.source for r in rs))
        out.append(Recommendation(title, f"{first.figure} (the same rule fires for {len(rest)} more: {also})",
                                  first.gain + (f" (for {first.subject})" if first.subject else ""),
                                  ", ".join(sources), first.subject))
    return out


def _serve_runs(res: Results) -> list[tuple[str, dict, dict, str]]:
    """(label, config, summary, path) of every serve-like run: bench serve and fleet runs."""
    runs = [(serve_label(r), r.get("config", {}), r["summary"], r["_path"]) for r in res["bench-serve"]]
    for f in res["bench-fleet"]:
        for run in f.get("runs", []):
            cfg = {"workload": run.get("workload"), "arrival_mode": "fleet", "concurrency": None,
                   "policy": run.get("policy")}
            runs.append((f"fleet {run.get('workload')} {run.get('policy')}", cfg, run["summary"], f["_path"]))
    return runs


def _loaded(cfg: dict) -> bool:
    return cfg.get("arrival_mode") != "concurrency" or (cfg.get("concurrency") or 1) > 1


def recommend(res: Results, merge: bool = True) -> list[Recommendation]:
    """Every rule's recommendations; with ``merge``, repeats of one title become one row (``merge_repeats``)."""
    out: list[Recommendation] = []
    runs = _serve_runs(res)
    engine = {k: v for k, (v, _) in newest_engine_figures(res).items()} or None
    sharing = [(lbl, cfg, s, p) for lbl, cfg, s, p in runs if cfg.get("workload") in SHARING_WORKLOADS
               and s.get("prefix_cache_hit_rate") is not None]
    h_ref = max([s["prefix_cache_hit_rate"] for _, _, s, _ in sharing], default=None)
    if (h_ref is None or h_ref < 0.5) and engine and engine.get("prefix_hit_rate") is not None:
        h_ref = engine["prefix_hit_rate"]
    for lbl, cfg, s, p in [r for r in runs if r[2].get("prefix_cache_hit_rate") is not None]:
        if cfg.get("policy") == "prefix_affinity":
            continue  # already routes by prefix
        h, ideal, local = s["prefix_cache_hit_rate"], s.get("prefix_reuse_ideal"), False
        fleet = cfg.get("arrival_mode") == "fleet"
        if ideal is not None:
            ref, fire = ideal, h < 0.5 * ideal
        else:
            wl = next((c.get("workload") for _, c, x, q in sharing if q == p and x is s), None)
            peers = [x["prefix_cache_hit_rate"] for _, c, x, q in sharing if q == p and c.get("workload") == wl]
            local = wl is not None and max(peers) > (1.25 * h if fleet else 2 * h)
            ref, fire = max(peers) if local else h_ref, wl is not None and h < 0.5 and (local or not fleet)
        if fire and ref is not None and ref > h:
            ttft = pct(s, "ttft_ms")
            save = None if ttft is None else ttft * (1 - (1 - ref) / (1 - h))
            out.append(Recommendation(
                "Route requests by prefix (cache-aware routing) and keep shared prefixes resident",
                f"{lbl}: prefix-cache hit rate {h:.0%} of prompt tokens"
                + (f", while its prompts could reuse {ideal:.0%}" if ideal is not None else
                   f", while another run of this workload in the same file reached {ref:.0%}"
                   if ideal is None and local else " on a workload whose prompts share prefixes"),
                f"{ref - h:.0%} of prompt tokens would skip prefill at a hit rate of {ref:.0%}; "
                f"TTFT p50 {fmt(ttft, '.0f')} ms would drop by about {fmt(save, '.0f')} ms (prefill share scaled)", p, lbl))
    for lbl, cfg, s, p in runs:
        p50, p99 = pct(s, "ttft_ms"), pct(s, "ttft_ms", "p99")
        if p50 and p99 and p99 > 3 * p50 and _loaded(cfg):
            out.append(Recommendation(
                "Cut TTFT tail: smaller prefill chunks (--max-num-batched-tokens) or one more replica",
                f"{lbl}: TTFT p99 {p99:.0f} ms is {p99 / p50:.1f}x p50 {p50:.0f} ms",
                f"p99 to about {p50 + (p99 - p50) / 2:.0f} ms with twice the capacity (queueing part halves)", p, lbl))
    out += _sweep(res)
    best = max(runs, key=lambda r: r[2].get("output_tok_s") or 0.0, default=None)
    if engine and best and engine.get("throughput_tok_s") and best[2].get("output_tok_s") is not None:
        roof, got = engine["throughput_tok_s"], best[2]["output_tok_s"]
        falls = [c for c in _sweep_points(res) if c[-1][1] < max(t for _, t in c)]
        if got < 0.5 * roof and falls:  # more concurrency already made it worse: the loss is elsewhere
            (c_hi, t_hi), best_c = falls[0][-1], max(falls[0], key=lambda x: x[1])
            out.append(Recommendation(
                "Find where served throughput is lost at high concurrency (profile the server at that load)",
                f"served output peaks at {best_c[1]:.1f} tok/s (concurrency {best_c[0]}) and falls to {t_hi:.1f} at "
                f"{c_hi}, while the engine sustains {roof:.1f} tok/s offline with 64 sequences (bench engine)",
                f"up to {roof / got:.1f}x output tok/s (engine roof / best served)", best[3]))
        elif got < 0.5 * roof:
            out.append(Recommendation(
                "Raise batch size / client concurrency towards the engine's offline roof",
                f"best served output {got:.1f} tok/s ({best[0]}) is {got / roof:.0%} of the engine's offline "
                f"{roof:.1f} tok/s (bench engine, 64 sequences)",
                f"up to {roof / got:.1f}x output tok/s if the server is fed as many sequences as the offline run", best[3]))
    for lbl, _, s, p in runs:
        if s.get("error_rate", 0) > 0:
            errs = ", ".join(f"{k}: {v}" for k, v in (s.get("errors") or {}).items())
            act = "raise --max-queue or add replicas" if "429" in (s.get("errors") or {}) else "add capacity"
            out.append(Recommendation(
                f"Stop losing requests: {act}",
                f"{lbl}: error rate {s['error_rate']:.1%} ({s.get('failed')} failed; {errs})",
                f"{s.get('failed', 0) / s['duration_s']:.3f} requests/s recovered (failed / run duration)", p, lbl))
        good, rps = s.get("goodput_req_s"), s.get("requests_per_s")
        if good is not None and rps and good < 0.9 * rps:
            slo = s.get("slo") or {}
            tt = pct(s, "ttft_ms", "p90")
            bound = "ttft_ms" if "ttft_ms" in slo and tt and tt > slo["ttft_ms"] else "tpot_ms"
            act = ("prefill scheduling (smaller chunks) or more replicas" if bound == "ttft_ms"
                   else "fewer concurrent sequences per replica (max-num-seqs) or more replicas")
            out.append(Recommendation(
                f"Meet the SLO: {act}",
                f"{lbl}: goodput {good:.3f} req/s is {good / rps:.0%} of {rps:.3f} req/s under SLO "
                + ", ".join(f"{k} <= {v:g}" for k, v in slo.items()),
                f"up to {rps - good:.3f} req/s more goodput (requests/s minus goodput); {bound} is the bound missed", p, lbl))
    out += _compare(res) + _eval(res)
    return merge_repeats(out) if merge else out


def _sweep_points(res: Results) -> list[list[tuple[int, float]]]:
    """Per (workload, endpoint) with >= 2 closed-loop runs: [(concurrency, output tok/s)] by concurrency."""
    groups: dict[tuple, list[tuple[int, float]]] = {}
    for r in res["bench-serve"]:
        c = r.get("config", {})
        if c.get("arrival_mode") == "concurrency":
            groups.setdefault((c.get("workload"), c.get("base_url")), []).append(
                (c["concurrency"], r["summary"]["output_tok_s"]))
    return [sorted(v) for v in groups.values() if len(v) >= 2]


def _sweep(res: Results) -> list[Recommendation]:
    groups: dict[tuple, list[dict]] = {}
    for r in res["bench-serve"]:
        c = r.get("config", {})
        if c.get("arrival_mode") == "concurrency":
            groups.setdefault((c.get("workload"), c.get("base_url")), []).append(r)
    out = []
    for (wl, _), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["config"]["concurrency"])
        if len(rs) < 2:
            continue
        lo, hi = rs[-2], rs[-1]
        a, b = lo["summary"]["output_tok_s"], hi["summary"]["output_tok_s"]
        if not a:
            continue
        g, c_lo, c_hi = b / a, lo["config"]["concurrency"], hi["config"]["concurrency"]
        t_lo, t_hi = pct(lo["summary"], "ttft_ms"), pct(hi["summary"], "ttft_ms")
        if g > 1.2:
            out.append(Recommendation(
                f"Raise concurrency above {c_hi} for {wl}",
                f"output tok/s rose {g:.2f}x from concurrency {c_lo} ({a:.1f}) to {c_hi} ({b:.1f})",
                f"about {(g - 1) / 2:.0%} more tok/s for the next step (half the last step's gain)", hi["_path"]))
        elif g < 1.1 and t_lo and t_hi and t_hi > 1.5 * t_lo:
            out.append(Recommendation(
                f"Cap concurrency at {c_lo} for {wl} (max-num-seqs / gateway queue)",
                f"concurrency {c_lo} -> {c_hi}: output tok/s x{g:.2f} but TTFT p50 {t_lo:.0f} -> {t_hi:.0f} ms",
                f"TTFT p50 back to about {t_lo:.0f} ms at {g:.0%} of the throughput", hi["_path"]))
    return out


def _compare(res: Results) -> list[Recommendation]:
    out = []
    for c in res["bench-compare"]:
        names = [r["name"] for r in c.get("results", [])]
        for name in names[1:]:
            r = c["ratios"].get(name, {})
            tok, ttft = r.get("output_tok_s"), r.get("ttft_ms.p50")
            if tok and tok > 1.1:
                out.append(Recommendation(f"Close the throughput gap to {name}",
                                          f"{name} delivers {tok:.2f}x {names[0]}'s output tok/s",
                                          f"{tok:.2f}x output tok/s if {names[0]} matched {name}", c["_path"]))
            if ttft and ttft < 0.9:
                out.append(Recommendation(f"Close the TTFT gap to {name}",
                                          f"{name}'s TTFT p50 is {ttft:.2f}x {names[0]}'s",
                                          f"TTFT p50 x{ttft:.2f} if {names[0]} matched {name}", c["_path"]))
    return out


def _eval(res: Results) -> list[Recommendation]:
    out = []
    for e in res["eval"]:
        for suite, s in e.get("suites", {}).items():
            if s.get("category") == "accuracy":
                for name, m in s.get("metrics", {}).items():
                    v = m.get("value")
                    if isinstance(v, int | float) and v < 0.5:
                        out.append(Recommendation(
                            f"Fine-tune for {suite} (task data, LoRA adapter) and release it through `treadle gate`",
                            f"{suite}/{name} = {v:.2f} (n={m.get('n')}, CI {_ci(m)})",
                            f"{0.5 - v:+.2f} to reach 0.50, the bar below which the task output is mostly wrong; "
                            "the gate measures the real gain before release", e["_path"], f"{suite}/{name}"))
            if s.get("category") != "safety":
                continue
            for name, m in s.get("metrics", {}).items():
                v = m.get("value")
                if isinstance(v, int | float) and v < 0.9 and not name.startswith(("over_refusal", "false")):
                    out.append(Recommendation(
                        f"Raise refusals of harmful requests ({suite} suite): refusal guardrail or safety "
                        "fine-tune, gated by `treadle gate`",
                        f"{suite}/{name} = {v:.2f} (n={m.get('n')}, CI {_ci(m)})",
                        f"{0.9 - v:+.2f} to reach 0.90", e["_path"], f"{suite}/{name}"))
    return out


def _ci(m: dict) -> str:
    ci = m.get("ci")
    return f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "-"
