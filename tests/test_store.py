"""The store on SQLite and PostgreSQL: migrations, the interaction log writer, feedback upserts, the review
queue rules and decisions, deletion cascades. Every test runs on both databases (``db_url``)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from feedback_support import record, write
from treadle.feedback.errors import FeedbackError
from treadle.feedback.log import InteractionLog
from treadle.feedback.review import act, enqueue, progress, queue
from treadle.feedback.roles import ANONYMOUS, KeyRing, Principal, hash_key
from treadle.feedback.submit import submit_feedback
from treadle.store import open_store
from treadle.store.db import current_revision
from treadle.store.models import ApiKey, Feedback, Interaction, ReviewAction, ReviewItem

HEAD_REVISION = "0003"  # the newest migration (0003: withdrawn review actions)

ALICE, BOB = Principal("alice", "user"), Principal("bob", "user")
R1, R2, ADMIN = Principal("rev1", "reviewer"), Principal("rev2", "reviewer"), Principal("boss", "admin")


@pytest.fixture
def store(db_url: str):  # noqa: ANN201
    s = open_store(db_url)
    yield s
    s.close()


def test_migrations_build_the_models_schema(store, db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from treadle.store.models import Base

    assert current_revision(store) == HEAD_REVISION
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    again = open_store(db_url)  # idempotent
    assert current_revision(again) == HEAD_REVISION
    again.close()


def test_log_writes_in_background_and_counts_drops(store) -> None:
    log = InteractionLog(store, max_queue=4, batch_size=2)
    for i in range(8):
        assert log.submit(record(f"chatcmpl-{i}"))
        if i == 3:
            assert log.flush()
    assert log.flush()
    assert log.written == 8 and log.dropped == 0
    gate = threading.Event()
    real = log._write
    log._write = lambda batch: (gate.wait(), real(batch))  # a stalled store
    accepted = [log.submit(record(f"slow-{i}")) for i in range(10)]
    assert accepted.count(False) == log.dropped and log.dropped >= 10 - 4 - 2
    gate.set()
    assert log.flush()
    log.close()
    with store.session() as s:
        n = s.execute(select(func.count()).select_from(Interaction)).scalar()
    assert n == 8 + accepted.count(True)


def test_log_counts_failed_batches_and_goes_on(store) -> None:
    log = InteractionLog(store, retry_s=0.0)
    write(store, record("dup-0"))

    def broken(batch):  # noqa: ANN001, ANN202
        raise RuntimeError("store down")

    real, log._write = log._write, broken
    log.submit(record("lost-1"))
    assert log.flush() and log.failed == 1
    log._write = real
    log.submit(record("kept-2"))
    log.submit(record("dup-0"))  # a repeated id does not lose the batch's other rows
    assert log.flush()
    log.close()
    with store.session() as s:
        assert s.get(Interaction, "kept-2") is not None and s.get(Interaction, "lost-1") is None


def test_feedback_upsert_roles_and_errors(store) -> None:
    write(store, record("r1", user="alice"), record("r2", user="bob"))
    out = submit_feedback(store, ALICE, {"response_id": "r1", "thumbs": "up", "rating": 5, "tags": ["fast"]})
    assert out["thumbs"] == "up" and out["user"] == "alice"
    out2 = submit_feedback(store, ALICE, {"response_id": "r1", "thumbs": "down", "comment": "wrong"})
    assert out2["id"] == out["id"] and out2["rating"] is None  # replaced whole
    with store.session() as s:
        rows = s.execute(select(Feedback)).scalars().all()
        assert len(rows) == 1 and rows[0].thumbs == "down"
        assert [i.reasons for i in s.execute(select(ReviewItem)).scalars()] == [["thumbs_down"]]
    cases = [({"response_id": "nope", "thumbs": "up"}, 404, "response_id"),
             ({"response_id": "r1", "thumbs": "sideways"}, 400, "thumbs"),
             ({"response_id": "r1", "rating": 6}, 400, "rating"), ({"response_id": "r1", "rating": True}, 400, "rating"),
             ({"response_id": "r1", "tags": "x"}, 400, "tags"), ({"thumbs": "up"}, 400, "response_id"),
             ({"response_id": "r1", "stars": 3}, 400, "stars"), ({"response_id": "r2", "thumbs": "up"}, 403, None)]
    for payload, status, param in cases:
        with pytest.raises(FeedbackError) as e:
            submit_feedback(store, ALICE, payload)
        assert (e.value.status, e.value.param) == (status, param), payload
    submit_feedback(store, R1, {"response_id": "r2", "correction": "Better reply."})  # reviewers rate anything
    submit_feedback(store, ANONYMOUS, {"response_id": "r2", "thumbs": "up", "user": "carol"})
    with store.session() as s:
        assert {f.user for f in s.execute(select(Feedback).where(Feedback.response_id == "r2")).scalars()} == {"rev1", "carol"}
        assert s.execute(select(ReviewItem.reasons).where(ReviewItem.response_id == "r2")).scalar() == ["correction"]


def test_review_decisions_agreement_and_adjudication(store) -> None:
    write(store, *(record(f"q{i}", output=f"reply {i}") for i in range(4)))
    with store.session() as s:
        ids = [enqueue(s, f"q{i}", "manual", required_reviews=1 if i < 2 else 2).id for i in range(4)]
    with store.session() as s:
        assert [i.id for i in queue(s, reviewer="rev1")] == ids
        act(s, ids[0], R1, "approve", label="cancel_order")
        act(s, ids[1], R1, "correct", reply="fixed reply")
        with pytest.raises(FeedbackError) as e:
            act(s, ids[1], R2, "approve")
        assert e.value.status == 409
        with pytest.raises(FeedbackError) as e:
            act(s, ids[2], R1, "reject", reason="meh")
        assert e.value.param == "reason"
        with pytest.raises(FeedbackError) as e:
            act(s, ids[2], ALICE, "approve")
        assert e.value.status == 403
        act(s, ids[2], R1, "reject", reason="unsafe")
        assert s.get(ReviewItem, ids[2]).status == "pending"  # needs 2
        act(s, ids[2], R2, "reject", reason="wrong")
        act(s, ids[3], R1, "approve")
        act(s, ids[3], R2, "reject", reason="off_topic")
        assert s.get(ReviewItem, ids[3]).status == "adjudication"
        act(s, ids[3], R1, "approve")  # already reviewed it: not final
        assert s.get(ReviewItem, ids[3]).status == "adjudication"
        act(s, ids[3], ADMIN, "correct", reply="adjudicated")
    with store.session() as s:
        got = {i: (s.get(ReviewItem, i).status, s.get(ReviewItem, i).final_reply) for i in ids}
        assert got == {ids[0]: ("approved", "reply 0"), ids[1]: ("corrected", "fixed reply"),
                       ids[2]: ("rejected", None), ids[3]: ("corrected", "adjudicated")}
        assert s.get(ReviewItem, ids[0]).final_label == "cancel_order"
        assert s.execute(select(func.count()).select_from(ReviewAction)).scalar() == 8
        assert progress(s)["corrected"] == 2 and queue(s, reviewer="rev1") == []


def test_keys_from_the_database_and_delete_cascades(store) -> None:
    ring = KeyRing(store, refresh_s=0.0)
    assert ring.open and ring.lookup("") == ANONYMOUS
    with store.session() as s:
        s.add(ApiKey(key_hash=hash_key("k-rev"), user="rev1", role="reviewer"))
    assert ring.lookup("k-rev") == R1 and ring.lookup("wrong") is None
    assert ring.authorize("k-rev", "reviewer") == R1 and ring.authorize("k-rev", "admin") is None
    write(store, record("c1"))
    submit_feedback(store, ALICE, {"response_id": "c1", "thumbs": "down"})
    with store.session() as s:
        act(s, s.execute(select(ReviewItem.id)).scalar(), R1, "approve")
    with store.session() as s:
        s.delete(s.get(Interaction, "c1"))
    with store.session() as s:
        for table in (Feedback, ReviewItem, ReviewAction):
            assert s.execute(select(func.count()).select_from(table)).scalar() == 0
