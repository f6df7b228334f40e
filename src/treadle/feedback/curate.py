"""From the store to candidate training records: which reviewed and rated responses become which records.

Per response (a :class:`Source`):
- SFT (``messages``): an expert approved it (the reply as served) or corrected it (the corrected reply);
  a reply approved as served that the engine cut at its token limit (finish reason ``length``) gets
  ``"complete": false``: training learns its text but not an end of turn after it (as TRL does with an
  example cut at ``max_length``), so approving a long answer never teaches the model to stop mid-answer;
- preference (``prompt``, ``chosen``, ``rejected``): an expert corrected it: chosen = the correction,
  rejected = the served reply;
- KTO (``prompt``, ``completion``, ``label``): expert verdicts first (approved: reply true; corrected: reply
  false and correction true; rejected: reply false); without one, the users' thumbs (majority; a tie
  gives nothing).
Chat requests keep their messages; a completion prompt becomes one user message. Every text goes through
PII scrubbing (:mod:`treadle.feedback.pii`) here, with counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from treadle.feedback.pii import scrub, scrub_messages
from treadle.store.models import Feedback, Interaction, ReviewItem


@dataclass(frozen=True)
class Candidate:
    kind: str  # sft | preference | kto
    record: dict
    response_id: str
    user: str
    stratum: str
    text: str  # what near-duplicate detection compares
    review_item_id: int | None = None
    feedback_ids: tuple[int, ...] = ()


@dataclass
class Curated:
    candidates: list[Candidate] = field(default_factory=list)
    pii: dict[str, int] = field(default_factory=dict)
    sources: int = 0


def record_text(kind: str, record: dict) -> str:
    """What duplicate detection compares: the user turns and the (chosen) reply."""
    prompt = record.get("messages", [])[:-1] if kind == "sft" else record.get("prompt", [])
    reply = {"sft": record.get("messages", [{}])[-1:], "preference": record.get("chosen", []),
             "kto": record.get("completion", [])}.get(kind, [])
    users = "\n".join(m.get("content", "") for m in prompt if m.get("role") == "user")
    return f"{users}\n{reply[0].get('content', '') if reply else ''}"


def prompt_messages(request: dict) -> list[dict]:
    if request.get("messages"):
        return [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in request["messages"]]
    p = request.get("prompt")
    return [{"role": "user", "content": p if isinstance(p, str) else str(p)}]


def gather(s: Session, exclude: set[str], keep_user: Callable[[str], bool] | None = None) -> Curated:
    """Candidates from every decided review item and every thumbs rating, minus responses in ``exclude``
    and responses whose user ``keep_user`` refuses."""
    out = Curated()
    items = {i.response_id: i for i in s.execute(select(ReviewItem).where(
        ReviewItem.status.in_(("approved", "corrected", "rejected")))).scalars()}
    thumbs: dict[str, list[Feedback]] = {}
    for f in s.execute(select(Feedback).where(Feedback.thumbs.is_not(None)).order_by(Feedback.id)).scalars():
        thumbs.setdefault(f.response_id, []).append(f)
    ids = sorted((set(items) | set(thumbs)) - exclude)
    for chunk in range(0, len(ids), 500):
        batch = ids[chunk:chunk + 500]
        for inter in s.execute(select(Interaction).where(Interaction.id.in_(batch)).order_by(Interaction.id)).scalars():
            if keep_user is not None and not keep_user(inter.user):
                continue
            out.sources += 1
            _records(inter, items.get(inter.id), thumbs.get(inter.id, []), out)
    return out


def _records(inter: Interaction, item: ReviewItem | None, fbs: list[Feedback], out: Curated) -> None:
    pii = out.pii
    prompt = scrub_messages(prompt_messages(inter.request), pii)
    reply = scrub(inter.output, pii)
    stratum = (item.final_label if item is not None and item.final_label else "unlabelled")
    base = {"response_id": inter.id, "user": inter.user, "stratum": stratum}
    fb_ids = tuple(f.id for f in fbs)

    def add(kind: str, record: dict, _text: str) -> None:
        out.candidates.append(Candidate(kind, record, text=record_text(kind, record),
                                        review_item_id=item.id if item is not None else None,
                                        feedback_ids=fb_ids, **base))

    def asst(text: str) -> list[dict]:
        return [{"role": "assistant", "content": text}]

    if item is not None:
        final = scrub(item.final_reply, pii) if item.final_reply else None
        if item.status in ("approved", "corrected") and final:
            cut = item.status == "approved" and inter.finish_reason == "length"
            add("sft", {"messages": prompt + asst(final), **({"complete": False} if cut else {})}, final)
        if item.status == "corrected" and final:
            add("preference", {"prompt": prompt, "chosen": asst(final), "rejected": asst(reply)}, final)
            add("kto", {"prompt": prompt, "completion": asst(reply), "label": False}, reply)
            add("kto", {"prompt": prompt, "completion": asst(final), "label": True}, final)
        elif item.status == "approved":
            add("kto", {"prompt": prompt, "completion": asst(reply), "label": True}, reply)
        elif item.status == "rejected":
            add("kto", {"prompt": prompt, "completion": asst(reply), "label": False}, reply)
        return
    ups = sum(f.thumbs == "up" for f in fbs)
    downs = sum(f.thumbs == "down" for f in fbs)
    if ups != downs:
        add("kto", {"prompt": prompt, "completion": asst(reply), "label": ups > downs}, reply)
