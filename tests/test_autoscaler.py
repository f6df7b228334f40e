"""The autoscaling decision, exactly, on constructed metric histories (no processes, no clock)."""

from __future__ import annotations

import pytest

from treadle.fleet.autoscaler import Autoscaler, AutoscalerConfig, MetricSample, decide, need, trend


def hist(loads: list[int], dt: float = 1.0, replicas: int = 1, ttft: list[float | None] | None = None
         ) -> list[MetricSample]:
    ttft = ttft or [None] * len(loads)
    return [MetricSample(i * dt, replicas, n, 0, t) for i, (n, t) in enumerate(zip(loads, ttft, strict=True))]


CFG = AutoscalerConfig(min_replicas=1, max_replicas=4, target_load_per_replica=4, upscale_delay_s=2,
                       downscale_delay_s=5, downscale_hysteresis=0.5, trend_window_s=0)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="max_replicas"):
        AutoscalerConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="downscale_hysteresis"):
        AutoscalerConfig(downscale_hysteresis=1.0)
    with pytest.raises(ValueError, match="target_load_per_replica"):
        AutoscalerConfig(target_load_per_replica=0)
    with pytest.raises(ValueError, match="downscale_breach_share"):
        AutoscalerConfig(downscale_breach_share=1.5)


def test_scale_up_waits_for_the_upscale_delay() -> None:
    # need = ceil(load / 4): 9 requests ask for 3 replicas
    assert decide(hist([9, 9]), 1, CFG).reason == "hold"  # the window spans 1 s < 2 s
    assert decide(hist([9, 9, 9]), 1, CFG).replicas == 3  # spans 2 s, all above 1
    assert decide(hist([9, 2, 9]), 1, CFG).reason == "hold"  # one dip inside the delay resets it
    assert decide(hist([2, 9, 9, 9]), 1, CFG).replicas == 3  # the dip is older than the delay


def test_scale_up_is_capped_at_max_and_min_applies_first() -> None:
    assert decide(hist([40, 40, 40]), 1, CFG).replicas == 4
    assert decide(hist([0]), 0, CFG) .reason == "below_min"
    assert decide(hist([0]), 6, CFG).replicas == 4


def test_scale_down_waits_for_the_downscale_delay_with_hysteresis() -> None:
    # down-need = ceil(load / (4 * 0.5)): 3 requests keep 2 replicas, 2 requests allow 1
    assert decide(hist([2] * 5), 3, CFG).reason == "hold"  # spans 4 s < 5 s
    assert decide(hist([2] * 6), 3, CFG).replicas == 1
    assert decide(hist([3] * 6), 3, CFG).replicas == 2  # 3 fits one replica's target, not with headroom
    assert decide(hist([2, 2, 2, 7, 2, 2]), 3, CFG).reason == "hold"  # the 7 inside the delay needs 4
    assert decide(hist([0] * 6), 3, CFG).replicas == 1  # never below min_replicas


def test_hysteresis_band_does_not_flap() -> None:
    # 6 requests on 2 replicas: up-need ceil(6/4) = 2 (no up), down-need ceil(6/2) = 3 (no down)
    assert decide(hist([6] * 10), 2, CFG).reason == "hold"
    no_band = AutoscalerConfig(**{**CFG.__dict__, "downscale_hysteresis": 0.0})
    assert decide(hist([4] * 10), 2, no_band).replicas == 1


def test_scale_up_ahead_of_demand_by_the_startup_time() -> None:
    cfg = AutoscalerConfig(max_replicas=8, target_load_per_replica=4, upscale_delay_s=0, downscale_delay_s=100,
                           startup_time_s=5, trend_window_s=4)
    rising = hist([0, 1, 2, 3, 4])  # +1 request/s; now 4 = exactly one replica's target
    assert trend(rising, 4) == pytest.approx(1.0)
    assert need(rising[-1], 1.0, cfg) == 3  # ceil((4 + 1 * 5) / 4): sized for the load 5 s ahead
    assert decide(rising, 1, cfg).replicas == 3
    no_startup = AutoscalerConfig(**{**cfg.__dict__, "startup_time_s": 0})
    assert decide(rising, 1, no_startup).reason == "hold"
    falling = hist([8, 7, 6, 5, 4])  # a falling trend never scales ahead (or down early)
    assert decide(falling, 1, cfg).reason == "hold"


def test_ttft_slo_breach_asks_for_one_more_and_blocks_scale_down() -> None:
    cfg = AutoscalerConfig(**{**CFG.__dict__, "ttft_slo_s": 1.0})
    slow = hist([1, 1, 1], replicas=2, ttft=[2.0, 2.0, 2.0])  # low load, but TTFT over the SLO
    assert decide(slow, 2, cfg).replicas == 3
    mixed = hist([0] * 6, replicas=3, ttft=[None, None, None, 2.0, None, None])
    assert decide(mixed, 3, cfg).reason == "hold"
    assert decide(hist([0] * 6, replicas=3, ttft=[0.5] * 6), 3, cfg).replicas == 1


def test_autoscaler_replays_a_burst_and_restarts_its_window_after_a_change() -> None:
    a = Autoscaler(CFG)
    loads = [0] * 3 + [12] * 4 + [1] * 8
    current, counts = 1, []
    for i, n in enumerate(loads):
        current = a.observe(MetricSample(float(i), current, n), current).replicas
        counts.append(current)
    # up after 2 s of 12 requests (t=5); down 5 s after the change *and* after the last 12 (t=12)
    assert counts == [1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1]
    with pytest.raises(ValueError, match="back in time"):
        a.observe(MetricSample(0.0, 1, 0), 1)


def test_a_scale_down_tolerates_the_breach_share_of_its_window() -> None:
    """21 samples over 20 s, TTFT SLO 1 s: 2 breaching samples (9.5%) allow the scale-down at the default share
    0.1, 3 (14%) block it; share 0 blocks on any breach, share 1 ignores breaches for scale-down. The
    defaults: a 300-s scale-down delay."""
    assert AutoscalerConfig().downscale_delay_s == 300.0 and AutoscalerConfig().downscale_breach_share == 0.1
    cfg = AutoscalerConfig(max_replicas=4, target_load_per_replica=4, upscale_delay_s=100, downscale_delay_s=20,
                           downscale_hysteresis=0.5, trend_window_s=0, ttft_slo_s=1.0)

    def window(breaches: int) -> list[MetricSample]:
        return hist([0] * 21, replicas=3, ttft=[2.0] * breaches + [0.5] * (21 - breaches))

    assert decide(window(2), 3, cfg).replicas == 1
    assert decide(window(3), 3, cfg).reason == "hold"
    strict = AutoscalerConfig(**{**cfg.__dict__, "downscale_breach_share": 0.0})
    assert decide(window(1), 3, strict).reason == "hold" and decide(window(0), 3, strict).replicas == 1
    lax = AutoscalerConfig(**{**cfg.__dict__, "downscale_breach_share": 1.0})
    assert decide(window(21), 3, lax).replicas == 1
