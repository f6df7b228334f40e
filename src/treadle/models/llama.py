"""Llama-family decoder (Llama, SmolLM, Mistral, Qwen2) for a flattened batch of tokens.

Weights are stored fused for fewer, fatter matmuls: ``qkv`` = [q; k; v] and ``gate_up`` =
[gate; up]. The forward pass takes ``T`` token rows from many sequences at once and returns
hidden states; logits are computed only for the rows that need them (``compute_logits``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from treadle.kernels.ggml import BlockWeight
from treadle.models.attention import AttentionMetadata, paged_attention
from treadle.models.config import ModelConfig
from treadle.models.decode_stack import DecodeStack, decode_only
from treadle.models.linear import DenseLinear, GGUFBlockLinear, LinearMethod, LoraGroup, add_lora
from treadle.models.linear_formats import Int8DynamicLinear

PROJECTIONS = ("qkv", "o_proj", "gate_up", "down")  # the fused projections of a layer


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    dim = cfg.head_dim
    # Computed in float32 exactly as transformers does, so positions far into the context agree.
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.rope_scaling
    if rs:  # llama3 frequency-dependent scaling
        factor = rs["factor"]
        low, high = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old_len = rs.get("original_max_position_embeddings", 8192)
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        mid = (1 - smooth) * scaled / factor + smooth * scaled
        is_mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = torch.where(is_mid, mid, scaled)
    return inv_freq


class LlamaLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h, q, kv, i = cfg.hidden_size, cfg.q_size, cfg.kv_size, cfg.intermediate_size
        self.cfg = cfg
        self.input_norm = nn.Parameter(torch.ones(h), requires_grad=False)
        self.post_norm = nn.Parameter(torch.ones(h), requires_grad=False)
        self.qkv = nn.Parameter(torch.empty(q + 2 * kv, h), requires_grad=False)
        self.qkv_bias = nn.Parameter(torch.zeros(q + 2 * kv), requires_grad=False) if cfg.attention_bias else None
        self.o_proj = nn.Parameter(torch.empty(h, q), requires_grad=False)
        self.gate_up = nn.Parameter(torch.empty(2 * i, h), requires_grad=False)
        self.down = nn.Parameter(torch.empty(h, i), requires_grad=False)
        self.scale = cfg.head_dim**-0.5
        self.index = 0  # position in the model, the key of this layer's LoRA weights
        # How each projection is computed (treadle.models.linear); built by ``bind_linears``.
        self.linears: dict[str, LinearMethod] = {}

    def bind_linears(self, blocks: dict[str, BlockWeight] | None = None, kernel: object = None,
                     max_rows: int = 0) -> None:
        """(Re)build the projection methods: dense over the parameters, GGUF blocks where given."""
        blocks = blocks or {}
        for name in PROJECTIONS:
            dense = DenseLinear(getattr(self, name), self.qkv_bias if name == "qkv" else None)
            bw = blocks.get(name)
            self.linears[name] = GGUFBlockLinear(dense, bw, kernel, max_rows) if bw is not None else dense

    def _linear(self, x: torch.Tensor, name: str, lora: Sequence[LoraGroup]) -> torch.Tensor:
        if not self.linears:
            self.bind_linears()
        y = self.linears[name].apply(x)
        if lora:
            add_lora(y, x, lora, self.index, name)
        return y

    def forward(
        self,
        h: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        meta: AttentionMetadata,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        lora: Sequence[LoraGroup] = (),
    ) -> torch.Tensor:
        cfg = self.cfg
        eps = cfg.rms_norm_eps
        x = F.rms_norm(h, (cfg.hidden_size,), self.input_norm, eps)
        qkv = self._linear(x, "qkv", lora)
        t = qkv.shape[0]
        qk, v = qkv.split([cfg.q_size + cfg.kv_size, cfg.kv_size], dim=-1)
        # q and k heads are adjacent in each row: one RoPE call rotates both (same elementwise math).
        qk = apply_rope(qk.view(t, cfg.num_heads + cfg.num_kv_heads, cfg.head_dim), cos, sin)
        q, k = qk.split([cfg.num_heads, cfg.num_kv_heads], dim=1)
        v = v.view(t, cfg.num_kv_heads, cfg.head_dim)
        attn = paged_attention(q, k, v, k_cache, v_cache, meta, self.scale)
        h = h + self._linear(attn, "o_proj", lora)
        x = F.rms_norm(h, (cfg.hidden_size,), self.post_norm, eps)
        gu = self._linear(x, "gate_up", lora)
        gate, up = gu.chunk(2, dim=-1)
        return h + self._linear(F.silu(gate) * up, "down", lora)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE. x: [T, H, D]; cos/sin: [T, 1, D/2]."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size), requires_grad=False)
        self.layers = nn.ModuleList(LlamaLayer(cfg) for _ in range(cfg.num_layers))
        for i, layer in enumerate(self.layers):
            layer.index = i
        self.norm = nn.Parameter(torch.ones(cfg.hidden_size), requires_grad=False)
        self.lm_head = (
            self.embed
            if cfg.tie_word_embeddings
            else nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size), requires_grad=False)
        )
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)
        self.head: LinearMethod | None = None  # how the logits are computed (None: dense lm_head)
        self.weight_format = "dense"  # "dense", "gguf" (blocks for small steps) or "int8"
        self.fused_decode = True  # decode-only steps run the whole stack in C where eligible
        self._stack: DecodeStack | None | bool = None  # built on the first eligible step (False: never)

    def attach_block_weights(self, blocks: dict[str, BlockWeight], kernel, max_rows: int) -> None:  # noqa: ANN001
        """Serve steps of at most ``max_rows`` rows from GGUF blocks (names as in ``gguf_block_weights``)."""
        head = blocks.get("lm_head")
        self.head = GGUFBlockLinear(DenseLinear(self.lm_head), head, kernel, max_rows) if head is not None else None
        for i, layer in enumerate(self.layers):
            layer.bind_linears({n: blocks[f"layers.{i}.{n}"] for n in PROJECTIONS if f"layers.{i}.{n}" in blocks},
                               kernel, max_rows)
        self.weight_format = "gguf"
        self._stack = None

    def quantize_int8(self) -> None:
        """Every projection and the lm_head become int8 weights x int8 dynamic activations.

        Replaces the linear methods (the fp32 parameters stay, as the source of LoRA-free exact
        weights and of the embedding); LoRA still adds its fp32 low-rank product on top."""
        for layer in self.layers:
            layer.bind_linears()
            for name in PROJECTIONS:
                bias = layer.qkv_bias if name == "qkv" else None
                layer.linears[name] = Int8DynamicLinear(getattr(layer, name), bias)
        self.head = Int8DynamicLinear(self.lm_head)
        self.weight_format = "int8"
        self._stack = None

    def rope_tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.to(torch.float32).unsqueeze(1) * self.inv_freq.unsqueeze(0)
        return freqs.cos().unsqueeze(1), freqs.sin().unsqueeze(1)

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        meta: AttentionMetadata,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        lora: Sequence[LoraGroup] = (),
    ) -> torch.Tensor:
        """Hidden states after the final norm, one row per input token. Writes the KV cache.

        ``lora``: groups of rows that run under an adapter (other rows see the base weights)."""
        cos, sin = self.rope_tables(positions)
        h = F.embedding(input_ids, self.embed)
        stack = self._decode_stack(input_ids.shape[0], meta, kv_caches, lora)
        if stack is not None:
            h = stack.run(h, cos, sin, meta)
            return F.rms_norm(h, (self.cfg.hidden_size,), self.norm, self.cfg.rms_norm_eps)
        for layer, (k_cache, v_cache) in zip(self.layers, kv_caches, strict=True):
            h = layer(h, cos, sin, meta, k_cache, v_cache, lora)
        return F.rms_norm(h, (self.cfg.hidden_size,), self.norm, self.cfg.rms_norm_eps)

    def _decode_stack(self, rows: int, meta: AttentionMetadata, kv_caches: list, lora: Sequence[LoraGroup]):  # noqa: ANN202
        """The fused decode path for this step, or None (``treadle.models.decode_stack``)."""
        if not self.fused_decode or self._stack is False or not decode_only(meta, lora):
            return None
        if self._stack is None or not self._stack.matches(kv_caches):
            lib = meta.paged_decode.kernel
            self._stack = DecodeStack(self, kv_caches, lib) if DecodeStack.eligible(self, kv_caches, lib) else False
        return self._stack if self._stack and self._stack.covers(meta, rows) else None

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.head is not None:
            return self.head.apply(hidden)
        return F.linear(hidden, self.lm_head)
