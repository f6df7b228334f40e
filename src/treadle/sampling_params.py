"""Per-request sampling parameters, validated once at construction.

Every invalid value raises ``ValueError`` naming the field and its valid range, so the
server can turn it into a 400 without knowing the rules itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from treadle.structured.spec import StructuredSpec

_MAX_LOGPROBS = 20
LOGIT_BIAS_LIMIT = 100.0  # OpenAI's range: biases are clamped to [-100, 100]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens for one request.

    ``temperature == 0`` means greedy. ``top_k <= 0`` (or -1) disables top-k. ``seed`` makes the
    request reproducible on its own, independent of what else runs in the batch. ``stop`` strings
    are searched in the detokenised text and are not returned. ``logprobs`` asks for the
    log-probability of each sampled token plus that many top alternatives; ``prompt_logprobs``
    asks the same for every prompt token after the first (the first has no context).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    n: int = 1
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    min_tokens: int = 0
    # (token id, bias) pairs added to the logits before sampling; biases clamped to [-100, 100]
    logit_bias: tuple[tuple[int, float], ...] = ()
    structured: StructuredSpec | None = None  # the output must match this grammar
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        _check_int("max_tokens", self.max_tokens, low=1)
        _check_float("temperature", self.temperature, 0.0, 2.0 * 1e3, "a number >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        _check_int("top_k", self.top_k, low=-1)
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if not 0.0 < self.repetition_penalty <= 2.0 * 1e3:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not -2.0 <= self.presence_penalty <= 2.0:
            raise ValueError(f"presence_penalty must be in [-2, 2], got {self.presence_penalty}")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            raise ValueError(f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}")
        if self.seed is not None:
            _check_int("seed", self.seed, low=-(2**63), high=2**63 - 1)
        _check_int("n", self.n, low=1, high=128)
        _check_int("min_tokens", self.min_tokens, low=0, high=self.max_tokens)
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, low=0, high=_MAX_LOGPROBS)
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop must be non-empty strings, got {s!r}")
        for t in self.stop_token_ids:
            if t < 0:
                raise ValueError(f"stop_token_ids must be >= 0, got {t}")
        bias = {}
        for t, b in dict(self.logit_bias).items() if isinstance(self.logit_bias, dict) else self.logit_bias:
            _check_int("logit_bias", t, low=0)
            _check_float("logit_bias", b, float("-inf"), float("inf"), "a number")
            bias[t] = max(-LOGIT_BIAS_LIMIT, min(LOGIT_BIAS_LIMIT, float(b)))
        object.__setattr__(self, "logit_bias", tuple(sorted(bias.items())))
        if self.structured is not None and not isinstance(self.structured, StructuredSpec):
            raise ValueError(f"structured must be a StructuredSpec, got {self.structured!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def needs_penalties(self) -> bool:
        return (
            self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0
        )

    def for_child(self, index: int) -> SamplingParams:
        """Parameters for the ``index``-th of ``n`` samples: n=1 and a distinct derived seed."""
        seed = None if self.seed is None else self.seed + index
        return replace(self, n=1, seed=seed)


def _check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")


def _check_float(name: str, value: object, low: float, high: float, valid: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be {valid}, got {value}")
