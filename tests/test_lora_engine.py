"""Multi-LoRA in the engine: PEFT adapters on tiny random models, several adapters and the base in
one batch, against transformers with each adapter merged (PEFT ``merge_and_unload``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lora_support import compare_greedy, make_peft_adapter, merged_model
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.engine.lora_registry import AdapterNotFoundError
from treadle.models.lora import LoraError
from treadle.sampling_params import SamplingParams

ADAPTERS = {  # name -> make_peft_adapter options: ranks, alphas, rslora and target sets all differ
    "all7": dict(seed=1, r=4, alpha=8.0),
    "qv-rs": dict(seed=2, r=8, alpha=4.0, targets=("q_proj", "v_proj"), use_rslora=True),
    "mlp-o": dict(seed=3, r=2, alpha=6.0, targets=("o_proj", "gate_proj", "up_proj", "down_proj")),
    "k-up": dict(seed=4, r=3, alpha=3.0, targets=("k_proj", "up_proj")),
}


@pytest.fixture(scope="module")
def adapters(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loras")
    return {name: make_peft_adapter(tiny_llama, root / name, **opts) for name, opts in ADAPTERS.items()}


def make_engine(path: Path, adapters: dict[str, Path], **kw: object) -> LLMEngine:
    cfg = dict(model=str(path), num_kv_blocks=128, block_size=4, threads=1, max_num_batched_tokens=64,
               lora_modules=tuple((n, str(p)) for n, p in adapters.items()))
    cfg.update(kw)
    return LLMEngine(EngineConfig(**cfg))  # type: ignore[arg-type]


def run_all(engine: LLMEngine) -> dict:
    final = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
        engine.scheduler.check_integrity()
    return final


PROMPTS = [[5, 17, 99, 23, 41, 8, 77, 3, 64, 12, 150, 33, 9], [200, 14, 31], list(range(40, 71)), [7, 7, 7, 7, 9]]


@pytest.mark.parametrize("max_loras", [4, 2])
def test_adapters_and_base_in_one_batch_match_merged_transformers(tiny_llama, adapters, max_loras) -> None:
    engine = make_engine(tiny_llama, adapters, max_loras=max_loras)
    steps_models: list[set] = []
    inner = engine.scheduler.schedule

    def spy():  # record which adapters share each step
        out = inner()
        steps_models.append({s.adapter_id for s in out.scheduled})
        return out

    engine.scheduler.schedule = spy
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True, logprobs=5)
    names = [None, *adapters]
    for i, prompt in enumerate(PROMPTS):
        for name in names:
            engine.add_request(f"{name}-{i}", prompt, params, lora_name=name)
    final = run_all(engine)
    assert len(final) == len(PROMPTS) * len(names)
    # Several adapters and the base model ran in the same step, never more adapters than slots.
    assert max(len(m) for m in steps_models) >= min(max_loras, len(adapters)) + 1
    assert all(len(m - {None}) <= max_loras for m in steps_models)
    matched = 0
    for name in names:
        ref = merged_model(tiny_llama, adapters[name] if name else None)
        for i, prompt in enumerate(PROMPTS):
            out = final[f"{name}-{i}"].outputs[0]
            matched += compare_greedy(ref, prompt, out.token_ids, out.logprobs)
    assert matched >= 0.95 * len(PROMPTS) * len(names) * 8  # near ties are rare on these models
    # The adapters really change the output (otherwise the test could not fail).
    base_tokens = final["None-0"].outputs[0].token_ids
    assert any(final[f"{n}-0"].outputs[0].token_ids != base_tokens for n in adapters)


def test_full_vocab_logits_with_adapter_equal_merged(tiny_llama, adapters) -> None:
    engine = make_engine(tiny_llama, {"all7": adapters["all7"]})
    seen: list[torch.Tensor] = []
    inner = engine.model.compute_logits
    engine.model.compute_logits = lambda h: seen.append(inner(h).clone()) or seen[-1]  # type: ignore[method-assign]
    prompt = PROMPTS[0]
    engine.add_request("r", prompt, SamplingParams(temperature=0, max_tokens=5, ignore_eos=True), lora_name="all7")
    gen = run_all(engine)["r"].outputs[0].token_ids
    ref = merged_model(tiny_llama, adapters["all7"])
    with torch.no_grad():
        expected = ref(torch.tensor([prompt + gen])).logits[0, len(prompt) - 1 : len(prompt) + 4]
    torch.testing.assert_close(torch.cat(seen), expected, atol=1e-4, rtol=0)


def test_more_adapters_than_slots_wait_and_swap_lru(tiny_llama, adapters) -> None:
    engine = make_engine(tiny_llama, adapters, max_loras=1, max_num_batched_tokens=256)
    params = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
    for name in adapters:
        engine.add_request(name, PROMPTS[1], params, lora_name=name)
    engine.add_request("base", PROMPTS[1], params)
    first = engine.scheduler.schedule()
    # One adapter slot: one adapter request runs, the base request is not held back.
    assert {s.request_id for s in first.scheduled} == {"all7", "base"}
    assert engine.scheduler.num_waiting == 3
    engine.runner.execute(first)
    final = run_all(engine)
    assert set(final) == {*adapters, "base"} and all(o.outputs[0].finish_reason == "length" for o in final.values())
    assert engine.scheduler.loras.slots == [engine.loras.version_of("k-up")]  # the last one used


def test_reload_under_same_name_never_reuses_old_kv(tiny_llama, adapters) -> None:
    """vLLM issue 42125: new weights under an old name must miss the prefix cache."""
    engine = make_engine(tiny_llama, {"x": adapters["all7"]})
    prompt = list(range(10, 43))
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    engine.add_request("a", prompt, params, lora_name="x")
    run_all(engine)
    engine.add_request("b", prompt, params, lora_name="x")
    assert run_all(engine)["b"].num_cached_tokens == 32  # same weights: the prefix is reused
    engine.remove_lora("x")
    engine.add_lora("x", engine.read_lora(str(adapters["mlp-o"])))
    engine.add_request("c", prompt, params, lora_name="x")
    out = run_all(engine)["c"]
    assert out.num_cached_tokens == 0
    ref = merged_model(tiny_llama, adapters["mlp-o"])
    assert compare_greedy(ref, prompt, out.outputs[0].token_ids, None) == 4


def test_cache_salt_isolates_tenants_and_adapters_isolate_from_base(tiny_llama, adapters) -> None:
    engine = make_engine(tiny_llama, {"x": adapters["all7"]})
    prompt = list(range(10, 43))
    params = SamplingParams(temperature=0, max_tokens=2, ignore_eos=True)

    def cached(rid: str, **kw: object) -> int:
        engine.add_request(rid, prompt, params, **kw)  # type: ignore[arg-type]
        return run_all(engine)[rid].num_cached_tokens

    assert cached("t1", cache_salt="tenant-1") == 0
    assert cached("t1-again", cache_salt="tenant-1") == 32
    assert cached("t2", cache_salt="tenant-2") == 0
    assert cached("base") == 0
    assert cached("lora", lora_name="x") == 0
    assert cached("lora-salted", lora_name="x", cache_salt="tenant-1") == 0
    assert cached("lora-again", lora_name="x") == 32


def test_unload_running_request_finishes_new_ones_fail(tiny_llama, adapters) -> None:
    engine = make_engine(tiny_llama, {"x": adapters["all7"]})
    engine.add_request("r", PROMPTS[0], SamplingParams(temperature=0, max_tokens=6, ignore_eos=True), lora_name="x")
    engine.step()
    version = engine.loras.version_of("x")
    engine.remove_lora("x")
    with pytest.raises(AdapterNotFoundError):
        engine.add_request("new", PROMPTS[0], SamplingParams(max_tokens=2), lora_name="x")
    assert version in engine.runner.adapters  # still used by "r"
    out = run_all(engine)["r"]
    assert len(out.outputs[0].token_ids) == 6
    ref = merged_model(tiny_llama, adapters["all7"])
    compare_greedy(ref, PROMPTS[0], out.outputs[0].token_ids, None)
    assert version not in engine.runner.adapters and version not in engine.scheduler.loras.slots


def _edit_config(src: Path, dst: Path, **changes: object) -> Path:
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "adapter_config.json").read_text())
    cfg.update(changes)
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize(("change", "field"), [
    ({"use_dora": True}, "use_dora"),
    ({"target_modules": ["q_proj", "embed_tokens"]}, "target_modules"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"r": 128}, "r 128"),
    ({"bias": "all"}, "bias"),
])
def test_unsupported_adapters_are_refused_naming_the_field(tiny_llama, adapters, tmp_path, change, field) -> None:
    engine = make_engine(tiny_llama, {})
    bad = _edit_config(adapters["all7"], tmp_path / "bad", **change)
    with pytest.raises(LoraError, match=field):
        engine.read_lora(str(bad))


def test_bad_paths_and_duplicates(tiny_llama, adapters, tmp_path) -> None:
    engine = make_engine(tiny_llama, {"x": adapters["all7"]}, max_lora_rank=4)
    with pytest.raises(LoraError, match="lora_path"):
        engine.read_lora(str(tmp_path / "nope"))
    with pytest.raises(LoraError, match="max_lora_rank 4"):
        engine.read_lora(str(adapters["qv-rs"]))  # r=8
    with pytest.raises(ValueError, match="already loaded"):
        engine.add_lora("x", engine.read_lora(str(adapters["all7"])))
    with pytest.raises(AdapterNotFoundError):
        engine.remove_lora("nope")
    other = make_peft_adapter_for_other_model(tmp_path)
    with pytest.raises(LoraError, match="another base model"):
        engine.read_lora(str(other))


def make_peft_adapter_for_other_model(tmp_path: Path) -> Path:
    from conftest import make_tiny_model

    base = make_tiny_model(tmp_path / "wide", "llama", hidden_size=96, intermediate_size=160)
    return make_peft_adapter(base, tmp_path / "wide-lora", seed=9)


def test_version_is_content_hash(tiny_llama, adapters, tmp_path) -> None:
    import shutil

    engine = make_engine(tiny_llama, {})
    a = engine.read_lora(str(adapters["all7"]))
    shutil.copytree(adapters["all7"], tmp_path / "copy")
    assert engine.read_lora(str(tmp_path / "copy")).version == a.version  # same content, any path
    assert engine.read_lora(str(adapters["k-up"])).version != a.version
    changed = _edit_config(adapters["all7"], tmp_path / "alpha", lora_alpha=9.0)
    assert engine.read_lora(str(changed)).version != a.version


def test_lora_on_the_decode_kernel_path_equals_dense_merged_weights() -> None:
    """The GGUF-block method plus LoRA equals x @ (W_deq + B_bd @ A_cat).T (the seam composes)."""
    import numpy as np

    from treadle.kernels import ggml
    from treadle.models.linear import DenseLinear, GGUFBlockLinear, LoraFactors, LoraGroup, add_lora

    lib = ggml.load()
    if lib is None:
        pytest.skip("decode kernel unavailable here (needs gcc and AVX2/FMA/F16C)")
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    n, k, r = 96, 128, 4
    w = np.random.default_rng(0).normal(0, 0.05, size=(n, k)).astype(np.float32)
    blocks = quantize(w, GGMLQuantizationType.Q8_0)
    w_deq = torch.from_numpy(dequantize(blocks, GGMLQuantizationType.Q8_0).reshape(n, k).astype(np.float32))
    method = GGUFBlockLinear(DenseLinear(w_deq), ggml.BlockWeight(torch.from_numpy(blocks), "Q8_0", n, k), lib, 8)
    a, b = torch.randn(r, k) * 0.1, torch.randn(n, r) * 0.1
    x = torch.randn(5, k)
    ab = LoraFactors.of(a, b)  # the activated layout: A [r, in], B [out, r]
    groups = [LoraGroup(torch.tensor([0, 3]), [{"p": ab}])]  # rows 0 and 3 under the adapter
    y = method.apply(x)
    add_lora(y, x, groups, 0, "p")
    expected = x @ w_deq.T
    expected[[0, 3]] = x[[0, 3]] @ (w_deq + b @ a).T
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    for rows, sel in ((slice(0, 5), [0, 1, 2, 3, 4]), (slice(1, 3), [1, 2])):  # every row; a span of rows
        y = method.apply(x)
        add_lora(y, x, [LoraGroup(rows, [{"p": ab}])], 0, "p")
        expected = x @ w_deq.T
        expected[sel] = x[sel] @ (w_deq + b @ a).T
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


def test_lora_bench_runs_base_and_adapters_on_one_engine(tiny_llama) -> None:
    from treadle.bench.lora_bench import lora_bench

    engine = make_engine(tiny_llama, {}, max_loras=2)
    logs: list[str] = []
    r = lora_bench(engine, PROMPTS * 2, num_loras=3, rank=4, output_tokens=4, log=logs.append)
    assert r["num_loras"] == 3 and r["base_throughput_tok_s"] > 0 and r["lora_throughput_tok_s"] > 0
    assert r["lora_single_stream_ratio"] > 0 and len(logs) == 3
    assert sorted(engine.loras.by_name) == ["bench-lora-0", "bench-lora-1", "bench-lora-2"]


def test_offline_llm_takes_adapter_names_per_prompt(tiny_llama, adapters) -> None:
    from treadle.llm import LLM

    llm = LLM(str(tiny_llama), num_kv_blocks=64, block_size=4, threads=1,
              lora_modules=(("a", str(adapters["all7"])),))
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    base, lora = llm.generate([PROMPTS[0], PROMPTS[0]], params, lora_name=[None, "a"])
    assert base.outputs[0].token_ids != lora.outputs[0].token_ids
    assert llm.generate([PROMPTS[0]], params, lora_name="a")[0].outputs[0].token_ids == lora.outputs[0].token_ids
    with pytest.raises(AdapterNotFoundError):
        llm.generate([PROMPTS[0]], params, lora_name="missing")
    assert not llm.engine.has_unfinished_requests()


def test_lora_kernel_equals_the_torch_product_and_reads_only_the_parts() -> None:
    """``lora_add`` (few rows, C) gives the torch GEMMs' result on a fused projection's parts; rows
    outside the group, and a group larger than ``KERNEL_ROWS`` (torch path), are as expected."""
    from treadle.kernels import ggml
    from treadle.models.linear import (
        _KERNEL_MAX_RANK,
        KERNEL_ROWS,
        LoraFactors,
        LoraGroup,
        add_lora,
    )

    lib = ggml.load()
    if lib is None:
        pytest.skip("kernel library unavailable here (needs gcc and AVX2/FMA/F16C)")
    assert (lib.lora_max_rows(), lib.lora_max_rank()) == (KERNEL_ROWS, _KERNEL_MAX_RANK)
    g = torch.Generator().manual_seed(0)
    # A qkv-like projection (outputs 24 + 8 + 8, 44 inputs): q (rank 12) and v (rank 9) adapted, k not;
    # a part of 8 outputs exercises the kernel's scalar tail, rows 1-16 its row blocks.
    k, n = 44, 40
    a = torch.zeros(24, k)  # stacked rank 21, padded to 24 as activation does
    a[:21] = torch.randn(21, k, generator=g) * 0.1
    b = torch.zeros(n, 24)
    b[0:24, 0:12] = torch.randn(24, 12, generator=g) * 0.1
    b[32:40, 12:21] = torch.randn(8, 9, generator=g) * 0.1
    parts = torch.tensor([[0, 12, 0, 24], [12, 9, 32, 8]], dtype=torch.int32)
    poison = b.clone()
    poison[b == 0] = float("nan")  # the zero blocks: the kernel must not read them
    poison[0:24, 0:12], poison[32:40, 12:21] = b[0:24, 0:12], b[32:40, 12:21]
    for rows, n_rows in ((slice(0, 1), 1), (slice(2, 4), 6), (slice(1, 8), 9), (slice(0, 20), 20)):
        x = torch.randn(n_rows, k, generator=g)
        y0 = torch.randn(n_rows, n, generator=g)
        expected = y0.clone()
        expected[rows] += x[rows] @ a.t() @ b.t()
        y = y0.clone()
        weights = poison if rows.stop - rows.start <= KERNEL_ROWS else b  # the torch path reads all of B
        add_lora(y, x, [LoraGroup(rows, [{"p": LoraFactors.of(a, weights, parts)}], lib)], 0, "p")
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    x, y = torch.randn(16, k, generator=g), torch.zeros(16, n)  # the kernel's full capacity, rows on threads
    f = LoraFactors.of(a, poison, parts)
    lib.lora_add(x.data_ptr(), f.at_ptr, f.bt_ptr, f.parts_ptr, 2, y.data_ptr(), 16, k, 24, n)
    torch.testing.assert_close(y, x @ a.t() @ b.t(), atol=1e-5, rtol=1e-5)
