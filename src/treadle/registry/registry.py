"""Registry operations on the store: register versions, record lineage and verdicts, move aliases.

Every alias change goes through ``set_weights``, which closes the alias's open history row and opens
a new one in the same transaction (so the history has no gap and no overlap), and appends a
``version_events`` row for every version whose share changed. ``promote`` gives one version the
whole alias and makes it the alias's production version; ``rollback`` is one audited command:
during a canary it returns the whole alias to production (the candidate is marked rolled back),
otherwise it returns the alias to the production version before the current one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from treadle.registry.models import Alias, AliasHistory, ModelVersion, VersionEvent
from treadle.store.db import Store
from treadle.store.models import utcnow

KINDS = ("base", "adapter", "full")


class RegistryError(ValueError):
    """Bad input to a registry operation; the message names the field and what is valid."""


@dataclass(frozen=True)
class AliasState:
    name: str
    weights: dict[str, float]
    production: str | None


def _version(s: Session, name: str) -> ModelVersion:
    v = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
    if v is None:
        raise RegistryError(f"version {name!r} is not registered (see `treadle registry list`)")
    return v


def _event(s: Session, v: ModelVersion, kind: str, actor: str, **detail: object) -> None:
    s.add(VersionEvent(version_id=v.id, kind=kind, actor=actor, detail=detail))


def register(store: Store, name: str, kind: str, base_model: str, path: str | None = None,
             content_hash: str | None = None, dataset_ids: list[int] | None = None, run_record: dict | None = None,
             actor: str = "cli", notes: str | None = None) -> int:
    """Add a version (its name must be new); returns its id."""
    if kind not in KINDS:
        raise RegistryError(f"kind must be one of {KINDS}, got {kind!r}")
    if not name or "/" in name:
        raise RegistryError(f"version name must be non-empty without '/', got {name!r}")
    with store.session() as s:
        if s.scalar(select(ModelVersion.id).where(ModelVersion.name == name)) is not None:
            raise RegistryError(f"version {name!r} already exists: version names are never reused")
        v = ModelVersion(name=name, kind=kind, base_model=base_model, path=path, content_hash=content_hash,
                         dataset_ids=list(dataset_ids or []), run_record=run_record, created_by=actor, notes=notes,
                         evals={}, gate_verdicts=[], status="registered")
        s.add(v)
        s.flush()
        _event(s, v, "registered", actor, version_kind=kind, datasets=list(dataset_ids or []))
        return v.id


def record_eval(store: Store, name: str, kind: str, summary: dict, actor: str = "loop") -> None:
    """Keep an eval summary (``kind``: gating or full) on the version."""
    with store.session() as s:
        v = _version(s, name)
        v.evals = {**(v.evals or {}), kind: summary}
        _event(s, v, "evaluated", actor, eval_kind=kind)


def record_gate(store: Store, name: str, verdict: dict, actor: str = "loop") -> None:
    """Append a gate verdict (``LoopVerdict.to_json()``) and set the status to gate_passed / gate_failed."""
    with store.session() as s:
        v = _version(s, name)
        v.gate_verdicts = [*(v.gate_verdicts or []), verdict]
        v.status = "gate_passed" if verdict.get("passed") else "gate_failed"
        _event(s, v, "gated", actor, passed=bool(verdict.get("passed")))


def record_event(store: Store, name: str, kind: str, actor: str, status: str | None = None, **detail: object) -> None:
    with store.session() as s:
        v = _version(s, name)
        if status:
            v.status = status
        _event(s, v, kind, actor, **detail)


def alias_state(store: Store, alias: str) -> AliasState | None:
    with store.session() as s:
        a = s.get(Alias, alias)
        return None if a is None else AliasState(a.name, dict(a.weights), a.production)


def set_weights(store: Store, alias: str, weights: dict[str, float], action: str, actor: str,
                reason: str | None = None, production: str | None = None) -> AliasState:
    """Make ``weights`` the alias's live split (shares > 0 summing to 1, registered versions only)."""
    if not weights or any(w <= 0 for w in weights.values()) or abs(sum(weights.values()) - 1) > 1e-9:
        raise RegistryError(f"alias weights must be positive shares summing to 1, got {weights}")
    now = utcnow()
    with store.session() as s:
        versions = {n: _version(s, n) for n in weights}
        a = s.get(Alias, alias)
        old = dict(a.weights) if a is not None else {}
        if a is None:
            a = Alias(name=alias, weights=dict(weights), production=production)
            s.add(a)
        a.weights, a.updated_at = dict(weights), now
        if production is not None:
            a.production = production
        for row in s.scalars(select(AliasHistory).where(AliasHistory.alias == alias, AliasHistory.ended_at.is_(None))):
            row.ended_at = now
        s.add(AliasHistory(alias=alias, weights=dict(weights), action=action, actor=actor, reason=reason, started_at=now))
        for n in set(weights) | set(old):
            if weights.get(n) != old.get(n):
                v = versions.get(n) or _version(s, n)
                _event(s, v, f"alias_{action}", actor, alias=alias, share=weights.get(n, 0.0),
                       previous_share=old.get(n, 0.0), reason=reason)
        return AliasState(alias, dict(weights), a.production)


def start_canary(store: Store, alias: str, candidate: str, share: float, actor: str = "loop") -> AliasState:
    """Route ``share`` of the alias to ``candidate``, the rest to production."""
    cur = alias_state(store, alias)
    if cur is None or cur.production is None:
        raise RegistryError(f"alias {alias!r} has no production version: promote one first")
    if not 0 < share < 1:
        raise RegistryError(f"canary share must be in (0, 1), got {share}")
    out = set_weights(store, alias, {cur.production: 1 - share, candidate: share}, "canary", actor,
                      f"canary {share:.0%} of {alias}")
    record_event(store, candidate, "canary_started", actor, status="canary", alias=alias, share=share)
    return out


def promote(store: Store, alias: str, version: str, actor: str, reason: str | None = None) -> AliasState:
    """Give ``version`` the whole alias and make it the alias's production version."""
    cur = alias_state(store, alias)
    out = set_weights(store, alias, {version: 1.0}, "promote", actor, reason, production=version)
    record_event(store, version, "promoted", actor, status="production", alias=alias, reason=reason)
    if cur is not None and cur.production and cur.production != version:
        record_event(store, cur.production, "superseded", actor, status="retired", alias=alias, by=version)
    return out


def rollback(store: Store, alias: str, actor: str, reason: str) -> tuple[AliasState, list[str]]:
    """Undo the alias's latest change: end a canary (all traffic to production) or restore the previous
    production version. Returns the new state and the versions rolled back."""
    cur = alias_state(store, alias)
    if cur is None:
        raise RegistryError(f"alias {alias!r} does not exist")
    if cur.production is None:
        raise RegistryError(f"alias {alias!r} has no production version to return to")
    others = [n for n in cur.weights if n != cur.production]
    if others:  # a canary (or any split): everything back to production
        out = set_weights(store, alias, {cur.production: 1.0}, "rollback", actor, reason)
        for n in others:
            record_event(store, n, "rolled_back", actor, status="rolled_back", alias=alias, reason=reason)
        return out, others
    prev = previous_production(store, alias)
    if prev is None:
        raise RegistryError(f"alias {alias!r}: no earlier production version to roll back to")
    out = set_weights(store, alias, {prev: 1.0}, "rollback", actor, reason, production=prev)
    record_event(store, cur.production, "rolled_back", actor, status="rolled_back", alias=alias, reason=reason)
    record_event(store, prev, "restored", actor, status="production", alias=alias, reason=reason)
    return out, [cur.production]


def previous_production(store: Store, alias: str) -> str | None:
    """The production version before the current one: the newest earlier promotion of a version that was
    not rolled back since."""
    cur = alias_state(store, alias)
    with store.session() as s:
        rows = s.scalars(select(AliasHistory).where(AliasHistory.alias == alias, AliasHistory.action == "promote")
                         .order_by(AliasHistory.id.desc())).all()
        bad = set(s.scalars(select(ModelVersion.name).where(ModelVersion.status == "rolled_back")))
    for r in rows:
        name = next(iter(r.weights))
        if cur is not None and name != cur.production and name not in bad:
            return name
    return None


def history(store: Store, alias: str) -> list[dict]:
    with store.session() as s:
        rows = s.scalars(select(AliasHistory).where(AliasHistory.alias == alias).order_by(AliasHistory.id)).all()
        return [{"weights": r.weights, "action": r.action, "actor": r.actor, "reason": r.reason,
                 "started_at": r.started_at.isoformat(), "ended_at": r.ended_at.isoformat() if r.ended_at else None}
                for r in rows]


def versions(store: Store) -> list[dict]:
    with store.session() as s:
        return [describe(v) for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id)).all()]


def get(store: Store, name: str) -> dict:
    """A version's own fields (no lineage, evals walk or events): kind, base model, path, status."""
    with store.session() as s:
        return describe(_version(s, name))


def show(store: Store, name: str) -> dict:
    """A version with its lineage, evals, verdicts and events."""
    with store.session() as s:
        v = _version(s, name)
        out = describe(v)
        from treadle.feedback.lineage import training_trace

        out.update(run_record=v.run_record, evals=v.evals, gate_verdicts=v.gate_verdicts, notes=v.notes,
                   lineage=training_trace(s, list(v.dataset_ids or [])),
                   events=[{"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor, "detail": e.detail}
                           for e in s.scalars(select(VersionEvent).where(VersionEvent.version_id == v.id)
                                              .order_by(VersionEvent.id))])
        return out


def describe(v: ModelVersion) -> dict:
    return {"name": v.name, "kind": v.kind, "base_model": v.base_model, "path": v.path,
            "content_hash": v.content_hash, "status": v.status, "created_at": v.created_at.isoformat(),
            "created_by": v.created_by, "dataset_ids": v.dataset_ids}


def aliases(store: Store) -> list[dict]:
    with store.session() as s:
        return [{"name": a.name, "weights": a.weights, "production": a.production,
                 "updated_at": a.updated_at.isoformat()} for a in s.scalars(select(Alias).order_by(Alias.name))]
