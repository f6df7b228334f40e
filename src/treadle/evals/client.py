"""An OpenAI-compatible endpoint, asynchronously: chat replies and prompt log-probabilities.

Plain HTTP (httpx) so any server works: a Treadle replica, a gateway, vLLM, or a judge model.
Deterministic sampling: temperature 0 and a per-item seed. 429/502/503/504 and connection errors
are retried with exponential backoff (0.5 s doubling, at most ``retries`` times).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

RETRY_STATUS = (429, 502, 503, 504)


@dataclass
class Reply:
    text: str
    finish_reason: str | None
    completion_tokens: int | None


class Endpoint:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 900.0,
                 retries: int = 6) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base-url must start with http:// or https://, got {base_url!r}")
        self.base_url, self.model, self.retries = base_url.rstrip("/"), model, retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(headers=headers, timeout=timeout,
                                      limits=httpx.Limits(max_connections=256, max_keepalive_connections=256))

    async def close(self) -> None:
        await self.http.aclose()

    async def _post(self, path: str, body: dict) -> dict:
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                r = await self.http.post(f"{self.base_url}{path}", json=body)
                if r.status_code not in RETRY_STATUS or attempt == self.retries:
                    if r.status_code >= 400:
                        raise RuntimeError(f"{path} returned {r.status_code}: {r.text[:300]}")
                    return r.json()
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    async def parent_model(self) -> str | None:
        """The base model of ``self.model`` when ``/models`` lists it with a ``parent`` (vLLM's and the
        OpenAI convention for adapters and fine-tunes), else None (also when /models cannot be read)."""
        try:
            r = await self.http.get(f"{self.base_url}/models")
            rows = (r.json().get("data") or []) if r.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        for row in rows:
            if isinstance(row, dict) and row.get("id") == self.model:
                parent = row.get("parent")
                return parent if isinstance(parent, str) and parent and parent != self.model else None
        return None

    async def chat(self, messages: list[dict], max_tokens: int, seed: int = 0, model: str | None = None) -> Reply:
        body = {"model": model or self.model, "messages": messages, "max_tokens": max_tokens,
                "temperature": 0.0, "seed": seed}
        data = await self._post("/chat/completions", body)
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Reply(choice["message"].get("content") or "", choice.get("finish_reason"), usage.get("completion_tokens"))

    async def mean_logprob(self, prefix: str, text: str) -> tuple[float | None, int]:
        """Mean log-probability of the tokens of ``text`` after ``prefix`` (prompt scoring, no generation).

        Uses ``/completions`` with ``echo: true, logprobs: 0, max_tokens: 0``; tokens are attributed
        to ``text`` by their ``text_offset`` (>= len(prefix)). Returns (None, 0) when no token is.
        """
        body = {"model": self.model, "prompt": prefix + text, "max_tokens": 0, "echo": True, "logprobs": 0,
                "temperature": 0.0}
        lp = (await self._post("/completions", body))["choices"][0]["logprobs"]
        vals = [v for off, v in zip(lp["text_offset"], lp["token_logprobs"], strict=False)
                if off >= len(prefix) and v is not None]
        return (sum(vals) / len(vals) if vals else None), len(vals)
