"""The loop's gate: may a candidate replace production? A pure function of two paired result sets.

For every gated metric (``suite/metric``: the gated metrics of either run, or the policy's list),
on the items both runs share (paired by id), with b / c = items only the baseline / only the
candidate passed and LB = the one-sided (confidence) Agresti-Min lower bound of candidate minus
baseline (``paired_diff``):
1. non-inferiority: LB > -margin (``margins[metric]``, else ``margin``, default 0.02 = 2 points);
2. superiority, for the metrics the change targets (``superiority``): LB > ``min_improvement``
   (waived where production is already at its threshold: no room to improve, rules 1 and 3 hold it);
3. absolute threshold (``thresholds[metric]``, else ``threshold``, default 0.95), applied only where
   the metric is already at target: production's value >= threshold, or the metric is in
   ``reached`` (the loop puts there every safety metric that any promoted version reached, so a
   safety part is never allowed below its threshold once reached): candidate value >= threshold.
A metric missing from the candidate, or with no shared items, fails.

Power: a set of n items cannot show non-inferiority within a margin at or below ``smallest_margin(n)``
(0.0316 at n = 50) even for a candidate identical to production; where rule 1 fails, the verdict says
whether that is the case, or whether no candidate at all could pass (even one that passes every item),
and ``power_warnings`` lists such metrics from production's results alone, before any candidate exists.

The candidate passes only if every metric passes every rule that applies. Because promotion needs
*all* tests to pass (an intersection-union test), the probability of promoting a candidate that is
inferior by more than its margin on some metric is at most alpha = 1 - confidence without a
multiplicity correction; each test runs at level alpha.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from treadle.evals.gate import gated_ids
from treadle.evals.paired_diff import lower_bound, smallest_margin
from treadle.evals.results import EvalResults
from treadle.evals.stats import discordant, wilson_ci

DEFAULT_MARGIN = 0.02
DEFAULT_THRESHOLD = 0.95


@dataclass(frozen=True)
class LoopGatePolicy:
    margin: float = DEFAULT_MARGIN
    margins: dict[str, float] = field(default_factory=dict)
    threshold: float = DEFAULT_THRESHOLD
    thresholds: dict[str, float] = field(default_factory=dict)
    superiority: tuple[str, ...] = ()
    min_improvement: float = 0.0
    confidence: float = 0.95
    metrics: tuple[str, ...] | None = None  # None: the gated metrics of either run
    reached: frozenset[str] = frozenset()  # metrics whose threshold holds even if production fell below it

    def validate(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"gate.confidence must be in [0.5, 1), got {self.confidence}")
        for name, m in {"margin": self.margin, **{f"margins.{k}": v for k, v in self.margins.items()}}.items():
            if not 0 <= m < 1:
                raise ValueError(f"gate.{name} must be in [0, 1), got {m}")
        for name, t in {"threshold": self.threshold, **{f"thresholds.{k}": v for k, v in self.thresholds.items()}}.items():
            if not 0 <= t <= 1:
                raise ValueError(f"gate.{name} must be in [0, 1], got {t}")
        for mid in (*self.superiority, *self.margins, *self.thresholds):
            if "/" not in mid:
                raise ValueError(f"gate metric ids are SUITE/METRIC, got {mid!r}")

    def margin_for(self, mid: str) -> float:
        return self.margins.get(mid, self.margin)

    def threshold_for(self, mid: str) -> float:
        return self.thresholds.get(mid, self.threshold)


@dataclass(frozen=True)
class LoopMetricVerdict:
    metric: str
    passed: bool
    reasons: tuple[str, ...]
    value: float | None
    ci: tuple[float, float] | None
    baseline: float | None
    n: int
    discordant: tuple[int, int] | None  # (baseline-only passes, candidate-only passes)
    diff_lower_bound: float | None
    margin: float
    threshold: float
    threshold_applies: bool
    superiority: bool


@dataclass(frozen=True)
class LoopVerdict:
    passed: bool
    metrics: tuple[LoopMetricVerdict, ...]
    policy: dict
    alpha: float

    def to_json(self) -> dict:
        return {"kind": "loop-gate", "passed": self.passed, "alpha": self.alpha, "policy": self.policy,
                "metrics": [asdict(m) for m in self.metrics]}

    def to_text(self) -> str:
        f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        lines = [f"{'metric':34} {'value':>7} {'base':>7} {'LB diff':>8} {'margin':>6} {'thr':>5}  result"]
        for m in self.metrics:
            thr = f"{m.threshold:.2f}" if m.threshold_applies else "-"
            lines.append(f"{m.metric:34} {f(m.value):>7} {f(m.baseline):>7} {f(m.diff_lower_bound):>8} "
                         f"{m.margin:>6.3f} {thr:>5}  {'PASS' if m.passed else 'FAIL'}: {'; '.join(m.reasons)}")
        lines.append(f"gate: {'PASS' if self.passed else 'FAIL'} (paired non-inferiority, one-sided level "
                     f"{self.alpha:g} per metric; all must pass)")
        return "\n".join(lines)


def judge_metric(mid: str, cand: dict[str, bool] | None, base: dict[str, bool] | None, policy: LoopGatePolicy,
                 alpha: float) -> LoopMetricVerdict:
    """One metric's verdict from item id -> passed maps of both runs (None: the run lacks the suite)."""
    margin, thr = policy.margin_for(mid), policy.threshold_for(mid)
    sup = mid in policy.superiority
    common = sorted(set(cand or {}) & set(base or {}))
    if not common:
        why = "no results in the candidate" if not cand else "no results in production" if not base else \
            "no items shared with production"
        return LoopMetricVerdict(mid, False, (why,), None, None, None, 0, None, None, margin, thr, False, sup)
    c = [cand[i] for i in common]  # type: ignore[index]
    b = [base[i] for i in common]  # type: ignore[index]
    n, k = len(common), sum(c)
    value, base_value = k / n, sum(b) / n
    disc = discordant(c, b)
    lb = lower_bound(disc[0], disc[1], n, alpha)
    reasons, ok = [], True
    if lb > -margin:
        reasons.append(f"non-inferior (LB {lb:+.4f} > -{margin:g})")
    else:
        ok = False
        reasons.append(f"not shown non-inferior (LB {lb:+.4f} <= -{margin:g})")
        weak = _underpowered(mid, n, sum(b), margin, alpha)
        if weak:
            reasons.append(weak)
    if sup and base_value >= thr:
        reasons.append("superiority waived: production already at target")
    elif sup:
        if lb > policy.min_improvement:
            reasons.append("significant improvement")
        else:
            ok = False
            reasons.append(f"no significant improvement (LB {lb:+.4f} <= {policy.min_improvement:g})")
    applies = base_value >= thr or mid in policy.reached
    if applies:
        if value >= thr:
            reasons.append(f"at threshold {thr:g}")
        else:
            ok = False
            reasons.append(f"below threshold {thr:g} ({'reached earlier' if mid in policy.reached else 'production at target'})")
    return LoopMetricVerdict(mid, ok, tuple(reasons), value, wilson_ci(k, n, policy.confidence), base_value, n,
                             disc, lb, margin, thr, applies, sup)


def run_loop_gate(candidate: EvalResults, production: EvalResults, policy: LoopGatePolicy | None = None) -> LoopVerdict:
    """Judge ``candidate`` against ``production`` on their shared items; reads nothing else, changes nothing."""
    policy = policy or LoopGatePolicy()
    policy.validate()
    alpha = 1 - policy.confidence
    ids = list(policy.metrics) if policy.metrics is not None else gated_ids(candidate, production)
    ids += [m for m in policy.superiority if m not in ids]
    if not ids:
        raise ValueError("no gated metrics: neither run has a gated metric and gate.metrics is empty")
    out = tuple(judge_metric(mid, _outcomes(candidate, mid), _outcomes(production, mid), policy, alpha) for mid in ids)
    pol = asdict(policy)
    pol["reached"] = sorted(policy.reached)
    return LoopVerdict(all(m.passed for m in out), out, pol, alpha)


def _underpowered(mid: str, n: int, base_passes: int, margin: float, alpha: float) -> str | None:
    """Why rule 1 cannot pass whatever the candidate does, or even when it equals production; else None."""
    floor = smallest_margin(n, alpha)
    best = lower_bound(0, n - base_passes, n, alpha)  # a candidate that passes every item
    fix = "set gate.margins['{}'] above {:.4f} or gate on more items"
    if best <= -margin:
        return (f"no candidate can pass: {n} items, LB {best:+.4f} even if every item passes; "
                + fix.format(mid, -best))
    if floor >= margin:
        return f"underpowered: {n} items fail an identical candidate (LB {-floor:+.4f}); " + fix.format(mid, floor)
    return None


def power_warnings(production: EvalResults, policy: LoopGatePolicy) -> list[str]:
    """Gated metrics of ``production`` whose item count cannot show non-inferiority within their margin for
    a candidate identical to production (or for any candidate); reads only production's results."""
    policy.validate()
    alpha = 1 - policy.confidence
    ids = list(policy.metrics) if policy.metrics is not None else gated_ids(production, production)
    out = []
    for mid in ids:
        res = _outcomes(production, mid)
        if res:
            why = _underpowered(mid, len(res), sum(res.values()), policy.margin_for(mid), alpha)
            if why:
                out.append(f"{mid}: {why}")
    return out


def _outcomes(res: EvalResults, mid: str) -> dict[str, bool] | None:
    if mid.partition("/")[0] not in res.summary.get("suites", {}):
        return None
    return res.outcomes(mid)
