"""What a served replica's logs say about its steps (``treadle sim calibrate --serving`` and the diagnostics in
``scripts/sim_diag``): the logs a replica writes when asked (``StepLog``: every step's shape, seconds and end time;
``EnqueueLog``: every hand-over of a request to the engine thread), reading them back, and the figures taken
from them: the step gap between steps with work (``step_gaps``), the finish stagger of requests that end in
one step (``finish_stagger``) and the served step excess over the engine alone (``step_excess``).
``serving_overhead`` runs the measurements."""

from __future__ import annotations

import bisect
import gzip
import itertools
import json
import time
from pathlib import Path

from treadle.sim.cost_model import Fit, StepShape, from_step_point, shape_of, step_point


class StepLog:
    """An ``LLMEngine.step_observer`` appending one JSON line per step to ``path``: its ``step_point``
    (shape and wall seconds, as calibration files store steps) and, ninth, ``time.monotonic()`` as it ended
    (``read_step_times``)."""

    def __init__(self, path: str, block_size: int = 16) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the replica's lifetime
        self.block_size = block_size

    def __call__(self, plan, seconds: float) -> None:  # noqa: ANN001 - a SchedulerOutput
        end = time.monotonic()
        self.file.write(json.dumps(step_point(shape_of(plan, self.block_size), seconds) + [end]) + "\n")
        self.file.flush()


class EnqueueLog:
    """An ``AsyncEngine.enqueue_observer`` appending ``{"id": request id, "t": monotonic seconds}`` per line to
    ``path`` as the replica's event loop hands each request to its engine thread."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the replica's lifetime

    def __call__(self, request_id: str, t: float) -> None:
        self.file.write(json.dumps({"id": request_id, "t": t}) + "\n")
        self.file.flush()


def _step_lines(path: Path, skip: int) -> list[list[float]]:
    """The JSON lines a ``StepLog`` wrote to ``path`` (or its gzipped copy, ``*.gz``), from line ``skip`` on."""
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [json.loads(x) for x in text.splitlines()[skip:] if x.strip()]


def read_steps(path: Path, skip: int = 0) -> list[tuple[StepShape, float]]:
    """The steps a ``StepLog`` wrote to ``path`` (or its gzipped copy, ``*.gz``), from line ``skip`` on."""
    return [from_step_point(pt) for pt in _step_lines(path, skip)]


def read_step_times(path: Path, skip: int = 0) -> list[tuple[StepShape, float, float]]:
    """(shape, seconds, monotonic end) of the steps a ``StepLog`` wrote to ``path`` from line ``skip`` on; logs
    written before the end time was recorded (8 numbers a line) raise ValueError."""
    out = []
    for pt in _step_lines(path, skip):
        if len(pt) != 9:
            raise ValueError(f"{path}: step lines need 9 numbers (shape, seconds, end time), got {len(pt)}")
        out.append((*from_step_point(pt), float(pt[8])))
    return out


def step_gaps(steps: list[tuple[StepShape, float, float]]) -> dict:
    """The engine thread's time between consecutive steps while it had work (``read_step_times``): each step
    with decode rows began after the previous one's end by (its end - its seconds) - the previous end, the
    time the served engine spends outside ``step()``: handing outputs to the event loop, its metrics, taking
    new requests, and waiting for the GIL. Steps without decode rows may follow idle time and are left out.
    Returns the gaps' ``mean_s`` (what the simulator adds to each step), ``median_s``, ``p90_s`` and ``n``."""
    gaps = sorted(end - sec - prev_end for (_, _, prev_end), (shape, sec, end) in zip(steps, steps[1:], strict=False)
                  if shape.decode_rows > 0)
    if not gaps:
        raise ValueError("step gaps: no step with decode rows after another step in the log")
    return {"mean_s": sum(gaps) / len(gaps), "median_s": gaps[len(gaps) // 2], "p90_s": gaps[int(0.9 * (len(gaps) - 1))],
            "n": len(gaps)}


def finish_stagger(ends: list[float], step_ends: list[float]) -> dict:
    """How far apart the clients see the ends of requests that finished in the same step.

    ``ends``: each request's end as its client saw it; ``step_ends``: the served steps' end times (one clock,
    ``read_step_times``). Each end goes with the last step that ended at or before it: the step that produced
    its final token, since a stream's way out is shorter than a step (an end delayed past the next step's end
    goes with that step: large staggers are undercounted, never inflated). Within each step's ends, sorted,
    the gaps between neighbours. Returns the gaps' ``mean_s`` (the cost file's ``finish_stagger``: the k-th
    end of a step is k of them after the first), ``median_s``, ``n`` (gaps) and ``steps`` (steps that
    finished two or more requests); all 0 when no step finished two."""
    marks = sorted(step_ends)
    by_step: dict[int, list[float]] = {}
    for e in ends:
        i = bisect.bisect_right(marks, e) - 1
        if i >= 0:
            by_step.setdefault(i, []).append(e)
    gaps = sorted(b - a for g in by_step.values() if len(g) > 1 for a, b in itertools.pairwise(sorted(g)))
    if not gaps:
        return {"mean_s": 0.0, "median_s": 0.0, "n": 0, "steps": 0}
    return {"mean_s": sum(gaps) / len(gaps), "median_s": gaps[len(gaps) // 2], "n": len(gaps),
            "steps": sum(1 for g in by_step.values() if len(g) > 1)}


def step_excess(served: list[tuple[StepShape, float]], alone: list[tuple[StepShape, float]], fit: Fit) -> dict:
    """``step`` (seconds per decode row) and ``step_drift`` from served and engine-alone steps (module
    docstring); only decode-only steps count. Raises ValueError when either has none."""
    dec = [(s, t) for s, t in served if s.prefill_tokens == 0 and s.decode_rows]
    ref = [(s, t) for s, t in alone if s.prefill_tokens == 0 and s.decode_rows]
    if not dec or not ref:
        raise ValueError(f"served step excess: needs decode-only steps, got {len(dec)} served and {len(ref)} alone")
    drift = sum(t for _, t in ref) / sum(fit.seconds(s) for s, _ in ref)
    excess = sum(t - drift * fit.seconds(s) for s, t in dec) / sum(s.decode_rows for s, _ in dec)
    return {"step": max(0.0, excess), "step_drift": drift, "step_steps": len(dec),
            "step_rows": sum(s.decode_rows for s, _ in dec)}
