"""Weight formats beyond dense fp32, and the cost rule that picks one per step shape.

Cost rule: the estimated CPU time of ``y = x @ W.T`` for ``rows`` token rows and a weight of
``n x k`` in a format is ``n * k * (fixed + per_row * rows)`` nanoseconds, ``per_row`` taking a
second value above ``knee`` rows (the tiled GGUF kernel rebuilds its weights once per 64 rows).
``fixed`` is what a step pays whatever its size (streaming the weights from memory, rebuilding
GGUF blocks); ``per_row`` the multiply-adds. A projection uses the cheapest format it holds for
the rows of the step. The constants were measured on the reference machine (2-core AMD EPYC Zen 3,
AVX2, torch 2.13 CPU): CPU time of the 120 projections of SmolLM2-135M (30 layers, 106 M weights,
so the weights stream from memory as in a real step) at 1, 16, 64 and 256 rows, one thread
(docs/BENCHMARKS.md, "Linear formats"). Since every format's cost scales with ``n * k``, the rule
reduces to a row-count crossover per pair of formats, computed here rather than hard-coded.

Formats:
- ``dense``: fp32 ``F.linear`` (exact; the greedy identity with transformers rests on it).
- ``gguf``: the GGUF Q4_1/Q8_0 blocks the weights were converted from (bit-identical weights; only
  the summation order differs from dense), ``treadle.kernels``.
- ``int8``: int8 per-output-channel weights (symmetric, scale = max |w| / 127) with int8 dynamic
  activations (one scale per call, computed from the whole step's rows: a row's result can depend on
  the other rows), torch's fbgemm ``quantized::linear_dynamic`` on pre-packed weights. Not exact: opt
  in with ``EngineConfig.quantization = "int8"``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from treadle.models.linear import LinearMethod

# Full 8-bit activations. fbgemm on AVX2 (vpmaddubsw) can saturate an int16 pair sum with them, which 7-bit
# activations (True) avoid; on SmolLM2-135M 8 bits agreed with fp32 greedy on 5.4% of the 64-prompt workload's
# tokens against 3.0% with 7 bits (2026-12-02, docs/BENCHMARKS.md): both far too low for anything but speed tests.
REDUCE_RANGE = False


@dataclass(frozen=True)
class FormatCost:
    fixed_ns: float  # per weight, per call
    per_row_ns: float  # per weight, per token row, up to ``knee`` rows
    per_row_above_knee_ns: float | None = None  # per weight per row beyond ``knee`` (None: same)
    knee: int = 64

    def ns_per_weight(self, rows: int) -> float:
        above = self.per_row_above_knee_ns
        if above is None or rows <= self.knee:
            return self.fixed_ns + self.per_row_ns * rows
        return self.fixed_ns + self.per_row_ns * self.knee + above * (rows - self.knee)


# Measured 2026-12-02 on a shared machine (see module docstring): CPU ms of the 106 M-weight stack
# at 1/16/64/256 rows (dense 51.5/100.4/222.5/784; gguf 14.8/53.7/161.5/678; int8 9.5/26.2/51.9/221),
# fitted as fixed + per row (slopes between 16 and 64 rows, and between 64 and 256 for the knee) / 106e6.
COSTS: dict[str, FormatCost] = {
    "dense": FormatCost(fixed_ns=0.51, per_row_ns=0.024),
    "gguf": FormatCost(fixed_ns=0.167, per_row_ns=0.0212, per_row_above_knee_ns=0.0254),
    "int8": FormatCost(fixed_ns=0.079, per_row_ns=0.0083),
}


def cheapest(formats: tuple[str, ...], rows: int, costs: dict[str, FormatCost] | None = None) -> str:
    """The format of ``formats`` with the least estimated time for ``rows`` rows (first wins ties)."""
    costs = costs or COSTS
    return min(formats, key=lambda f: costs[f].ns_per_weight(rows))


def crossover_rows(cheap_small: str, other: str, costs: dict[str, FormatCost] | None = None,
                   limit: int = 1 << 16) -> int:
    """Largest row count up to which ``cheap_small`` costs no more than ``other`` (0 if never)."""
    costs = costs or COSTS
    a, b = costs[cheap_small], costs[other]
    last = 0
    for rows in range(1, limit + 1):
        if a.ns_per_weight(rows) <= b.ns_per_weight(rows):
            last = rows
        elif last:
            break
    return last


class Int8DynamicLinear(LinearMethod):
    """int8 per-channel weights x int8 dynamic activations (fbgemm), weights packed once."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        w = weight.detach().float()
        scale = (w.abs().amax(dim=1).clamp_min(1e-12) / 127.0).double()
        with warnings.catch_warnings():  # torch marks quantized tensor creation deprecated (still supported)
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float())
        self.out_features = w.shape[0]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.contiguous(), self.packed, REDUCE_RANGE)


def int8_supported() -> bool:
    """Whether this torch build has a quantized CPU engine (fbgemm/x86) for ``Int8DynamicLinear``."""
    engines = torch.backends.quantized.supported_engines
    return any(e in engines for e in ("x86", "fbgemm"))
