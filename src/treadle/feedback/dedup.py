"""Duplicate removal for dataset records, per kind.

Algorithm: records of earlier dataset versions (``prior``) are kept first; then records are visited in order; a record is an **exact** duplicate when its normalised text
(lower case, whitespace collapsed) equals a kept record's, and a **near** duplicate when the cosine
similarity of its MiniLM embedding (``treadle.evals.embedder``) with any kept record's reaches
``threshold`` (default 0.95); duplicates are dropped, the first occurrence is kept. Parameters:
``threshold``; ``embed=False`` skips the near-duplicate pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

NEAR_THRESHOLD = 0.95


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def keep_mask(texts: list[str], threshold: float = NEAR_THRESHOLD,
              encode: Callable[[list[str]], np.ndarray] | None = None,
              prior: list[str] = ()) -> tuple[list[bool], int, int]:  # type: ignore[assignment]
    """(keep flag per text, exact duplicates, near duplicates); a text equal or near to a ``prior`` one is a duplicate."""
    keep = [True] * len(texts)
    seen: set[str] = {normalise(t) for t in prior}
    exact = 0
    for i, t in enumerate(texts):
        key = normalise(t)
        if key in seen:
            keep[i] = False
            exact += 1
        seen.add(key)
    near = 0
    if encode is not None and any(keep):
        idx = [i for i, k in enumerate(keep) if k]
        emb = encode([*prior, *(texts[i] for i in idx)])
        kept: list[int] = list(range(len(prior)))
        for row, i in enumerate(idx, start=len(prior)):
            if kept and float(np.max(emb[kept] @ emb[row])) >= threshold:
                keep[i] = False
                near += 1
            else:
                kept.append(row)
    return keep, exact, near
