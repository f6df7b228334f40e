"""tune.warm_start: a pass continues production's adapter; its build counts only the parent's datasets as seen
(so a failed candidate's data is new again), the tune starts from the parent's adapter, and the new version's
lineage holds the parent's datasets too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_loop_resume import FakeFleet, approve
from treadle.cli import main
from treadle.feedback.dataset import BuildOptions, build
from treadle.loop import state as st
from treadle.loop.config import config_from_dict
from treadle.loop.runner import Loop
from treadle.registry import registry as reg
from treadle.store import open_store


def test_a_warm_start_continues_production_on_what_it_has_not_learned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    store = open_store(db)
    approved = lambda rid, prompt, reply: approve(store, rid, prompt, reply)  # noqa: E731

    cfg = config_from_dict({"alias": "bot", "production": "base", "db": db, "workdir": str(tmp_path / "w"),
                            "dataset": {"name": "sup", "embed": False, "dev_share": 0.0, "replay_share": 1.0},
                            "tune": {"warm_start": True, "args": {"max_steps": 1}}})
    loop = Loop(cfg, store, FakeFleet())
    loop.ensure_production()
    approved("u1", "where is my order", "track_order")
    run1 = st.start_run(store, "bot", {"reason": "test"})
    run1 = loop._step_dataset(run1, st.step_started(store, run1.id, "dataset"))
    assert run1.state["parent"] is None and "this run trains a new adapter" in loop.events[-2]
    parent_dir = tmp_path / "r1-adapter"
    parent_dir.mkdir()
    (parent_dir / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    reg.register(store, "bot-r1", "adapter", "default", str(parent_dir), None, [run1.state["dataset_id"]])
    reg.promote(store, "bot", "bot-r1", "test", "promoted in an earlier pass")
    approved("u2", "cancel my order", "cancel_order")
    build(store, tmp_path / "failed", BuildOptions(name="sup", embed=False, dev_share=0.0))  # a failed candidate's
    approved("u3", "I want my money back", "get_refund")

    run2 = st.start_run(store, "bot", {"reason": "test"})
    run2 = loop._step_dataset(run2, st.step_started(store, run2.id, "dataset"))
    assert run2.state["parent"] == "bot-r1" and loop.events[-1].endswith("continuing bot-r1")
    items = json.loads((Path(run2.state["dataset_dir"]) / "manifest.json").read_text())["items"]
    assert {i["response_id"] for i in items if i["replay_of"] is None} == {"u2", "u3"}  # u2: never learned by r1
    assert {i["response_id"] for i in items if i["replay_of"] is not None} == {"u1"}  # replay: what r1 learned

    seen: dict = {}

    def fake_tune(conf):  # noqa: ANN001, ANN202 - the config the step hands to treadle tune
        seen["conf"] = conf
        Path(conf.out).mkdir(parents=True, exist_ok=True)
        return {"wall_s": 0, "metrics": {}}

    monkeypatch.setattr("treadle.tuning.tune", fake_tune)
    run2 = loop._step_tune(run2, st.step_started(store, run2.id, "tune"))
    assert seen["conf"].init_adapter == str(parent_dir) and seen["conf"].max_steps == 1
    run2 = loop._step_register(run2, st.step_started(store, run2.id, "register"))
    v = reg.show(store, run2.candidate)
    assert v["dataset_ids"] == [run1.state["dataset_id"], run2.state["dataset_id"]]  # the parent's, then its own
    assert v["lineage"]["train_records"] == v["lineage"]["traced"] > 0
    # by hand: treadle dataset build --seen-by VERSION builds what treadle tune --init-adapter should continue on
    base = ["dataset", "build", "--db", db, "--name", "sup", "--no-embed", "--dev-share", "0", "--replay-share", "0"]
    assert main([*base, "--out", str(tmp_path / "by-hand"), "--seen-by", "bot-r1"]) == 0
    by_hand = json.loads((tmp_path / "by-hand" / "manifest.json").read_text())["items"]
    assert {i["response_id"] for i in by_hand} == {"u2", "u3"}
    assert main([*base, "--out", str(tmp_path / "x"), "--seen-by", "bot-r9"]) == 2
    assert "--seen-by: version 'bot-r9' is not registered" in capsys.readouterr().err
    store.close()


def test_warm_start_config_errors() -> None:
    with pytest.raises(ValueError, match="tune.warm_start: only sft"):
        config_from_dict({"alias": "a", "production": "p", "tune": {"method": "dpo", "warm_start": True}})
    with pytest.raises(ValueError, match="dataset.replay_all"):
        config_from_dict({"alias": "a", "production": "p", "tune": {"warm_start": True},
                          "dataset": {"replay_all": True}})
    with pytest.raises(ValueError, match="fixed_mix_share must be within"):
        config_from_dict({"alias": "a", "production": "p", "dataset": {"fixed_mix_share": -0.1}})


def test_open_canary_names_a_run_without_a_canary(tmp_path: Path) -> None:
    from treadle.loop.state import open_canary

    cfg = tmp_path / "loop.yaml"
    cfg.write_text(f"alias: bot\nproduction: base\ndb: sqlite:///{tmp_path / 'c.db'}\n")
    with pytest.raises(ValueError, match="--run 3: no loop run with a canary"):
        open_canary(str(cfg), 3)
