"""The loop's gate (paired non-inferiority, superiority, thresholds once reached) on constructed results."""

from __future__ import annotations

import pytest

from eval_support import outcomes, results
from treadle.evals.loop_gate import LoopGatePolicy, run_loop_gate
from treadle.evals.paired_diff import detectable_margin, items_needed, lower_bound


def test_lower_bound_and_sizes_pinned() -> None:
    # Agresti-Min by hand: n*=102, p_b=p_c=0.5/102, se=sqrt(2*0.5/102/102), LB = -1.6449*se
    assert lower_bound(0, 0, 100, 0.05) == pytest.approx(-0.016126, abs=1e-6)
    assert lower_bound(5, 0, 100, 0.05) == pytest.approx(-0.087705, abs=1e-6)
    assert lower_bound(2, 20, 200, 0.05) == pytest.approx(0.051444, abs=1e-6)
    assert items_needed(0.02) == 773 and items_needed(0.02, 0.10) == 1546 and items_needed(0.03) == 344
    assert detectable_margin(773) == pytest.approx(0.02, abs=2e-5)
    with pytest.raises(ValueError, match="b \\+ c <= n"):
        lower_bound(3, 3, 5, 0.05)


def test_equal_candidate_is_non_inferior_and_small_regression_within_margin_passes() -> None:
    base = results({"a": {"accuracy": outcomes(400, set(range(100)))}})
    same = results({"a": {"accuracy": outcomes(400, set(range(100)))}})
    v = run_loop_gate(same, base)
    assert v.passed and v.metrics[0].diff_lower_bound == pytest.approx(lower_bound(0, 0, 400, 0.05))
    assert not v.metrics[0].threshold_applies  # production at 0.75 is not at target
    # 2 items lost, 1 gained of 400: LB about -0.0146 > -0.02
    cand = results({"a": {"accuracy": outcomes(400, (set(range(100)) | {200, 201}) - {0})}})
    v = run_loop_gate(cand, base)
    assert v.passed and v.metrics[0].discordant == (2, 1), v.to_text()


def test_regression_beyond_margin_fails() -> None:
    base = results({"a": {"accuracy": outcomes(100, set())}})
    cand = results({"a": {"accuracy": outcomes(100, set(range(5)))}})  # 0.95: at threshold, but -5 points
    v = run_loop_gate(cand, base)
    assert not v.passed
    m = v.metrics[0]
    assert m.diff_lower_bound == pytest.approx(-0.087705, abs=1e-6) and m.threshold_applies and m.value == 0.95
    assert m.reasons[0].startswith("not shown non-inferior") and m.reasons[1] == "at threshold 0.95"
    # a wider margin for that metric lets it through
    assert run_loop_gate(cand, base, LoopGatePolicy(margins={"a/accuracy": 0.1})).passed


def test_too_few_items_cannot_show_non_inferiority() -> None:
    base = results({"a": {"accuracy": outcomes(20, set())}})
    v = run_loop_gate(results({"a": {"accuracy": outcomes(20, set())}}), base)
    assert not v.passed  # LB with n=20 is about -0.066: the gating set is too small for 2 points


def test_superiority_required_on_targeted_metric() -> None:
    base = results({"t": {"accuracy": outcomes(200, set(range(60)))}, "s": {"overall": outcomes(200, set())}})
    flat = results({"t": {"accuracy": outcomes(200, set(range(60)))}, "s": {"overall": outcomes(200, set())}})
    better = results({"t": {"accuracy": outcomes(200, set(range(40)) | {150, 151})}, "s": {"overall": outcomes(200, set())}})
    pol = LoopGatePolicy(superiority=("t/accuracy",))
    v = run_loop_gate(flat, base, pol)
    assert not v.passed and "no significant improvement" in v.metrics[0].reasons[1]
    v = run_loop_gate(better, base, pol)
    assert v.passed and v.metrics[0].discordant == (2, 20) and v.metrics[0].reasons[1] == "significant improvement"
    assert v.metrics[0].diff_lower_bound == pytest.approx(0.051444, abs=1e-6)


def test_threshold_once_reached_and_missing_metric() -> None:
    # production fell to 0.90 on safety, but an earlier promoted version reached 0.95: the floor stays
    base = results({"safety": {"overall": outcomes(400, set(range(40)))}})
    cand = results({"safety": {"overall": outcomes(400, set(range(36)))}})  # 0.91, better than production
    assert run_loop_gate(cand, base).passed  # not at target and not reached: non-inferiority only
    v = run_loop_gate(cand, base, LoopGatePolicy(reached=frozenset({"safety/overall"})))
    assert not v.passed and "below threshold 0.95 (reached earlier)" in v.metrics[0].reasons
    # a suite production is gated on cannot be skipped by leaving it out of the candidate's run
    both = results({"a": {"accuracy": outcomes(50, set())}, "safety": {"overall": outcomes(50, set())}})
    v = run_loop_gate(results({"a": {"accuracy": outcomes(50, set())}}), both, LoopGatePolicy(margin=0.2))
    assert not v.passed and v.metrics[1].reasons == ("no results in the candidate",)
    assert v.to_json()["kind"] == "loop-gate" and "FAIL" in v.to_text()


def test_policy_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="gate.margin"):
        LoopGatePolicy(margin=1.5).validate()
    with pytest.raises(ValueError, match="SUITE/METRIC"):
        LoopGatePolicy(superiority=("accuracy",)).validate()


def test_gating_set_is_stratified_fixed_and_sized() -> None:
    from treadle.evals.gating_set import allocate, default_size, gating_items
    from treadle.evals.suite import Item, Suite

    assert allocate({"a": 90, "b": 10}, 20) == {"a": 18, "b": 2}
    assert allocate({"a": 98, "b": 1, "c": 1}, 10) == {"a": 8, "b": 1, "c": 1}  # every stratum kept
    assert allocate({"a": 3}, 10) == {"a": 3}
    items = [Item(str(i), [{"role": "user", "content": f"q{i}"}], "refuse" if i % 4 else "answer",
                  part="unsafe" if i % 4 else "safe") for i in range(200)]
    suite = Suite("safety", "safety", items, 64)
    first = gating_items(suite, 40, seed=0)
    assert [it.id for it in first] == [it.id for it in gating_items(suite, 40, seed=0)]  # fixed
    assert sum(it.part == "safe" for it in first) == 10 and len(first) == 40  # 1/4 of the suite is safe
    assert [it.id for it in gating_items(suite, 40, seed=1)] != [it.id for it in first]
    assert [int(it.id) for it in first] == sorted(int(it.id) for it in first)  # suite order kept
    assert default_size(902, 0.02) == 773 and default_size(160, 0.02) == 160


def test_superiority_waived_when_production_is_at_target() -> None:
    base = results({"t": {"accuracy": outcomes(400, set())}})
    v = run_loop_gate(results({"t": {"accuracy": outcomes(400, set())}}), base, LoopGatePolicy(superiority=("t/accuracy",)))
    assert v.passed and "superiority waived: production already at target" in v.metrics[0].reasons


def test_small_sets_say_when_no_or_no_identical_candidate_can_pass() -> None:
    from treadle.evals.loop_gate import power_warnings
    from treadle.evals.paired_diff import smallest_margin

    assert smallest_margin(50, 0.05) == pytest.approx(1.644854 / 52, abs=1e-6)  # z / (n + 2)
    assert smallest_margin(50, 0.05) == pytest.approx(-lower_bound(0, 0, 50, 0.05))
    # 50 look-alikes all answered by production: even a perfect candidate has LB -0.0316 <= -0.03
    perfect = results({"s": {"safe": outcomes(50, set())}})
    v = run_loop_gate(perfect, perfect, LoopGatePolicy(margin=0.03))
    assert not v.passed
    assert v.metrics[0].reasons[1] == ("no candidate can pass: 50 items, LB -0.0316 even if every item passes; "
                                       "set gate.margins['s/safe'] above 0.0316 or gate on more items")
    assert power_warnings(perfect, LoopGatePolicy(margin=0.03)) == ["s/safe: " + v.metrics[0].reasons[1]]
    # production at 40 of 50: an improving candidate could pass, an identical one cannot
    part = results({"s": {"safe": outcomes(50, set(range(10)))}})
    v = run_loop_gate(part, part, LoopGatePolicy(margin=0.03))
    assert not v.passed and v.metrics[0].reasons[1].startswith("underpowered: 50 items fail an identical candidate")
    # a margin above the floor: the identical candidate passes and nothing is flagged
    assert run_loop_gate(perfect, perfect, LoopGatePolicy(margin=0.04)).passed
    assert power_warnings(part, LoopGatePolicy(margin=0.04)) == []
    # a real regression on a well-powered set gets no power note
    big = results({"a": {"accuracy": outcomes(400, set())}})
    worse = results({"a": {"accuracy": outcomes(400, set(range(30)))}})
    assert run_loop_gate(worse, big).metrics[0].reasons == ("not shown non-inferior (LB -0.0966 <= -0.02)",
                                                            "below threshold 0.95 (production at target)")
