"""LLMEngine: requests in, outputs out, one ``step()`` at a time.

``step()`` is schedule -> run -> update: the scheduler picks tokens, the model runner computes
them and samples, the scheduler and the output processor fold the results back into requests.
Not thread-safe: the async engine drives it from a single thread.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import torch

from treadle.config import EngineConfig
from treadle.engine.lora_registry import LoraInfo, LoraRegistry
from treadle.engine.model_runner import ModelRunner
from treadle.engine.output_processor import OutputProcessor
from treadle.engine.outputs import RequestOutput, SchedulerOutput
from treadle.engine.request import FinishReason, Request
from treadle.engine.scheduler import Scheduler, SchedulerConfig
from treadle.models.loader import attach_decode_kernel, load_model, read_generation_eos
from treadle.models.lora import LoraAdapter, load_adapter
from treadle.models.registry import resolve_model
from treadle.models.tokenizer import Tokenizer
from treadle.sampling_params import SamplingParams

Prompt = str | list[int] | list[dict]


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        t0 = time.perf_counter()
        self.config = config
        self.step_observer: Callable[[SchedulerOutput, float], None] | None = None  # see step()
        torch.set_num_threads(config.num_threads)
        self.model_path, self.model_name = resolve_model(config.model)
        dtype = getattr(torch, config.dtype)
        self.model, self.model_config = load_model(self.model_path, dtype)
        self.decode_kernel = bool(
            config.decode_kernel and dtype == torch.float32 and attach_decode_kernel(self.model, self.model_path)
        )
        if config.quantization == "int8":
            self.model.quantize_int8()
        self.model.fused_decode = config.fused_decode
        self.tokenizer = Tokenizer(self.model_path)
        eos = read_generation_eos(self.model_path) or self.model_config.eos_token_ids
        if not eos and self.tokenizer.eos_token_id is not None:
            eos = (self.tokenizer.eos_token_id,)
        self.eos_token_ids = tuple(eos)
        cfg = self.model_config
        self.max_model_len = min(config.max_model_len or cfg.max_position_embeddings, cfg.max_position_embeddings)
        if config.num_kv_blocks is not None:
            num_blocks = config.num_kv_blocks
        else:
            bytes_per_block = cfg.kv_bytes_per_token(dtype.itemsize) * config.block_size
            num_blocks = max(1, int(config.kv_cache_gb * 1024**3) // bytes_per_block)
        # A single request must always fit, or it could wait forever.
        self.max_model_len = min(self.max_model_len, num_blocks * config.block_size)
        self.scheduler = Scheduler(
            SchedulerConfig(
                max_num_seqs=config.max_num_seqs,
                max_num_batched_tokens=config.max_num_batched_tokens,
                long_prefill_token_threshold=config.long_prefill_token_threshold,
                prefill_tokens_per_decode_step=config.prefill_tokens_per_decode_step,
                max_model_len=self.max_model_len,
                num_blocks=num_blocks,
                block_size=config.block_size,
                enable_prefix_caching=config.enable_prefix_caching,
                max_loras=config.max_loras,
            )
        )
        from treadle.kernels import ggml

        lib = ggml.load() if dtype == torch.float32 else None  # fp32 only: the kernels read fp32 weights and KV
        attn_kernel = lib if config.attention_kernel else None
        self.attention_kernel = attn_kernel is not None
        self.runner = ModelRunner(self.model, cfg, num_blocks, config.block_size, self.eos_token_ids, dtype,
                                  attention_kernel=attn_kernel, lora_kernel=lib)
        self.outputs = OutputProcessor(self.tokenizer)
        self._ids = itertools.count()
        self._grammar_lock = threading.Lock()
        self._grammar_compiler = None
        self.loras = LoraRegistry()
        for name, path in config.lora_modules:
            self.add_lora(name, self.read_lora(path))
        self.load_seconds = time.perf_counter() - t0

    # ---------------------------------------------------------------- structured outputs
    @property
    def grammar_compiler(self):  # noqa: ANN201 - treadle.structured.compiler.GrammarCompiler
        """The compiled-grammar cache (built on first use; any thread may compile through it)."""
        with self._grammar_lock:
            if self._grammar_compiler is None:
                from treadle.structured.compiler import GrammarCompiler

                self._grammar_compiler = GrammarCompiler(
                    self.tokenizer.to_json(), self.model_config.vocab_size, self.eos_token_ids)
            return self._grammar_compiler

    def _check_params(self, params: SamplingParams) -> None:
        """Refuse token ids outside the vocabulary and grammars that do not compile (ValueError)."""
        vocab = self.model_config.vocab_size
        for name, ids in (("logit_bias", [t for t, _ in params.logit_bias]), ("stop_token_ids", params.stop_token_ids)):
            bad = [t for t in ids if t >= vocab]
            if bad:
                raise ValueError(f"{name} has token ids outside the vocabulary [0, {vocab}): {bad[:5]}")
        if params.structured is not None:
            compiler = self.grammar_compiler
            compiler.template(params.structured)  # raises GrammarError (a ValueError); cached
            if self.runner.structured is None:
                from treadle.structured.runtime import StructuredRuntime

                self.runner.structured = StructuredRuntime(compiler, self.config.num_threads)

    # ---------------------------------------------------------------- requests
    def tokenize_prompt(self, prompt: Prompt, tools: list[dict] | None = None) -> tuple[str | None, list[int]]:
        """Text, chat messages or token ids -> (text or None, token ids). Raises ValueError."""
        if isinstance(prompt, str):
            return prompt, self.tokenizer.encode(prompt)
        if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
            text = self.tokenizer.apply_chat_template(prompt, tools=tools)
            return text, self.tokenizer.encode(text, add_special_tokens=False)
        if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            vocab = self.model_config.vocab_size
            bad = [t for t in prompt if not 0 <= t < vocab]
            if bad:
                raise ValueError(f"prompt token ids must be in [0, {vocab}), got {bad[:5]}")
            return None, list(prompt)
        raise ValueError("prompt must be a string, a list of chat messages or a list of token ids")

    def add_request(
        self,
        request_id: str | None,
        prompt: Prompt,
        params: SamplingParams | None = None,
        adapter_id: str | None = None,
        cache_salt: str | None = None,
        arrival_time: float | None = None,
        prompt_token_ids: list[int] | None = None,
        lora_name: str | None = None,
    ) -> str:
        """Queue a request (``n`` samples become ``n`` engine requests). Returns its id.

        ``lora_name`` runs it under that loaded adapter (``adapter_id`` is then its version).
        Raises ValueError for bad input, including a prompt that does not fit the context, and
        AdapterNotFoundError for an adapter that is not loaded.
        """
        if lora_name is not None:
            adapter_id = self.loras.version_of(lora_name)
        elif adapter_id is not None and adapter_id not in self.runner.adapters:
            raise ValueError(f"adapter_id {adapter_id!r} is not a loaded adapter version")
        if cache_salt is not None and (not isinstance(cache_salt, str) or not cache_salt):
            raise ValueError("cache_salt must be a non-empty string")
        params = params or SamplingParams()
        request_id = request_id if request_id is not None else f"req-{next(self._ids)}"
        if request_id in self.outputs.parents:
            raise ValueError(f"request_id {request_id!r} is already in the engine")
        if prompt_token_ids is None:
            text, prompt_token_ids = self.tokenize_prompt(prompt)
        else:
            text = prompt if isinstance(prompt, str) else None
        if not prompt_token_ids:
            raise ValueError("prompt is empty: it must contain at least one token")
        if len(prompt_token_ids) >= self.max_model_len:
            raise ValueError(
                f"prompt has {len(prompt_token_ids)} tokens but the context (max_model_len) is "
                f"{self.max_model_len}: at most {self.max_model_len - 1} prompt tokens fit"
            )
        if params.prompt_logprobs is not None and params.n > 1:
            raise ValueError("prompt_logprobs is only supported with n=1")
        self._check_params(params)
        children = [
            Request(
                request_id if params.n == 1 else f"{request_id}#{i}",
                prompt_token_ids,
                params.for_child(i) if params.n > 1 else params,
                self.eos_token_ids,
                adapter_id,
                cache_salt,
                arrival_time,
            )
            for i in range(params.n)
        ]
        self.outputs.add(request_id, text, children)
        for child in children:
            self.scheduler.add_request(child)
        return request_id

    def abort_request(self, request_id: str) -> RequestOutput | None:
        """Stop a request now, wherever it is; every KV block it held is freed."""
        aborted = []
        for cid in self.outputs.children_of(request_id):
            req = self.scheduler.finish_request(cid, FinishReason.ABORT)
            if req is not None:
                aborted.append(req)
        out = self.outputs.abort(request_id, aborted)
        self._retire_adapters()
        return out

    # ---------------------------------------------------------------- adapters
    def read_lora(self, path: str) -> LoraAdapter:
        """Read and check a PEFT adapter folder (any thread; touches no engine state). Raises LoraError."""
        return load_adapter(path, self.model_config, self.config.max_lora_rank)

    def add_lora(self, name: str, adapter: LoraAdapter) -> LoraInfo:
        """Serve ``adapter`` under ``name`` from the next step on. Raises ValueError for a taken name."""
        if not name or not isinstance(name, str):
            raise ValueError("lora_name must be a non-empty string")
        if name == self.model_name:
            raise ValueError(f"lora_name {name!r} is the base model's name")
        info = LoraInfo(name, adapter.path, adapter.version, adapter.rank, adapter.target_modules)
        self.loras.add(info)
        self.runner.adapters.setdefault(adapter.version, adapter)
        return info

    def remove_lora(self, name: str) -> LoraInfo:
        """Stop serving ``name``: new requests for it fail; requests already accepted finish."""
        info = self.loras.remove(name)
        self._retire_adapters()
        return info

    def _retire_adapters(self) -> None:
        if not self.loras.unloaded:
            return
        in_use = {r.adapter_id for r in self.scheduler.requests.values() if r.adapter_id is not None}
        for version in self.loras.retire(in_use):
            self.scheduler.loras.evict(version)
            self.runner.adapters.pop(version, None)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished()

    # ---------------------------------------------------------------- the loop
    def step(self) -> list[RequestOutput]:
        """Schedule -> run -> update. ``step_observer``, when set, gets each step's plan and its wall seconds
        (schedule to output processing: what ``treadle sim calibrate`` times), after the step."""
        t0 = time.perf_counter()
        scheduled = self.scheduler.schedule()
        result = self.runner.execute(scheduled)
        updated = self.scheduler.update_from_output(scheduled, result)
        outputs, stopped = self.outputs.process(updated)
        for rid in stopped:
            self.scheduler.finish_request(rid, FinishReason.STOP)
        self._retire_adapters()
        if self.step_observer is not None and scheduled.scheduled:
            self.step_observer(scheduled, time.perf_counter() - t0)
        return outputs

    def get_stats(self) -> dict[str, float]:
        return self.scheduler.make_stats()
