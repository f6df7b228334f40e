"""Live fleet on tiny-model replicas: an Azure 2023 burst scales the fleet up and back down, no
request fails during scale-down, and a replica killed under load costs no request (streams it was
relaying continue on another replica). The exact rules are pinned in test_autoscaler.py.

Nothing here depends on how fast the machine is: a cold start takes 8-15 s on an idle 2-core machine
and longer on a busy one, so the burst is replayed again, round after round, until the scaled-up
fleet had two healthy replicas under load and one of them was killed; the scale-down is awaited as
a state. The time limits below only stop a hung test."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway_support import ThreadServer
from treadle.bench.arrivals import Arrival
from treadle.bench.loadgen import run_load
from treadle.bench.workloads import make_workload
from treadle.fleet.autoscaler import AutoscalerConfig
from treadle.fleet.controller import FleetController
from treadle.fleet.launchers import ReplicaSpec
from treadle.fleet.launchers.local import LocalLauncher
from treadle.fleet.threads import split_threads, threads_per_replica
from treadle.gateway.app import Gateway, GatewaySettings, create_gateway_app
from treadle.gateway.policies import make_policy


def test_split_threads() -> None:
    assert split_threads(1, 2) == [2]
    assert split_threads(2, 2) == [1, 1]
    assert split_threads(3, 8) == [3, 3, 2]
    assert split_threads(4, 2) == [1, 1, 1, 1]  # more replicas than cores: 1 each, shared by time
    assert threads_per_replica(3, 8) == 2
    with pytest.raises(ValueError, match="replicas must be >= 1"):
        split_threads(0)


HANG_S = 300.0  # only stops a hung test
MAX_ROUNDS = 8  # bursts of 15 s: two minutes of load for a replica to start and be killed


def wait_until(cond, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _azure_burst(vocab: int) -> list:
    # 60 trace seconds replayed in 15 (~22 req/s), prompts and outputs scaled to the tiny model
    return make_workload("azure-conv", 330, 0, 48, window="0:60", rate_scale=4.0, length_scale=0.25,
                         max_prompt_tokens=160, vocab_size=vocab)


def test_burst_scales_up_and_down_and_a_killed_replica_costs_no_request(tiny_llama: Path, tmp_path: Path) -> None:
    vocab = json.loads((tiny_llama / "config.json").read_text())["vocab_size"]
    burst = _azure_burst(vocab)
    spec = ReplicaSpec(str(tiny_llama), 1, ("--num-kv-blocks", "128", "--served-model-name", "tiny"))
    launcher = LocalLauncher(spec, log_dir=tmp_path)
    gw = Gateway(make_policy("least_loaded"), GatewaySettings(health_interval_s=0.25))
    cfg = AutoscalerConfig(min_replicas=1, max_replicas=3, target_load_per_replica=2.0, upscale_delay_s=1.0,
                           downscale_delay_s=3.0, downscale_hysteresis=0.5, trend_window_s=2.0)
    ctl = FleetController(gw, launcher, 1, cfg, interval_s=0.25)
    gw.settings.background.append(ctl.run)
    srv = ThreadServer(create_gateway_app(gw))
    counts: list[tuple[float, int, int]] = []  # (t, desired, healthy)
    stop = threading.Event()
    killed: list[str] = []

    loading = threading.Event()

    def monitor() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            healthy = [r for r in gw.replicas.replicas.values() if r.state == "healthy"]
            counts.append((time.monotonic() - t0, ctl.desired, len(healthy)))
            # kill only in a steady fleet of >= 2: while the controller drains one for a scale-down, the gateway's
            # last resort is that draining replica, and once its drain ends and it stops, killing the other would
            # leave no replica until the replacement is ready
            steady = ctl.desired >= 2 and gw.replicas.counts()["draining"] == 0
            if not killed and len(healthy) >= 2 and steady and loading.is_set():
                victim = max(healthy, key=lambda r: r.inflight)  # the busiest: it has streams and a queue
                if victim.inflight >= 1:
                    killed.append(victim.replica_id)
                    launcher.kill(victim.replica_id)
            time.sleep(0.1)

    try:
        assert wait_until(lambda: bool(gw.replicas.routable()), HANG_S), "first replica not ready"
        mon = threading.Thread(target=monitor, daemon=True)
        mon.start()
        loading.set()
        records, rounds = [], 0
        while not killed and rounds < MAX_ROUNDS:  # until the fleet grew and lost a busy replica
            records += asyncio.run(run_load(srv.base, "tiny", burst, api="completions",
                                            arrival=Arrival(mode="trace"), timeout_s=120))
            rounds += 1
        loading.clear()
        peak = max(d for _, d, _ in counts)
        assert peak >= 2, f"the fleet did not scale up: {counts[-20:]}"
        assert max(h for _, _, h in counts) >= 2
        failed = [r for r in records if not r.ok]
        assert killed, f"no busy replica to kill after {rounds} bursts: {counts[-20:]}"
        # streams the killed replica was relaying continue on another one: no request is lost
        assert not failed, [(r.status, r.error) for r in failed]
        assert len(records) == len(burst) * rounds
        # scale-down: a trickle of requests while the fleet shrinks; none may fail
        trickle = make_workload("azure-conv", 1, 0, 8, max_prompt_tokens=32, vocab_size=vocab)[0]
        body = {"model": "tiny", "prompt": trickle.prompt, "max_tokens": 8, "stream": True}
        statuses = []
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            r = httpx.post(f"{srv.base}/v1/completions", json=body, timeout=120)
            statuses.append((r.status_code, "[DONE]" in r.text and '"error"' not in r.text))
            if ctl.desired == 1 and len(ctl.launched) == 1:
                break
            time.sleep(0.2)  # a trickle, not a load
        assert ctl.desired == 1 and len(ctl.launched) == 1, f"no scale-down: {ctl.history}"
        assert all(s == (200, True) for s in statuses), statuses
        reasons = [h[2] for h in ctl.history]
        assert "scale_up" in reasons and "scale_down" in reasons
        assert ctl.startup_times and all(s > 0 for s in ctl.startup_times)
    finally:
        stop.set()
        srv.stop()
        for rid in launcher.running():  # the controller stops them on shutdown; make sure
            launcher.kill(rid)
