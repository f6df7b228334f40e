"""The fused decode path (kernels/decode_stack.c) equals the per-op layer path.

Tiny random Llama and Qwen2 (q/k/v biases) models with GGUF blocks (Q4_1, one Q8_0 projection per
layer): one to three decode rows, each over its own scattered paged context, give the same hidden
states (fp32 rounding) and write the same K/V into the same slots; steps the path does not cover
(LoRA rows, more rows than the blocks serve, no blocks) run per op."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from treadle.kernels import ggml
from treadle.models.attention import AttentionMetadata, PagedDecode, Workspace
from treadle.models.loader import load_model


def with_blocks(folder: Path, lib):  # noqa: ANN001, ANN201
    """The model with every projection rounded to GGUF blocks (fp32 twins = the dequantised weights)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    model, cfg = load_model(folder)
    blocks = {}
    for i, layer in enumerate(model.layers):
        for n in ("qkv", "o_proj", "gate_up", "down"):
            qtype = "Q8_0" if n == "o_proj" else "Q4_1"
            p = getattr(layer, n)
            b = quantize(p.detach().numpy(), GGMLQuantizationType[qtype])
            p.data.copy_(torch.from_numpy(dequantize(b, GGMLQuantizationType[qtype]).reshape(p.shape)))
            blocks[f"layers.{i}.{n}"] = ggml.BlockWeight(torch.from_numpy(b), qtype, p.shape[0], p.shape[1])
    model.attach_block_weights(blocks, lib, 64)
    return model, cfg


def decode_step(model, cfg, lib, fused: bool, rows: int = 1, lora=()):  # noqa: ANN001, ANN201
    """``rows`` decode rows, each over its own scattered paged context (lengths 11, 5, 8, ...)."""
    bs = 4
    g = torch.Generator().manual_seed(3)
    caches = [(torch.randn(cfg.num_kv_heads, 16 * bs, cfg.head_dim, generator=g),
               torch.randn(cfg.num_kv_heads, 16 * bs, cfg.head_dim, generator=g)) for _ in model.layers]
    tables = [[9, 2, 14], [3, 7, 0], [5, 11, 1]][:rows]
    lens = [11, 5, 8][:rows]
    slots = [t[(n - 1) // bs] * bs + (n - 1) % bs for t, n in zip(tables, lens, strict=True)]
    meta = AttentionMetadata(torch.tensor(slots), [], [], Workspace(),
                             PagedDecode(rows, torch.tensor(tables, dtype=torch.int32),
                                         torch.tensor(lens, dtype=torch.int32), bs, lib))
    model.fused_decode = fused
    h = model(torch.tensor([5, 9, 17][:rows]), torch.tensor(lens) - 1, meta, caches, lora)
    return h, caches, model._stack


@pytest.mark.parametrize("arch,rows", [("llama", 1), ("qwen2", 1), ("llama", 3), ("qwen2", 2)])
def test_fused_decode_equals_the_per_op_layers(lib, arch: str, rows: int, tiny_llama: Path,  # noqa: ANN001
                                               tiny_qwen2: Path) -> None:
    model, cfg = with_blocks(tiny_llama if arch == "llama" else tiny_qwen2, lib)
    h_ref, caches_ref, stack = decode_step(model, cfg, lib, fused=False, rows=rows)
    assert stack is None
    h, caches, stack = decode_step(model, cfg, lib, fused=True, rows=rows)
    assert stack, "the fused path should cover this step"
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    for (k, v), (kr, vr) in zip(caches, caches_ref, strict=True):
        torch.testing.assert_close(k, kr, rtol=1e-5, atol=1e-5)  # the same slots written, nothing else
        torch.testing.assert_close(v, vr, rtol=1e-5, atol=1e-5)


def test_steps_the_fused_path_does_not_cover_run_per_op(lib, tiny_llama: Path) -> None:  # noqa: ANN001
    from treadle.models.decode_stack import DecodeStack
    from treadle.models.linear import LoraGroup

    model, cfg = with_blocks(tiny_llama, lib)
    calls = []
    orig = DecodeStack.run
    DecodeStack.run = lambda self, *a: calls.append(1) or orig(self, *a)
    try:
        no_op_adapter = LoraGroup(slice(0, 1), [{} for _ in model.layers])  # a row under an adapter: per op
        h_lora, _, _ = decode_step(model, cfg, lib, fused=True, lora=[no_op_adapter])
        assert not calls
        h, _, _ = decode_step(model, cfg, lib, fused=True)
        assert calls == [1]
        torch.testing.assert_close(h, h_lora, rtol=1e-5, atol=1e-5)
        for layer in model.layers:  # blocks only up to 2 rows: a 3-row step runs per op (dense)
            layer.linears["down"].max_rows = 2
        decode_step(model, cfg, lib, fused=True, rows=3)
        assert calls == [1]
    finally:
        DecodeStack.run = orig
    dense, _ = load_model(tiny_llama)  # no GGUF blocks: never fused
    assert decode_step(dense, dense.cfg, lib, fused=True)[2] is False
