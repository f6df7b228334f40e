"""Withdrawing a reviewer's actions: an admin takes back what a bad (or compromised) reviewer decided.

Which actions: every action by ``reviewer`` that is not already withdrawn, narrowed by an optional time window
(``since`` <= made < ``until``, UTC) and an optional ``label`` (only actions that set that label). Each one is
marked withdrawn (by whom, when, why) and stays on record; nothing is deleted.

``label`` picks the actions that set that label, a decision made with it included.

What happens to each item they touched, from its remaining actions (``review.item_state``, the rules of
:mod:`treadle.feedback.review`):
- a remaining final decision (an admin's, or an adjudicator's) stands: the latest of them decides the item;
- else, by agreement over each remaining reviewer's latest decision:
- ``required_reviews`` or more remaining reviewers, all with one verdict: decided by it (the latest of them
  gives a correction's reply);
- that many, but disagreeing: back to ``adjudication``;
- fewer: back to ``pending``, on the queue again for every reviewer who has not decided it. The withdrawn
  reviewer has, and may not act on the item again (409) unless they are an admin.
The item's label becomes the latest remaining one (none if none is left).

Datasets built earlier keep their records (a version never changes; its lineage names the withdrawn actions'
items). A later ``treadle dataset build`` takes decided items only, so a withdrawn decision reaches no later
tune unless someone decides the item again. ``dry_run`` reports the same counts and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from treadle.feedback.errors import bad, forbidden
from treadle.feedback.review import item_state
from treadle.feedback.roles import Principal
from treadle.store.models import ReviewAction, ReviewItem, utcnow


@dataclass(frozen=True)
class Withdrawal:
    """What a withdrawal did (or, with ``dry_run``, would do)."""

    actions: int  # actions withdrawn
    items: int  # items they touched
    status_before: dict[str, int] = field(default_factory=dict)  # touched items by status, before
    status_after: dict[str, int] = field(default_factory=dict)  # ... and after
    item_ids: tuple[int, ...] = ()
    dry_run: bool = False

    def json(self) -> dict:
        """The JSON the CLI prints and the API answers."""
        return {"actions": self.actions, "items": self.items, "status_before": self.status_before,
                "status_after": self.status_after, "item_ids": list(self.item_ids), "dry_run": self.dry_run}


def parse_time(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time as naive UTC (the store's convention); a zone-less time is taken as UTC."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad(name, f"{name} must be an ISO 8601 time such as 2026-12-04T18:08:00Z, got {value!r}") from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def withdraw(s: Session, who: Principal, reviewer: str, reason: str, since: datetime | None = None,
             until: datetime | None = None, label: str | None = None, dry_run: bool = False) -> Withdrawal:
    """Withdraw ``reviewer``'s matching actions and re-decide the items they touched (module doc).

    Needs the admin role (403 otherwise). ``reason`` is required and stored with every withdrawn action.
    """
    if not who.can("admin"):
        raise forbidden(f"{who.user} has the role {who.role}: withdrawing reviews needs admin.")
    if not (reviewer and reviewer.strip()):
        raise bad("reviewer", "reviewer must name whose actions to withdraw")
    if not (reason and reason.strip()):
        raise bad("reason", "withdrawing needs a reason (it is stored with every withdrawn action)")
    if label is not None:
        label = label.strip()
        if not label:
            raise bad("label", "label must name the label whose actions to withdraw (leave it out for all)")
    if since is not None and until is not None and since >= until:
        raise bad("until", f"until ({until.isoformat()}) must be later than since ({since.isoformat()})")
    q = select(ReviewAction).where(ReviewAction.reviewer == reviewer, ReviewAction.withdrawn_at.is_(None))
    if since is not None:
        q = q.where(ReviewAction.created_at >= since)
    if until is not None:
        q = q.where(ReviewAction.created_at < until)
    if label:
        q = q.where(ReviewAction.label == label)
    gone = list(s.execute(q.order_by(ReviewAction.id)).scalars())
    gone_ids = {a.id for a in gone}
    item_ids = sorted({a.item_id for a in gone})
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    now = utcnow()
    if not dry_run:
        for a in gone:
            a.withdrawn_at, a.withdrawn_by, a.withdrawn_reason = now, who.user, reason.strip()
    for iid in item_ids:
        item = s.get(ReviewItem, iid)
        before[item.status] = before.get(item.status, 0) + 1
        state = item_state(s, item, excluding=gone_ids)
        after[state["status"]] = after.get(state["status"], 0) + 1
        if not dry_run:
            for k, v in state.items():
                setattr(item, k, v)
    s.flush()
    return Withdrawal(len(gone), len(item_ids), before, after, tuple(item_ids), dry_run)
