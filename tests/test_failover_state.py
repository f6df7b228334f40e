"""StreamState without servers: what a broken stream's continuation asks for and how it is spliced."""

from __future__ import annotations

import json

from treadle.gateway.failover import StreamState


def _line(obj: dict) -> str:
    return "data: " + json.dumps(obj)


def test_continuation_of_a_chat_stream() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 10,
            "min_tokens": 4, "temperature": 0, "seed": 7, "stream_options": {"include_usage": True}}
    st = StreamState(body, chat=True)
    assert st.continuable and not st.client_wants_ids
    role = _line({"id": "c1", "created": 5, "model": "m", "prompt_token_ids": [1, 2, 3],
                  "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    out = json.loads(st.observe(role)[5:])
    assert "prompt_token_ids" not in out  # stripped: the client did not ask
    tok = _line({"id": "c1", "choices": [{"index": 0, "delta": {"content": "ab"}, "token_ids": [7, 8],
                                          "finish_reason": None}]})
    assert "token_ids" not in st.observe(tok)
    assert st.can_continue()
    cont = st.continuation_body()
    assert cont["prompt"] == [1, 2, 3, 7, 8] and cont["max_tokens"] == 8 and cont["min_tokens"] == 2
    assert cont["seed"] == 7 and cont["return_token_ids"] and cont["stream_options"] == {"include_usage": True}
    assert "messages" not in cont
    piece = _line({"id": "cmpl-9", "object": "text_completion", "created": 9, "model": "m",
                   "choices": [{"index": 0, "text": "c", "token_ids": [9], "finish_reason": "length",
                                "prompt_token_ids": [1, 2, 3, 7, 8]}]})
    got = json.loads(st.observe(piece, continued=True)[5:])
    assert got["id"] == "c1" and got["object"] == "chat.completion.chunk" and got["created"] == 5
    assert got["choices"][0]["delta"] == {"content": "c"} and got["choices"][0]["finish_reason"] == "length"
    usage = _line({"id": "cmpl-9", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1,
                                                            "total_tokens": 6}})
    u = json.loads(st.observe(usage, continued=True)[5:])["usage"]
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (3, 3, 6)  # counted once


def test_what_cannot_be_continued() -> None:
    for extra in ({"n": 2}, {"logprobs": True}, {"response_format": {"type": "json_object"}},
                  {"tools": [{"type": "function"}]}, {"prompt": ["a", "b"]}):
        assert not StreamState({"prompt": "x", "stream": True, **extra}, chat=False).continuable, extra
    assert StreamState({"prompt": [1, 2], "response_format": {"type": "text"}}, chat=False).continuable
    st = StreamState({"prompt": "x", "max_tokens": 2}, chat=False)
    st.observe(_line({"id": "a", "choices": [{"index": 0, "text": "xy", "token_ids": [4, 5],
                                              "prompt_token_ids": [1]}]}))
    assert st.continuation_body() is None  # max_tokens already used up: the stream finishes as 'length'
    lines = st.length_lines()
    assert json.loads(lines[0][6:])["choices"][0]["finish_reason"] == "length" and lines[-1] == "data: [DONE]\n\n"
