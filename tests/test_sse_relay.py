"""The gateway's SSE relay helpers: where a stream's held-back head ends, and the in-flight hold."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from treadle.gateway.sse_relay import Hold, cached_tokens, carries_token, read_until_token


def _data(obj: object) -> str:
    return "data: " + json.dumps(obj)


def test_carries_token_only_on_tokens_finishes_usage_errors_and_done() -> None:
    assert not carries_token(": keep-alive")
    assert not carries_token(_data({"choices": [{"delta": {"role": "assistant"}}]}))  # the role chunk is held
    assert not carries_token(_data({"choices": [{"delta": {"content": ""}, "finish_reason": None}]}))
    assert carries_token(_data({"choices": [{"delta": {"content": "Hi"}}]}))
    assert carries_token(_data({"choices": [{"text": "Hi"}]}))
    assert carries_token(_data({"choices": [{"delta": {}, "finish_reason": "stop"}]}))
    assert carries_token(_data({"choices": [], "usage": {"prompt_tokens": 3}}))
    assert carries_token(_data({"error": {"message": "x"}}))
    assert carries_token("data: [DONE]")
    assert carries_token("data: {not json")  # relayed as it is rather than held forever


def test_read_until_token_stops_at_the_first_token_line() -> None:
    lines = [_data({"choices": [{"delta": {"role": "assistant"}}]}), _data({"choices": [{"delta": {"content": "a"}}]}),
             _data({"choices": [{"delta": {"content": "b"}}]})]

    async def gen() -> AsyncIterator[str]:
        for line in lines:
            yield line

    assert asyncio.run(read_until_token(gen())) == lines[:2]
    assert asyncio.run(read_until_token(_empty())) == []


async def _empty() -> AsyncIterator[str]:
    for line in ():
        yield line


def test_cached_tokens_reads_only_an_int() -> None:
    assert cached_tokens({"prompt_tokens_details": {"cached_tokens": 16}}) == 16
    assert cached_tokens({"prompt_tokens_details": {"cached_tokens": "16"}}) is None
    assert cached_tokens({"prompt_tokens": 3}) is None
    assert cached_tokens(None) is None


class _Replica:
    inflight = 2


def test_hold_releases_exactly_once_and_keep_defers_it() -> None:
    r = _Replica()
    held = Hold(r)  # type: ignore[arg-type]
    held.keep = True
    held.release_unless_kept()
    assert r.inflight == 2
    held.release()
    held.release()
    held.release_unless_kept()
    assert r.inflight == 1
