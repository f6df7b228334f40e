"""Offline API: ``LLM(...).generate(prompts, params)`` runs a whole batch to completion."""

from __future__ import annotations

from collections.abc import Sequence

from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine, Prompt
from treadle.engine.outputs import RequestOutput
from treadle.sampling_params import SamplingParams


def _as_prompt_list(prompts: Prompt | Sequence[Prompt]) -> list[Prompt]:
    """One prompt (text, chat, token ids) or a list of them -> a list of prompts."""
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, list) and prompts and isinstance(prompts[0], dict | int):
        return [prompts]  # one chat conversation, or one list of token ids
    return list(prompts)


class LLM:
    """Continuous-batching generation without a server.

    >>> llm = LLM(model="default")
    >>> out = llm.generate(["Hello"], SamplingParams(max_tokens=8, temperature=0))
    """

    def __init__(self, model: str = "default", **config: object) -> None:
        self.engine = LLMEngine(EngineConfig(model=model, **config))  # type: ignore[arg-type]

    @property
    def tokenizer(self):  # noqa: ANN201
        return self.engine.tokenizer

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        lora_name: str | Sequence[str | None] | None = None,
    ) -> list[RequestOutput]:
        """Generate for every prompt (text, chat messages or token ids); outputs in input order.

        ``lora_name``: a loaded adapter (``LLM(..., lora_modules=((name, path),))``) for every
        prompt, or one name (None: the base model) per prompt; they all run in the same batch.
        """
        items = _as_prompt_list(prompts)
        names = [lora_name] * len(items) if lora_name is None or isinstance(lora_name, str) else list(lora_name)
        if len(names) != len(items):
            raise ValueError(f"lora_name has {len(names)} entries for {len(items)} prompts")
        if params is None or isinstance(params, SamplingParams):
            plist = [params or SamplingParams()] * len(items)
        else:
            plist = list(params)
            if len(plist) != len(items):
                raise ValueError(f"params has {len(plist)} entries for {len(items)} prompts")
        ids: list[str] = []
        try:
            for p, sp, name in zip(items, plist, names, strict=True):
                ids.append(self.engine.add_request(None, p, sp, lora_name=name))
        except (ValueError, LookupError):
            for rid in ids:  # a rejected prompt leaves nothing of this call queued
                self.engine.abort_request(rid)
            raise
        final: dict[str, RequestOutput] = {}
        merged: dict[str, dict[int, object]] = {rid: {} for rid in ids}
        while self.engine.has_unfinished_requests():
            for out in self.engine.step():
                for c in out.outputs:
                    if c.finished:
                        merged[out.request_id][c.index] = c
                if out.finished:
                    final[out.request_id] = out
        results = []
        for rid in ids:
            out = final[rid]
            out.outputs = [merged[rid][i] for i in sorted(merged[rid])]  # type: ignore[misc]
            results.append(out)
        return results

    def chat(
        self, messages: list[dict] | list[list[dict]], params: SamplingParams | None = None
    ) -> list[RequestOutput]:
        convs = [messages] if messages and isinstance(messages[0], dict) else messages
        return self.generate(list(convs), params)  # type: ignore[arg-type]
