"""Prometheus metrics, ``treadle_`` prefix, labelled by model; names documented in docs/METRICS.md.

Request counts and latency histograms also carry ``model_name`` (the base model or the LoRA
adapter a request named) and ``model_version`` (the adapter's content hash; ``base`` for the
base model), so versions of a model can be compared side by side (docs/LORA.md).

Request metrics are observed by the server as outputs arrive; engine state (running, waiting,
KV usage, prefix-cache totals) is read from ``AsyncEngine.stats`` at scrape time by a collector,
so it is never stale and needs no background task. Each app has its own registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # the gateway imports this module: no engine code at run time
    from treadle.engine.outputs import RequestOutput


disable_created_metrics()  # no *_created series: scrapers only need the values
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                 20.0, 40.0, 80.0, 160.0, 640.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_E2E_BUCKETS = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


class _EngineCollector(Collector):
    def __init__(self, model: str, stats: Callable[[], dict[str, float] | None]) -> None:
        self.model, self.stats = model, stats

    def collect(self) -> Iterator:
        stats = self.stats() or {}
        m = [self.model]
        for name, key, doc in (
            ("treadle_num_requests_running", "running", "Sequences in the running batch."),
            ("treadle_num_requests_waiting", "waiting", "Sequences waiting to be scheduled."),
            ("treadle_kv_cache_usage_perc", "kv_usage", "Fraction of KV-cache blocks in use (0 to 1)."),
        ):
            g = GaugeMetricFamily(name, doc, labels=["model"])
            g.add_metric(m, float(stats.get(key, 0.0)))
            yield g
        for name, key, doc in (
            ("treadle_prefix_cache_queries", "prefix_cache_queried_tokens", "Prompt tokens looked up in the prefix cache."),
            ("treadle_prefix_cache_hits", "prefix_cache_hit_tokens", "Prompt tokens found in the prefix cache."),
        ):
            c = CounterMetricFamily(name, doc, labels=["model"])
            c.add_metric(m, float(stats.get(key, 0.0)))
            yield c


BASE_VERSION = "base"  # model_version of requests on the base model


class ServerMetrics:
    def __init__(self, model: str, stats: Callable[[], dict[str, float] | None]) -> None:
        self.model = model
        self.registry = CollectorRegistry()
        r, lab = self.registry, ["model", "model_name", "model_version"]
        self.ttft = Histogram("treadle_time_to_first_token_seconds", "Time to first token: arrival to first "
                              "output token.", lab, registry=r, buckets=_TTFT_BUCKETS)
        self.itl = Histogram("treadle_inter_token_latency_seconds", "Time between consecutive output tokens "
                             "of a sequence.", lab, registry=r, buckets=_ITL_BUCKETS)
        self.e2e = Histogram("treadle_e2e_request_latency_seconds", "Arrival to last token of a sequence.",
                             lab, registry=r, buckets=_E2E_BUCKETS)
        self.queue = Histogram("treadle_request_queue_time_seconds", "Arrival to first scheduled.", lab,
                               registry=r, buckets=_E2E_BUCKETS)
        self.requests = Counter("treadle_requests", "Finished sequences by finish_reason, and rejected "
                                "requests by HTTP status.", [*lab, "finish_reason", "status"], registry=r)
        self.prompt_tokens = Counter("treadle_prompt_tokens", "Prompt tokens of admitted prompts.", lab,
                                     registry=r)
        self.generation_tokens = Counter("treadle_generation_tokens", "Generated tokens.", lab, registry=r)
        r.register(_EngineCollector(model, stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def rejected(self, status: int) -> None:
        self.requests.labels(self.model, self.model, BASE_VERSION, "none", str(status)).inc()

    def tracker(self, num_seqs: int, model_name: str | None = None, model_version: str = BASE_VERSION
                ) -> RequestTracker:
        return RequestTracker(self, num_seqs, (self.model, model_name or self.model, model_version))


class RequestTracker:
    """Observes one API request's outputs: inter-token gaps live, the rest when a sequence ends."""

    def __init__(self, metrics: ServerMetrics, num_seqs: int, labels: tuple[str, str, str]) -> None:
        self.m, self.lab = metrics, labels
        self._itl = metrics.itl.labels(*labels)
        self._gen = metrics.generation_tokens.labels(*labels)
        self.unfinished = num_seqs
        self.last: dict[tuple[int, int], float] = {}
        self.counted_prompts: set[int] = set()

    def observe(self, pidx: int, out: RequestOutput, status: int = 200) -> None:
        m, now = self.m, time.time()
        if pidx not in self.counted_prompts:
            self.counted_prompts.add(pidx)
            m.prompt_tokens.labels(*self.lab).inc(len(out.prompt_token_ids))
        for co in out.outputs:
            n = len(co.delta_token_ids)
            if n:
                self._gen.inc(n)
                key = (pidx, co.index)
                prev = self.last.get(key)
                if prev is not None:
                    gap = (now - prev) / n
                    for _ in range(n):
                        self._itl.observe(gap)
                self.last[key] = now
            if co.finish_reason is not None:
                self._finished(co.finish_reason, co.metrics, status)

    def _finished(self, reason: str, metrics: object, status: int) -> None:
        m = self.m
        self.unfinished -= 1
        m.requests.labels(*self.lab, reason, str(status if reason != "abort" else 499)).inc()
        if metrics is None:
            return
        ttft, qt = metrics.ttft, metrics.queue_time  # type: ignore[attr-defined]
        if ttft is not None:
            m.ttft.labels(*self.lab).observe(max(0.0, ttft))
        if qt is not None:
            m.queue.labels(*self.lab).observe(max(0.0, qt))
        fin, arr = metrics.finished_time, metrics.arrival_time  # type: ignore[attr-defined]
        if fin is not None:
            m.e2e.labels(*self.lab).observe(max(0.0, fin - arr))

    def aborted(self) -> None:
        """The client went away: every sequence not yet finished counts as aborted (status 499)."""
        if self.unfinished > 0:
            self.m.requests.labels(*self.lab, "abort", "499").inc(self.unfinished)
            self.unfinished = 0
