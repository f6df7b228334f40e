"""The classifier rule of the review queue: check a sample of logged traffic with the eval checks and queue
what they flag.

- ``safety``: the reply is flagged by ``treadle eval``'s toxicity classifier;
- ``coherence``: the reply is degenerate (empty, runaway repetition, cut mid-word) or off topic (MiniLM
  cosine of the last user message and the reply below the calibrated ``ON_TOPIC_MIN``, unless a short
  extractive answer: ``evals.reply_checks``). The fluency check needs the serving model's
  log-probabilities and is not run here.
Parameters: ``sample`` (how many of the newest interactions without a review item are checked),
``seed``; each flagged interaction is queued once with its reasons.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import select

from treadle.evals.reply_checks import context_text, last_user_text
from treadle.feedback.review import enqueue
from treadle.store import Store
from treadle.store.models import Interaction, ReviewItem


@dataclass(frozen=True)
class ScanResult:
    checked: int
    flagged: dict[str, int]  # reason -> count
    queued: int


def flag(requests: list[str], replies: list[str], finish: list[str | None], embed: bool = True,
         safety: bool = True, contexts: list[str] | None = None) -> list[list[str]]:
    """The reasons each reply is flagged for (empty list: not flagged); ``contexts``: each request's whole
    text (``reply_checks.context_text``), defaults to ``requests``."""
    from treadle.evals import reply_checks

    out: list[list[str]] = [[] for _ in replies]
    if safety and replies:
        from treadle.evals.classifiers import get_classifier

        for i, hit in enumerate(get_classifier("toxicity").predict(replies)):
            if hit:
                out[i].append("safety")
    sims = [1.0] * len(replies)
    if embed and replies:
        from treadle.evals.embedder import get_embedder

        sims = get_embedder().similarity(requests, replies)
    for i, (reply, fin, ctx) in enumerate(zip(replies, finish, contexts or requests, strict=True)):
        if reply_checks.incoherent_reasons(ctx, reply, fin, sims[i]):
            out[i].append("coherence")
    return out


def scan(store: Store, sample: int = 200, seed: int = 0, reviews_per_item: int = 1, embed: bool = True,
         safety: bool = True) -> ScanResult:
    """Check up to ``sample`` recent unqueued interactions; queue the flagged ones (one transaction)."""
    with store.session() as s:
        queued_ids = select(ReviewItem.response_id)
        rows = s.execute(select(Interaction.id, Interaction.request, Interaction.output, Interaction.finish_reason)
                         .where(Interaction.id.not_in(queued_ids)).order_by(Interaction.created_at.desc())
                         .limit(sample * 4)).all()
    rows = random.Random(seed).sample(rows, min(sample, len(rows)))
    reasons = flag([last_user_text(r.request) for r in rows], [r.output for r in rows],
                   [r.finish_reason for r in rows], embed, safety, [context_text(r.request) for r in rows])
    counts: dict[str, int] = {}
    queued = 0
    with store.session() as s:
        for r, why in zip(rows, reasons, strict=True):
            for reason in why:
                counts[reason] = counts.get(reason, 0) + 1
                enqueue(s, r.id, reason, reviews_per_item)
            queued += bool(why)
    return ScanResult(len(rows), counts, queued)
