"""round_robin: candidates in turn, ignoring load and prefixes (the baseline)."""

from __future__ import annotations

from collections.abc import Sequence

from treadle.gateway.policies.base import Decision, ReplicaLoad, RouteRequest, RoutingPolicy


class RoundRobin(RoutingPolicy):
    name = "round_robin"

    def __init__(self) -> None:
        self._turn = 0

    def choose(self, request: RouteRequest, candidates: Sequence[ReplicaLoad]) -> Decision:
        pick = candidates[self._turn % len(candidates)]
        self._turn += 1
        return Decision(pick.replica_id, "round_robin")
