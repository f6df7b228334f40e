"""The tables of the store (SQLAlchemy 2 declarative). Every schema change ships as an Alembic migration
under ``store/migrations/versions``; ``tests/test_store.py`` checks the migrated schema equals these models.

Invariants: one feedback row per (response id, user); one review item per response; a dataset item keeps
its source ids as plain columns (no foreign key) so a built dataset's lineage survives deletion of the
source rows, and deletion marks the dataset instead (``datasets.tainted_reason``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC (SQLite keeps no time zone; every timestamp in the store is UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Interaction(Base):
    """One served response (the OpenAI ``id``), recorded whole, streamed or not."""

    __tablename__ = "interactions"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user: Mapped[str] = mapped_column(String(256), index=True)  # OpenAI `user`, else the key's owner, else anonymous
    key_user: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)  # the API key's owner
    endpoint: Mapped[str] = mapped_column(String(16))  # chat | completion
    request: Mapped[dict] = mapped_column(JSON)  # {"messages": [...]} or {"prompt": ...}
    params: Mapped[dict] = mapped_column(JSON)  # sampling settings as sent
    output: Mapped[str] = mapped_column(Text)  # choice 0's text
    choices: Mapped[list | None] = mapped_column(JSON, nullable=True)  # every choice when n > 1
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    replica: Mapped[str | None] = mapped_column(String(256), nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # serve | gateway
    stream: Mapped[bool] = mapped_column(default=False)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cached_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ttft_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    e2e_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("response_id", "user", name="uq_feedback_response_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(ForeignKey("interactions.id", ondelete="CASCADE"), index=True)
    user: Mapped[str] = mapped_column(String(256), index=True)
    thumbs: Mapped[str | None] = mapped_column(String(8), nullable=True)  # up | down
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1..5
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class ApiKey(Base):
    """A key (stored as its SHA-256) with its owner and role: user, reviewer or admin."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user: Mapped[str] = mapped_column(String(256), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ReviewItem(Base):
    """A response queued for expert review. ``status``: pending, adjudication, approved, corrected, rejected."""

    __tablename__ = "review_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(ForeignKey("interactions.id", ondelete="CASCADE"), unique=True)
    reasons: Mapped[list] = mapped_column(JSON)  # thumbs_down, correction, safety, coherence, random, manual
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    required_reviews: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    final_reply: Mapped[str | None] = mapped_column(Text, nullable=True)  # the accepted reply
    final_label: Mapped[str | None] = mapped_column(String(256), nullable=True)
    reject_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ReviewAction(Base):
    """One reviewer's action on an item: approve, correct, reject, label (and adjudicate), with who and when; an
    admin may withdraw it later (who, when, why), after which it no longer counts."""

    __tablename__ = "review_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str] = mapped_column(String(256), index=True)
    action: Mapped[str] = mapped_column(String(16))
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(256), nullable=True)
    label: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # a decision that decided the item on its own (an admin's, or an adjudicator's): withdrawals keep it standing
    final: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # set when an admin withdraws the action (treadle.feedback.withdraw): it stays on record but no longer counts
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    withdrawn_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_dataset_name_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    out_dir: Mapped[str | None] = mapped_column(Text, nullable=True)
    manifest: Mapped[dict] = mapped_column(JSON)  # counts, options, PII counts, split, replay
    tainted_reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # set when a source was deleted


class DatasetItem(Base):
    """One record of a dataset file and where it came from (lineage; plain ids, no foreign keys)."""

    __tablename__ = "dataset_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # sft | preference | kto
    split: Mapped[str] = mapped_column(String(8))  # train | dev
    record_hash: Mapped[str] = mapped_column(String(64))
    response_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    user: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    feedback_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    review_item_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    replay_of: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a dataset_items.id of an earlier set
    record: Mapped[dict] = mapped_column(JSON)


# The registry and loop tables (migration 0002) share this Base; importing them here keeps one metadata.
from treadle.registry import models as _registry_models  # noqa: E402,F401
