"""A simulation's outcome as the same summary ``treadle bench serve`` writes, plus fleet figures.

Per run: ``summary`` (``bench.summary.summarize`` over one ``RequestRecord`` per request: TTFT, TPOT and
end-to-end percentiles, req/s, goodput under the SLO), ``slo_attainment`` (share of completed requests
meeting every SLO bound), ``prefix_cache_hit_rate`` (the replicas' own counters: hit / queried prompt
tokens at admission, as ``/metrics`` reports them), ``replica_hours`` (launch to removal of every replica,
start-up included, as a cloud bills it), ``replicas_over_time`` ([t, ready, desired] at each change),
``steady_req_s`` (completions per second while requests arrive, from 10% of the last
arrival time to it), ``latency_over_time`` (per minute of arrival: requests, TTFT p50/p90), ``routing`` (decision reasons),
``preemptions``, ``utilisation`` (busy share of replica time) and ``scale_events``.
"""

from __future__ import annotations

import numpy as np

from treadle.bench.loadgen import RequestRecord
from treadle.bench.summary import meets_slo, summarize
from treadle.sim.simulator import Simulation


def records(sim: Simulation) -> list[RequestRecord]:
    out = []
    for r in sim.done:
        origin = r.arrival_s if r.arrival_s is not None and not sim.fleet.concurrency else r.sent_s
        out.append(RequestRecord(id=r.id, start_s=r.sent_s or 0.0, ttft_s=r.first_token_s - origin,
                                 itl_s=[], e2e_s=r.end_s - origin, prompt_tokens=r.prompt_tokens,
                                 output_tokens=r.output_tokens, cached_tokens=r.cached_tokens, status=200,
                                 error=None, scheduled_s=r.arrival_s, session=r.session, turn=r.turn,
                                 replica=r.replica or None))
    out += [RequestRecord(id=r.id, start_s=r.sent_s or 0.0, ttft_s=None, itl_s=[], e2e_s=None, prompt_tokens=0,
                          output_tokens=0, cached_tokens=0, status=503, error="no replica")
            for r in sim.rejected]
    return out


def latency_over_time(sim: Simulation, bucket_s: float = 60.0) -> list[dict]:
    by: dict[int, list[float]] = {}
    for r in sim.done:
        origin = r.arrival_s if r.arrival_s is not None and not sim.fleet.concurrency else r.sent_s
        by.setdefault(int(origin // bucket_s), []).append(r.first_token_s - origin)
    return [{"t_s": k * bucket_s, "requests": len(v), "ttft_p50_ms": float(np.percentile(v, 50)) * 1000,
             "ttft_p90_ms": float(np.percentile(v, 90)) * 1000} for k, v in sorted(by.items())]


def steady_req_s(sim: Simulation) -> float | None:
    """Completions per second between 10% of the last arrival time and the last arrival (open loop): the
    rate the fleet sustains while traffic is arriving, without the start and the final drain."""
    arrivals = [r.arrival_s for r in sim.requests if r.arrival_s is not None]
    if sim.fleet.concurrency or not arrivals:
        return None
    hi = max(arrivals)
    lo = 0.1 * hi
    n = sum(1 for r in sim.done if lo <= r.end_s <= hi)
    return n / (hi - lo) if hi > lo else None


def result(sim: Simulation, slo: dict[str, float] | None) -> dict:
    recs = records(sim)
    duration = max((r.end_s for r in sim.done), default=0.0) or 1e-9
    summary = summarize(recs, duration, slo)
    ok = [r for r in recs if r.ok]
    hours = sum((end - start) for start, end in sim.lifetimes if end is not None) / 3600.0
    summary["prefix_cache_hit_rate"] = sim.hit_tokens / sim.queried_tokens if sim.queried_tokens else None
    return {
        "summary": summary,
        "slo_attainment": (sum(meets_slo(r, slo) for r in ok) / len(recs) if recs else None) if slo else None,
        "prefix_cache_hit_rate": summary["prefix_cache_hit_rate"],
        "replica_hours": hours,
        "steady_req_s": steady_req_s(sim),
        "mean_replicas": hours * 3600.0 / duration,
        "max_replicas": max((p[1] for p in sim.timeline), default=0),
        "replicas_over_time": [[round(t, 3), a, b] for t, a, b in sim.timeline],
        "latency_over_time": latency_over_time(sim),
        "routing": dict(sim.decisions),
        "preemptions": sim.preemptions,
        "steps": sim.steps,
        "fast_forwarded_steps": sim.fast_forwarded_steps,
        "utilisation": sim.busy_s / (hours * 3600.0) if hours else None,
        "scale_events": [[round(t, 3), n, why] for t, n, why in sim.scale_events],
    }
