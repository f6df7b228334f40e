"""Block pool: fixed-size KV blocks with reference counts, an LRU free queue and a hash index.

Algorithm
- Every block is in exactly one of two states: *in use* (``ref_cnt > 0``) or *free*
  (``ref_cnt == 0`` and present in the free queue).
- A free block may still hold a cached prefix (``block_hash`` set and indexed in
  ``cached``). It stays reusable by a later prefix hit until it is handed out again.
- ``get_new_blocks`` pops from the *front* of the free queue (least recently freed first);
  popping a cached block evicts its hash. ``free_blocks`` appends to the *back*, so the most
  recently released blocks are the last to be evicted. Callers free a request's blocks in
  reverse order, so a sequence's tail is evicted before its head (heads are shared more).
- ``touch`` takes a reference on blocks found by a prefix hit; a free one leaves the queue.

Parameters: ``num_blocks`` (pool size), ``enable_caching`` (index full blocks by hash).
No torch here: block ids index the model runner's KV tensors, nothing more.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class KVCacheBlock:
    block_id: int
    ref_cnt: int = 0
    block_hash: bytes | None = None

    def __repr__(self) -> str:
        h = self.block_hash.hex()[:8] if self.block_hash else None
        return f"KVCacheBlock(id={self.block_id}, ref={self.ref_cnt}, hash={h})"


class BlockPool:
    """Owns every KV block; hands them out and takes them back. Pure Python, CPU-only."""

    def __init__(self, num_blocks: int, enable_caching: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.blocks = [KVCacheBlock(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[bytes, KVCacheBlock] = {}

    # ---------------------------------------------------------------- public API
    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        """Share of blocks referenced by live requests (cached-but-free blocks count as free)."""
        return 1.0 - self.num_free_blocks / self.num_blocks

    def free_block_ids(self) -> list[int]:
        """Free queue in eviction order (front = next to be handed out)."""
        return list(self._free)

    def get_cached_block(self, block_hash: bytes) -> KVCacheBlock | None:
        return self.cached.get(block_hash) if self.enable_caching else None

    def get_new_blocks(self, n: int) -> list[KVCacheBlock] | None:
        """Take ``n`` blocks from the front of the free queue, or ``None`` if fewer are free.

        Each returned block has ``ref_cnt == 1`` and no hash (an evicted hash leaves the index).
        """
        if n > len(self._free):
            return None
        out = []
        for _ in range(n):
            block_id, _ = self._free.popitem(last=False)
            block = self.blocks[block_id]
            self._evict(block)
            block.ref_cnt = 1
            out.append(block)
        return out

    def touch(self, blocks: list[KVCacheBlock]) -> None:
        """Take one more reference on each block (prefix hit); free ones leave the free queue."""
        for block in blocks:
            if block.ref_cnt == 0:
                del self._free[block.block_id]
            block.ref_cnt += 1

    def free_blocks(self, blocks: list[KVCacheBlock]) -> None:
        """Drop one reference on each block, in the order given; at zero it joins the queue's back."""
        for block in blocks:
            if block.ref_cnt <= 0:
                raise RuntimeError(f"bug: freeing {block} whose ref_cnt is already 0")
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self._free[block.block_id] = None

    def cache_block(self, block: KVCacheBlock, block_hash: bytes) -> None:
        """Index a full, in-use block under ``block_hash`` (first writer wins on duplicates)."""
        if not self.enable_caching or block.block_hash is not None:
            return
        if block_hash in self.cached:
            return  # same content already cached in another block; keep that one
        block.block_hash = block_hash
        self.cached[block_hash] = block

    def reset_prefix_cache(self) -> bool:
        """Forget every cached hash. Refused (False) while any block is in use."""
        if self.num_free_blocks != self.num_blocks:
            return False
        for block in self.blocks:
            block.block_hash = None
        self.cached.clear()
        return True

    def check_integrity(self) -> None:
        """Raise ``RuntimeError`` naming the first invariant that does not hold."""
        for block in self.blocks:
            if block.ref_cnt < 0:
                raise RuntimeError(f"negative ref_cnt: {block}")
            in_queue = block.block_id in self._free
            if in_queue != (block.ref_cnt == 0):
                raise RuntimeError(f"free queue disagrees with ref_cnt for {block} (in_queue={in_queue})")
            if block.block_hash is not None and self.cached.get(block.block_hash) is not block:
                raise RuntimeError(f"{block} has a hash that the index does not map to it")
        for block_hash, block in self.cached.items():
            if block.block_hash != block_hash:
                raise RuntimeError(f"index maps a hash to {block}, which holds another hash")
        if len(self._free) > self.num_blocks:
            raise RuntimeError("free queue longer than the pool")

    # ---------------------------------------------------------------- internals
    def _evict(self, block: KVCacheBlock) -> None:
        if block.block_hash is not None:
            if self.cached.get(block.block_hash) is block:
                del self.cached[block.block_hash]
            block.block_hash = None
