"""Coherence of a reply judged without the serving model: the rules that the eval's coherence checks,
the review queue's scan and the canary's live signal share.

A reply is **off topic** when the MiniLM cosine of the last user message and the reply is below the
calibrated ``ON_TOPIC_MIN``, unless it is a **short extractive answer**: at most
``EXTRACTIVE_MAX_WORDS`` words that occur, in order and on word boundaries, within one line of the
request's own text (system and user messages; ``_``/``-`` count as spaces). That is the shape of a
correct answer to a classification or multiple-choice prompt ("get_invoice" for a prompt that lists
the intents); the cosine of a request and a bare label is no measure of topic (docs/QUALITY.md,
"Short answers": 65% of the correct Bitext labels fall below ``ON_TOPIC_MIN``).

A reply is **degenerate** by ``scorers.degeneracy``, where a last word that the request itself
uses counts as a whole word (the cut-mid-word check knows only the embedding model's 30k-word
vocabulary, which lacks "invoice" and "refund").

``incoherent`` = degenerate or off topic. Parameters: ``EXTRACTIVE_MAX_WORDS`` = 5 (Bitext's longest
intent name has 4 words); pinned by tests/test_reply_checks.py.
"""

from __future__ import annotations

import re

from treadle.evals import scorers
from treadle.evals.thresholds import ON_TOPIC_MIN

EXTRACTIVE_MAX_WORDS = 5


def words(text: str) -> list[str]:
    """Lower-case runs of letters and digits (``_``, ``-`` and punctuation separate words)."""
    return re.findall(r"[a-z0-9]+", text.lower())


def last_user_text(request: dict) -> str:
    """The logged request's last user message (what a reply must be on topic for), or its prompt."""
    msgs = request.get("messages") if isinstance(request, dict) else None
    if isinstance(msgs, list):
        return next((str(m.get("content") or "") for m in reversed(msgs)
                     if isinstance(m, dict) and m.get("role") == "user"), "")
    prompt = request.get("prompt") if isinstance(request, dict) else None
    return prompt if isinstance(prompt, str) else ""


def context_text(request: dict) -> str:
    """All the text a logged request gave the model: its messages' contents, or its prompt."""
    msgs = request.get("messages") if isinstance(request, dict) else None
    if isinstance(msgs, list):
        return "\n".join(str(m.get("content") or "") for m in msgs if isinstance(m, dict))
    prompt = request.get("prompt") if isinstance(request, dict) else None
    return prompt if isinstance(prompt, str) else ""


def is_extractive(reply: str, context: str) -> bool:
    """True when the reply is 1..EXTRACTIVE_MAX_WORDS words found, in order, inside one line of ``context``."""
    got = words(reply)
    if not got or len(got) > EXTRACTIVE_MAX_WORDS:
        return False
    phrase = f" {' '.join(got)} "
    return any(phrase in f" {' '.join(words(line))} " for line in context.splitlines())


def on_topic(similarity: float, reply: str, context: str) -> bool:
    return similarity >= ON_TOPIC_MIN or is_extractive(reply, context)


def degeneracy(reply: str, finish_reason: str | None, context: str = "") -> dict[str, bool]:
    """``scorers.degeneracy`` with the request's words counted as whole words."""
    return scorers.degeneracy(reply, finish_reason, extra_words=frozenset(words(context)))


def incoherent_reasons(context: str, reply: str, finish_reason: str | None, similarity: float) -> list[str]:
    """The failed checks of one reply ('empty', 'repetitive', 'cut_mid_word', 'off_topic'); [] when coherent."""
    out = [k for k, bad in degeneracy(reply, finish_reason, context).items() if bad]
    if not on_topic(similarity, reply, context):
        out.append("off_topic")
    return out
