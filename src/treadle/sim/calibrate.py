"""``treadle sim calibrate``: time the real engine's steps at chosen batch shapes and fit the cost model.

Procedure, per thread count: build an ``LLMEngine`` (the model given, ``--num-kv-blocks`` blocks, prefix
caching on) and run scenarios of token-id prompts through ``engine.step()``, timing every step (schedule,
model, update, output processing: what a replica's loop pays) and recording its shape (``shape_of``):
- prefill: a chunk of P tokens (32, 128, 256, 512) after S cached tokens (0, 512, 1024), the S tokens
  made cached by a previous request with the same prefix;
- decode: B requests (1, 2, 4, 8, 16, 32) that share an L-token prefix (64, 256, 1024) and then
  generate 8 tokens each (their prefill steps are recorded too: mixed shapes).
A few small scenarios are run first unrecorded (warm-up). Then the coefficients of the linear model
(``cost_model``) are fitted by non-negative least squares weighted by 1/time (relative error, so small
decode steps count as much as long prefills); the error is reported as the mean and max absolute
percentage error over the measured steps (in-sample) and over a held-out repetition (out-of-sample).
One fit for every workload: nothing here knows what will be simulated.

Clock (``--clock``): ``cpu`` (default) times a step by the process's CPU time divided by its threads, which
is what the step would take with its cores to itself and barely moves when other work shares the machine;
``wall`` times it by the wall clock (right on an idle machine, inflated by any contention). Torch's
OpenMP threads spin while they wait, so CPU time also counts a busy-wait for a straggling thread.
"""

from __future__ import annotations

import time

import numpy as np

from treadle.sim.cost_model import COEFFS, CostModel, Fit, StepShape, shape_of

PREFILL = [(p, s) for s in (0, 512, 1024) for p in (32, 128, 256, 512)]
DECODE = [(b, ln) for ln in (64, 256, 1024) for b in (1, 2, 4, 8, 16, 32)]


def _ids(rng: np.random.Generator, n: int, vocab: int = 40000) -> list[int]:
    return rng.integers(min(100, vocab // 4), vocab, size=n).tolist()


CLOCKS = ("cpu", "wall")


def _timed_steps(engine, out: list[tuple[StepShape, float]], clock: str = "cpu") -> None:  # noqa: ANN001 - LLMEngine
    from treadle.engine.request import FinishReason

    sched = engine.scheduler
    threads = engine.config.num_threads
    now = time.perf_counter if clock == "wall" else (lambda: time.process_time() / threads)
    while sched.has_unfinished():
        t0 = now()
        plan = sched.schedule()
        result = engine.runner.execute(plan)
        updated = sched.update_from_output(plan, result)
        _, stopped = engine.outputs.process(updated)
        for rid in stopped:
            sched.finish_request(rid, FinishReason.STOP)
        dt = now() - t0
        if plan.scheduled:
            out.append((shape_of(plan), dt))


def measure(engine, seed: int = 0, clock: str = "cpu", prefill: list[tuple[int, int]] | None = None,  # noqa: ANN001
            decode: list[tuple[int, int]] | None = None) -> list[tuple[StepShape, float]]:
    """Run the scenarios once through ``engine``; (shape, seconds) of every step."""
    from treadle.sampling_params import SamplingParams

    rng = np.random.default_rng(seed)
    vocab = min(40000, engine.model_config.vocab_size)
    out: list[tuple[StepShape, float]] = []
    one = SamplingParams(max_tokens=1, ignore_eos=True)
    for p, s in PREFILL if prefill is None else prefill:
        prefix = _ids(rng, s, vocab)
        if s:
            engine.add_request(None, prefix + _ids(rng, 1, vocab), one)
            _timed_steps(engine, [])
        engine.add_request(None, prefix + _ids(rng, p, vocab), one)
        _timed_steps(engine, out, clock)
    for b, ln in DECODE if decode is None else decode:
        prefix = _ids(rng, ln, vocab)
        engine.add_request(None, prefix + _ids(rng, 1, vocab), one)
        _timed_steps(engine, [])  # the shared prefix is cached: each request prefills its own 16 tokens
        for _ in range(b):
            engine.add_request(None, prefix + _ids(rng, 16, vocab), SamplingParams(max_tokens=8, ignore_eos=True))
        _timed_steps(engine, out, clock)
    return out


def fit(points: list[tuple[StepShape, float]]) -> Fit:
    """Non-negative least squares of seconds on the shape features, weighted by 1/seconds (active set:
    refit without the most negative coefficient until none is negative)."""
    x = np.array([s.features for s, _ in points])
    y = np.array([t for _, t in points])
    w = 1.0 / y
    xw, yw = x * w[:, None], y * w
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        sol = np.linalg.lstsq(xw[:, active], yw, rcond=None)[0]
        if sol.min() >= 0:
            coef[:] = 0.0
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    coef[0] = max(coef[0], 1e-6)
    return Fit(*map(float, coef))


def errors(f: Fit, points: list[tuple[StepShape, float]]) -> dict[str, float]:
    ape = [abs(f.seconds(s) - t) / t for s, t in points]
    return {"mape": float(np.mean(ape)), "max_ape": float(np.max(ape)), "steps": len(points)}


def calibrate(model: str, threads: list[int], num_kv_blocks: int = 2048, seed: int = 0, clock: str = "cpu",
              log=print, prefill: list[tuple[int, int]] | None = None,  # noqa: ANN001 - a print-like function
              decode: list[tuple[int, int]] | None = None) -> CostModel:
    """Measure and fit one ``Fit`` per thread count; returns the model (cores = this machine's)."""
    import os

    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine

    fits: dict[int, Fit] = {}
    report: dict = {}
    for t in threads:
        engine = LLMEngine(EngineConfig(model=model, threads=t, num_kv_blocks=num_kv_blocks, max_num_seqs=64))
        warm = ((prefill or PREFILL)[:2], (decode or DECODE)[:1])
        measure(engine, seed + 99, clock, *warm)  # warm-up, not recorded
        train = measure(engine, seed, clock, prefill, decode)
        test = measure(engine, seed + 1, clock, prefill, decode)
        f = fit(train)
        fits[t] = f
        report[str(t)] = {"in_sample": errors(f, train), "held_out": errors(f, test), "clock": clock,
                          "points": [[*s.features[1:], round(x, 6)] for s, x in train]}
        log(f"threads {t}: " + ", ".join(f"{k}={getattr(f, k):.3g}" for k in COEFFS)
            + f"; mean abs error {report[str(t)]['in_sample']['mape']:.1%} in sample, "
            f"{report[str(t)]['held_out']['mape']:.1%} held out (max {report[str(t)]['held_out']['max_ape']:.0%})")
        del engine
    engine_cfg = {"max_num_seqs": 8, "max_num_batched_tokens": 512, "num_blocks": 300, "max_model_len": 2048,
                  "block_size": 16}
    return CostModel(fits, os.cpu_count() or 1, name=f"cpu {model}",
                     source=f"treadle sim calibrate --model {model} --clock {clock} on this machine "
                            f"({time.strftime('%Y-%m-%d %H:%M')})",
                     engine=engine_cfg, fit_error=report)
