"""The canary decision on constructed signals: exact verdicts, no server."""

from __future__ import annotations

import pytest

from treadle.loop.canary import (
    CONTINUE,
    PROMOTE,
    ROLLBACK,
    CanaryPolicy,
    VersionSignals,
    binomial_tail,
    decide,
    mann_whitney_greater_p,
    rate_diff,
)

FAST = tuple(0.1 + 0.001 * (i % 50) for i in range(400))  # 0.100 .. 0.149 s
TPOT = tuple(0.02 + 0.0001 * (i % 50) for i in range(400))


def prod() -> VersionSignals:
    return VersionSignals("prod", requests=4000, errors=0, thumbs_up=800, thumbs_down=200, sampled=800, unsafe=0,
                          incoherent=8, ttft=FAST, tpot=TPOT)


def cand(**kw: object) -> VersionSignals:
    base = dict(requests=1000, errors=0, thumbs_up=400, thumbs_down=100, sampled=400, unsafe=0, incoherent=4,
                ttft=FAST, tpot=TPOT)
    base.update(kw)
    return VersionSignals("cand", **base)  # type: ignore[arg-type]


def test_stats_pinned() -> None:
    # no ties: U = 6 of 6, mean 3, var 3 -> z = (6 - 3 - 0.5) / sqrt(3)
    assert mann_whitney_greater_p([3, 4, 5], [1, 2]) == pytest.approx(0.074457, abs=1e-5)
    assert mann_whitney_greater_p([1, 1], [1, 1]) == 1.0 and mann_whitney_greater_p([], [1]) == 1.0
    assert binomial_tail(1, 1, 0.05) == pytest.approx(0.05) and binomial_tail(0, 5, 0.3) == pytest.approx(1.0)
    assert binomial_tail(2, 3, 0.5) == pytest.approx(0.5)
    d, se = rate_diff(0, 9, 9, 9)
    assert d == pytest.approx(0.05 - 0.95) and se == pytest.approx((2 * 0.05 * 0.95 / 10) ** 0.5)


def test_minimum_sample_continues() -> None:
    d = decide(cand(requests=199, unsafe=400), prod(), CanaryPolicy(requests_per_look=200))
    assert d.action == CONTINUE and d.look == 0 and d.reasons == ("minimum sample: 199/200 requests",)


def test_equal_candidate_is_promoted() -> None:
    d = decide(cand(), prod())
    assert d.action == PROMOTE and d.look == 5, d
    assert {c.signal for c in d.checks} == {"thumbs_up_rate", "unsafe_rate", "incoherent_rate", "error_rate", "ttft",
                                            "tpot"}


def test_unsafe_candidate_is_rolled_back_at_the_first_look() -> None:
    d = decide(cand(requests=200, sampled=60, unsafe=12), prod())
    assert d.action == ROLLBACK and d.look == 1
    assert any(r.startswith("unsafe_rate significantly worse") for r in d.reasons)
    assert any(r.startswith("unsafe rate 0.200 significantly above 0.05") for r in d.reasons)


def test_worse_thumbs_roll_back_and_small_dip_does_not() -> None:
    assert decide(cand(thumbs_up=200, thumbs_down=300), prod()).action == ROLLBACK  # 0.40 vs 0.80
    d = decide(cand(thumbs_up=390, thumbs_down=110), prod())  # 0.78 vs 0.80: within the 0.10 margin
    assert d.action == PROMOTE, d


def test_slower_candidate_is_rolled_back_on_latency() -> None:
    slow = tuple(v * 1.3 for v in FAST)
    d = decide(cand(ttft=slow), prod())
    assert d.action == ROLLBACK and d.reasons[0].startswith("ttft significantly worse")
    slightly = tuple(v * 1.05 for v in FAST)  # 5% slower: inside the 10% latency margin
    assert decide(cand(ttft=slightly), prod()).action == PROMOTE
    d = decide(cand(tpot=tuple(v * 1.5 for v in TPOT)), prod())
    assert d.action == ROLLBACK and d.reasons[0].startswith("tpot")


def test_inconclusive_continues_then_rolls_back_at_the_last_look() -> None:
    few = dict(thumbs_up=10, thumbs_down=2, sampled=10, incoherent=0)
    d = decide(cand(requests=400, **few), prod())
    assert d.action == CONTINUE and d.look == 2 and "12/30 thumbs" in d.reasons
    d = decide(cand(requests=5000, **few), prod())
    assert d.action == ROLLBACK and d.look == 5 and d.reasons[0].startswith("not shown non-inferior by the last look")


def test_policy_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="canary.share"):
        CanaryPolicy(share=1.0).validate()
    with pytest.raises(ValueError, match="canary.margins.latency"):
        CanaryPolicy(margins={"latency": 0.1}).validate()
