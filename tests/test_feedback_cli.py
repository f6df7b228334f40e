"""The feedback CLIs on one SQLite store: keys, review list/show/approve/correct/reject/label/scan,
dataset build/list/show/lineage, data delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feedback_support import record, write
from treadle.cli import main
from treadle.feedback.review import enqueue
from treadle.store import open_store


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_review_dataset_and_delete_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(db)
    write(store, record("c1", request="Refund please", output="Go to Orders."),
          record("c2", request="Cancel please", output="No."), record("c3", request="Joke?", output="Ha."),
          record("c4", user="zed", request="x", output=""))
    with store.session() as s:
        for rid in ("c1", "c2", "c3"):
            enqueue(s, rid, "manual")
    code, key = run(capsys, "keys", "add", "--user", "rita", "--role", "reviewer", "--db", db)
    assert code == 0 and key.strip().startswith("tdl-")
    assert json.loads(run(capsys, "keys", "list", "--db", db)[1])["role"] == "reviewer"
    code, out = run(capsys, "review", "list", "--db", db, "--json")
    ids = [i["id"] for i in json.loads(out)["items"]]
    assert code == 0 and len(ids) == 3
    assert run(capsys, "review", "approve", str(ids[0]), "--as", "rita", "--label", "refund", "--db", db)[1].strip() \
        == f"item {ids[0]}: approved (label refund)"
    assert run(capsys, "review", "correct", str(ids[1]), "--reply", "Orders, then Cancel.", "--as", "rita", "--db", db)[0] == 0
    assert main(["review", "reject", str(ids[2]), "--reason", "bad", "--as", "rita", "--db", db]) == 2  # not a reason
    assert run(capsys, "review", "reject", str(ids[2]), "--reason", "off_topic", "--as", "rita", "--db", db)[0] == 0
    shown = json.loads(run(capsys, "review", "show", str(ids[1]), "--db", db)[1])
    assert shown["status"] == "corrected" and shown["actions"][0]["reviewer"] == "rita"
    code, out = run(capsys, "review", "scan", "--sample", "10", "--db", db)
    assert code == 0 and json.loads(out)["flagged"] == {"coherence": 1}  # c4's empty reply
    code, out = run(capsys, "dataset", "build", "--out", str(tmp_path / "ds"), "--db", db, "--no-embed")
    built = json.loads(out)
    assert code == 0 and built["counts"]["sft"]["train"] + built["counts"]["sft"]["dev"] == 2
    assert (tmp_path / "ds" / "preference.jsonl").read_text().count("\n") + \
        (tmp_path / "ds" / "preference_dev.jsonl").read_text().count("\n") == 1
    assert json.loads(run(capsys, "dataset", "list", "--db", db)[1])["version"] == 1
    assert len(json.loads(run(capsys, "dataset", "show", "feedback:1", "--db", db)[1])["sources"]) == 7
    assert {d["kind"] for d in json.loads(run(capsys, "dataset", "lineage", "--response", "c2", "--db", db)[1])} == \
        {"sft", "preference", "kto"}
    out = json.loads(run(capsys, "data", "delete", "--user", "alice", "--db", db)[1])
    assert out["interactions"] == 3 and out["datasets_marked"] == ["feedback:1"]
    store.close()


def test_feedback_flags_come_from_the_config_dataclass() -> None:
    import argparse
    import dataclasses

    from treadle.config_args import field_default
    from treadle.feedback.config import FeedbackConfig, add_feedback_args, feedback_config_from_args

    p = argparse.ArgumentParser()
    add_feedback_args(p)
    args = p.parse_args([])
    assert all(getattr(args, f.name) == field_default(f) for f in dataclasses.fields(FeedbackConfig))
    assert feedback_config_from_args(args) == FeedbackConfig()
    off = feedback_config_from_args(p.parse_args(["--no-log-interactions", "--db", "sqlite:///x.db",
                                                  "--reviews-per-item", "2"]))
    assert (off.log_interactions, off.db, off.reviews_per_item) == (False, "sqlite:///x.db", 2)
    with pytest.raises(ValueError, match="review-sample"):
        feedback_config_from_args(p.parse_args(["--review-sample", "2"]))
