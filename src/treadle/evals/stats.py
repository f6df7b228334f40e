"""Intervals and paired tests on pass/fail items.

- Wilson score interval for a proportion (``wilson_ci``): never leaves [0, 1], sane at p = 0 or 1.
- McNemar's exact test, one-sided (``mcnemar_worse_p``): on paired items, b = baseline passed and
  candidate failed, c = the reverse; under H0 (no difference) b ~ Binomial(b + c, 1/2);
  p = P(X >= b). Small p means the candidate is worse.
- Paired bootstrap (``bootstrap_worse_p``): resample item indices with replacement ``n_boot`` times
  (seeded); p = share of resamples whose candidate-minus-baseline difference is >= 0, i.e. the
  evidence that the candidate is not worse.
- Holm's step-down correction (``holm_reject``) and Bonferroni (``bonferroni_reject``) over the m
  gated metrics, keeping the family-wise error rate at alpha.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from statistics import NormalDist


def wilson_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval for k successes out of n (``(0, 1)`` when n == 0)."""
    if n <= 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def discordant(cand: Sequence[bool], base: Sequence[bool]) -> tuple[int, int]:
    """(b, c): items the baseline passed and the candidate failed, and the reverse."""
    if len(cand) != len(base):
        raise ValueError("paired results must have the same length")
    b = sum(1 for x, y in zip(cand, base, strict=True) if y and not x)
    c = sum(1 for x, y in zip(cand, base, strict=True) if x and not y)
    return b, c


def mcnemar_worse_p(b: int, c: int) -> float:
    """One-sided exact McNemar p-value for 'candidate worse': P(X >= b), X ~ Bin(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(b, n + 1))
    return min(1.0, tail / 2**n)


def bootstrap_worse_p(cand: Sequence[bool], base: Sequence[bool], n_boot: int = 2000, seed: int = 0) -> float:
    """One-sided paired bootstrap p-value for 'candidate worse' (share of resamples with diff >= 0)."""
    if len(cand) != len(base):
        raise ValueError("paired results must have the same length")
    n = len(cand)
    if n == 0:
        return 1.0
    diffs = [int(x) - int(y) for x, y in zip(cand, base, strict=True)]
    if not any(diffs):
        return 1.0
    rng = random.Random(seed)
    not_worse = 0
    for _ in range(n_boot):
        if sum(diffs[rng.randrange(n)] for _ in range(n)) >= 0:
            not_worse += 1
    return (not_worse + 1) / (n_boot + 1)


def holm_reject(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm step-down: sort p ascending, reject while p_(i) <= alpha / (m - i); keeps input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    reject = [False] * m
    for rank, i in enumerate(order):
        if pvalues[i] <= alpha / (m - rank):
            reject[i] = True
        else:
            break
    return reject


def bonferroni_reject(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Reject each hypothesis whose p <= alpha / m."""
    m = max(1, len(pvalues))
    return [p <= alpha / m for p in pvalues]
