"""Fast-forward of a replica through a stretch of pure decode steps (exact; ``--no-fast-forward`` to turn off).

Why: at low load a replica runs one decode step per output token, and driving the real scheduler through
each of them costs ~50 us of Python, too slow for millions of tokens. When the next steps are known in
advance they can be applied at once with the same state changes the scheduler would make.

When (checked by :func:`stretch_length`): the replica's machine is not shared; nothing waits; every running
request has computed all but its last sampled token (each step gives it exactly one token, as
``Scheduler.schedule`` step 1 does for a decode); the rows fit the token budget; and the KV blocks these
steps need are free (so the scheduler could not preempt). The stretch is ``k`` steps, one fewer than the
fewest tokens any request has left, so no request finishes inside it: finishing, and every step with a
prefill, a preemption or an admission, goes through the real ``schedule()``/``update_from_output()``.

What (``advance``): for each step, for each running request in the scheduler's order, exactly what the
scheduler and ``update_from_output`` do for a one-token decode: ``kv.allocate_slots(req, 1)`` (called only
when it has an effect: a block is started or filled; otherwise it changes nothing), ``num_computed_tokens
+= 1``, ``append_output_token``. Step ``j`` lasts ``cost.seconds(decode rows R, context C0 + R*j, decode KV
V0 + R*j)``: the new tokens' KV is each row's own, never shared.

Arrivals: the stretch's state is applied lazily. Nothing outside the replica reads it meanwhile (its waiting
and running counts and the gateway's in-flight count do not change during it, and it emits no first
token), so a request routed to it mid-stretch only cuts it: the steps ended by then, plus the one in
progress, are applied, and the new request is scheduled when that step ends, as in the engine.
tests/test_sim.py pins that a run with and without fast-forward gives identical results.
"""

from __future__ import annotations

from treadle.engine.request import Request, RequestStatus
from treadle.engine.scheduler import Scheduler
from treadle.sim.cost_model import Fit, StepShape, distinct_kv

MIN_STEPS = 4  # shorter stretches are stepped normally


def stretch_length(s: Scheduler) -> int:
    """Steps that can be fast-forwarded now (0: step normally)."""
    if s.waiting or not s.running or len(s.running) > s.config.max_num_batched_tokens:
        return 0
    k = 1 << 30
    bs = s.config.block_size
    for r in s.running:
        if r.status != RequestStatus.RUNNING or r.num_computed_tokens != r.num_tokens - 1 or not r.output_token_ids:
            return 0
        left = min(r.params.max_tokens - r.num_output_tokens, s.config.max_model_len - r.num_tokens)
        k = min(k, left - 1)
    if k < MIN_STEPS:
        return 0
    need = 0
    for r in s.running:  # blocks started at positions p = computed .. computed + k - 1 with p % bs == 0
        p = r.num_computed_tokens
        need += (p + k - 1) // bs - (p - 1) // bs
    return k if need <= s.kv.pool.num_free_blocks else 0


class Stretch:
    """End times of ``k`` decode steps from ``start``: step j lasts ``first + slope * j`` (the cost model is
    linear in the context, which grows by one token per row per step), so end(j) is closed-form."""

    def __init__(self, start: float, first: float, slope: float, k: int) -> None:
        self.start, self.first, self.slope, self.k = start, first, slope, k

    def end(self, j: int) -> float:
        return self.start + (j + 1) * self.first + self.slope * j * (j + 1) / 2

    @property
    def last_end(self) -> float:
        return self.end(self.k - 1)

    def in_progress(self, t: float) -> int:
        """Index of the step running at ``t`` (the first whose end is after ``t``; the last one at most)."""
        lo, hi = 0, self.k - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.end(mid) > t:
                hi = mid
            else:
                lo = mid + 1
        return lo


def stretch(s: Scheduler, fit: Fit, k: int, now: float) -> Stretch:
    """The ``k`` steps starting at ``now`` (``fit``: the cost model's fit for the replica's threads)."""
    rows = len(s.running)
    c0 = sum(r.num_computed_tokens for r in s.running)
    bs = s.config.block_size
    kv0 = distinct_kv(((r.num_computed_tokens + 1, s.kv.block_ids(r.request_id)) for r in s.running), bs)
    return Stretch(now, fit.seconds(StepShape(0, rows, c0, 0.0, decode_kv=kv0)), (fit.d + fit.k) * rows, k)


def advance(s: Scheduler, steps: int, token: int) -> None:
    """Apply ``steps`` decode steps to every running request (see the module docstring)."""
    kv, bs = s.kv, s.config.block_size
    running: list[Request] = list(s.running)
    for _ in range(steps):
        for r in running:
            p = r.num_computed_tokens
            if (p % bs == 0 or (p + 1) % bs == 0) and kv.allocate_slots(r, 1) is None:
                raise RuntimeError(f"bug: fast-forward ran out of KV blocks for {r}")
            r.num_computed_tokens = p + 1
            r.append_output_token(token)
