"""The routing interface. Policies are pure: no I/O, no clocks; same inputs, same decisions.

The gateway calls :meth:`RoutingPolicy.choose` with the replicas a request may go to (healthy,
not draining, not already tried by this request) and their load; then :meth:`on_routed` once the
request is sent, and :meth:`on_result` when the replica reports how many prompt tokens it found in
its prefix cache. A simulator can drive a policy the same way with made-up loads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaLoad:
    """What a policy may know about one candidate replica."""

    replica_id: str
    inflight: int = 0  # requests the gateway has sent to it and not yet finished
    waiting: int = 0  # the replica's own waiting queue, from its last metrics scrape

    @property
    def load(self) -> int:
        """In-flight plus waiting: a waiting request counts twice (it is in flight and not served)."""
        return self.inflight + self.waiting


@dataclass(frozen=True)
class RouteRequest:
    """One request as the router sees it: its cache key and the engine's block hashes of its prompt."""

    key: bytes = b""  # model + adapter/salt: prefixes of different keys never share KV
    block_hashes: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Decision:
    replica_id: str
    reason: str  # a label of the gateway's routing-decision metric
    matched_blocks: int = 0  # leading blocks the policy believes the replica holds


class RoutingPolicy(ABC):
    name: str = ""
    needs_prefix: bool = False  # whether the gateway must tokenize requests for this policy

    @abstractmethod
    def choose(self, request: RouteRequest, candidates: Sequence[ReplicaLoad]) -> Decision:
        """Pick one of ``candidates`` (never empty). Changes only the policy's own state."""

    def on_routed(self, request: RouteRequest, decision: Decision) -> None:
        """The request was sent to ``decision.replica_id``."""
        return  # optional hook: stateless policies ignore it

    def on_result(self, request: RouteRequest, decision: Decision, cached_tokens: int) -> None:
        """The replica reported ``cached_tokens`` prompt tokens served from its prefix cache."""
        return  # optional hook: stateless policies ignore it

    def remove_replica(self, replica_id: str) -> None:
        """The replica left the fleet (or restarted with an empty cache): forget its state."""
        return  # optional hook: stateless policies ignore it


def least_loaded_of(candidates: Sequence[ReplicaLoad], turn: int = 0) -> ReplicaLoad:
    """The candidate with the lowest load, then fewest in flight; ties rotate with ``turn``."""
    best = min((c.load, c.inflight) for c in candidates)
    tied = [c for c in candidates if (c.load, c.inflight) == best]
    return tied[turn % len(tied)]
