"""``POST /v1/feedback``: validate, check the caller may rate the response, upsert, feed the review queue.

One feedback per (response id, user): a later one replaces the earlier one whole. A thumbs-down or a
correction puts the response on the review queue, in the same transaction. The caller gets its answer
only after the commit (crash safety: a 2xx means the row is on disk).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from treadle.feedback.errors import bad, forbidden, not_found
from treadle.feedback.review import enqueue
from treadle.feedback.roles import Principal
from treadle.store import Store
from treadle.store.models import Feedback, Interaction, utcnow

FIELDS = ("response_id", "thumbs", "rating", "correction", "comment", "tags", "user")


def validate(payload: object) -> dict:
    """The feedback fields of ``payload``; raises FeedbackError(400) naming the first bad field."""
    if not isinstance(payload, dict):
        raise bad(None, "The request body must be a JSON object")
    for k in payload:
        if k not in FIELDS:
            raise bad(k, f"Unknown field {k!r}; feedback takes {', '.join(FIELDS)}")
    rid = payload.get("response_id")
    if not isinstance(rid, str) or not rid:
        raise bad("response_id", "'response_id' is required: the `id` of a response this server returned")
    thumbs = payload.get("thumbs")
    if thumbs is not None and thumbs not in ("up", "down"):
        raise bad("thumbs", f"thumbs must be 'up' or 'down', got {thumbs!r}")
    rating = payload.get("rating")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5):
        raise bad("rating", f"rating must be an integer from 1 to 5, got {rating!r}")
    for name in ("correction", "comment", "user"):
        v = payload.get(name)
        if v is not None and not isinstance(v, str):
            raise bad(name, f"{name} must be a string, got {type(v).__name__}")
    tags = payload.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise bad("tags", "tags must be a list of strings")
    if thumbs is None and rating is None and not payload.get("correction") and not payload.get("comment") \
            and not tags:
        raise bad(None, "Feedback needs at least one of thumbs, rating, correction, comment, tags")
    return {k: payload.get(k) for k in FIELDS}


def submit_feedback(store: Store, principal: Principal, payload: object, reviews_per_item: int = 1,
                    wait_for_log: Callable[[], object] | None = None) -> dict:
    """Store the feedback (replacing this user's earlier one) and return it as JSON; commit before returning.

    ``wait_for_log`` (the interaction log's flush) is called once when the response id is not found yet:
    the response may still be on the log's queue.
    """
    fb = validate(payload)
    if fb["user"] is not None and not principal.can("admin"):
        raise forbidden("Only an admin key may give feedback on behalf of another user ('user' field).")
    user = fb["user"] or principal.user
    for attempt in range(2):
        try:
            return _upsert(store, principal, fb, user, reviews_per_item, wait_for_log)
        except IntegrityError:  # a concurrent first feedback of the same (response, user): update it
            if attempt:
                raise
    raise AssertionError("unreachable")


def _upsert(store: Store, principal: Principal, fb: dict, user: str, reviews_per_item: int,
            wait_for_log: Callable[[], object] | None) -> dict:
    rid = fb["response_id"]
    with store.session() as s:
        inter = s.get(Interaction, rid)
        if inter is None and wait_for_log is not None:
            wait_for_log()
            inter = s.get(Interaction, rid)
        if inter is None:
            raise not_found("response", rid, "response_id")
        if not principal.can("reviewer") and principal.user not in (inter.user, inter.key_user):
            raise forbidden(f"Response {rid} was not made by {principal.user}: a user key may only give "
                            "feedback on its own responses.")
        row = s.execute(select(Feedback).where(Feedback.response_id == rid, Feedback.user == user)).scalar_one_or_none()
        now = utcnow()
        if row is None:
            row = Feedback(response_id=rid, user=user, created_at=now)
            s.add(row)
        for k in ("thumbs", "rating", "correction", "comment", "tags"):
            setattr(row, k, fb[k])
        row.updated_at = now
        s.flush()
        if fb["thumbs"] == "down":
            enqueue(s, rid, "thumbs_down", reviews_per_item)
        if fb["correction"]:
            enqueue(s, rid, "correction", reviews_per_item)
        out = feedback_json(row)
    return out


def feedback_json(row: Feedback) -> dict:
    return {"object": "feedback", "id": row.id, "response_id": row.response_id, "user": row.user,
            "thumbs": row.thumbs, "rating": row.rating, "correction": row.correction, "comment": row.comment,
            "tags": row.tags, "created_at": row.created_at.isoformat() + "Z",
            "updated_at": row.updated_at.isoformat() + "Z"}
