"""How a projection ``y = x @ W.T (+ b)`` is computed: one :class:`LinearMethod` per weight format.

- :class:`DenseLinear`: an fp32 (or bf16) weight matrix, ``F.linear``. Exact: the greedy identity
  with transformers rests on it.
- :class:`GGUFBlockLinear`: the GGUF block kernel (``treadle.kernels``) for steps of at most
  ``max_rows`` rows, the dense twin for larger steps; ``max_rows`` comes from the cost rule in
  ``treadle.models.linear_formats``, which also holds the quantized formats (int8).
The model layer only calls ``apply``.

LoRA sits on top of any method (:class:`LoraFactors`, :class:`LoraGroup`): :func:`add_lora` adds ``(x[rows] @ A.T) @ B.T`` for each group of
rows that share an adapter (one low-rank product per adapter group), leaving other rows untouched.
The LoRA scale is folded into ``B`` when an adapter is activated (``treadle.models.lora``), and the
activated factors are stored transposed and contiguous (``A.T`` ``[r, in]`` -> ``[in, r]``, ``B.T``
``[r, out]``), so both products are plain row-major GEMMs. A group of at most
``KERNEL_ROWS`` rows (decode) with the C kernel library at hand goes through ``lora_add``
(``treadle/kernels/lora.c``): one call per projection, weights read once, and of a fused projection's
block-diagonal B only the adapted modules' blocks (``parts``), a third fewer bytes for qkv/gate-up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from treadle.kernels.ggml import BlockWeight


class LinearMethod(ABC):
    """One projection's weights in some format."""

    @abstractmethod
    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T (+ bias)`` for ``x`` of shape ``[T, in]``; returns a new ``[T, out]`` tensor."""


class DenseLinear(LinearMethod):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class GGUFBlockLinear(LinearMethod):
    """GGUF blocks for steps with at most ``max_rows`` rows, else the dense fp32 twin."""

    def __init__(self, dense: DenseLinear, blocks: BlockWeight, kernel: object, max_rows: int) -> None:
        self.dense, self.blocks, self.kernel, self.max_rows = dense, blocks, kernel, max_rows

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.max_rows:
            return self.dense.apply(x)
        y = self.blocks.matmul(x, self.kernel)
        return y if self.dense.bias is None else y.add_(self.dense.bias)


_KERNEL_MAX_ROWS, _KERNEL_MAX_RANK = 16, 1024  # lora_max_rows(), lora_max_rank() of kernels/lora.c (test-pinned)
# Groups of at most this many rows use the C kernel. Measured (docs/BENCHMARKS.md, "Multi-LoRA"): with
# the kernel on groups of up to 16 rows, single stream 0.91x base but 64-prompt throughput fell from 0.94x to
# 0.82x (groups of ~16 decode rows per adapter, where torch's GEMM uses both cores better); so only the
# decode-sized groups of one or two rows take it.
KERNEL_ROWS = 2


@dataclass(frozen=True, slots=True)
class LoraFactors:
    """One adapter's activated factors for one (fused) projection, contiguous fp32 or the model dtype:
    ``at`` = A.T ``[in, R]`` and ``bt`` = (scale * B).T ``[R, out]`` (B block-diagonal over a fused
    projection's parts), ``parts`` an int32 ``[P, 4]`` tensor of Bt's nonzero blocks (rank offset, rank,
    output offset, outputs). The raw pointers are taken once here, off the per-token path; the tensors
    are held so the pointers stay valid. ``kernel_ok``: the C kernel can take these (fp32, R % 8 == 0)."""

    at: torch.Tensor
    bt: torch.Tensor
    parts: torch.Tensor
    at_ptr: int
    bt_ptr: int
    parts_ptr: int
    kernel_ok: bool

    @classmethod
    def of(cls, at: torch.Tensor, bt: torch.Tensor, parts: torch.Tensor | None = None) -> LoraFactors:
        """Factors from At ``[in, R]`` and Bt ``[R, out]``; ``parts`` None: all of Bt is one block."""
        at, bt = at.contiguous(), bt.contiguous()
        if at.shape[1] != bt.shape[0]:
            raise ValueError(f"LoRA factors: At is {tuple(at.shape)} but Bt is {tuple(bt.shape)} (ranks differ)")
        if parts is None:
            parts = torch.tensor([[0, at.shape[1], 0, bt.shape[1]]], dtype=torch.int32)
        parts = parts.to(torch.int32).contiguous()
        r = at.shape[1]
        ok = at.dtype == bt.dtype == torch.float32 and r % 8 == 0 and r <= _KERNEL_MAX_RANK
        return cls(at, bt, parts, at.data_ptr(), bt.data_ptr(), parts.data_ptr(), ok)


@dataclass(frozen=True)
class LoraGroup:
    """Rows of one step that use one adapter, and that adapter's activated weights.

    ``rows`` is a slice of ints when the rows are contiguous, else a long tensor of row indices.
    ``weights[layer][proj]`` is the adapter's :class:`LoraFactors` for that projection, absent when the
    adapter does not target it. ``kernel``: the C kernel library (``treadle.kernels.ggml.load()``) or None.
    """

    rows: slice | torch.Tensor
    weights: Sequence[dict[str, LoraFactors]]
    kernel: object = None


def add_lora(y: torch.Tensor, x: torch.Tensor, groups: Sequence[LoraGroup], layer: int, proj: str) -> None:
    """``y[rows] += (x[rows] @ A.T) @ B.T`` for each group; in place, rows of no group unchanged.

    A slice of at most ``KERNEL_ROWS`` rows goes through the C kernel when the group has it and the
    factors allow it; every other group through two torch GEMMs (the same sums in another order)."""
    for g in groups:
        f = g.weights[layer].get(proj)
        if f is None:
            continue
        rows = g.rows
        if type(rows) is slice:
            start = rows.start or 0
            stop = y.shape[0] if rows.stop is None else min(rows.stop, y.shape[0])
            t = stop - start
            if g.kernel is not None and f.kernel_ok and 0 < t <= KERNEL_ROWS and x.is_contiguous() \
                    and y.is_contiguous():
                k, n = x.shape[1], y.shape[1]
                g.kernel.lora_add(x.data_ptr() + 4 * start * k, f.at_ptr, f.bt_ptr, f.parts_ptr, f.parts.shape[0],
                                  y.data_ptr() + 4 * start * n, t, k, f.at.shape[1], n)
            elif start == 0 and stop == y.shape[0]:
                y.addmm_(x.mm(f.at), f.bt)  # every row under this adapter: no views
            else:
                y[start:stop].addmm_(x[start:stop].mm(f.at), f.bt)
        else:
            y.index_add_(0, rows, x.index_select(0, rows).mm(f.at).mm(f.bt))
