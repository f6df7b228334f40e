"""Model runner: turns a :class:`SchedulerOutput` into tensors, runs the model, samples.

It owns the KV cache tensors and the per-request random generators, and makes no scheduling
decision: what to compute, where the KV goes and whether to sample all come from the scheduler.
Rows of a step: single-token entries (decodes) first, batched through one attention call, then
each multi-token chunk (prefill) as its own contiguous run. Rows of requests under a LoRA adapter
are grouped by adapter (one ``LoraGroup`` each, whatever their position); the adapters resident
in the scheduler's slots are activated (fused, scale folded in) when they enter a slot.
"""

from __future__ import annotations

import torch

from treadle.engine.outputs import RunnerOutput, ScheduledRequest, SchedulerOutput
from treadle.engine.sampler import Sampler, SamplingRow, top_logprobs
from treadle.models.attention import AttentionMetadata, DecodeGroup, PagedDecode, PrefillChunk, Workspace
from treadle.models.config import ModelConfig
from treadle.models.linear import LoraGroup
from treadle.models.llama import LlamaModel
from treadle.models.lora import LoraAdapter
from treadle.structured.runtime import ConstrainedRow, StructuredRuntime


class ModelRunner:
    def __init__(
        self,
        model: LlamaModel,
        cfg: ModelConfig,
        num_blocks: int,
        block_size: int,
        eos_token_ids: tuple[int, ...],
        dtype: torch.dtype = torch.float32,
        attention_kernel: object = None,
        lora_kernel: object = None,
    ) -> None:
        """``attention_kernel``: the C kernel library (``treadle.kernels.ggml.load()``) to attend
        decode rows in place in the paged cache (fp32 only); None: the torch gather path.
        ``lora_kernel``: the same library for the few-row LoRA products (fp32 only); None: torch GEMMs."""
        self.model = model
        k = attention_kernel
        fits = k is not None and cfg.head_dim % 8 == 0 and cfg.head_dim <= k.paged_attention_max_head_dim()
        self.attention_kernel = k if fits and dtype == torch.float32 else None
        self.lora_kernel = lora_kernel if dtype == torch.float32 else None
        self.cfg = cfg
        self.block_size = block_size
        self.eos_token_ids = eos_token_ids
        slots = num_blocks * block_size
        # Uninitialised on purpose: every slot is written before it is read (fresh pages cost nothing).
        self.kv_caches = [
            (
                torch.empty(cfg.num_kv_heads, slots, cfg.head_dim, dtype=dtype),
                torch.empty(cfg.num_kv_heads, slots, cfg.head_dim, dtype=dtype),
            )
            for _ in range(cfg.num_layers)
        ]
        self.workspace = Workspace()
        self.sampler = Sampler()
        self.generators: dict[str, torch.Generator] = {}
        self.structured: StructuredRuntime | None = None  # set by the engine on first structured request
        self.dtype = dtype
        self.adapters: dict[str, LoraAdapter] = {}  # registered (CPU memory), by version
        self.active: dict[str, list[dict[str, tuple[torch.Tensor, torch.Tensor]]]] = {}  # resident, by version

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput) -> RunnerOutput:
        for rid in out.finished_ids:
            self.generators.pop(rid, None)
            if self.structured is not None:
                self.structured.drop(rid)
        if out.is_empty:
            return RunnerOutput({})
        # Decodes first, then prefills; within each, the rows of one adapter are contiguous (one
        # slice per adapter and kind), and decodes are by context length within an adapter.
        entries = sorted(out.scheduled, key=lambda s: (s.num_tokens != 1, s.adapter_id or "",
                                                       s.start_pos if s.num_tokens == 1 else 0))
        input_ids, positions, meta, last_rows = self._prepare(entries)
        sampling = [(e, last_rows[i]) for i, e in enumerate(entries) if e.sample]
        pending = self._start_masks(sampling)  # computed on a worker thread during the forward pass
        self._sync_slots(out.lora_slots)
        hidden = self.model(input_ids, positions, meta, self.kv_caches, self._lora_groups(entries, last_rows))

        prompt_lp = [(e, last_rows[i] - e.num_tokens + 1) for i, e in enumerate(entries) if e.prompt_logprob_targets]
        sampled: dict[str, int] = {}
        logprobs: dict[str, dict[int, float]] = {}
        if sampling:
            logits = self.model.compute_logits(hidden[torch.tensor([r for _, r in sampling])])
            raw = logits.clone() if any(e.params.logprobs is not None for e, _ in sampling) else None
            rows = [
                SamplingRow(e.params, e.all_token_ids, e.num_prompt_tokens, self.eos_token_ids, self._generator(e))
                for e, _ in sampling
            ]
            mask = self.structured.finish(pending) if pending is not None and self.structured else None
            tokens = self.sampler(logits, rows, mask)
            for (e, _), t in zip(sampling, tokens.tolist(), strict=True):
                sampled[e.request_id] = t
            if raw is not None:
                want = [j for j, (e, _) in enumerate(sampling) if e.params.logprobs is not None]
                lps = top_logprobs(raw[want], tokens[want], [sampling[j][0].params.logprobs for j in want])
                for j, lp in zip(want, lps, strict=True):
                    logprobs[sampling[j][0].request_id] = lp
        prompt_logprobs: dict[str, list[dict[int, float]]] = {}
        for e, first_row in prompt_lp:
            targets = e.prompt_logprob_targets
            logits = self.model.compute_logits(hidden[first_row : first_row + len(targets)])
            k = e.params.prompt_logprobs or 0
            prompt_logprobs[e.request_id] = top_logprobs(logits, torch.tensor(targets), [k] * len(targets))
        return RunnerOutput(sampled, logprobs, prompt_logprobs)

    def _start_masks(self, sampling: list[tuple[ScheduledRequest, int]]):  # noqa: ANN202 - Pending | None
        if self.structured is None:
            return None
        rows = [
            ConstrainedRow(j, e.request_id, e.params.structured, e.all_token_ids[e.num_prompt_tokens:])
            for j, (e, _) in enumerate(sampling) if e.params.structured is not None
        ]
        return self.structured.start(rows)

    def _sync_slots(self, slots: tuple[str | None, ...]) -> None:
        """Make the activated adapters exactly those in ``slots`` (activating newcomers)."""
        want = {a for a in slots if a is not None}
        for version in [v for v in self.active if v not in want]:
            del self.active[version]
        for version in want - self.active.keys():
            self.active[version] = self.adapters[version].activate(self.cfg, self.dtype)

    def _lora_groups(self, entries: list[ScheduledRequest], last_rows: list[int]) -> list[LoraGroup]:
        """One group per run of contiguous rows of one adapter (entries are sorted so that an
        adapter has at most one run of decodes and one of prefill chunks)."""
        spans: list[list] = []  # [adapter version, first row, end row]
        for e, last in zip(entries, last_rows, strict=True):
            if e.adapter_id is None:
                continue
            first = last - e.num_tokens + 1
            if spans and spans[-1][0] == e.adapter_id and spans[-1][2] == first:
                spans[-1][2] = last + 1
            else:
                spans.append([e.adapter_id, first, last + 1])
        return [LoraGroup(slice(a, b), self.active[version], self.lora_kernel) for version, a, b in spans]

    def _generator(self, e: ScheduledRequest) -> torch.Generator | None:
        if e.params.seed is None or e.params.greedy:
            return None
        g = self.generators.get(e.request_id)
        if g is None:
            g = torch.Generator().manual_seed(e.params.seed)
            self.generators[e.request_id] = g
        return g

    def _prepare(
        self, entries: list[ScheduledRequest]
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata, list[int]]:
        """Flatten ``entries`` (decodes first, sorted by context length) into model inputs."""
        bs = self.block_size
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        last_rows: list[int] = []
        prefills: list[PrefillChunk] = []
        for e in entries:
            start_row = len(ids)
            ids.extend(e.token_ids)
            table = e.block_ids
            for p in range(e.start_pos, e.start_pos + e.num_tokens):
                pos.append(p)
                slots.append(table[p // bs] * bs + p % bs)
            last_rows.append(len(ids) - 1)
            if e.num_tokens > 1:
                prefills.append(self._prefill_chunk(e, start_row, len(ids)))
        decodes = [e for e in entries if e.num_tokens == 1]
        paged = None
        groups = []
        if self.attention_kernel is not None and decodes:
            paged = self._paged_decode(decodes)  # every decode row in one call, any order
        else:
            run_start = 0
            for k in range(1, len(decodes) + 1):  # length groups within each adapter's run of decodes
                if k == len(decodes) or decodes[k].adapter_id != decodes[run_start].adapter_id:
                    lengths = [e.start_pos + 1 for e in decodes[run_start:k]]
                    groups += [self._decode_group(decodes[run_start + a : run_start + b], run_start + a,
                                                  run_start + b) for a, b in group_by_length(lengths)]
                    run_start = k
        meta = AttentionMetadata(torch.tensor(slots), groups, prefills, self.workspace, paged)
        return torch.tensor(ids), torch.tensor(pos), meta, last_rows

    def _paged_decode(self, decodes: list[ScheduledRequest]) -> PagedDecode:
        """Block tables (padded with block 0, never read) and context lengths of the decode rows."""
        bs = self.block_size
        lens = [e.start_pos + 1 for e in decodes]
        width = -(-max(lens) // bs)
        tables = [e.block_ids[:width] + [0] * (width - len(e.block_ids[:width])) for e in decodes]
        return PagedDecode(len(decodes), torch.tensor(tables, dtype=torch.int32),
                           torch.tensor(lens, dtype=torch.int32), bs, self.attention_kernel)

    def _slots(self, block_ids: list[int], length: int) -> torch.Tensor:
        bs = self.block_size
        table = torch.tensor(block_ids[: -(-length // bs)])
        return (table.unsqueeze(1) * bs + torch.arange(bs)).flatten()[:length]

    def _prefill_chunk(self, e: ScheduledRequest, start_row: int, end_row: int) -> PrefillChunk:
        if e.start_pos == 0:
            return PrefillChunk(start_row, end_row, 0, None, None)
        total = e.start_pos + e.num_tokens
        q_pos = torch.arange(e.start_pos, total).unsqueeze(1)
        mask = torch.arange(total).unsqueeze(0) <= q_pos  # causal with an offset
        return PrefillChunk(start_row, end_row, e.start_pos, self._slots(e.block_ids, total), mask)

    def _decode_group(self, decodes: list[ScheduledRequest], start_row: int, end_row: int) -> DecodeGroup:
        """Gather slots for a group of decodes, padded to the longest context.

        Padding points at each sequence's own first slot, which is always written, so the masked
        (weight 0) positions never read uninitialised memory (0 x NaN would still be NaN).
        """
        bs = self.block_size
        lengths = [e.start_pos + 1 for e in decodes]
        max_len = max(lengths)
        max_blocks = -(-max_len // bs)
        table = torch.tensor([e.block_ids[:max_blocks] + [e.block_ids[0]] * (max_blocks - len(e.block_ids[:max_blocks])) for e in decodes])
        gather = (table.unsqueeze(2) * bs + torch.arange(bs)).view(len(decodes), -1)[:, :max_len]
        mask = None
        if min(lengths) != max_len:
            pad = torch.arange(max_len).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
            gather = torch.where(pad, table[:, :1] * bs, gather)
            mask = torch.zeros(len(decodes), max_len).masked_fill_(pad, float("-inf"))
            mask = mask.unsqueeze(1).repeat(self.cfg.num_kv_heads, 1, 1)
        return DecodeGroup(start_row, end_row, max_len, gather.reshape(-1), mask)


def group_by_length(lengths: list[int], max_waste: float = 1.25, min_size: int = 4) -> list[tuple[int, int]]:
    """Cut an ascending list of context lengths into [start, end) groups for padded attention.

    A group grows while its padded size (count x longest) stays within ``max_waste`` x the sum of
    its real lengths, or while it has fewer than ``min_size`` members.
    """
    groups: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, n in enumerate(lengths):
        count = i - start
        if count >= min_size and (count + 1) * n > max_waste * (total + n):
            groups.append((start, i))
            start, total = i, 0
        total += n
    if lengths:
        groups.append((start, len(lengths)))
    return groups
