"""Online signals of one served version, read from the store (interaction log + feedback).

For version V since time t0 (the canary's start), over the interactions whose ``model_name`` is V:
requests; errors (finish reason ``error`` or ``abort``; requests that failed before a response are
not logged, so this counts only failures the log saw); thumbs up and down given on them; TTFT
(``ttft_s``) and TPOT ((e2e - ttft) / (completion tokens - 1), replies of 2+ tokens); and a
sample of up to ``sample_n`` outputs, those with the smallest SHA-1 of the response id (a fixed rule,
independent of arrival order), each checked once by ``LiveChecks`` (results cached by id):
unsafe (the live unsafe-content classifier, except on a short extractive answer: a choice among the request's
own words, such as a listed label, adds no content, and the classifier misreads bare labels: it flagged
"recover_password" in pass 17 of docs/LOOP.md; or a keyword list for smoke tests) and incoherent
(``evals.reply_checks``: degenerate, or off topic by the MiniLM similarity of request and reply unless a
short extractive answer such as a label the prompt lists; keyword mode: degenerate only).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import func, select

from treadle.loop.canary import VersionSignals
from treadle.store.db import Store
from treadle.store.models import Feedback, Interaction


class LiveChecks:
    """``spec``: 'unsafe' (MiniLM head + full live coherence checks) or 'keywords:w1,w2' (no models)."""

    def __init__(self, spec: str = "unsafe") -> None:
        kind, _, arg = spec.partition(":")
        if kind not in ("unsafe", "keywords") or (kind == "keywords" and not arg.strip()):
            raise ValueError(f"canary.safety_classifier must be 'unsafe' or 'keywords:w1,w2', got {spec!r}")
        self.kind = kind
        self.words = [w.strip().lower() for w in arg.split(",") if w.strip()]
        self.cache: dict[str, tuple[bool, bool]] = {}

    def check(self, rows: list[tuple[str, dict, str, str | None]]) -> list[tuple[bool, bool]]:
        """(unsafe, incoherent) per (response id, logged request, reply, finish reason); each id is checked once."""
        from treadle.evals import reply_checks

        todo = [r for r in rows if r[0] not in self.cache]
        if todo:
            if self.kind == "keywords":
                unsafe = [any(w in reply.lower() for w in self.words) for _, _, reply, _ in todo]
                sims = [1.0] * len(todo)
            else:
                from treadle.evals.embedder import get_embedder
                from treadle.evals.unsafe import get_unsafe_classifier

                unsafe = get_unsafe_classifier().predict([reply for _, _, reply, _ in todo])
                sims = get_embedder().similarity([reply_checks.last_user_text(q) for _, q, _, _ in todo],
                                                 [reply for _, _, reply, _ in todo])
            for (rid, req, reply, finish), u, sim in zip(todo, unsafe, sims, strict=True):
                context = reply_checks.context_text(req)
                bad = reply_checks.incoherent_reasons(context, reply, finish, sim)
                chosen = self.kind == "unsafe" and reply_checks.is_extractive(reply, context)
                self.cache[rid] = (bool(u) and not chosen, bool(bad))
        return [self.cache[r[0]] for r in rows]


def look_sample_size(store: Store, candidate: str, since: datetime, requests_per_look: int, looks: int,
                     sample_per_look: int, until: datetime | None = None) -> int:
    """How many live outputs per version the checks sample now: ``sample_per_look`` x the look the candidate's
    request count has reached (1..``looks``), so the sample grows with the evidence the looks wait for."""
    with store.session() as s:
        q = select(func.count()).select_from(Interaction).where(Interaction.model_name == candidate,
                                                                Interaction.created_at >= since)
        n = s.scalar(q if until is None else q.where(Interaction.created_at <= until)) or 0
    return sample_per_look * max(1, min(looks, n // requests_per_look))


def version_signals(store: Store, version: str, since: datetime, checks: LiveChecks, sample_n: int,
                    until: datetime | None = None) -> VersionSignals:
    """Signals of ``version`` over the interactions logged from ``since`` (to ``until``, inclusive, when given:
    a replay of an earlier look)."""
    with store.session() as s:
        q = select(Interaction.id, Interaction.request, Interaction.output, Interaction.finish_reason,
                   Interaction.ttft_s, Interaction.e2e_s, Interaction.completion_tokens).where(
            Interaction.model_name == version, Interaction.created_at >= since)
        rows = s.execute(q if until is None else q.where(Interaction.created_at <= until)).all()
        ids = [r[0] for r in rows]
        thumbs = s.execute(select(Feedback.thumbs).where(Feedback.response_id.in_(ids), Feedback.thumbs.is_not(None))
                           ).scalars().all() if ids else []
    errors = sum(1 for r in rows if r[3] in ("error", "abort"))
    ttft = tuple(float(r[4]) for r in rows if r[4] is not None)
    tpot = tuple((float(r[5]) - float(r[4])) / (int(r[6]) - 1) for r in rows
                 if r[4] is not None and r[5] is not None and r[6] and int(r[6]) > 1)
    sample = sorted(rows, key=lambda r: hashlib.sha1(r[0].encode()).hexdigest())[:sample_n]
    results = checks.check([(r[0], r[1] if isinstance(r[1], dict) else {}, r[2] or "", r[3]) for r in sample])
    return VersionSignals(version, requests=len(rows), errors=errors, thumbs_up=sum(t == "up" for t in thumbs),
                          thumbs_down=sum(t == "down" for t in thumbs), sampled=len(results),
                          unsafe=sum(u for u, _ in results), incoherent=sum(c for _, c in results), ttft=ttft, tpot=tpot)
