"""LoraSlots (torch-free): resident adapters, LRU eviction of unpinned ones, waiting when all are pinned."""

from __future__ import annotations

import pytest

from treadle.engine.lora_slots import LoraSlots
from treadle.engine.request import FinishReason, Request
from treadle.engine.scheduler import Scheduler, SchedulerConfig
from treadle.sampling_params import SamplingParams


def test_slots_fill_then_evict_least_recently_used_unpinned() -> None:
    s = LoraSlots(2)
    assert s.acquire("a", set()) == 0 and s.acquire("b", set()) == 1
    assert s.acquire("a", set()) == 0  # touch: b is now least recently used
    assert s.acquire("c", set()) == 1 and s.slots == ["a", "c"]
    assert s.acquire("b", {"a"}) == 1 and s.slots == ["a", "b"]  # a is pinned, c goes
    assert s.acquire("d", {"a", "b"}) is None and s.slots == ["a", "b"]  # all pinned: wait, change nothing
    s.evict("a")
    assert s.slots == [None, "b"] and s.acquire("d", {"b"}) == 0
    s.check_integrity()


def test_integrity_catches_a_double_slot() -> None:
    s = LoraSlots(2)
    s.acquire("a", set())
    s.slots[1] = "a"
    with pytest.raises(RuntimeError, match="two slots"):
        s.check_integrity()
    with pytest.raises(ValueError, match="max_loras"):
        LoraSlots(0)


def test_scheduler_holds_adapter_requests_fcfs_and_lets_base_requests_pass() -> None:
    sched = Scheduler(SchedulerConfig(num_blocks=64, block_size=4, max_loras=1, max_num_batched_tokens=64))
    params = SamplingParams(max_tokens=4)
    for rid, adapter in (("x1", "X"), ("y1", "Y"), ("x2", "X"), ("base", None)):
        sched.add_request(Request(rid, [1, 2, 3], params, adapter_id=adapter))
    out = sched.schedule()
    # y1 waits for the one slot; x2 (whose adapter is resident) waits behind it (FCFS); base runs.
    assert [s.request_id for s in out.scheduled] == ["x1", "base"]
    assert out.lora_slots == ("X",) and [r.request_id for r in sched.waiting] == ["y1", "x2"]
    sched.check_integrity()
    sched.finish_request("x1", FinishReason.ABORT)
    out = sched.schedule()
    assert "y1" in [s.request_id for s in out.scheduled] and out.lora_slots == ("Y",)
    sched.check_integrity()


def test_adapter_endpoints_are_off_without_an_admin_key() -> None:
    """No --admin-api-key: load/unload answer 403 admin_disabled (before touching the engine)."""
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from treadle.server.app import create_app
    from treadle.server.settings import ServerSettings

    stub = SimpleNamespace(is_alive=True, stats={}, engine=SimpleNamespace(loras=SimpleNamespace(by_name={})),
                           shutdown=lambda: None)
    app = create_app(ServerSettings("tiny"), lambda: stub)
    with TestClient(app) as client:
        for path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            r = client.post(path, json={"lora_name": "x", "lora_path": "/nope"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled", r.text
