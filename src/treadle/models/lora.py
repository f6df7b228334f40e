"""PEFT LoRA adapters (``adapter_config.json`` + ``adapter_model.safetensors``) for Llama-family models.

What is loaded: ``lora_A`` ``[r, in]`` and ``lora_B`` ``[out, r]`` of any of the seven projections
(q/k/v/o, gate/up/down) of any layer; the scale is ``lora_alpha / r`` (``lora_alpha / sqrt(r)``
with ``use_rslora``), ``r`` read from each tensor so ``rank_pattern`` works. The weight a row sees
is ``W + scale * B @ A``, as PEFT's ``merge_and_unload`` computes it.
What is refused, with the field named: DoRA (``use_dora``), embedding/lm_head targets
(``target_modules``, ``modules_to_save``), trained biases (``bias``), ``alpha_pattern``,
``fan_in_fan_out``, and ranks above the server's ``max_lora_rank``.

Treadle fuses q/k/v into ``qkv`` and gate/up into ``gate_up``; :meth:`LoraAdapter.activate` builds,
per fused projection, one ``A`` (the parts' A stacked) and one block-diagonal ``B`` (scale folded
in), so an adapter group costs one low-rank product per projection. The adapter's *version* is a
hash of its weights file and its config: the prefix cache and the metrics key on it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from treadle.models.config import ModelConfig
from treadle.models.linear import LoraFactors

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
# PEFT module name -> (Treadle's fused projection, part index within it)
MODULES = {
    "q_proj": ("qkv", 0), "k_proj": ("qkv", 1), "v_proj": ("qkv", 2), "o_proj": ("o_proj", 0),
    "gate_proj": ("gate_up", 0), "up_proj": ("gate_up", 1), "down_proj": ("down", 0),
}
_KEY = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$")
_REFUSED_TARGETS = ("embed_tokens", "lm_head", "embedding", "wte")


class LoraError(ValueError):
    """An adapter that cannot be served; the message names the field (or file) and what is valid."""


def _part_shapes(cfg: ModelConfig) -> dict[str, list[tuple[int, int]]]:
    """Fused projection -> (out, in) of each part, in fusion order."""
    h, q, kv, i = cfg.hidden_size, cfg.q_size, cfg.kv_size, cfg.intermediate_size
    return {"qkv": [(q, h), (kv, h), (kv, h)], "o_proj": [(h, q)], "gate_up": [(i, h), (i, h)], "down": [(h, i)]}


@dataclass(frozen=True)
class LoraAdapter:
    """One adapter as PEFT saved it, in CPU memory. ``weights[(layer, module)] = (A, B, scale)``."""

    path: str
    version: str
    rank: int  # the largest rank of any module
    lora_alpha: float
    use_rslora: bool
    target_modules: tuple[str, ...]
    weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, float]]

    @property
    def num_params(self) -> int:
        return sum(a.numel() + b.numel() for a, b, _ in self.weights.values())

    def activate(self, cfg: ModelConfig, dtype: torch.dtype = torch.float32
                 ) -> list[dict[str, LoraFactors]]:
        """Per layer, per fused projection: :class:`LoraFactors` with A_cat ``[sum r, in]``, the block-diagonal
        B_bd ``[out, sum r]`` (scale folded in; the stacked rank padded with zeros to a multiple of 8) and ``parts``, the (rank offset, rank, output offset, outputs)
        of each adapted module's block (the layout :func:`treadle.models.linear.add_lora` multiplies by)."""
        shapes = _part_shapes(cfg)
        out: list[dict[str, LoraFactors]] = []
        for layer in range(cfg.num_layers):
            fused: dict[str, LoraFactors] = {}
            for proj, parts in shapes.items():
                mods = [(m, idx) for m, (p, idx) in MODULES.items() if p == proj and (layer, m) in self.weights]
                if not mods:
                    continue
                mods.sort(key=lambda t: t[1])
                ranks = [self.weights[(layer, m)][0].shape[0] for m, _ in mods]
                pad = -sum(ranks) % 8  # zero ranks up to a multiple of 8 (the C kernel's vector width)
                a_cat = torch.cat([self.weights[(layer, m)][0] for m, _ in mods]
                                  + [torch.zeros(pad, parts[0][1])]).to(dtype)
                b_bd = torch.zeros(sum(o for o, _ in parts), sum(ranks) + pad, dtype=dtype)
                row_off = [sum(o for o, _ in parts[:k]) for k in range(len(parts))]
                col = 0
                blocks = []
                for (m, idx), r in zip(mods, ranks, strict=True):
                    _, b, scale = self.weights[(layer, m)]
                    b_bd[row_off[idx] : row_off[idx] + parts[idx][0], col : col + r] = (b * scale).to(dtype)
                    blocks.append((col, r, row_off[idx], parts[idx][0]))
                    col += r
                fused[proj] = LoraFactors.of(a_cat, b_bd, torch.tensor(blocks, dtype=torch.int32))
            out.append(fused)
        return out


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise LoraError(f"lora_path {str(folder)!r} is not a directory holding a PEFT adapter")
    if not path.is_file():
        raise LoraError(f"lora_path {str(folder)!r} has no {CONFIG_FILE}: it must be a folder saved by "
                        "PEFT's save_pretrained")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LoraError(f"{CONFIG_FILE} in {str(folder)!r} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise LoraError(f"{CONFIG_FILE} in {str(folder)!r} must hold a JSON object")
    return cfg


def _check_config(cfg: dict, max_rank: int) -> None:
    peft_type = str(cfg.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise LoraError(f"peft_type {peft_type!r} is not supported: only LORA adapters")
    if cfg.get("use_dora"):
        raise LoraError("use_dora: DoRA adapters are not supported (only plain LoRA, use_dora=false)")
    targets = cfg.get("target_modules") or []
    names = [targets] if isinstance(targets, str) else list(targets)
    bad = [t for t in names if any(x in str(t) for x in _REFUSED_TARGETS)]
    if bad:
        raise LoraError(f"target_modules {bad} are not supported: adapters may target only "
                        f"{sorted(MODULES)} (no embedding or lm_head)")
    if cfg.get("modules_to_save"):
        raise LoraError(f"modules_to_save {cfg['modules_to_save']} is not supported: an adapter may only "
                        "add low-rank updates to the attention and MLP projections")
    if cfg.get("bias", "none") != "none":
        raise LoraError(f"bias {cfg.get('bias')!r} is not supported: only bias='none'")
    for key in ("lora_bias", "trainable_token_indices", "layer_replication", "target_parameters", "use_qalora",
                "use_bdlora", "alora_invocation_tokens"):
        if cfg.get(key):
            raise LoraError(f"{key} is not supported (plain LoRA on the projections only), got {cfg[key]!r}")
    if cfg.get("alpha_pattern"):
        raise LoraError("alpha_pattern is not supported: one lora_alpha for every module")
    if cfg.get("fan_in_fan_out"):
        raise LoraError("fan_in_fan_out=true is not supported (Llama projections are nn.Linear)")
    r = cfg.get("r")
    if not isinstance(r, int) or r < 1:
        raise LoraError(f"r must be a positive integer, got {r!r}")
    if r > max_rank:
        raise LoraError(f"r {r} is above the server's max_lora_rank {max_rank} (--max-lora-rank)")
    alpha = cfg.get("lora_alpha", r)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise LoraError(f"lora_alpha must be a number, got {alpha!r}")


def version_of(folder: Path) -> str:
    """Content version: blake2b over the weights file and the canonical config JSON (16 hex digits)."""
    h = hashlib.blake2b(digest_size=8)
    cfg = json.loads((folder / CONFIG_FILE).read_text())
    h.update(json.dumps(cfg, sort_keys=True).encode())
    with open(folder / WEIGHTS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_adapter(path: str | Path, cfg: ModelConfig, max_rank: int) -> LoraAdapter:
    """Read and check a PEFT adapter folder against the model ``cfg``. Raises LoraError."""
    folder = Path(path).expanduser()
    conf = _read_config(folder)
    _check_config(conf, max_rank)
    wpath = folder / WEIGHTS_FILE
    if not wpath.is_file():
        raise LoraError(f"lora_path {str(folder)!r} has no {WEIGHTS_FILE} (only safetensors weights are read)")
    alpha = float(conf.get("lora_alpha", conf["r"]))
    rslora = bool(conf.get("use_rslora", False))
    shapes = _part_shapes(cfg)
    raw: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    try:
        with safe_open(str(wpath), framework="pt") as f:
            for key in f.keys():
                m = _KEY.match(key)
                if m is None:
                    raise LoraError(f"tensor {key!r} in {WEIGHTS_FILE} is not a LoRA weight of a supported "
                                    f"projection ({sorted(MODULES)}); target_modules may not name it")
                layer, module, ab = int(m.group(1)), m.group(2), m.group(3)
                if module not in MODULES:
                    raise LoraError(f"target_modules: {module!r} is not supported; use {sorted(MODULES)}")
                if layer >= cfg.num_layers:
                    raise LoraError(f"tensor {key!r} names layer {layer}, the model has {cfg.num_layers}")
                raw.setdefault((layer, module), {})[ab] = f.get_tensor(key).to(torch.float32)
    except LoraError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt file is bad input, not a bug
        raise LoraError(f"{WEIGHTS_FILE} in {str(folder)!r} could not be read: {e}") from e
    if not raw:
        raise LoraError(f"{WEIGHTS_FILE} in {str(folder)!r} holds no LoRA weights")
    weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, float]] = {}
    max_r = 0
    for (layer, module), ab in sorted(raw.items()):
        if set(ab) != {"A", "B"}:
            raise LoraError(f"layer {layer} {module}: lora_A and lora_B must both be present")
        a, b = ab["A"], ab["B"]
        proj, idx = MODULES[module]
        out_f, in_f = shapes[proj][idx]
        r = a.shape[0]
        if a.shape != (r, in_f) or b.shape != (out_f, r):
            raise LoraError(f"layer {layer} {module}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit "
                            f"the model (expected [r, {in_f}] and [{out_f}, r]): an adapter of another base model?")
        if r > max_rank:
            raise LoraError(f"r {r} (layer {layer} {module}, rank_pattern) is above max_lora_rank {max_rank}")
        max_r = max(max_r, r)
        scale = alpha / math.sqrt(r) if rslora else alpha / r
        weights[(layer, module)] = (a.contiguous(), b.contiguous(), scale)
    targets = tuple(sorted({m for _, m in weights}))
    return LoraAdapter(str(folder.resolve()), version_of(folder), max_r, alpha, rslora, targets, weights)
