"""Gateway metrics (``treadle_gateway_`` prefix, names in docs/METRICS.md), in the server's style.

Per replica: routed requests by final status, retries by cause; routing decisions by policy and
reason; gateway-side TTFT and end-to-end latency histograms over all replicas; and, read at
scrape time, the replicas by state and each one's in-flight count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from treadle.gateway.replicas import ReplicaSet
from treadle.server.metrics import _E2E_BUCKETS, _TTFT_BUCKETS, CONTENT_TYPE

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]


class _ReplicaCollector(Collector):
    def __init__(self, replicas: Callable[[], ReplicaSet]) -> None:
        self.replicas = replicas

    def collect(self) -> Iterator:
        rs = self.replicas()
        g = GaugeMetricFamily("treadle_gateway_replicas", "Replicas by state.", labels=["state"])
        for state, n in rs.counts().items():
            g.add_metric([state], float(n))
        yield g
        inflight = GaugeMetricFamily("treadle_gateway_replica_inflight", "Requests in flight per replica.",
                                     labels=["replica"])
        waiting = GaugeMetricFamily("treadle_gateway_replica_waiting", "Waiting queue per replica (last scrape).",
                                    labels=["replica"])
        for r in rs.replicas.values():
            inflight.add_metric([r.replica_id], float(r.inflight))
            waiting.add_metric([r.replica_id], float(r.metrics.get("waiting", 0.0)))
        yield inflight
        yield waiting


class GatewayMetrics:
    def __init__(self, replicas: Callable[[], ReplicaSet]) -> None:
        self.registry = r = CollectorRegistry()
        self.routed = Counter("treadle_gateway_requests", "Requests by the replica that answered them and the "
                              "final HTTP status (499: the client left).", ["replica", "status"], registry=r)
        self.retries = Counter("treadle_gateway_retries", "Requests retried on another replica, by the replica "
                               "that failed and why (connect, 429, 503, stream_start).", ["replica", "reason"],
                               registry=r)
        self.decisions = Counter("treadle_gateway_routing_decisions", "Routing decisions by policy and reason.",
                                 ["policy", "reason"], registry=r)
        self.draining_fallbacks = Counter("treadle_gateway_draining_fallbacks", "Requests (and stream "
                                          "continuations) sent to a draining replica because no healthy "
                                          "replica served their model.", ["replica"], registry=r)
        self.ttft = Histogram("treadle_gateway_time_to_first_token_seconds", "Arrival at the gateway to the "
                              "first token relayed (streaming requests).", registry=r, buckets=_TTFT_BUCKETS)
        self.e2e = Histogram("treadle_gateway_e2e_request_latency_seconds", "Arrival at the gateway to the "
                             "last byte relayed.", registry=r, buckets=_E2E_BUCKETS)
        self.rejected = Counter("treadle_gateway_rejected", "Requests answered by the gateway itself, by "
                                "status and code.", ["status", "code"], registry=r)
        self.route_decisions = Counter("treadle_gateway_route_decisions", "Requests for a route alias by the "
                                       "version the route sent them to.", ["alias", "version"], registry=r)
        self.admin = Counter("treadle_gateway_admin_requests", "Admin API calls by endpoint and status.",
                             ["endpoint", "status"], registry=r)
        r.register(_ReplicaCollector(replicas))

    def render(self) -> bytes:
        return generate_latest(self.registry)
