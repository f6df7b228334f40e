"""The served path in the simulator: the engine thread's gap between steps, the request path's spread, the
stagger of requests finishing in one step, and the
logs a replica writes to measure them (``treadle sim calibrate --serving``)."""

import asyncio
import json
import time

import pytest

from treadle.engine.scheduler import SchedulerConfig
from treadle.gateway.policies import make_policy
from treadle.sampling_params import SamplingParams
from treadle.sim.cost_model import CostModel, Fit, StepShape, from_step_point, step_point
from treadle.sim.simulator import FleetConfig, Simulation
from treadle.sim.workload import SimRequest


def req(i: str, prompt: list[int], out: int, at: float = 0.0) -> SimRequest:
    return SimRequest(i, lambda p=prompt: list(p), out, arrival_s=at)


def run(reqs: list[SimRequest], cost: CostModel, **fleet: object) -> Simulation:
    cfg = FleetConfig(engine=SchedulerConfig(max_num_batched_tokens=512, num_blocks=256), **fleet)  # type: ignore[arg-type]
    return Simulation(reqs, make_policy("round_robin"), cost, cfg).run()


def test_the_step_gap_lengthens_every_served_step_exactly() -> None:
    """A 1-s step plus a 0.25-s gap: a 3-token request's tokens at 1.25, 2.5, 3.75 (prefill, two decodes);
    nothing is added unless a path is chosen (the file's figures are a run's choice)."""
    cost = CostModel({1: Fit(a=1.0)}, latency={"direct": 0.0, "step_gap": 0.25})
    assert cost.fit_for(1).a == 1.0 and cost.with_overhead(()).step_gap_s == 0.0
    served = cost.with_overhead((), "direct")
    assert served.step_gap_s == 0.25 and served.fit_for(1).a == 1.25
    a = req("a", list(range(100, 116)), 3)
    run([a], served)
    assert (a.first_token_s, a.end_s) == (1.25, 3.75)
    b = req("b", list(range(100, 116)), 3)
    run([b], served, fast_forward=False)  # the same, step by step
    assert b.end_s == 3.75
    back = CostModel.from_json(json.loads(json.dumps(cost.to_json())))
    assert back.latency["step_gap"] == 0.25


def test_the_path_spread_draws_each_requests_latency_from_its_factors() -> None:
    """Factors (2, 0) with a 0.5-s path: each request reaches the engine at its arrival + 0 or + 1 s, by the
    seed; both occur over 20 requests, and the same seed gives the same draws."""
    cost = CostModel({1: Fit(a=1.0)}, latency={"direct": 0.5}, latency_spread=(2.0, 0.0)).with_overhead((), "direct")

    def delays(seed: int) -> list[float]:
        reqs = [req(f"r{i}", list(range(100 * i, 100 * i + 16)), 1, at=10.0 * i) for i in range(20)]
        run(reqs, cost, seed=seed)  # arrivals 10 s apart: each request finds the replica idle
        return [round(r.first_token_s - r.arrival_s - 1.0, 9) for r in reqs]  # type: ignore[operator]

    got = delays(0)
    assert set(got) == {0.0, 1.0} and delays(0) == got and delays(1) != got
    plain = CostModel({1: Fit(a=1.0)}, latency={"direct": 0.5}).with_overhead((), "direct")
    c = req("c", list(range(100, 116)), 1)
    run([c], plain)
    assert c.first_token_s == 1.5  # no spread: exactly the path
    back = CostModel.from_json(json.loads(json.dumps(CostModel({1: Fit(a=1.0)}, latency_spread=(0.5, 1.5)).to_json())))
    assert back.latency_spread == (0.5, 1.5)
    with pytest.raises(ValueError, match="latency_spread"):
        CostModel({1: Fit(a=1.0)}, latency_spread=(0.5, 0.6))


def test_step_gaps_are_the_time_between_steps_with_work() -> None:
    from treadle.sim.served_steps import step_gaps

    d, p = StepShape(decode_rows=2), StepShape(prefill_tokens=30, prefill_chunks=1)
    # (shape, seconds, end): gaps 0.5, 1.0 before decode steps; the prompt-only step after idle time is left out
    steps = [(p, 1.0, 1.0), (d, 1.0, 2.5), (d, 1.0, 4.5), (p, 1.0, 100.0), (d, 2.0, 102.0)]
    got = step_gaps(steps)
    assert got["n"] == 3 and got["mean_s"] == pytest.approx(0.5) and got["median_s"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decode rows"):
        step_gaps(steps[:1])


def test_requests_finishing_in_one_step_end_a_stagger_apart_and_send_their_next_then() -> None:
    """Closed loop of 3 clients, 1-s steps, 2-token requests, stagger 0.1 s: the first wave is prefilled in one
    step (t 1) and finishes in the next (t 2); its ends are 2.0, 2.1, 2.2 and each client's next request is
    sent at its end, so the second wave reaches the idle replica at 2.0 (one prompt: a step to 3.0) and at
    2.1 and 2.2 (both in the step 3.0-4.0). Without a stagger the three end at 2.0 and share every step."""
    served = CostModel({1: Fit(a=1.0)}, latency={"direct": 0.0, "finish_stagger": 0.1}).with_overhead((), "direct")
    assert served.finish_stagger_s == 0.1 and CostModel({1: Fit(a=1.0)}, latency={"finish_stagger": 0.1}).with_overhead(()).finish_stagger_s == 0.0

    def wave(cost: CostModel) -> list[SimRequest]:
        reqs = [SimRequest(f"r{i}", lambda i=i: list(range(100 * i, 100 * i + 16)), 2) for i in range(6)]
        run(reqs, cost, concurrency=3, fast_forward=False)
        return reqs

    got = wave(served)
    assert [round(r.end_s, 9) for r in got[:3]] == [2.0, 2.1, 2.2]
    assert [round(r.sent_s, 9) for r in got[3:]] == [2.0, 2.1, 2.2]
    assert [r.first_token_s for r in got[3:]] == [3.0, 4.0, 4.0]
    plain = wave(CostModel({1: Fit(a=1.0)}, latency={"direct": 0.0}).with_overhead((), "direct"))
    assert {r.end_s for r in plain[:3]} == {2.0} and {r.first_token_s for r in plain[3:]} == {3.0}
    with pytest.raises(ValueError, match="finish_stagger"):
        CostModel({1: Fit(a=1.0)}, latency={"finish_stagger": -0.001})


def test_finish_stagger_groups_client_ends_by_the_step_that_ended_before_them() -> None:
    from treadle.sim.served_steps import finish_stagger

    # steps end at 1, 2, 3; ends 1.001/1.005/1.011 follow the first (gaps 4 and 6 ms), 2.002 alone, 3.001/3.003 the
    # third (2 ms); an end before any step counts in no group
    got = finish_stagger([0.5, 1.005, 1.001, 1.011, 2.002, 3.003, 3.001], [3.0, 1.0, 2.0])
    assert (got["n"], got["steps"]) == (3, 2)
    assert got["mean_s"] == pytest.approx(0.004) and got["median_s"] == pytest.approx(0.004)
    assert finish_stagger([1.5, 2.5], [1.0, 2.0]) == {"mean_s": 0.0, "median_s": 0.0, "n": 0, "steps": 0}


def test_a_replicas_logs_carry_step_end_times_and_hand_overs(tiny_llama, tmp_path) -> None:
    from treadle.config import EngineConfig
    from treadle.engine.async_engine import AsyncEngine
    from treadle.sim.served_steps import EnqueueLog, StepLog, read_step_times, read_steps

    engine = AsyncEngine(EngineConfig(model=str(tiny_llama), num_kv_blocks=64, threads=1))
    steps_path, handed_path = tmp_path / "steps.jsonl", tmp_path / "enqueued.jsonl"
    engine.engine.step_observer = StepLog(str(steps_path))
    engine.enqueue_observer = EnqueueLog(str(handed_path))
    before = time.monotonic()

    async def main() -> None:
        async for _ in engine.generate(list(range(10, 40)), SamplingParams(max_tokens=4, ignore_eos=True), "q1"):
            pass

    try:
        asyncio.run(main())
    finally:
        engine.shutdown()
    handed = [json.loads(x) for x in handed_path.read_text().splitlines()]
    assert [h["id"] for h in handed] == ["q1"] and before <= handed[0]["t"] <= time.monotonic()
    timed = read_step_times(steps_path)
    assert [s.prefill_tokens for s, _, _ in timed] == [30, 0, 0, 0]
    assert timed[0][2] - timed[0][1] >= handed[0]["t"]  # the first step began after the hand-over
    assert all(b[2] - b[1] >= a[2] for a, b in zip(timed, timed[1:], strict=False))  # steps do not overlap
    assert [(s, t) for s, t, _ in timed] == read_steps(steps_path)  # the end time is not part of the point
    assert from_step_point(step_point(StepShape(decode_rows=1), 0.5) + [7.0]) == (StepShape(decode_rows=1), 0.5)
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(step_point(StepShape(decode_rows=1), 0.5)) + "\n")
    with pytest.raises(ValueError, match="9 numbers"):
        read_step_times(old)
