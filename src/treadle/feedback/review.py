"""The expert review queue: rules that feed it, reviewer actions, N-review agreement and adjudication.

Rules (who puts an item on the queue, ``reasons``): ``thumbs_down`` and ``correction`` (feedback API),
``random`` (a share of logged traffic, :mod:`treadle.feedback.log`), ``safety`` and ``coherence``
(``treadle review scan``: the eval classifiers on a sample of live traffic), ``manual`` and ``red_team``
(an admin queues responses by hand: ``POST /review/api/enqueue``).

Decisions: ``approve`` (the reply is good), ``correct`` (with the edited reply), ``reject`` (with a
reason: unsafe, off_topic, wrong, other). ``label`` sets the item's label (e.g. the intent) without
deciding. An item needs ``required_reviews`` decisions from distinct reviewers (a reviewer's later
decision replaces their earlier one). When they are all in: the same verdict everywhere decides the
item (for ``correct``, the latest correction is the reply); otherwise the item goes to ``adjudication``,
where the next decision by an admin or by a reviewer who has not reviewed it yet is final. An admin
may also re-decide a decided item. Every action is stored (who, when, what). An admin may withdraw a
reviewer's actions (:mod:`treadle.feedback.withdraw`): they stay on record but no longer count.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from treadle.feedback.errors import FeedbackError, bad, not_found
from treadle.feedback.roles import Principal
from treadle.store.models import Feedback, Interaction, ReviewAction, ReviewItem, utcnow

DECISIONS = ("approve", "correct", "reject")
HAND_REASONS = ("manual", "red_team")  # reasons an admin may give when queueing by hand
ACTIONS = (*DECISIONS, "label")
REJECT_REASONS = ("unsafe", "off_topic", "wrong", "other")
OPEN = ("pending", "adjudication")
DECIDED_STATUS = {"approve": "approved", "correct": "corrected", "reject": "rejected"}


def enqueue(s: Session, response_id: str, reason: str, required_reviews: int = 1) -> ReviewItem:
    """Put the response on the queue (or add ``reason`` to its item); decided items stay decided."""
    item = s.execute(select(ReviewItem).where(ReviewItem.response_id == response_id)).scalar_one_or_none()
    if item is None:
        item = ReviewItem(response_id=response_id, reasons=[reason], status="pending",
                          required_reviews=max(1, required_reviews), created_at=utcnow())
        s.add(item)
        s.flush()
    elif reason not in item.reasons:
        item.reasons = [*item.reasons, reason]
    return item


def enqueue_many(s: Session, response_ids: list[str], reason: str, required_reviews: int = 1) -> list[ReviewItem]:
    """``enqueue`` each response; an id not in the log raises 404 (the caller's transaction rolls back)."""
    known = set(s.execute(select(Interaction.id).where(Interaction.id.in_(response_ids))).scalars())
    missing = [r for r in response_ids if r not in known]
    if missing:
        raise not_found(f"logged response (of {len(missing)} unknown ids)", missing[0], "response_ids")
    return [enqueue(s, rid, reason, required_reviews) for rid in dict.fromkeys(response_ids)]


def _open_for(s: Session, reviewer: str):  # noqa: ANN202 - a select
    done = select(ReviewAction.item_id).where(ReviewAction.reviewer == reviewer, ReviewAction.action.in_(DECISIONS))
    return select(ReviewItem).where(ReviewItem.status.in_(OPEN), ReviewItem.id.not_in(done))


def queue(s: Session, reviewer: str | None = None, status: str | None = None, limit: int = 50,
          offset: int = 0) -> list[ReviewItem]:
    """Items by age: open ones this reviewer has not decided (``reviewer``), or all with ``status``; the page of
    ``limit`` after the first ``offset``."""
    q = _open_for(s, reviewer) if reviewer else select(ReviewItem)
    if status:
        q = q.where(ReviewItem.status == status)
    elif not reviewer:
        q = q.where(ReviewItem.status.in_(OPEN))
    first = case((ReviewItem.status == "adjudication", 0), else_=1)  # adjudication first, then by age
    return list(s.execute(q.order_by(first, ReviewItem.id).offset(offset).limit(limit)).scalars())


def progress(s: Session, reviewer: str | None = None) -> dict:
    counts = dict(s.execute(select(ReviewItem.status, func.count()).group_by(ReviewItem.status)).all())
    out = {k: int(counts.get(k, 0)) for k in ("pending", "adjudication", "approved", "corrected", "rejected")}
    out["total"] = sum(out.values())
    if reviewer:
        out["open_for_you"] = int(s.execute(select(func.count()).select_from(_open_for(s, reviewer).subquery())).scalar())
        out["done_by_you"] = int(s.execute(select(func.count(func.distinct(ReviewAction.item_id))).where(
            ReviewAction.reviewer == reviewer, ReviewAction.action.in_(DECISIONS))).scalar())
    return out


def item_json(s: Session, item: ReviewItem) -> dict:
    inter = s.get(Interaction, item.response_id)
    fbs = s.execute(select(Feedback).where(Feedback.response_id == item.response_id).order_by(Feedback.id)).scalars()
    acts = s.execute(select(ReviewAction).where(ReviewAction.item_id == item.id).order_by(ReviewAction.id)).scalars()
    return {
        "id": item.id, "response_id": item.response_id, "reasons": item.reasons, "status": item.status,
        "required_reviews": item.required_reviews, "final_reply": item.final_reply, "final_label": item.final_label,
        "reject_reason": item.reject_reason, "created_at": item.created_at.isoformat() + "Z",
        "decided_at": item.decided_at.isoformat() + "Z" if item.decided_at else None,
        "interaction": None if inter is None else {
            "request": inter.request, "output": inter.output, "finish_reason": inter.finish_reason,
            "model_name": inter.model_name, "model_version": inter.model_version, "user": inter.user,
            "created_at": inter.created_at.isoformat() + "Z"},
        "feedback": [{"user": f.user, "thumbs": f.thumbs, "rating": f.rating, "correction": f.correction,
                      "comment": f.comment, "tags": f.tags} for f in fbs],
        "actions": [{"reviewer": a.reviewer, "action": a.action, "reply": a.reply, "reason": a.reason,
                     "label": a.label, "at": a.created_at.isoformat() + "Z",
                     "withdrawn": None if a.withdrawn_at is None else {
                         "by": a.withdrawn_by, "at": a.withdrawn_at.isoformat() + "Z", "reason": a.withdrawn_reason}}
                    for a in acts],
    }


def get_item(s: Session, item_id: int) -> ReviewItem:
    item = s.get(ReviewItem, item_id)
    if item is None:
        raise not_found("review item", item_id, "item_id")
    return item


def act(s: Session, item_id: int, who: Principal, action: str, reply: str | None = None, reason: str | None = None,
        label: str | None = None) -> ReviewItem:
    """Record one action by ``who`` (reviewer role or above) and update the item's status; see the module doc."""
    if not who.can("reviewer"):
        raise FeedbackError(403, f"{who.user} has the role {who.role}: reviewing needs reviewer or admin", None,
                            "forbidden")
    if action not in ACTIONS:
        raise bad("action", f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if action == "correct" and not (reply and reply.strip()):
        raise bad("reply", "correct needs the corrected reply ('reply')")
    if action == "reject" and reason not in REJECT_REASONS:
        raise bad("reason", f"reject needs a reason, one of {', '.join(REJECT_REASONS)}; got {reason!r}")
    if action == "label" and not (label and label.strip()):
        raise bad("label", "label needs a non-empty 'label'")
    item = get_item(s, item_id)
    label = label.strip() if label else None
    now = utcnow()
    if action != "label" and item.status not in OPEN and not who.can("admin"):
        raise FeedbackError(409, f"Review item {item_id} is already {item.status}; only an admin may re-decide it.",
                            "item_id", "already_decided")
    withdrawn = s.execute(select(ReviewAction.id).where(ReviewAction.item_id == item.id, ReviewAction.reviewer == who.user,
                                                        ReviewAction.withdrawn_at.is_not(None)).limit(1)).first()
    if withdrawn is not None and not who.can("admin"):
        raise FeedbackError(409, f"{who.user}'s earlier actions on review item {item_id} were withdrawn; another "
                            "reviewer or an admin must decide it.", "item_id", "withdrawn")
    earlier = {a.reviewer for a in s.execute(select(ReviewAction).where(  # withdrawn ones too: not a fresh reviewer
        ReviewAction.item_id == item.id, ReviewAction.action.in_(DECISIONS))).scalars()}
    final = action != "label" and (
        (who.can("admin") and item.status not in OPEN)  # an admin re-deciding
        or (item.status == "adjudication" and (who.can("admin") or who.user not in earlier)))
    s.add(ReviewAction(item_id=item.id, reviewer=who.user, action=action, reply=reply if action == "correct" else None,
                       reason=reason if action == "reject" else None, label=label, final=final, created_at=now))
    s.flush()
    if action == "label":
        item.final_label = label
        return item
    for k, v in item_state(s, item).items():
        setattr(item, k, v)
    return item


def item_state(s: Session, item: ReviewItem, excluding: AbstractSet[int] = frozenset()) -> dict:
    """The item's fields (status, final reply and label, reject reason, decided_at) as its actions decide them,
    leaving out withdrawn ones and those in ``excluding``; reads only. The rules (module doc): the latest final
    decision (an admin's, or an adjudicator's) stands; else each reviewer's latest decision counts, and
    ``required_reviews`` of them with one verdict decide (the latest gives a correction's reply), disagreeing ones
    mean adjudication, fewer mean pending. The label is the latest one set."""
    acts = [a for a in s.execute(select(ReviewAction).where(ReviewAction.item_id == item.id)
                                 .order_by(ReviewAction.id)).scalars()
            if a.withdrawn_at is None and a.id not in excluding]
    labels = [a.label for a in acts if a.label]
    state = {"status": "pending", "final_reply": None, "final_label": labels[-1] if labels else None,
             "reject_reason": None, "decided_at": None}
    decisions = [a for a in acts if a.action in DECISIONS]
    finals = [a for a in decisions if a.final]
    latest = {a.reviewer: a for a in decisions}  # in id order: each reviewer's last
    if finals:
        last = finals[-1]
    elif len(latest) < item.required_reviews:
        return state
    elif len({a.action for a in latest.values()}) > 1:
        return {**state, "status": "adjudication"}
    else:
        last = max(latest.values(), key=lambda a: a.id)
    state.update(status=DECIDED_STATUS[last.action], decided_at=last.created_at,
                 reject_reason=last.reason if last.action == "reject" else None)
    if last.action == "approve":
        inter = s.get(Interaction, item.response_id)
        state["final_reply"] = inter.output if inter else None
    elif last.action == "correct":
        state["final_reply"] = last.reply
    return state
