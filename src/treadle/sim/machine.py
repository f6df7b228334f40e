"""Processor sharing of one machine's cores between the replicas placed on it.

Algorithm: a step is a quantity of *work* (its duration with the replica's threads on free cores, from the
cost model). While the busy replicas on the machine demand ``T`` threads in all, each busy replica's work
drains at rate ``min(1, cores / T)``, divided by ``1 + oversubscribed_slowdown`` while ``T > cores`` and by
``1 + co_run_slowdown`` while ``T <= cores`` and more than one replica is busy (replicas running at once on one
machine slow each other beyond their share of cores: caches, memory bandwidth and, oversubscribed, the
context switches of time-slicing; ``treadle sim calibrate --co-run`` measures both). Whenever a step starts or ends the machine settles the work done
since the last change, recomputes the rate and returns the new end time of every busy step, which the
event loop reschedules (older events for those steps become stale). ``cores = 0``: no sharing, rate 1.
Invariant: a step's remaining work never increases and reaches 0 exactly at the end time returned.
"""

from __future__ import annotations


class Machine:
    def __init__(self, cores: int, co_run_slowdown: float = 0.0, oversubscribed_slowdown: float = 0.0) -> None:
        if cores < 0:
            raise ValueError(f"cores must be >= 0, got {cores}")
        if co_run_slowdown < 0 or oversubscribed_slowdown < 0:
            raise ValueError(f"co_run_slowdown and oversubscribed_slowdown must be >= 0, got {co_run_slowdown}, "
                             f"{oversubscribed_slowdown}")
        self.cores = cores
        self.co_run, self.oversubscribed = co_run_slowdown, oversubscribed_slowdown
        self.remaining: dict[str, float] = {}  # busy replica -> work left (seconds at rate 1)
        self.threads: dict[str, int] = {}
        self.rate = 1.0
        self._t = 0.0

    def _settle(self, now: float) -> None:
        dt = now - self._t
        if dt > 0 and self.remaining:
            for rid in self.remaining:
                self.remaining[rid] = max(0.0, self.remaining[rid] - dt * self.rate)
        self._t = now

    def _ends(self, now: float) -> dict[str, float]:
        demand = sum(self.threads[r] for r in self.remaining)
        if not self.cores or demand <= self.cores:
            self.rate = 1.0 / (1.0 + self.co_run) if len(self.remaining) > 1 else 1.0
        else:
            self.rate = self.cores / demand / (1.0 + self.oversubscribed)
        return {rid: now + w / self.rate for rid, w in self.remaining.items()}

    def start(self, replica_id: str, threads: int, work: float, now: float) -> dict[str, float]:
        """A step of ``work`` seconds begins on ``replica_id``; returns every busy step's end time."""
        self._settle(now)
        self.remaining[replica_id] = work
        self.threads[replica_id] = threads
        return self._ends(now)

    def finish(self, replica_id: str, now: float) -> dict[str, float]:
        """``replica_id``'s step ended; returns the other busy steps' (possibly earlier) end times."""
        self._settle(now)
        self.remaining.pop(replica_id, None)
        return self._ends(now)
