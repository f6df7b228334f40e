"""``treadle sim calibrate``: time the real engine's steps at chosen batch shapes and fit the cost model.

Procedure, per thread count: build an ``LLMEngine`` (the model given, ``--num-kv-blocks`` blocks, prefix
caching on) and run scenarios of token-id prompts through ``engine.step()``, timing every step (schedule,
model, update, output processing: what a replica's loop pays) and recording its shape (``shape_of``):
- prefill: a chunk of P tokens (32, 128, 256, 320, 384, 448, 512) after S cached tokens (0, 48, 512, 1024; 48 is a chat
  template's shared system prompt, the common case of a served chat request), the S tokens
  made cached by a previous request with the same prefix;
- decode: B requests (1, 2, 4, 8, 16, 32) that share an L-token prefix (64, 256, 1024) and then
  generate 8 tokens each (their prefill steps are recorded too: many short chunks after a cached prefix);
- distinct decode: B requests (4, 16, 32 with L = 256; 4, 16 with L = 768) with prompts of their own (L + 16
  tokens, nothing shared), added at once: their prefill steps (whole chunks from position 0, and chunks mixed
  with the decode rows of the requests prefilled before) and then 8 decode steps of all B rows (each asks for
  8 tokens more than the steps its batch's prefill takes). What a loaded replica decodes: every row reads its
  own KV (``decode_kv``; the shared-prefix rows above read theirs once);
- mixed: B requests (4, 16, 32) decoding after a 256-token prefix while one new request prefills a chunk of
  P tokens (128, 256, 448; at most 512 - B), the step continuous batching makes when a request arrives.
A few small scenarios are run first unrecorded (warm-up). Then the coefficients of the linear model
(``cost_model``, with its knee at ``KNEE`` = 384 prefill tokens: on this CPU the best of 256, 320 and 384
on held-out steps) are fitted by non-negative least squares weighted by 1/time (relative error, so small
decode steps count as much as long prefills); the error is reported as the mean and max absolute
percentage error over the measured steps (in-sample) and over a held-out repetition (out-of-sample).
One fit for every workload: nothing here knows what will be simulated.

Sampling (``--temperature``, default 0: greedy, what ``treadle bench`` sends): the steps are timed with every
request sampling at that temperature. Greedy rows take an argmax; sampled rows also pay a softmax and an
inverse-CDF draw: a 16-row decode step 1.6 ms (4%) longer at 2 threads (docs/BENCHMARKS.md, "Sampled
decoding"). A file predicts
traffic that samples as it was calibrated (its ``fit_error`` records the temperature).

``--co-run`` (``co_run_slowdown``, ``oversubscribed_slowdown``): after the fits, ``cores`` copies of a 1-thread
engine run the same scenarios at once (the distinct decode scenarios too, since 2026-12-03's fourth session:
rows reading their own KV contend for memory bandwidth more than rows reading one cached prefix), one process
each, released together after their warm-up; the slowdown is the median over their steps of (measured seconds /
the same step's seconds on one engine alone, the mean of a solo pass right before and one right after) - 1.
Then ``2 * cores`` copies the same way; their slowdown is that median divided by 2 (what processor sharing
already gives) - 1 (``co_run_slowdowns``). Time it by the wall clock: CPU time does not see the contention.
``--serving``: the serving path's CPU per output token (``serving_overhead``).

Clock (``--clock``): ``cpu`` (default) times a step by the process's CPU time divided by its threads, which
is what the step would take with its cores to itself and barely moves when other work shares the machine;
``wall`` times it by the wall clock (right on an idle machine, inflated by any contention). Torch's
OpenMP threads spin while they wait, so CPU time also counts a busy-wait for a straggling thread.
"""

from __future__ import annotations

import time

import numpy as np

from treadle.sim.cost_model import (
    COEFFS,
    SERVING_PARTS,
    CostModel,
    Fit,
    StepShape,
    shape_of,
    step_point,
)

PREFILL = [(p, s) for s in (0, 48, 512, 1024) for p in (32, 128, 256, 320, 384, 448, 512)]
DECODE = [(b, ln) for ln in (64, 256, 1024) for b in (1, 2, 4, 8, 16, 32)]
MIXED = [(b, p) for b in (4, 16, 32) for p in (128, 256, 448)]
DISTINCT = [(4, 256), (16, 256), (32, 256), (4, 768), (16, 768)]
MIXED_PREFIX = 256
KNEE = 384


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
            out.append((shape_of(plan, engine.config.block_size), dt))


def measure(engine, seed: int = 0, clock: str = "cpu", prefill: list[tuple[int, int]] | None = None,  # noqa: ANN001
            decode: list[tuple[int, int]] | None = None,
            mixed: list[tuple[int, int]] | None = None, temperature: float = 0.0,
            distinct: list[tuple[int, int]] = ()) -> list[tuple[StepShape, float]]:
    """Run the scenarios once through ``engine``, every request sampling at ``temperature``; (shape, seconds)
    of every step. ``None`` runs a kind's default scenarios (``PREFILL``, ``DECODE``, ``MIXED``), ``[]`` none of
    it; the distinct decode scenarios run only when given (``calibrate`` passes ``DISTINCT``)."""
    from treadle.sampling_params import SamplingParams

    rng = np.random.default_rng(seed)
    vocab = min(40000, engine.model_config.vocab_size)
    out: list[tuple[StepShape, float]] = []
    one = SamplingParams(max_tokens=1, ignore_eos=True, temperature=temperature)
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
            engine.add_request(None, prefix + _ids(rng, 16, vocab), SamplingParams(max_tokens=8, ignore_eos=True, temperature=temperature))
        _timed_steps(engine, out, clock)
    budget = engine.config.max_num_batched_tokens
    for b, ln in distinct:
        steps = -(-b * (ln + 16) // budget)  # the batch's prefill steps: each request decodes through them
        for _ in range(b):
            engine.add_request(None, _ids(rng, ln + 16, vocab),
                               SamplingParams(max_tokens=steps + 8, ignore_eos=True, temperature=temperature))
        _timed_steps(engine, out, clock)
    for b, p in MIXED if mixed is None else mixed:
        prefix = _ids(rng, MIXED_PREFIX, vocab)
        engine.add_request(None, prefix + _ids(rng, 1, vocab), one)
        _timed_steps(engine, [])
        for _ in range(b):
            engine.add_request(None, prefix + _ids(rng, 16, vocab), SamplingParams(max_tokens=6, ignore_eos=True, temperature=temperature))
        engine.step()  # their own prefill, not recorded (the decode scenarios record that shape)
        engine.add_request(None, _ids(rng, max(1, min(p, budget - b)), vocab), one)
        _timed_steps(engine, out, clock)
    return out


def _co_run_worker(model: str, num_kv_blocks: int, seed: int, clock: str, barrier, results,  # noqa: ANN001
                   prefill: list[tuple[int, int]] | None, decode: list[tuple[int, int]] | None,
                   mixed: list[tuple[int, int]] | None, temperature: float = 0.0,
                   distinct: list[tuple[int, int]] = ()) -> None:
    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine

    engine = LLMEngine(EngineConfig(model=model, threads=1, num_kv_blocks=num_kv_blocks, max_num_seqs=64))
    measure(engine, seed + 99, clock, (prefill or PREFILL)[:2], (decode or DECODE)[:1], [], temperature)
    barrier.wait()
    results.put([step_point(s, t) for s, t in measure(engine, seed, clock, prefill, decode, mixed, temperature,
                                                      distinct)])


def run_copies(model: str, copies: int, num_kv_blocks: int = 2048, seed: int = 0, clock: str = "wall",
               prefill: list[tuple[int, int]] | None = None, decode: list[tuple[int, int]] | None = None,
               mixed: list[tuple[int, int]] | None = None, temperature: float = 0.0,
               distinct: list[tuple[int, int]] = ()) -> list[list[list[float]]]:
    """``copies`` 1-thread engines, one process each, run the scenarios at once (released together after their
    warm-up); each copy's ``step_point``s, in step order. Every copy runs the same seed: the same steps."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(copies), ctx.Queue()
    procs = [ctx.Process(target=_co_run_worker, args=(model, num_kv_blocks, seed, clock, barrier, results,
                                                      prefill, decode, mixed, temperature, distinct))
             for _ in range(copies)]
    for proc in procs:
        proc.start()
    out = [results.get(timeout=7200) for _ in procs]
    for proc in procs:
        proc.join()
    return out


def co_run_slowdowns(model: str, counts: list[int], cores: int, num_kv_blocks: int = 2048, seed: int = 0,
                     clock: str = "wall", prefill: list[tuple[int, int]] | None = None,
                     decode: list[tuple[int, int]] | None = None, mixed: list[tuple[int, int]] | None = None,
                     temperature: float = 0.0, distinct: list[tuple[int, int]] = ()) -> list[dict]:
    """For each copy count in ``counts``: that many 1-thread engines at once (``run_copies``), bracketed by one
    engine alone running the same steps right before and right after (the solo passes between two counts are
    shared). A step's ratio is its co-run seconds over the mean of the two solo passes' seconds for the same
    step; the slowdown is the median ratio, divided by what processor sharing gives (``copies / cores`` when
    above 1), minus 1. The solo passes, seconds apart, follow the machine's drift (up to 30% in an hour here),
    which a comparison with a fit made earlier cannot (the method until 2026-12-03's fourth session)."""
    args = (num_kv_blocks, seed, clock, prefill, decode, mixed, temperature, distinct)
    solos = [run_copies(model, 1, *args)[0]]
    out = []
    for copies in counts:
        co = run_copies(model, copies, *args)
        solos.append(run_copies(model, 1, *args)[0])
        before, after = solos[-2], solos[-1]
        shapes = [pt[:-1] for pt in before]
        if any([pt[:-1] for pt in run] != shapes for run in (*co, after)):
            raise RuntimeError("bug: co-run copies and solo passes of one seed ran different steps")
        ref = [(x[-1] + y[-1]) / 2 for x, y in zip(before, after, strict=True)]
        ratios = np.array([pt[-1] / r for c in co for pt, r in zip(c, ref, strict=True)])
        share = max(1.0, copies / cores)  # processor sharing's own slowdown when the copies oversubscribe the cores
        drift = float(np.median([y[-1] / x[-1] for x, y in zip(before, after, strict=True)]))
        out.append({"slowdown": max(0.0, float(np.median(ratios)) / share - 1.0), "copies": copies,
                    "steps": len(ratios), "ratio_p10": float(np.percentile(ratios, 10)),
                    "ratio_p90": float(np.percentile(ratios, 90)), "clock": clock, "reference": "solo passes",
                    "solo_after_over_before": drift})
    return out


def fit(points: list[tuple[StepShape, float]], knee: int = KNEE) -> Fit:
    """Non-negative least squares of seconds on the shape features, weighted by 1/seconds (active set:
    refit without the most negative coefficient until none is negative)."""
    x = np.array([s.features(knee) for s, _ in points])
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
    return Fit(*map(float, coef), knee=knee)


def errors(f: Fit, points: list[tuple[StepShape, float]]) -> dict[str, float]:
    ape = [abs(f.seconds(s) - t) / t for s, t in points]
    return {"mape": float(np.mean(ape)), "max_ape": float(np.max(ape)), "steps": len(points)}


def calibrate(model: str, threads: list[int], num_kv_blocks: int = 2048, seed: int = 0, clock: str = "cpu",
              log=print, prefill: list[tuple[int, int]] | None = None,  # noqa: ANN001 - a print-like function
              decode: list[tuple[int, int]] | None = None, co_run: bool = False, serving: bool = False,
              base: CostModel | None = None, mixed: list[tuple[int, int]] | None = None,
              repeats: int = 1, temperature: float = 0.0,
              distinct: list[tuple[int, int]] | None = None) -> CostModel:
    """Measure and fit one ``Fit`` per thread count (keeping ``base``'s fits for the other counts), then the
    co-run slowdown and the serving overhead when asked; returns the model (cores = this machine's).
    ``repeats``: the scenarios are measured that many times (seeds ``seed``, ``seed + 2``, ...; the held-out
    repetition is ``seed + 1``) and one fit is made over all their steps, so that one pass's noise weighs less.
    ``temperature``: every timed request samples at it (see the module docstring)."""
    import os

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")

    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine

    distinct = DISTINCT if distinct is None else distinct
    fits: dict[int, Fit] = dict(base.fits) if base else {}
    report: dict = dict(base.fit_error) if base else {}
    for t in threads:
        engine = LLMEngine(EngineConfig(model=model, threads=t, num_kv_blocks=num_kv_blocks, max_num_seqs=64))
        warm = ((prefill or PREFILL)[:2], (decode or DECODE)[:1], [])
        measure(engine, seed + 99, clock, *warm, temperature)  # warm-up, not recorded
        seeds = [seed] + [seed + 1 + k for k in range(1, repeats)]  # seed + 1 is the held-out repetition's
        train = [pt for s in seeds for pt in measure(engine, s, clock, prefill, decode, mixed, temperature,
                                                     distinct)]
        test = measure(engine, seed + 1, clock, prefill, decode, mixed, temperature, distinct)
        f = fit(train)
        fits[t] = f
        report[str(t)] = {"in_sample": errors(f, train), "held_out": errors(f, test), "clock": clock,
                          "repeats": repeats, "temperature": temperature,
                          "points": [step_point(s, round(x, 6)) for s, x in train]}
        log(f"threads {t}: " + ", ".join(f"{k}={getattr(f, k):.3g}" for k in COEFFS) + f" (knee {f.knee})"
            + f"; mean abs error {report[str(t)]['in_sample']['mape']:.1%} in sample, "
            f"{report[str(t)]['held_out']['mape']:.1%} held out (max {report[str(t)]['held_out']['max_ape']:.0%})")
        del engine
    cores = os.cpu_count() or 1
    slowdown = base.co_run_slowdown if base else 0.0
    over = base.oversubscribed_slowdown if base else 0.0
    if co_run:
        measured = co_run_slowdowns(model, [cores, 2 * cores], cores, num_kv_blocks, seed, clock, prefill, decode,
                                    mixed, temperature, distinct)
        for key, r in zip(("co_run", "co_run_oversubscribed"), measured, strict=True):
            report[key] = r
            log(f"co-run: {r['copies']} 1-thread engines on {cores} cores run {r['slowdown']:.1%} slower than "
                f"{'alone' if r['copies'] <= cores else 'processor sharing gives'} (median over {r['steps']} steps; "
                f"p10-p90 ratio to the solo passes {r['ratio_p10']:.2f}-{r['ratio_p90']:.2f}; the solo pass after "
                f"ran {r['solo_after_over_before']:.2f}x the one before)")
        slowdown, over = report["co_run"]["slowdown"], report["co_run_oversubscribed"]["slowdown"]
    per_token = dict(base.serving) if base else {}
    latency = dict(base.latency) if base else {}
    if serving:
        from treadle.sim.serving_overhead import measure_serving

        report["serving"] = measure_serving(model, max(fits), seed=seed, log=log, fit=fits[max(fits)])
        per_token = {p: report["serving"][p] for p in SERVING_PARTS}
        latency = dict(report["serving"]["latency"])
    engine_cfg = dict(base.engine) if base else {"max_num_seqs": 8, "max_num_batched_tokens": 512,
                                                 "num_blocks": 300, "max_model_len": 2048, "block_size": 16}
    return CostModel(fits, cores, name=base.name if base else f"cpu {model}",
                     source=(f"{base.source}; then " if base else "")
                     + f"treadle sim calibrate --model {model} --clock {clock}"
                     + (f" --repeats {repeats}" if repeats > 1 else "")
                     + (f" --temperature {temperature:g}" if temperature else "")
                     + (" --co-run" if co_run else "") + (" --serving" if serving else "")
                     + f" on this machine ({time.strftime('%Y-%m-%d %H:%M')})",
                     engine=engine_cfg, fit_error=report, co_run_slowdown=slowdown, serving=per_token,
                     oversubscribed_slowdown=over,
                     latency=latency)
