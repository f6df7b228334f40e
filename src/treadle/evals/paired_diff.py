"""Confidence bounds for a paired difference of pass rates, and the gating-set size they need.

Agresti-Min adjusted Wald interval (Agresti & Min 2005, "Simple improved confidence intervals for
comparing matched proportions"): with b = items only the baseline passed, c = items only the
candidate passed, n paired items, add 1/2 to each of the four cells (n* = n + 2):
    d = (c - b) / n*,  p_b = (b + 1/2) / n*,  p_c = (c + 1/2) / n*,
    se = sqrt((p_b + p_c - (p_c - p_b)^2) / n*),
    one-sided lower bound at level 1 - alpha: d - z_{1-alpha} * se.
Non-inferiority with margin delta holds when the lower bound > -delta; superiority when it is > 0.
With no discordant item se = 1/n*, so the bound is -z/n*: a set of n items cannot show non-inferiority
for any margin at or below ``smallest_margin(n)`` = z/(n + 2), even for a candidate identical to the
baseline (one-sided alpha 0.05: n = 40: 0.0392; 50: 0.0316; 100: 0.0161).

Gating-set size (``items_needed``): for a one-sided test at alpha with power 1 - beta when the true
difference is 0 and a share psi of the items flip between the two versions (discordant rate),
    n = ceil((z_{1-alpha} + z_{1-beta})^2 * psi / delta^2).
"""

from __future__ import annotations

import math
from statistics import NormalDist


def adjusted_diff(b: int, c: int, n: int) -> tuple[float, float]:
    """(difference candidate - baseline, standard error) of the Agresti-Min adjusted paired estimate."""
    if n < 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"paired counts need 0 <= b + c <= n, got b={b}, c={c}, n={n}")
    ns = n + 2
    pb, pc = (b + 0.5) / ns, (c + 0.5) / ns
    d = (c - b) / ns
    return d, math.sqrt(max(0.0, pb + pc - (pc - pb) ** 2) / ns)


def lower_bound(b: int, c: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower confidence bound of candidate minus baseline pass rate."""
    d, se = adjusted_diff(b, c, n)
    return d - NormalDist().inv_cdf(1 - alpha) * se


def smallest_margin(n: int, alpha: float) -> float:
    """The margin an identical candidate (no discordant item among ``n``) just fails to beat: -LB(0, 0, n)."""
    return -lower_bound(0, 0, n, alpha)


def items_needed(margin: float, discordance: float = 0.05, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired items for a non-inferiority test with the given margin to pass an equal candidate with ``power``."""
    if not 0 < margin < 1 or not 0 < discordance <= 1:
        raise ValueError(f"margin must be in (0, 1) and discordance in (0, 1], got {margin}, {discordance}")
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    return math.ceil(z * z * discordance / (margin * margin))


def detectable_margin(n: int, discordance: float = 0.05, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest margin that ``n`` paired items support at the given discordance, alpha and power."""
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    return z * math.sqrt(discordance / max(1, n))
