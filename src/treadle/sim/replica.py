"""One simulated replica: Treadle's real :class:`Scheduler` (and KV cache manager) with a cost model
in place of the model runner.

A step is: ``scheduler.schedule()`` -> its shape -> a duration from the cost model (stretched by core
sharing, see ``machine``) -> at its end ``scheduler.update_from_output()`` with one token sampled for each
request whose chunk reached its last known token (the engine samples exactly those). Sampled tokens are
``SIM_TOKEN``; requests run with ``ignore_eos`` and stop at their trace output length (or the context).
So batching, chunked prefill, preemption and prefix-cache hits are the scheduler's own. Runs of pure
decode steps may be fast-forwarded exactly (``fast_forward``). A fresh replica's first step lasts the cost
model's ``cold_start_s`` longer (a prefill, never fast-forwarded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from treadle.engine.outputs import RunnerOutput, SchedulerOutput
from treadle.engine.request import Request
from treadle.engine.scheduler import Scheduler, SchedulerConfig
from treadle.gateway.replicas import Replica
from treadle.sim import fast_forward
from treadle.sim.cost_model import CostModel, shape_of
from treadle.sim.machine import Machine

SIM_TOKEN = 7  # the token every simulated step "samples"


@dataclass
class StepResult:
    first_tokens: list[str] = field(default_factory=list)  # request ids that got their first token
    finished: list[Request] = field(default_factory=list)


class SimReplica:
    """A replica's engine state plus the gateway's view of it (a real ``gateway.replicas.Replica``)."""

    def __init__(self, replica_id: str, config: SchedulerConfig, cost: CostModel, machine: Machine,
                 threads: int = 1, fast: bool = True, jitter: Callable[[], float] | None = None) -> None:
        self.replica_id, self.cost, self.machine, self.threads = replica_id, cost, machine, threads
        self.fast = fast and not machine.cores and jitter is None  # fast-forward only on unshared, exact steps
        self.jitter = jitter  # a factor drawn for every step's work (validation's noise), or None
        self.scheduler = Scheduler(config)
        self.view = Replica(replica_id, f"sim://{replica_id}")  # state, inflight and scraped metrics
        self.current: SchedulerOutput | None = None
        self.stretch: fast_forward.Stretch | None = None  # a fast-forward stretch in progress
        self.fit = cost.fit_for(threads)
        self._pending = 0  # stretch steps not yet applied to the scheduler
        self.index = 0  # launch order (orders simultaneous step ends)
        self.version = 0  # bumps whenever the current step's end time changes (older events are stale)
        self.busy_s = 0.0  # simulated seconds spent in steps
        self.steps = 0
        self.fast_forwarded = 0  # steps applied by fast-forward
        self._step_started = 0.0
        # a fresh replica's cold start, on its first step: the cold request path holds up the requests behind it
        # (one event loop, one engine thread), so it delays the replica, not just its first request
        self._cold_extra = cost.cold_start_s
        self._stats = {"waiting": 0.0, "running": 0.0}  # the scheduler as of the last step's end (what /metrics says)

    @property
    def busy(self) -> bool:
        return self.current is not None or self.stretch is not None

    def add(self, request: Request, now: float) -> float | None:
        """Queue ``request``. A running fast-forward stretch is cut: the steps ended by ``now`` and the one in
        progress are applied, and the new end time (of that step) is returned for rescheduling; else None."""
        self.scheduler.add_request(request)
        if self.stretch is None:
            return None
        st = self.stretch
        m = st.in_progress(now)
        applied = st.k - self._pending
        fast_forward.advance(self.scheduler, m + 1 - applied, SIM_TOKEN)  # 0 when already cut at step m
        self.steps += m + 1 - applied
        self.fast_forwarded += m + 1 - applied
        st.k, self._pending = m + 1, 0  # the stretch now ends with step m
        return st.end(m)

    def begin_step(self, now: float) -> dict[str, float] | None:
        """Start a step (or a fast-forward stretch) if there is work; returns the end times of the busy
        steps on this replica's machine, to (re)schedule (None: it stays idle)."""
        if self.busy or not self.scheduler.has_unfinished():
            return None
        self._step_started = now
        if self.fast:
            k = fast_forward.stretch_length(self.scheduler)
            if k:
                self.stretch = fast_forward.stretch(self.scheduler, self.fit, k, now)
                self._pending = k
                return {self.replica_id: self.stretch.last_end}
        out = self.scheduler.schedule()
        if not out.scheduled:  # only finished-id bookkeeping: nothing to compute
            return None
        self.current = out
        shape = shape_of(out, self.scheduler.config.block_size)
        work = self.fit.seconds(shape) * (self.jitter() if self.jitter else 1.0) + self._cold_extra
        self._cold_extra = 0.0
        if not self.machine.cores:
            return {self.replica_id: now + work}
        return self.machine.start(self.replica_id, self.threads, work, now)

    def end_step(self, now: float) -> tuple[StepResult, dict[str, float] | None]:
        """Fold the step's tokens back into the scheduler; returns (what happened, other steps' new ends)."""
        self.busy_s += now - self._step_started
        if self.stretch is not None:
            fast_forward.advance(self.scheduler, self._pending, SIM_TOKEN)
            self.steps += self._pending
            self.fast_forwarded += self._pending
            self.stretch, self._pending = None, 0
            return StepResult(), None
        out, self.current = self.current, None
        assert out is not None, "end_step without a step"
        self.steps += 1
        sampled = {s.request_id: SIM_TOKEN for s in out.scheduled if s.sample}
        reqs = self.scheduler.requests
        fresh = [rid for rid in sampled if rid in reqs and reqs[rid].num_output_tokens == 0]
        updated = self.scheduler.update_from_output(out, RunnerOutput(sampled))
        self._stats = {"waiting": float(self.scheduler.num_waiting), "running": float(self.scheduler.num_running)}
        result = StepResult(fresh, [r for r in updated if r.is_finished])
        return result, (self.machine.finish(self.replica_id, now) if self.machine.cores else None)

    def prime(self, requests: list[Request], batch: int = 16) -> None:
        """Run ``requests`` through the scheduler untimed, ``batch`` at a time in their order, each to its
        ``max_tokens``: what a server that answered them before the run left in its prefix cache (the blocks
        it freed, in that LRU order). Changes the scheduler's cache only: its hit, query and preemption counts
        are zero afterwards, and no time, step or busy second is counted. The replica must be idle."""
        if self.busy or self.scheduler.has_unfinished():
            raise ValueError(f"replica {self.replica_id}: prime needs an idle replica with nothing queued")
        sched = self.scheduler
        for i in range(0, len(requests), batch):
            for req in requests[i : i + batch]:
                sched.add_request(req)
            idle = 0
            while sched.has_unfinished():
                out = sched.schedule()
                idle = 0 if out.scheduled else idle + 1
                if idle > 1:  # twice nothing to run with requests left: they can never fit this engine
                    raise ValueError(f"replica {self.replica_id}: prime cannot schedule "
                                     f"{sched.num_waiting} waiting request(s) (longer than its KV blocks hold?)")
                sampled = {s.request_id: SIM_TOKEN for s in out.scheduled if s.sample}
                sched.update_from_output(out, RunnerOutput(sampled))
        sched.kv.hit_tokens = sched.kv.queried_tokens = sched.num_preemptions = 0

    def scrape(self) -> None:
        """What the gateway's health probe reads from ``/metrics``: waiting and running requests as of the last
        step's end, as a real replica reports them (its engine thread refreshes the stats after each step; a
        request arriving mid-step waits in its queue, uncounted, until the next one starts)."""
        self.view.metrics = dict(self._stats)
