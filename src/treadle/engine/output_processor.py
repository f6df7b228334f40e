"""Output processor: engine requests -> user-facing :class:`RequestOutput` with text deltas.

It detokenises incrementally, applies stop strings (the stop string is cut from the text, and
while a request runs the last ``len(longest stop) - 1`` characters are held back so that a stop
string is never half-streamed), and groups the ``n`` samples of one user request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treadle.engine.outputs import CompletionOutput, RequestMetrics, RequestOutput
from treadle.engine.request import FinishReason, Request
from treadle.models.tokenizer import IncrementalDetokenizer, Tokenizer


@dataclass
class _Child:
    index: int
    detok: IncrementalDetokenizer
    text: str = ""  # full text after stop-string truncation
    fed: int = 0  # output tokens given to the detokenizer
    sent_chars: int = 0
    sent_tokens: int = 0
    sent_logprobs: int = 0
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class _Parent:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    children: dict[str, _Child] = field(default_factory=dict)
    num_finished: int = 0


class OutputProcessor:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.parents: dict[str, _Parent] = {}
        self.child_to_parent: dict[str, str] = {}

    def add(self, request_id: str, prompt: str | None, children: list[Request]) -> None:
        parent = _Parent(request_id, prompt, children[0].prompt_token_ids)
        for i, child in enumerate(children):
            parent.children[child.request_id] = _Child(i, IncrementalDetokenizer(self.tokenizer, child.prompt_token_ids))
            self.child_to_parent[child.request_id] = request_id
        self.parents[request_id] = parent

    def children_of(self, request_id: str) -> list[str]:
        parent = self.parents.get(request_id)
        return list(parent.children) if parent else []

    def process(self, updated: list[Request]) -> tuple[list[RequestOutput], list[str]]:
        """Turn updated requests into outputs. Returns (outputs, child ids stopped by a stop string)."""
        by_parent: dict[str, list[CompletionOutput]] = {}
        stopped: list[str] = []
        for req in updated:
            pid = self.child_to_parent.get(req.request_id)
            if pid is None:
                continue
            parent = self.parents[pid]
            child = parent.children[req.request_id]
            if child.finish_reason is not None:
                continue
            delta = child.detok.add(req.output_token_ids[child.fed :])
            child.fed = req.num_output_tokens
            if req.is_finished:
                delta += child.detok.flush()
            child.text += delta
            stop_hit = self._find_stop(child, req, len(delta))
            if stop_hit is not None:
                stopped.append(req.request_id)
                child.finish_reason, child.stop_reason = FinishReason.STOP.value, stop_hit
            elif req.is_finished:
                child.finish_reason = req.finish_reason.value if req.finish_reason else None
                child.stop_reason = req.stop_reason
            by_parent.setdefault(pid, []).append(self._completion(child, req))
            if child.finish_reason is not None:
                parent.num_finished += 1
        outputs = []
        for pid, completions in by_parent.items():
            parent = self.parents[pid]
            finished = parent.num_finished == len(parent.children)
            first = next(iter(parent.children))
            outputs.append(
                RequestOutput(
                    request_id=pid,
                    prompt=parent.prompt,
                    prompt_token_ids=parent.prompt_token_ids,
                    outputs=completions,
                    finished=finished,
                    prompt_logprobs=self._prompt_logprobs(updated, first),
                    num_cached_tokens=max(0, next((r.num_cached_tokens for r in updated if r.request_id == first), 0)),
                )
            )
            if finished:
                self._drop(pid)
        return outputs, stopped

    def abort(self, request_id: str, aborted: list[Request]) -> RequestOutput | None:
        """Final output for an aborted user request (its children already left the scheduler)."""
        parent = self.parents.get(request_id)
        if parent is None:
            return None
        completions = []
        for req in aborted:
            child = parent.children[req.request_id]
            if child.finish_reason is None:
                child.finish_reason = FinishReason.ABORT.value
                completions.append(self._completion(child, req))
        self._drop(request_id)
        return RequestOutput(request_id, parent.prompt, parent.prompt_token_ids, completions, finished=True)

    # ---------------------------------------------------------------- internals
    def _find_stop(self, child: _Child, req: Request, delta_len: int) -> str | None:
        stops = req.params.stop
        if not stops or not delta_len:
            return None
        longest = max(len(s) for s in stops)
        start = max(0, len(child.text) - delta_len - longest + 1)
        best: tuple[int, str] | None = None
        for s in stops:
            idx = child.text.find(s, start)
            if idx != -1 and (best is None or idx < best[0]):
                best = (idx, s)
        if best is None:
            return None
        child.text = child.text[: best[0]]
        return best[1]

    def _completion(self, child: _Child, req: Request) -> CompletionOutput:
        finished = child.finish_reason is not None
        visible = len(child.text)
        if not finished and req.params.stop:
            visible = max(child.sent_chars, len(child.text) - max(len(s) for s in req.params.stop) + 1)
        delta_text = child.text[child.sent_chars : visible]
        child.sent_chars = visible
        tokens = req.output_token_ids
        delta_tokens = tokens[child.sent_tokens :]
        child.sent_tokens = len(tokens)
        logprobs = req.logprobs if req.params.logprobs is not None else None
        delta_lp = None
        if logprobs is not None:
            delta_lp = logprobs[child.sent_logprobs :]
            child.sent_logprobs = len(logprobs)
        metrics = None
        if finished:
            metrics = RequestMetrics(
                arrival_time=req.times.arrival,
                scheduled_time=req.times.scheduled,
                first_token_time=req.times.first_token,
                finished_time=req.times.finished,
                num_prompt_tokens=req.num_prompt_tokens,
                num_cached_tokens=max(0, req.num_cached_tokens),
                num_output_tokens=req.num_output_tokens,
                num_preemptions=req.num_preemptions,
            )
        return CompletionOutput(
            index=child.index,
            text=child.text,
            token_ids=list(tokens),
            finish_reason=child.finish_reason,
            stop_reason=child.stop_reason,
            logprobs=logprobs,
            delta_text=delta_text,
            delta_token_ids=delta_tokens,
            delta_logprobs=delta_lp,
            metrics=metrics,
        )

    @staticmethod
    def _prompt_logprobs(updated: list[Request], first_child: str) -> list | None:
        for r in updated:
            if r.request_id == first_child and r.params.prompt_logprobs is not None:
                # One entry per prompt token; a one-token prompt has only the context-free None.
                return r.prompt_logprobs or [None]
        return None

    def _drop(self, request_id: str) -> None:
        parent = self.parents.pop(request_id, None)
        if parent:
            for cid in parent.children:
                self.child_to_parent.pop(cid, None)
