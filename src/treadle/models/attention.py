"""Paged attention over a flattened batch, in plain torch.

Layout of one step's batch (built by the model runner): ``T`` token rows; decode rows first,
sorted by context length and cut into groups, then each prefill chunk as a contiguous run.

KV cache of one layer: ``k_cache``/``v_cache`` of shape ``[kv_heads, num_slots, head_dim]``
(head-major, slot = block_id * block_size + offset), so that the K of one head for a list of
slots is a single ``index_select`` of contiguous 256-byte rows.

With the C kernel (``treadle/kernels/paged_attention.c``, fp32 caches) all decode rows attend in
one call that reads each sequence's blocks in place through its block table: no workspace copy,
one OpenMP job per (sequence, query head). Without it, step (2) below does the work in torch.

Per layer: (1) the step's new K/V rows are written to their slots, all before any read, so a
request may read a block another request fills in the same step; (2) each decode group gathers
its context into a reusable workspace (no allocation, so no page faults on the hot path) and
attends with two batched matmuls over (kv head x sequence), the query heads of a GQA group
stacked as rows; padding to the group's longest context is masked; (3) each prefill chunk
attends causally to its earlier context plus itself with SDPA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DecodeGroup:
    start_row: int
    end_row: int
    max_len: int  # L: longest context in the group
    gather: torch.Tensor  # [B * L] slots (padding points at a valid slot)
    mask: torch.Tensor | None  # [kv_heads * B, 1, L] additive (0 / -inf), None when no padding


@dataclass
class PrefillChunk:
    start_row: int
    end_row: int
    prior_len: int  # tokens of this sequence already in the cache before this chunk
    gather: torch.Tensor | None  # [prior_len + chunk] slots, None when prior_len == 0
    mask: torch.Tensor | None  # [chunk, prior_len + chunk] bool, None when prior_len == 0


@dataclass
class PagedDecode:
    """All decode rows (rows 0..num_rows-1) for the C kernel: block tables and context lengths."""

    num_rows: int
    block_tables: torch.Tensor  # [B, max_blocks] int32 (rows past a sequence's blocks unused)
    context_lens: torch.Tensor  # [B] int32, including the token of this step
    block_size: int
    kernel: object  # the ctypes library from treadle.kernels.ggml.load()


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] long
    decode_groups: list[DecodeGroup]
    prefills: list[PrefillChunk]
    workspace: Workspace
    paged_decode: PagedDecode | None = None  # set instead of decode_groups when the C kernel runs


def paged_decode_kernel(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pd: PagedDecode,
                        scale: float) -> torch.Tensor:
    """Decode attention for rows ``0..pd.num_rows-1`` of ``q`` [T, Hq, D], read from the cache in place."""
    b = pd.num_rows
    qd = q[:b].contiguous()
    num_heads, head_dim = q.shape[1], q.shape[2]
    out = torch.empty(b, num_heads * head_dim, dtype=torch.float32)
    pd.kernel.paged_decode_attention(
        qd.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), pd.block_tables.data_ptr(),
        pd.context_lens.data_ptr(), out.data_ptr(), b, num_heads, k_cache.shape[0], head_dim,
        k_cache.shape[1], pd.block_size, pd.block_tables.shape[1], scale)
    return out


class Workspace:
    """Reusable gather buffers, grown on demand and never shrunk."""

    def __init__(self) -> None:
        self.k = torch.empty(0)
        self.v = torch.empty(0)

    def get(self, kv_heads: int, rows: int, head_dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        need = kv_heads * rows * head_dim
        if self.k.numel() < need or self.k.dtype != dtype:
            self.k = torch.empty(need, dtype=dtype)
            self.v = torch.empty(need, dtype=dtype)
        return (self.k[:need].view(kv_heads, rows, head_dim), self.v[:need].view(kv_heads, rows, head_dim))


def paged_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
) -> torch.Tensor:
    """q: [T, Hq, D]; k, v: [T, Hkv, D]. Writes k/v into the cache. Returns [T, Hq * D]."""
    k_cache.index_copy_(1, meta.slot_mapping, k.transpose(0, 1))
    v_cache.index_copy_(1, meta.slot_mapping, v.transpose(0, 1))
    num_heads, head_dim = q.shape[1], q.shape[2]
    kv_heads = k_cache.shape[0]
    group = num_heads // kv_heads
    outs: list[torch.Tensor] = []
    if meta.paged_decode is not None:
        outs.append(paged_decode_kernel(q, k_cache, v_cache, meta.paged_decode, scale))
    for g in meta.decode_groups:
        b = g.end_row - g.start_row
        kb, vb = meta.workspace.get(kv_heads, b * g.max_len, head_dim, k_cache.dtype)
        for h in range(kv_heads):
            torch.index_select(k_cache[h], 0, g.gather, out=kb[h])
            torch.index_select(v_cache[h], 0, g.gather, out=vb[h])
        kb = kb.view(kv_heads * b, g.max_len, head_dim)
        vb = vb.view(kv_heads * b, g.max_len, head_dim)
        # [b, Hq, D] -> [Hkv * b, group, D]: the query heads sharing one KV head become rows.
        qg = q[g.start_row : g.end_row].view(b, kv_heads, group, head_dim).transpose(0, 1)
        qg = qg.reshape(kv_heads * b, group, head_dim)
        if g.mask is None:
            scores = torch.bmm(qg, kb.transpose(1, 2)).mul_(scale)
        else:
            scores = torch.baddbmm(g.mask, qg, kb.transpose(1, 2), alpha=scale)
        out = torch.bmm(scores.softmax(dim=-1), vb)  # [Hkv * b, group, D]
        outs.append(out.view(kv_heads, b, group, head_dim).transpose(0, 1).reshape(b, num_heads * head_dim))
    for chunk in meta.prefills:
        qp = q[chunk.start_row : chunk.end_row].transpose(0, 1).unsqueeze(0)  # [1, Hq, C, D]
        if chunk.gather is None:
            kp = k[chunk.start_row : chunk.end_row].transpose(0, 1)
            vp = v[chunk.start_row : chunk.end_row].transpose(0, 1)
        else:
            kp = k_cache[:, chunk.gather]
            vp = v_cache[:, chunk.gather]
        op = F.scaled_dot_product_attention(
            qp,
            kp.unsqueeze(0),
            vp.unsqueeze(0),
            attn_mask=chunk.mask,
            is_causal=chunk.gather is None,
            scale=scale,
            enable_gqa=True,
        )
        outs.append(op[0].transpose(0, 1).reshape(chunk.end_row - chunk.start_row, num_heads * head_dim))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
