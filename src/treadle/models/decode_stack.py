"""The fused decode path: every layer of the model in one C call (``kernels/decode_stack.c``).

A decode step with few token rows spends as much time in per-op Python and dispatch (two norms, RoPE,
the cache write, splits, residual adds, five kernel calls per layer) as in the projections
themselves (a third of a one-row step). :class:`DecodeStack` runs the same layers in C, reading the
same GGUF blocks through the same kernels (one row: the one-row kernel, more: the tiled kernel) and
the same paged KV cache, when all of this holds: only decode rows in the step (no prefill), all of
them attended by the C kernel, no LoRA rows, at most ``max_rows`` rows (the smallest row count up to
which every projection uses its GGUF blocks, so the per-op path would use them too), every
projection of every layer held as GGUF blocks (Q4_1/Q8_0), fp32 KV caches in the ``[kv_heads, slots,
head_dim]`` layout. Otherwise the model runs its per-op path. The result agrees with the per-op path
to fp32 rounding (tests compare the hidden states and cache writes).
"""

from __future__ import annotations

import torch

from treadle.kernels.ggml import GEMV1_MAX_K, BlockWeight
from treadle.models.attention import AttentionMetadata
from treadle.models.linear import GGUFBlockLinear

_PROJ = ("qkv", "o_proj", "gate_up", "down")


class DecodeStack:
    """Per-layer pointers (weights, blocks, caches) packed once; ``run`` is one C call per step."""

    def __init__(self, model, kv_caches: list[tuple[torch.Tensor, torch.Tensor]], lib) -> None:  # noqa: ANN001
        cfg = model.cfg
        rows = []
        self._keep = []  # tensors whose pointers the descriptor holds
        for layer, (k, v) in zip(model.layers, kv_caches, strict=True):
            blocks = [_blocks(layer.linears.get(n)) for n in _PROJ]
            self._keep += [b.blocks for b in blocks] + [layer.input_norm, layer.post_norm]
            bias = layer.qkv_bias
            if bias is not None:
                bias = bias.detach().float().contiguous()
                self._keep.append(bias)
            rows.append([layer.input_norm.data_ptr(), layer.post_norm.data_ptr(),
                         *[x for b in blocks for x in (b.blocks.data_ptr(), int(b.qtype == "Q8_0"))],
                         0 if bias is None else bias.data_ptr(), k.data_ptr(), v.data_ptr()])
        self.desc = torch.tensor(rows, dtype=torch.int64)
        assert self.desc.shape[1] == lib.decode_stack_fields()
        self.layers, self.lib, self.num_slots = len(rows), lib, kv_caches[0][0].shape[1]
        # hidden, heads, kv heads, head_dim, intermediate, block_size and max_blocks (set per step)
        self.cfg = torch.tensor([cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                                 cfg.intermediate_size, 0, 0], dtype=torch.int32)
        self.eps, self.scale = cfg.rms_norm_eps, cfg.head_dim**-0.5
        self.caches = kv_caches  # the runner's list, allocated once: identity is the cheap per-step check
        self.max_rows = min(layer.linears[n].max_rows for layer in model.layers for n in _PROJ)

    @staticmethod
    def eligible(model, kv_caches: list[tuple[torch.Tensor, torch.Tensor]], lib) -> bool:  # noqa: ANN001
        """Whether every layer can run fused (see the module docstring); false also without the library."""
        if lib is None or not hasattr(lib, "decode_stack") or model.weight_format != "gguf":
            return False
        if model.layers[0].input_norm.dtype != torch.float32:
            return False
        for layer, (k, v) in zip(model.layers, kv_caches, strict=True):
            for n in _PROJ:
                b = _blocks(layer.linears.get(n))
                if b is None or b.k > GEMV1_MAX_K or layer.linears[n].max_rows < 1:
                    return False
            for c in (k, v):
                if c.dtype != torch.float32 or not c.is_contiguous() or c.dim() != 3:
                    return False
        return True

    def matches(self, kv_caches: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
        """Whether the descriptor points at these caches (built for this very list)."""
        return kv_caches is self.caches

    def covers(self, meta: AttentionMetadata, rows: int) -> bool:
        """For a step that passed :func:`decode_only`: every row is a decode row, at most ``max_rows``."""
        return meta.paged_decode.num_rows == rows <= self.max_rows

    def run(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Every layer for the rows of ``h`` ([rows, hidden], changed in place); writes each row's K/V
        into its slot of every layer's cache. Returns ``h``."""
        pd = meta.paged_decode
        cfg = self.cfg
        cfg[5], cfg[6] = pd.block_size, pd.block_tables.shape[1]
        cos, sin = cos.contiguous(), sin.contiguous()
        slots = meta.slot_mapping.contiguous()
        self.lib.decode_stack(self.desc.data_ptr(), self.layers, h.shape[0], h.data_ptr(), cos.data_ptr(),
                              sin.data_ptr(), slots.data_ptr(), self.num_slots, pd.block_tables.data_ptr(),
                              pd.context_lens.data_ptr(), cfg.data_ptr(), self.eps, self.scale)
        return h


def decode_only(meta: AttentionMetadata, lora: object) -> bool:
    """A cheap first test before the stack is built: decode rows by the attention kernel, no LoRA."""
    return not lora and meta.paged_decode is not None and not meta.prefills and not meta.decode_groups


def _blocks(method: object) -> BlockWeight | None:
    return method.blocks if isinstance(method, GGUFBlockLinear) else None
