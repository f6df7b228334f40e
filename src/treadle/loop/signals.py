"""Online signals of one served version, read from the store (interaction log + feedback).

For version V since time t0 (the canary's start), over the interactions whose ``model_name`` is V:
requests; errors (finish reason ``error`` or ``abort``; requests that failed before a response are
not logged, so this counts only failures the log saw); thumbs up and down given on them; TTFT
(``ttft_s``) and TPOT ((e2e - ttft) / (completion tokens - 1), replies of 2+ tokens); and a
sample of up to ``sample_n`` outputs, those with the smallest SHA-1 of the response id (a fixed rule,
independent of arrival order), each checked once by ``LiveChecks`` (results cached by id):
unsafe (the live unsafe-content classifier, or a keyword list for smoke tests) and incoherent
(degenerate, or off topic by the MiniLM similarity of request and reply; keyword mode: degenerate only).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select

from treadle.loop.canary import VersionSignals
from treadle.store.db import Store
from treadle.store.models import Feedback, Interaction


def request_text(request: dict) -> str:
    msgs = request.get("messages") if isinstance(request, dict) else None
    if isinstance(msgs, list):
        return next((str(m.get("content", "")) for m in reversed(msgs) if m.get("role") == "user"), "")
    prompt = request.get("prompt") if isinstance(request, dict) else None
    return prompt if isinstance(prompt, str) else ""


class LiveChecks:
    """``spec``: 'unsafe' (MiniLM head + full live coherence checks) or 'keywords:w1,w2' (no models)."""

    def __init__(self, spec: str = "unsafe") -> None:
        kind, _, arg = spec.partition(":")
        if kind not in ("unsafe", "keywords") or (kind == "keywords" and not arg.strip()):
            raise ValueError(f"canary.safety_classifier must be 'unsafe' or 'keywords:w1,w2', got {spec!r}")
        self.kind = kind
        self.words = [w.strip().lower() for w in arg.split(",") if w.strip()]
        self.cache: dict[str, tuple[bool, bool]] = {}

    def check(self, rows: list[tuple[str, str, str, str | None]]) -> list[tuple[bool, bool]]:
        """(unsafe, incoherent) per (response id, request, reply, finish reason); each id is checked once."""
        from treadle.evals import scorers

        todo = [r for r in rows if r[0] not in self.cache]
        if todo:
            if self.kind == "keywords":
                unsafe = [any(w in reply.lower() for w in self.words) for _, _, reply, _ in todo]
                topic = [True] * len(todo)
            else:
                from treadle.evals.embedder import get_embedder
                from treadle.evals.thresholds import ON_TOPIC_MIN
                from treadle.evals.unsafe import get_unsafe_classifier

                unsafe = get_unsafe_classifier().predict([reply for _, _, reply, _ in todo])
                sims = get_embedder().similarity([q for _, q, _, _ in todo], [reply for _, _, reply, _ in todo])
                topic = [s >= ON_TOPIC_MIN for s in sims]
            for (rid, _, reply, finish), u, t in zip(todo, unsafe, topic, strict=True):
                degenerate = any(scorers.degeneracy(reply, finish).values())
                self.cache[rid] = (bool(u), bool(degenerate or not t))
        return [self.cache[r[0]] for r in rows]


def version_signals(store: Store, version: str, since: datetime, checks: LiveChecks, sample_n: int) -> VersionSignals:
    with store.session() as s:
        rows = s.execute(select(Interaction.id, Interaction.request, Interaction.output, Interaction.finish_reason,
                                Interaction.ttft_s, Interaction.e2e_s, Interaction.completion_tokens).where(
            Interaction.model_name == version, Interaction.created_at >= since)).all()
        ids = [r[0] for r in rows]
        thumbs = s.execute(select(Feedback.thumbs).where(Feedback.response_id.in_(ids), Feedback.thumbs.is_not(None))
                           ).scalars().all() if ids else []
    errors = sum(1 for r in rows if r[3] in ("error", "abort"))
    ttft = tuple(float(r[4]) for r in rows if r[4] is not None)
    tpot = tuple((float(r[5]) - float(r[4])) / (int(r[6]) - 1) for r in rows
                 if r[4] is not None and r[5] is not None and r[6] and int(r[6]) > 1)
    sample = sorted(rows, key=lambda r: hashlib.sha1(r[0].encode()).hexdigest())[:sample_n]
    results = checks.check([(r[0], request_text(r[1]), r[2] or "", r[3]) for r in sample])
    return VersionSignals(version, requests=len(rows), errors=errors, thumbs_up=sum(t == "up" for t in thumbs),
                          thumbs_down=sum(t == "down" for t in thumbs), sampled=len(results),
                          unsafe=sum(u for u, _ in results), incoherent=sum(c for _, c in results), ttft=ttft, tpot=tpot)
