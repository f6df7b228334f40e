"""least_loaded: the candidate with the lowest in-flight + waiting count (ties rotate)."""

from __future__ import annotations

from collections.abc import Sequence

from treadle.gateway.policies.base import Decision, ReplicaLoad, RouteRequest, RoutingPolicy, least_loaded_of


class LeastLoaded(RoutingPolicy):
    name = "least_loaded"

    def __init__(self) -> None:
        self._turn = 0

    def choose(self, request: RouteRequest, candidates: Sequence[ReplicaLoad]) -> Decision:
        pick = least_loaded_of(candidates, self._turn)
        self._turn += 1
        return Decision(pick.replica_id, "least_loaded")
