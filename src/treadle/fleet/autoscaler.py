"""The autoscaling decision: a pure function from a window of fleet metrics to a replica count.

No I/O and no clock: time is the ``t`` of the samples, so a simulator can replay a trace through
:func:`decide` (or :class:`Autoscaler`, which only keeps the window). Rules, each pinned by
tests/test_autoscaler.py; ``cfg`` is :class:`AutoscalerConfig`, ``now`` the last sample's ``t``:

1. Demand of a sample: ``load = inflight + waiting`` over the fleet (requests).
2. Trend: the least-squares slope of ``load`` over the samples in the last ``trend_window_s``
   (0 with fewer than 2 samples); only a rising trend counts: ``rise = max(0, slope)``.
3. Need of sample i (ahead of demand): ``ceil((load_i + rise * startup_time_s) / target)`` with
   ``target = cfg.target_load_per_replica``: a replica started now is ready ``startup_time_s``
   later, so capacity is sized for the load expected then. If ``ttft_slo_s`` is set and the
   sample's TTFT percentile exceeds it, need_i is at least ``replicas_i + 1``.
4. Up: the samples in ``[now - upscale_delay_s, now]`` must all have need > current, and the window
   must reach back that far (its first sample at or before ``now - upscale_delay_s``). Then the
   count becomes ``min(max_replicas, need_now)`` (reason ``scale_up``).
5. Down (hysteresis): a sample's down-need is ``ceil(load_i / (target * (1 - downscale_hysteresis)))``
   (capacity kept with headroom, so up and down thresholds differ and counts do not flap). If
   at most ``downscale_breach_share`` of the samples in ``[now - downscale_delay_s, now]`` (window
   reaching back that far) breach the SLO and their largest down-need d is below current, the
   count becomes ``max(min_replicas, d)`` (reason ``scale_down``). The long default delay (300 s,
   as Kubernetes' HPA stabilisation window) and the share are what keep bursty traffic from
   flapping the fleet and isolated slow prompts from ratcheting it: docs/SIMULATION.md measured
   both on the Azure conversation trace.
6. Bounds first: a current count outside ``[min_replicas, max_replicas]`` is clamped at once
   (reasons ``below_min`` / ``above_max``). Otherwise ``hold``.

``current`` counts every replica the fleet has asked for, including those still starting, so a
scale-up is not repeated while its replicas boot.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSample:
    t: float  # seconds, any origin, increasing
    replicas: int  # ready replicas when sampled
    inflight: int  # requests running on the fleet (summed over replicas)
    waiting: int = 0  # requests queued on the fleet
    ttft_s: float | None = None  # the SLO percentile of TTFT over the last period (None: no data)

    @property
    def load(self) -> int:
        return self.inflight + self.waiting


@dataclass(frozen=True)
class AutoscalerConfig:
    min_replicas: int = 1
    max_replicas: int = 4
    target_load_per_replica: float = 4.0  # requests (in flight + waiting) one replica serves well
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 300.0
    downscale_hysteresis: float = 0.25
    downscale_breach_share: float = 0.1  # samples of the down window that may breach the SLO (rule 5)
    startup_time_s: float = 0.0  # measured time from launch to ready
    trend_window_s: float = 10.0
    ttft_slo_s: float | None = None

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError(f"min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError(f"max_replicas must be >= max(1, min_replicas), got {self.max_replicas}")
        if self.target_load_per_replica <= 0:
            raise ValueError(f"target_load_per_replica must be > 0, got {self.target_load_per_replica}")
        if not 0.0 <= self.downscale_breach_share <= 1.0:
            raise ValueError(f"downscale_breach_share must be in [0, 1], got {self.downscale_breach_share}")
        if not 0.0 <= self.downscale_hysteresis < 1.0:
            raise ValueError(f"downscale_hysteresis must be in [0, 1), got {self.downscale_hysteresis}")
        for name in ("upscale_delay_s", "downscale_delay_s", "startup_time_s", "trend_window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def window_s(self) -> float:
        """How much history :func:`decide` ever looks at."""
        return max(self.upscale_delay_s, self.downscale_delay_s, self.trend_window_s)


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    reason: str  # hold, scale_up, scale_down, below_min, above_max


def trend(window: Sequence[MetricSample], span_s: float) -> float:
    """Least-squares slope of load (requests per second) over the samples in the last ``span_s``."""
    if not window:
        return 0.0
    now = window[-1].t
    pts = [(s.t, s.load) for s in window if s.t >= now - span_s]
    if len(pts) < 2:
        return 0.0
    mt = sum(t for t, _ in pts) / len(pts)
    ml = sum(v for _, v in pts) / len(pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return 0.0 if den == 0 else sum((t - mt) * (v - ml) for t, v in pts) / den


def _breach(s: MetricSample, cfg: AutoscalerConfig) -> bool:
    return cfg.ttft_slo_s is not None and s.ttft_s is not None and s.ttft_s > cfg.ttft_slo_s


def need(s: MetricSample, rise: float, cfg: AutoscalerConfig) -> int:
    """Replicas sample ``s`` asks for, ``rise * startup_time_s`` requests ahead of it (rule 3)."""
    n = math.ceil((s.load + rise * cfg.startup_time_s) / cfg.target_load_per_replica - 1e-9)
    return max(n, s.replicas + 1) if _breach(s, cfg) else n


def _recent(window: Sequence[MetricSample], delay: float) -> list[MetricSample] | None:
    """Samples in the last ``delay`` seconds, or None when the window does not reach back that far."""
    now = window[-1].t
    if window[0].t > now - delay:
        return None
    return [s for s in window if s.t >= now - delay]


def decide(window: Sequence[MetricSample], current: int, cfg: AutoscalerConfig) -> ScaleDecision:
    """Desired replica count given the samples so far (oldest first) and the count asked for now."""
    if current < cfg.min_replicas:
        return ScaleDecision(cfg.min_replicas, "below_min")
    if current > cfg.max_replicas:
        return ScaleDecision(cfg.max_replicas, "above_max")
    if not window:
        return ScaleDecision(current, "hold")
    rise = max(0.0, trend(window, cfg.trend_window_s))
    up = _recent(window, cfg.upscale_delay_s)
    if up and all(need(s, rise, cfg) > current for s in up):
        target = min(cfg.max_replicas, need(window[-1], rise, cfg))
        if target > current:
            return ScaleDecision(target, "scale_up")
    down = _recent(window, cfg.downscale_delay_s)
    if down and sum(1 for s in down if _breach(s, cfg)) <= cfg.downscale_breach_share * len(down):
        per = cfg.target_load_per_replica * (1.0 - cfg.downscale_hysteresis)
        d = max(math.ceil(s.load / per - 1e-9) for s in down)
        if d < current:
            target = max(cfg.min_replicas, d)
            if target < current:
                return ScaleDecision(target, "scale_down")
    return ScaleDecision(current, "hold")


class Autoscaler:
    """Keeps the window for :func:`decide`: the last ``cfg.window_s`` seconds plus one older sample."""

    def __init__(self, cfg: AutoscalerConfig) -> None:
        self.cfg = cfg
        self.window: deque[MetricSample] = deque()

    def observe(self, sample: MetricSample, current: int) -> ScaleDecision:
        """Add ``sample`` and return the decision. After a change, the window restarts, so each
        delay is measured from the change on (no decision rests on samples from before it)."""
        if self.window and sample.t < self.window[-1].t:
            raise ValueError(f"sample t must not go back in time: {sample.t} < {self.window[-1].t}")
        self.window.append(sample)
        # Keep one sample at or before now - window_s, so every delay can be covered.
        while len(self.window) > 1 and self.window[1].t <= sample.t - self.cfg.window_s:
            self.window.popleft()
        d = decide(list(self.window), current, self.cfg)
        if d.replicas != current:
            self.window.clear()
            self.window.append(sample)
        return d
