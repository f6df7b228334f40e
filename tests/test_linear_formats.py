"""The cost rule that picks a weight format per step shape, and the int8 format."""

from __future__ import annotations

import pytest
import torch

from treadle.models.linear_formats import (
    COSTS,
    FormatCost,
    Int8DynamicLinear,
    cheapest,
    crossover_rows,
    int8_supported,
)


def test_cost_rule_picks_the_cheapest_format_per_row_count() -> None:
    costs = {"a": FormatCost(fixed_ns=1.0, per_row_ns=0.01), "b": FormatCost(fixed_ns=0.1, per_row_ns=0.1)}
    assert cheapest(("a", "b"), 1, costs) == "b"  # few rows: the cheap fixed cost wins
    assert cheapest(("a", "b"), 100, costs) == "a"  # many rows: the cheap per-row cost wins
    assert crossover_rows("b", "a", costs) == 10  # 0.1 + 0.1 r <= 1 + 0.01 r  <=>  r <= 10
    assert crossover_rows("a", "b", costs) == 0 or crossover_rows("a", "b", costs) > 10


def test_knee_changes_the_per_row_cost_above_it() -> None:
    c = FormatCost(fixed_ns=1.0, per_row_ns=0.1, per_row_above_knee_ns=0.5, knee=4)
    assert c.ns_per_weight(4) == pytest.approx(1.4)
    assert c.ns_per_weight(6) == pytest.approx(2.4)


def test_measured_costs_keep_gguf_blocks_for_decode_sized_steps() -> None:
    """On the reference machine the blocks pay up to a few hundred rows, then the fp32 GEMM does."""
    rows = crossover_rows("gguf", "dense")
    assert 64 <= rows < 4096
    assert cheapest(("dense", "gguf"), 1) == "gguf" and cheapest(("dense", "gguf"), rows + 1) == "dense"
    assert all(cheapest(tuple(COSTS), r) == "int8" for r in (1, 16, 64, 512))


@pytest.mark.skipif(not int8_supported(), reason="this torch build has no quantized CPU engine")
def test_int8_linear_is_close_to_fp32() -> None:
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(96, 64, generator=g) * 0.05, torch.randn(96, generator=g)
    x = torch.randn(5, 64, generator=g)
    ref = torch.nn.functional.linear(x, w, b)
    y = Int8DynamicLinear(w, b).apply(x)
    assert y.shape == ref.shape
    rel = (y - ref).norm() / ref.norm()
    assert rel < 0.03, rel


def test_agreement_counts_positions_prefixes_and_whole_prompts() -> None:
    from treadle.bench.format_bench import agreement

    ref = [[1, 2, 3, 4], [5, 6, 7, 8]]
    got = [[1, 2, 9, 4], [5, 6, 7, 8]]
    a = agreement(ref, got)
    assert a["token_agreement"] == pytest.approx(7 / 8)
    assert a["prefix_agreement"] == pytest.approx(6 / 8)
    assert a["identical_prompts"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same prompts"):
        agreement(ref, got[:1])


@pytest.mark.skipif(not int8_supported(), reason="this torch build has no quantized CPU engine")
def test_int8_engine_generates_and_mostly_agrees_with_fp32(tiny_llama) -> None:  # noqa: ANN001
    from treadle.bench.format_bench import agreement, generate_greedy
    from treadle.config import EngineConfig
    from treadle.engine.llm_engine import LLMEngine

    exact = LLMEngine(EngineConfig(model=str(tiny_llama), num_kv_blocks=64, threads=1))
    q = LLMEngine(EngineConfig(model=str(tiny_llama), num_kv_blocks=64, threads=1, quantization="int8"))
    assert q.model.weight_format == "int8" and exact.model.weight_format == "dense"
    prompts = [exact.tokenizer.encode(t) for t in ("The quick brown fox", "Paged attention keeps", "Hello world")]
    a = agreement(generate_greedy(exact, prompts, 8), generate_greedy(q, prompts, 8))
    assert a["token_agreement"] >= 0.5, a  # a tiny random model has small logit margins; real figures in docs


def test_quantization_is_validated() -> None:
    from treadle.config import EngineConfig

    with pytest.raises(ValueError, match="quantization"):
        EngineConfig(quantization="int4")
    with pytest.raises(ValueError, match="dtype"):
        EngineConfig(quantization="int8", dtype="bfloat16")
