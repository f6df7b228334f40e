"""The validation gate: may a candidate replace production? A pure function of two result sets.

For every gated metric (``suite/metric``; one per suite and per safety part, gated in either
run: a metric missing from the candidate fails) on the items both runs share (paired by id):
1. absolute threshold: candidate value >= threshold (default 0.95, overridable per metric);
2. no significant regression: a one-sided paired test (exact McNemar by default, or a paired
   bootstrap) of "candidate worse than baseline", with the family-wise level alpha = 1 - confidence
   split over the m gated metrics by Holm (default) or Bonferroni;
3. for the metrics in ``superiority`` only (the ones a change is meant to improve): a significant
   improvement, the same one-sided test of "candidate better than baseline", corrected together
   with the tests of rule 2 (one family of m + s tests).
The candidate passes only if every metric passes every rule that applies. Each metric's verdict carries the value,
its Wilson interval at ``confidence``, the baseline value, the p-value and the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from treadle.evals.results import EvalResults
from treadle.evals.stats import (
    bonferroni_reject,
    bootstrap_worse_p,
    discordant,
    holm_reject,
    mcnemar_worse_p,
    wilson_ci,
)

TESTS = ("mcnemar", "bootstrap")
CORRECTIONS = ("holm", "bonferroni")


@dataclass
class GatePolicy:
    threshold: float = 0.95
    thresholds: dict[str, float] = field(default_factory=dict)  # per metric id
    confidence: float = 0.95
    test: str = "mcnemar"
    correction: str = "holm"
    metrics: list[str] | None = None  # None: the metrics the candidate summary flags as gated
    superiority: list[str] = field(default_factory=list)  # metrics that must improve significantly
    n_boot: int = 2000
    seed: int = 0

    def validate(self) -> None:
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.test not in TESTS:
            raise ValueError(f"test must be one of {TESTS}, got {self.test!r}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {self.correction!r}")
        for name, t in {"threshold": self.threshold, **self.thresholds}.items():
            if not 0 <= t <= 1:
                raise ValueError(f"threshold for {name} must be in [0, 1], got {t}")
        for mid in self.superiority:
            if "/" not in mid:
                raise ValueError(f"superiority metric ids are SUITE/METRIC, got {mid!r}")


@dataclass
class MetricVerdict:
    metric: str
    passed: bool
    reason: str
    value: float | None
    ci: list[float] | None
    n: int
    baseline: float | None
    threshold: float
    p_value: float | None
    significant_regression: bool
    discordant: list[int] | None  # [baseline-only passes, candidate-only passes]
    p_improvement: float | None = None  # one-sided p of "candidate better" (superiority metrics only)
    significant_improvement: bool | None = None  # None: the metric need not improve


@dataclass
class Verdict:
    passed: bool
    metrics: list[MetricVerdict]
    policy: dict
    alpha: float

    def to_json(self) -> dict:
        return {"kind": "gate", "passed": self.passed, "alpha": self.alpha, "policy": self.policy,
                "metrics": [asdict(m) for m in self.metrics]}

    def to_text(self) -> str:
        head = f"{'metric':34} {'value':>7} {'CI':>17} {'base':>7} {'thr':>5} {'p':>8}  result"
        lines = [head]
        for m in self.metrics:
            val = "-" if m.value is None else f"{m.value:.4f}"
            ci = "-" if m.ci is None else f"[{m.ci[0]:.3f}, {m.ci[1]:.3f}]"
            base = "-" if m.baseline is None else f"{m.baseline:.4f}"
            p = "-" if m.p_value is None else f"{m.p_value:.2g}"
            lines.append(f"{m.metric:34} {val:>7} {ci:>17} {base:>7} {m.threshold:>5.2f} {p:>8}  "
                         f"{'PASS' if m.passed else 'FAIL'}: {m.reason}")
        tests = sum(m.p_value is not None for m in self.metrics) + sum(m.p_improvement is not None
                                                                        for m in self.metrics)
        lines.append(f"gate: {'PASS' if self.passed else 'FAIL'} ({self.policy['test']}, {self.policy['correction']}"
                     f" correction over {tests} tests on {len(self.metrics)} metrics, family-wise alpha {self.alpha:g})")
        return "\n".join(lines)


def run_gate(candidate: EvalResults, baseline: EvalResults, policy: GatePolicy | None = None) -> Verdict:
    """Judge ``candidate`` against ``baseline``; reads nothing but its arguments, changes nothing."""
    policy = policy or GatePolicy()
    policy.validate()
    alpha = 1 - policy.confidence
    ids = policy.metrics if policy.metrics is not None else gated_ids(candidate, baseline)
    ids = ids + [m for m in policy.superiority if m not in ids]
    if not ids:
        raise ValueError("no gated metrics: neither the candidate nor the baseline summary has a gated metric")
    rows: list[dict] = []
    for mid in ids:
        cand = _outcomes(candidate, mid)
        base = _outcomes(baseline, mid)
        common = sorted(set(cand or {}) & set(base or {}))
        c = [cand[i] for i in common]  # type: ignore[index]
        b = [base[i] for i in common]  # type: ignore[index]
        row: dict = {"metric": mid, "n": len(common), "threshold": policy.thresholds.get(mid, policy.threshold)}
        if not common:
            missing = "the candidate" if not cand else "the baseline" if not base else None
            row.update(value=None, ci=None, baseline=None, p=None, disc=None, missing=missing)
        else:
            k = sum(c)
            row.update(value=k / len(c), ci=list(wilson_ci(k, len(c), policy.confidence)), baseline=sum(b) / len(b))
            disc = discordant(c, b)
            row["disc"] = list(disc)
            row["p"] = mcnemar_worse_p(*disc) if policy.test == "mcnemar" else bootstrap_worse_p(
                c, b, policy.n_boot, policy.seed)
            if mid in policy.superiority:  # the same test with the roles swapped: "baseline worse"
                row["p_up"] = mcnemar_worse_p(disc[1], disc[0]) if policy.test == "mcnemar" else bootstrap_worse_p(
                    b, c, policy.n_boot, policy.seed)
        rows.append(row)
    family = [(r, "p") for r in rows if r["p"] is not None] + [(r, "p_up") for r in rows if "p_up" in r]
    reject_fn = holm_reject if policy.correction == "holm" else bonferroni_reject
    for (r, key), rej in zip(family, reject_fn([r[key] for r, key in family], alpha), strict=True):
        if key == "p":
            r["regress"] = rej and r["value"] < r["baseline"]
        else:
            r["improve"] = rej and r["value"] > r["baseline"]
    for r in rows:
        if r["metric"] in policy.superiority:
            r.setdefault("improve", False)
    out = [_verdict(r) for r in rows]
    return Verdict(all(m.passed for m in out), out, asdict(policy), alpha)


def gated_ids(candidate: EvalResults, baseline: EvalResults) -> list[str]:
    """The gated metrics of either run (candidate's order, then the baseline's others): a metric
    production is gated on cannot be skipped by leaving its suite out of the candidate's run."""
    ids = candidate.metric_ids(gated_only=True)
    return ids + [m for m in baseline.metric_ids(gated_only=True) if m not in ids]


def _outcomes(res: EvalResults, mid: str) -> dict[str, bool] | None:
    """Outcomes of ``mid``, or None when the run has no such suite at all (a summary that names the
    suite without its items file is malformed: ``EvalResults.outcomes`` raises)."""
    if mid.partition("/")[0] not in res.summary.get("suites", {}):
        return None
    return res.outcomes(mid)


def _verdict(r: dict) -> MetricVerdict:
    regress = bool(r.get("regress"))
    if r["value"] is None:
        passed = False
        reason = f"no results in {r['missing']}" if r.get("missing") else "no items shared with the baseline"
    elif r["value"] < r["threshold"]:
        passed, reason = False, f"below threshold {r['threshold']:.2f}"
        if regress:
            reason += "; significantly worse than baseline"
    elif regress:
        passed, reason = False, f"significantly worse than baseline ({r['baseline']:.4f})"
    else:
        passed, reason = True, "meets threshold; no significant regression"
    improve = r.get("improve")
    if improve is not None and r["value"] is not None:
        if improve:
            reason += f"; significant improvement over {r['baseline']:.4f} (p {r['p_up']:.2g})"
        else:
            passed = False
            reason += f"; no significant improvement over {r['baseline']:.4f} (p {r.get('p_up', 1.0):.2g})"
    return MetricVerdict(r["metric"], passed, reason, r["value"], r["ci"], r["n"], r["baseline"], r["threshold"],
                         r["p"], regress, r["disc"], r.get("p_up"), improve)
