"""Withdrawing a reviewer's actions (``treadle.feedback.withdraw``, ``treadle review withdraw``): which actions,
how each touched item is decided again, what a later dataset build takes, and the errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from treadle.cli import main
from treadle.feedback import review
from treadle.feedback.curate import gather
from treadle.feedback.errors import FeedbackError
from treadle.feedback.roles import Principal
from treadle.feedback.withdraw import parse_time, withdraw
from treadle.store import open_store
from treadle.store.models import Interaction, ReviewAction, ReviewItem

ADMIN = Principal("root", "admin")
RITA, SAM, TOM = (Principal(n, "reviewer") for n in ("rita", "sam", "tom"))
T0 = datetime(2026, 12, 4, 18, 0, 0)


def _items(s, n: int, required: int = 1) -> list[int]:  # noqa: ANN001
    for i in range(n):
        s.add(Interaction(id=f"r{i}", user="u", endpoint="chat", params={}, output=f"served {i}", source="serve",
                          request={"messages": [{"role": "user", "content": f"question {i}"}]}, model_name="m"))
    s.flush()
    return [review.enqueue(s, f"r{i}", "thumbs_down", required).id for i in range(n)]


def _at(s, item_id: int, reviewer: str, when: datetime) -> None:  # noqa: ANN001
    s.execute(update(ReviewAction).where(ReviewAction.item_id == item_id, ReviewAction.reviewer == reviewer)
              .values(created_at=when))


def test_withdraw_a_window_reopens_its_items_and_the_next_build_drops_them(db_url: str) -> None:
    store = open_store(db_url)
    with store.session() as s:
        ids = _items(s, 3)
        for k, iid in enumerate(ids):  # rita corrects all three, one hour apart, labelling them
            review.act(s, iid, RITA, "correct", reply=f"fixed {k}", label="contact_human_agent")
            _at(s, iid, "rita", T0 + timedelta(hours=k))
    with store.session() as s:
        dry = withdraw(s, ADMIN, "rita", "bad labels", since=T0 + timedelta(minutes=30), dry_run=True)
        assert (dry.actions, dry.items, dry.status_after) == (2, 2, {"pending": 2}) and dry.dry_run
    with store.session() as s:  # the dry run changed nothing
        assert [s.get(ReviewItem, i).status for i in ids] == ["corrected"] * 3
        res = withdraw(s, ADMIN, "rita", "bad labels", since=T0 + timedelta(minutes=30))
    assert (res.actions, res.items, res.item_ids) == (2, 2, tuple(ids[1:]))
    assert res.status_before == {"corrected": 2} and res.status_after == {"pending": 2}
    with store.session() as s:
        first, *rest = (s.get(ReviewItem, i) for i in ids)
        assert (first.status, first.final_reply, first.final_label) == ("corrected", "fixed 0", "contact_human_agent")
        for it in rest:
            assert (it.status, it.final_reply, it.final_label, it.decided_at) == ("pending", None, None, None)
        shown = review.item_json(s, rest[0])["actions"][0]
        assert shown["withdrawn"]["by"] == "root" and shown["withdrawn"]["reason"] == "bad labels"
        # back on the queue for others, not for the withdrawn reviewer
        assert [i.id for i in review.queue(s, reviewer="sam")] == ids[1:]
        assert review.queue(s, reviewer="rita") == []
        # a build takes the kept correction only
        sft = [c for c in gather(s, exclude=set()).candidates if c.kind == "sft"]
        assert [c.response_id for c in sft] == ["r0"]
        # withdrawing again finds nothing left to withdraw
        assert withdraw(s, ADMIN, "rita", "again", since=T0 + timedelta(minutes=30)).actions == 0
        # another reviewer decides a reopened item as usual
        assert review.act(s, ids[1], SAM, "approve").status == "approved"
    store.close()


def test_items_are_decided_again_from_the_remaining_reviews(db_url: str) -> None:
    store = open_store(db_url)
    with store.session() as s:
        agree, split, relabel = _items(s, 3, required=2)
        review.act(s, agree, RITA, "approve")
        assert review.act(s, agree, SAM, "approve").status == "approved"
        review.act(s, split, RITA, "reject", reason="wrong")
        assert review.act(s, split, SAM, "approve").status == "adjudication"
        assert review.act(s, split, ADMIN, "correct", reply="the admin's reply").status == "corrected"
        review.act(s, relabel, RITA, "approve", label="refund")
        assert review.act(s, relabel, TOM, "approve").status == "approved"
        assert review.act(s, relabel, SAM, "label", label="cancel_order").final_label == "cancel_order"
    with store.session() as s:
        res = withdraw(s, ADMIN, "sam", "careless")
    assert res.actions == 3 and res.status_after == {"pending": 1, "corrected": 1, "approved": 1}
    with store.session() as s:
        a, b, c = (s.get(ReviewItem, i) for i in (agree, split, relabel))
        assert a.status == "pending"  # one review of the two it needs is left
        assert (b.status, b.final_reply) == ("corrected", "the admin's reply")  # the admin's final decision stands
        assert (c.status, c.final_label, c.final_reply) == ("approved", "refund", "served 2")  # rita and tom agree
        # the withdrawn reviewer may not act on the item again; another reviewer may
        with pytest.raises(FeedbackError) as e:
            review.act(s, agree, SAM, "approve")
        assert (e.value.status, e.value.code) == (409, "withdrawn")
        # label-only withdrawal: rita's label goes, her approval with it; tom's alone is too few
        res = withdraw(s, ADMIN, "rita", "labels", label="refund")
        assert (res.actions, res.item_ids) == (1, (relabel,))
        assert (s.get(ReviewItem, relabel).status, s.get(ReviewItem, relabel).final_label) == ("pending", None)
        # withdrawing the final decision itself: rita's reject is all that is left of two needed; tom agrees with it
        assert withdraw(s, ADMIN, "root", "wrong call").status_after == {"pending": 1}
        assert review.act(s, split, TOM, "reject", reason="wrong").status == "rejected"
        assert s.get(ReviewItem, split).reject_reason == "wrong"
    store.close()


def test_withdraw_errors_name_the_field(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    with store.session() as s:
        _items(s, 1)
        with pytest.raises(FeedbackError) as e:
            withdraw(s, RITA, "sam", "x")
        assert e.value.status == 403
        for kwargs, param in [({"reviewer": " "}, "reviewer"), ({"reason": ""}, "reason"),
                              ({"since": T0, "until": T0}, "until"), ({"label": " "}, "label")]:
            with pytest.raises(FeedbackError) as e:
                withdraw(s, ADMIN, **{"reviewer": "sam", "reason": "x", **kwargs})
            assert (e.value.status, e.value.param) == (400, param)
    with pytest.raises(FeedbackError) as e:
        parse_time("yesterday", "since")
    assert e.value.param == "since" and "ISO 8601" in e.value.message
    with pytest.raises(FeedbackError):  # an empty time is a mistake, not "no bound"
        parse_time("", "until")
    assert parse_time("2026-12-04T19:00:00+01:00", "since") == T0  # a zone is converted to UTC
    assert parse_time("2026-12-04T18:00:00Z", "until") == T0 == parse_time("2026-12-04T18:00:00", "until")
    store.close()


def test_review_withdraw_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(db)
    with store.session() as s:
        ids = _items(s, 2)
        for iid in ids:
            review.act(s, iid, RITA, "correct", reply="fixed")
        _at(s, ids[0], "rita", T0)
        _at(s, ids[1], "rita", T0 + timedelta(hours=1))
    store.close()
    args = ["review", "withdraw", "--reviewer", "rita", "--reason", "poisoned labels", "--since", "2026-12-04T18:30:00Z",
            "--as", "ops", "--db", db]
    assert main([*args, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["actions"], out["item_ids"], out["status_after"]) == (1, [ids[1]], {"pending": 1})
    assert main(["review", "withdraw", "--reviewer", "rita", "--reason", "x", "--since", "soon", "--db", db]) == 2
    assert "since must be an ISO 8601 time" in capsys.readouterr().err
    store = open_store(db)
    with store.session() as s:
        acts = list(s.execute(select(ReviewAction).order_by(ReviewAction.id)).scalars())
        assert [(a.withdrawn_by, a.withdrawn_reason) for a in acts] == [(None, None), ("ops", "poisoned labels")]
    store.close()
