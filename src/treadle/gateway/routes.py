"""Routes: an alias (``support-bot``) split over weighted model versions, sticky per user.

Algorithm (weighted rendezvous hashing): for user key ``u`` and each version ``v`` with weight
``w_v > 0``, ``h = blake2b(alias, u, v)`` read as a uniform number in (0, 1); the score is
``-ln(h) / w_v`` and the lowest score wins. Properties pinned by tests:
- a share: version v is chosen for a fraction ``w_v / sum(w)`` of users;
- sticky: the same user and weights give the same version (no state kept);
- monotone: when one version's weight grows (others unchanged, or shrinking), every user already
  on it stays on it; a user moves only to a version whose weight grew.
The user key is the request's OpenAI ``user`` field, else its API key, else the request id (then
the request is not sticky). Pure: no I/O, no clocks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/")


@dataclass(frozen=True)
class Route:
    alias: str
    versions: tuple[tuple[str, float], ...]  # (model name, weight > 0), in the order given

    @classmethod
    def parse(cls, alias: str, versions: object) -> Route:
        """Validate a route from the admin API. Raises ValueError naming the field."""
        if not alias or not set(alias) <= _NAME_CHARS:
            raise ValueError(f"alias {alias!r} must be a non-empty name of letters, digits and -_.:/")
        if not isinstance(versions, dict) or not versions:
            raise ValueError('versions must be a non-empty object {"model name": weight, ...}')
        out = []
        for name, w in versions.items():
            if not isinstance(name, str) or not name:
                raise ValueError("versions: every key must be a model name")
            if name == alias:
                raise ValueError(f"versions: the route {alias!r} cannot name itself")
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
                raise ValueError(f"versions[{name!r}] must be a number >= 0, got {w!r}")
            out.append((name, float(w)))
        if sum(w for _, w in out) <= 0:
            raise ValueError("versions: at least one weight must be > 0")
        return cls(alias, tuple(out))

    def as_dict(self) -> dict:
        return {"alias": self.alias, "versions": dict(self.versions)}

    def choose(self, user_key: str) -> str:
        """The version for ``user_key`` (sticky, monotone in the weights)."""
        best, best_score = "", math.inf
        for name, w in self.versions:
            if w <= 0:
                continue
            digest = hashlib.blake2b(f"{self.alias}\x00{user_key}\x00{name}".encode(), digest_size=8).digest()
            u = (int.from_bytes(digest, "big") + 0.5) / 2.0**64  # uniform in (0, 1)
            score = -math.log(u) / w
            if score < best_score:
                best, best_score = name, score
        return best


class RouteTable:
    """Aliases -> routes; changed by the admin API on the event loop."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}

    def set(self, route: Route) -> None:
        self.routes[route.alias] = route

    def remove(self, alias: str) -> bool:
        return self.routes.pop(alias, None) is not None

    def resolve(self, model: str | None, user_key: str) -> tuple[str | None, str | None]:
        """(model to send, alias it came from or None)."""
        route = self.routes.get(model) if model else None
        if route is None:
            return model, None
        return route.choose(user_key), route.alias


def user_key(body: Mapping[str, Any], headers: Mapping[str, str], request_id: str) -> str:
    """Who a request is for: its ``user`` field, else its API key, else its id (then not sticky)."""
    user = body.get("user")
    if isinstance(user, str) and user:
        return "user:" + user
    auth = headers.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
    return "key:" + token if token else "request:" + request_id
