"""Exact tests of the block pool and the prefix cache (no torch, no model).

Block size 4 throughout, so a prompt of ``4k`` tokens fills ``k`` blocks exactly.
"""

from __future__ import annotations

import pytest

from treadle.engine.block_pool import BlockPool
from treadle.engine.kv_cache_manager import KVCacheManager, extra_hash_key, hash_token_blocks
from treadle.engine.request import Request
from treadle.sampling_params import SamplingParams

BS = 4


def make_req(rid: str, tokens: list[int], adapter_id=None, cache_salt=None, **params) -> Request:
    return Request(rid, tokens, SamplingParams(**params), adapter_id=adapter_id, cache_salt=cache_salt)


def admit(kv: KVCacheManager, req: Request) -> int:
    """What the scheduler does for a new request taking its whole prompt in one chunk.

    Returns the number of prefix-cache hit tokens; the request ends fully computed.
    """
    hit_blocks, hit_tokens = kv.get_computed_blocks(req)
    new = kv.allocate_slots(req, req.num_tokens - hit_tokens, hit_blocks)
    assert new is not None, "allocation unexpectedly failed"
    req.num_computed_tokens = req.num_tokens
    kv.check_integrity()
    return hit_tokens


def ref_counts(kv: KVCacheManager) -> list[int]:
    return [b.ref_cnt for b in kv.pool.blocks]


# ------------------------------------------------------------------------- allocation
def test_fresh_blocks_are_handed_out_in_order() -> None:
    kv = KVCacheManager(num_blocks=10, block_size=BS)
    r1 = make_req("r1", list(range(10)))  # 3 blocks (4 + 4 + 2)
    r2 = make_req("r2", list(range(100, 105)))  # 2 blocks
    assert admit(kv, r1) == 0
    assert kv.block_ids("r1") == [0, 1, 2]
    assert admit(kv, r2) == 0
    assert kv.block_ids("r2") == [3, 4]
    assert kv.pool.num_free_blocks == 5
    assert kv.pool.free_block_ids() == [5, 6, 7, 8, 9]
    assert ref_counts(kv) == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_decode_growth_takes_a_block_only_when_the_last_is_full() -> None:
    kv = KVCacheManager(num_blocks=4, block_size=BS)
    r = make_req("r", list(range(7)))
    admit(kv, r)
    assert kv.block_ids("r") == [0, 1]
    r.append_output_token(50)  # 8 tokens: still 2 blocks
    assert kv.allocate_slots(r, 1) == []
    r.num_computed_tokens += 1
    assert kv.block_ids("r") == [0, 1]
    r.append_output_token(51)  # 9th token needs block 2
    fresh = kv.allocate_slots(r, 1)
    assert [b.block_id for b in fresh] == [2]
    assert kv.block_ids("r") == [0, 1, 2]
    kv.check_integrity()


def test_shortage_returns_none_and_changes_nothing() -> None:
    kv = KVCacheManager(num_blocks=3, block_size=BS)
    admit(kv, make_req("a", list(range(8))))  # blocks 0, 1
    big = make_req("big", list(range(100, 109)))  # needs 3 blocks, 1 free
    before = (ref_counts(kv), kv.pool.free_block_ids(), dict(kv.pool.cached))
    assert kv.allocate_slots(big, big.num_tokens) is None
    assert (ref_counts(kv), kv.pool.free_block_ids(), dict(kv.pool.cached)) == before
    assert kv.block_ids("big") == []
    assert "big" not in kv.req_blocks  # a failed allocation leaves no (empty) table behind
    kv.check_integrity()


# ------------------------------------------------------------------------- prefix hits
def test_second_request_with_same_prefix_gets_the_same_blocks() -> None:
    kv = KVCacheManager(num_blocks=10, block_size=BS)
    r1 = make_req("r1", list(range(10)))
    admit(kv, r1)
    assert kv.block_ids("r1") == [0, 1, 2]
    # Same first 8 tokens (two full blocks), different tail.
    r2 = make_req("r2", list(range(8)) + [200, 201, 202])
    blocks, n = kv.get_computed_blocks(r2)
    assert [b.block_id for b in blocks] == [0, 1]
    assert n == 8
    assert admit(kv, r2) == 8
    assert kv.block_ids("r2") == [0, 1, 3]
    assert ref_counts(kv)[:4] == [2, 2, 1, 1]
    # Freeing r1 drops one reference; the shared blocks stay in use by r2.
    kv.free(r1)
    assert ref_counts(kv)[:4] == [1, 1, 0, 1]
    assert kv.pool.free_block_ids() == [4, 5, 6, 7, 8, 9, 2]
    kv.check_integrity()


def test_hit_on_a_freed_cached_block_takes_it_out_of_the_free_queue() -> None:
    kv = KVCacheManager(num_blocks=6, block_size=BS)
    r1 = make_req("r1", list(range(9)))
    admit(kv, r1)  # [0, 1, 2]
    kv.free(r1)
    assert kv.pool.free_block_ids() == [3, 4, 5, 2, 1, 0]
    r2 = make_req("r2", list(range(9)))
    assert admit(kv, r2) == 8
    assert kv.block_ids("r2") == [0, 1, 3]
    assert kv.pool.free_block_ids() == [4, 5, 2]
    assert ref_counts(kv) == [1, 1, 0, 1, 0, 0]


def test_last_prompt_token_is_always_recomputed() -> None:
    kv = KVCacheManager(num_blocks=12, block_size=BS)
    prompt = list(range(12))  # exactly 3 full blocks
    admit(kv, make_req("r1", prompt))
    assert len(kv.pool.cached) == 3
    # Identical block-aligned prompt: all but its last block hit (its last token must be computed).
    same = make_req("same", prompt)
    blocks, n = kv.get_computed_blocks(same)
    assert [b.block_id for b in blocks] == [0, 1]
    assert n == 8
    # One more token: all three blocks hit.
    longer = make_req("longer", prompt + [99])
    blocks, n = kv.get_computed_blocks(longer)
    assert [b.block_id for b in blocks] == [0, 1, 2]
    assert n == 12
    # A single-block prompt identical to a cached block: no hit at all.
    one = make_req("one", list(range(4)))
    assert kv.get_computed_blocks(one) == ([], 0)


def test_hit_stops_at_the_first_missing_block() -> None:
    kv = KVCacheManager(num_blocks=12, block_size=BS)
    admit(kv, make_req("r1", list(range(13))))  # cached: blocks 0, 1, 2
    # Block 1 differs: even though block 2's tokens match, the chain breaks at block 1.
    other = list(range(13))
    other[5] = 77
    blocks, n = kv.get_computed_blocks(make_req("r2", other))
    assert [b.block_id for b in blocks] == [0]
    assert n == 4


def test_generated_tokens_extend_the_hash_chain() -> None:
    kv = KVCacheManager(num_blocks=8, block_size=BS)
    r = make_req("r", list(range(6)))
    admit(kv, r)
    for t in (60, 61):  # block 1 becomes full with generated tokens
        r.append_output_token(t)
        assert kv.allocate_slots(r, 1) is not None
        r.num_computed_tokens += 1
    assert len(kv.pool.cached) == 2
    follow = make_req("follow", list(range(6)) + [60, 61, 62])
    blocks, n = kv.get_computed_blocks(follow)
    assert [b.block_id for b in blocks] == [0, 1]
    assert n == 8


def test_hash_chain_is_deterministic_and_extra_key_changes_it() -> None:
    toks = list(range(12))
    a = hash_token_blocks(toks, BS)
    assert a == hash_token_blocks(toks, BS)
    assert len(a) == 3 and len(set(a)) == 3
    assert hash_token_blocks(toks, BS, extra_hash_key("lora", None)) != a
    assert extra_hash_key(None, None) == b""
    assert extra_hash_key("x", None) != extra_hash_key(None, "x")


def test_free_hit_blocks_count_against_free_capacity() -> None:
    kv = KVCacheManager(num_blocks=4, block_size=BS)
    r1 = make_req("r1", list(range(8)))
    admit(kv, r1)
    kv.free(r1)  # blocks 0, 1 free but cached
    # 17 tokens: hits 2 blocks (both free), needs 3 more: 5 > 4 blocks in all -> refused.
    too_big = make_req("big", list(range(8)) + list(range(100, 109)))
    blocks, n = kv.get_computed_blocks(too_big)
    assert n == 8
    before = (ref_counts(kv), kv.pool.free_block_ids())
    assert kv.allocate_slots(too_big, too_big.num_tokens - n, blocks) is None
    assert (ref_counts(kv), kv.pool.free_block_ids()) == before
    kv.check_integrity()
    # 16 tokens: hits 2, needs 2 more -> exactly fits.
    fits = make_req("fits", list(range(8)) + list(range(100, 108)))
    assert admit(kv, fits) == 8
    assert kv.block_ids("fits") == [0, 1, 2, 3]
    assert kv.pool.num_free_blocks == 0


# ------------------------------------------------------------------------- eviction
def test_eviction_order_is_lru_and_tail_first() -> None:
    kv = KVCacheManager(num_blocks=6, block_size=BS)
    a = make_req("a", list(range(8)))
    b = make_req("b", list(range(100, 108)))
    admit(kv, a)
    admit(kv, b)
    assert kv.block_ids("a") == [0, 1] and kv.block_ids("b") == [2, 3]
    kv.free(a)
    kv.free(b)
    # Never-used blocks first, then a's blocks tail first, then b's tail first.
    assert kv.pool.free_block_ids() == [4, 5, 1, 0, 3, 2]
    assert ref_counts(kv) == [0] * 6
    assert len(kv.pool.cached) == 4
    # A new 9-token request takes 4, 5 and then evicts a's tail block (1).
    c = make_req("c", list(range(200, 209)))
    admit(kv, c)
    assert kv.block_ids("c") == [4, 5, 1]
    assert kv.pool.free_block_ids() == [0, 3, 2]
    # a's head is still cached, its tail is gone.
    blocks, n = kv.get_computed_blocks(make_req("a2", list(range(9))))
    assert [x.block_id for x in blocks] == [0] and n == 4
    # b is untouched.
    blocks, n = kv.get_computed_blocks(make_req("b2", list(range(100, 109))))
    assert [x.block_id for x in blocks] == [2, 3] and n == 8
    # Next eviction victim is 0 (a's head), then b's tail 3, then b's head 2.
    d = make_req("d", list(range(300, 302)))
    admit(kv, d)
    assert kv.block_ids("d") == [0]
    assert kv.get_computed_blocks(make_req("a3", list(range(9)))) == ([], 0)
    kv.check_integrity()


def test_a_hit_refreshes_lru_position() -> None:
    kv = KVCacheManager(num_blocks=4, block_size=BS)
    a = make_req("a", list(range(5)))  # blocks 0, 1 (block 0 full and cached)
    b = make_req("b", list(range(100, 105)))  # blocks 2, 3
    admit(kv, a)
    admit(kv, b)
    kv.free(a)
    kv.free(b)
    assert kv.pool.free_block_ids() == [1, 0, 3, 2]
    a2 = make_req("a2", list(range(5)))  # hits block 0, takes fresh block 1
    assert admit(kv, a2) == 4
    assert kv.block_ids("a2") == [0, 1]
    kv.free(a2)
    # Block 0 was used most recently, so b's blocks are now evicted before it.
    assert kv.pool.free_block_ids() == [3, 2, 1, 0]


def test_duplicate_content_keeps_the_first_cached_block() -> None:
    kv = KVCacheManager(num_blocks=8, block_size=BS)
    r1 = make_req("r1", list(range(4)) + [9])
    r2 = make_req("r2", list(range(4)) + [8])
    # Both allocated without a hit (as in one step, before either was indexed).
    assert kv.allocate_slots(r1, r1.num_tokens) is not None
    assert kv.allocate_slots(r2, r2.num_tokens) is not None
    assert kv.block_ids("r1") == [0, 1] and kv.block_ids("r2") == [2, 3]
    assert len(kv.pool.cached) == 1
    blocks, _ = kv.get_computed_blocks(make_req("r3", list(range(4)) + [7]))
    assert [b.block_id for b in blocks] == [0]
    kv.check_integrity()


# ------------------------------------------------------------------------- isolation
@pytest.mark.parametrize(
    ("first", "second", "hit"),
    [
        ((None, None), (None, None), True),
        ((None, None), ("lora-a", None), False),
        (("lora-a", None), ("lora-b", None), False),
        (("lora-a", None), ("lora-a", None), True),
        ((None, None), (None, "salt-1"), False),
        ((None, "salt-1"), (None, "salt-2"), False),
        ((None, "salt-1"), (None, "salt-1"), True),
        (("lora-a", "s"), ("lora-a", None), False),
        (("x", None), (None, "x"), False),
    ],
)
def test_adapter_and_salt_isolation(first, second, hit) -> None:
    kv = KVCacheManager(num_blocks=10, block_size=BS)
    tokens = list(range(9))
    admit(kv, make_req("r1", tokens, adapter_id=first[0], cache_salt=first[1]))
    r2 = make_req("r2", tokens, adapter_id=second[0], cache_salt=second[1])
    expected = 8 if hit else 0
    assert admit(kv, r2) == expected
    if hit:
        assert kv.block_ids("r2")[:2] == kv.block_ids("r1")[:2]
    else:
        assert not set(kv.block_ids("r2")) & set(kv.block_ids("r1"))


def test_prefix_caching_disabled_gives_no_hits() -> None:
    kv = KVCacheManager(num_blocks=10, block_size=BS, enable_caching=False)
    tokens = list(range(9))
    r1 = make_req("r1", tokens)
    admit(kv, r1)
    assert kv.pool.cached == {}
    assert all(b.block_hash is None for b in kv.pool.blocks)
    assert admit(kv, make_req("r2", tokens)) == 0
    assert kv.block_ids("r2") == [3, 4, 5]
    kv.free(r1)
    assert admit(kv, make_req("r3", tokens)) == 0


def test_prompt_logprobs_requests_get_no_hits() -> None:
    kv = KVCacheManager(num_blocks=10, block_size=BS)
    tokens = list(range(9))
    admit(kv, make_req("r1", tokens))
    r2 = make_req("r2", tokens, prompt_logprobs=0)
    assert kv.get_computed_blocks(r2) == ([], 0)
    assert admit(kv, r2) == 0
    assert kv.block_ids("r2") == [3, 4, 5]
    # A normal request still hits.
    assert admit(kv, make_req("r3", tokens)) == 8


# ------------------------------------------------------------------------- integrity
def test_free_is_idempotent_and_releases_everything() -> None:
    kv = KVCacheManager(num_blocks=5, block_size=BS)
    r1 = make_req("r1", list(range(9)))
    r2 = make_req("r2", list(range(9)))
    admit(kv, r1)
    admit(kv, r2)
    kv.free(r1)
    kv.free(r1)
    kv.free(r2)
    assert kv.pool.num_free_blocks == 5
    assert ref_counts(kv) == [0] * 5
    kv.check_integrity()


def test_check_integrity_detects_a_bumped_ref_count() -> None:
    kv = KVCacheManager(num_blocks=5, block_size=BS)
    admit(kv, make_req("r1", list(range(9))))
    kv.check_integrity()
    kv.pool.blocks[0].ref_cnt += 1
    with pytest.raises(RuntimeError):
        kv.check_integrity()


def test_check_integrity_detects_a_free_block_missing_from_the_queue() -> None:
    kv = KVCacheManager(num_blocks=5, block_size=BS)
    del kv.pool._free[4]
    with pytest.raises(RuntimeError, match="free queue"):
        kv.check_integrity()


def test_check_integrity_detects_a_wrong_hash_index() -> None:
    kv = KVCacheManager(num_blocks=5, block_size=BS)
    admit(kv, make_req("r1", list(range(9))))
    h0 = kv.pool.blocks[0].block_hash
    kv.pool.cached[h0] = kv.pool.blocks[1]
    with pytest.raises(RuntimeError):
        kv.check_integrity()


def test_check_integrity_detects_a_table_without_reference() -> None:
    kv = KVCacheManager(num_blocks=5, block_size=BS)
    admit(kv, make_req("r1", list(range(9))))
    kv.req_blocks["ghost"] = [kv.pool.blocks[0]]
    with pytest.raises(RuntimeError):
        kv.check_integrity()


def test_double_free_of_a_block_is_refused() -> None:
    pool = BlockPool(3)
    (b,) = pool.get_new_blocks(1)
    pool.free_blocks([b])
    with pytest.raises(RuntimeError):
        pool.free_blocks([b])


def test_block_pool_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="num_blocks"):
        BlockPool(0)
    with pytest.raises(ValueError, match="block_size"):
        KVCacheManager(4, 0)


def test_get_new_blocks_all_or_nothing() -> None:
    pool = BlockPool(3)
    assert pool.get_new_blocks(4) is None
    assert pool.num_free_blocks == 3
    got = pool.get_new_blocks(3)
    assert [b.block_id for b in got] == [0, 1, 2]
    assert pool.get_new_blocks(1) is None
    assert pool.usage == 1.0


def test_reset_prefix_cache() -> None:
    kv = KVCacheManager(num_blocks=6, block_size=BS)
    tokens = list(range(9))
    r1 = make_req("r1", tokens)
    admit(kv, r1)
    assert kv.pool.reset_prefix_cache() is False  # refused while blocks are in use
    assert len(kv.pool.cached) == 2
    kv.free(r1)
    assert kv.pool.reset_prefix_cache() is True
    assert kv.pool.cached == {}
    assert all(b.block_hash is None for b in kv.pool.blocks)
    assert admit(kv, make_req("r2", tokens)) == 0
    kv.check_integrity()
