"""Launchers start and stop replica servers: ``local`` (processes here) and ``ray`` (actors on a Ray cluster)."""

from __future__ import annotations

from treadle.fleet.launchers.base import Launched, Launcher, ReplicaSpec

__all__ = ["Launched", "Launcher", "ReplicaSpec", "make_launcher"]


def make_launcher(name: str, spec: ReplicaSpec, **opts: object) -> Launcher:
    if name == "local":
        from treadle.fleet.launchers.local import LocalLauncher

        return LocalLauncher(spec, **opts)  # type: ignore[arg-type]
    if name == "ray":
        from treadle.fleet.launchers.ray_launcher import RayLauncher

        return RayLauncher(spec, **opts)  # type: ignore[arg-type]
    raise ValueError(f"launcher must be 'local' or 'ray', got {name!r}")
