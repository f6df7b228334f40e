"""Per-item scorers that need no model: labels, choices, regular expressions, degeneracy, language.

Parameters (pinned by tests/test_eval_scorers.py):
- normalisation: lower case, ``_``/``-`` -> space, runs of whitespace -> one space, punctuation and
  quotes stripped at both ends;
- choice extraction: the choice whose normalised form occurs earliest in the normalised reply (as
  whole words); at the same position the longest wins;
- degeneracy: empty (no letters or digits after stripping), runaway repetition (the most frequent
  4-word sequence covers > 30% of the reply's 4-word windows when it has >= 12 windows, or one line
  of >= 3 words repeated 3+ times), cut mid-word (the reply stopped on its own, not on the length
  limit, and ends in letters that form no whole word of the embedding model's vocabulary);
- language: ``langdetect`` (seeded) on replies of >= 40 letters; shorter ones pass.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

_PUNCT = " \t\n\r.,;:!?\"'`()[]{}<>*#"


def normalize(text: str) -> str:
    text = re.sub(r"[_\-]+", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip(_PUNCT)


def score_label(reply: str, expected: str) -> bool:
    return normalize(reply) == normalize(expected)


def extract_choice(reply: str, choices: list[str]) -> str | None:
    """The choice named first in the reply (longest at a tie), or None."""
    text = f" {re.sub(r'[^a-z0-9 ]', ' ', normalize(reply))} "
    text = re.sub(r"\s+", " ", text)
    best: tuple[int, int, str] | None = None
    for c in choices:
        key = re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", " ", normalize(c))).strip()
        if not key:
            continue
        pos = text.find(f" {key} ")
        if pos >= 0 and (best is None or (pos, -len(key)) < (best[0], best[1])):
            best = (pos, -len(key), c)
    return best[2] if best else None


def score_choice(reply: str, expected: str, choices: list[str]) -> bool:
    return extract_choice(reply, choices) == expected


def score_regex(reply: str, pattern: str) -> bool:
    try:
        return re.search(pattern, reply) is not None
    except re.error as e:
        raise ValueError(f"expected: {pattern!r} is not a valid regular expression ({e})") from None


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    """Whole-word entries of the MiniLM WordPiece vocabulary (30k English words), or empty."""
    try:
        from treadle.evals.embedder import model_dir

        words = (model_dir() / "vocab.txt").read_text().split("\n")
    except (ValueError, OSError):
        return frozenset()
    return frozenset(w for w in words if w.isalpha())


def is_empty(reply: str) -> bool:
    return not re.search(r"[^\W_]", reply)


def is_repetitive(reply: str) -> bool:
    words = reply.lower().split()
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    if len(grams) >= 12 and Counter(grams).most_common(1)[0][1] / len(grams) > 0.30:
        return True
    lines = [ln.strip().lower() for ln in reply.splitlines() if len(ln.split()) >= 3]
    return bool(lines) and Counter(lines).most_common(1)[0][1] >= 3


def is_cut_mid_word(reply: str, finish_reason: str | None, extra_words: frozenset[str] = frozenset()) -> bool:
    """Stopped on its own (not ``length``) but ending inside a word (letters that are no vocabulary word
    and none of ``extra_words``, lower case: e.g. the request's own words)."""
    if finish_reason == "length":
        return False
    if finish_reason not in ("stop", None):  # an aborted or errored stream is cut
        return True
    m = re.search(r"([A-Za-z]+)$", reply.rstrip(" \t"))
    if not m or reply.rstrip(" \t") != reply.rstrip():  # ends in punctuation/digits/newline
        return False
    vocab = _vocabulary()
    last = m.group(1).lower()
    return bool(vocab) and last not in vocab and last not in extra_words


def degeneracy(reply: str, finish_reason: str | None, extra_words: frozenset[str] = frozenset()) -> dict[str, bool]:
    """The three ways a reply is degenerate, each a flag (True = the problem is present)."""
    return {"empty": is_empty(reply), "repetitive": is_repetitive(reply),
            "cut_mid_word": is_cut_mid_word(reply, finish_reason, extra_words)}


def detect_language(text: str) -> str | None:
    """ISO code by langdetect (seeded: deterministic), or None for text with < 40 letters."""
    if sum(ch.isalpha() for ch in text) < 40:
        return None
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return None


def same_language(reply: str, expected: str | None) -> bool:
    """True when the reply is in ``expected`` (or too short to tell, or no language is expected)."""
    got = detect_language(reply)
    return got is None or expected is None or got == expected
