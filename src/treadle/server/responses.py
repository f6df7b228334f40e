"""Engine outputs -> OpenAI response bodies and stream chunks (plain dicts, serialised once)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from treadle.server.requests import Prepared

if TYPE_CHECKING:  # the gateway imports this module: no engine code at run time
    from treadle.engine.outputs import CompletionOutput, RequestOutput

Logprobs = list[dict[int, float]]


class TokenText:
    """Token id -> its text (special tokens kept), cached: logprob responses name every token."""

    def __init__(self, tokenizer: object) -> None:
        self.tok = tokenizer
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        s = self._cache.get(token_id)
        if s is None:
            s = self.tok.decode([token_id], skip_special_tokens=False)  # type: ignore[attr-defined]
            self._cache[token_id] = s
        return s

    def decode(self, ids: tuple[int, ...] | list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)  # type: ignore[attr-defined]


def sse(obj: dict | str) -> str:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n"


def _lp(value: float) -> float:
    return value if math.isfinite(value) else -9999.0  # JSON has no -inf


def _sampled_lp(d: dict[int, float], token_id: int) -> float:
    return _lp(d[token_id]) if token_id in d else _lp(next(iter(d.values()), -9999.0))


def chat_logprobs(ids: list[int], lps: Logprobs, k: int, text: TokenText) -> dict:
    content = []
    for tid, d in zip(ids, lps, strict=False):
        tok = text(tid)
        top = sorted(d.items(), key=lambda kv: -kv[1])[:k]
        content.append(
            {
                "token": tok,
                "logprob": _sampled_lp(d, tid),
                "bytes": list(tok.encode()),
                "top_logprobs": [
                    {"token": text(t), "logprob": _lp(v), "bytes": list(text(t).encode())} for t, v in top
                ],
            }
        )
    return {"content": content}


def completion_logprobs(
    ids: list[int] | tuple[int, ...], lps: list[dict[int, float] | None], text: TokenText, offset: int
) -> dict:
    """Legacy format; a ``None`` entry (the prompt's first token) gives null logprobs."""
    out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for tid, d in zip(ids, lps, strict=False):
        tok = text(tid)
        out["tokens"].append(tok)
        out["text_offset"].append(offset)
        offset += len(tok)
        if d is None:
            out["token_logprobs"].append(None)
            out["top_logprobs"].append(None)
        else:
            out["token_logprobs"].append(_sampled_lp(d, tid))
            out["top_logprobs"].append({text(t): _lp(v) for t, v in d.items()})
    return out


def vllm_prompt_logprobs(
    ids: tuple[int, ...], lps: list[dict[int, float] | None], k: int, text: TokenText
) -> list:
    """vLLM's format: per prompt token None or {id: {logprob, rank, decoded_token}}, the token first.

    The engine returns the prompt token plus the top ``k``; a prompt token outside the top ``k``
    has an unknown rank (null).
    """
    out: list = []
    for tid, d in zip(ids, lps, strict=False):
        if d is None:
            out.append(None)
            continue
        outside = len(d) > k
        ranked = sorted(d.items(), key=lambda kv: -kv[1])
        ranks = {t: r for r, (t, _) in enumerate((kv for kv in ranked if not (outside and kv[0] == tid)), 1)}
        order = [tid] + [t for t, _ in ranked if t != tid] if tid in d else [t for t, _ in ranked]
        out.append({
            str(t): {"logprob": _lp(d[t]), "rank": ranks.get(t), "decoded_token": text(t)} for t in order
        })
    return out


class Collector:
    """Folds the engine outputs of one API request into per-choice state, usage and stream chunks."""

    def __init__(self, prep: Prepared, rid: str, model: str, created: int, text: TokenText) -> None:
        self.prep, self.rid, self.model, self.created, self.text = prep, rid, model, created, text
        self.final: dict[int, CompletionOutput] = {}
        self.prompt_lps: dict[int, list] = {}
        self.cached: dict[int, int] = {}
        self.started: set[int] = set()
        self.emitted_tokens: dict[int, int] = {}
        self.tool_started: set[int] = set()  # choices whose streamed tool call was announced
        self.prompt_tokens = sum(len(p.token_ids) for p in prep.prompts)

    # ---------------------------------------------------------------- accounting
    def add(self, pidx: int, out: RequestOutput) -> None:
        self.cached[pidx] = max(self.cached.get(pidx, 0), out.num_cached_tokens)
        if out.prompt_logprobs:
            self.prompt_lps[pidx] = out.prompt_logprobs
        for co in out.outputs:
            self.final[pidx * self.prep.n + co.index] = co
            if co.metrics is not None and co.index == 0:
                self.cached[pidx] = max(self.cached[pidx], co.metrics.num_cached_tokens)

    @property
    def completion_tokens(self) -> int:
        if self.prep.drop_output:
            return 0
        return sum(len(co.token_ids) for co in self.final.values())

    def usage(self) -> dict:
        c = self.completion_tokens
        cached = min(sum(self.cached.values()), self.prompt_tokens)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": c,
            "total_tokens": self.prompt_tokens + c,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def _head(self, obj: str) -> dict:
        return {"id": self.rid, "object": obj, "created": self.created, "model": self.model}

    def _prompt_text(self, pidx: int) -> str:
        p = self.prep.prompts[pidx]
        return p.text if p.text is not None else self.text.decode(p.token_ids)

    def _finish(self, co: CompletionOutput) -> str | None:
        if co.finish_reason is None:
            return None
        return "length" if self.prep.drop_output else co.finish_reason

    # ---------------------------------------------------------------- full responses
    def chat_response(self) -> dict:
        choices = []
        for idx in sorted(self.final):
            co = self.final[idx]
            lp = None
            if self.prep.logprobs is not None and co.logprobs is not None:
                lp = chat_logprobs(co.token_ids, co.logprobs, self.prep.logprobs, self.text)
            message: dict = {"role": "assistant", "content": co.text}
            finish = self._finish(co)
            if self.prep.tool_mode is not None:
                message["content"], calls = self.prep.tool_mode.parse(co.text)
                if calls:  # tool_calls only when there are some (OpenAI omits the key otherwise)
                    message["tool_calls"] = calls
                    finish = "tool_calls" if finish == "stop" else finish
            choice = {"index": idx, "message": message, "logprobs": lp, "finish_reason": finish,
                      "stop_reason": co.stop_reason}
            if self.prep.return_token_ids:
                choice["token_ids"] = list(co.token_ids)
            choices.append(choice)
        body = {**self._head("chat.completion"), "choices": choices, "usage": self.usage(), "system_fingerprint": None}
        if self.prep.return_token_ids:
            body["prompt_token_ids"] = list(self.prep.prompts[0].token_ids)
        return body

    def completion_response(self) -> dict:
        choices = []
        for idx in sorted(self.final):
            choices.append(self._completion_choice(idx, self.final[idx], full=True))
        return {**self._head("text_completion"), "choices": choices, "usage": self.usage(), "system_fingerprint": None}

    def _completion_choice(self, idx: int, co: CompletionOutput, full: bool) -> dict:
        pidx = idx // self.prep.n
        first = idx not in self.started
        self.started.add(idx)
        drop = self.prep.drop_output
        ids = [] if drop else (co.token_ids if full else co.delta_token_ids)
        lps = [] if drop else (co.logprobs if full else co.delta_logprobs) or []
        text = "" if drop else (co.text if full else co.delta_text)
        prefix, offset = "", self.emitted_tokens.get(idx, 0)
        logprobs = None
        if self.prep.echo and first:
            prefix = self._prompt_text(pidx)
        if self.prep.logprobs is not None:
            p_ids: tuple[int, ...] = ()
            p_lps: list = []
            if self.prep.echo and first:
                p_ids = self.prep.prompts[pidx].token_ids
                p_lps = self.prompt_lps.get(pidx) or [None] * len(p_ids)
            logprobs = completion_logprobs(p_ids + tuple(ids), list(p_lps) + list(lps), self.text, offset)
            self.emitted_tokens[idx] = offset + sum(len(t) for t in logprobs["tokens"])
        choice = {
            "index": idx,
            "text": prefix + text,
            "logprobs": logprobs,
            "finish_reason": self._finish(co),
            "stop_reason": co.stop_reason,
        }
        if self.prep.return_token_ids:
            choice["token_ids"] = list(ids)
            if first:
                choice["prompt_token_ids"] = list(self.prep.prompts[pidx].token_ids)
        if self.prep.prompt_logprobs is not None and first and pidx in self.prompt_lps:
            p = self.prep.prompts[pidx]
            choice["prompt_logprobs"] = vllm_prompt_logprobs(p.token_ids, self.prompt_lps[pidx], self.prep.prompt_logprobs, self.text)
        return choice

    # ---------------------------------------------------------------- stream chunks
    def chat_role_chunks(self) -> list[str]:
        out = []
        for i in range(len(self.prep.prompts) * self.prep.n):
            self.started.add(i)
            choice = {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            extra = {"prompt_token_ids": list(self.prep.prompts[0].token_ids)} if self.prep.return_token_ids else {}
            out.append(self._chunk("chat.completion.chunk", [choice], extra))
        return out

    def stream_chunks(self, pidx: int, out: RequestOutput) -> list[str]:
        self.add(pidx, out)
        chunks = []
        for co in out.outputs:
            idx = pidx * self.prep.n + co.index
            if not (co.delta_text or co.delta_token_ids or co.finished or idx not in self.started):
                continue
            if self.prep.chat:
                lp = None
                if self.prep.logprobs is not None and co.delta_logprobs:
                    lp = chat_logprobs(co.delta_token_ids, co.delta_logprobs, self.prep.logprobs, self.text)
                delta = {"content": co.delta_text} if co.delta_text else {}
                finish = self._finish(co)
                mode = self.prep.tool_mode
                if mode is not None and mode.choice == "named":  # the text is the arguments: stream them
                    delta, finish = self._named_delta(idx, co.delta_text, finish)
                elif mode is not None:  # the answer is read whole, at its end
                    if not co.finished:
                        continue
                    delta, finish = self._tool_delta(co.text, finish)
                choice = {"index": idx, "delta": delta, "logprobs": lp, "finish_reason": finish,
                          "stop_reason": co.stop_reason}
                if self.prep.return_token_ids:
                    choice["token_ids"] = list(co.delta_token_ids)
                chunks.append(self._chunk("chat.completion.chunk", [choice]))
            else:
                chunks.append(self._chunk("text_completion", [self._completion_choice(idx, co, full=False)]))
        return chunks

    def _named_delta(self, idx: int, text: str, finish: str | None) -> tuple[dict, str | None]:
        """OpenAI's streamed call: the first delta names the call (id, type, name), later ones
        carry argument fragments; the finish reason is tool_calls."""
        call: dict = {"index": 0, "function": {"arguments": text}}
        if idx not in self.tool_started:
            self.tool_started.add(idx)
            head = self.prep.tool_mode.parse("")[1][0]  # type: ignore[union-attr]  # a fresh id and the name
            call = {"index": 0, "id": head["id"], "type": "function",
                    "function": {"name": head["function"]["name"], "arguments": text}}
        delta = {"tool_calls": [call]} if text or call.get("id") else {}
        return delta, ("tool_calls" if finish == "stop" else finish)

    def _tool_delta(self, text: str, finish: str | None) -> tuple[dict, str | None]:
        content, calls = self.prep.tool_mode.parse(text)  # type: ignore[union-attr]
        if not calls:
            return ({"content": content} if content else {}), finish
        delta: dict = {"content": content} if content else {}
        delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(calls)]
        return delta, ("tool_calls" if finish == "stop" else finish)

    def _chunk(self, obj: str, choices: list[dict], extra: dict | None = None) -> str:
        body = {**self._head(obj), "choices": choices, **(extra or {})}
        if self.prep.include_usage:
            body["usage"] = None
        return sse(body)

    def usage_chunk(self) -> str:
        obj = "chat.completion.chunk" if self.prep.chat else "text_completion"
        return sse({**self._head(obj), "choices": [], "usage": self.usage()})
