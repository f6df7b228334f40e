"""Which activation precisions keep greedy output within issue 17's bar (docs/BENCHMARKS.md).

Usage: flock /tmp/treadle-cpu.lock .venv/bin/python scripts/activation_precision_agreement.py [SCHEMES]
SCHEMES: comma list of ``block32_q8`` (llama.cpp's Q8_0 activations: one scale per 32 values),
``block32_qN`` (N bits), ``row_qN`` (one scale per token row), ``fp16``, ``bf16``, and ``kv_fp16`` /
``kv_bf16`` (the KV cache stored in that precision: every key and value rounded before it is cached and
attended to; activations exact); default all of the study. Issue 17 admits a quantized default only if its greedy output agrees with the exact path's on at
least 90% of the tokens of the 64-prompt workload (the engine benchmark's ``throughput`` prompts, 128
tokens each, ``ignore_eos``; ``format_bench.agreement``).

Method: the upper bound of a scheme's quality, whatever kernel computes it. Every projection's input and
the lm_head's is rounded to the scheme (quantize, then dequantize, round-to-nearest, symmetric scale =
max |x| / (2^(N-1) - 1) per group) and multiplied by the exact weights (the bundled Q4_1 blocks) in
fp32, per-op layers (the fused C step bypasses the linear methods). A real integer kernel adds its own
rounding of the sums (none for exact int32 sums), so it agrees no better than this. The ``kv_`` schemes
round the keys and values instead, before the attention caches them and attends to them, which is what a
cache stored in that precision and read back into fp32 gives.
"""

import sys
import time
from collections.abc import Callable

import torch

from treadle.bench.engine_bench import throughput_prompts
from treadle.bench.format_bench import agreement, generate_greedy
from treadle.llm import LLM
from treadle.models import llama
from treadle.models.linear import LinearMethod

EXACT_ATTENTION = llama.paged_attention
DEFAULT = "block32_q8,block32_q10,block32_q12,block32_q16,row_q8,row_q16,fp16,bf16,kv_fp16,kv_bf16"


def round_groups(x: torch.Tensor, group: int, bits: int) -> torch.Tensor:
    """``x`` [T, K] rounded to ``bits``-bit integers with one symmetric scale per ``group`` values of a
    row (``group`` 0: the whole row), dequantized back to fp32."""
    t, k = x.shape
    g = x.reshape(t, -1, group if group else k)
    scale = g.abs().amax(-1, keepdim=True).clamp_min(1e-30) / (2 ** (bits - 1) - 1)
    return (torch.round(g / scale) * scale).reshape(t, k)


def scheme(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "fp16":
        return lambda x: x.half().float()
    if name == "bf16":
        return lambda x: x.bfloat16().float()
    kind, _, bits = name.rpartition("_q")
    groups = {"block32": 32, "row": 0}
    if kind not in groups or not bits.isdigit():
        raise ValueError(f"scheme {name!r}: use block32_qN, row_qN, fp16 or bf16")
    return lambda x: round_groups(x, groups[kind], int(bits))


class RoundedInput(LinearMethod):
    def __init__(self, inner: LinearMethod, f: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.inner, self.f = inner, f

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.apply(self.f(x))


def set_rounding(model, f: Callable[[torch.Tensor], torch.Tensor] | None) -> None:  # noqa: ANN001
    """Wrap (or with ``f`` None unwrap) every projection and the lm_head."""
    def swap(m: LinearMethod) -> LinearMethod:
        base = m.inner if isinstance(m, RoundedInput) else m
        return base if f is None else RoundedInput(base, f)

    for layer in model.layers:
        if not layer.linears:
            layer.bind_linears()
        for name in list(layer.linears):
            layer.linears[name] = swap(layer.linears[name])
    if model.head is not None:
        model.head = swap(model.head)


def set_kv_rounding(f: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
    """Round every key and value to ``f`` before the per-op attention caches and uses it (None: exact)."""
    if f is None:
        llama.paged_attention = EXACT_ATTENTION
        return

    def rounded(q, k, v, *rest):  # noqa: ANN001, ANN202
        return EXACT_ATTENTION(q, f(k), f(v), *rest)

    llama.paged_attention = rounded


def main() -> None:
    names = (sys.argv[1] if len(sys.argv) > 1 else DEFAULT).split(",")
    llm = LLM("default")
    eng = llm.engine
    eng.model.fused_decode = False
    prompts = throughput_prompts(eng.tokenizer, 64)
    ref = generate_greedy(eng, prompts, 128)
    print(f"{'scheme':<12} {'tokens':>7} {'prefix':>7} {'identical':>9}  (64 prompts x 128 greedy tokens)")
    for name in names:
        if name.startswith("kv_"):
            set_kv_rounding(scheme(name[3:]))
        else:
            set_rounding(eng.model, scheme(name))
        t0 = time.perf_counter()
        out = generate_greedy(eng, prompts, 128)
        a = agreement(ref, out)
        print(f"{name:<12} {a['token_agreement']:>7.1%} {a['prefix_agreement']:>7.1%} "
              f"{a['identical_prompts']:>9.1%}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        set_rounding(eng.model, None)
        set_kv_rounding(None)


if __name__ == "__main__":
    main()
