"""Shared fixtures: tiny random Llama-family models built in the test session (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. Paged attention keeps the KV cache in blocks.",
    "Continuous batching lets new requests join the running batch at every step of the engine.",
    "Über naïve café résumé — 東京 北京 😀 multi-byte characters must never be split in half.",
    "Hello world! How are you today? I am fine, thank you. 0123456789 + - * / = ( ) [ ] { }",
] * 20


def write_tokenizer(folder: Path, vocab_size: int = 384) -> None:
    """Train a small byte-level BPE (specials 0, 1, 2) and write tokenizer files into ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<|im_start|>",
                "eos_token": "<|im_end|>",
                "pad_token": "<|im_end|>",
                "unk_token": "<|endoftext|>",
                "tokenizer_class": "PreTrainedTokenizerFast",
                "chat_template": CHAT_TEMPLATE,
                "clean_up_tokenization_spaces": False,
            }
        )
    )


def make_tiny_model(folder: Path, arch: str = "llama", seed: int = 0, **overrides: object) -> Path:
    """Save a tiny random model of ``arch`` ('llama', 'qwen2', 'mistral') with its tokenizer."""
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder)
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    common = dict(
        vocab_size=len(vocab) + 3,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    common.update(overrides)
    cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[arch]
    torch.manual_seed(seed)
    model = cls[1](cls[0](**common)).to(torch.float32)
    with torch.no_grad():  # larger-than-default weights give peaked, tie-free distributions
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
        for name, p in model.named_parameters():  # non-zero q/k/v biases (Qwen2), so they are tested
            if name.endswith(".bias"):
                p.normal_(0.0, 0.1)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_mistral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-mistral"), "mistral")


from store_support import db_url, isolated_default_store, postgres_server  # noqa: E402,F401 - store fixtures


@pytest.fixture(scope="session")
def lib():  # noqa: ANN201
    """The C kernel library (treadle.kernels.ggml.load()); skips where it cannot be built."""
    from treadle.kernels import ggml

    lib = ggml.load()
    if lib is None:
        pytest.skip("C kernels unavailable here (needs gcc and AVX2/FMA/F16C)")
    return lib
