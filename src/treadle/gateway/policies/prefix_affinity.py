"""prefix_affinity: send a request where its prompt prefix is already cached, within a load bound.

Algorithm (each rule is pinned by tests/test_routing_policies.py):

1. Hashing. The gateway tokenizes the prompt exactly as the engine does and hashes it with the
   engine's own chain (``hash_token_blocks``, blocks of ``block_size`` = 16 tokens, keyed by
   ``extra_hash_key(adapter, cache_salt)``); the model name is hashed into the key as well, so
   prefixes of different models or adapters never match. Block i's hash covers blocks 0..i.
2. Index. Per replica, an LRU set of the block hashes the gateway believes it holds, bounded by a
   capacity (initially ``index_blocks``, meant to be about the replica's number of KV blocks).
   Routing a request there inserts all its block hashes (most recent); past the capacity the least
   recently used hashes are evicted, as the replica's own prefix cache would.
3. Match. A replica's match is the number of leading blocks of the request found in its index.
4. Route. Let B be the replica with the longest match (ties: lower load, then candidate order)
   and L the least-loaded one (``least_loaded_of``). If B's match is under ``min_match_blocks``,
   go to L (reason ``no_match``). If ``load(B) > load(L) + max_load_gap``, go to L (reason
   ``overloaded``). Otherwise go to B (reason ``prefix_match``). Load = in-flight + waiting.
   With ``balance="cost"`` (default ``"gap"``: the rule just given), B is instead the candidate
   with the least estimated prefill work ahead of the request, in tokens:
   cost(c) = load(c) x W + (n - match(c)) x block_size, n = the request's blocks, W = the mean
   over the requests routed so far of the prompt tokens they leave uncached on their best-matching
   replica (an exponential mean, weight ``cost_ema``; the first request's full length before any):
   what a queued request costs when placed well, not where the policy happened to send it (that
   would feed back: misses raise W, which spreads load, which makes more misses). Ties: lower
   load, then candidate order. A long match is worth a longer queue, a header every replica holds
   is not. The ``max_load_gap`` bound still applies; reason ``prefix_match`` when B has the longest match,
   else ``overloaded`` (load outweighed the longer match).
5. Correction. When the replica reports ``cached_tokens`` for a request, h = cached_tokens //
   block_size blocks really hit, against m predicted at routing time:
   - h < m: the replica evicted blocks the index still had, so its cache is smaller than assumed:
     capacity := max(``min_index_blocks``, floor(len(index) * ``shrink``)), evicting LRU hashes;
   - h >= m > 0: the prediction held: capacity grows by ``grow_blocks`` (up to ``index_blocks``);
   - h > m: the replica held blocks the index lacked (routed before a gateway restart, or by
     another gateway): its first h block hashes are inserted.
   A replica that leaves (or restarts) has its index dropped.

Parameters: block_size=16, index_blocks=4096, min_match_blocks=1, max_load_gap=4, shrink=0.75,
grow_blocks=16, min_index_blocks=64, balance="gap", cost_ema=0.1.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from treadle.gateway.policies.base import Decision, ReplicaLoad, RouteRequest, RoutingPolicy, least_loaded_of


@dataclass
class ReplicaIndex:
    """LRU set of block hashes (``key + hash``) believed cached on one replica."""

    capacity: int
    entries: OrderedDict[bytes, None] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, h: bytes) -> bool:
        return h in self.entries

    def insert(self, hashes: Sequence[bytes]) -> None:
        """Mark ``hashes`` most recently used (in order), then evict down to the capacity."""
        for h in hashes:
            self.entries[h] = None
            self.entries.move_to_end(h)
        self.trim()

    def trim(self) -> None:
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)

    def match(self, hashes: Sequence[bytes]) -> int:
        n = 0
        for h in hashes:
            if h not in self.entries:
                break
            n += 1
        return n


class PrefixAffinity(RoutingPolicy):
    name = "prefix_affinity"
    needs_prefix = True

    def __init__(self, block_size: int = 16, index_blocks: int = 4096, min_match_blocks: int = 1,
                 max_load_gap: int = 4, shrink: float = 0.75, grow_blocks: int = 16,
                 min_index_blocks: int = 64, balance: str = "gap", cost_ema: float = 0.1) -> None:
        for name, value, low in (("block_size", block_size, 1), ("index_blocks", index_blocks, 1),
                                 ("min_match_blocks", min_match_blocks, 1), ("max_load_gap", max_load_gap, 0),
                                 ("grow_blocks", grow_blocks, 0), ("min_index_blocks", min_index_blocks, 1)):
            if value < low:
                raise ValueError(f"prefix_affinity {name} must be >= {low}, got {value}")
        if not 0.0 < shrink < 1.0:
            raise ValueError(f"prefix_affinity shrink must be in (0, 1), got {shrink}")
        if balance not in ("gap", "cost"):
            raise ValueError(f"prefix_affinity balance must be 'gap' or 'cost', got {balance!r}")
        if not 0.0 < cost_ema <= 1.0:
            raise ValueError(f"prefix_affinity cost_ema must be in (0, 1], got {cost_ema}")
        self.balance, self.cost_ema = balance, cost_ema
        self.mean_uncached: float | None = None  # W of the cost rule, in tokens
        self.block_size, self.index_blocks = block_size, index_blocks
        self.min_match_blocks, self.max_load_gap = min_match_blocks, max_load_gap
        self.shrink, self.grow_blocks = shrink, grow_blocks
        self.min_index_blocks = min(min_index_blocks, index_blocks)
        self.indexes: dict[str, ReplicaIndex] = {}
        self._turn = 0

    def index(self, replica_id: str) -> ReplicaIndex:
        if replica_id not in self.indexes:
            self.indexes[replica_id] = ReplicaIndex(self.index_blocks)
        return self.indexes[replica_id]

    @staticmethod
    def keyed(request: RouteRequest) -> list[bytes]:
        return [request.key + h for h in request.block_hashes]

    def choose(self, request: RouteRequest, candidates: Sequence[ReplicaLoad]) -> Decision:
        least = least_loaded_of(candidates, self._turn)
        self._turn += 1
        hashes = self.keyed(request)
        matches = [(self.index(c.replica_id).match(hashes), c) for c in candidates]
        best_match = max(m for m, _ in matches)
        if best_match < self.min_match_blocks:
            return Decision(least.replica_id, "no_match", 0)
        if self.balance == "cost":
            w = self.mean_uncached if self.mean_uncached is not None else len(hashes) * self.block_size
            n = len(hashes)
            m_best, best = min(matches, key=lambda mc: (mc[1].load * w + (n - mc[0]) * self.block_size, mc[1].load))
        else:
            m_best = best_match
            best = min((c for m, c in matches if m == best_match), key=lambda c: c.load)  # first of lowest load
        if best.load > least.load + self.max_load_gap:
            return Decision(least.replica_id, "overloaded", self.index(least.replica_id).match(hashes))
        return Decision(best.replica_id, "prefix_match" if m_best == best_match else "overloaded", m_best)

    def on_routed(self, request: RouteRequest, decision: Decision) -> None:
        hashes = self.keyed(request)
        if self.balance == "cost":  # W: what it costs where it is best placed (the gap rule needs no W)
            best = max((idx.match(hashes) for idx in self.indexes.values()), default=0)
            uncached = (len(hashes) - best) * self.block_size
            a = self.cost_ema
            self.mean_uncached = uncached if self.mean_uncached is None else (1 - a) * self.mean_uncached + a * uncached
        self.index(decision.replica_id).insert(hashes)

    def on_result(self, request: RouteRequest, decision: Decision, cached_tokens: int) -> None:
        idx = self.index(decision.replica_id)
        hashes = self.keyed(request)
        hit = min(len(hashes), max(0, cached_tokens) // self.block_size)
        predicted = decision.matched_blocks
        if hit < predicted:
            idx.capacity = max(self.min_index_blocks, int(len(idx) * self.shrink))
            idx.trim()
        elif predicted > 0:
            idx.capacity = min(self.index_blocks, idx.capacity + self.grow_blocks)
        if hit > predicted:
            idx.insert(hashes[:hit])

    def remove_replica(self, replica_id: str) -> None:
        self.indexes.pop(replica_id, None)
