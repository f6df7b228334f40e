"""Routing policies by name: ``make_policy("prefix_affinity", max_load_gap=2)``."""

from __future__ import annotations

from treadle.gateway.policies.base import Decision, ReplicaLoad, RouteRequest, RoutingPolicy
from treadle.gateway.policies.least_loaded import LeastLoaded
from treadle.gateway.policies.prefix_affinity import PrefixAffinity
from treadle.gateway.policies.round_robin import RoundRobin

POLICIES: dict[str, type[RoutingPolicy]] = {
    RoundRobin.name: RoundRobin,
    LeastLoaded.name: LeastLoaded,
    PrefixAffinity.name: PrefixAffinity,
}

__all__ = ["POLICIES", "Decision", "ReplicaLoad", "RouteRequest", "RoutingPolicy", "make_policy"]


def make_policy(name: str, **params: object) -> RoutingPolicy:
    """Build the policy called ``name`` with its parameters. Raises ValueError naming what is valid."""
    if name not in POLICIES:
        raise ValueError(f"policy must be one of {sorted(POLICIES)}, got {name!r}")
    try:
        return POLICIES[name](**params)  # type: ignore[arg-type]
    except TypeError as e:
        raise ValueError(f"bad parameters for policy {name}: {e}") from e
