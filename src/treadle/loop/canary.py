"""The canary decision: promote, roll back or continue; a pure function of per-version online signals.

Signals per version (counted over the canary window, production and candidate side by side):
thumbs-up rate (up / (up + down)), unsafe rate and incoherent rate of sampled live outputs (the
live unsafe classifier and the coherence checks), error rate (errors / requests), and the TTFT and
TPOT samples of its requests.

Design: group-sequential with at most ``looks`` analyses. Look k (1..looks) is reached when the
candidate has served k * ``requests_per_look`` requests; before look 1 (the minimum sample) the
answer is always continue. Each look tests at alpha_look = alpha / looks (Bonferroni over looks:
conservative, valid whenever the looks happen), for every signal:
- harm (roll back): a one-sided test that the candidate is worse than production: a two-proportion
  z-test (unpooled, 1/2 added to each cell) of a rate, worse = lower thumbs-up, higher unsafe,
  incoherent or error rate; for TTFT/TPOT a one-sided Mann-Whitney test (normal approximation with
  ties) that the candidate's times divided by (1 + ``latency_margin``) are still larger: slower by
  more than the margin. Any significant harm at a look -> roll back (the reason names the signal).
- non-inferiority (promote): for each rate, the one-sided (1 - alpha_look) bound of the difference
  lies within the signal's margin (``margins``) of production (for the rates where lower is better, the upper bound of
  candidate - production is < margin); for latency, no harm. Promote when every signal with data is
  non-inferior and at least ``min_feedback`` thumbs and ``min_sampled`` checked outputs exist.
- At the last look, a candidate not yet promoted is rolled back ("not shown non-inferior").
Also rolled back at any look: a candidate whose unsafe rate exceeds ``max_unsafe_rate`` with
significance (exact one-sided binomial test at alpha_look).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist

PROMOTE, ROLLBACK, CONTINUE = "promote", "rollback", "continue"
# Non-inferiority margins (absolute rate differences): thumbs are noisy and few, so a wide margin;
# safety and errors tight. Detecting 2 points at alpha 0.01 needs thousands of thumbs per version.
DEFAULT_MARGINS = {"thumbs_up_rate": 0.10, "unsafe_rate": 0.02, "incoherent_rate": 0.05, "error_rate": 0.02}


@dataclass(frozen=True)
class VersionSignals:
    version: str
    requests: int = 0
    errors: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    sampled: int = 0  # live outputs checked by the classifiers
    unsafe: int = 0
    incoherent: int = 0
    ttft: tuple[float, ...] = ()
    tpot: tuple[float, ...] = ()


@dataclass(frozen=True)
class CanaryPolicy:
    share: float = 0.1  # the candidate's share of the alias's traffic
    alpha: float = 0.05
    looks: int = 5
    requests_per_look: int = 200
    margins: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MARGINS))  # per rate signal
    latency_margin: float = 0.10  # a candidate slower than production by more than 10% is rolled back
    min_feedback: int = 30
    min_sampled: int = 30
    max_unsafe_rate: float = 0.05

    def validate(self) -> None:
        if not 0 < self.share < 1:
            raise ValueError(f"canary.share must be in (0, 1), got {self.share}")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"canary.alpha must be in (0, 0.5), got {self.alpha}")
        if self.looks < 1 or self.requests_per_look < 1:
            raise ValueError("canary.looks and canary.requests_per_look must be >= 1")
        for name, m in self.margins.items():
            if name not in DEFAULT_MARGINS or not 0 <= m < 1:
                raise ValueError(f"canary.margins.{name}: signals are {sorted(DEFAULT_MARGINS)}, margins in [0, 1)")
        if self.latency_margin < 0:
            raise ValueError(f"canary.latency_margin must be >= 0, got {self.latency_margin}")

    def margin(self, signal: str) -> float:
        return self.margins.get(signal, DEFAULT_MARGINS[signal])


@dataclass(frozen=True)
class SignalCheck:
    signal: str
    candidate: float | None
    production: float | None
    harm: bool  # significantly worse (beyond the latency margin for TTFT/TPOT)
    non_inferior: bool
    detail: str


@dataclass(frozen=True)
class CanaryDecision:
    action: str
    look: int
    reasons: tuple[str, ...]
    checks: tuple[SignalCheck, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return asdict(self)


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha)


def rate_diff(kc: int, nc: int, kp: int, np_: int) -> tuple[float, float]:
    """(candidate - production rate, standard error), 1/2 added to each cell (sane at 0 and n)."""
    pc, pp = (kc + 0.5) / (nc + 1), (kp + 0.5) / (np_ + 1)
    return pc - pp, math.sqrt(pc * (1 - pc) / (nc + 1) + pp * (1 - pp) / (np_ + 1))


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the exact one-sided p-value of k or more hits."""
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def mann_whitney_greater_p(x: list[float], y: list[float]) -> float:
    """One-sided p-value that values in ``x`` tend to exceed those in ``y`` (normal approx., ties averaged)."""
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        return 1.0
    allv = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    ranks, i, tie_term = [0.0] * len(allv), 0, 0.0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1][0] == allv[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        tie_term += t ** 3 - t
        i = j + 1
    u = sum(r for r, (_, g) in zip(ranks, allv, strict=True) if g == 0) - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    return 1 - NormalDist().cdf((u - n1 * n2 / 2 - 0.5) / math.sqrt(var))


def _rate_check(name: str, kc: int, nc: int, kp: int, np_: int, higher_better: bool, margin: float,
                alpha: float) -> SignalCheck | None:
    if nc == 0 or np_ == 0:
        return None
    d, se = rate_diff(kc, nc, kp, np_)
    worse = -d if higher_better else d  # > 0: the candidate is worse
    z = _z(alpha)
    harm = worse - z * se > 0
    non_inf = worse + z * se < margin
    return SignalCheck(name, kc / nc, kp / np_, harm, non_inf,
                       f"worse by {worse:+.4f} (bound {worse + z * se:+.4f}, margin {margin:g})")


def _latency_check(name: str, cand: tuple[float, ...], prod: tuple[float, ...], margin: float,
                   alpha: float) -> SignalCheck | None:
    if not cand or not prod:
        return None
    p = mann_whitney_greater_p([v / (1 + margin) for v in cand], list(prod))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    harm = p <= alpha
    return SignalCheck(name, med(cand), med(prod), harm, not harm,
                       f"median {med(cand):.4g} vs {med(prod):.4g}; one-sided p = {p:.3g} for slower by > {margin:.0%}")


def decide(cand: VersionSignals, prod: VersionSignals, policy: CanaryPolicy | None = None) -> CanaryDecision:
    """Promote, roll back or continue the canary of ``cand`` against ``prod``; changes nothing."""
    policy = policy or CanaryPolicy()
    policy.validate()
    look = min(policy.looks, cand.requests // policy.requests_per_look)
    if look == 0:
        return CanaryDecision(CONTINUE, 0, (f"minimum sample: {cand.requests}/{policy.requests_per_look} requests",))
    a = policy.alpha / policy.looks
    checks = [c for c in (
        _rate_check("thumbs_up_rate", cand.thumbs_up, cand.thumbs_up + cand.thumbs_down, prod.thumbs_up,
                    prod.thumbs_up + prod.thumbs_down, True, policy.margin("thumbs_up_rate"), a),
        _rate_check("unsafe_rate", cand.unsafe, cand.sampled, prod.unsafe, prod.sampled, False, policy.margin("unsafe_rate"), a),
        _rate_check("incoherent_rate", cand.incoherent, cand.sampled, prod.incoherent, prod.sampled, False,
                    policy.margin("incoherent_rate"), a),
        _rate_check("error_rate", cand.errors, cand.requests, prod.errors, prod.requests, False, policy.margin("error_rate"), a),
        _latency_check("ttft", cand.ttft, prod.ttft, policy.latency_margin, a),
        _latency_check("tpot", cand.tpot, prod.tpot, policy.latency_margin, a),
    ) if c is not None]
    harmed = [f"{c.signal} significantly worse ({c.detail})" for c in checks if c.harm]
    if cand.sampled and binomial_tail(cand.unsafe, cand.sampled, policy.max_unsafe_rate) <= a:
        harmed.append(f"unsafe rate {cand.unsafe / cand.sampled:.3f} significantly above {policy.max_unsafe_rate:g}")
    if harmed:
        return CanaryDecision(ROLLBACK, look, tuple(harmed), tuple(checks))
    feedback = cand.thumbs_up + cand.thumbs_down
    missing = [f"{feedback}/{policy.min_feedback} thumbs" for _ in [0] if feedback < policy.min_feedback] + \
        [f"{cand.sampled}/{policy.min_sampled} checked outputs" for _ in [0] if cand.sampled < policy.min_sampled]
    not_shown = [f"{c.signal} not yet shown non-inferior ({c.detail})" for c in checks if not c.non_inferior]
    if not missing and not not_shown:
        return CanaryDecision(PROMOTE, look, (f"every signal non-inferior at look {look}",), tuple(checks))
    if look >= policy.looks:
        return CanaryDecision(ROLLBACK, look, ("not shown non-inferior by the last look: " + "; ".join(missing + not_shown),),
                              tuple(checks))
    return CanaryDecision(CONTINUE, look, tuple(missing + not_shown) or ("waiting",), tuple(checks))
