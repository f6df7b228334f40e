"""How a projection ``y = x @ W.T (+ b)`` is computed: one :class:`LinearMethod` per weight format.

- :class:`DenseLinear`: an fp32 (or bf16) weight matrix, ``F.linear``. Exact: the greedy identity
  with transformers rests on it.
- :class:`GGUFBlockLinear`: the GGUF block kernel (``treadle.kernels``) for steps of at most
  ``max_rows`` rows, the dense twin for larger steps; ``max_rows`` comes from the cost rule in
  ``treadle.models.linear_formats``, which also holds the quantized formats (int8).
The model layer only calls ``apply``.

LoRA sits on top of any method (:class:`LoraFactors`, :class:`LoraGroup`): :func:`add_lora` adds ``(x[rows] @ A.T) @ B.T`` for each group of
rows that share an adapter (one low-rank product per adapter group), leaving other rows untouched.
The LoRA scale is folded into ``B`` when an adapter is activated (``treadle.models.lora``); the layouts
each path reads are in :class:`LoraFactors`. A group of at most
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


# lora_max_rows(), lora_max_rank() of kernels/lora.c (test-pinned). Every group of at most KERNEL_ROWS rows
# uses the kernel: it measured faster than torch's GEMMs from 1 to 16 rows (docs/BENCHMARKS.md, "Multi-LoRA").
KERNEL_ROWS, _KERNEL_MAX_RANK = 16, 1024


@dataclass(frozen=True, slots=True)
class LoraFactors:
    """One adapter's activated factors for one (fused) projection, contiguous, fp32 or the model dtype.

    ``at`` = A.T ``[in, R]`` (the parts' A stacked), ``b`` ``[out, R]`` (block-diagonal over a fused
    projection's parts, scale folded in) and ``bt`` = b.T ``[R, out]``: torch multiplies ``x @ at`` then
    by ``b.t()`` (the fastest pair measured for the 16-row groups of a batched step), the C kernel reads
    ``at`` and ``bt`` (both streamed row by row). ``parts``: an int32 ``[P, 4]`` tensor of B's nonzero
    blocks (rank offset, rank, output offset, outputs). The raw pointers are taken once here, off the
    per-token path; the tensors are held so the pointers stay valid. ``kernel_ok``: the C kernel can take
    these (fp32, R a multiple of 8)."""

    at: torch.Tensor
    b: torch.Tensor
    bt: torch.Tensor
    parts: torch.Tensor
    at_ptr: int
    bt_ptr: int
    parts_ptr: int
    nparts: int
    rank: int
    in_features: int
    out_features: int
    kernel_ok: bool

    @classmethod
    def of(cls, a: torch.Tensor, b: torch.Tensor, parts: torch.Tensor | None = None) -> LoraFactors:
        """Factors from A ``[R, in]`` and B ``[out, R]`` (as PEFT stores them); ``parts`` None: all of B
        is one block."""
        if a.shape[0] != b.shape[1]:
            raise ValueError(f"LoRA factors: A is {tuple(a.shape)} but B is {tuple(b.shape)} (ranks differ)")
        if parts is None:
            parts = torch.tensor([[0, a.shape[0], 0, b.shape[0]]], dtype=torch.int32)
        parts = parts.to(torch.int32).contiguous()
        at, b, bt = a.t().contiguous(), b.contiguous(), b.t().contiguous()
        r = a.shape[0]
        ok = a.dtype == b.dtype == torch.float32 and r % 8 == 0 and r <= _KERNEL_MAX_RANK
        return cls(at, b, bt, parts, at.data_ptr(), bt.data_ptr(), parts.data_ptr(), parts.shape[0], r, a.shape[1],
                   b.shape[0], ok)


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
            start, rows_y = rows.start or 0, y.shape[0]
            stop = rows_y if rows.stop is None else min(rows.stop, rows_y)  # never past y: the kernel writes raw
            if g.kernel is not None and f.kernel_ok and 0 < stop - start <= KERNEL_ROWS and x.is_contiguous() \
                    and y.is_contiguous():
                k, n = f.in_features, f.out_features
                g.kernel.lora_add(x.data_ptr() + 4 * start * k, f.at_ptr, f.bt_ptr, f.parts_ptr, f.nparts,
                                  y.data_ptr() + 4 * start * n, stop - start, k, f.rank, n)
            elif start == 0 and stop == rows_y:
                y.addmm_(x.mm(f.at), f.b.t())  # every row under this adapter: no views of y
            else:
                y[start:stop].addmm_(x[start:stop].mm(f.at), f.b.t())
        else:
            y.index_add_(0, rows, x.index_select(0, rows).mm(f.at).mm(f.b.t()))
