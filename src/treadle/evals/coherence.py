"""Coherence of a reply: four checks, each reported, and ``coherent`` = all four pass.

- ``on_topic``: cosine similarity of request and reply embeddings (MiniLM) >= ``ON_TOPIC_MIN``, or a
  short extractive answer (``reply_checks``: a label or choice that the prompt itself lists);
- ``fluent``: the reply's mean per-token log-probability under the served base model, scored by
  the server's prompt log-probabilities after ``FLUENCY_PREFIX`` (the ChatML turn of the request),
  is at least ``FLUENCY_MIN`` (below: word salad; ``FLUENCY_MAX`` is 0, see ``thresholds.py``);
- ``not_degenerate``: not empty, no runaway repetition, not cut mid-word unless length-limited
  (``reply_checks.degeneracy``: the request's own words count as whole words);
- ``language``: the reply is in the request's language: the item's ``language``, else the one
  detected in the request (``scorers.same_language``; text too short to tell passes).
The thresholds (``thresholds.py``) are calibrated on reference replies vs. deliberately broken
ones (``treadle.evals.calibrate``; numbers and method in docs/QUALITY.md). An optional LLM judge adds a
separate ``judge_coherent`` metric; it is never required and never part of ``coherent``.
"""

from __future__ import annotations

import asyncio
import re

from treadle.evals import reply_checks, scorers
from treadle.evals.client import Endpoint
from treadle.evals.thresholds import FLUENCY_MAX, FLUENCY_MIN

FLUENCY_PREFIX = "<|im_start|>user\n{request}<|im_end|>\n<|im_start|>assistant\n"

JUDGE_PROMPT = (
    "You judge whether an assistant's reply is coherent: on topic for the request, fluent, not repetitive, "
    "complete. Answer with one word, yes or no.\n\nRequest:\n{request}\n\nReply:\n{reply}\n\nCoherent?"
)


def fluency_ok(mean_lp: float | None) -> bool:
    return mean_lp is not None and FLUENCY_MIN <= mean_lp <= FLUENCY_MAX


async def fluency(endpoint: Endpoint, request: str, reply: str) -> float | None:
    """Mean log-prob of ``reply`` under the endpoint's model (None for an empty reply)."""
    if not reply.strip():
        return None
    value, _ = await endpoint.mean_logprob(FLUENCY_PREFIX.format(request=request), reply)
    return value


async def judge(endpoint: Endpoint, request: str, reply: str) -> bool:
    out = await endpoint.chat([{"role": "user", "content": JUDGE_PROMPT.format(request=request, reply=reply)}], 4)
    return bool(re.match(r"\W*yes", out.text.strip().lower()))


def checks(request: str, reply: str, finish_reason: str | None, similarity: float, mean_lp: float | None,
           language: str | None, context: str | None = None) -> tuple[dict[str, bool], dict]:
    """(passed flags, details) of one reply; ``coherent`` is the conjunction of the four checks.
    ``context``: all the prompt's text (``reply_checks.context_text``), defaults to ``request``."""
    ctx = request if context is None else context
    degen = reply_checks.degeneracy(reply, finish_reason, ctx)
    passed = {
        "on_topic": reply_checks.on_topic(similarity, reply, ctx),
        "fluent": fluency_ok(mean_lp),
        "not_degenerate": not any(degen.values()),
        "language": scorers.same_language(reply, language or scorers.detect_language(request)),
    }
    passed["coherent"] = all(passed.values())
    details = {"similarity": round(similarity, 4), "mean_logprob": None if mean_lp is None else round(mean_lp, 4),
               "degenerate": degen, "language_detected": scorers.detect_language(reply)}
    return passed, details


async def gather_limited(coros: list, limit: int) -> list:
    """Run coroutines with at most ``limit`` in flight, results in input order."""
    sem = asyncio.Semaphore(limit)

    async def one(c):  # noqa: ANN001, ANN202
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))
