"""AsyncEngine: an asyncio front for :class:`LLMEngine`, stepping it on one background thread.

Callers ``async for out in engine.generate(...)`` and receive a :class:`RequestOutput` each time
their request advances (``delta_text`` holds the new text). All engine state is touched only by
the engine thread: adds and aborts travel to it through a queue, outputs come back to the event
loop with ``call_soon_threadsafe``. Leaving the ``async for`` early (a client disconnect) aborts
the request, which frees its KV blocks. Torch releases the GIL inside its kernels, so the event
loop stays responsive while a step runs.

The engine is built on the engine thread itself when given a config: torch's OpenMP thread team
belongs to the thread that first runs an op, and stepping the model from a thread other than the
one that loaded it left cores idle (measured: 64-prompt prefill-heavy run 36 s vs 50 s wall at the
same CPU time). Pass ``engine=`` only in tests.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine, Prompt
from treadle.engine.outputs import RequestOutput
from treadle.sampling_params import SamplingParams

log = logging.getLogger("treadle.engine")


class EngineDeadError(RuntimeError):
    """The engine thread died; no request can be served until restart."""


class AsyncEngine:
    def __init__(self, config: EngineConfig | None = None, engine: LLMEngine | None = None) -> None:
        """Start the engine thread; with a config, the LLMEngine is built there and this call
        blocks until it is loaded (a load error is re-raised here)."""
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._stop = threading.Event()
        self._dead: BaseException | None = None
        self._built = threading.Event()
        self._load_error: BaseException | None = None
        self.engine: LLMEngine = engine  # type: ignore[assignment]  # set by the engine thread when None
        # called on the event loop with (request id, time.monotonic()) as each add is queued for the engine
        # thread (``TREADLE_ENQUEUE_LOG``: how far apart a replica's front end hands requests over)
        self.enqueue_observer: Callable[[str, float], None] | None = None
        self._thread = threading.Thread(
            target=self._run, args=(config or EngineConfig(),), name="treadle-engine", daemon=True
        )
        self._thread.start()
        self._built.wait()
        if self._load_error is not None:
            raise self._load_error
        self.stats: dict[str, float] = self.engine.get_stats()

    # ---------------------------------------------------------------- public API
    @property
    def model_name(self) -> str:
        return self.engine.model_name

    @property
    def tokenizer(self):  # noqa: ANN201
        return self.engine.tokenizer

    @property
    def is_alive(self) -> bool:
        return self._dead is None and self._thread.is_alive()

    @property
    def num_unfinished(self) -> int:
        return len(self._streams)

    async def generate(
        self,
        prompt: Prompt,
        params: SamplingParams,
        request_id: str,
        adapter_id: str | None = None,
        cache_salt: str | None = None,
        prompt_token_ids: list[int] | None = None,
        lora_name: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Stream outputs for one request. Raises ValueError (bad input) before the first output."""
        if not self.is_alive:
            raise EngineDeadError(f"engine is not running: {self._dead!r}")
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        accepted = loop.create_future()
        self._streams[request_id] = (loop, q)
        kwargs = dict(adapter_id=adapter_id, cache_salt=cache_salt, prompt_token_ids=prompt_token_ids,
                      lora_name=lora_name)
        if self.enqueue_observer is not None:
            self.enqueue_observer(request_id, time.monotonic())
        self._commands.put(("add", (request_id, prompt, params, kwargs, loop, accepted)))
        finished = False
        try:
            await accepted
            while True:
                item = await q.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finished:
                    finished = True
                    return
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                self._commands.put(("abort", request_id))

    def fail_all(self, error: BaseException) -> int:
        """End every request in progress: its stream raises ``error`` (and is then aborted, which
        frees its KV blocks). Call on the event loop. Returns how many were ended."""
        streams = list(self._streams.values())
        for _, q in streams:
            q.put_nowait(error)
        return len(streams)

    def abort(self, request_id: str) -> None:
        self._commands.put(("abort", request_id))

    def call(self, fn: Any) -> asyncio.Future:
        """Run ``fn(engine)`` on the engine thread; await the returned future for its result."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._commands.put(("call", (fn, loop, fut)))
        return fut

    def shutdown(self) -> None:
        self._stop.set()
        self._commands.put(("wake", None))
        self._thread.join(timeout=10)

    # ---------------------------------------------------------------- engine thread
    def _run(self, config: EngineConfig) -> None:
        try:
            if self.engine is None:
                self.engine = LLMEngine(config)
        except BaseException as e:  # noqa: BLE001 - re-raised by __init__ on the caller's thread
            self._load_error = e
            self._dead = e
            return
        finally:
            self._built.set()
        self._loop()

    def _loop(self) -> None:
        engine = self.engine
        try:
            while not self._stop.is_set():
                block = not engine.has_unfinished_requests()
                self._drain(block)
                if engine.has_unfinished_requests():
                    for out in engine.step():
                        self._deliver(out.request_id, out)
                self.stats = engine.get_stats()
        except BaseException as e:  # noqa: BLE001 - reported to every waiting stream
            log.exception("engine thread died")
            self._dead = e
            for rid in list(self._streams):
                self._deliver(rid, EngineDeadError(f"engine died: {e!r}"))

    def _drain(self, block: bool) -> None:
        while True:
            try:
                kind, arg = self._commands.get(timeout=0.5) if block else self._commands.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "add":
                rid, prompt, params, kwargs, loop, fut = arg
                try:
                    self.engine.add_request(rid, prompt, params, **kwargs)
                except (ValueError, LookupError) as e:  # bad input, or an adapter that is not loaded
                    loop.call_soon_threadsafe(_set_exception, fut, e)
                else:
                    loop.call_soon_threadsafe(_set_result, fut, None)
            elif kind == "abort":
                self.engine.abort_request(arg)
            elif kind == "call":
                fn, loop, fut = arg
                try:
                    result = fn(self.engine)
                except Exception as e:  # noqa: BLE001 - handed to the caller
                    loop.call_soon_threadsafe(_set_exception, fut, e)
                else:
                    loop.call_soon_threadsafe(_set_result, fut, result)

    def _deliver(self, request_id: str, item: RequestOutput | BaseException) -> None:
        target = self._streams.get(request_id)
        if target is not None:
            loop, q = target
            loop.call_soon_threadsafe(q.put_nowait, item)


def _set_result(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
