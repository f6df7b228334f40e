"""Adapter names the engine serves, and the versions requests still run under.

A name maps to one content version (a hash of weights + config). Requests carry the version, so
unloading a name (or loading new weights under it after an unload) never changes what a request
already accepted runs with, and the prefix cache never mixes KV of two versions. A version's
weights are released once no name maps to it and no request uses it (``retire``).
"""

from __future__ import annotations

from dataclasses import dataclass


class AdapterNotFoundError(LookupError):
    """A request or an unload named an adapter that is not loaded."""


@dataclass(frozen=True)
class LoraInfo:
    """What the server shows about a loaded adapter."""

    name: str
    path: str
    version: str
    rank: int
    target_modules: tuple[str, ...]


class LoraRegistry:
    def __init__(self) -> None:
        self.by_name: dict[str, LoraInfo] = {}
        self.unloaded: set[str] = set()  # versions no name maps to, maybe still used by requests

    def add(self, info: LoraInfo) -> None:
        if info.name in self.by_name:
            raise ValueError(f"lora_name {info.name!r} is already loaded (version {self.by_name[info.name].version});"
                             " unload it first to load other weights under that name")
        self.by_name[info.name] = info
        self.unloaded.discard(info.version)

    def remove(self, name: str) -> LoraInfo:
        info = self.by_name.pop(name, None)
        if info is None:
            raise AdapterNotFoundError(f"lora_name {name!r} is not loaded; loaded: {sorted(self.by_name) or 'none'}")
        if info.version not in {i.version for i in self.by_name.values()}:
            self.unloaded.add(info.version)
        return info

    def version_of(self, name: str) -> str:
        info = self.by_name.get(name)
        if info is None:
            raise AdapterNotFoundError(f"The model `{name}` does not exist.")
        return info.version

    def retire(self, in_use: set[str]) -> list[str]:
        """Versions to release now: unloaded and used by no request in ``in_use``."""
        done = [v for v in self.unloaded if v not in in_use]
        self.unloaded.difference_update(done)
        return done
