"""Discrete-event simulation of a gateway in front of N replicas, with Treadle's real components.

Time is simulated seconds from 0. Events, in a heap ordered by time, then kind (step ends, by replica,
before arrivals, in the order they were made, before deliveries, before step starts, before the tick):
- *arrival* (open loop: at the request's ``arrival_s``; closed loop: when its client's previous request
  ends): the gateway routes it with the real policy object: ``choose(route, [replica.load() ...])`` over the
  healthy replicas, ``on_routed``; the replica's in-flight count rises and the request is delivered to its
  real scheduler; an idle replica starts a step once every request reaching it at that instant has joined (a
  *start* event after the deliveries: the engine thread takes every queued request before it schedules, so a
  closed loop's first wave, or a trace's simultaneous arrivals, share the first step as they do for real).
- *delivery* ``request_latency_s`` after the arrival (the path outside the engine; each request's times one of
  the cost model's ``latency_spread`` factors, drawn with ``seed``): the request joins the replica's scheduler.
- *step end* of a replica (time from the cost model, stretched by core sharing): tokens are folded back;
  a first token sets TTFT; a finished request lowers in-flight, and the policy gets ``on_result`` with the
  cached tokens the replica reported (as the gateway does from ``usage``). The k-th request finishing in
  the step (k = 0, 1, ..., in the scheduler's order) ends ``k x cost.finish_stagger_s`` later for its client,
  and a closed loop sends the client's next request then (streams end one at a time, measured by
  ``calibrate --serving``). Then the replica's next step.
- *tick* every ``interval_s`` (the gateway's health interval): each replica's waiting/running is scraped
  (what ``ReplicaLoad.waiting`` holds between scrapes), replicas whose start-up has elapsed turn healthy,
  and with autoscaling the fleet controller's sample goes to the real ``Autoscaler.observe``; it launches
  replicas (ready ``startup_s`` later, at the next probe) or drains the ones ``retire_order`` picks (no new
  requests; removed, and forgotten by the policy, when their last request ends).
Latencies count from the arrival (open loop) or the send (closed loop), as ``treadle bench serve`` does.
Replicas with nothing to do have no events, so idle replicas cost nothing.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from treadle.bench.loadgen import _chains
from treadle.engine.request import Request
from treadle.engine.scheduler import SchedulerConfig
from treadle.fleet.autoscaler import Autoscaler, AutoscalerConfig, MetricSample
from treadle.fleet.controller import percentile, retire_order
from treadle.gateway.policies.base import Decision, RouteRequest, RoutingPolicy
from treadle.gateway.prefix import PrefixHasher
from treadle.sampling_params import SamplingParams
from treadle.sim.cost_model import CostModel
from treadle.sim.machine import Machine
from treadle.sim.replica import SimReplica
from treadle.sim.workload import SimRequest

STEP_END, ARRIVAL, DELIVER, START, TICK = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class FleetConfig:
    replicas: int = 1  # the fixed count, or the initial one with autoscaling
    threads: int = 1  # per replica
    replicas_per_machine: int = 0  # replicas sharing one machine of cost.cores cores (0: cores // threads)
    engine: SchedulerConfig = field(default_factory=SchedulerConfig)
    autoscale: AutoscalerConfig | None = None
    startup_s: float = 10.0  # launch to ready of a new replica
    interval_s: float = 1.0  # health probe / metrics scrape / autoscaler period
    ttft_quantile: float = 0.9  # the TTFT percentile the autoscaler compares with its SLO
    concurrency: int | None = None  # closed loop: this many clients, each one chain (session) at a time
    fast_forward: bool = True  # apply runs of pure decode steps at once (exact; see sim.fast_forward)
    step_jitter: float = 0.0  # each step's work x uniform(1 - j, 1 + j), seeded by ``seed`` (fast-forward off)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.threads < 1 or self.replicas_per_machine < 0:
            raise ValueError(f"replicas and threads must be >= 1 and replicas_per_machine >= 0, got "
                             f"{self.replicas}, {self.threads}, {self.replicas_per_machine}")
        if self.interval_s <= 0 or self.startup_s < 0:
            raise ValueError(f"interval_s must be > 0 and startup_s >= 0, got {self.interval_s}, {self.startup_s}")
        if not 0.0 <= self.step_jitter < 1.0:
            raise ValueError(f"step_jitter must be in [0, 1), got {self.step_jitter}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")


@dataclass
class _Live:
    sim: SimRequest
    origin: float
    route: RouteRequest
    decision: Decision


class Simulation:
    def __init__(self, requests: list[SimRequest], policy: RoutingPolicy, cost: CostModel, fleet: FleetConfig,
                 history: list[SimRequest] | None = None) -> None:
        """``history``: requests a one-replica fleet's replica answered before the run (a server reused across
        runs); it serves them untimed before the first event (``SimReplica.prime``), so its prefix cache starts
        as the real one did. Their outcomes are not recorded."""
        if history and (fleet.replicas != 1 or fleet.autoscale):
            raise ValueError(f"history needs a fixed fleet of 1 replica, got replicas={fleet.replicas}"
                             f"{' with autoscaling' if fleet.autoscale else ''}")
        self.requests, self.policy, self.cost, self.fleet = requests, policy, cost, fleet
        self.history = history or []
        self.now = 0.0
        self._heap: list[tuple] = []
        self._seq = itertools.count()
        self._ids = itertools.count()
        self.replicas: dict[str, SimReplica] = {}  # launched, not yet removed
        self.machines: list[tuple[Machine, int]] = []  # (machine, replicas placed on it so far)
        self.live: dict[str, _Live] = {}
        self.done: list[SimRequest] = []
        self.rejected: list[SimRequest] = []
        self.hasher = PrefixHasher(None, "sim") if policy.needs_prefix else None  # type: ignore[arg-type]
        self.ttft_log: deque[tuple[float, float]] = deque()
        self.decisions: dict[str, int] = {}
        self.lifetimes: list[tuple[float, float | None]] = []  # (launched, removed) per replica
        self._life_index: dict[str, int] = {}
        self.timeline: list[tuple[float, int, int]] = []  # (t, ready, desired) at every change
        self.scale_events: list[tuple[float, int, str]] = []
        self.autoscaler = Autoscaler(fleet.autoscale) if fleet.autoscale else None
        self.desired = fleet.replicas
        self.hit_tokens = self.queried_tokens = self.preemptions = 0
        self.busy_s = 0.0  # replica-seconds spent in steps
        self.steps = self.fast_forwarded_steps = 0
        self._chains: Iterator[list[SimRequest]] | None = None
        self._next_turn: dict[str, list[SimRequest]] = {}
        self._pending = len(requests)
        j, rng = fleet.step_jitter, random.Random(fleet.seed)
        self._jitter = (lambda: rng.uniform(1.0 - j, 1.0 + j)) if j else None
        spread, path_rng = cost.latency_spread, random.Random(f"path-{fleet.seed}")
        self._path_factor = (lambda: path_rng.choice(spread)) if spread else (lambda: 1.0)

    # -- events ------------------------------------------------------------------------------------
    def _push(self, t: float, kind: int, obj: object, version: int = 0, key: int = 0) -> None:
        # at equal times: step ends first (by replica), then arrivals, deliveries, step starts, then the tick;
        # so the order does not depend on when an event was pushed, and fast-forwarded stretches order like
        # the steps they stand for
        heapq.heappush(self._heap, (t, kind, key, next(self._seq), obj, version))

    def run(self) -> Simulation:
        """Run to the last request's end. Changes every replica, the policy and the requests' outcomes."""
        for _ in range(self.fleet.replicas):
            self._launch(ready=True)
        if self.history:
            limit = self.fleet.engine.max_model_len - 1
            next(iter(self.replicas.values())).prime(
                [Request(f"history-{k}-{h.id}", h.make_prompt()[:limit],
                         SamplingParams(max_tokens=h.max_tokens, ignore_eos=True)) for k, h in enumerate(self.history)])
        if self.fleet.concurrency:
            self._chains = iter(_chains(self.requests))  # type: ignore[arg-type]
            for _ in range(self.fleet.concurrency):
                self._next_chain(0.0)
        else:
            for r in self.requests:
                if r.arrival_s is None:
                    raise ValueError(f"request {r.id} has no arrival time: give a concurrency (closed loop)")
                self._push(r.arrival_s, ARRIVAL, r)
        self._push(self.fleet.interval_s, TICK, None)
        self._record()
        while self._heap:
            t, kind, _, _, obj, version = heapq.heappop(self._heap)
            self.now = t
            if kind == STEP_END:
                if obj.replica_id in self.replicas and version == obj.version:
                    self._step_end(obj)
            elif kind == ARRIVAL:
                self._arrive(obj)
            elif kind == DELIVER:
                self._deliver(*obj)
            elif kind == START:
                if obj.replica_id in self.replicas:
                    self._reschedule(obj.begin_step(self.now))
            elif self._pending > 0:
                self._tick()
                self._push(t + self.fleet.interval_s, TICK, None)
        for rid in list(self.replicas):
            self._collect(self.replicas[rid])
            self.lifetimes[self._life_index[rid]] = (self.lifetimes[self._life_index[rid]][0], self.now)
        return self

    def _reschedule(self, ends: dict[str, float] | None) -> None:
        for rid, t in (ends or {}).items():
            rep = self.replicas[rid]
            rep.version += 1
            self._push(t, STEP_END, rep, rep.version, rep.index)

    # -- clients -------------------------------------------------------------------------------------
    def _next_chain(self, now: float) -> None:
        chain = next(self._chains, None) if self._chains else None
        if chain:
            self._next_turn[chain[0].id] = chain[1:]
            self._push(now, ARRIVAL, chain[0])

    def _client_done(self, sim: SimRequest, ok: bool, lag: float = 0.0) -> None:
        """A closed loop's client got its answer ``lag`` after now: its next request is sent then."""
        if not self.fleet.concurrency:
            return
        rest = self._next_turn.pop(sim.id, [])
        if rest and ok:
            self._next_turn[rest[0].id] = rest[1:]
            self._push(self.now + lag, ARRIVAL, rest[0])
        else:
            self._pending -= len(rest)  # a failed turn ends its session (as the load generator does)
            self._next_chain(self.now + lag)

    # -- gateway ---------------------------------------------------------------------------------------
    def _arrive(self, sim: SimRequest) -> None:
        sim.sent_s = self.now
        cands = [r.view for r in self.replicas.values() if r.view.state == "healthy"]
        if not cands:  # the gateway answers 503 no_replica
            self.rejected.append(sim)
            self._pending -= 1
            self._client_done(sim, False)
            return
        ids = sim.make_prompt()[: self.fleet.engine.max_model_len - 1]
        route = self.hasher.route_request({"prompt": ids, "model": "sim"}, False) if self.hasher else RouteRequest()
        d = self.policy.choose(route, [v.load() for v in cands])
        self.decisions[d.reason] = self.decisions.get(d.reason, 0) + 1
        rep = self.replicas[d.replica_id]
        rep.view.inflight += 1
        self.policy.on_routed(route, d)
        req = Request(sim.id, ids, SamplingParams(max_tokens=sim.max_tokens, ignore_eos=True))
        if route.block_hashes and self.hasher.block_size == self.fleet.engine.block_size:  # type: ignore[union-attr]
            # the same chain the engine computes (same function, no adapter, same block size): reuse it
            req.block_hashes = list(route.block_hashes)
        sim.replica, sim.prompt_tokens = rep.replica_id, len(ids)
        origin = sim.arrival_s if sim.arrival_s is not None and not self.fleet.concurrency else self.now
        self.live[sim.id] = _Live(sim, origin, route, d)
        # the path outside the engine: the request reaches it this much later (by the measured spread, if any)
        delay = self.cost.request_latency_s * self._path_factor() if self.cost.request_latency_s else 0.0
        if delay > 0:
            self._push(self.now + delay, DELIVER, (rep, req))
        else:
            self._deliver(rep, req)

    def _deliver(self, rep: SimReplica, req: Request) -> None:
        cut = rep.add(req, self.now)
        if cut is not None:
            self._reschedule({rep.replica_id: cut})
        if not rep.busy:  # starts after every request reaching it now has joined (the START event)
            self._push(self.now, START, rep, key=rep.index)

    def _step_end(self, rep: SimReplica) -> None:
        res, ends = rep.end_step(self.now)
        self._reschedule(ends)
        for rid in res.first_tokens:
            live = self.live[rid]
            live.sim.first_token_s = self.now
            self.ttft_log.append((self.now, self.now - live.origin))
        for k, req in enumerate(res.finished):
            live = self.live.pop(req.request_id)
            sim, lag = live.sim, k * self.cost.finish_stagger_s
            sim.end_s, sim.output_tokens, sim.cached_tokens = self.now + lag, req.num_output_tokens, req.num_cached_tokens
            sim.make_prompt = _dropped  # free the prompt's memory
            self.done.append(sim)
            self._pending -= 1
            rep.view.inflight -= 1
            self.policy.on_result(live.route, live.decision, req.num_cached_tokens)
            self._client_done(sim, True, lag)
        if rep.view.state == "draining" and rep.view.inflight == 0:
            self._remove(rep)
            return
        self._reschedule(rep.begin_step(self.now))

    # -- fleet -----------------------------------------------------------------------------------------
    def _machine(self) -> Machine:
        per = self.fleet.replicas_per_machine or max(1, self.cost.cores // self.fleet.threads)
        if not self.cost.cores or (per * self.fleet.threads <= self.cost.cores
                                   and (per == 1 or not self.cost.co_run_slowdown)):
            return Machine(0)  # never oversubscribed, and alone or not slowed by its neighbours: nothing to share
        if not self.machines or self.machines[-1][1] >= per:
            self.machines.append((Machine(self.cost.cores, self.cost.co_run_slowdown,
                                          self.cost.oversubscribed_slowdown), 0))
        m, n = self.machines[-1]
        self.machines[-1] = (m, n + 1)
        return m

    def _launch(self, ready: bool = False) -> None:
        rid = f"r{next(self._ids)}"
        rep = SimReplica(rid, self.fleet.engine, self.cost, self._machine(), self.fleet.threads, self.fleet.fast_forward,
                         self._jitter)
        rep.index = int(rid[1:])
        rep.view.added_at = self.now
        rep.view.state = "healthy" if ready else "starting"
        rep.view.ready_at = self.now if ready else None
        self.replicas[rid] = rep
        self._life_index[rid] = len(self.lifetimes)
        self.lifetimes.append((self.now, None))

    def _remove(self, rep: SimReplica) -> None:
        self._collect(rep)
        del self.replicas[rep.replica_id]
        self.lifetimes[self._life_index[rep.replica_id]] = (self.lifetimes[self._life_index[rep.replica_id]][0],
                                                            self.now)
        self.policy.remove_replica(rep.replica_id)  # the gateway's ReplicaSet.remove callback
        self._record()

    def _collect(self, rep: SimReplica) -> None:
        kv = rep.scheduler.kv
        self.hit_tokens += kv.hit_tokens
        self.queried_tokens += kv.queried_tokens
        self.preemptions += rep.scheduler.num_preemptions
        self.busy_s += rep.busy_s
        self.steps += rep.steps
        self.fast_forwarded_steps += rep.fast_forwarded
        rep.steps = rep.fast_forwarded = 0
        kv.hit_tokens = kv.queried_tokens = rep.scheduler.num_preemptions = 0
        rep.busy_s = 0.0

    def _tick(self) -> None:
        changed = False
        for rep in self.replicas.values():
            rep.scrape()
            v = rep.view
            if v.state == "starting" and self.now >= v.added_at + self.fleet.startup_s:
                v.state, v.ready_at, changed = "healthy", self.now, True
        if self.autoscaler is not None:
            changed |= self._autoscale()
        if changed:
            self._record()

    def _autoscale(self) -> bool:
        views = [r.view for r in self.replicas.values()]
        ready = [v for v in views if v.state == "healthy"]
        inflight = sum(v.inflight for v in views)
        waiting = int(sum(v.metrics.get("waiting", 0.0) for v in ready))
        horizon = self.now - max(self.fleet.interval_s, 1.0)
        while self.ttft_log and self.ttft_log[0][0] < horizon:
            self.ttft_log.popleft()
        sample = MetricSample(self.now, len(ready), max(0, inflight - waiting), waiting,
                              percentile([v for _, v in self.ttft_log], self.fleet.ttft_quantile))
        decision = self.autoscaler.observe(sample, self.desired)  # type: ignore[union-attr]
        if decision.replicas != self.desired:
            self.desired = decision.replicas
            self.scale_events.append((self.now, self.desired, decision.reason))
        active = [v for v in views if v.state != "draining"]
        for _ in range(self.desired - len(active)):
            self._launch()
        for rid in retire_order(active)[: max(0, len(active) - self.desired)]:
            rep = self.replicas[rid]
            rep.view.state = "draining"
            if rep.view.inflight == 0:
                self._remove(rep)
        return len(active) != self.desired

    def _record(self) -> None:
        ready = sum(r.view.state == "healthy" for r in self.replicas.values())
        point = (self.now, ready, self.desired)
        if not self.timeline or self.timeline[-1][1:] != point[1:]:
            self.timeline.append(point)


def _dropped() -> list[int]:
    raise RuntimeError("bug: a finished request's prompt was asked for again")
