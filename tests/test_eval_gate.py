"""The gate and its statistics on constructed results (no model, no server)."""

from __future__ import annotations

import json

import pytest

from eval_support import outcomes, results
from treadle.cli import main
from treadle.evals.gate import GatePolicy, run_gate
from treadle.evals.results import EvalResults, load_results, write_json
from treadle.evals.stats import bonferroni_reject, bootstrap_worse_p, holm_reject, mcnemar_worse_p, wilson_ci


def test_stats_pinned() -> None:
    assert mcnemar_worse_p(0, 0) == 1.0
    assert mcnemar_worse_p(5, 0) == pytest.approx(1 / 32)
    assert mcnemar_worse_p(0, 5) == 1.0
    assert mcnemar_worse_p(3, 3) == pytest.approx(42 / 64)
    lo, hi = wilson_ci(95, 100)
    assert lo == pytest.approx(0.8883, abs=1e-3) and hi == pytest.approx(0.9785, abs=1e-3)
    assert wilson_ci(0, 10)[0] == 0.0 and wilson_ci(10, 10)[1] == 1.0
    assert holm_reject([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert holm_reject([0.01, 0.02, 0.03], 0.06) == [True, True, True]
    assert bonferroni_reject([0.01, 0.025, 0.03], 0.06) == [True, False, False]
    cand, base = outcomes(400, set(range(30))), outcomes(400, set())
    assert bootstrap_worse_p(cand, base, 500, 0) < 0.01
    assert bootstrap_worse_p(base, base, 500, 0) == 1.0


def test_clear_pass() -> None:
    base = results({"a": {"accuracy": outcomes(300, {1, 2, 3})}, "safety": {"overall": outcomes(300, {5})}})
    cand = results({"a": {"accuracy": outcomes(300, {1, 2})}, "safety": {"overall": outcomes(300, {5, 6})}})
    v = run_gate(cand, base)
    assert v.passed, v.to_text()
    assert [m.metric for m in v.metrics] == ["a/accuracy", "safety/overall"]
    assert all(m.reason.startswith("meets threshold") for m in v.metrics)


def test_one_threshold_miss() -> None:
    base = results({"a": {"accuracy": outcomes(100, set(range(6)))}, "b": {"x": outcomes(100, set())}})
    cand = results({"a": {"accuracy": outcomes(100, set(range(6)))}, "b": {"x": outcomes(100, set())}})
    v = run_gate(cand, base)
    assert not v.passed
    bad = [m for m in v.metrics if not m.passed]
    assert [m.metric for m in bad] == ["a/accuracy"] and "below threshold" in bad[0].reason
    assert not bad[0].significant_regression  # identical to the baseline
    assert run_gate(cand, base, GatePolicy(thresholds={"a/accuracy": 0.9})).passed


def test_small_but_significant_regression() -> None:
    # 1000 items: baseline 100%, candidate 97.5% (above 0.95) but 25 discordant pairs all one way.
    base = results({"a": {"accuracy": outcomes(1000, set())}})
    cand = results({"a": {"accuracy": outcomes(1000, set(range(25)))}})
    for test in ("mcnemar", "bootstrap"):
        v = run_gate(cand, base, GatePolicy(test=test, n_boot=400))
        m = v.metrics[0]
        assert not v.passed and m.significant_regression and m.value == pytest.approx(0.975)
        assert "significantly worse" in m.reason


def test_insignificant_difference() -> None:
    # 3 lost, 1 gained out of 200: p = P(X >= 3 | 4) = 5/16, not significant.
    base = results({"a": {"accuracy": outcomes(200, {0})}})
    cand = results({"a": {"accuracy": outcomes(200, {1, 2, 3})}})
    v = run_gate(cand, base)
    assert v.passed and v.metrics[0].p_value == pytest.approx(5 / 16)
    assert v.metrics[0].discordant == [3, 1]


def test_correction_for_number_of_metrics() -> None:
    # One metric with p = 1/32 ~ 0.031 (5 lost, 0 gained): significant alone at alpha 0.05, not
    # after correction over 4 metrics (Holm's first step needs p <= 0.0125).
    lost = outcomes(400, set(range(5)))
    same = outcomes(400, set())
    base = results({"a": {"m": same}, "b": {"m": same}, "c": {"m": same}, "d": {"m": same}})
    cand1 = results({"a": {"m": lost}})
    assert not run_gate(cand1, results({"a": {"m": same}})).passed
    cand4 = results({"a": {"m": lost}, "b": {"m": same}, "c": {"m": same}, "d": {"m": same}})
    for corr in ("holm", "bonferroni"):
        assert run_gate(cand4, base, GatePolicy(correction=corr)).passed


def test_pairs_by_id_and_validates() -> None:
    base = results({"a": {"m": outcomes(10, set())}})
    cand = results({"a": {"m": outcomes(10, set())}})
    cand.items["a"] = cand.items["a"][:4]
    assert run_gate(cand, base, GatePolicy(threshold=0.5)).metrics[0].n == 4
    with pytest.raises(ValueError, match="confidence"):
        run_gate(cand, base, GatePolicy(confidence=1.5))
    with pytest.raises(ValueError, match="no per-item results"):
        run_gate(cand, EvalResults(base.summary, {}))


def test_metric_missing_from_the_candidate_fails() -> None:
    # production is gated on safety; a candidate run without the safety suite cannot skip it
    base = results({"a": {"accuracy": outcomes(100, set())}, "safety": {"overall": outcomes(100, set())}})
    cand = results({"a": {"accuracy": outcomes(100, set())}})
    v = run_gate(cand, base)
    assert not v.passed and [m.metric for m in v.metrics] == ["a/accuracy", "safety/overall"]
    miss = v.metrics[1]
    assert not miss.passed and miss.value is None and miss.reason == "no results in the candidate"
    # a metric only the candidate has is gated too, and fails for want of a baseline to pair with
    v = run_gate(base, cand)
    assert not v.passed and v.metrics[1].reason == "no results in the baseline"

def _write(d, res: EvalResults) -> None:  # noqa: ANN001
    summary = json.loads(json.dumps(res.summary))
    for suite, items in res.items.items():
        summary["suites"][suite]["items_file"] = f"{suite}.items.json"
        write_json(d / f"{suite}.items.json", {"kind": "eval-items", "meta": {}, "suite": suite, "items": items})
    write_json(d / "summary.json", summary)


def test_gate_command(tmp_path, capsys) -> None:  # noqa: ANN001
    base = results({"a": {"accuracy": outcomes(1000, set())}})
    cand = results({"a": {"accuracy": outcomes(1000, set(range(25)))}})
    _write(tmp_path / "base", base)
    _write(tmp_path / "cand", cand)
    assert load_results(tmp_path / "cand").items["a"][0]["passed"] == {"accuracy": False}
    assert main(["gate", str(tmp_path / "cand"), str(tmp_path / "base"), "--json", str(tmp_path / "v.json")]) == 1
    out = capsys.readouterr().out
    assert "a/accuracy" in out and "FAIL" in out
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is False
    assert main(["gate", str(tmp_path / "base"), str(tmp_path / "base")]) == 0
    assert main(["gate", str(tmp_path / "cand"), str(tmp_path / "base"), "--threshold-for", "bad"]) == 2


def test_superiority_needs_a_significant_improvement() -> None:
    base = results({"a": {"accuracy": outcomes(200, set(range(150)))}})  # 0.25
    better = results({"a": {"accuracy": outcomes(200, set(range(100)))}})  # 0.50: 50 items only it passes
    slightly = results({"a": {"accuracy": outcomes(200, set(range(147)))}})  # 3 more passes: not significant
    policy = GatePolicy(threshold=0.0, superiority=["a/accuracy"])
    v = run_gate(better, base, policy)
    assert v.passed and v.metrics[0].significant_improvement, v.to_text()
    assert v.metrics[0].p_improvement == pytest.approx(mcnemar_worse_p(50, 0))  # roles swapped
    v = run_gate(slightly, base, policy)
    assert not v.passed and v.metrics[0].significant_improvement is False
    assert "no significant improvement" in v.metrics[0].reason
    assert run_gate(slightly, base, GatePolicy(threshold=0.0)).passed  # without the rule, no regression: pass
    assert run_gate(slightly, base, GatePolicy(threshold=0.0)).metrics[0].significant_improvement is None
    with pytest.raises(ValueError, match="SUITE/METRIC"):
        run_gate(better, base, GatePolicy(superiority=["accuracy"]))
