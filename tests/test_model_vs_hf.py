"""Treadle's model against transformers on tiny random models (fp32, tolerance 1e-4).

Two ways of reading Treadle's numbers:
- full-vocabulary logits, by recording what the runner passes out of ``model.compute_logits``
  (used with one request at a time, where each step samples exactly one row);
- log-probabilities (``logprobs=20`` for sampled tokens, ``prompt_logprobs=20`` for prompt
  positions), which are log-softmax of the logits, compared with transformers' log-softmax. This
  works for any batch composition: several prompts of different lengths, chunked prefill, and
  mixed steps that hold decodes and prefill chunks together.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_model
from treadle.config import EngineConfig
from treadle.engine.llm_engine import LLMEngine
from treadle.engine.outputs import RequestOutput
from treadle.models.config import ModelConfig
from treadle.sampling_params import SamplingParams

TOL = 1e-4
ARCHS = ["llama", "qwen2", "mistral", "llama-tied"]


@pytest.fixture(scope="module", params=ARCHS)
def arch_dir(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    if name == "llama-tied":
        return name, make_tiny_model(tmp_path_factory.mktemp("tiny-tied"), "llama", seed=3, tie_word_embeddings=True)
    return name, request.getfixturevalue({"llama": "tiny_llama", "qwen2": "tiny_qwen2", "mistral": "tiny_mistral"}[name])


@pytest.fixture(scope="module")
def hf_model(arch_dir):
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(arch_dir[1], dtype=torch.float32)
    model.eval()
    return model


def hf_logprobs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def hf_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def make_engine(path: Path, **kw) -> LLMEngine:
    cfg = dict(model=str(path), num_kv_blocks=96, block_size=4, threads=1, max_num_batched_tokens=256)
    cfg.update(kw)
    return LLMEngine(EngineConfig(**cfg))


def random_prompt(n: int, vocab: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(3, vocab) for _ in range(n)]


def run_all(engine: LLMEngine, max_steps: int = 500) -> dict[str, RequestOutput]:
    final = {}
    for _ in range(max_steps):
        if not engine.has_unfinished_requests():
            break
        for out in engine.step():
            if out.finished:
                final[out.request_id] = out
    assert not engine.has_unfinished_requests()
    engine.scheduler.check_integrity()
    return final


def check_against_hf(model, out: RequestOutput, check_prompt: bool = True) -> int:
    """Compare every reported log-probability of ``out`` with transformers. Returns #values checked."""
    prompt = out.prompt_token_ids
    gen = out.outputs[0].token_ids
    ref = hf_logprobs(model, prompt + gen)
    checked = 0
    if check_prompt:
        plp = out.prompt_logprobs
        assert plp is not None and len(plp) == len(prompt)
        assert plp[0] is None
        for j in range(1, len(prompt)):
            assert prompt[j] in plp[j]
            assert len(plp[j]) >= 20
            for tok, lp in plp[j].items():
                assert abs(lp - ref[j - 1, tok].item()) < TOL, (j, tok, lp, ref[j - 1, tok].item())
                checked += 1
    lps = out.outputs[0].logprobs
    assert lps is not None and len(lps) == len(gen)
    for i, tok in enumerate(gen):
        row = ref[len(prompt) - 1 + i]
        assert next(iter(lps[i])) == tok  # the sampled token comes first
        assert tok == int(row.argmax())  # greedy
        for t, lp in lps[i].items():
            assert abs(lp - row[t].item()) < TOL, (i, t, lp, row[t].item())
            checked += 1
    return checked


class LogitsRecorder:
    """Wraps ``engine.model.compute_logits`` and keeps a copy of every result."""

    def __init__(self, engine: LLMEngine) -> None:
        self.calls: list[torch.Tensor] = []
        inner = engine.model.compute_logits

        def wrapped(hidden):
            out = inner(hidden)
            self.calls.append(out.detach().float().clone())
            return out

        engine.model.compute_logits = wrapped


# ------------------------------------------------------------------------- tests
def test_qwen2_fixture_has_nonzero_qkv_biases(tiny_qwen2) -> None:
    from safetensors import safe_open

    with safe_open(str(tiny_qwen2 / "model.safetensors"), framework="pt") as f:
        bias = f.get_tensor("model.layers.0.self_attn.q_proj.bias")
    assert bias.abs().max() > 0.01
    assert ModelConfig.from_folder(tiny_qwen2).attention_bias


def test_full_vocab_logits_single_request(arch_dir, hf_model) -> None:
    """Prefill (in one piece and in chunks) then decode: every sampled row, all of the vocabulary."""
    _, path = arch_dir
    vocab = hf_model.config.vocab_size
    for budget, plen in ((256, 23), (8, 37)):
        engine = make_engine(path, max_num_batched_tokens=budget)
        rec = LogitsRecorder(engine)
        prompt = random_prompt(plen, vocab, seed=plen)
        engine.add_request("r", prompt, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True))
        out = run_all(engine)["r"]
        gen = out.outputs[0].token_ids
        assert len(gen) == 6
        ref = hf_logits(hf_model, prompt + gen)
        rows = torch.cat(rec.calls)
        assert rows.shape == (6, vocab), "expected one logits row per sampled token"
        expected = ref[plen - 1 : plen + 5]
        torch.testing.assert_close(rows, expected, atol=TOL, rtol=0)
        assert gen == expected.argmax(-1).tolist()


def test_batch_of_different_lengths(arch_dir, hf_model) -> None:
    _, path = arch_dir
    vocab = hf_model.config.vocab_size
    engine = make_engine(path)
    lengths = [1, 2, 7, 16, 19, 41]
    params = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True, logprobs=20, prompt_logprobs=20)
    for n in lengths:
        engine.add_request(f"p{n}", random_prompt(n, vocab, seed=100 + n), params)
    final = run_all(engine)
    assert sorted(final) == sorted(f"p{n}" for n in lengths)
    for n in lengths:
        assert check_against_hf(hf_model, final[f"p{n}"]) > 0


def test_chunked_prefill(arch_dir, hf_model) -> None:
    _, path = arch_dir
    vocab = hf_model.config.vocab_size
    engine = make_engine(path, max_num_batched_tokens=7)
    seen_chunks = []
    inner = engine.scheduler.schedule

    def spy():
        out = inner()
        seen_chunks.extend((s.request_id, s.start_pos, s.num_tokens) for s in out.scheduled)
        return out

    engine.scheduler.schedule = spy
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True, logprobs=20, prompt_logprobs=20)
    engine.add_request("a", random_prompt(33, vocab, seed=1), params)
    engine.add_request("b", random_prompt(10, vocab, seed=2), params)
    final = run_all(engine)
    assert [c for c in seen_chunks if c[0] == "a"][:5] == [("a", 0, 7), ("a", 7, 7), ("a", 14, 7), ("a", 21, 7), ("a", 28, 5)]
    for rid in ("a", "b"):
        check_against_hf(hf_model, final[rid])


def test_mixed_steps_with_prefix_hits(arch_dir, hf_model) -> None:
    """Decodes and prefill chunks (fresh and continued) in one step, plus a prefix-cache hit."""
    _, path = arch_dir
    vocab = hf_model.config.vocab_size
    engine = make_engine(path, max_num_batched_tokens=9)
    steps = []
    inner = engine.scheduler.schedule

    def spy():
        out = inner()
        steps.append([(s.request_id, s.start_pos, s.num_tokens) for s in out.scheduled])
        return out

    engine.scheduler.schedule = spy
    lp = dict(temperature=0, ignore_eos=True, logprobs=20)
    finals: dict[str, RequestOutput] = {}

    def step():
        for out in engine.step():
            if out.finished:
                finals[out.request_id] = out
        engine.scheduler.check_integrity()

    long_prompt = random_prompt(30, vocab, seed=7)
    engine.add_request("dec1", random_prompt(5, vocab, seed=5), SamplingParams(max_tokens=30, **lp))
    step()
    engine.add_request("dec2", random_prompt(3, vocab, seed=6), SamplingParams(max_tokens=30, **lp))
    step()
    engine.add_request("long", long_prompt, SamplingParams(max_tokens=4, prompt_logprobs=20, **lp))
    for _ in range(5):
        step()
    # Shares the first 16 tokens (4 full blocks) with "long", whose blocks are cached by now.
    engine.add_request("hit", long_prompt[:16] + random_prompt(6, vocab, seed=8), SamplingParams(max_tokens=6, **lp))
    while engine.has_unfinished_requests():
        step()

    def is_mixed(s):
        decodes = [x for x in s if x[2] == 1]
        continued = [x for x in s if x[2] > 1 and x[1] > 0]
        return len(decodes) >= 2 and continued

    assert any(is_mixed(s) for s in steps), steps
    assert finals["hit"].num_cached_tokens == 16
    assert finals["hit"].outputs[0].metrics.num_cached_tokens == 16
    for rid in ("dec1", "dec2", "long"):
        check_against_hf(hf_model, finals[rid], check_prompt=rid == "long")
    check_against_hf(hf_model, finals["hit"], check_prompt=False)


def test_preemption_recompute_keeps_logits_exact(arch_dir, hf_model) -> None:
    _, path = arch_dir
    vocab = hf_model.config.vocab_size
    # 10 blocks of 4 tokens for three requests that each grow to 24 tokens: preemptions happen.
    engine = make_engine(path, num_kv_blocks=10, max_num_batched_tokens=64)
    params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=20)
    for i in range(3):
        engine.add_request(f"r{i}", random_prompt(12, vocab, seed=20 + i), params)
    final = run_all(engine)
    assert engine.get_stats()["num_preemptions"] > 0
    for i in range(3):
        check_against_hf(hf_model, final[f"r{i}"], check_prompt=False)
    assert engine.scheduler.kv.pool.num_free_blocks == 10


def _kv_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for x in obj:
            yield from _kv_tensors(x)


def test_uninitialised_kv_memory_is_never_read(tiny_llama) -> None:
    """The KV cache may start as garbage (NaN here): no logit may depend on an unwritten slot.

    Decodes of different context lengths in one batch pad their gathers; the padded slots must not
    leak into the result even when they hold NaN (a zero attention weight times NaN is NaN).
    """
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    vocab = hf.config.vocab_size
    engine = make_engine(tiny_llama)
    tensors = list(_kv_tensors(engine.runner.kv_caches))
    assert tensors
    for t in tensors:
        t.fill_(float("nan"))
    params = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True, logprobs=20)
    for n in (1, 2, 7, 19):
        engine.add_request(f"p{n}", random_prompt(n, vocab, seed=100 + n), params)
    final = run_all(engine)
    for n in (1, 2, 7, 19):
        check_against_hf(hf, final[f"p{n}"], check_prompt=False)


# ------------------------------------------------------------------------- loading
def test_tied_embeddings_share_one_tensor(tmp_path_factory) -> None:
    path = make_tiny_model(tmp_path_factory.mktemp("tied-check"), "llama", seed=4, tie_word_embeddings=True)
    assert ModelConfig.from_folder(path).tie_word_embeddings
    engine = make_engine(path)
    assert engine.model.lm_head.data_ptr() == engine.model.embed.data_ptr()


def test_unsupported_architecture_names_the_supported_ones(tiny_llama, tmp_path) -> None:
    folder = tmp_path / "gpt2"
    shutil.copytree(tiny_llama, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    cfg["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError) as exc:
        make_engine(folder)
    msg = str(exc.value)
    assert "GPT2LMHeadModel" in msg
    for name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"):
        assert name in msg


def test_missing_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a local folder"):
        make_engine(tmp_path / "nope")
