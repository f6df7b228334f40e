"""The fixed, stratified gating set of a suite: a seeded sample sized for the gate's power.

Size: ``paired_diff.items_needed(margin, discordance, alpha, power)`` paired items (773 for a
2-point margin, a 5% discordant rate, one-sided alpha 0.05, power 0.8), capped at the suite's
size; a config may set the size directly. Strata: the item's ``part`` (safety parts, CLINC
in-scope / out-of-scope), else its expected answer (the intent), else one stratum. Allocation is
proportional (largest remainders), at least one item per stratum while the size allows; within a
stratum, ``random.Random(f"{seed}:{suite}:{stratum}")`` picks the items, so the set is fixed by
(seed, suite, size) and the same for every version the loop compares. Items keep suite order.
"""

from __future__ import annotations

import random
from collections import defaultdict

from treadle.evals.paired_diff import items_needed
from treadle.evals.suite import Item, Suite


def stratum(item: Item) -> str:
    if item.part:
        return f"part:{item.part}"
    if item.type in ("choice", "label") and item.expected is not None:
        return f"expected:{item.expected}"
    return "all"


def allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Proportional allocation of ``total`` over strata of the given sizes (largest remainders, >= 1 each
    while ``total`` allows, never more than a stratum holds)."""
    n = sum(sizes.values())
    if total >= n:
        return dict(sizes)
    keys = sorted(sizes)
    quota = {k: total * sizes[k] / n for k in keys}
    out = {k: int(quota[k]) for k in keys}
    for k in sorted(keys, key=lambda k: (-(quota[k] - int(quota[k])), k))[: total - sum(out.values())]:
        out[k] += 1
    if total >= len(keys):  # every stratum keeps one item, taken from the largest allocation
        for k in keys:
            if out[k] == 0:
                out[max(keys, key=lambda j: (out[j], j))] -= 1
                out[k] = 1
    return out


def gating_items(suite: Suite, size: int, seed: int = 0) -> list[Item]:
    """The suite's gating set of ``size`` items (all when ``size`` >= the suite)."""
    if size <= 0:
        raise ValueError(f"gating set size for {suite.name} must be positive, got {size}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(suite.items):
        groups[stratum(it)].append(i)
    alloc = allocate({k: len(v) for k, v in groups.items()}, size)
    keep: set[int] = set()
    for k, idx in groups.items():
        keep.update(random.Random(f"{seed}:{suite.name}:{k}").sample(idx, alloc[k]))
    return [it for i, it in enumerate(suite.items) if i in keep]


def default_size(suite_items: int, margin: float, discordance: float = 0.05, alpha: float = 0.05,
                 power: float = 0.8) -> int:
    return min(suite_items, items_needed(margin, discordance, alpha, power))


def gating_suite(suite: Suite, size: int, seed: int = 0) -> Suite:
    """A copy of ``suite`` restricted to its gating set (same name, category, gated metrics)."""
    return Suite(suite.name, suite.category, gating_items(suite, size, seed), suite.max_tokens, set(suite.gated))
