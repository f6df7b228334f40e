"""A loop run resumes after a crash at the first step whose results were not committed; status shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from treadle.cli import main
from treadle.loop import state as st
from treadle.loop.config import config_from_dict
from treadle.loop.runner import Loop
from treadle.registry import registry as reg
from treadle.store import open_store


class FakeFleet:
    """A gateway's admin API in memory: the routes set (in order) and the adapters loaded."""

    def __init__(self) -> None:
        self.set_routes: list[tuple[str, dict]] = []
        self.loaded: list[str] = []

    def set_route(self, alias: str, weights: dict) -> None:
        self.set_routes.append((alias, dict(weights)))

    def routes(self) -> dict:
        live = dict(self.set_routes)
        return {"routes": [{"alias": a, "versions": w} for a, w in live.items()]}

    def models(self) -> list[str]:
        return list(self.loaded)

    def load_adapter(self, name: str, path: str) -> None:
        self.loaded.append(name)

    def unload_adapter(self, name: str) -> None:
        pass


def approve(store, rid: str, prompt: str, reply: str, user: str = "ann") -> None:  # noqa: ANN001
    """Log a response of ``user`` to ``prompt`` and have a reviewer correct it to ``reply`` (an approved item)."""
    from feedback_support import record, write
    from treadle.feedback.review import act, enqueue
    from treadle.feedback.roles import Principal

    write(store, record(rid, user=user, request=prompt, output="?"))
    with store.session() as s:
        act(s, enqueue(s, rid, "manual").id, Principal("rev", "reviewer"), "correct", reply=reply)


def test_crash_in_tune_resumes_at_tune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    db = f"sqlite:///{tmp_path / 'l.db'}"
    cfg = config_from_dict({"alias": "bot", "production": "base", "db": db, "workdir": str(tmp_path / "w"),
                            "gating": {"suites": ["bitext_intent"]}})
    store = open_store(db)
    calls: list[str] = []

    def fake(step: str, nxt: str, updates: dict):  # noqa: ANN202
        def run(self, run, sid):  # noqa: ANN001, ANN202
            calls.append(step)
            if step == "tune" and calls.count("tune") == 1:
                raise RuntimeError("killed mid-training")
            if nxt == "finish":
                st.step_done(store, run.id, sid, "finish", updates)
                return st.finish_run(store, run.id, "promoted", "test")
            return st.step_done(store, run.id, sid, nxt, updates, candidate=updates.get("candidate"))
        return run

    order = list(st.STEPS)
    for step, nxt in zip(order, order[1:], strict=False):
        if step != "finish":
            monkeypatch.setattr(Loop, f"_step_{step}", fake(step, nxt, {f"{step}_out": 1, "candidate": "bot-r1"}))
    fleet = FakeFleet()
    assert Loop(cfg, store, fleet).run_once() is None  # no trigger, nothing approved
    with pytest.raises(RuntimeError, match="killed"):
        Loop(cfg, store, fleet).run_once(force=True)
    run = st.open_run(store, "bot")
    assert run.step == "tune" and run.state["dataset_out"] == 1
    done = Loop(cfg, store, fleet).run_once()  # a new process: resumes, does not start another run
    assert done.id == run.id and done.outcome == "promoted"
    assert calls == ["dataset", "tune", "tune", "register", "evaluate", "gate", "canary_start", "canary"]
    steps = st.runs(store, "bot")[0]["steps"]
    assert [(s["step"], s["status"]) for s in steps][:3] == [("dataset", "done"), ("tune", "failed"), ("tune", "done")]
    assert "killed mid-training" in steps[1]["detail"]["error"]
    assert fleet.set_routes == [("bot", {"base": 1.0})] and reg.alias_state(store, "bot").production == "base"
    store.close()
    cfg_file = tmp_path / "loop.yaml"
    cfg_file.write_text(f"alias: bot\nproduction: base\ndb: {db}\ngating: {{suites: [bitext_intent]}}\n")
    assert main(["loop", "status", "--config", str(cfg_file)]) == 0
    out = capsys.readouterr().out
    assert "alias bot: {'base': 1.0}" in out and "run 1 [done] bot-r1: promoted" in out and "tune(failed)" in out


def test_a_restarted_gateway_gets_the_recorded_split_back(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    cfg = config_from_dict({"alias": "bot", "production": "base", "db": db, "workdir": str(tmp_path / "w"),
                            "gating": {"suites": ["bitext_intent"]}})
    store = open_store(db)
    first = FakeFleet()
    assert Loop(cfg, store, first).ensure_production() == "base"
    reg.register(store, "bot-r1", "adapter", "default", str(tmp_path / "r1"), actor="test")
    reg.start_canary(store, "bot", "bot-r1", 0.2)
    first.set_route("bot", {"base": 0.8, "bot-r1": 0.2})
    Loop(cfg, store, first).ensure_production()  # the gateway serves the recorded split: nothing to do
    assert len(first.set_routes) == 2 and first.loaded == []
    fresh = FakeFleet()  # the gateway restarted: no route, no adapter
    loop = Loop(cfg, store, fresh)
    assert loop.ensure_production() == "base"
    assert fresh.loaded == ["bot-r1"] and fresh.set_routes == [("bot", {"base": 0.8, "bot-r1": 0.2})]
    assert "restored the recorded split" in loop.events[-1]
    store.close()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="'alias' is required"):
        config_from_dict({"production": "x"})
    with pytest.raises(ValueError, match=r"canary: unknown keys \['shares'\]"):
        config_from_dict({"alias": "a", "production": "p", "canary": {"shares": 0.1}})
    with pytest.raises(ValueError, match="gate.margin"):
        config_from_dict({"alias": "a", "production": "p", "gate": {"margin": 2}})
    cfg = config_from_dict({"alias": "a", "production": "p", "gate": {"superiority": ["bitext_intent/accuracy"]},
                            "canary": {"share": 0.2, "poll_seconds": 1}})
    assert cfg.gate.superiority == ("bitext_intent/accuracy",) and cfg.canary.policy.share == 0.2
    assert cfg.canary.poll_seconds == 1 and cfg.floor_once_reached == ("safety",)


def test_dataset_step_takes_the_fixed_mix_from_the_store(tmp_path: Path) -> None:
    import json

    from feedback_support import record, write
    from treadle.feedback.dataset import BuildOptions, build
    from treadle.feedback.review import act, enqueue
    from treadle.feedback.roles import Principal

    with pytest.raises(ValueError, match="tune.mix: training files outside the store"):
        config_from_dict({"alias": "bot", "production": "base", "tune": {"mix": ["safety_sft.jsonl"]}})
    db = f"sqlite:///{tmp_path / 'm.db'}"
    store = open_store(db)
    for rid, user, prompt, reply in [("rt1", "rt-0", "harm?", "I can't help with that."), ("u1", "ann", "hi", "cancel")]:
        write(store, record(rid, user=user, request=prompt, output="?"))
        with store.session() as s:
            act(s, enqueue(s, rid, "manual").id, Principal("rev", "reviewer"), "correct", reply=reply)
    build(store, tmp_path / "safety", BuildOptions(name="safety", users="rt-*", dev_share=0.0, embed=False))
    cfg = config_from_dict({"alias": "bot", "production": "base", "db": db, "workdir": str(tmp_path / "w"),
                            "dataset": {"fixed_mix": "safety", "exclude_users": "rt-*", "embed": False,
                                        "dev_share": 0.0}})
    from treadle.loop.runner import new_items

    assert new_items(store, cfg) == 1  # the red team's item counts toward no trigger (in the mix, and excluded)
    run = st.start_run(store, "bot", {"reason": "forced"})
    run = Loop(cfg, store, FakeFleet())._step_dataset(run, st.step_started(store, run.id, "dataset"))
    assert new_items(store, cfg) == 0
    lines = (Path(run.state["dataset_dir"]) / "sft.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["messages"][-1]["content"] for x in lines) == ["I can't help with that.", "cancel"]
    detail = st.runs(store, "bot")[0]["steps"][0]["detail"]
    assert detail["manifest"]["fixed_mix"]["name"] == "safety" and detail["manifest"]["fixed_mix"]["count"] == 4  # sft, preference, 2 kto
    store.close()


def test_items_a_build_dropped_fire_no_trigger_again(tmp_path: Path) -> None:
    """An approved item that a build saw and dropped (an exact duplicate) is counted by no later trigger: before
    the fix, every finished run was followed by a new one on the same data (pass 15 of docs/LOOP.md)."""
    from treadle.loop.runner import new_items

    db = f"sqlite:///{tmp_path / 'd.db'}"
    store = open_store(db)
    approved = lambda rid, prompt, reply: approve(store, rid, prompt, reply)  # noqa: E731
    approved("u1", "where is my order", "track_order")
    approved("u2", "where is my order", "track_order")   # the same record again: the build keeps one
    cfg = config_from_dict({"alias": "bot", "production": "base", "db": db, "workdir": str(tmp_path / "w"),
                            "trigger": {"min_new_approved": 1},
                            "dataset": {"embed": False, "dev_share": 0.0}})
    loop = Loop(cfg, store, FakeFleet())
    assert new_items(store, cfg) == 2 and loop.triggered() == {"reason": "new_approved", "count": 2}
    run = st.start_run(store, "bot", {"reason": "test"})
    loop._step_dataset(run, st.step_started(store, run.id, "dataset"))
    with store.session() as s:
        from sqlalchemy import func, select

        from treadle.store.models import DatasetItem
        assert s.scalar(select(func.count(DatasetItem.id)).where(DatasetItem.kind == "sft")) == 1  # u2 dropped
    assert new_items(store, cfg) == 0 and loop.triggered() is None
    approved("u3", "cancel it please", "cancel_order")   # decided after the build: new again
    assert new_items(store, cfg) == 1
    store.close()


def test_loop_sync_serves_the_alias_and_runs_no_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys) -> None:  # noqa: ANN001
    """`treadle loop sync` registers production and sets the route, and starts no run though the trigger has fired
    (`--once` would run a whole pass: scripts/loop_demo.sh ran one without its canary traffic)."""
    import json

    import treadle.loop.fleet as fleet_mod
    from feedback_support import record, write
    from treadle.feedback.review import act, enqueue
    from treadle.feedback.roles import Principal

    db = f"sqlite:///{tmp_path / 's.db'}"
    cfg_file = tmp_path / "loop.yaml"
    cfg_file.write_text(f"alias: bot\nproduction: base\ndb: {db}\nworkdir: {tmp_path / 'w'}\n"
                        "trigger: {min_new_approved: 1}\ndataset: {embed: false}\n")
    store = open_store(db)
    write(store, record("u1", user="ann", request="where is my order", output="?"))
    with store.session() as s:
        act(s, enqueue(s, "u1", "manual").id, Principal("rev", "reviewer"), "correct", reply="track_order")
    fake = FakeFleet()
    monkeypatch.setattr(fleet_mod, "FleetClient", lambda url, key: fake)
    for _ in range(2):   # the second call finds the route as recorded and changes nothing
        assert main(["loop", "sync", "--config", str(cfg_file)]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
            "alias": "bot", "production": "base", "served": {"base": 1.0}}
    assert fake.set_routes == [("bot", {"base": 1.0})]
    assert reg.alias_state(store, "bot").production == "base" and st.runs(store, "bot") == []
    store.close()
