"""How many responses that dataset A took as new (SFT, train and dev) a dataset B already held; prints JSON.

Use: whether a warm start's build re-learned its parent's data (pass 17 of docs/LOOP.md):
    python scripts/dataset_overlap.py --db sqlite:///loop-demo/treadle.db loop-demo:8 loop-demo:5
"""

from __future__ import annotations

import argparse
import json

from sqlalchemy import select

from treadle.feedback.lineage import find_dataset
from treadle.store import open_store
from treadle.store.models import DatasetItem


def overlap(s, a: str, b: str) -> dict:  # noqa: ANN001 - a session
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
    return {"a": a, "b": b, "new_responses": len(new), "new_responses_b_held": len(new & held),
            "sft_train_by_origin": origin}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args()
    store = open_store(args.db)
    with store.session() as s:
        print(json.dumps(overlap(s, args.a, args.b), indent=1))
    store.close()


if __name__ == "__main__":
    main()
