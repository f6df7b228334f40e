"""Duplicate removal for dataset records, per kind.

Algorithm: records of earlier dataset versions (``prior``) are kept first; then records are visited in order; a record is an **exact** duplicate when its normalised text
(lower case, whitespace collapsed) equals a kept record's, and a **near** duplicate when the cosine
similarity of its MiniLM embedding (``treadle.evals.embedder``) with any kept record's reaches
``threshold`` (default 0.95); duplicates are dropped, the first occurrence is kept. Parameters:
``threshold``; ``embed=False`` skips the near-duplicate pass.

Template lines: a line found (normalised) in at least ``template_share`` (default 0.2) of the compared texts
(earlier versions' and this build's, at least ``TEMPLATE_MIN_TEXTS`` of them) is a prompt template's, not a
user's words ("Which intent from the list is this request? Answer with the intent name only."); the near pass
embeds each text without those lines (the whole text where nothing else is left). Without this, two different
requests wrapped in one long template embed as near-identical: on the Bitext train split in the
``bitext_intent`` prompt, 0.95 kept 1,157 of 3,612 requests with the template line and 2,223 without it
(docs/FEEDBACK.md). The exact pass compares whole texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

NEAR_THRESHOLD = 0.95
TEMPLATE_SHARE = 0.2
TEMPLATE_MIN_TEXTS = 10


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def template_lines(texts: list[str], share: float = TEMPLATE_SHARE) -> set[str]:
    """The normalised lines found in at least ``share`` of ``texts`` (none for fewer than TEMPLATE_MIN_TEXTS texts)."""
    if len(texts) < TEMPLATE_MIN_TEXTS or share > 1.0:
        return set()
    counts: dict[str, int] = {}
    for t in texts:
        for line in {normalise(x) for x in t.splitlines()} - {""}:
            counts[line] = counts.get(line, 0) + 1
    need = max(2, share * len(texts))
    return {line for line, n in counts.items() if n >= need}


def without_lines(text: str, lines: set[str]) -> str:
    """``text`` less its lines in ``lines`` (normalised comparison); ``text`` itself when nothing would be left."""
    kept = [x for x in text.splitlines() if normalise(x) not in lines]
    return "\n".join(kept) if any(normalise(x) for x in kept) else text


def keep_mask(texts: list[str], threshold: float = NEAR_THRESHOLD,
              encode: Callable[[list[str]], np.ndarray] | None = None,
              prior: list[str] = (),  # type: ignore[assignment]
              template_share: float = TEMPLATE_SHARE) -> tuple[list[bool], int, int]:
    """(keep flag per text, exact duplicates, near duplicates); a text equal or near to a ``prior`` one is a duplicate.

    The near pass embeds the texts without their template lines (module docstring); ``template_share`` above 1
    turns that off."""
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
        compared = [*prior, *(texts[i] for i in idx)]
        template = template_lines(compared, template_share)
        emb = encode([without_lines(t, template) for t in compared] if template else compared)
        kept: list[int] = list(range(len(prior)))
        for row, i in enumerate(idx, start=len(prior)):
            if kept and float(np.max(emb[kept] @ emb[row])) >= threshold:
                keep[i] = False
                near += 1
            else:
                kept.append(row)
    return keep, exact, near
