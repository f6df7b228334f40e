"""`treadle report` on constructed results: sections, images, computed recommendations and risks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from treadle.report.build import SECTIONS
from treadle.report.loading import load_results
from treadle.report.recommendations import recommend
from treadle.report.risks import risks


def summary(rps: float, tok: float, ttft: tuple[float, float], hit: float | None = None, err: float = 0.0,
            good: float | None = None, failed: int = 0) -> dict:
    st = lambda p50, p99: {"mean": p50, "p50": p50, "p90": p99, "p99": p99}  # noqa: E731
    return {"completed": 64, "failed": failed, "cut_off": 0, "error_rate": err, "errors": {"429": failed} if failed else {},
            "duration_s": 100.0, "requests_per_s": rps, "output_tok_s": tok, "input_tok_s": 10 * tok,
            "ttft_ms": st(*ttft), "itl_ms": st(20, 40), "tpot_ms": st(25, 50), "e2e_ms": st(2000, 4000),
            "goodput_req_s": good, "slo": {"ttft_ms": 1000.0, "tpot_ms": 100.0} if good is not None else None,
            "cached_tokens_share": hit, "prefix_cache_hit_rate": hit}


def serve(workload: str, conc: int, s: dict, mode: str = "concurrency") -> dict:
    reqs = [{"id": str(i), "start_s": i * 0.5, "ttft_s": 0.1 + 0.01 * i, "itl_s": [0.02], "e2e_s": 1.0 + 0.01 * i,
             "prompt_tokens": 50, "output_tokens": 2, "cached_tokens": 0, "status": 200, "error": None}
            for i in range(20)]
    return {"kind": "bench-serve", "meta": {"command": "treadle bench serve ...", "date": "2026-11-28"},
            "config": {"workload": workload, "concurrency": conc, "arrival_mode": mode, "base_url": "http://x"},
            "summary": s, "requests": reqs}


@pytest.fixture
def results(tmp_path: Path) -> list[Path]:
    files = {
        "c1.json": serve("sharegpt", 1, summary(0.5, 20.0, (200, 300))),
        "c4.json": serve("sharegpt", 4, summary(1.2, 60.0, (300, 500))),
        "c16.json": serve("sharegpt", 16, summary(1.6, 90.0, (800, 4000), good=0.8)),  # tail 5x, SLO misses
        "prefix.json": serve("shared-prefix", 4, summary(1.0, 40.0, (1000, 1500), hit=0.2)),
        "moon.json": serve("mooncake", 1, {**summary(0.2, 5.0, (900, 1200), hit=0.04), "prefix_reuse_ideal": 0.045},
                           mode="trace"),  # at its ideal: no cache recommendation
        "prefix2.json": serve("shared-prefix", 2, {**summary(1.0, 40.0, (1000, 1500), hit=0.3),
                                                   "prefix_reuse_ideal": 0.9}),
        "trace.json": serve("azure-conv", 4, summary(0.3, 15.0, (100, 150), err=0.1, failed=7), mode="trace"),
        "engine.json": {"throughput_tok_s": 200.0, "prefix_hit_rate": 0.9, "ttft_ratio": 15.0, "ttft_cold_ms": 2600.0,
                        "ttft_cached_ms": 170.0, "server_ready_s": 4.0, "single_stream_tok_s": 40.0},
        "cmp.json": {"kind": "bench-compare", "meta": {}, "config": {"workload": "sharegpt"},
                     "targets": [{"name": "treadle"}, {"name": "vllm"}],
                     "results": [{"name": "treadle", "summary": summary(1, 50, (500, 900))},
                                 {"name": "vllm", "summary": summary(1, 70, (600, 900))}],
                     "ratios": {"treadle": {"output_tok_s": 1.0, "ttft_ms.p50": 1.0},
                                "vllm": {"output_tok_s": 1.4, "ttft_ms.p50": 1.2}}},
        "eval.json": {"kind": "eval", "meta": {}, "suites": {
            "safety": {"category": "safety", "n": 50, "metrics": {"refusal_rate": {"value": 0.6, "n": 50, "ci": [0.46, 0.72]}}},
            "bitext_intent": {"category": "accuracy", "n": 50, "metrics": {"accuracy": {"value": 0.8, "n": 50, "ci": [0.7, 0.9]}}}}},
        "gate.json": {"kind": "gate", "passed": True},
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
        paths.append(tmp_path / name)
    return paths


def test_recommendations_are_computed_from_the_figures(results: list[Path]) -> None:
    res = load_results(results)
    assert len(res["bench-serve"]) == 7 and len(res["bench-engine"]) == 1 and len(res.skipped) == 1
    recs = {r.title.split(":")[0].split(" (")[0]: r for r in recommend(res, merge=False)}
    cache = [r for r in recommend(res, merge=False) if "cache-aware" in r.title]
    assert len(cache) == 2 and not any("mooncake" in r.figure for r in cache)
    assert "20%" in cache[0].figure and "70% of prompt tokens" in cache[0].gain  # h_ref 0.9 from bench engine
    assert "about 875 ms" in cache[0].gain  # 1000 x (1 - 0.1 / 0.8)
    assert "could reuse 90%" in cache[1].figure and "60% of prompt tokens" in cache[1].gain
    assert "about 857 ms" in cache[1].gain  # 1000 x (1 - 0.1 / 0.7)
    tail = next(r for r in recs.values() if "TTFT tail" in r.title and "c=16" in r.figure)
    assert "5.0x" in tail.figure and "2400 ms" in tail.gain  # 800 + (4000 - 800) / 2
    sweep = next(r for r in recs.values() if "concurrency" in r.title.lower() and "sharegpt" in r.title)
    assert sweep.title == "Raise concurrency above 16 for sharegpt" and "1.50x" in sweep.figure
    roof = next(r for r in recs.values() if "roof" in r.title)
    assert "2.2x" in roof.gain  # 200 / 90
    err = next(r for r in recs.values() if "losing requests" in r.title)
    assert "max-queue" in err.title and "0.070 requests/s" in err.gain
    assert any("SLO" in r.title and "0.800 req/s" in r.figure for r in recs.values())
    assert any("throughput gap to vllm" in r.title and "1.40x" in r.figure for r in recs.values())
    assert any("safety" in r.title.lower() and "0.60" in r.figure for r in recs.values())
    assert not any("Fine-tune for bitext_intent" in r.title for r in recs.values())  # 0.8 is above the bar


def test_risks_name_evidence_or_the_missing_command(results: list[Path]) -> None:
    rows = risks(load_results(results))
    by = {r[0]: r for r in rows}
    assert by["Latency SLO breach under traffic peaks"][2] == "medium"  # 4000 ms p99
    assert by["Capacity exhaustion: rejected or failed requests"][2] == "high"  # 10% errors
    assert "bench fleet" in by["Single point of failure: one serving process"][1]
    assert all(r[1] and r[3] for r in rows)


def test_report_renders_sections_and_images(results: list[Path], tmp_path: Path) -> None:
    from treadle.cli import main

    out = tmp_path / "report"
    assert main(["report", *map(str, results), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in page
    assert len(re.findall(r"<img [^>]*src='data:image/png;base64,[A-Za-z0-9+/=]{200,}'", page)) == 5
    md = (out / "REPORT.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / link).is_file() and (out / link).stat().st_size < 100_000
    assert "TODO" not in md and "placeholder" not in md.lower()


def test_missing_parts_name_the_command_that_produces_them(tmp_path: Path) -> None:
    from treadle.cli import main

    f = tmp_path / "engine.json"
    f.write_text(json.dumps({"throughput_tok_s": 100.0}))
    assert main(["report", str(f), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "REPORT.md").read_text()
    assert "treadle bench serve --base-url" in md and "treadle eval" in md and "treadle bench compare" in md
    assert "![" not in md  # no figure without data
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_results([bad])


def test_falling_sweep_points_away_from_more_concurrency(tmp_path: Path) -> None:
    files = {"c4.json": serve("sharegpt", 4, summary(0.8, 50.0, (700, 900))),
             "c16.json": serve("sharegpt", 16, summary(0.7, 40.0, (3600, 4000))),
             "engine.json": {"throughput_tok_s": 101.0}}
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
    titles = [r.title for r in recommend(load_results([tmp_path]))]
    assert "Cap concurrency at 4 for sharegpt (max-num-seqs / gateway queue)" in titles
    assert any(t.startswith("Find where served throughput is lost") for t in titles)
    assert not any(t.startswith("Raise") for t in titles)


def test_low_accuracy_points_to_fine_tuning(tmp_path: Path) -> None:
    ev = {"kind": "eval", "meta": {}, "suites": {"bitext_intent": {"category": "accuracy", "n": 902, "metrics": {
        "accuracy": {"value": 0.08, "n": 902, "ci": [0.07, 0.10]}}}}}
    (tmp_path / "summary.json").write_text(json.dumps(ev))
    rec = [r for r in recommend(load_results([tmp_path])) if "Fine-tune" in r.title]
    assert len(rec) == 1 and "0.08" in rec[0].figure and "0.07-0.10" in rec[0].figure and "+0.42" in rec[0].gain


def test_cache_routing_gain_uses_the_best_policy_in_the_same_fleet_file(tmp_path: Path) -> None:
    runs = [{"workload": "shared-prefix", "policy": pol, "summary": summary(0.5, 10.0, (ttft, 20000), hit=hit)}
            for pol, hit, ttft in (("round_robin", 0.13, 10000), ("prefix_affinity", 0.72, 3600))]
    fleet = {"kind": "bench-fleet", "meta": {}, "runs": runs,
             "scaling": [{"replicas": 2, "threads_each": 1, "requests_per_s": 0.75, "output_tok_s": 46.06}]}
    other = serve("shared-prefix", 4, summary(1.0, 40.0, (600, 900), hit=0.86))  # another config: not the ref
    cmp2 = {"kind": "bench-compare", "meta": {}, "config": {"workload": "mooncake"}, "results": [],
            "ratios": {"a": {"output_tok_s": 1.0}, "b": {"output_tok_s": 0.8}}}
    for name, data in {"fleet.json": fleet, "serve.json": other, "cmp2.json": cmp2}.items():
        (tmp_path / name).write_text(json.dumps(data))
    cache = [r for r in recommend(load_results([tmp_path])) if "cache-aware" in r.title]
    assert len(cache) == 1 and "round_robin" in cache[0].figure and "reached 72%" in cache[0].figure
    assert "59% of prompt tokens" in cache[0].gain and "about 6782 ms" in cache[0].gain  # 10000 x (1 - .28/.87)
    from treadle.report import plots

    png = plots.compare_bars(load_results([tmp_path / "cmp2.json", tmp_path / "cmp2.json"]))
    assert png is not None and png.startswith(b"\x89PNG")  # several compares: one stacked figure
    from treadle.report.build import build
    from treadle.report.render import to_markdown

    md = to_markdown(build(load_results([tmp_path / "fleet.json"])))
    assert "### Fleet scaling" in md and "| 2 | 1 | 0.750 | 46.1 |" in md
    assert "Cache-aware routing" not in md  # least_loaded was not measured: no target verdict


def test_executive_summary_states_the_routing_targets_per_workload(tmp_path: Path) -> None:
    from treadle.report.build import build
    from treadle.report.render import to_markdown

    rows = (("shared-prefix", "round_robin", 0.2, 10000, 50000), ("shared-prefix", "least_loaded", 0.25, 9000, 40000),
            ("shared-prefix", "prefix_affinity", 0.6, 5000, 42000), ("mooncake", "round_robin", 0.2, 8000, 50000),
            ("mooncake", "least_loaded", 0.3, 7000, 40000), ("mooncake", "prefix_affinity", 0.3, 6000, 38800))
    runs = [{"workload": w, "policy": p, "summary": summary(0.5, 10.0, (ttft, p99), hit=hit)}
            for w, p, hit, ttft, p99 in rows]
    for r, (*_, p99) in zip(runs, rows, strict=True):
        r["summary"]["e2e_ms"] = {"p50": p99 / 2, "p99": p99}
    (tmp_path / "fleet.json").write_text(json.dumps({"kind": "bench-fleet", "meta": {}, "runs": runs}))
    md = to_markdown(build(load_results([tmp_path])))
    line = next(x for x in md.splitlines() if "Cache-aware routing (shared-prefix" in x)
    assert "3.0x round_robin's" in line and "50% lower" in line and "1.05x" in line and "targets met." in line
    line = next(x for x in md.splitlines() if "Cache-aware routing (mooncake" in x)
    assert "1.5x" in line and "25% lower" in line and "0.97x" in line and "targets not met." in line


def test_repeats_of_one_rule_merge_into_one_row() -> None:
    from treadle.report.recommendations import Recommendation, merge_repeats

    recs = [Recommendation("Cut tail", "a: p99 9x", "p99 to 5", "a.json", "a"),
            Recommendation("Other", "x", "y", "b.json", "b"),
            Recommendation("Cut tail", "c: p99 4x", "p99 to 2", "c.json", "c")]
    merged = merge_repeats(recs)
    assert [r.title for r in merged] == ["Cut tail", "Other"]
    assert merged[0].figure == "a: p99 9x (the same rule fires for 1 more: c)"
    assert merged[0].gain == "p99 to 5 (for a)" and merged[0].source == "a.json, c.json"
    assert merged[1] == recs[1]


def test_newest_bench_engine_file_supersedes_only_the_figures_it_measured() -> None:
    from treadle.report.loading import newest_engine_figures

    old = {"_path": "old.json", "meta": {"date": "2026-11-28T03:00:00"}, "throughput_tok_s": 101.0,
           "http_throughput_tok_s": 79.8, "ttft_ratio": 15.6}
    new = {"_path": "new.json", "meta": {"date": "2026-11-28T04:30:00"}, "throughput_tok_s": 105.0,
           "http_throughput_tok_s": 105.1}
    figs = newest_engine_figures({"bench-engine": [new, old]})  # type: ignore[dict-item]
    assert figs["http_throughput_tok_s"] == (105.1, "new.json")
    assert figs["throughput_tok_s"] == (105.0, "new.json")
    assert figs["ttft_ratio"] == (15.6, "old.json")


def test_fleet_cache_rule_uses_only_the_same_workload_and_skips_prefix_affinity(tmp_path: Path) -> None:
    runs = [{"workload": wl, "policy": pol, "summary": summary(0.5, 10.0, (5000, 20000), hit=hit)}
            for wl, pol, hit in (("shared-prefix", "round_robin", 0.13), ("shared-prefix", "prefix_affinity", 0.72),
                                 ("mooncake", "round_robin", 0.21), ("mooncake", "least_loaded", 0.19),
                                 ("mooncake", "prefix_affinity", 0.40))]
    (tmp_path / "fleet.json").write_text(json.dumps({"kind": "bench-fleet", "meta": {}, "runs": runs}))
    cache = [r for r in recommend(load_results([tmp_path]), merge=False) if "cache-aware" in r.title]
    figures = [r.figure for r in cache]
    assert len(cache) == 3 and not any("prefix_affinity" in f for f in figures)
    moon = [r for r in cache if "mooncake" in r.figure]
    assert all("reached 40%" in r.figure for r in moon)  # its own workload's best, not shared-prefix's 72%
    runs[4]["summary"]["prefix_cache_hit_rate"] = 0.15  # affinity no better: the file shows no gain to claim
    (tmp_path / "fleet.json").write_text(json.dumps({"kind": "bench-fleet", "meta": {}, "runs": runs}))
    cache = [r for r in recommend(load_results([tmp_path]), merge=False) if "cache-aware" in r.title]
    assert [r.subject for r in cache] == ["fleet shared-prefix round_robin"]  # 0.21 vs 0.19: no clear gain
