"""Arrival processes for the load generator.

- ``concurrency``: closed loop, ``concurrency`` workers each send their next request when the previous
  one finishes (no arrival times).
- ``poisson``: open loop, exponential gaps with mean 1 / ``rate`` (requests/s), from ``seed``.
- ``burst``: open loop, ``burst_size`` requests at once every ``burst_interval_s`` seconds.
- ``trace``: open loop, each request at (its ``arrival_s`` - the first one's) x ``time_scale``, so a slice
  of a trace (a window, a compare round) starts at once.
Open-loop modes start a request at its time whatever is in flight, unless ``max_in_flight`` caps it
(then it waits for a slot, and its TTFT counts from its scheduled time, so queueing in the client shows).
Arrival times apply to sessions: a session's first turn arrives at its time, later turns follow replies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("concurrency", "poisson", "burst", "trace")


@dataclass(frozen=True)
class Arrival:
    mode: str = "concurrency"
    concurrency: int = 1
    rate: float = 1.0
    burst_size: int = 8
    burst_interval_s: float = 10.0
    time_scale: float = 1.0
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"arrival mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate <= 0 or self.burst_size < 1 or self.burst_interval_s < 0 or self.time_scale < 0:
            raise ValueError("rate must be > 0, burst_size >= 1, burst_interval_s >= 0 and time_scale >= 0")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 or None, got {self.max_in_flight}")

    def describe(self) -> str:
        return {"concurrency": f"concurrency {self.concurrency}", "poisson": f"poisson {self.rate:g} req/s",
                "burst": f"bursts of {self.burst_size} every {self.burst_interval_s:g} s",
                "trace": f"trace timestamps x {self.time_scale:g}"}[self.mode]


def schedule(arrival: Arrival, first_arrivals: list[float | None], seed: int) -> list[float] | None:
    """Send times (seconds from start) for ``len(first_arrivals)`` sessions, or None for closed loop.

    Invariant: the result is non-decreasing and starts at 0.
    """
    n = len(first_arrivals)
    if arrival.mode == "concurrency":
        return None
    if arrival.mode == "poisson":
        gaps = np.random.default_rng(seed).exponential(1.0 / arrival.rate, size=n)
        gaps[0] = 0.0
        return np.cumsum(gaps).tolist()
    if arrival.mode == "burst":
        return [float(i // arrival.burst_size) * arrival.burst_interval_s for i in range(n)]
    if any(a is None for a in first_arrivals):
        raise ValueError("arrival mode 'trace' needs a workload with timestamps (azure-code, azure-conv, mooncake)")
    base = float(first_arrivals[0])  # type: ignore[arg-type]
    times = [(float(a) - base) * arrival.time_scale for a in first_arrivals]  # type: ignore[arg-type]
    if any(b < a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError("trace arrival times must be non-decreasing")
    return times
