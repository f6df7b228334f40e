"""Lineage both ways, and retention.

- :func:`dataset_sources`: a dataset version -> each record's response, review item (with every review
  action) and feedback rows;
- :func:`datasets_of_response` / :func:`datasets_of_feedback`: a logged response or a feedback row ->
  every dataset (version, kind, split, file line order) it reached, replays included;
- :func:`training_trace`: the train records of a set of dataset versions (what a model version was trained
  on) -> how many trace back to a logged response with an expert decision or feedback, following replays
  and fixed-mix rows to their originals;
- :func:`delete_user`: removes a user's interactions (their feedback, review items and actions cascade),
  the user's own feedback on other responses, and redacts the user's records in built datasets, which are
  marked (``tainted_reason``) so that a loop does not promote from them unknowingly.
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from treadle.feedback.errors import not_found
from treadle.store.models import Dataset, DatasetItem, Feedback, Interaction, ReviewAction, ReviewItem, utcnow


def find_dataset(s: Session, spec: str) -> Dataset:
    """``NAME`` (newest version), ``NAME:VERSION`` or ``#ID``."""
    if spec.startswith("#"):
        ds = s.get(Dataset, int(spec[1:]))
    else:
        name, _, version = spec.partition(":")
        q = select(Dataset).where(Dataset.name == name)
        q = q.where(Dataset.version == int(version)) if version else q.order_by(Dataset.version.desc())
        ds = s.execute(q.limit(1)).scalar_one_or_none()
    if ds is None:
        raise not_found("dataset", spec, "dataset")
    return ds


def dataset_sources(s: Session, ds: Dataset) -> list[dict]:
    out = []
    for it in s.execute(select(DatasetItem).where(DatasetItem.dataset_id == ds.id).order_by(DatasetItem.id)).scalars():
        fbs = s.execute(select(Feedback).where(Feedback.response_id == it.response_id)).scalars() if it.response_id else []
        acts = []
        if it.review_item_id is not None:
            acts = [{"reviewer": a.reviewer, "action": a.action, "at": a.created_at.isoformat() + "Z"}
                    for a in s.execute(select(ReviewAction).where(ReviewAction.item_id == it.review_item_id)
                                       .order_by(ReviewAction.id)).scalars()]
        out.append({"item_id": it.id, "kind": it.kind, "split": it.split, "response_id": it.response_id,
                    "review_item_id": it.review_item_id, "review_actions": acts, "replay_of": it.replay_of,
                    "feedback": [{"id": f.id, "user": f.user, "thumbs": f.thumbs, "correction": f.correction}
                                 for f in fbs]})
    return out


def datasets_of_response(s: Session, response_id: str) -> list[dict]:
    rows = s.execute(select(DatasetItem, Dataset).join(Dataset, Dataset.id == DatasetItem.dataset_id)
                     .where(DatasetItem.response_id == response_id).order_by(Dataset.id, DatasetItem.id)).all()
    return [{"dataset": d.name, "version": d.version, "dataset_id": d.id, "content_hash": d.content_hash,
             "kind": it.kind, "split": it.split, "item_id": it.id, "replay_of": it.replay_of} for it, d in rows]


def training_trace(s: Session, dataset_ids: list[int]) -> dict:
    """Counts of the versions' train records by origin (new, replay, fixed_mix) and by whether each traces to
    a logged response that still exists and has a decided review item or a feedback row (ids of up to 10
    untraced records). Replay rows are followed to their original item (at most 8 hops)."""
    items = s.execute(select(DatasetItem).where(DatasetItem.dataset_id.in_(dataset_ids),
                                                DatasetItem.split == "train")).scalars().all()
    ids = set(dataset_ids)
    out: dict = {"train_records": len(items), "traced": 0, "by_origin": {}, "untraced_item_ids": []}
    decided = ("approved", "corrected", "rejected")
    for it in items:
        origin, cur = "new", it
        for _ in range(8):
            if cur.replay_of is None:
                break
            nxt = s.get(DatasetItem, cur.replay_of)
            if nxt is None:
                break
            if origin == "new":
                origin = "replay" if nxt.dataset_id in ids or _same_name(s, nxt.dataset_id, it.dataset_id) \
                    else "fixed_mix"
            cur = nxt
        out["by_origin"][origin] = out["by_origin"].get(origin, 0) + 1
        ok = cur.replay_of is None and cur.response_id is not None and s.get(Interaction, cur.response_id) is not None
        if ok:
            item = s.get(ReviewItem, cur.review_item_id) if cur.review_item_id is not None else None
            fb = s.get(Feedback, cur.feedback_id) if cur.feedback_id is not None else None
            ok = (item is not None and item.status in decided) or fb is not None
        if ok:
            out["traced"] += 1
        elif len(out["untraced_item_ids"]) < 10:
            out["untraced_item_ids"].append(it.id)
    return out


def _same_name(s: Session, a: int, b: int) -> bool:
    da, db = s.get(Dataset, a), s.get(Dataset, b)
    return da is not None and db is not None and da.name == db.name


def datasets_of_feedback(s: Session, feedback_id: int) -> list[dict]:
    fb = s.get(Feedback, feedback_id)
    if fb is None:
        raise not_found("feedback", feedback_id, "feedback_id")
    return datasets_of_response(s, fb.response_id)


def delete_user(s: Session, user: str) -> dict:
    """Remove ``user``'s records (see the module doc); returns what was removed and marked."""
    inter_ids = list(s.execute(select(Interaction.id).where(or_(Interaction.user == user,
                                                                Interaction.key_user == user))).scalars())
    n_fb_own = s.execute(delete(Feedback).where(Feedback.user == user)).rowcount
    n_fb = n_items = 0
    for i in range(0, len(inter_ids), 500):
        batch = inter_ids[i:i + 500]
        n_fb += s.execute(delete(Feedback).where(Feedback.response_id.in_(batch))).rowcount
        item_ids = list(s.execute(select(ReviewItem.id).where(ReviewItem.response_id.in_(batch))).scalars())
        if item_ids:
            s.execute(delete(ReviewAction).where(ReviewAction.item_id.in_(item_ids)))
            n_items += s.execute(delete(ReviewItem).where(ReviewItem.id.in_(item_ids))).rowcount
        s.execute(delete(Interaction).where(Interaction.id.in_(batch)))
    touched = list(s.execute(select(DatasetItem).where(or_(DatasetItem.user == user,
                                                           DatasetItem.response_id.in_(inter_ids)))).scalars())
    marked: set[int] = set()
    for it in touched:
        it.record = {"redacted": True}
        it.user = None
        marked.add(it.dataset_id)
    stamp = utcnow().isoformat() + "Z"
    for ds_id in sorted(marked):
        ds = s.get(Dataset, ds_id)
        note = f"{stamp}: records of a deleted user removed from the store; rebuild before training"
        ds.tainted_reason = f"{ds.tainted_reason}\n{note}" if ds.tainted_reason else note
    return {"user": user, "interactions": len(inter_ids), "feedback": n_fb + n_fb_own, "review_items": n_items,
            "dataset_records_redacted": len(touched),
            "datasets_marked": [f"{d.name}:{d.version}" for d in (s.get(Dataset, i) for i in sorted(marked))],
            "versions_marked": _mark_versions(s, marked, stamp)}


def _mark_versions(s: Session, dataset_ids: set[int], stamp: str) -> list[str]:
    """Model versions trained on a marked dataset get an audited ``data_deleted`` event and a note.

    The event names the datasets, never the deleted user. Returns the marked versions' names.
    """
    from treadle.registry.models import ModelVersion, VersionEvent

    names: list[str] = []
    if not dataset_ids:
        return names
    for v in s.execute(select(ModelVersion).order_by(ModelVersion.id)).scalars():
        hit = sorted(dataset_ids.intersection(v.dataset_ids or []))
        if not hit:
            continue
        s.add(VersionEvent(version_id=v.id, kind="data_deleted", actor="treadle data delete",
                           detail={"datasets": hit}))
        note = f"{stamp}: trained on datasets {hit} that held a deleted user's records; retrain before promoting"
        v.notes = f"{v.notes}\n{note}" if v.notes else note
        names.append(v.name)
    return names
