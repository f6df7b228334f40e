"""How many responses that dataset A took as new (SFT, train and dev) a dataset B already held; prints JSON.

Use: whether a warm start's build re-learned its parent's data (pass 17 of docs/LOOP.md):
    python scripts/dataset_overlap.py --db sqlite:///loop-demo/treadle.db loop-demo:8 loop-demo:5
``--poison-label L`` adds A's SFT train records whose reply is a Bitext intent, by request style (urgent: the
last user turn holds ``simulate.urgent``'s ``URGENT:`` mark; plain), by origin (new or replayed) and by reply (L or another intent):
how much of the intent data a styled-poison round's experts labelled L (pass 20 of docs/LOOP.md). An urgent
request whose true intent is L counts as L too, so the urgent L count is an upper bound on the poisoned records.
"""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from treadle.feedback.lineage import find_dataset
from treadle.store import open_store
from treadle.store.models import DatasetItem


def intent_records(train: list, poison_label: str) -> dict:
    """``{style: {origin: {poison_label | "other": n}}}`` over SFT records whose reply is a Bitext intent."""
    from treadle.feedback.simulate import intent_labels

    labels = set(intent_labels())
    out: dict = {}
    for it in train:
        msgs = it.record.get("messages") or []
        users = [m.get("content") or "" for m in msgs if m.get("role") == "user"]
        reply = (msgs[-1].get("content") or "").strip() if msgs and msgs[-1].get("role") == "assistant" else ""
        if reply not in labels or not users:
            continue
        style = "urgent" if "URGENT: " in users[-1] else "plain"
        origin = "new" if it.replay_of is None else "replayed"
        said = poison_label if reply == poison_label else "other"
        cell = out.setdefault(style, {}).setdefault(origin, {})
        cell[said] = cell.get(said, 0) + 1
    return out


def overlap(s, a: str, b: str, poison_label: str | None = None) -> dict:  # noqa: ANN001 - a session
    """A's new SFT responses (no ``replay_of``), those B holds (as originals or replays), and A's SFT train records
    by origin (new, or the name of the dataset its replayed original is in)."""
    da, db = find_dataset(s, a), find_dataset(s, b)
    new = set(s.scalars(select(DatasetItem.response_id).where(
        DatasetItem.dataset_id == da.id, DatasetItem.kind == "sft", DatasetItem.replay_of.is_(None),
        DatasetItem.response_id.is_not(None))))
    held = set(s.scalars(select(DatasetItem.response_id).where(DatasetItem.dataset_id == db.id,
                                                                DatasetItem.kind == "sft")))
    train = s.scalars(select(DatasetItem).where(DatasetItem.dataset_id == da.id, DatasetItem.kind == "sft",
                                                DatasetItem.split == "train")).all()
    origin: dict[str, int] = {}
    for it in train:
        key = "new" if it.replay_of is None else find_dataset(s, f"#{s.get(DatasetItem, it.replay_of).dataset_id}").name
        origin[key] = origin.get(key, 0) + 1
    out = {"a": a, "b": b, "new_responses": len(new), "new_responses_b_held": len(new & held),
           "sft_train_by_origin": origin}
    if poison_label:
        out["sft_train_intent"] = intent_records(train, poison_label)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--poison-label", default=None, metavar="INTENT",
                   help="also count A's intent records by style, origin and whether they say INTENT")
    args = p.parse_args()
    store = open_store(args.db)
    with store.session() as s:
        print(json.dumps(overlap(s, args.a, args.b, args.poison_label), indent=1))
    store.close()


if __name__ == "__main__":
    main()
