"""The data that crosses the engine's boundaries.

- :class:`SchedulerOutput` goes from the scheduler to the model runner: which tokens of which
  requests to compute this step, where their KV lives, and whether to sample.
- :class:`RunnerOutput` comes back: sampled token ids and log-probabilities.
- :class:`RequestOutput` goes from the engine to its users (offline API, async engine, server).
No torch in this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treadle.sampling_params import SamplingParams


@dataclass(frozen=True)
class ScheduledRequest:
    """One request's share of a step: compute ``token_ids`` at positions ``start_pos...``."""

    request_id: str
    token_ids: list[int]
    start_pos: int
    block_ids: list[int]
    sample: bool  # the chunk reaches the last known token: sample the next one
    params: SamplingParams
    all_token_ids: list[int]  # prompt + output so far (penalties need it); read-only
    num_prompt_tokens: int
    # For prompt_logprobs: the prompt token each of the chunk's first positions must predict.
    prompt_logprob_targets: list[int] = field(default_factory=list)
    adapter_id: str | None = None  # the LoRA adapter's content version; None: the base model

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class SchedulerOutput:
    scheduled: list[ScheduledRequest]
    preempted_ids: list[str]
    finished_ids: list[str]  # finished since the previous step: the runner drops their state
    lora_slots: tuple[str | None, ...] = ()  # adapter version resident in each slot (runner activates)

    @property
    def num_scheduled_tokens(self) -> int:
        return sum(s.num_tokens for s in self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


@dataclass(frozen=True)
class RunnerOutput:
    sampled: dict[str, int]
    # request id -> {token id: logprob}; the sampled token first, then the top-k alternatives.
    logprobs: dict[str, dict[int, float]] = field(default_factory=dict)
    # request id -> one entry per target of ScheduledRequest.prompt_logprob_targets.
    prompt_logprobs: dict[str, list[dict[int, float]]] = field(default_factory=dict)


@dataclass
class RequestMetrics:
    """Times are ``time.time()`` seconds; token counts are exact."""

    arrival_time: float
    scheduled_time: float | None
    first_token_time: float | None
    finished_time: float | None
    num_prompt_tokens: int
    num_cached_tokens: int
    num_output_tokens: int
    num_preemptions: int = 0

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_time is None else self.first_token_time - self.arrival_time

    @property
    def queue_time(self) -> float | None:
        return None if self.scheduled_time is None else self.scheduled_time - self.arrival_time


@dataclass
class CompletionOutput:
    """One of the ``n`` samples of a request. ``delta_*`` hold what is new since the last output."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    logprobs: list[dict[int, float]] | None = None
    delta_text: str = ""
    delta_token_ids: list[int] = field(default_factory=list)
    delta_logprobs: list[dict[int, float]] | None = None
    metrics: RequestMetrics | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    prompt_logprobs: list[dict[int, float] | None] | None = None
    num_cached_tokens: int = 0

    @property
    def metrics(self) -> list[RequestMetrics]:
        return [o.metrics for o in self.outputs if o.metrics is not None]
