"""Load a local Hugging Face folder (config.json + *.safetensors) into :class:`LlamaModel`.

Tensors are read through safetensors' memory map, cast to the requested dtype, and fused
(q/k/v into ``qkv``, gate/up into ``gate_up``) as they are copied into the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from treadle.models.config import ModelConfig
from treadle.models.llama import LlamaModel, rope_inv_freq


class _Tensors:
    """Name -> tensor across one or several safetensors shards, read lazily."""

    def __init__(self, folder: Path) -> None:
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise ValueError(f"model folder {folder} has no *.safetensors files")
        self.handles = [safe_open(str(f), framework="pt") for f in files]
        self.where = {name: h for h in self.handles for name in h.keys()}

    def has(self, name: str) -> bool:
        return name in self.where

    def get(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        if name not in self.where:
            raise ValueError(f"weight {name!r} missing from the checkpoint")
        return self.where[name].get_tensor(name).to(dtype)


def load_model(folder: str | Path, dtype: torch.dtype = torch.float32) -> tuple[LlamaModel, ModelConfig]:
    folder = Path(folder)
    cfg = ModelConfig.from_folder(folder)
    with torch.device("meta"):
        model = LlamaModel(cfg)
    t = _Tensors(folder)
    prefix = "model."
    params: dict[str, torch.Tensor] = {
        "embed": t.get(prefix + "embed_tokens.weight", dtype),
        "norm": t.get(prefix + "norm.weight", dtype),
    }
    if not cfg.tie_word_embeddings:
        if t.has("lm_head.weight"):
            params["lm_head"] = t.get("lm_head.weight", dtype)
        else:  # some checkpoints tie without saying so
            params["lm_head"] = params["embed"]
    for i in range(cfg.num_layers):
        p = f"{prefix}layers.{i}."
        a, m = p + "self_attn.", p + "mlp."
        params[f"layers.{i}.input_norm"] = t.get(p + "input_layernorm.weight", dtype)
        params[f"layers.{i}.post_norm"] = t.get(p + "post_attention_layernorm.weight", dtype)
        params[f"layers.{i}.qkv"] = torch.cat([t.get(a + f"{x}_proj.weight", dtype) for x in "qkv"])
        if cfg.attention_bias:
            params[f"layers.{i}.qkv_bias"] = torch.cat([t.get(a + f"{x}_proj.bias", dtype) for x in "qkv"])
        params[f"layers.{i}.o_proj"] = t.get(a + "o_proj.weight", dtype)
        params[f"layers.{i}.gate_up"] = torch.cat(
            [t.get(m + "gate_proj.weight", dtype), t.get(m + "up_proj.weight", dtype)]
        )
        params[f"layers.{i}.down"] = t.get(m + "down_proj.weight", dtype)
    model.load_state_dict(_check_shapes(model, params), strict=False, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head = model.embed
    model.inv_freq = rope_inv_freq(cfg)  # the buffer was created on the meta device
    for layer in model.layers:
        layer.bind_linears()
    model.eval()
    return model, cfg


def _check_shapes(model: LlamaModel, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    expected = dict(model.named_parameters())
    for name, tensor in params.items():
        if name in expected and expected[name].shape != tensor.shape:
            raise ValueError(f"weight {name}: checkpoint shape {tuple(tensor.shape)} != {tuple(expected[name].shape)}")
    missing = [n for n in expected if n not in params and n != "lm_head"]
    if missing:
        raise ValueError(f"weights missing after loading: {missing[:5]}")
    return params


def read_generation_eos(folder: str | Path) -> tuple[int, ...]:
    """EOS ids from generation_config.json (preferred) or config.json."""
    for name in ("generation_config.json", "config.json"):
        path = Path(folder) / name
        if path.is_file():
            eos = json.loads(path.read_text()).get("eos_token_id")
            if eos is not None:
                return tuple(eos) if isinstance(eos, list) else (eos,)
    return ()


def attach_decode_kernel(model: LlamaModel, folder: str | Path) -> bool:
    """Give ``model`` the GGUF blocks its weights came from, for steps with few rows.

    Every block matrix is checked against its fp32 twin on a random row before use; any mismatch
    (or no GGUF source, no compiler, no AVX2) leaves the model on plain fp32 matmuls.
    Returns whether the kernel is in use.
    """
    import logging

    from treadle.kernels import ggml
    from treadle.models.gguf_convert import BLOCKS_FILE

    log = logging.getLogger("treadle.models")
    path = Path(folder) / BLOCKS_FILE
    if not path.is_file():
        return False
    with safe_open(str(path), framework="pt") as f:
        qtypes = f.metadata() or {}
        raw = {name: (qtypes.get(name, ""), f.get_tensor(name)) for name in f.keys()}
    lib = ggml.load()
    if lib is None:
        return False
    fp32 = {"lm_head": model.lm_head}
    for i, layer in enumerate(model.layers):
        for n in ("qkv", "o_proj", "gate_up", "down"):
            fp32[f"layers.{i}.{n}"] = getattr(layer, n)
    blocks = {}
    gen = torch.Generator().manual_seed(0)
    for name, (qtype, arr) in raw.items():
        w = fp32[name]
        try:
            bw = ggml.BlockWeight(arr, qtype, w.shape[0], w.shape[1])
        except ValueError as e:
            log.warning("decode kernel disabled: %s", e)
            return False
        x = torch.randn(1, w.shape[1], generator=gen)
        ref = torch.nn.functional.linear(x, w)
        if not torch.allclose(bw.matmul(x, lib), ref, rtol=1e-4, atol=1e-4):
            log.warning("GGUF blocks of %s do not match the fp32 weights; decode kernel disabled", name)
            return False
        blocks[name] = bw
    from treadle.models.linear_formats import crossover_rows

    model.attach_block_weights(blocks, lib, crossover_rows("gguf", "dense"))
    return True
