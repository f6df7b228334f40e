"""Async plumbing: merge the engine streams of one API request, and stop when the client leaves.

Closing an engine stream (``AsyncEngine.generate``) before it finishes aborts its request and
frees its KV blocks, so every path here makes sure the streams are closed: on normal end, on
error, on client disconnect and on cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from treadle.engine.outputs import RequestOutput

Receive = Callable[[], Awaitable[dict[str, Any]]]
_DONE = object()


class ClientDisconnected(Exception):
    """The HTTP client closed its connection before the response was complete."""


async def merge(streams: list[AsyncIterator[RequestOutput]]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Yield ``(stream index, output)`` from all streams as outputs arrive."""
    if len(streams) == 1:
        stream = streams[0]
        try:
            async for out in stream:
                yield 0, out
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        return
    q: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream: AsyncIterator[RequestOutput]) -> None:
        try:
            async for out in stream:
                q.put_nowait((i, out))
        except Exception as e:  # noqa: BLE001 - re-raised by the consumer
            q.put_nowait((i, e))
        finally:
            q.put_nowait((i, _DONE))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            i, item = await q.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(receive: Receive, it: AsyncIterator) -> AsyncIterator:
    """Iterate ``it``; raise :class:`ClientDisconnected` (closing ``it``) if the client leaves first.

    Starlette only watches for a disconnect once a streaming body has started; this covers the
    time before it (queueing, prefill) and whole non-streaming requests.
    """
    gone = asyncio.ensure_future(_wait_disconnect(receive))
    nxt: asyncio.Future | None = None
    try:
        while True:
            nxt = asyncio.ensure_future(it.__anext__())
            await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                raise ClientDisconnected()
            try:
                item = nxt.result()
            except StopAsyncIteration:
                return
            nxt = None
            yield item
    finally:
        for fut in (nxt, gone):
            if fut is not None and not fut.done():
                fut.cancel()
                with contextlib.suppress(BaseException):
                    await fut
        with contextlib.suppress(RuntimeError):
            await it.aclose()  # type: ignore[attr-defined]
