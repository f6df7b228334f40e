"""Per-request grammar state inside the model runner, and the batched mask of each step.

Algorithm, per engine step:
1. ``start(rows)`` (before the forward pass): each constrained row's matcher catches up on the
   output tokens it has not consumed yet (the token sampled last step; after a preemption the
   matcher simply keeps its state, since output tokens are never taken back), then the masks of
   all constrained rows are computed by llguidance's parallel executor on a worker thread, which
   runs while the model's forward pass runs (llguidance releases the GIL).
2. ``finish(pending)`` (after the logits): wait for the masks; the sampler applies them.
Matchers are created on a request's first sampled step (a copy of the cached compiled grammar)
and dropped when the scheduler reports the request finished. The time the engine waited on
masks after its forward pass is counted in ``wait_s`` (the stall the overlap did not hide).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from treadle.structured.bitmask import allocate
from treadle.structured.compiler import GrammarCompiler
from treadle.structured.spec import StructuredSpec

log = logging.getLogger("treadle.structured")


@dataclass
class _State:
    matcher: object  # llguidance.LLMatcher
    consumed: int = 0  # output tokens fed to the matcher
    broken: bool = False  # the matcher refused a token: the row is no longer constrained


@dataclass(frozen=True)
class ConstrainedRow:
    row: int  # index among the step's sampled rows
    request_id: str
    spec: StructuredSpec
    output_token_ids: list[int]


@dataclass
class Pending:
    rows: list[int]
    bitmask: torch.Tensor
    future: Future | None


class StructuredRuntime:
    def __init__(self, compiler: GrammarCompiler, threads: int = 1) -> None:
        from llguidance import LLExecutor

        self.compiler = compiler
        self.states: dict[str, _State] = {}
        self._executor = LLExecutor(num_threads=max(1, threads))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="treadle-mask")
        self.wait_s = 0.0  # engine time spent waiting for masks after the forward pass
        self.mask_s = 0.0  # total time computing masks (overlapped or not)
        self.steps = 0

    def drop(self, request_id: str) -> None:
        self.states.pop(request_id, None)

    def start(self, rows: list[ConstrainedRow]) -> Pending | None:
        """Catch the matchers up and start computing the masks of ``rows`` (in the background)."""
        if not rows:
            return None
        work: list[tuple[object, int]] = []
        for i, r in enumerate(rows):
            st = self.states.get(r.request_id)
            if st is None:
                st = self.states[r.request_id] = _State(self.compiler.matcher(r.spec))
            new = r.output_token_ids[st.consumed:]
            if new and not st.broken:
                if not st.matcher.consume_tokens(new):  # type: ignore[attr-defined]
                    st.broken = True
                    log.warning("request %s: grammar refused token(s) %s: %s", r.request_id, new,
                                st.matcher.get_error())  # type: ignore[attr-defined]
            st.consumed = len(r.output_token_ids)
            if not st.broken:
                work.append((st.matcher, i))
        bitmask = allocate(len(rows), self.compiler.vocab_size)
        future = self._pool.submit(self._compute, work, bitmask) if work else None
        return Pending([r.row for r in rows], bitmask, future)

    def _compute(self, work: list[tuple[object, int]], bitmask: torch.Tensor) -> None:
        t0 = time.perf_counter()
        self._executor.unsafe_compute_mask_ptr(work, bitmask.data_ptr(), bitmask.shape[1] * 4, bitmask.shape[0])
        self.mask_s += time.perf_counter() - t0

    def finish(self, pending: Pending) -> tuple[list[int], torch.Tensor]:
        """Wait for the masks: (sampled-row indices, bitmask with one row per index)."""
        t0 = time.perf_counter()
        if pending.future is not None:
            pending.future.result()
        self.wait_s += time.perf_counter() - t0
        self.steps += 1
        return pending.rows, pending.bitmask

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)
