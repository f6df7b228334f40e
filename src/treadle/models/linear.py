"""How a projection ``y = x @ W.T (+ b)`` is computed: one :class:`LinearMethod` per weight format.

- :class:`DenseLinear`: an fp32 (or bf16) weight matrix, ``F.linear``. Exact: the greedy identity
  with transformers rests on it.
- :class:`GGUFBlockLinear`: the GGUF block kernel (``treadle.kernels``) for steps of at most
  ``max_rows`` rows, the dense twin for larger steps; ``max_rows`` comes from the cost rule in
  ``treadle.models.linear_formats``, which also holds the quantized formats (int8).
The model layer only calls ``apply``.

LoRA sits on top of any method: :func:`add_lora` adds ``(x[rows] @ A.T) @ B.T`` for each group of
rows that share an adapter (one low-rank product per adapter group), leaving other rows untouched.
The LoRA scale is folded into ``B`` when an adapter is activated (``treadle.models.lora``), and the
activated factors are stored transposed and contiguous (``A.T`` ``[r, in]`` -> ``[in, r]``, ``B.T``
``[r, out]``), so both products are plain row-major GEMMs: on a one-row decode step this halves the
cost of the four LoRA calls per layer against multiplying by ``A.t()`` / ``B.t()`` views (measured
with the bundled model's shapes; docs/BENCHMARKS.md).
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


@dataclass(frozen=True)
class LoraGroup:
    """Rows of one step that use one adapter, and that adapter's activated weights.

    ``rows`` is a slice when the rows are contiguous, else a long tensor of row indices.
    ``weights[layer][proj]`` is ``(At, Bt)``, contiguous, with At = A.T ``[in, r_total]`` and
    Bt = (scale * B).T ``[r_total, out]``, or absent when the adapter does not target that projection.
    """

    rows: slice | torch.Tensor
    weights: Sequence[dict[str, tuple[torch.Tensor, torch.Tensor]]]


def add_lora(y: torch.Tensor, x: torch.Tensor, groups: Sequence[LoraGroup], layer: int, proj: str) -> None:
    """``y[rows] += (x[rows] @ A.T) @ B.T`` for each group; in place, rows of no group unchanged."""
    for g in groups:
        ab = g.weights[layer].get(proj)
        if ab is None:
            continue
        at, bt = ab
        if isinstance(g.rows, slice):
            if g.rows.start in (0, None) and g.rows.stop is not None and g.rows.stop >= y.shape[0]:
                y.addmm_(x.mm(at), bt)  # every row under this adapter (the single-stream case): no views
            else:
                y[g.rows].addmm_(x[g.rows].mm(at), bt)
        else:
            y.index_add_(0, g.rows, x.index_select(0, g.rows).mm(at).mm(bt))
