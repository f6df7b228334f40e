"""One API request end to end: parse, admit, run on the engine, answer (JSON or SSE)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from treadle.engine.async_engine import EngineDeadError
from treadle.engine.lora_registry import AdapterNotFoundError
from treadle.server.body import load_json_object
from treadle.server.errors import ApiError
from treadle.server.lora_routes import resolve_model
from treadle.server.metrics import RequestTracker, ServerMetrics
from treadle.server.middleware import ServerState
from treadle.server.requests import _PARAM_NAMES, Limits, Prepared
from treadle.server.responses import Collector, TokenText, sse
from treadle.server.settings import ServerSettings
from treadle.server.streams import ClientDisconnected, cancel_on_disconnect, merge
from treadle.server.timing import server_timing

log = logging.getLogger("treadle.server")
_UNION_HINTS = {
    "prompt": "prompt must be a string, a list of strings, a list of token ids or a list of such lists",
    "stop": "stop must be a string or a list of strings",
}


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = str(part)
        elif part in ("str", "list[str]", "list[int]", "list[list[int]]") or "[" in str(part):
            break  # a union member's name, not a field
        else:
            out += f".{part}"
    return out


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    data = load_json_object(await request.body())
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_error(e.errors()) from e


def validation_error(errors: list) -> ApiError:
    err = errors[0]
    param = _loc(tuple(err.get("loc", ()))) or None
    if param in _UNION_HINTS:
        return ApiError.bad_param(param, f"{_UNION_HINTS[param]}, got {json.dumps(err.get('input'))[:80]}")
    if err.get("type") == "missing":
        return ApiError.bad_param(param, f"'{param}' is a required property")
    return ApiError.bad_param(param, f"{param}: {err.get('msg')}, got {json.dumps(err.get('input'), default=str)[:80]}")


class _Stream(StreamingResponse):
    """A streaming response that always runs its cleanup, even when the body never started."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], Awaitable[None]]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[union-attr]
            await self._on_close()


class Handler:
    def __init__(self, state: ServerState, settings: ServerSettings, metrics: ServerMetrics) -> None:
        self.state, self.settings, self.metrics = state, settings, metrics
        self._text: TokenText | None = None
        self.recorder: Any = None  # treadle.feedback.service.FeedbackService: records each served response

    def _admit(self, seqs: int) -> None:
        limit = self.settings.max_queue
        if limit is None:
            return
        most = self.settings.max_num_seqs + limit
        if seqs > most:  # even an idle server would answer 429 for ever: say why, once
            raise ApiError.bad_param("n", f"This request needs {seqs} sequences (n x prompts), more than this "
                                     f"server can ever hold: --max-num-seqs {self.settings.max_num_seqs} running "
                                     f"+ --max-queue {limit} waiting. Send fewer prompts or a smaller n.",
                                     "too_many_sequences")
        waiting = float(self.state.engine.stats.get("waiting", 0))
        slot_wait = max(0, self.state.seqs + seqs - self.settings.max_num_seqs)
        kv_wait = waiting + seqs if waiting > 0 else 0
        if max(slot_wait, kv_wait) > limit:
            raise ApiError(429, f"The server is busy: the waiting queue is full (--max-queue {limit}). "
                           "Retry later.", None, "queue_full")

    async def handle(self, request: Request, body: Any, prepare: Callable[..., Prepared]) -> Response:
        engine = self.state.engine
        model_name, lora_name, version = resolve_model(body.model, self.settings.served_model_name,
                                                       self.state.loras)
        request.state.model_name, request.state.model_version = model_name, version  # for request logs
        if _constrained(body):  # the one-time grammar tokenizer setup (~0.4 s) off the event loop
            await asyncio.to_thread(lambda: engine.engine.grammar_compiler.ll_tokenizer)
        limits = Limits(engine.engine.max_model_len, self.settings.default_max_tokens,
                        lambda spec: engine.engine.grammar_compiler.template(spec),
                        self.settings.tool_call_parser, engine.tokenizer.chat_template)
        prep = prepare(body, engine.engine.tokenize_prompt, limits)
        seqs = len(prep.prompts) * prep.n
        self._admit(seqs)
        if self._text is None:
            self._text = TokenText(engine.tokenizer)
        rid = ("chatcmpl-" if prep.chat else "cmpl-") + uuid.uuid4().hex
        request.state.engine_request_id = rid
        self.state.seqs += seqs
        released = False

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.state.seqs -= seqs
                await merged.aclose()
                tracker.aborted()

        streams = [
            engine.generate(p.text if p.text is not None else list(p.token_ids), params, f"{rid}-{i}",
                            prompt_token_ids=list(p.token_ids), lora_name=lora_name, cache_salt=body.cache_salt)
            for i, (p, params) in enumerate(zip(prep.prompts, prep.params, strict=True))
        ]
        merged = merge(streams)
        tracker = self.metrics.tracker(seqs, model_name, version)
        col = Collector(prep, rid, model_name, int(time.time()), self._text)
        try:
            async with cancel_on_disconnect(request.receive):
                first = await merged.__anext__()
                if not prep.stream:
                    tracker.observe(*first)
                    col.add(*first)
                    async for pidx, out in merged:
                        tracker.observe(pidx, out)
                        col.add(pidx, out)
        except BaseException as e:
            await release()
            mapped = _api_error(e)
            if mapped is e:
                raise
            raise mapped from e
        if prep.stream:  # from here Starlette cancels the body if the client leaves
            return _Stream(self._sse(request, body, prep, col, tracker, first, merged), release)
        await release()
        self._record(request, col)
        if self.recorder is not None:
            self.recorder.record_server(request, body, col, stream=False)
        m = col.final[min(col.final)].metrics if col.final else None
        timing = server_timing(m.ttft, m.finished_time - m.arrival_time if m.finished_time else None) if m else {}
        return JSONResponse(col.chat_response() if prep.chat else col.completion_response(), headers=timing)

    async def _sse(self, request: Request, body: Any, prep: Prepared, col: Collector, tracker: RequestTracker,
                   first: tuple, merged: AsyncIterator) -> AsyncIterator[str]:
        if prep.chat:
            for chunk in col.chat_role_chunks():
                yield chunk
        try:
            tracker.observe(*first)
            for chunk in col.stream_chunks(*first):
                yield chunk
            async for pidx, out in merged:
                tracker.observe(pidx, out)
                for chunk in col.stream_chunks(pidx, out):
                    yield chunk
        except Exception as e:  # noqa: BLE001 - reported in the stream: the status is already sent
            log.exception("request %s failed mid-stream", col.rid)
            err = _api_error(e)
            yield sse((err if isinstance(err, ApiError) else ApiError(500, repr(e))).body())
        else:
            if prep.include_usage:
                yield col.usage_chunk()
            self._record(request, col)
            if self.recorder is not None:
                self.recorder.record_server(request, body, col, stream=True)
        yield sse("[DONE]")

    @staticmethod
    def _record(request: Request, col: Collector) -> None:
        u = col.usage()
        request.state.prompt_tokens = u["prompt_tokens"]
        request.state.completion_tokens = u["completion_tokens"]
        request.state.cached_tokens = u["prompt_tokens_details"]["cached_tokens"]


def _constrained(body: Any) -> bool:
    return any(getattr(body, f, None) for f in ("response_format", "structured_outputs", "guided_json",
                                                "guided_regex", "guided_choice", "guided_grammar", "tools"))


def _api_error(e: BaseException) -> BaseException:
    if isinstance(e, ApiError):
        return e
    if isinstance(e, AdapterNotFoundError):  # unloaded between the name check and the engine
        return ApiError(404, str(e), "model", "model_not_found")
    if isinstance(e, ValueError):
        return ApiError.from_value_error(e, _PARAM_NAMES)
    if isinstance(e, EngineDeadError):
        return ApiError(503, str(e), None, "engine_dead")
    if isinstance(e, ClientDisconnected):
        return e
    if isinstance(e, Exception):
        return ApiError(500, f"Internal error: {e!r}", None, "internal_error")
    return e  # CancelledError and friends propagate unchanged
