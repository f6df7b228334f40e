"""The SSE side of the gateway's relay: which line ends a stream's held-back head, the streaming response
whose cleanup always runs, and the in-flight hold that a request keeps on its replica until the last byte.

Invariants: a ``Hold`` releases its replica's ``inflight`` unit exactly once; a ``RelayedStream`` closes its
upstream response and releases its hold even if the client left before the body started.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.responses import StreamingResponse

from treadle.gateway.replicas import Replica


def cached_tokens(usage: Any) -> int | None:
    """``usage.prompt_tokens_details.cached_tokens`` when the replica reported it as an int, else None."""
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens_details"), dict):
        value = usage["prompt_tokens_details"].get("cached_tokens")
        return value if isinstance(value, int) else None
    return None


def carries_token(line: str) -> bool:
    """Whether an SSE line ends the held-back part of a stream: a token, a finish, usage, an error, DONE."""
    if not line.startswith("data:"):
        return False
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        chunk = json.loads(data)
    except ValueError:
        return True
    if not isinstance(chunk, dict) or "error" in chunk or chunk.get("usage"):
        return True
    for c in chunk.get("choices") or []:
        delta = c.get("delta") or {}
        if c.get("text") or delta.get("content") or c.get("finish_reason") is not None:
            return True
    return False



class RelayedStream(StreamingResponse):
    """SSE response whose cleanup runs even if its body never started (the client left first)."""

    def __init__(self, content: AsyncIterator[str], upstream: httpx.Response, held: Hold,
                 headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.upstream, self.held = upstream, held

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[union-attr]
            await self.upstream.aclose()
            self.held.release()


class Hold:
    """One unit of a replica's in-flight count, released exactly once."""

    def __init__(self, r: Replica) -> None:
        self.r, self.keep, self.done = r, False, False

    def release(self) -> None:
        if not self.done:
            self.done = True
            self.r.inflight -= 1

    def release_unless_kept(self) -> None:
        if not self.keep:
            self.release()


async def read_until_token(lines: AsyncIterator[str]) -> list[str]:
    """Lines up to and including the first that carries a token (or all, if the stream ends first)."""
    out: list[str] = []
    async for line in lines:
        out.append(line)
        if carries_token(line):
            break
    return out
