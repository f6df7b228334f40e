"""A loop run's persistent state: its current step, what earlier steps produced, and the step log.

Invariant: a step's outputs are merged into ``loop_runs.state`` in the same transaction that moves
``step`` forward and closes the step's ``loop_steps`` row, so after a crash the run resumes at the
first step whose results were not committed (that step runs again from its start).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select

from treadle.registry.models import LoopRun, LoopStep
from treadle.store.db import Store
from treadle.store.models import Dataset, DatasetItem, Interaction, ReviewItem, utcnow

STEPS = ("dataset", "tune", "register", "evaluate", "gate", "canary_start", "canary", "finish")


@dataclass(frozen=True)
class RunView:
    id: int
    alias: str
    status: str
    step: str
    candidate: str | None
    state: dict
    outcome: str | None
    reason: str | None


def _view(r: LoopRun) -> RunView:
    return RunView(r.id, r.alias, r.status, r.step, r.candidate, dict(r.state or {}), r.outcome, r.reason)


def open_run(store: Store, alias: str) -> RunView | None:
    """The alias's unfinished run (the one to resume), if any."""
    with store.session() as s:
        r = s.scalar(select(LoopRun).where(LoopRun.alias == alias, LoopRun.status == "running")
                     .order_by(LoopRun.id.desc()))
        return None if r is None else _view(r)


def start_run(store: Store, alias: str, trigger: dict) -> RunView:
    with store.session() as s:
        r = LoopRun(alias=alias, status="running", step=STEPS[0], state={"trigger": trigger})
        s.add(r)
        s.flush()
        return _view(r)


def step_started(store: Store, run_id: int, step: str) -> int:
    with store.session() as s:
        row = LoopStep(run_id=run_id, step=step, status="started", detail={})
        s.add(row)
        s.flush()
        return row.id


def step_done(store: Store, run_id: int, step_id: int, next_step: str, updates: dict, candidate: str | None = None,
              detail: dict | None = None) -> RunView:
    """Close the step, merge its outputs into the run's state and move to ``next_step`` (one transaction)."""
    now = utcnow()
    with store.session() as s:
        r = s.get(LoopRun, run_id)
        row = s.get(LoopStep, step_id)
        row.status, row.finished_at, row.detail = "done", now, detail or {}
        r.state = {**(r.state or {}), **updates}
        r.step, r.updated_at = next_step, now
        if candidate:
            r.candidate = candidate
        return _view(r)


def step_failed(store: Store, run_id: int, step_id: int, error: str) -> None:
    with store.session() as s:
        row = s.get(LoopStep, step_id)
        row.status, row.finished_at, row.detail = "failed", utcnow(), {"error": error}


def finish_run(store: Store, run_id: int, outcome: str, reason: str, status: str = "done") -> RunView:
    now = utcnow()
    with store.session() as s:
        r = s.get(LoopRun, run_id)
        r.status, r.outcome, r.reason, r.finished_at, r.updated_at, r.step = status, outcome, reason, now, now, "finish"
        return _view(r)


def reopen_canary(store: Store, run_id: int, alias: str, production: str | None) -> RunView:
    """Reopen a run whose canary rolled its candidate back, at ``canary_start``: its tune, eval and gate stand,
    and the next ``treadle loop`` pass runs a fresh canary (a new window; the old one is kept in
    ``state['previous_canaries']``). Valid only while the alias has no open run and ``production`` (the
    alias's production now) is the version the run was gated against; otherwise ValueError."""
    with store.session() as s:
        r = s.get(LoopRun, run_id)
        if r is None or r.alias != alias:
            raise ValueError(f"--run {run_id}: no loop run of alias {alias!r} has this id")
        state = dict(r.state or {})
        if r.status != "done" or r.outcome != "rolled_back" or "canary_started_at" not in state:
            raise ValueError(f"--run {run_id}: only a run whose canary rolled back can be retried "
                             f"(this one is {r.status}, outcome {r.outcome})")
        if state.get("production") != production:
            raise ValueError(f"--run {run_id} was gated against {state.get('production')!r} but the alias's "
                             f"production is now {production!r}: start a new run instead")
        if s.scalar(select(LoopRun.id).where(LoopRun.alias == r.alias, LoopRun.status == "running")) is not None:
            raise ValueError(f"alias {r.alias!r} has an unfinished run: finish it before a retry")
        prev = [*state.get("previous_canaries", []), {"started_at": state.pop("canary_started_at"),
                                                       "outcome": r.outcome, "reason": r.reason}]
        r.state = {**state, "previous_canaries": prev}
        r.status, r.step, r.outcome, r.reason, r.finished_at, r.updated_at = (
            "running", "canary_start", None, None, None, utcnow())
        return _view(r)


def runs(store: Store, alias: str | None = None, limit: int = 20) -> list[dict]:
    """Newest runs with their steps (the ``treadle loop status`` view)."""
    with store.session() as s:
        q = select(LoopRun).order_by(LoopRun.id.desc()).limit(limit)
        if alias:
            q = q.where(LoopRun.alias == alias)
        out = []
        for r in s.scalars(q):
            steps = s.scalars(select(LoopStep).where(LoopStep.run_id == r.id).order_by(LoopStep.id)).all()
            out.append({"id": r.id, "alias": r.alias, "status": r.status, "step": r.step, "candidate": r.candidate,
                        "outcome": r.outcome, "reason": r.reason, "created_at": r.created_at.isoformat(),
                        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                        "steps": [{"step": x.step, "status": x.status, "started_at": x.started_at.isoformat(),
                                   "finished_at": x.finished_at.isoformat() if x.finished_at else None,
                                   "detail": x.detail} for x in steps]})
        return out


def new_approved(store: Store, dataset_name: str, fixed_mix: str | None = None, keep_user=None) -> int:  # noqa: ANN001
    """Approved or corrected review items not yet in any version of ``dataset_name`` nor of ``fixed_mix``, and
    decided after the newest version of ``dataset_name`` was built, of responses whose user ``keep_user`` accepts
    (None: everyone): what the next build would take that no build has yet seen. An item that a build saw and
    dropped (a duplicate of a record already in) stays out of every version; counting it would fire the trigger
    again and again on the same data (a new run after every finished one, each with the same dataset)."""
    names = [dataset_name] + ([fixed_mix] if fixed_mix else [])
    with store.session() as s:
        used = select(DatasetItem.response_id).join(Dataset, Dataset.id == DatasetItem.dataset_id).where(
            Dataset.name.in_(names), DatasetItem.response_id.is_not(None))
        where = [ReviewItem.status.in_(("approved", "corrected")), ReviewItem.response_id.not_in(used)]
        last_build = s.scalar(select(func.max(Dataset.created_at)).where(Dataset.name == dataset_name))
        if last_build is not None:
            where.append(or_(ReviewItem.decided_at.is_(None), ReviewItem.decided_at > last_build))
        if keep_user is None:
            return int(s.scalar(select(func.count(ReviewItem.id)).where(*where)) or 0)
        users = s.execute(select(Interaction.user).join(ReviewItem, ReviewItem.response_id == Interaction.id)
                          .where(*where)).scalars()
        return sum(1 for u in users if keep_user(u))


def last_run_time(store: Store, alias: str):  # noqa: ANN201 - datetime | None
    with store.session() as s:
        return s.scalar(select(func.max(LoopRun.created_at)).where(LoopRun.alias == alias))


@dataclass(frozen=True)
class CanaryWindow:
    """What a run's (last) canary compared, and when: candidate and production from ``since`` to ``until``
    (None while it runs)."""

    candidate: str
    production: str
    since: datetime
    until: datetime | None


def canary_window(store: Store, run_id: int) -> CanaryWindow | None:
    """Run ``run_id``'s last canary (after a retry, the retried one: its start is the run's recorded canary start,
    its end the latest canary step end after that); None if the run never reached its canary."""
    with store.session() as s:
        run = s.get(LoopRun, run_id)
        if run is None or "canary_started_at" not in (run.state or {}):
            return None
        since = datetime.fromisoformat(run.state["canary_started_at"])
        until = s.scalar(select(func.max(LoopStep.finished_at)).where(
            LoopStep.run_id == run_id, LoopStep.step == "canary", LoopStep.finished_at >= since))
        return CanaryWindow(run.state["candidate"], run.state["production"], since, until)


def open_canary(config: str, run_id: int) -> tuple:
    """For the scripts that read a finished canary: (the loop config at path ``config``, its store, open: the
    caller closes it, run ``run_id``'s ``CanaryWindow``). ValueError naming the run when it had no canary."""
    from treadle.loop.config import load_config
    from treadle.store import open_store

    cfg = load_config(config)
    store = open_store(cfg.db)
    w = canary_window(store, run_id)
    if w is None:
        store.close()
        raise ValueError(f"--run {run_id}: no loop run with a canary in {cfg.db}")
    return cfg, store, w
