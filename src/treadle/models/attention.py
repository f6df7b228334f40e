"""Paged attention over a flattened batch, in plain torch.

Layout of one step's batch (built by the model runner): ``T`` token rows, decode rows first
(one per decoding sequence), then each prefill chunk as a contiguous run of rows.

KV cache of one layer: ``k_cache``/``v_cache`` of shape ``[num_blocks * block_size, kv_heads,
head_dim]`` (flat slots; slot = block_id * block_size + offset).

Per layer: (1) the step's new K/V rows are written to their slots (``slot_mapping``), all of
them before any read, so a request may read a block another request fills in the same step;
(2) decode rows attend, batched, to their context gathered from the slots (padded to the
longest, masked); (3) each prefill chunk attends causally to its earlier context plus itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PrefillChunk:
    start_row: int
    end_row: int
    prior_len: int  # tokens of this sequence already in the cache before this chunk
    gather: torch.Tensor | None  # [prior_len + chunk] slots, None when prior_len == 0
    mask: torch.Tensor | None  # [chunk, prior_len + chunk] bool, None when prior_len == 0


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] long
    num_decode: int  # rows [0, num_decode) are single-token decodes
    decode_gather: torch.Tensor | None  # [num_decode, L] slots (padded)
    decode_mask: torch.Tensor | None  # [num_decode, 1, 1, L] bool, None when no padding
    prefills: list[PrefillChunk]


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
    k_cache.index_copy_(0, meta.slot_mapping, k)
    v_cache.index_copy_(0, meta.slot_mapping, v)
    num_heads, head_dim = q.shape[1], q.shape[2]
    outs: list[torch.Tensor] = []
    nd = meta.num_decode
    if nd:
        kd = k_cache[meta.decode_gather].transpose(1, 2)  # [B, Hkv, L, D]
        vd = v_cache[meta.decode_gather].transpose(1, 2)
        qd = q[:nd].unsqueeze(2)  # [B, Hq, 1, D]
        od = F.scaled_dot_product_attention(
            qd, kd, vd, attn_mask=meta.decode_mask, scale=scale, enable_gqa=True
        )
        outs.append(od.reshape(nd, num_heads * head_dim))
    for chunk in meta.prefills:
        qp = q[chunk.start_row : chunk.end_row].transpose(0, 1).unsqueeze(0)  # [1, Hq, C, D]
        if chunk.gather is None:
            kp = k[chunk.start_row : chunk.end_row]
            vp = v[chunk.start_row : chunk.end_row]
            causal = True
        else:
            kp = k_cache[chunk.gather]
            vp = v_cache[chunk.gather]
            causal = False
        op = F.scaled_dot_product_attention(
            qp,
            kp.transpose(0, 1).unsqueeze(0),
            vp.transpose(0, 1).unsqueeze(0),
            attn_mask=chunk.mask,
            is_causal=causal,
            scale=scale,
            enable_gqa=True,
        )
        outs.append(op[0].transpose(0, 1).reshape(chunk.end_row - chunk.start_row, num_heads * head_dim))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
