"""From a validated request body to what the engine runs: prompts, token ids, SamplingParams.

Everything here is a frozen dataclass; all defaults and the context-length check live here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from treadle.sampling_params import SamplingParams
from treadle.server import structured, tools
from treadle.server.errors import ApiError
from treadle.server.protocol import ChatCompletionRequest, CompletionRequest, _Sampling, check_fields
from treadle.structured.spec import StructuredSpec

Tokenize = Callable[[object], tuple[str | None, list[int]]]
_PARAM_NAMES = frozenset(f.name for f in fields(SamplingParams)) | {"prompt", "messages"}


@dataclass(frozen=True)
class PromptInput:
    text: str | None  # None for token-id prompts
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class Prepared:
    """One API request, ready for the engine: one entry of ``prompts``/``params`` per prompt."""

    chat: bool
    prompts: tuple[PromptInput, ...]
    params: tuple[SamplingParams, ...]
    n: int
    stream: bool
    include_usage: bool
    logprobs: int | None = None  # how many alternatives the response shows (None: no logprobs)
    echo: bool = False
    prompt_logprobs: int | None = None  # vLLM's prompt_logprobs field
    drop_output: bool = False  # max_tokens=0 with echo: score the prompt, return no new tokens
    tool_mode: tools.ToolMode | None = None  # the answer is read as tool calls
    return_token_ids: bool = False  # vLLM's return_token_ids: token ids in the response/chunks


@dataclass(frozen=True)
class Limits:
    max_model_len: int
    default_max_tokens: int
    grammar: Callable[[StructuredSpec], object] | None = None  # compiles (cached); raises ValueError
    tool_call_parser: str | None = None
    chat_template: str | None = None


def prepare_chat(body: ChatCompletionRequest, tokenize: Tokenize, limits: Limits) -> Prepared:
    check_fields(body)
    _check_common(body)
    if body.top_logprobs is not None and not body.logprobs:
        raise ApiError.bad_param("top_logprobs", "top_logprobs requires logprobs=true")
    mode = tools.resolve(body.tools, body.tool_choice, limits.tool_call_parser,
                         (body.model_extra or {}).get("parallel_tool_calls", True), limits.chat_template)
    spec, spec_param = structured.resolve(body)
    if mode is not None and mode.spec() is not None:
        if spec is not None:
            raise ApiError.bad_param(spec_param, f"{spec_param} cannot be combined with tool_choice "
                                     f"{'required' if mode.choice == 'required' else 'naming a function'}")
        spec, spec_param = mode.spec(), "tools"
    messages = []
    for m in body.messages:
        if isinstance(m.content, list):
            content = "\n".join(p.text or "" for p in m.content)
        else:
            content = m.content or ""
        msg: dict = {"role": "system" if m.role == "developer" else m.role, "content": content}
        for key in ("tool_calls", "tool_call_id", "name"):
            if getattr(m, key):
                msg[key] = getattr(m, key)
        messages.append(tools.template_message(msg, limits.chat_template, limits.tool_call_parser))
    if body.tools:
        text, ids = _tokenize(lambda p: tokenize(p, tools=body.tools), messages, "messages")  # type: ignore[call-arg]
    else:
        text, ids = _tokenize(tokenize, messages, "messages")
    _compile(spec, spec_param, limits)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        if body.max_tokens != body.max_completion_tokens:
            raise ApiError.bad_param("max_tokens", "max_tokens and max_completion_tokens differ: send one")
    requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    name = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    prompt = PromptInput(text, tuple(ids))
    max_tokens = _max_tokens(len(ids), requested, name, "messages", limits)
    params = _params(body, max_tokens, logprobs, None, spec)
    return Prepared(True, (prompt,), (params,), params.n, bool(body.stream), _include_usage(body), logprobs,
                    tool_mode=mode, return_token_ids=bool(body.return_token_ids))


def prepare_completion(body: CompletionRequest, tokenize: Tokenize, limits: Limits) -> Prepared:
    check_fields(body)
    _check_common(body)
    spec, spec_param = structured.resolve(body)
    raw = body.prompt
    if isinstance(raw, str):
        items: list[object] = [raw]
    elif raw and all(isinstance(x, int) for x in raw):
        items = [list(raw)]
    else:
        items = list(raw)
    if not items:
        raise ApiError.bad_param("prompt", "prompt is empty: send a string, a list of strings or token ids")
    prompts = []
    for item in items:
        text, ids = _tokenize(tokenize, item, "prompt")
        prompts.append(PromptInput(text, tuple(ids)))
    _compile(spec, spec_param, limits)
    echo = bool(body.echo)
    drop = False
    requested = body.max_tokens
    if requested == 0 and echo:  # legacy scoring: prompt logprobs only
        requested, drop = 1, True
    plp = body.prompt_logprobs
    if echo and body.logprobs is not None:
        plp = max(plp or 0, body.logprobs)
    if plp is not None and (body.n or 1) > 1:
        param = "prompt_logprobs" if body.prompt_logprobs is not None else "echo"
        raise ApiError.bad_param(param, f"{param} with logprobs is only supported with n=1")
    params = tuple(
        _params(body, _max_tokens(len(p.token_ids), requested, "max_tokens", "prompt", limits), body.logprobs, plp,
                spec)
        for p in prompts
    )
    return Prepared(
        False, tuple(prompts), params, params[0].n, bool(body.stream), _include_usage(body),
        body.logprobs, echo, body.prompt_logprobs, drop, return_token_ids=bool(body.return_token_ids),
    )


def _check_common(body: _Sampling) -> None:
    if body.stream_options is not None and not body.stream:
        raise ApiError.bad_param("stream_options", "The 'stream_options' parameter is only allowed when 'stream' "
                                 "is enabled.")


def _compile(spec: StructuredSpec | None, param: str | None, limits: Limits) -> None:
    """Compile the grammar now (cached), so a bad or unsupported one is a 400 naming its field."""
    if spec is None or limits.grammar is None:
        return
    try:
        limits.grammar(spec)
    except ValueError as e:
        raise ApiError.bad_param(param, f"{param}: the output constraint cannot be used: {e}") from None


def _logit_bias(raw: dict[str, float] | None) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in (raw or {}).items():
        if not key.isdigit() or len(key) > 12:
            raise ApiError.bad_param("logit_bias", f"logit_bias keys must be token ids (digits), got {key[:20]!r}")
        out[int(key)] = value
    return out


def _include_usage(body: _Sampling) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _tokenize(tokenize: Tokenize, prompt: object, param: str) -> tuple[str | None, list[int]]:
    try:
        text, ids = tokenize(prompt)
    except ValueError as e:
        raise ApiError.bad_param(param, str(e)) from e
    if not ids:
        raise ApiError.bad_param(param, f"{param} is empty: it must contain at least one token")
    return text, ids


def _max_tokens(n_prompt: int, requested: int | None, name: str, what: str, limits: Limits) -> int:
    ctx = limits.max_model_len
    if n_prompt >= ctx:
        raise ApiError.bad_param(
            what,
            f"This model's maximum context length is {ctx} tokens. However, your {what} has {n_prompt} "
            f"tokens, which leaves no room for the completion. Please reduce the length of the {what}.",
            "context_length_exceeded",
        )
    if requested is None:
        return min(limits.default_max_tokens, ctx - n_prompt)
    if requested < 1:
        raise ApiError.bad_param(name, f"{name} must be at least 1, got {requested}")
    if n_prompt + requested > ctx:
        raise ApiError.bad_param(
            name,
            f"This model's maximum context length is {ctx} tokens. However, you requested "
            f"{n_prompt + requested} tokens ({n_prompt} in the {what}, {requested} in the completion). "
            f"Please reduce the length of the {what} or {name}.",
            "context_length_exceeded",
        )
    return requested


def _params(body: _Sampling, max_tokens: int, logprobs: int | None, prompt_logprobs: int | None,
            spec: StructuredSpec | None = None) -> SamplingParams:
    stop = body.stop
    stop_t = (stop,) if isinstance(stop, str) else tuple(stop or ())
    try:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=-1 if body.top_k is None else body.top_k,
            min_p=0.0 if body.min_p is None else body.min_p,
            repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
            presence_penalty=body.presence_penalty or 0.0,
            frequency_penalty=body.frequency_penalty or 0.0,
            seed=body.seed,
            stop=stop_t,
            stop_token_ids=tuple(body.stop_token_ids or ()),
            ignore_eos=bool(body.ignore_eos),
            n=1 if body.n is None else body.n,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            min_tokens=min(body.min_tokens or 0, max_tokens),
            logit_bias=tuple(_logit_bias(body.logit_bias).items()),
            structured=spec,
        )
    except ValueError as e:
        raise ApiError.from_value_error(e, _PARAM_NAMES) from e
