"""The replica set: each replica's state, load and health, updated by probing it.

A replica is any OpenAI-compatible server with a Prometheus ``/metrics``: Treadle (``treadle_*``
names) or vLLM (``vllm:*`` names, mapped in ``METRIC_NAMES``). States:

- ``starting``: added, not yet seen ready; gets no traffic.
- ``healthy``: routable.
- ``unhealthy``: ``unhealthy_after`` probes failed in a row (or a request could not connect);
  put back after ``healthy_after`` good probes in a row.
- ``draining``: gets no new requests while a healthy replica can take them; its in-flight requests
  finish; then it can be stopped. When no healthy replica serves a request's model (the last healthy
  one failed during a scale-down), a draining replica whose last probe succeeded takes it rather than
  the client getting 503: :meth:`ReplicaSet.candidates`.

``inflight`` is the gateway's own count of requests sent to the replica and not finished; the
replica's waiting queue and prefix-cache counters come from its last metrics scrape.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field

import httpx

from treadle.gateway.policies.base import ReplicaLoad

log = logging.getLogger("treadle.gateway")

# our name -> (treadle name, vLLM name, older vLLM V1 name): the first present wins
METRIC_NAMES = {
    "running": ("treadle_num_requests_running", "vllm:num_requests_running"),
    "waiting": ("treadle_num_requests_waiting", "vllm:num_requests_waiting"),
    "kv_usage": ("treadle_kv_cache_usage_perc", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "prefix_queries": ("treadle_prefix_cache_queries_total", "vllm:prefix_cache_queries_total",
                       "vllm:gpu_prefix_cache_queries_total"),
    "prefix_hits": ("treadle_prefix_cache_hits_total", "vllm:prefix_cache_hits_total",
                    "vllm:gpu_prefix_cache_hits_total"),
}
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Our names -> values (summed over label sets) from a Treadle or vLLM exposition."""
    by_name: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            by_name[m.group(1)] = by_name.get(m.group(1), 0.0) + float(m.group(3))
    out = {}
    for ours, names in METRIC_NAMES.items():
        for name in names:
            if name in by_name:
                out[ours] = by_name[name]
                break
    return out


@dataclass
class Replica:
    replica_id: str
    url: str
    state: str = "starting"
    inflight: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)  # its /v1/models cards
    ok_streak: int = 0
    fail_streak: int = 0
    last_error: str = ""
    added_at: float = field(default_factory=time.monotonic)
    ready_at: float | None = None  # monotonic time it first became healthy

    @property
    def routable(self) -> bool:
        return self.state == "healthy"

    def serves(self, model: str | None) -> bool:
        """Whether it may get a request for ``model`` (a replica that lists no models may get any)."""
        return model is None or not self.models or self.card(model) is not None

    def card(self, model: str) -> dict | None:
        """Its /v1/models card for ``model``, or None when it does not serve it."""
        return next((c for c in self.models if c.get("id") == model), None)

    def load(self) -> ReplicaLoad:
        return ReplicaLoad(self.replica_id, self.inflight, int(self.metrics.get("waiting", 0)))


class ReplicaSet:
    """All replicas of the gateway; changed only on the event loop."""

    def __init__(self, client: httpx.AsyncClient, api_key: str | None = None, unhealthy_after: int = 2,
                 healthy_after: int = 1, probe_timeout_s: float = 2.0) -> None:
        self.client, self.api_key = client, api_key
        self.unhealthy_after, self.healthy_after, self.probe_timeout_s = unhealthy_after, healthy_after, probe_timeout_s
        self.replicas: dict[str, Replica] = {}
        self.on_remove: list = []  # callbacks(replica_id) when a replica leaves or fails

    def add(self, url: str, replica_id: str | None = None) -> Replica:
        rid = replica_id or url.rstrip("/").split("//")[-1]
        if rid in self.replicas:
            raise ValueError(f"replica {rid!r} is already in the set")
        r = Replica(rid, url.rstrip("/"))
        self.replicas[rid] = r
        return r

    def remove(self, replica_id: str) -> None:
        self.replicas.pop(replica_id, None)
        for cb in self.on_remove:
            cb(replica_id)

    def routable(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.routable]

    def candidates(self, model: str | None = None, exclude: set[str] | frozenset[str] = frozenset()
                   ) -> tuple[list[Replica], bool]:
        """The replicas a request for ``model`` may go to, and whether they are a last resort.

        Healthy replicas serving ``model`` (not in ``exclude``) when there are any. Otherwise the
        draining ones that serve it and answered their last probe (``fail_streak == 0``): a drain
        is for spare capacity, and a request it would turn away has nowhere else to go. Their
        in-flight count then delays the drain, which ends once they finish. Changes nothing.
        """
        healthy = [r for r in self.replicas.values()
                   if r.routable and r.replica_id not in exclude and r.serves(model)]
        if healthy:
            return healthy, False
        return [r for r in self.replicas.values() if r.state == "draining" and r.fail_streak == 0
                and r.replica_id not in exclude and r.serves(model)], True

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("starting", "healthy", "unhealthy", "draining")}
        for r in self.replicas.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def mark_failed(self, r: Replica, why: str) -> None:
        """A request could not reach ``r``: take it out now; probes put it back when it answers."""
        r.last_error, r.ok_streak = why, 0
        r.fail_streak = max(r.fail_streak, self.unhealthy_after)
        if r.state == "healthy":
            log.warning("replica %s taken out: %s", r.replica_id, why)
            r.state = "unhealthy"
            for cb in self.on_remove:  # its cache may be gone (a restart): forget the index
                cb(r.replica_id)

    async def probe(self, r: Replica) -> bool:
        """Check readiness, scrape metrics and the served models; update ``r.state``. True if ready."""
        ok = False
        try:
            resp = await self.client.get(f"{r.url}/ready", timeout=self.probe_timeout_s)
            if resp.status_code == 404:  # vLLM has no /ready
                resp = await self.client.get(f"{r.url}/health", timeout=self.probe_timeout_s)
            ok = resp.status_code == 200
            r.last_error = "" if ok else f"readiness {resp.status_code}"
            if ok:
                m = await self.client.get(f"{r.url}/metrics", timeout=self.probe_timeout_s)
                if m.status_code == 200:
                    r.metrics = parse_metrics(m.text)
                # Every probe: adapters are loaded and unloaded at run time.
                mr = await self.client.get(f"{r.url}/v1/models", headers=self.headers,
                                           timeout=self.probe_timeout_s)
                if mr.status_code == 200:
                    r.models = list(mr.json().get("data") or [])
        except (httpx.HTTPError, ValueError) as e:
            r.last_error, ok = repr(e), False
        self._update(r, ok)
        return ok

    def _update(self, r: Replica, ok: bool) -> None:
        if ok:
            r.ok_streak, r.fail_streak = r.ok_streak + 1, 0
        else:
            r.ok_streak, r.fail_streak = 0, r.fail_streak + 1
        if r.state == "draining":
            return
        if ok and r.state != "healthy" and (r.state == "starting" or r.ok_streak >= self.healthy_after):
            log.info("replica %s is %s", r.replica_id, "ready" if r.state == "starting" else "back")
            r.state = "healthy"
            if r.ready_at is None:
                r.ready_at = time.monotonic()
        elif not ok and r.state == "healthy" and r.fail_streak >= self.unhealthy_after:
            log.warning("replica %s is unhealthy: %s", r.replica_id, r.last_error)
            self.mark_failed(r, r.last_error)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(r) for r in list(self.replicas.values())))

    async def run_health_checks(self, interval_s: float) -> None:
        while True:
            await self.probe_all()
            await asyncio.sleep(interval_s)

    async def drain(self, replica_id: str, timeout_s: float = 600.0) -> bool:
        """Stop routing to the replica and wait until its in-flight requests end. True if drained."""
        r = self.replicas.get(replica_id)
        if r is None:
            return True
        r.state = "draining"
        deadline = time.monotonic() + timeout_s
        while r.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return r.inflight == 0
