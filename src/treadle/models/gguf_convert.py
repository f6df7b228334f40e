"""Convert a Llama-architecture GGUF file into a complete Hugging Face folder (fp32).

Output: ``config.json``, ``generation_config.json``, ``model.safetensors`` (every tensor
dequantised to float32, Q/K rows un-permuted back to Hugging Face's rotate-half order),
``tokenizer.json`` (byte-level BPE rebuilt from the GGUF vocabulary and merges),
``tokenizer_config.json`` and ``chat_template.jinja``. transformers, vLLM and Treadle all load the
result, so every engine compared in a benchmark runs the very same weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

# GGUF tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N.")
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
BLOCKS_FILE = "gguf_blocks.safetensors"
# pre-tokenizer regexes by GGUF ``tokenizer.ggml.pre`` (what llama.cpp uses for each)
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of rotary halves in Q/K projection rows."""
    rows = w.shape[0]
    # llama.cpp's converter did reshape(n_head, 2, half, ...).swapaxes(1, 2); this is its inverse.
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_block_weights(reader) -> dict[str, tuple[str, np.ndarray]] | None:  # noqa: ANN001
    """Raw GGUF blocks of every matmul weight, under Treadle's fused names.

    Returns ``{"layers.{i}.qkv" | "layers.{i}.o_proj" | "layers.{i}.gate_up" | "layers.{i}.down" |
    "lm_head": (qtype, uint8 [rows, row_bytes])}`` with Q/K rows un-permuted like the fp32 weights,
    or None when a tensor is not Q4_1/Q8_0 (the decode kernel then stays off).
    """
    n_head = int(_field(reader, "llama.attention.head_count"))
    n_kv = int(_field(reader, "llama.attention.head_count_kv", n_head))
    raw: dict[str, tuple[str, np.ndarray]] = {}
    for t in reader.tensors:
        qtype = t.tensor_type.name
        if t.name.endswith("norm.weight"):
            continue
        if qtype not in ("Q4_1", "Q8_0"):
            return None
        data = np.asarray(t.data)
        if t.name.endswith("attn_q.weight"):
            data = _unpermute(data, n_head)
        elif t.name.endswith("attn_k.weight"):
            data = _unpermute(data, n_kv)
        raw[t.name] = (qtype, data)
    if "output.weight" in raw:
        return None  # untied head: not needed for the bundled model
    out = {"lm_head": raw["token_embd.weight"]}
    n_layers = int(_field(reader, "llama.block_count"))
    for i in range(n_layers):
        b = f"blk.{i}."
        groups = {"qkv": ["attn_q", "attn_k", "attn_v"], "o_proj": ["attn_output"],
                  "gate_up": ["ffn_gate", "ffn_up"], "down": ["ffn_down"]}
        for name, parts in groups.items():
            types = {raw[b + p + ".weight"][0] for p in parts}
            if len(types) != 1:
                return None
            arrays = [raw[b + p + ".weight"][1] for p in parts]
            out[f"layers.{i}.{name}"] = (types.pop(), np.ascontiguousarray(np.concatenate(arrays, axis=0)))
    return out


def _field(reader, key: str, default=None):  # noqa: ANN001, ANN202
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write the Hugging Face folder for ``gguf_path`` into ``out_dir`` atomically."""
    import gguf
    import torch
    from gguf.quants import dequantize
    from safetensors.torch import save_file

    reader = gguf.GGUFReader(str(gguf_path))
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF architecture {arch!r} is not supported: supported is 'llama'")
    n_head = int(_field(reader, "llama.attention.head_count"))
    n_kv = int(_field(reader, "llama.attention.head_count_kv", n_head))
    hidden = int(_field(reader, "llama.embedding_length"))
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))

    tensors: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        arr = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        arr = arr.reshape([int(d) for d in reversed(t.shape)])
        name = t.name
        if name == "token_embd.weight":
            hf = "model.embed_tokens.weight"
        elif name == "output_norm.weight":
            hf = "model.norm.weight"
        elif name == "output.weight":
            hf = "lm_head.weight"
        elif name.startswith("blk."):
            _, idx, rest = name.split(".", 2)
            if rest not in _LAYER_NAMES:
                raise ValueError(f"unexpected GGUF tensor {name}")
            hf = f"model.layers.{idx}.{_LAYER_NAMES[rest]}"
            if rest == "attn_q.weight":
                arr = _unpermute(arr, n_head)
            elif rest == "attn_k.weight":
                arr = _unpermute(arr, n_kv)
        else:
            raise ValueError(f"unexpected GGUF tensor {name}")
        tensors[hf] = torch.from_numpy(np.array(arr, dtype=np.float32, order="C"))
    tied = "lm_head.weight" not in tensors

    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": hidden // n_head,
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        "vocab_size": len(tokens),
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": _field(reader, "tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
        "dtype": "float32",
    }
    tokenizer, tok_config, template = _tokenizer_files(reader, tokens)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp", dir=out_dir.parent))
    try:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        gen = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": config["pad_token_id"]}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
        tokenizer.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
        if template:
            (tmp / "chat_template.jinja").write_text(template)
        (tmp / "SOURCE.txt").write_text(f"converted by treadle from {Path(gguf_path).name}, dequantised to float32\n")
        blocks = gguf_block_weights(reader)
        if blocks is not None:  # the quantised blocks, for the decode kernel (treadle.kernels)
            save_file(
                {name: torch.from_numpy(np.array(arr, order="C")) for name, (_, arr) in blocks.items()},
                str(tmp / BLOCKS_FILE),
                metadata={name: qtype for name, (qtype, _) in blocks.items()},
            )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _tokenizer_files(reader, tokens: list[str]):  # noqa: ANN001, ANN202
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
    from tokenizers import Tokenizer as HFTokenizer

    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"GGUF tokenizer model {model!r} is not supported: supported is 'gpt2' (byte-level BPE)")
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    types = list(_field(reader, "tokenizer.ggml.token_type"))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tk = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    split = pre_tokenizers.Split(Regex(_GPT2_SPLIT), behavior="isolated")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre in ("smollm", "starcoder", "refact"):  # each digit is its own pre-token
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), split, byte_level])
    elif pre in ("default", "gpt-2", "gpt2"):
        tk.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    else:
        raise ValueError(f"GGUF pre-tokenizer {pre!r} is not supported: supported are smollm, starcoder, gpt2")
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == 3])

    def name(key: str) -> str | None:
        idx = _field(reader, key)
        return None if idx is None else tokens[int(idx)]

    template = _field(reader, "tokenizer.chat_template")
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name("tokenizer.ggml.bos_token_id"),
        "eos_token": name("tokenizer.ggml.eos_token_id"),
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(_field(reader, "llama.context_length")),
        "chat_template": template,
    }
    return tk, tok_config, template
