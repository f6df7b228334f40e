"""KV cache manager: maps requests to blocks and finds their cached prefixes.

Algorithm (automatic prefix caching)
- A request's tokens are cut into blocks of ``block_size``. Each *full* block gets a hash
  ``H_i = blake2b(H_{i-1} || extra_key || tokens_i)``, with ``H_{-1}`` empty and ``extra_key``
  derived from the adapter's content version and the cache salt, so two requests share KV only
  when their whole prefix, adapter version and salt agree. The chain is defined once, in
  ``treadle.prefix_hash`` (shared with the gateway, which computes the same hashes).
- ``get_computed_blocks`` walks the chain from the first block and stops at the first miss.
  At least one prompt token is always left to compute (the last position's logits are needed).
- ``allocate_slots`` gives a request enough blocks for ``num_new_tokens`` more tokens and indexes
  every block that becomes full with them (KV is written before any read within a step).
- ``free`` releases a request's blocks tail-first so that shared heads are evicted last.

Capacity shortfalls are return values (``None``); exceptions mean a bug or bad input.
"""

from __future__ import annotations

from treadle.engine.block_pool import BlockPool, KVCacheBlock
from treadle.engine.request import Request
from treadle.prefix_hash import extra_hash_key, hash_block, hash_token_blocks

__all__ = ["KVCacheManager", "extra_hash_key", "hash_block", "hash_token_blocks"]


class KVCacheManager:
    """Per-request block tables over a shared :class:`BlockPool`."""

    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool = True) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.pool = BlockPool(num_blocks, enable_caching)
        self.req_blocks: dict[str, list[KVCacheBlock]] = {}
        self._num_indexed: dict[str, int] = {}  # leading blocks of each table already indexed
        # Prefix-cache statistics in tokens, counted once per request admission.
        self.queried_tokens = 0
        self.hit_tokens = 0

    # ---------------------------------------------------------------- public API
    def update_block_hashes(self, request: Request) -> None:
        """Extend ``request.block_hashes`` to cover every full block of its tokens."""
        bs = self.block_size
        n_full = request.num_tokens // bs
        hashes = request.block_hashes
        if len(hashes) >= n_full:
            return
        extra = extra_hash_key(request.adapter_id, request.cache_salt)
        parent = hashes[-1] if hashes else b""
        tokens = request.all_token_ids
        for i in range(len(hashes), n_full):
            parent = hash_block(parent, tokens[i * bs : (i + 1) * bs], extra)
            hashes.append(parent)

    def get_computed_blocks(self, request: Request) -> tuple[list[KVCacheBlock], int]:
        """Longest cached prefix of ``request`` as (blocks, number of tokens). Changes nothing.

        Requests that want prompt log-probabilities get no hit: those need every position's logits.
        """
        if not self.enable_caching or request.params.prompt_logprobs is not None:
            return [], 0
        self.update_block_hashes(request)
        max_hit_blocks = (request.num_tokens - 1) // self.block_size
        blocks: list[KVCacheBlock] = []
        for block_hash in request.block_hashes[:max_hit_blocks]:
            block = self.pool.get_cached_block(block_hash)
            if block is None:
                break
            blocks.append(block)
        return blocks, len(blocks) * self.block_size

    def record_query(self, num_queried: int, num_hit: int) -> None:
        self.queried_tokens += num_queried
        self.hit_tokens += num_hit

    def allocate_slots(
        self, request: Request, num_new_tokens: int, new_computed_blocks: list[KVCacheBlock] | None = None
    ) -> list[KVCacheBlock] | None:
        """Make room for ``num_new_tokens`` beyond the computed (and newly hit) tokens.

        On success: takes references on ``new_computed_blocks``, appends them and any fresh blocks
        to the request's table, indexes blocks that become full, and returns the fresh blocks.
        On shortage: changes nothing and returns ``None``.
        """
        new_computed_blocks = new_computed_blocks or []
        table = self.req_blocks.get(request.request_id, [])
        num_computed = request.num_computed_tokens + len(new_computed_blocks) * self.block_size
        total = num_computed + num_new_tokens
        needed = -(-total // self.block_size) - len(table) - len(new_computed_blocks)
        # Hit blocks that are currently free would leave the queue too: count them against it.
        num_free_hits = sum(1 for b in new_computed_blocks if b.ref_cnt == 0)
        if max(needed, 0) > self.pool.num_free_blocks - num_free_hits:
            return None
        table = self.req_blocks.setdefault(request.request_id, table)  # only once it succeeds
        self.pool.touch(new_computed_blocks)
        table.extend(new_computed_blocks)
        fresh = self.pool.get_new_blocks(max(needed, 0)) or []
        table.extend(fresh)
        if self.enable_caching:
            self._cache_full_blocks(request, table, total)
        return fresh

    def free(self, request: Request) -> None:
        """Release every block of ``request`` (tail first). Safe to call twice."""
        table = self.req_blocks.pop(request.request_id, None)
        self._num_indexed.pop(request.request_id, None)
        if table:
            self.pool.free_blocks(list(reversed(table)))

    def block_ids(self, request_id: str) -> list[int]:
        return [b.block_id for b in self.req_blocks.get(request_id, [])]

    @property
    def usage(self) -> float:
        return self.pool.usage

    def check_integrity(self) -> None:
        """Pool invariants, plus: every block's ref_cnt equals the number of tables holding it."""
        self.pool.check_integrity()
        counts: dict[int, int] = {}
        for table in self.req_blocks.values():
            for block in table:
                counts[block.block_id] = counts.get(block.block_id, 0) + 1
        for block in self.pool.blocks:
            if block.ref_cnt != counts.get(block.block_id, 0):
                raise RuntimeError(
                    f"{block} is held by {counts.get(block.block_id, 0)} request tables, ref_cnt disagrees"
                )

    # ---------------------------------------------------------------- internals
    def _cache_full_blocks(self, request: Request, table: list[KVCacheBlock], num_tokens: int) -> None:
        n_full = min(num_tokens, request.num_tokens) // self.block_size
        done = self._num_indexed.get(request.request_id, 0)
        if n_full <= done:
            return
        self.update_block_hashes(request)
        for i in range(done, n_full):
            block = table[i]
            if block.block_hash is None:
                self.pool.cache_block(block, request.block_hashes[i])
        self._num_indexed[request.request_id] = n_full
