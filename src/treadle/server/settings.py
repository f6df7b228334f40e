"""``treadle serve`` settings: the API layer's and the listening process's, one field per flag.

Each field with ``metadata["help"]`` is a command-line flag, built by :mod:`treadle.config_args`
(the engine's flags come from :class:`treadle.config.EngineConfig` the same way). No torch or web
framework here, so ``treadle serve --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOG_LEVELS = ("debug", "info", "warning", "error")


def queue_limit(raw: str) -> int | None:
    """``--max-queue`` value: a count, or -1 (any negative) / ``none`` for no limit."""
    if raw.strip().lower() in ("none", "null"):
        return None
    n = int(raw)
    return None if n < 0 else n


queue_limit.__name__ = "int"  # argparse names the expected type in its error message


@dataclass(frozen=True)
class ServerSettings:
    """What the API layer needs. ``served_model_name`` has no default: the command resolves it."""

    served_model_name: str = field(metadata={
        "help": "the model name clients send (default: the model folder's name)"})
    api_key: str | None = field(default=None, metadata={
        "help": "require 'Authorization: Bearer KEY' on /v1 routes (default: no key)"})
    default_max_tokens: int = field(default=256, metadata={"help": "max_tokens when a request sends none"})
    max_queue: int | None = field(default=256, metadata={
        "help": "most sequences (prompts x n) allowed to wait beyond the --max-num-seqs running ones; a "
                "request that would exceed it gets 429 + Retry-After, one that needs more than max-num-seqs "
                "+ max-queue even on an idle server gets 400 (-1: unlimited)",
        "type": queue_limit})
    tool_call_parser: str | None = field(default=None, metadata={
        "help": "the model's tool-call format, read for tool_choice 'auto' (default: none: 'auto' is a 400, "
                "while 'required' and named functions work on any model through the grammar)",
        "choices": ("hermes", "json")})
    admin_api_key: str | None = field(default=None, metadata={
        "help": "key of the admin endpoints (LoRA adapter load/unload, docs/LORA.md), also accepted as an "
                "API key; without it those endpoints are disabled (default: none)"})
    # The engine's own --max-num-seqs (EngineConfig): the command copies it here.
    max_num_seqs: int = field(default=128, metadata={"cli": False})

    def __post_init__(self) -> None:
        if not self.served_model_name:
            raise ValueError("served_model_name must be a non-empty string")
        if self.default_max_tokens < 1:
            raise ValueError(f"--default-max-tokens must be >= 1, got {self.default_max_tokens}")
        if self.max_queue is not None and self.max_queue < 0:
            raise ValueError(f"--max-queue must be >= 0 or None (unlimited), got {self.max_queue}")
        if self.max_num_seqs < 1:
            raise ValueError(f"--max-num-seqs must be >= 1, got {self.max_num_seqs}")


@dataclass(frozen=True)
class ListenSettings:
    """Where and how the server process listens."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (default: loopback only)"})
    port: int = field(default=8000, metadata={"help": "port to bind"})
    drain_timeout: float = field(default=120.0, metadata={
        "help": "seconds SIGTERM waits for in-flight requests"})
    log_level: str = field(default="info", metadata={"help": "server log level", "choices": LOG_LEVELS})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be in 0..65535, got {self.port}")
        if self.drain_timeout < 0:
            raise ValueError(f"--drain-timeout must be >= 0, got {self.drain_timeout}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"--log-level must be one of {LOG_LEVELS}, got {self.log_level!r}")
