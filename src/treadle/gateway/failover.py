"""Continuing a broken stream on another replica, spliced into the same client stream.

The gateway asks replicas for token ids (vLLM's ``return_token_ids``: the prompt's ids in the
first chunk, each chunk's new ids beside its text) and :class:`StreamState` records, per relayed
line, what the client has received, then strips the ids the client did not ask for. If the
replica breaks mid-stream, the continuation is a ``/v1/completions`` stream on another replica
whose prompt is the original prompt ids + the delivered token ids (the chat template is already
in the prompt ids), with the same sampling fields and ``max_tokens``/``min_tokens`` reduced by
what was delivered. Its chunks are rewritten in the original stream's shape (chat chunks for a
chat request, the original id/created/model) and its usage is corrected so that it is counted
once: prompt = the original prompt, completion = delivered before + generated after.

Greedy output is the same as an uninterrupted run (same model, same tokens in the context).
A seeded sampled stream continues from the same text but not the same random draws.
Not continuable (the stream then ends with a ``server_error`` event and ``[DONE]``): n > 1, several
prompts, logprobs/echo, grammars or tools (the grammar state is not carried), or a replica that
returned no token ids. Text a replica held back when it broke (a partial stop string, an
incomplete UTF-8 character) is not re-sent; requests without ``max_tokens`` get the continuing
replica's default again.
"""

from __future__ import annotations

import json
from typing import Any

from treadle.server.responses import sse

# Body fields carried to the continuation unchanged (sampling and identity).
CARRIED = ("model", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos",
           "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "user",
           "skip_special_tokens", "spaces_between_special_tokens")
_BLOCKERS = ("logprobs", "top_logprobs", "echo", "prompt_logprobs", "best_of", "response_format", "tools",
             "structured_outputs", "guided_json", "guided_regex", "guided_choice", "guided_grammar", "suffix")


def _set(value: Any) -> bool:
    return value not in (None, False, [], {}, "", 0) and value != {"type": "text"}


class StreamState:
    """What the client has received of one streamed request (one choice): enough to continue it."""

    def __init__(self, body: dict, chat: bool) -> None:
        self.body, self.chat = body, chat
        self.client_wants_ids = bool(body.get("return_token_ids"))
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        prompt = body.get("prompt")
        several = isinstance(prompt, list) and prompt and not all(isinstance(t, int) for t in prompt) and len(prompt) > 1
        self.continuable = (body.get("n") in (None, 1) and not several and
                            not any(_set(body.get(k)) for k in _BLOCKERS))
        self.prompt_ids: list[int] | None = None
        self.delivered: list[int] = []
        self.before = 0  # tokens delivered before the current replica started
        self.head: dict | None = None  # id, created, model of the client's stream
        self.finished = False
        self.usage_sent = False
        self.continuations = 0  # replicas asked to continue this stream

    # ---------------------------------------------------------------- relaying
    def observe(self, line: str, continued: bool = False) -> str | None:
        """The line to send the client for a replica's line (None: drop it); records ids and finish."""
        if not line.startswith("data:"):
            return line
        data = line[5:].strip()
        if data == "[DONE]":
            return line
        try:
            chunk = json.loads(data)
        except ValueError:
            return line
        if not isinstance(chunk, dict) or "error" in chunk:
            return line
        if self.head is None:
            self.head = {k: chunk.get(k) for k in ("id", "created", "model")}
        if isinstance(chunk.get("prompt_token_ids"), list) and self.prompt_ids is None:
            self.prompt_ids = list(chunk["prompt_token_ids"])
        for c in chunk.get("choices") or []:
            if self.prompt_ids is None and isinstance(c.get("prompt_token_ids"), list):
                self.prompt_ids = list(c["prompt_token_ids"])
            if isinstance(c.get("token_ids"), list):
                self.delivered.extend(c["token_ids"])
            if c.get("finish_reason") is not None and self.continuable:  # one choice: the answer is complete
                self.finished = True
        if continued:
            chunk = self._reshape(chunk)
        if chunk.get("usage"):
            chunk["usage"] = self._usage(chunk["usage"]) if continued else chunk["usage"]
            self.usage_sent = True
        if not self.client_wants_ids:
            chunk.pop("prompt_token_ids", None)
            for c in chunk.get("choices") or []:
                c.pop("token_ids", None)
                c.pop("prompt_token_ids", None)
        return "data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))

    def _reshape(self, chunk: dict) -> dict:
        head = self.head or {}
        out = {**chunk, "id": head.get("id", chunk.get("id")), "created": head.get("created", chunk.get("created")),
               "model": head.get("model", chunk.get("model"))}
        out.pop("prompt_token_ids", None)
        if not self.chat:
            for c in out.get("choices") or []:
                c.pop("prompt_token_ids", None)
            return out
        out["object"] = "chat.completion.chunk"
        choices = []
        for c in chunk.get("choices") or []:
            delta = {"content": c["text"]} if c.get("text") else {}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": c.get("finish_reason"),
                      "stop_reason": c.get("stop_reason")}
            if "token_ids" in c:
                choice["token_ids"] = c["token_ids"]
            choices.append(choice)
        out["choices"] = choices
        return out

    def _usage(self, u: dict) -> dict:
        prompt = len(self.prompt_ids or ())
        completion = self.before + int(u.get("completion_tokens") or 0)
        return {**u, "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # ---------------------------------------------------------------- continuing
    def can_continue(self) -> bool:
        return self.continuable and not self.finished and self.prompt_ids is not None

    def continuation_body(self) -> dict | None:
        """The /v1/completions body that continues the stream; None when max_tokens is already used up."""
        b = self.body
        body = {k: b[k] for k in CARRIED if k in b}
        body.update(prompt=list(self.prompt_ids or ()) + self.delivered, stream=True, return_token_ids=True)
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        self.before = len(self.delivered)
        limit = b.get("max_completion_tokens") if b.get("max_completion_tokens") is not None else b.get("max_tokens")
        if isinstance(limit, int):
            if limit - self.before <= 0:
                return None
            body["max_tokens"] = limit - self.before
        if isinstance(b.get("min_tokens"), int) and b["min_tokens"] > 0:
            body["min_tokens"] = max(0, b["min_tokens"] - self.before)
        return body

    def closing_lines(self) -> list[str]:
        """Lines that end a stream whose replica broke after its last token (finish already sent)."""
        out = []
        if self.include_usage and not self.usage_sent:
            head = self.head or {}
            prompt, completion = len(self.prompt_ids or ()), len(self.delivered)
            obj = "chat.completion.chunk" if self.chat else "text_completion"
            out.append(sse({**head, "object": obj, "choices": [], "usage": {
                "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}))
        return out + [sse("[DONE]")]

    def length_lines(self) -> list[str]:
        """A stream whose max_tokens was used up when its replica broke: finish it as 'length'."""
        head = self.head or {}
        if self.chat:
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
            first = {**head, "object": "chat.completion.chunk", "choices": [choice]}
        else:
            first = {**head, "object": "text_completion", "choices": [
                {"index": 0, "text": "", "logprobs": None, "finish_reason": "length"}]}
        self.finished = True
        return [sse(first)] + self.closing_lines()
