"""One served response as a row of ``interactions``: built from the server's request state or from the
JSON/SSE a gateway relays. Building a record is cheap and never touches the database.

``user`` is the OpenAI ``user`` field, else the API key's owner, else ``anonymous``; ``key_user`` keeps the
key's owner (a ``user``-role key may give feedback on the responses made with it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from treadle.store.models import utcnow

_NOT_PARAMS = frozenset({"messages", "prompt", "stream", "stream_options", "user", "model"})


@dataclass(frozen=True)
class InteractionRecord:
    id: str
    user: str
    key_user: str | None
    endpoint: str  # chat | completion
    request: dict
    params: dict
    output: str
    finish_reason: str | None
    model_name: str
    source: str  # serve | gateway
    stream: bool = False
    choices: list | None = None
    model_version: str | None = None
    replica: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    created_at: datetime = field(default_factory=utcnow)

    def row(self) -> dict[str, Any]:
        return asdict(self)


def resolve_user(body_user: str | None, key_user: str | None) -> str:
    return body_user or key_user or "anonymous"


def split_body(body: dict) -> tuple[str, dict, dict]:
    """(endpoint, request part, sampling params) of an OpenAI request body."""
    if "messages" in body:
        return "chat", {"messages": body["messages"]}, {k: v for k, v in body.items() if k not in _NOT_PARAMS}
    return "completion", {"prompt": body.get("prompt")}, {k: v for k, v in body.items() if k not in _NOT_PARAMS}


def from_response(body: dict, response: dict, *, key_user: str | None, source: str, stream: bool,
                  replica: str | None = None, model_version: str | None = None, ttft_s: float | None = None,
                  e2e_s: float | None = None) -> InteractionRecord | None:
    """A record from a request body and its OpenAI response (a whole one, or one rebuilt from a stream)."""
    rid = response.get("id")
    choices = response.get("choices") or []
    if not rid or not choices:
        return None
    endpoint, request, params = split_body(body)
    texts = [_choice_text(c) for c in sorted(choices, key=lambda c: c.get("index", 0))]
    usage = response.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return InteractionRecord(
        id=str(rid), user=resolve_user(body.get("user"), key_user), key_user=key_user, endpoint=endpoint,
        request=request, params=params, output=texts[0], finish_reason=choices[0].get("finish_reason"),
        model_name=str(response.get("model") or body.get("model") or ""), source=source, stream=stream,
        choices=texts if len(texts) > 1 else None, model_version=model_version, replica=replica,
        prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
        cached_tokens=details.get("cached_tokens"), ttft_s=ttft_s, e2e_s=e2e_s)


def _choice_text(c: dict) -> str:
    if "message" in c:
        return (c["message"] or {}).get("content") or ""
    return c.get("text") or ""


class StreamAccumulator:
    """Rebuilds a whole response from SSE ``data:`` lines (chat or completion chunks, usage chunk)."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.parts: dict[int, list[str]] = {}
        self.finish: dict[int, str | None] = {}
        self.usage: dict | None = None

    def feed(self, line: str) -> None:
        if not line.startswith("data:"):
            return
        data = line[5:].strip()
        if not data or data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            return
        self.id = self.id or chunk.get("id")
        self.model = self.model or chunk.get("model")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for c in chunk.get("choices") or []:
            i = c.get("index", 0)
            delta = c.get("delta")
            text = (delta or {}).get("content") if delta is not None else c.get("text")
            if text:
                self.parts.setdefault(i, []).append(text)
            else:
                self.parts.setdefault(i, [])
            if c.get("finish_reason") is not None:
                self.finish[i] = c["finish_reason"]

    def response(self, chat: bool) -> dict:
        key = "message" if chat else "text"
        choices = []
        for i in sorted(self.parts):
            text = "".join(self.parts[i])
            choices.append({"index": i, key: {"content": text} if chat else text, "finish_reason": self.finish.get(i)})
        return {"id": self.id, "model": self.model, "choices": choices, "usage": self.usage}
