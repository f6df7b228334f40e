"""Scheduler: decides, every step, how many tokens of which requests to compute.

Algorithm (token-budget continuous batching, FCFS, as in vLLM v1)
1. Running requests first, in admission order. Each gets ``min(tokens left to compute, budget)``
   tokens: one for a decode, a chunk for an unfinished prefill. If the KV cache cannot hold them,
   the most recently admitted running request is preempted (its blocks freed, its progress reset to
   zero, put back at the *front* of the waiting queue) until the allocation fits; a request may
   preempt itself, which ends step 1.
2. Then waiting requests, in arrival order (preempted ones first), while budget, a ``max_num_seqs``
   slot and KV blocks last and nothing was preempted in this step. A newly admitted request starts
   at its longest cached prefix and takes a chunk of at most ``min(budget,
   long_prefill_token_threshold)`` tokens. If the head of the queue does not fit, admission stops
   (no overtaking, so a long prompt cannot starve). A request for a LoRA adapter also needs one of
   ``max_loras`` adapter slots (``LoraSlots``: LRU over adapters no running request uses); when
   none is free it stays queued and is skipped, and so is every later adapter request (FCFS among
   them, so the slot it waits for is the next one freed), while base-model requests go on.
3. Prefill/decode balance: when ``prefill_tokens_per_decode_step`` > 0 and some running request is
   decoding, the prompt tokens of all chunks in the step (steps 1 and 2 together) are capped at it,
   so a step that carries decodes stays short (better TPOT); with no decode running the cap is off
   (best TTFT on an idle engine). 0 = only the step budget limits prompt tokens (best TTFT).
Parameters: ``max_num_seqs``, ``max_num_batched_tokens`` (the per-step token budget),
``long_prefill_token_threshold`` (cap on one request's prefill chunk, 0 = none),
``prefill_tokens_per_decode_step`` (cap on a decode step's prompt tokens, 0 = none),
``max_model_len``, the KV cache (``num_blocks`` x ``block_size``), and ``max_loras``.
No torch here.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from treadle.engine.kv_cache_manager import KVCacheManager
from treadle.engine.lora_slots import LoraSlots
from treadle.engine.outputs import RunnerOutput, ScheduledRequest, SchedulerOutput
from treadle.engine.request import FinishReason, Request, RequestStatus


@dataclass(frozen=True)
class SchedulerConfig:
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 512
    long_prefill_token_threshold: int = 0
    prefill_tokens_per_decode_step: int = 0
    max_model_len: int = 2048
    num_blocks: int = 1024
    block_size: int = 16
    enable_prefix_caching: bool = True
    max_loras: int = 4

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "max_model_len", "num_blocks", "block_size",
                     "max_loras"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.long_prefill_token_threshold < 0:
            raise ValueError("long_prefill_token_threshold must be >= 0 (0 = no cap)")
        if self.prefill_tokens_per_decode_step < 0:
            raise ValueError("prefill_tokens_per_decode_step must be >= 0 (0 = no cap)")


class Scheduler:
    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.kv = KVCacheManager(config.num_blocks, config.block_size, config.enable_prefix_caching)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.requests: dict[str, Request] = {}
        self._finished_since_step: list[str] = []
        self.num_preemptions = 0
        self.loras = LoraSlots(config.max_loras)

    # ---------------------------------------------------------------- public API
    def add_request(self, request: Request) -> None:
        if request.request_id in self.requests:
            raise ValueError(f"request_id {request.request_id!r} is already in the engine")
        self.requests[request.request_id] = request
        self.waiting.append(request)

    def finish_request(self, request_id: str, reason: FinishReason) -> Request | None:
        """End a request wherever it is (waiting or running) and free its blocks. Idempotent."""
        request = self.requests.pop(request_id, None)
        if request is None:
            return None
        if request.status == RequestStatus.RUNNING:
            self.running.remove(request)
        else:
            try:
                self.waiting.remove(request)
            except ValueError:
                pass
        self._finish(request, reason)
        return request

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def schedule(self) -> SchedulerOutput:
        """Pick this step's work. Changes request states, block tables and the queues."""
        cfg = self.config
        budget = cfg.max_num_batched_tokens
        scheduled: list[ScheduledRequest] = []
        preempted: list[Request] = []
        # Prompt tokens this step may still take (step 3 of the algorithm); None = no cap.
        prefill_left: int | None = None
        if cfg.prefill_tokens_per_decode_step and any(r.num_tokens - r.num_computed_tokens == 1
                                                      for r in self.running):
            prefill_left = cfg.prefill_tokens_per_decode_step

        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            capped = req.num_tokens - req.num_computed_tokens > 1 and prefill_left is not None  # a prefill chunk
            if cfg.long_prefill_token_threshold:  # caps every prefill chunk, not only the first
                n = min(n, cfg.long_prefill_token_threshold)
            if capped:
                n = min(n, prefill_left)
            if n <= 0:
                i += 1
                continue
            while self.kv.allocate_slots(req, n) is None:
                victim = self.running.pop()
                self._preempt(victim)
                preempted.append(victim)
                if victim is req:
                    break
            if req.status != RequestStatus.RUNNING:
                break
            scheduled.append(self._scheduled(req, n))
            budget -= n
            if capped:
                prefill_left -= n
            i += 1

        now = time.time()
        pinned = {r.adapter_id for r in self.running if r.adapter_id is not None}
        slot_wait = False  # an adapter request is waiting for a slot: later adapter requests wait too
        idx = 0
        while (idx < len(self.waiting) and budget > 0 and len(self.running) < cfg.max_num_seqs and not preempted
               and (prefill_left is None or prefill_left > 0)):
            req = self.waiting[idx]
            if req.adapter_id is not None:
                if slot_wait or self.loras.acquire(req.adapter_id, pinned) is None:
                    slot_wait = True
                    idx += 1
                    continue
            hit_blocks, hit_tokens = self.kv.get_computed_blocks(req)
            n = min(req.num_tokens - hit_tokens, budget)
            if cfg.long_prefill_token_threshold:
                n = min(n, cfg.long_prefill_token_threshold)
            if prefill_left is not None:
                n = min(n, prefill_left)
            if self.kv.allocate_slots(req, n, hit_blocks) is None:
                break
            del self.waiting[idx]
            if req.adapter_id is not None:
                pinned.add(req.adapter_id)
            req.num_computed_tokens = hit_tokens
            if req.num_cached_tokens < 0:  # first admission (not a resume after preemption)
                req.num_cached_tokens = hit_tokens
                req.times.scheduled = now
                self.kv.record_query(req.num_prompt_tokens, hit_tokens)
            req.status = RequestStatus.RUNNING
            self.running.append(req)
            scheduled.append(self._scheduled(req, n))
            budget -= n
            if prefill_left is not None:
                prefill_left -= n

        finished, self._finished_since_step = self._finished_since_step, []
        return SchedulerOutput(scheduled, [r.request_id for r in preempted], finished, tuple(self.loras.slots))

    def update_from_output(self, out: SchedulerOutput, result: RunnerOutput) -> list[Request]:
        """Advance counters, append sampled tokens, finish stopped requests.

        Returns the requests that received a token (finished ones included, with a reason set).
        """
        updated = []
        now = time.time()
        for s in out.scheduled:
            req = self.requests.get(s.request_id)
            if req is None or req.status != RequestStatus.RUNNING:
                continue  # finished (aborted) while the step ran
            req.num_computed_tokens += s.num_tokens
            if s.request_id in result.prompt_logprobs:
                if not req.prompt_logprobs:
                    req.prompt_logprobs.append(None)  # the first prompt token has no context
                req.prompt_logprobs.extend(result.prompt_logprobs[s.request_id])
            token = result.sampled.get(s.request_id)
            if token is None:
                continue
            req.append_output_token(token)
            if req.times.first_token is None:
                req.times.first_token = now
            if s.request_id in result.logprobs:
                req.logprobs.append(result.logprobs[s.request_id])
            reason = req.check_stop(self.config.max_model_len)
            if reason is not None:
                self.running.remove(req)
                del self.requests[req.request_id]
                self._finish(req, reason)
            updated.append(req)
        return updated

    def make_stats(self) -> dict[str, float]:
        return {
            "running": len(self.running),
            "waiting": len(self.waiting),
            "kv_blocks_used": self.kv.pool.num_blocks - self.kv.pool.num_free_blocks,
            "kv_blocks_total": self.kv.pool.num_blocks,
            "kv_usage": self.kv.usage,
            "prefix_cache_queried_tokens": self.kv.queried_tokens,
            "prefix_cache_hit_tokens": self.kv.hit_tokens,
            "num_preemptions": self.num_preemptions,
        }

    def check_integrity(self) -> None:
        """KV invariants plus: exactly the running requests hold blocks; their adapters are resident."""
        self.kv.check_integrity()
        self.loras.check_integrity()
        missing = {r.adapter_id for r in self.running if r.adapter_id} - set(self.loras.slots)
        if missing:
            raise RuntimeError(f"running requests use adapters that hold no slot: {sorted(missing)}")
        holders = set(self.kv.req_blocks)
        running = {r.request_id for r in self.running}
        if holders - running:
            raise RuntimeError(f"requests hold blocks but are not running: {sorted(holders - running)}")

    # ---------------------------------------------------------------- internals
    def _scheduled(self, req: Request, n: int) -> ScheduledRequest:
        start = req.num_computed_tokens
        targets: list[int] = []
        if req.params.prompt_logprobs is not None and start < req.num_prompt_tokens - 1:
            end = min(start + n, req.num_prompt_tokens - 1)
            targets = req.prompt_token_ids[start + 1 : end + 1]
        return ScheduledRequest(
            request_id=req.request_id,
            token_ids=req.all_token_ids[start : start + n],
            start_pos=start,
            block_ids=self.kv.block_ids(req.request_id),
            sample=start + n == req.num_tokens,
            params=req.params,
            all_token_ids=req.all_token_ids,
            num_prompt_tokens=req.num_prompt_tokens,
            prompt_logprob_targets=targets,
            adapter_id=req.adapter_id,
        )

    def _preempt(self, req: Request) -> None:
        self.kv.free(req)
        req.status = RequestStatus.PREEMPTED
        req.num_computed_tokens = 0
        req.prompt_logprobs = []  # recomputed from scratch with the prompt
        req.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(req)

    def _finish(self, req: Request, reason: FinishReason) -> None:
        self.kv.free(req)
        req.status = RequestStatus.FINISHED
        req.finish_reason = reason
        req.times.finished = time.time()
        self._finished_since_step.append(req.request_id)
