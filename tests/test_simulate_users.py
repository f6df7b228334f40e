"""A simulated run: `treadle simulate-users` against a live tiny-model server (users rate, experts correct
with the Bitext references), then a dataset build checked item by item: duplicates removed, PII gone,
manifest complete, lineage both ways."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from conftest import make_tiny_model
from test_server_support import ServerProcess
from treadle.feedback import lineage
from treadle.feedback.dataset import BuildOptions, build
from treadle.feedback.simulate import SimConfig, simulate
from treadle.store import open_store
from treadle.store.models import Feedback, ReviewAction, ReviewItem


def test_simulated_users_and_experts_then_a_checked_build(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny-long", "llama", max_position_embeddings=2048)  # room for the intent list
    db = f"sqlite:///{tmp_path / 'sim.db'}"
    srv = ServerProcess(model, tmp_path / "server.log", "--db", db, "--review-sample", "0.5", "--num-kv-blocks", "400")
    try:
        rep = simulate(SimConfig(url=srv.base, requests=16, users=4, task="mix", concurrency=4, max_tokens=8,
                                 pii_share=0.5, duplicate_share=0.4, seed=3))
    finally:
        srv.stop()
    assert rep.errors == 0 and rep.sent == 16 and rep.thumbs_up + rep.thumbs_down == 16
    assert set(rep.by_task) == {"intent", "reply"}
    store = open_store(db)
    with store.session() as s:
        fbs = s.execute(select(Feedback)).scalars().all()
        assert len(fbs) == 16 and {f.user for f in fbs} <= {f"sim-user-{i}" for i in range(4)}
        items = s.execute(select(ReviewItem)).scalars().all()
        assert len(items) >= rep.thumbs_down and all(i.status in ("approved", "corrected") for i in items)
        assert rep.expert_approved + rep.expert_corrected == len(items)
        assert {a.reviewer for a in s.execute(select(ReviewAction)).scalars()} == {"anonymous"}
        assert all(i.final_label for i in items)
    m = build(store, tmp_path / "ds", BuildOptions(name="sim", dev_share=0.25))
    out = tmp_path / "ds"
    lines = {p.name: p.read_text().splitlines() for p in out.glob("*.jsonl")}
    text = "\n".join("\n".join(v) for v in lines.values())
    # duplicates removed: the duplicated requests got identical replies and corrections
    assert m["removed"]["exact_duplicates"] > 0
    for name, ls in lines.items():
        assert not [x for x, n in Counter(ls).items() if n > 1], name
    # PII gone, and counted
    assert "@example.com" not in text and "415-555" not in text and sum(m["pii_scrubbed"].values()) > 0
    # manifest complete: one entry per written line, each with its source response and review item
    manifest = json.loads((out / "manifest.json").read_text())
    assert Counter(i["file"] for i in manifest["items"]) == {k: len(v) for k, v in lines.items() if v}
    assert all(i["response_id"] in rep.response_ids for i in manifest["items"])
    assert {i["review_item_id"] for i in manifest["items"]} <= {i.id for i in items} | {None}
    assert m["counts"]["sft"]["dev"] > 0 and m["counts"]["kto"]["train"] > 0
    # lineage both ways
    with store.session() as s:
        ds = lineage.find_dataset(s, "sim")
        srcs = lineage.dataset_sources(s, ds)
        assert len(srcs) == len(manifest["items"])
        for src in srcs:
            reached = lineage.datasets_of_response(s, src["response_id"])
            assert ("sim", 1) in {(d["dataset"], d["version"]) for d in reached}
            assert src["feedback"] and (src["review_item_id"] is None or src["review_actions"])
    store.close()
