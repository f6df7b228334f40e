"""`treadle loop retry`: a run whose canary rolled back is reopened at its canary, audited, and runs a fresh
canary on the next pass; anything else is refused with the reason."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from test_loop_resume import FakeFleet
from treadle.cli import main
from treadle.loop import state as st
from treadle.loop.config import config_from_dict
from treadle.loop.runner import Loop
from treadle.registry import registry as reg
from treadle.store import open_store
from treadle.store.models import utcnow


def _rolled_back_run(store, tmp_path: Path) -> int:  # noqa: ANN001
    reg.register(store, "bot-r1", "adapter", "default", str(tmp_path / "r1"), actor="test")
    run = st.start_run(store, "bot", {"forced": True})
    sid = st.step_started(store, run.id, "canary")
    st.step_done(store, run.id, sid, "finish", {"candidate": "bot-r1", "production": "base", "adapter_dir": "a",
                                              "canary_started_at": utcnow().isoformat()}, candidate="bot-r1")
    reg.start_canary(store, "bot", "bot-r1", 0.2)
    reg.rollback(store, "bot", "loop", "canary: incoherent_rate significantly worse")
    st.finish_run(store, run.id, "rolled_back", "canary: incoherent_rate significantly worse")
    return run.id


def test_retry_reopens_the_canary_and_the_next_pass_runs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    cfg_file = tmp_path / "loop.yaml"
    cfg_file.write_text(f"alias: bot\nproduction: base\ndb: {db}\nworkdir: {tmp_path / 'w'}\n"
                        "gating: {suites: [bitext_intent]}\n")
    cfg = config_from_dict({"alias": "bot", "production": "base", "db": db, "workdir": str(tmp_path / "w"),
                            "gating": {"suites": ["bitext_intent"]}})
    store = open_store(db)
    fleet = FakeFleet()
    Loop(cfg, store, fleet).ensure_production()
    run_id = _rolled_back_run(store, tmp_path)

    assert main(["loop", "retry", "--config", str(cfg_file), "--run", str(run_id)]) == 2  # no reason
    assert "--reason" in capsys.readouterr().out
    assert main(["loop", "retry", "--config", str(cfg_file), "--run", "99", "--reason", "x"]) == 2
    assert "no loop run of alias 'bot'" in capsys.readouterr().out
    assert main(["loop", "retry", "--config", str(cfg_file), "--run", str(run_id), "--reason",
                 "live coherence check fixed for label replies", "--actor", "ops"]) == 0
    run = st.open_run(store, "bot")
    assert (run.id, run.step, run.outcome) == (run_id, "canary_start", None)
    assert "canary_started_at" not in run.state and run.state["previous_canaries"][0]["outcome"] == "rolled_back"
    events = [e for e in reg.show(store, "bot-r1")["events"] if e["kind"] == "canary_retry"]
    assert events and events[0]["actor"] == "ops" and "label replies" in events[0]["detail"]["reason"]
    assert main(["loop", "retry", "--config", str(cfg_file), "--run", str(run_id), "--reason", "again"]) == 2
    assert "only a run whose canary rolled back" in capsys.readouterr().out  # it is open now

    seen: list[str] = []

    def canary(self, run, sid):  # noqa: ANN001, ANN202
        seen.append(run.state["canary_started_at"])
        st.step_done(store, run.id, sid, "finish", {})
        return st.finish_run(store, run.id, "promoted", "test")

    monkeypatch.setattr(Loop, "_step_canary", canary)
    done = Loop(cfg, store, fleet).run_once()  # resumes the reopened run: a fresh canary, no retraining
    assert done.id == run_id and done.outcome == "promoted" and len(seen) == 1
    assert fleet.loaded == ["bot-r1"] and fleet.set_routes[-1] == ("bot", {"base": 0.9, "bot-r1": 0.1})  # default share
    steps = st.runs(store, "bot")[0]["steps"]
    assert [s["step"] for s in steps][-2:] == ["canary_start", "canary"]
    w = st.canary_window(store, run_id)   # the retried canary's window, not the first one's
    first_end = max(s["finished_at"] for s in steps[:-2] if s["step"] == "canary")
    assert w.candidate == "bot-r1" and w.since.isoformat() == seen[0] and w.until.isoformat() == steps[-1]["finished_at"]
    assert w.until > w.since > datetime.fromisoformat(first_end)
    assert st.canary_window(store, 99) is None
    store.close()


def test_retry_refuses_when_production_changed(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'l.db'}")
    cfg = config_from_dict({"alias": "bot", "production": "base", "db": f"sqlite:///{tmp_path / 'l.db'}",
                            "workdir": str(tmp_path / "w"), "gating": {"suites": ["bitext_intent"]}})
    Loop(cfg, store, FakeFleet()).ensure_production()
    run_id = _rolled_back_run(store, tmp_path)
    with pytest.raises(ValueError, match="gated against 'base' but the alias's production is now 'other'"):
        st.reopen_canary(store, run_id, "bot", "other")
    with pytest.raises(ValueError, match="no loop run of alias 'bot2'"):
        st.reopen_canary(store, run_id, "bot2", "base")
    assert st.open_run(store, "bot") is None  # nothing changed
    store.close()
