"""Request state as the scheduler sees it: token ids and counters, never tensors.

Invariant: ``num_computed_tokens <= num_tokens``; the scheduler brings the first up to the
second, a chunk at a time (prefill) or one token at a time (decode). There is no phase flag.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from treadle.sampling_params import SamplingParams


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED = "finished"


class FinishReason(enum.StrEnum):
    STOP = "stop"  # EOS, a stop token id or a stop string
    LENGTH = "length"  # max_tokens or the model's context
    ABORT = "abort"  # the client went away or asked to cancel
    ERROR = "error"  # bad input found late (for example a prompt over the context)


@dataclass
class RequestTimes:
    """Wall-clock times (``time.time()``) of a request's life; ``None`` until reached."""

    arrival: float = field(default_factory=time.time)
    scheduled: float | None = None
    first_token: float | None = None
    finished: float | None = None


class Request:
    """One sequence in the engine: a prompt, the tokens generated so far, and progress counters."""

    def __init__(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        eos_token_ids: tuple[int, ...] = (),
        adapter_id: str | None = None,
        cache_salt: str | None = None,
        arrival_time: float | None = None,
    ) -> None:
        if not prompt_token_ids:
            raise ValueError("prompt must contain at least one token")
        self.request_id = request_id
        self.prompt_token_ids = list(prompt_token_ids)
        self.output_token_ids: list[int] = []
        self.all_token_ids: list[int] = list(prompt_token_ids)
        self.params = params
        self.eos_token_ids = eos_token_ids
        self.adapter_id = adapter_id
        self.cache_salt = cache_salt
        self.status = RequestStatus.WAITING
        self.finish_reason: FinishReason | None = None
        self.stop_reason: int | str | None = None
        self.num_computed_tokens = 0
        self.num_cached_tokens = -1  # prompt tokens served from the prefix cache, set on first schedule
        self.num_preemptions = 0
        self.block_hashes: list[bytes] = []  # hash chain over full blocks of all_token_ids
        self.times = RequestTimes(arrival=arrival_time or time.time())
        # Sampling side-outputs accumulated across steps.
        self.logprobs: list[dict[int, float]] = []
        self.prompt_logprobs: list[dict[int, float] | None] = []

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def is_finished(self) -> bool:
        return self.status == RequestStatus.FINISHED

    def append_output_token(self, token_id: int) -> None:
        self.output_token_ids.append(token_id)
        self.all_token_ids.append(token_id)

    def check_stop(self, max_model_len: int) -> FinishReason | None:
        """Decide, after a token was appended, whether this request is done (not stop strings)."""
        params = self.params
        last = self.output_token_ids[-1]
        if self.num_output_tokens >= params.min_tokens:
            if not params.ignore_eos and last in self.eos_token_ids:
                self.stop_reason = None
                return FinishReason.STOP
            if last in params.stop_token_ids:
                self.stop_reason = last
                return FinishReason.STOP
        if self.num_output_tokens >= params.max_tokens or self.num_tokens >= max_model_len:
            return FinishReason.LENGTH
        return None

    def __repr__(self) -> str:
        return (
            f"Request({self.request_id!r}, status={self.status.value}, tokens={self.num_tokens}, "
            f"computed={self.num_computed_tokens})"
        )
