"""The in-place paged decode-attention kernel equals plain softmax attention over each context."""

from __future__ import annotations

import pytest
import torch

from treadle.models.attention import PagedDecode, paged_decode_kernel


@pytest.mark.parametrize("kv_heads,group,head_dim", [(3, 3, 64), (2, 2, 16), (1, 8, 32), (2, 2, 24), (1, 2, 128)])
def test_kernel_equals_reference_attention(lib, kv_heads: int, group: int, head_dim: int) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(0)
    bs, num_blocks = 4, 40
    k_cache = torch.randn(kv_heads, num_blocks * bs, head_dim, generator=g)
    v_cache = torch.randn(kv_heads, num_blocks * bs, head_dim, generator=g)
    lens = [1, 5, 8, 17, 33]  # within a block, block edges, several blocks, one past a multiple of 8
    perm = torch.randperm(num_blocks, generator=g).tolist()  # blocks scattered over the cache
    tables, used = [], 0
    for n in lens:
        nb = -(-n // bs)
        tables.append(perm[used : used + nb])
        used += nb
    width = max(map(len, tables))
    padded = [t + [0] * (width - len(t)) for t in tables]
    q = torch.randn(len(lens), kv_heads * group, head_dim, generator=g) * 3  # peaked scores
    pd = PagedDecode(len(lens), torch.tensor(padded, dtype=torch.int32), torch.tensor(lens, dtype=torch.int32), bs, lib)
    scale = head_dim**-0.5
    out = paged_decode_kernel(q, k_cache, v_cache, pd, scale)
    for b, n in enumerate(lens):
        slots = torch.tensor([tables[b][t // bs] * bs + t % bs for t in range(n)])
        kb, vb = k_cache[:, slots], v_cache[:, slots]  # [Hkv, n, D]
        qb = q[b].view(kv_heads, group, head_dim)
        ref = torch.softmax(qb @ kb.transpose(1, 2) * scale, dim=-1) @ vb  # [Hkv, group, D]
        torch.testing.assert_close(out[b], ref.reshape(-1), rtol=1e-5, atol=1e-5)
