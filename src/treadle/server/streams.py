"""Async plumbing: merge the engine streams of one API request, and stop when the client leaves.

Closing an engine stream (``AsyncEngine.generate``) before it finishes aborts its request and
frees its KV blocks, so every path here makes sure the streams are closed: on normal end, on
error, on client disconnect and on cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the gateway imports this module: no engine code at run time
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


@contextlib.asynccontextmanager
async def cancel_on_disconnect(receive: Receive) -> AsyncIterator[None]:
    """Run the body; if the client leaves first, cancel it and raise :class:`ClientDisconnected`.

    Starlette only watches for a disconnect once a streaming body has started; this covers the
    time before it (queueing, prefill) and whole non-streaming requests. One watcher task per
    request, nothing per token.
    """
    task = asyncio.current_task()
    assert task is not None
    fired = False

    async def watch() -> None:
        nonlocal fired
        await _wait_disconnect(receive)
        fired = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:
            raise ClientDisconnected() from None
        raise
    else:
        if fired:  # the watcher fired as the body ended: take its cancel back
            task.uncancel()
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
