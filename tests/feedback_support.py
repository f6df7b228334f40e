"""Helpers for the feedback tests: records without a server (no tests here)."""

from __future__ import annotations

from treadle.feedback.records import InteractionRecord


def record(rid: str, user: str = "alice", output: str = "Sure, I can help.", request: str = "How do I cancel?",
           model: str = "m", key_user: str | None = None) -> InteractionRecord:
    return InteractionRecord(
        id=rid, user=user, key_user=key_user, endpoint="chat",
        request={"messages": [{"role": "user", "content": request}]}, params={"max_tokens": 8, "temperature": 0.0},
        output=output, finish_reason="stop", model_name=model, source="serve", prompt_tokens=5, completion_tokens=4)


def write(store, *records: InteractionRecord) -> None:  # noqa: ANN001
    from sqlalchemy import insert

    from treadle.store.models import Interaction

    with store.session() as s:
        s.execute(insert(Interaction), [r.row() for r in records])
