"""The registry on SQLite and PostgreSQL: versions, lineage, alias history, promote, canary, rollback, CLI."""

from __future__ import annotations

import json

import pytest

from treadle.cli import main
from treadle.registry import registry as reg
from treadle.store import open_store


@pytest.fixture
def store(db_url: str):  # noqa: ANN201
    s = open_store(db_url)
    yield s
    s.close()


def test_versions_aliases_and_full_history(store) -> None:
    reg.register(store, "base", "base", "smollm2")
    reg.register(store, "v1", "adapter", "smollm2", "/a/v1", "h1", [3], {"dataset_hash": "d"})
    with pytest.raises(reg.RegistryError, match="never reused"):
        reg.register(store, "v1", "adapter", "smollm2")
    with pytest.raises(reg.RegistryError, match="kind must be one of"):
        reg.register(store, "x", "merged", "smollm2")
    reg.promote(store, "support", "base", "alice", "first")
    reg.start_canary(store, "support", "v1", 0.25)
    assert reg.alias_state(store, "support").weights == {"base": 0.75, "v1": 0.25}
    reg.record_gate(store, "v1", {"kind": "loop-gate", "passed": True})
    reg.promote(store, "support", "v1", "loop", "canary passed")
    hist = reg.history(store, "support")
    assert [h["action"] for h in hist] == ["promote", "canary", "promote"]
    assert [h["weights"] for h in hist] == [{"base": 1.0}, {"base": 0.75, "v1": 0.25}, {"v1": 1.0}]
    assert all(h["ended_at"] for h in hist[:-1]) and hist[-1]["ended_at"] is None
    assert all(a["ended_at"] <= b["started_at"] for a, b in zip(hist, hist[1:], strict=False))  # no overlap
    shown = reg.show(store, "v1")
    assert shown["status"] == "production" and shown["dataset_ids"] == [3] and shown["run_record"] == {"dataset_hash": "d"}
    assert [e["kind"] for e in shown["events"]] == ["registered", "alias_canary", "canary_started", "gated",
                                                    "alias_promote", "promoted"]
    assert reg.show(store, "base")["status"] == "retired"


def test_rollback_ends_a_canary_then_restores_the_previous_production(store) -> None:
    for n in ("v1", "v2", "v3"):
        reg.register(store, n, "adapter", "smollm2")
    reg.promote(store, "a", "v1", "loop")
    reg.promote(store, "a", "v2", "loop")
    reg.start_canary(store, "a", "v3", 0.1)
    state, gone = reg.rollback(store, "a", "loop", "canary: unsafe_rate significantly worse")
    assert state.weights == {"v2": 1.0} and gone == ["v3"]
    assert reg.show(store, "v3")["status"] == "rolled_back"
    assert reg.history(store, "a")[-1]["reason"] == "canary: unsafe_rate significantly worse"
    state, gone = reg.rollback(store, "a", "bob", "v2 regressed in production")
    assert state.weights == {"v1": 1.0} and state.production == "v1" and gone == ["v2"]
    with pytest.raises(reg.RegistryError, match="no earlier production"):
        reg.rollback(store, "a", "bob", "again")  # v2 was rolled back, v3 never promoted
    with pytest.raises(reg.RegistryError, match="summing to 1"):
        reg.set_weights(store, "a", {"v1": 0.5}, "set", "bob")
    with pytest.raises(reg.RegistryError, match="not registered"):
        reg.promote(store, "a", "nope", "bob")


def test_registry_cli(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    rec = tmp_path / "run.json"
    rec.write_text(json.dumps({"adapter_hash": "abc", "dataset_hash": "d1"}))
    assert main(["registry", "--db", db, "register", "base", "--kind", "base", "--base-model", "m"]) == 0
    assert main(["registry", "--db", db, "register", "v1", "--base-model", "m", "--path", "/x",
                 "--run-record", str(rec), "--dataset-id", "7"]) == 0
    assert main(["registry", "--db", db, "promote", "bot", "base"]) == 0
    assert main(["registry", "--db", db, "promote", "bot", "v1", "--reason", "better"]) == 0
    capsys.readouterr()
    assert main(["registry", "--db", db, "rollback", "bot", "--reason", "complaints", "--actor", "carol"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weights"] == {"base": 1.0} and out["rolled_back"] == ["v1"]
    assert main(["registry", "--db", db, "show", "v1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["content_hash"] == "abc" and shown["events"][-1]["actor"] == "carol"
    assert main(["registry", "--db", db, "history", "bot"]) == 0
    assert [h["action"] for h in json.loads(capsys.readouterr().out)] == ["promote", "promote", "rollback"]
    assert main(["registry", "--db", db, "rollback", "nobot", "--reason", "x"]) == 2
