"""Registry and loop tables in the one SQL store (same ``Base`` as the feedback tables; migration 0002).

Invariants: a version's ``name`` is unique and never reused; ``aliases.weights`` is the live split of
an alias (version name -> share, shares sum to 1); every change of it closes the alias's open
``alias_history`` row (``ended_at``) and opens a new one with who, what and why, so the history
answers "which version served which share of the alias, and when"; ``version_events`` is an
append-only audit of each version (registered, evaluated, gated, canary decisions, promotions,
rollbacks); a loop run's ``state`` holds what a resumed run needs after a crash.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from treadle.store.models import Base, utcnow


class ModelVersion(Base):
    """A servable model: the base model, a LoRA adapter on it, or a full fine-tune, with its lineage."""

    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # base | adapter | full
    base_model: Mapped[str] = mapped_column(String(512))
    path: Mapped[str | None] = mapped_column(Text, nullable=True)  # adapter or model folder
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="registered", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(256), default="cli")
    dataset_ids: Mapped[list] = mapped_column(JSON, default=list)  # datasets.id of every training set
    run_record: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # treadle tune's run record
    evals: Mapped[dict] = mapped_column(JSON, default=dict)  # kind (gating|full) -> eval summary (or its path)
    gate_verdicts: Mapped[list] = mapped_column(JSON, default=list)  # loop-gate verdicts, oldest first
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)


class VersionEvent(Base):
    __tablename__ = "version_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(256))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class Alias(Base):
    __tablename__ = "aliases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    weights: Mapped[dict] = mapped_column(JSON)  # version name -> share
    production: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the promoted version
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AliasHistory(Base):
    __tablename__ = "alias_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(String(128), index=True)
    weights: Mapped[dict] = mapped_column(JSON)
    action: Mapped[str] = mapped_column(String(16))  # set | canary | promote | rollback
    actor: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LoopRun(Base):
    """One pass of ``treadle loop``: its current step and the state a resumed run continues from."""

    __tablename__ = "loop_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)  # running | done | failed
    step: Mapped[str] = mapped_column(String(32))
    candidate: Mapped[str | None] = mapped_column(String(128), nullable=True)
    state: Mapped[dict] = mapped_column(JSON, default=dict)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)  # promoted | gate_failed | rolled_back ...
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LoopStep(Base):
    __tablename__ = "loop_steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("loop_runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # started | done | failed
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
