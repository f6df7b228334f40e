"""Request bodies of the OpenAI API, as pydantic models. Pydantic lives only in ``treadle.server``.

Every field is optional where OpenAI's is, so defaults are decided in one place (``requests``).
Unknown fields are kept (``extra="allow"``) and sorted afterwards by :func:`check_fields`: fields
that cannot change the output are ignored, fields Treadle cannot honour get a 400 naming them.
Responses are plain dicts built in ``responses``: they are hot in streaming and need no parsing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from treadle.server.errors import ApiError


class _Body(BaseModel):
    # strict: no coercion, as OpenAI validates ("max_tokens": "10" and "logprobs": 0.0 are 400s)
    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Body):
    type: str
    text: str | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # assistant turns that called tools
    tool_call_id: str | None = None  # role "tool": the call this message answers


class StreamOptions(_Body):
    include_usage: bool | None = False
    continuous_usage_stats: bool | None = False


class _Sampling(_Body):
    """Fields shared by chat and completions, including vLLM's extras (top-level in the body)."""

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # vLLM extras
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool | None = False
    min_tokens: int | None = 0
    stop_token_ids: list[int] | None = None
    # token id (as a string key) -> bias added to its logit, clamped to [-100, 100]
    logit_bias: dict[str, float] | None = None
    # structured outputs (treadle.server.structured): OpenAI's, vLLM's and vLLM's legacy aliases
    response_format: dict[str, Any] | None = None
    structured_outputs: dict[str, Any] | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    return_token_ids: bool | None = False  # vLLM: token ids in responses and stream chunks
    cache_salt: str | None = None  # vLLM: prefixes are shared only between requests with the same salt


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool | None = False
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = None
    echo: bool | None = False
    prompt_logprobs: int | None = None
    best_of: int | None = None


# Fields accepted and ignored: they do not change what the model generates.
IGNORED_FIELDS = frozenset(
    {
        "metadata",
        "store",
        "service_tier",
        "parallel_tool_calls",
        "prompt_cache_key",
        "safety_identifier",
        "skip_special_tokens",  # True is what Treadle does anyway; False is checked below
        "spaces_between_special_tokens",
    }
)


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


# Fields Treadle cannot honour yet, with the values that mean "not used" (then they are accepted).
_UNSUPPORTED: dict[str, Any] = {
    "functions": _empty,
    "function_call": lambda v: v is None or v == "none",
    "suffix": _empty,
    "audio": _empty,
    "modalities": lambda v: v is None or v == ["text"],
    "prediction": _empty,
    "web_search_options": _empty,
    "reasoning_effort": _empty,
    "verbosity": _empty,
    "lora_request": _empty,
}


def check_fields(body: _Body) -> None:
    """400 for fields that are not supported (or not known); ignored fields pass."""
    for name, value in (body.model_extra or {}).items():
        if name in IGNORED_FIELDS:
            if name == "skip_special_tokens" and value is False:
                raise ApiError.bad_param(name, "skip_special_tokens=false is not supported")
            continue
        if name in _UNSUPPORTED:
            if _UNSUPPORTED[name](value):
                continue
            raise ApiError.bad_param(name, f"'{name}' is not supported by this server")
        raise ApiError.bad_param(name, f"Unrecognized request argument supplied: {name}")
    if isinstance(body, ChatCompletionRequest):
        for i, m in enumerate(body.messages):
            extra = {k: v for k, v in (m.model_extra or {}).items() if not _empty(v)}
            if extra:
                key = next(iter(extra))
                raise ApiError.bad_param(f"messages[{i}].{key}", f"messages[{i}].{key} is not supported")
            if isinstance(m.content, list):
                for j, part in enumerate(m.content):
                    if part.type != "text" or part.text is None:
                        raise ApiError.bad_param(
                            f"messages[{i}].content[{j}]",
                            f"content part type {part.type!r} is not supported: only 'text' parts with 'text'",
                        )
    if isinstance(body, CompletionRequest) and body.best_of is not None and body.best_of != (body.n or 1):
        raise ApiError.bad_param("best_of", "best_of is not supported unless it equals n")
