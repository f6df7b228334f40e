"""``ray``: each replica is a Ray actor that runs ``treadle serve`` on its node (needs the ``fleet`` extra).

Placement: an actor asks for ``num_cpus`` (default: the replica's threads) plus any custom
``resources`` (e.g. ``{"treadle_replica": 1}`` advertised by the nodes meant to host replicas), with
Ray's SPREAD strategy, so replicas land on different nodes when they can. The actor starts the
server as a child process bound to its node's IP (the child dies with the actor, also when the
node dies). Actors are not restarted by Ray: when a node dies, ``alive`` turns False, the fleet
controller drops the replica and launches a replacement, which Ray places on a node that is left.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
from typing import Any

import ray

from treadle.fleet.launchers.base import Launched, Launcher, ReplicaSpec, die_with_parent


@ray.remote
class ReplicaActor:
    """Owns one ``treadle serve`` process on the node the actor was placed on."""

    def __init__(self, spec: ReplicaSpec) -> None:
        import socket

        self.ip = ray.util.get_node_ip_address()
        with socket.socket() as s:
            s.bind((self.ip, 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(spec.command(self.ip, self.port), env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def info(self) -> tuple[str, str]:
        return f"http://{self.ip}:{self.port}", ray.get_runtime_context().get_node_id()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


class RayLauncher(Launcher):
    name = "ray"

    def __init__(self, spec: ReplicaSpec, address: str | None = None, num_cpus: float | None = None,
                 resources: dict[str, float] | None = None, probe_timeout_s: float = 10.0) -> None:
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        self.spec, self.num_cpus = spec, num_cpus if num_cpus is not None else float(spec.threads)
        self.resources, self.probe_timeout_s = dict(resources or {}), probe_timeout_s
        self.actors: dict[str, Any] = {}
        self.nodes: dict[str, str] = {}
        self._ids = itertools.count()

    async def start(self) -> Launched:
        actor = ReplicaActor.options(num_cpus=self.num_cpus, resources=self.resources,
                                     scheduling_strategy="SPREAD", max_restarts=0).remote(self.spec)
        url, node = await actor.info.remote()
        rid = f"ray{next(self._ids)}-{node[:8]}"
        self.actors[rid], self.nodes[rid] = actor, node
        return Launched(rid, url, node)

    async def stop(self, replica_id: str) -> None:
        actor = self.actors.pop(replica_id, None)
        self.nodes.pop(replica_id, None)
        if actor is None:
            return
        try:
            await asyncio.wait_for(actor.stop.remote(), timeout=90)
        except Exception:  # noqa: BLE001 - a dead actor (or node) has nothing left to stop
            pass
        ray.kill(actor)

    async def alive(self, replica_id: str) -> bool:
        actor = self.actors.get(replica_id)
        if actor is None:
            return False
        try:
            return bool(await asyncio.wait_for(actor.alive.remote(), timeout=self.probe_timeout_s))
        except Exception:  # noqa: BLE001 - RayActorError, a dead node, a timeout: not alive
            return False

    def running(self) -> list[str]:
        return list(self.actors)
