"""The fleet control loop: launch the initial replicas, replace dead ones, apply the autoscaler.

Every ``interval_s`` it (1) removes replicas whose process/actor died (the count asked for stays,
so they are replaced: on Ray, on whichever node has room), (2) samples the gateway's view of the
fleet into a :class:`MetricSample`, (3) asks :class:`Autoscaler` for the count and launches or
drains replicas to reach it. A scale-down drains first (no new requests, in-flight ones finish)
and only then stops the process, so it loses no request. The startup time the autoscaler plans
with is measured: each replica's launch-to-ready time, as a running mean.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from treadle.fleet.autoscaler import Autoscaler, AutoscalerConfig, MetricSample, ScaleDecision
from treadle.fleet.launchers.base import Launched, Launcher
from treadle.gateway.app import Gateway
from treadle.gateway.replicas import Replica

log = logging.getLogger("treadle.fleet")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


def retire_order(replicas: list[Replica]) -> list[str]:
    """Which replicas to retire first: not-ready ones, then the least loaded, then the newest (the simulator
    uses this too)."""
    order = sorted(replicas, key=lambda r: (r.state == "healthy", r.inflight, -r.added_at))
    return [r.replica_id for r in order]


class FleetController:
    def __init__(self, gw: Gateway, launcher: Launcher, initial: int, cfg: AutoscalerConfig | None = None,
                 interval_s: float = 1.0, ttft_quantile: float = 0.9, drain_timeout_s: float = 600.0) -> None:
        if initial < 1:
            raise ValueError(f"initial replicas must be >= 1, got {initial}")
        self.gw, self.launcher, self.interval_s = gw, launcher, interval_s
        self.autoscaler = Autoscaler(cfg) if cfg is not None else None
        self.desired = initial
        self.ttft_quantile, self.drain_timeout_s = ttft_quantile, drain_timeout_s
        self.launched: dict[str, Launched] = {}
        self.stopping: set[str] = set()
        self.startup_times: list[float] = []
        self.history: list[tuple[float, int, str]] = []  # (time, desired, reason) of every change
        self._tasks: set[asyncio.Task] = set()
        self._counted: set[str] = set()  # replicas whose startup time is measured
        self._t0 = time.monotonic()

    # -- replicas ----------------------------------------------------------------------------
    async def launch(self) -> None:
        rep = await self.launcher.start()
        self.launched[rep.replica_id] = rep
        self.gw.replicas.add(rep.url, rep.replica_id)
        log.info("launched replica %s at %s on %s", rep.replica_id, rep.url, rep.node)

    async def retire(self, replica_id: str) -> None:
        """Drain (no new requests; wait for in-flight ones), then stop and forget the replica."""
        self.stopping.add(replica_id)
        try:
            drained = await self.gw.replicas.drain(replica_id, self.drain_timeout_s)
            if not drained:
                log.warning("replica %s still had requests after %.0f s of draining", replica_id, self.drain_timeout_s)
            await self.launcher.stop(replica_id)
        finally:
            self.gw.replicas.remove(replica_id)
            self.launched.pop(replica_id, None)
            self.stopping.discard(replica_id)

    def active(self) -> list[str]:
        """Replicas counted toward the desired count: launched and not being retired."""
        return [rid for rid in self.launched if rid not in self.stopping]

    def _spawn(self, coro) -> None:  # noqa: ANN001 - a coroutine
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one step ------------------------------------------------------------------------------
    def sample(self) -> MetricSample:
        rs = [r for r in self.gw.replicas.replicas.values() if r.replica_id in self.launched]
        ready = [r for r in rs if r.state == "healthy"]
        inflight = sum(r.inflight for r in rs)
        waiting = int(sum(r.metrics.get("waiting", 0.0) for r in ready))
        now = time.monotonic()
        recent = [v for t, v in self.gw.proxy.ttft_log if t >= now - max(self.interval_s, 1.0)]
        return MetricSample(now - self._t0, len(ready), max(0, inflight - waiting), waiting,
                            percentile(recent, self.ttft_quantile))

    async def step(self) -> ScaleDecision | None:
        for rid in self.active():
            if not await self.launcher.alive(rid):
                log.warning("replica %s died: replacing it", rid)
                self.gw.replicas.remove(rid)
                self.launched.pop(rid, None)
                await self.launcher.stop(rid)
        self._measure_startup()
        decision = None
        if self.autoscaler is not None:
            decision = self.autoscaler.observe(self.sample(), self.desired)
            if decision.replicas != self.desired:
                log.info("autoscaler: %d -> %d replicas (%s)", self.desired, decision.replicas, decision.reason)
                self.desired = decision.replicas
                self.history.append((time.monotonic() - self._t0, self.desired, decision.reason))
        active = self.active()
        for _ in range(self.desired - len(active)):
            await self.launch()
        if len(active) > self.desired:
            for rid in self._victims(active, len(active) - self.desired):
                self._spawn(self.retire(rid))
        return decision

    def _victims(self, active: list[str], n: int) -> list[str]:
        rs = self.gw.replicas.replicas
        return retire_order([rs[rid] for rid in active])[:n]

    def _measure_startup(self) -> None:
        for rid in self.active():
            r = self.gw.replicas.replicas.get(rid)
            if r is not None and r.ready_at is not None and rid not in self._counted:
                self._counted.add(rid)
                self.startup_times.append(r.ready_at - r.added_at)
                if self.autoscaler is not None:
                    mean = sum(self.startup_times) / len(self.startup_times)
                    self.autoscaler.cfg = dataclasses.replace(self.autoscaler.cfg, startup_time_s=mean)

    # -- lifetime ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Launch the initial fleet, then step every ``interval_s`` until cancelled (then stop all)."""
        try:
            while True:
                try:
                    await self.step()
                except Exception:  # noqa: BLE001 - one failed step must not stop the fleet
                    log.exception("fleet step failed")
                await asyncio.sleep(self.interval_s)
        finally:
            await asyncio.shield(self.shutdown())

    async def shutdown(self) -> None:
        """Drain and stop every replica (in parallel)."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*(self.retire(rid) for rid in list(self.launched)), return_exceptions=True)
        await self.launcher.close()
